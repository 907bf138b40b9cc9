"""Training options: label smoothing, torch.compile opt-in, init weights, precision flags."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as L
import torch
import torch.nn.functional as F

from captioning.training.captioning import CaptioningModule
from captioning.models import RNNDecoder, SmallCNN
from captioning.data.vocab import Vocabulary


def _module(**kwargs) -> CaptioningModule:
    vocab = Vocabulary.build(["a red circle", "two blue squares"])
    module = CaptioningModule(SmallCNN(channels=(8,), out_dim=8), partial(RNNDecoder, embed_dim=8, hidden_dim=16),
                              vocab=vocab, **kwargs)
    module.trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    module.log = lambda *args, **kw: None  # outside a training loop
    return module


def test_label_smoothing_is_cross_entropy_with_smoothed_targets_over_non_pad_tokens() -> None:
    module = _module(label_smoothing=0.1)
    logits, targets = torch.randn(2, 4, 9), torch.tensor([[4, 5, 2, 0], [6, 2, 0, 0]])
    expected = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=0, label_smoothing=0.1)
    torch.testing.assert_close(module.token_mean_loss(logits, targets), expected)
    assert not torch.allclose(_module().token_mean_loss(logits, targets), expected)


def test_compile_is_opt_in_and_keeps_checkpoint_keys() -> None:
    plain, compiled = _module(), _module(compile={"backend": "eager"})
    compiled.load_state_dict(plain.state_dict())
    compiled.configure_model()
    assert compiled.captioner.decoder._compiled_call_impl is not None
    assert plain.captioner.decoder._compiled_call_impl is None
    assert compiled.state_dict().keys() == plain.state_dict().keys()
    images, tokens = torch.rand(2, 3, 16, 16), torch.tensor([[1, 4, 5, 2], [1, 6, 2, 0]])
    plain.eval(), compiled.eval()
    torch.testing.assert_close(compiled.captioner(images, tokens), plain.captioner(images, tokens))


def test_init_weights_loads_a_checkpoint_and_names_a_mismatch(tmp_path: Path) -> None:
    source = _module()
    path = tmp_path / "ce.ckpt"
    torch.save({"state_dict": source.state_dict()}, path)
    loaded = _module(init_weights=str(path))
    for name, weight in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], weight)
    torch.save({"state_dict": {"captioner.decoder.out.weight": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match="ce.ckpt: weights do not fit"):
        _module(init_weights=str(path))


def test_slurm_layer_resolves_on_top_of_a_run_config(capsys) -> None:
    import yaml

    from captioning.cli.fit import cli_main

    repo = Path(__file__).resolve().parents[1]
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(repo / "configs/shapes.yaml"), "--config", str(repo / "configs/slurm.yaml"),
                  "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    assert (config["trainer"]["num_nodes"], config["trainer"]["devices"], config["trainer"]["strategy"]) == (2, 4, "ddp")
    assert config["data"]["class_path"].endswith("ShapesDataModule") and config["data"]["init_args"]["num_workers"] == 8
    assert config["data"]["init_args"]["batch_size"] == 32  # the run config's values are kept


def test_scheduled_sampling_objective_from_the_command_line(tiny_shapes: Path, tmp_path: Path) -> None:
    from captioning.cli.fit import cli_main
    from conftest import shapes_overrides

    repo = Path(__file__).resolve().parents[1]
    cli = cli_main(["fit", "--config", str(repo / "configs/shapes.yaml"), *shapes_overrides(tiny_shapes),
                    f"--trainer.default_root_dir={tmp_path}", "--trainer.fast_dev_run=2",
                    "--trainer.enable_progress_bar=false", "--model.objective=captioning.training.objectives.ScheduledSampling",
                    "--model.objective.init_args.ramp_steps=1"])
    assert cli.trainer.logged_metrics["train/sampling_prob"] == pytest.approx(0.25)
    assert torch.isfinite(cli.trainer.logged_metrics["train/loss"])
