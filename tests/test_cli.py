"""`captioning fit` from a config file, and the checkpoint → caption round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from captioning.inference.checkpoint import load_captioner
from captioning.cli.fit import cli_main
from captioning.inference.engine import caption_files
from conftest import last_checkpoint, shapes_overrides

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fitted(tiny_shapes: Path, tmp_path_factory):
    """A two-epoch `fit` of configs/shapes.yaml on the tiny dataset."""
    out = tmp_path_factory.mktemp("fit")
    cli = cli_main(["fit", "--config", str(REPO / "configs/shapes.yaml"), *shapes_overrides(tiny_shapes),
                    f"--trainer.default_root_dir={out}", "--trainer.max_epochs=2",
                    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"])
    return cli, out


def test_fit_from_config_logs_metrics_and_saves_checkpoints_and_config(fitted) -> None:
    cli, out = fitted
    assert cli.trainer.current_epoch == 2
    logged = cli.trainer.logged_metrics
    for key in ("val/Bleu_4", "val/CIDEr", "val/CHAIRs", "val/CHAIRi", "train/loss"):
        assert key in logged and torch.isfinite(logged[key])
    ckpt = Path(last_checkpoint(cli.trainer))
    assert ckpt.is_file() and ckpt.name == "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == cli.trainer.global_step  # the final weights
    assert (Path(cli.trainer.log_dir) / "config.yaml").is_file()  # the run's config beside its checkpoints
    # Derived values are linked from the data, not written in the config.
    assert cli.model.captioner.decoder.vocab_size == len(cli.datamodule.vocab)
    assert cli.model.hparams.image_size == 32


def test_checkpoint_alone_captions_images_like_the_trained_module(fitted) -> None:
    cli, _ = fitted
    ckpt = last_checkpoint(cli.trainer)
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)  # no arbitrary unpickling needed
    assert raw["captioning"]["decoder"]["cell"] == "lstm"
    loaded = load_captioner(ckpt)
    assert loaded.vocab == cli.datamodule.vocab and loaded.image_size == 32
    images = cli.datamodule.images("test")
    got = caption_files(loaded, [img.path for img in images], batch_size=len(images), max_len=24)
    module = cli.model.eval()
    batch = torch.stack([cli.datamodule.test_dataloader().dataset[i]["image"] for i in range(len(images))])
    expected, scores = module.decode(batch)
    assert [c for c, _ in got] == expected
    torch.testing.assert_close(torch.tensor([s for _, s in got]), scores)


def test_checkpoint_names_every_component_and_old_checkpoints_still_load(fitted, tmp_path: Path) -> None:
    cli, _ = fitted
    raw = torch.load(last_checkpoint(cli.trainer), map_location="cpu", weights_only=True)
    assert raw["captioning"]["encoder"]["name"] == "small_cnn" and raw["captioning"]["decoder"]["name"] == "rnn"
    del raw["captioning"]["decoder"]["name"]  # the format written before decoders were registered
    torch.save(raw, tmp_path / "old.ckpt")
    old, new = load_captioner(tmp_path / "old.ckpt"), load_captioner(last_checkpoint(cli.trainer))
    for a, b in zip(old.model.state_dict().values(), new.model.state_dict().values()):
        assert torch.equal(a, b)
    images = [img.path for img in cli.datamodule.images("test")]
    assert caption_files(old, images, max_len=24) == caption_files(new, images, max_len=24)


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_checkpoint_is_portable_no_path_of_this_machine_in_it(fitted, tiny_shapes: Path, tmp_path: Path) -> None:
    cli, out = fitted
    raw = torch.load(last_checkpoint(cli.trainer), map_location="cpu", weights_only=True)
    assert raw["hyper_parameters"]["synonyms"] == "shapes"  # the packaged table's name, not its path
    local = [s for s in _strings(raw["hyper_parameters"]) + _strings(raw["captioning"])
             if s.startswith("/") or str(out) in s or str(tiny_shapes) in s]
    assert not local, local
    moved = tmp_path / "elsewhere" / "model.ckpt"  # evaluated from another folder
    moved.parent.mkdir()
    moved.write_bytes(Path(last_checkpoint(cli.trainer)).read_bytes())
    run = cli_main(["test", "--config", str(REPO / "configs/shapes.yaml"), *shapes_overrides(tiny_shapes),
                    f"--trainer.default_root_dir={tmp_path}", f"--ckpt_path={moved}",
                    "--trainer.enable_progress_bar=false"])
    assert "test/CHAIRs" in run.trainer.logged_metrics


def test_validate_and_test_subcommands_run_from_a_checkpoint(fitted, tiny_shapes: Path) -> None:
    cli, out = fitted
    ckpt = last_checkpoint(cli.trainer)
    for sub in ("validate", "test"):
        run = cli_main([sub, "--config", str(REPO / "configs/shapes.yaml"), *shapes_overrides(tiny_shapes),
                        f"--trainer.default_root_dir={out}", f"--ckpt_path={ckpt}",
                        "--trainer.enable_progress_bar=false"])
        for key in ("Bleu_4", "CHAIRs", "CHAIRi"):
            assert f"{'val' if sub == 'validate' else 'test'}/{key}" in run.trainer.logged_metrics


def test_predict_subcommand_writes_one_caption_per_image(fitted, tiny_shapes: Path) -> None:
    cli, out = fitted
    cli_main(["predict", "--config", str(REPO / "configs/shapes.yaml"), *shapes_overrides(tiny_shapes),
                    f"--trainer.default_root_dir={out}", f"--ckpt_path={last_checkpoint(cli.trainer)}",
                    "--trainer.enable_progress_bar=false"])
    written = json.loads((out / "predictions.json").read_text())  # COCO results format, sorted by id
    assert [r["image_id"] for r in written] == sorted(img.image_id for img in cli.datamodule.images("test"))
    assert all(isinstance(r["caption"], str) and isinstance(r["score"], float) for r in written)


def test_unknown_config_key_is_rejected_with_its_name(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  decoder:\n    class_path: captioning.models.RNNDecoder\n"
                   "    init_args:\n      hiden_dim: 64\n")
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(REPO / "configs/shapes.yaml"), "--config", str(bad)])
    assert "hiden_dim" in capsys.readouterr().err
