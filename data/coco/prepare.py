"""COCO captions: check and count the official 2014/2017 files, or convert the Karpathy split.

Usage: ``python data/coco/prepare.py [--root data/coco] [--year 2017|2014]`` or
``python data/coco/prepare.py --karpathy [--karpathy-file PATH] [--restval train|val|drop]``
(see README.md beside this file).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from captioning.data.prepare import coco_main  # noqa: E402

if __name__ == "__main__":
    try:
        coco_main()
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
