"""Flickr30k with Karpathy's split: writes data/flickr30k/annotations/captions_karpathy_{train,val,test}.json.

Usage: ``python data/flickr30k/prepare.py [--root data/flickr30k] [--karpathy-file PATH] [--image-folder NAME]``
(see README.md beside this file).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from captioning.data.prepare import karpathy_main  # noqa: E402

if __name__ == "__main__":
    try:
        karpathy_main(None, "flickr30k", image_folder="flickr30k-images", id_field="imgid")
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
