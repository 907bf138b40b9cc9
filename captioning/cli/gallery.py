"""``captioning gallery``: an HTML gallery of batch-captioning output (see :mod:`captioning.evaluation.gallery`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from captioning.data.coco import read_instances
from captioning.data.results import InputError, read_caption_rows
from captioning.evaluation.evaluate import CHAIR_MODES, write_outputs
from captioning.evaluation.gallery import gallery_items, render_gallery
from captioning.metrics.chair import table_for


def main(argv: Sequence[str] | None = None) -> Path:
    """Runs ``captioning gallery``; bad input exits with status 2 and a message naming the file."""
    parser = argparse.ArgumentParser(prog="captioning gallery", allow_abbrev=False,
                                     description="HTML gallery of generated captions.")
    parser.add_argument("captions", help="JSON Lines (image_id, file_name, caption, score) or a COCO results list")
    parser.add_argument("--images", required=True, help="folder the file names are relative to")
    parser.add_argument("--output", required=True, help="gallery folder (index.html is written there)")
    parser.add_argument("--annotations", help="captions_*.json: references and file names")
    parser.add_argument("--instances", help="instances_*.json: hallucinated objects are highlighted")
    parser.add_argument("--synonyms", help="CHAIR synonym table (a file, or coco / shapes): object mentions are "
                                           "marked; default with --instances: the packaged table of its categories")
    parser.add_argument("--chair-mode", choices=CHAIR_MODES, default="reference")
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        synonyms = args.synonyms
        if args.instances and not synonyms:
            synonyms = table_for(c["name"] for c in read_instances(args.instances)["categories"])
            if synonyms is None:
                raise InputError(f"no packaged CHAIR synonym table names every category of {args.instances}: "
                                 "pass --synonyms")
        rows = read_caption_rows(args.captions)
        items = gallery_items(rows, Path(args.images), args.annotations, args.instances, synonyms, args.chair_mode)
        files = render_gallery(items, Path(args.output), title=Path(args.captions).name)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    write_outputs(files)
    print(f"wrote {Path(args.output) / 'index.html'} ({len(items)} images)")
    return Path(args.output) / "index.html"
