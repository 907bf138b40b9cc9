"""The RNN lab: small, runnable experiments on recurrent models themselves.

Each experiment is a module with a config dataclass and a ``run(config, out)`` function, and a subcommand of
``captioning lab`` (see :mod:`captioning.cli.lab`):

* :mod:`~captioning.lab.toy`: the hand-built ReLU RNN that detects two 1s in a row, and a trained one.
* :mod:`~captioning.lab.charlm`: character-level language models (inputs, cells, depth, full vs truncated
  BPTT, clipping, greedy vs temperature sampling), bits per character and activation memory.
* :mod:`~captioning.lab.gradflow`: the norm of dL/dh_t back through time against the scale of W_hh.
* :mod:`~captioning.lab.interpret`: hidden units that track quotes, line position and indentation.
* :mod:`~captioning.lab.tasks`: many-to-one classification and one-to-many generation with the same cells.
* :mod:`~captioning.lab.modern`: LSTM, RWKV, Mamba and a Transformer (the registered decoders, see
  :mod:`~captioning.lab.seqmodels`) as char LMs: bits/char at equal time, cost against length, decoding state.

Every recurrent model is built with :func:`captioning.models.cells.build_rnn` and stepped, where per-step
access is needed, with :func:`captioning.models.cells.cell_step`; text generation uses
:mod:`captioning.models.decoding`.
"""
