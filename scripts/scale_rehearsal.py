"""Scale rehearsal: a synthetic COCO 2014 (official layout, real sizes) at several fractions, each stage timed
in a fresh process; writes OUT/scale.json and OUT/scale.md (the table of docs/scale.md).

    python scripts/scale_rehearsal.py --out runs/scale [--fraction 0.1 --fraction 0.3] [--stage NAME ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from captioning.benchmark.scale import STAGE_NAMES, rehearse  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    """Parses the options and runs the rehearsal."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/scale"), help="folder for the data and scale.json")
    p.add_argument("--fraction", type=float, action="append", help="fraction of COCO 2014 (repeatable; "
                                                                   "default 0.1, 0.3, 1.0)")
    p.add_argument("--stage", action="append", choices=STAGE_NAMES, help="stages to run (default: all)")
    args = p.parse_args(argv)
    report = rehearse(args.out, args.fraction or [0.1, 0.3, 1.0], args.stage)
    print(json.dumps(report["machine"]))
    print((args.out / "scale.md").read_text())
    return report


if __name__ == "__main__":
    main()
