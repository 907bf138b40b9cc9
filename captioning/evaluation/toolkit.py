"""The one adapter between this codebase and the COCO caption toolkit (PyPI ``pycocoevalcap``).

Two backends score raw captions and return corpus and per-image values under the toolkit's names
(``Bleu_1`` … ``Bleu_4``, ``METEOR``, ``ROUGE_L``, ``CIDEr``, ``SPICE``), on its 0–1 scale:

- ``pycocoevalcap``: the toolkit itself: Java PTB tokenizer, BLEU, METEOR (Java), ROUGE-L, CIDEr-D and,
  only when its Stanford models are already installed, SPICE. Its temporary files and Java processes stay
  in here: the METEOR process is closed after scoring.
- ``python``: the Java-free :mod:`captioning.metrics` path (BLEU, ROUGE-L, CIDEr-D; equal to the toolkit on
  tokenized input, tokenization approximates the Java PTB tokenizer).

``auto`` picks ``pycocoevalcap`` when ``java`` is on the PATH, else ``python``. Whatever cannot be computed
(no Java, no SPICE models, a METEOR failure) becomes a one-line note and every other metric is still
reported.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from captioning.metrics.caption_metrics import caption_scores
from captioning.core.registry import Registry

BACKENDS = ("auto", "pycocoevalcap", "python")
BLEU = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4")
METRIC_NAMES = (*BLEU, "METEOR", "ROUGE_L", "CIDEr", "SPICE")


@dataclass
class CaptionScores:
    """Caption metrics of one evaluation.

    Attributes:
        backend: The backend that computed them (``pycocoevalcap`` or ``python``).
        corpus: Metric name -> corpus value (toolkit scale; BLEU is corpus BLEU).
        per_image: Image id -> metric name -> that image's value.
        notes: One line per metric or step that was skipped, and why.
    """

    backend: str
    corpus: dict[str, float] = field(default_factory=dict)
    per_image: dict[int, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, corpus: float, per_image: Sequence[float], ids: Sequence[int]) -> None:
        """Records one metric's corpus value and its per-image values (in ``ids`` order)."""
        self.corpus[name] = float(corpus)
        for image_id, value in zip(ids, per_image):
            self.per_image.setdefault(image_id, {})[name] = float(value)


Scorer = Callable[[Mapping[int, Sequence[str]], Mapping[int, str]], CaptionScores]
SCORERS: Registry[CaptionScores] = Registry("metric backend")


