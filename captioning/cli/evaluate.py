"""``captioning evaluate``: COCO caption metrics and CHAIR of a COCO results file (see
:func:`captioning.evaluation.evaluate.evaluate`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from captioning.evaluation.evaluate import CHAIR_MODES, evaluate
from captioning.evaluation.toolkit import BACKENDS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="captioning evaluate", allow_abbrev=False,
                                     description="COCO caption metrics and CHAIR of a COCO results file.")
    parser.add_argument("--results", required=True, help="COCO results file: [{'image_id': int, 'caption': str}]")
    parser.add_argument("--annotations", required=True, help="official captions_*.json (references)")
    parser.add_argument("--instances", help="official instances_*.json (CHAIR ground truth)")
    parser.add_argument("--synonyms", help="CHAIR synonym table: a file, or a packaged table (coco, shapes); "
                                           "default: the packaged table that names the instance categories")
    parser.add_argument("--output", help="METRICS.json to write")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="caption metrics: pycocoevalcap (Java), python (Java-free), auto (default)")
    parser.add_argument("--chair-mode", choices=CHAIR_MODES, default="reference",
                        help="reference: the published CHAIR numbers (default); fixed: its quirks fixed")
    parser.add_argument("--gallery", help="folder for an HTML gallery")
    parser.add_argument("--report", help="folder for the hallucination report (needs CHAIR)")
    parser.add_argument("--images", help="image folder for the gallery (default: <root>/<split> of the "
                                         "official layout)")
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs ``captioning evaluate``; bad input exits with status 2 and a message naming the file."""
    parser = _parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        return evaluate(args.results, args.annotations, args.instances, args.synonyms, output=args.output,
                        backend=args.backend, chair_mode=args.chair_mode, gallery=args.gallery,
                        report=args.report, images=args.images)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
