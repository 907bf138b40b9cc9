"""End-to-end ``captioning caption`` throughput with the pretrained encoder, against the encoder alone."""

from __future__ import annotations

from pathlib import Path

import torch

from captioning.benchmark.timing import measure
from captioning.benchmark.workload import Workload
from captioning.checkpoint import LoadedCaptioner
from captioning.data.coco import load_image
from captioning.inference import caption_files
from captioning.models.captioner import Captioner
from captioning.models.decoder import RNNDecoder
from captioning.models.encoders import TimmEncoder
from captioning.vocab import Vocabulary

DEFAULT_PHOTOS = Path(__file__).resolve().parents[2].parent / "shared" / "coco-mini"
IMAGE_SIZE = 224


def photo_paths(root: Path, limit: int) -> list[Path]:
    """Up to ``limit`` JPEG photos under ``root`` (sorted, so runs are comparable)."""
    return sorted(root.rglob("*.jpg"))[:limit]


def untrained_captioner(w: Workload) -> LoadedCaptioner:
    """The pretrained ``tf_efficientnet_lite0`` encoder (offline weights) with a workload-sized decoder; the
    decoder's weights do not matter for speed, the caption lengths do: ``<END>`` is made unreachable."""
    encoder = TimmEncoder()
    vocab = Vocabulary([f"word{i}" for i in range(w.vocab_size - 4)])
    decoder = RNNDecoder(len(vocab), encoder.out_dim, w.embed_dim, w.hidden_dim, cell="lstm")
    with torch.no_grad():
        decoder.out.bias[Vocabulary.end_id] = -1e9
    return LoadedCaptioner(Captioner(encoder, decoder).eval(), vocab, IMAGE_SIZE, meta={})


def bench_end_to_end(w: Workload, device: torch.device, photos: Path | None, images: int, batch_size: int,
                     warmup: int, repeats: int, clock: str) -> dict:
    """Images per second of ``caption_files`` (reading, encoding, beam search) and of the encoder alone on
    the same already-loaded images; skipped with the reason when the photos are absent."""
    root = photos or DEFAULT_PHOTOS
    paths = photo_paths(root, images) if root.is_dir() else []
    if not paths:
        return {"skipped": f"no photos under {root} (pass --photos DIR with .jpg files)"}
    loaded = untrained_captioner(w)
    model = loaded.model.to(device)
    pixels = torch.stack([load_image(p, IMAGE_SIZE) for p in paths])  # (N, 3, S, S)

    @torch.no_grad()
    def encoder_alone() -> None:
        for batch in pixels.split(batch_size):
            model.encode(batch.to(device))

    def end_to_end() -> None:
        caption_files(loaded, paths, batch_size=batch_size, beam_size=w.beam_size, max_len=w.words,
                      device=str(device))

    timings = measure({"caption": end_to_end, "encoder alone": encoder_alone}, device, warmup, repeats, clock)
    return {"images": len(paths), "batch_size": batch_size, "beam_size": w.beam_size, "photos": str(root),
            "caption_images_per_s": timings["caption"].rate(len(paths)),
            "encoder_images_per_s": timings["encoder alone"].rate(len(paths))}