def score_captions(references: Mapping[int, Sequence[str]], predictions: Mapping[int, str],
                   backend: str = "auto") -> CaptionScores:
    """Scores one predicted caption per image against its references.

    Args:
        references: Image id -> raw reference captions (at least one each).
        predictions: Image id -> raw predicted caption, for exactly the same ids.
        backend: ``auto``, ``pycocoevalcap`` or ``python`` (see the module docstring).

    Returns:
        The scores, with notes on anything skipped.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown metric backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if set(references) != set(predictions) or not predictions:
        raise ValueError("references and predictions must cover the same, non-empty set of image ids")
    if backend != "auto":
        return SCORERS.get(backend)(references, predictions)
    if java_available():
        try:
            return SCORERS.get("pycocoevalcap")(references, predictions)
        except ImportError as err:  # a runtime dependency, but a hand-made environment may lack it
            reason = f"pycocoevalcap is not installed ({err}; pip install pycocoevalcap)"
        except (OSError, RuntimeError, subprocess.SubprocessError) as err:
            reason = f"the Java PTB tokenizer failed ({type(err).__name__}: {err})"
    else:
        reason = "java not found"
    scores = SCORERS.get("python")(references, predictions)
    scores.notes = [f"{reason}: BLEU, ROUGE-L and CIDEr-D from the Java-free path; METEOR and SPICE (Java) skipped"]
    return scores


def java_available() -> bool:
    """Whether a ``java`` executable is on the PATH."""
    return shutil.which("java") is not None


@SCORERS.register("python")
def _score_python(references: Mapping[int, Sequence[str]], predictions: Mapping[int, str]) -> CaptionScores:
    corpus, per_image, ids = caption_scores(references, predictions)  # the metrics training logs, per image too
    scores = CaptionScores("python")
    for name, value in corpus.items():
        scores.add(name, value, per_image[name], ids)
    scores.notes.append("python backend: METEOR and SPICE (Java) not computed")
    return scores


@SCORERS.register("pycocoevalcap")
def _score_toolkit(references: Mapping[int, Sequence[str]], predictions: Mapping[int, str]) -> CaptionScores:
    if not java_available():
        raise RuntimeError("the pycocoevalcap backend needs java on the PATH (use --backend python or auto)")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    ids = sorted(references)
    with _quiet():
        gts = PTBTokenizer().tokenize({i: [{"caption": c} for c in references[i]] for i in ids})
        res = PTBTokenizer().tokenize({i: [{"caption": predictions[i]}] for i in ids})
    if set(gts) != set(ids) or set(res) != set(ids):
        raise RuntimeError("the Java PTB tokenizer did not return every caption (is java working?)")
    gts, res = {i: gts[i] for i in ids}, {i: res[i] for i in ids}
    scores = CaptionScores("pycocoevalcap")
    bleu, bleu_images = Bleu(4).compute_score(gts, res, verbose=0)
    for k, name in enumerate(BLEU):
        scores.add(name, bleu[k], bleu_images[k], ids)
    _try_meteor(scores, gts, res, ids)
    rouge, rouge_images = Rouge().compute_score(gts, res)
    scores.add("ROUGE_L", rouge, rouge_images, ids)
    cider, cider_images = Cider().compute_score(gts, res)
    scores.add("CIDEr", cider, cider_images, ids)
    _try_spice(scores, gts, res, ids)
    return scores


def _try_meteor(scores: CaptionScores, gts: dict, res: dict, ids: list[int]) -> None:
    """Adds METEOR (its own Java process, closed afterwards), or a note saying why it is missing."""
    from pycocoevalcap.meteor.meteor import Meteor

    meteor = None
    try:
        meteor = Meteor()
        score, per_image = meteor.compute_score(gts, res)
        scores.add("METEOR", score, per_image, ids)
    except (OSError, ValueError, RuntimeError) as err:
        scores.notes.append(f"METEOR skipped: the METEOR Java process failed ({type(err).__name__}: {err})")
    finally:
        if meteor is not None:
            meteor.meteor_p.stdin.close()
            meteor.meteor_p.kill()
            meteor.meteor_p.wait()
            meteor.meteor_p.stdout.close()
            meteor.meteor_p.stderr.close()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silences the toolkit's prints and its Java subprocesses' progress lines (file descriptors 1 and 2)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(io.StringIO()):
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def spice_available() -> bool:
    """Whether SPICE's Stanford CoreNLP models are installed (the toolkit would otherwise download them)."""
    import pycocoevalcap.spice.spice as spice

    lib = Path(spice.__file__).parent / "lib"
    return (lib / "stanford-corenlp-3.6.0.jar").is_file() and (lib / "stanford-corenlp-3.6.0-models.jar").is_file()


def _try_spice(scores: CaptionScores, gts: dict, res: dict, ids: list[int]) -> None:
    """Adds SPICE when its models are installed, else a note; never downloads anything."""
    if not spice_available():
        scores.notes.append("SPICE skipped: its Stanford CoreNLP models are not installed "
                            "(pycocoevalcap/spice/get_stanford_models.py downloads them)")
        return
    from pycocoevalcap.spice.spice import Spice

    try:
        with _quiet():
            score, per_image = Spice().compute_score(gts, res)
        scores.add("SPICE", score, [row["All"]["f"] for row in per_image], ids)
    except (OSError, ValueError, KeyError, subprocess.SubprocessError) as err:
        scores.notes.append(f"SPICE skipped: {type(err).__name__}: {err}")
