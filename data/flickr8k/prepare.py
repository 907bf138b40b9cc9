"""Flickr8k with Karpathy's split: writes data/flickr8k/annotations/captions_karpathy_{train,val,test}.json.

Usage: ``python data/flickr8k/prepare.py [--root data/flickr8k] [--karpathy-file PATH] [--image-folder NAME]``
(see README.md beside this file).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from captioning.data.prepare import karpathy_main  # noqa: E402

if __name__ == "__main__":
    try:
        karpathy_main(None, "flickr8k", image_folder="Flicker8k_Dataset", id_field="imgid")
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
