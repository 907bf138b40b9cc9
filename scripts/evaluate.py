"""COCO caption metrics and CHAIR of a COCO results file: ``python scripts/evaluate.py --results … --annotations …``.

The same as ``captioning evaluate`` (see ``captioning/evaluation/evaluate.py`` for the options).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from captioning.evaluation.evaluate import main  # noqa: E402

if __name__ == "__main__":
    main()
