"""Throughput of ``captioning caption`` against the encoder's own forward pass on the same photographs.

Usage: ``python scripts/bench_caption.py [--images ../shared/coco-mini] [--repeat 4] [--batch-size 32]
[--num-workers 2] [--beam-size 1] [--checkpoint CKPT] [--out bench.json]``

Without ``--checkpoint`` it builds the ``configs/coco.yaml`` captioner: the pretrained (offline) frozen
EfficientNet-Lite0 at 224 px and a 512/512 LSTM decoder over a 10,000-word vocabulary, with untrained decoder
weights, so greedy decoding runs to ``--max-len`` for every image (the slowest case). It measures, in images/s:

1. ``encoder``: the encoder's forward pass alone on images already in memory (after one warm-up batch);
2. ``encoder+loading``: the same forward pass fed by the same DataLoader (reading and resizing the files);
3. ``decoder``: decoding alone from the pooled features (greedy or beam);
4. ``caption``: the whole command (reading, encoding, decoding, journaling, the final merge and write).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from captioning.caption import main as caption_main  # noqa: E402
from captioning.checkpoint import load_captioner, save_captioner  # noqa: E402
from captioning.data.images import ImageFiles, collate_images, discover_images  # noqa: E402
from captioning.models import Captioner, RNNDecoder, TimmEncoder  # noqa: E402
from captioning.vocab import Vocabulary  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "coco-mini"


def coco_sized_checkpoint(path: Path, vocab_size: int) -> Path:
    """The configs/coco.yaml captioner (lite0 frozen, LSTM 512/512) with a synthetic vocabulary."""
    torch.manual_seed(0)
    encoder = TimmEncoder(freeze=True)
    vocab = Vocabulary([f"w{i}" for i in range(vocab_size - 4)])
    decoder = RNNDecoder(len(vocab), encoder.out_dim, embed_dim=512, hidden_dim=512, cell="lstm", dropout=0.3)
    return save_captioner(path, Captioner(encoder, decoder).eval(), vocab, image_size=224)


def image_list(source: Path, repeat: int, folder: Path) -> Path:
    """A list file naming every photo ``repeat`` times (through distinct symlinks, so none is deduplicated)."""
    refs = discover_images(source)
    lines = []
    for r in range(repeat):
        for i, ref in enumerate(refs):
            link = folder / f"{r}_{i}{ref.path.suffix}"
            link.symlink_to(ref.path.resolve())
            lines.append(link.name)
    listing = folder / "images.txt"
    listing.write_text("\n".join(lines) + "\n")
    return listing


@torch.inference_mode()
def component_rates(ckpt: Path, listing: Path, batch_size: int, num_workers: int, beam_size: int,
                    max_len: int) -> dict[str, float]:
    """Images/s of the encoder alone (on images in memory; fed by the DataLoader) and of decoding alone."""
    loaded = load_captioner(ckpt)
    encoder = loaded.model.encoder.eval()
    refs = discover_images(listing)

    def loader() -> DataLoader:
        return DataLoader(ImageFiles(refs, loaded.image_size), batch_size=batch_size, num_workers=num_workers,
                          collate_fn=collate_images)

    batches = [batch["image"] for batch in loader()]
    encoder(batches[0])  # warm-up
    start = time.perf_counter()
    for images in batches:
        encoder(images)
    memory_rate = len(refs) / (time.perf_counter() - start)
    start = time.perf_counter()
    features = [encoder(batch["image"])[0] for batch in loader()]
    fed_rate = len(refs) / (time.perf_counter() - start)
    start = time.perf_counter()
    for v in features:
        loaded.model.generate_from_features(v, max_len, beam_size)
    decoder_rate = len(refs) / (time.perf_counter() - start)
    return {"encoder": memory_rate, "encoder+loading": fed_rate, "decoder": decoder_rate}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=SHARED, help="folder of photographs")
    parser.add_argument("--repeat", type=int, default=4, help="caption every photo this many times")
    parser.add_argument("--checkpoint", type=Path, help="a trained checkpoint (default: the coco.yaml model)")
    parser.add_argument("--vocab-size", type=int, default=10000, help="vocabulary of the built model")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--beam-size", type=int, default=1)
    parser.add_argument("--max-len", type=int, default=20)
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = args.checkpoint or coco_sized_checkpoint(tmp / "coco_sized.ckpt", args.vocab_size)
        listing = image_list(args.images, args.repeat, tmp)
        rates = component_rates(ckpt, listing, args.batch_size, args.num_workers, args.beam_size, args.max_len)
        summary = caption_main(["--checkpoint", str(ckpt), "--images", str(listing), "--output",
                                str(tmp / "captions.jsonl"), "--batch-size", str(args.batch_size), "--num-workers",
                                str(args.num_workers), "--beam-size", str(args.beam_size), "--max-len",
                                str(args.max_len)])
    rates["caption"] = summary["captioned"] / summary["seconds"]
    figures = {"images captioned": summary["captioned"], "threads": torch.get_num_threads(), **vars(args),
               **{f"{k} images/s": round(v, 2) for k, v in rates.items()},
               "caption / encoder": round(rates["caption"] / rates["encoder"], 3),
               "caption / encoder+loading": round(rates["caption"] / rates["encoder+loading"], 3)}
    figures = {k: str(v) if isinstance(v, Path) else v for k, v in figures.items()}
    print(json.dumps(figures, indent=1))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1) + "\n")
    return figures


if __name__ == "__main__":
    main()
