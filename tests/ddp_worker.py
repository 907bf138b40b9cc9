"""Runs fit (one epoch), validate, test and predict of a shapes config on N CPU processes; for
test_distributed.py. Rank 0 writes ``OUT/result.pt``: the weights after fit and every stage's metrics.

Usage: ``python tests/ddp_worker.py OUT [LightningCLI arguments...]`` (Lightning re-runs this file on each
extra rank).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from captioning.cli.fit import cli_main


def main(out: Path, args: list[str]) -> None:
    cli = cli_main([*args, f"--trainer.default_root_dir={out}"], run=False)
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    initial = {k: t.detach().clone() for k, t in model.state_dict().items()}
    trainer.fit(model, datamodule=data)
    result = {"fit_val": {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}}
    result["initial"] = initial
    result["state"] = {k: t.detach().clone() for k, t in model.state_dict().items()}
    result["validate"] = trainer.validate(model, datamodule=data, verbose=False)[0]
    result["test"] = trainer.test(model, datamodule=data, verbose=False)[0]
    trainer.predict(model, datamodule=data, return_predictions=False)
    if trainer.is_global_zero:
        result["predict"] = json.loads((out / "predictions.json").read_text())
        result["world_size"] = trainer.world_size
        torch.save(result, out / "result.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
