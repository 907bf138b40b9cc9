"""COCO caption metrics and CHAIR of a COCO results file.

Usage: ``python scripts/evaluate.py --results RESULTS.json --annotations CAPTIONS.json [...]``, the same as
``captioning evaluate`` (options: ``--help``, docs/evaluation.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from captioning.cli.evaluate import main  # noqa: E402

if __name__ == "__main__":
    main()
