"""Tracking: W&B offline (no network, no key) records history, config and sample tables; the default
logger records the resolved config; the API key is never written."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from captioning.cli.fit import cli_main
from captioning.training.tracking import table_rows
from conftest import shapes_overrides

REPO = Path(__file__).resolve().parents[1]
SECRET = "0123456789abcdef0123456789abcdef01234567"  # looks like a W&B key


def _fit(root: Path, out: Path, *extra: str):
    return cli_main(["fit", "--config", str(REPO / "configs/shapes.yaml"), *extra, *shapes_overrides(root),
                     f"--trainer.default_root_dir={out}", "--trainer.max_epochs=1", "--trainer.log_every_n_steps=1",
                     "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"])


def test_wandb_offline_run_holds_history_config_and_samples_without_the_key(
        tiny_shapes: Path, tmp_path: Path, monkeypatch) -> None:
    wandb = pytest.importorskip("wandb")
    from wandb_records import history_keys, records

    for var, value in {"WANDB_MODE": "offline", "WANDB_API_KEY": SECRET, "WANDB_DATA_DIR": tmp_path / "data",
                       "WANDB_CACHE_DIR": tmp_path / "cache", "WANDB_CONFIG_DIR": tmp_path / "config",
                       "WANDB_SILENT": "true"}.items():
        monkeypatch.setenv(var, str(value))
    cli = _fit(tiny_shapes, tmp_path, "--config", str(REPO / "configs/logger/wandb.yaml"),
               f"--trainer.logger.init_args.save_dir={tmp_path}")
    cli.trainer.logger.experiment.finish()
    wandb.finish()
    run_file = next(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    for _ in range(60):  # the wandb service may still be writing the run file
        if any(r.WhichOneof("record_type") == "exit" for r in records(run_file)):
            break
        time.sleep(0.5)
    keys = history_keys(run_file)
    assert {"train/loss", "val/Bleu_4", "val/CIDEr", "val/CHAIRs", "val/CHAIRi", "trainer/global_step"} <= keys
    assert any(k.startswith("val/samples/") for k in keys)  # the table, stored as a run artifact
    config = [r.config for r in records(run_file) if r.WhichOneof("record_type") == "config"]
    logged = {item.key: item.value_json for c in config for item in c.update}
    assert json.loads(logged["config"])["model"]["decoder"]["init_args"]["cell"] == "lstm"  # resolved config
    table = json.loads(next(run_file.parent.glob("files/media/table/val/samples_*.table.json")).read_text())
    columns = ["image", "image_id", "caption", "references", "categories", "hallucinated"]
    assert table["columns"] == columns and len(table["data"]) == 6
    for row in table["data"]:  # lists are joined with ", "; hallucinated: caption words naming absent shapes
        caption, truth, hallucinated = row[2], row[4].split(", "), [w for w in row[5].split(", ") if w]
        assert all(word in caption and word not in truth for word in hallucinated), row
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert not leaked


def test_default_logger_records_the_resolved_config(tiny_shapes: Path, tmp_path: Path) -> None:
    cli = _fit(tiny_shapes, tmp_path)
    hparams = yaml.safe_load((Path(cli.trainer.log_dir) / "hparams.yaml").read_text())
    assert hparams["config"]["trainer"]["max_epochs"] == 1 and hparams["config"]["seed_everything"] == 0
    assert list(Path(cli.trainer.log_dir).glob("events.out.tfevents.*"))  # TensorBoard metrics


def test_sample_table_columns_follow_the_evaluation_rows() -> None:
    rows = {2: {"image_id": 2, "caption": "a b", "references": ["a b", "a c"], "hallucinated": ["dog", "cat"]},
            1: {"image_id": 1, "caption": "c", "references": ["c"], "hallucinated": []}}
    columns, data = table_rows(rows, {1: Path("1.png")}, limit=5)
    assert columns == ["image", "image_id", "caption", "references", "hallucinated"]
    assert data == [[Path("1.png"), 1, "c", "c", ""], [None, 2, "a b", "a b\na c", "dog, cat"]]
