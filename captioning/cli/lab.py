"""``captioning lab EXPERIMENT [--config FILE] [--out DIR] [--quick] [--key value ...]``.

Builds the experiment's config (defaults, then the YAML file, then the ``--quick`` preset, then the
overrides), runs it, writes ``results.json`` and its figures into ``--out`` (default
``runs/lab/<experiment>``) and prints its tables. Also ``python -m captioning.cli.lab``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

from captioning.lab import charlm, gradflow, interpret, modern, tasks, toy
from captioning.lab.config import ConfigError, field_types, load_config
from captioning.lab.render import format_table


class Experiment(NamedTuple):
    """A lab experiment: its config dataclass, ``run(config, out)`` and the ``--quick`` preset."""

    config: type
    run: Callable[[Any, Path], dict]
    quick: Mapping[str, Any]
    summary: str


EXPERIMENTS: dict[str, Experiment] = {
    "toy": Experiment(toy.ToyConfig, toy.run, toy.QUICK, "hand-built and trained RNN for 'two 1s in a row'"),
    "charlm": Experiment(charlm.CharLMConfig, charlm.run, charlm.QUICK,
                         "char LM variants, bits/char, BPTT memory, greedy vs sampling"),
    "gradflow": Experiment(gradflow.GradFlowConfig, gradflow.run, gradflow.QUICK,
                           "||dL/dh_t|| vs the scale of W_hh, and gradient clipping"),
    "interpret": Experiment(interpret.InterpretConfig, interpret.run, interpret.QUICK,
                            "char LM units that track strings, line position, indentation"),
    "tasks": Experiment(tasks.TasksConfig, tasks.run, tasks.QUICK,
                        "many-to-one classification and one-to-many generation"),
    "modern": Experiment(modern.ModernConfig, modern.run, modern.QUICK,
                         "LSTM vs RWKV vs Mamba vs Transformer: bits/char, cost vs length, decoding state"),
}


def _parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:10s} {e.summary}" for name, e in EXPERIMENTS.items())
    parser = argparse.ArgumentParser(
        prog="captioning lab", allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Runs an RNN lab experiment.\n\nexperiments:\n" + listing,
        epilog="Any other --key value sets that config key (see 'captioning lab EXPERIMENT --keys').")
    parser.add_argument("experiment", help="one of: " + ", ".join(EXPERIMENTS))
    parser.add_argument("--config", help="YAML file of config keys to change")
    parser.add_argument("--out", help="output directory (default: runs/lab/<experiment>)")
    parser.add_argument("--quick", action="store_true", help="smaller settings for a fast check")
    parser.add_argument("--keys", action="store_true", help="list the experiment's config keys and exit")
    return parser


def _keys(experiment: Experiment) -> str:
    defaults = experiment.config()
    return "\n".join(f"  --{name} ({kind.__name__ if isinstance(kind, type) else kind}, "
                     f"default {getattr(defaults, name)!r})" for name, kind in field_types(experiment.config).items())


def main(argv: Sequence[str] | None = None) -> dict | None:
    """Runs one experiment from command-line arguments and returns its results.

    Bad input (unknown experiment, unknown key, bad value, missing file) exits with status 2 and a message
    naming it.
    """
    parser = _parser()
    args, overrides = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    if args.experiment not in EXPERIMENTS:
        parser.error(f"unknown experiment {args.experiment!r}; choose one of {', '.join(EXPERIMENTS)}")
    experiment = EXPERIMENTS[args.experiment]
    if args.keys:
        print(f"config keys of {args.experiment}:\n{_keys(experiment)}")
        return None
    try:
        config = load_config(experiment.config, args.config, overrides, experiment.quick if args.quick else None)
        out = Path(args.out or Path("runs") / "lab" / args.experiment)
        start = time.perf_counter()
        results = experiment.run(config, out)
    except (ConfigError, FileNotFoundError) as err:
        parser.error(str(err))
    for title, rows in results.get("tables", {}).items():
        print(f"\n== {title} ==\n{format_table(rows)}")
    print(f"\n{args.experiment}: {time.perf_counter() - start:.1f} s; results and figures in {out}")
    return results


if __name__ == "__main__":
    main()
