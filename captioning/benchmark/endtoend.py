"""End-to-end ``captioning caption`` throughput with the pretrained encoder, against the encoder alone.

Four rates on the same photographs, in images/s: the encoder's forward pass alone on images already in
memory; the command's image loader (same dataset, workers and batches) feeding the encoder, without decoding;
decoding alone from the pooled features; and the whole ``captioning caption`` command (reading with
DataLoader workers, encoding, decoding, journaling, the final atomic write). With ``<END>`` made
unreachable every caption has the workload's length (the slowest case); ``words=10`` stands for a trained
decoder whose captions average ten words (finished captions leave the batch).

It also measures the CPU time each stage needs per image on one thread (reading and resizing a photo, the
encoder, decoding). When the command and the encoder alone use the cores equally well, caption/encoder
cannot exceed the encoder's share of that CPU work (``encoder_share_of_cpu``): a CPU-only machine has no
idle cores to hide the other stages on.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import torch

from captioning.benchmark.timing import measure
from captioning.benchmark.workload import Workload, make_decoder
from captioning.inference.engine import DecodeOptions
from captioning.inference.output import CaptionJob
from captioning.training.predict import caption_collection
from captioning.inference.checkpoint import save_captioner
from captioning.data.images import load_image
from captioning.data.images import ImageRef, image_loader
from captioning.models.captioner import Captioner
from captioning.models.encoders import TimmEncoder
from captioning.data.vocab import Vocabulary

DEFAULT_PHOTOS = Path(__file__).resolve().parents[2].parent / "shared" / "coco-mini"
IMAGE_SIZE = 224


def photo_paths(root: Path, limit: int) -> list[Path]:
    """Up to ``limit`` JPEG photos under ``root`` (sorted, so runs are comparable)."""
    return sorted(root.rglob("*.jpg"))[:limit]


def untrained_captioner(w: Workload) -> tuple[Captioner, Vocabulary]:
    """The pretrained ``tf_efficientnet_lite0`` encoder (offline weights) with a workload-sized decoder; the
    decoder's weights do not matter for speed, the caption lengths do: ``<END>`` is made unreachable."""
    torch.manual_seed(0)
    encoder = TimmEncoder()
    vocab = Vocabulary([f"word{i}" for i in range(w.vocab_size - 4)])
    decoder = make_decoder(w, len(vocab), encoder.out_dim)
    with torch.no_grad():
        decoder.out.bias[Vocabulary.end_id] = -1e9
    return Captioner(encoder, decoder).eval(), vocab


def _loader_and_encoder(model: Captioner, paths: list[Path], batch_size: int, num_workers: int,
                        device: torch.device) -> Callable[[], None]:
    """The command's image loader (same dataset, collate, workers) feeding the encoder, with no decoding."""
    refs = [ImageRef(str(p), p) for p in paths]

    @torch.no_grad()
    def run() -> None:
        for batch in image_loader(refs, IMAGE_SIZE, batch_size, num_workers):
            model.encode(batch["image"].to(device))

    return run


def _cpu_budget(paths: list[Path], encoder: Callable[[], None], decoding: Callable[[], None], device: torch.device,
                repeats: int) -> dict:
    """CPU seconds per image of reading + resizing, of the encoder and of decoding, each on one thread (no
    synchronization or spinning between threads), and the encoder's share of their sum."""

    def reading() -> None:
        for path in paths:
            load_image(path, IMAGE_SIZE)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cpu = measure({"reading": reading, "encoder": encoder, "decoding": decoding}, device, warmup=0,
                      repeats=max(1, repeats), clock="cpu")
    finally:
        torch.set_num_threads(threads)
    per_image = {name: t.median / len(paths) for name, t in cpu.items()}
    return {"cpu_seconds_per_image": per_image, "encoder_share_of_cpu": per_image["encoder"] / sum(per_image.values())}


def bench_end_to_end(w: Workload, device: torch.device, photos: Path | None, images: int, batch_size: int,
                     warmup: int, repeats: int, clock: str, num_workers: int = 2) -> dict:
    """Images per second of ``captioning caption``, of the encoder alone (in memory, and fed by the command's
    loader) and of decoding alone on the same photos; skipped with the reason when the photos are absent."""
    root = photos or DEFAULT_PHOTOS
    paths = photo_paths(root, images) if root.is_dir() else []
    if not paths:
        return {"skipped": f"no photos under {root} (pass --photos DIR with .jpg files)"}
    model, vocab = untrained_captioner(w)
    model = model.to(device)
    pixels = torch.stack([load_image(p, IMAGE_SIZE) for p in paths]).split(batch_size)  # (B, 3, S, S) each
    with torch.no_grad():
        features = [model.encode(batch.to(device)) for batch in pixels]  # (B, D) each

    @torch.no_grad()
    def encoder_alone() -> None:
        for batch in pixels:
            model.encode(batch.to(device))

    @torch.no_grad()
    def decoding_alone() -> None:
        for v in features:
            model.generate_from_features(v, w.words, w.beam_size)

    # CPU only: on a GPU the stages do not compete for the same cores.
    budget = _cpu_budget(paths, encoder_alone, decoding_alone, device, repeats) if device.type == "cpu" else {}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_captioner(Path(tmp) / "captioner.ckpt", model.cpu(), vocab, image_size=IMAGE_SIZE)
        model.to(device)
        listing = Path(tmp) / "images.txt"
        listing.write_text("".join(f"{p.resolve()}\n" for p in paths))
        options = DecodeOptions(beam_size=w.beam_size, max_len=w.words)

        def caption() -> None:  # what `captioning caption --images LISTING --output OUT.jsonl` runs
            caption_collection(CaptionJob(listing, Path(tmp) / "out.jsonl"), ckpt, options, batch_size, num_workers,
                               device.type, progress=False)

        timings = measure({"caption": caption, "encoder alone": encoder_alone,
                           "decoding alone": decoding_alone, "reading + encoder": _loader_and_encoder(
                               model, paths, batch_size, num_workers, device)}, device, warmup, repeats, clock)
    rates = {name: t.rate(len(paths)) for name, t in timings.items()}
    return {**budget, "images": len(paths), "batch_size": batch_size, "beam_size": w.beam_size, "words": w.words,
            "num_workers": num_workers, "photos": str(root), "caption_images_per_s": rates["caption"],
            "encoder_images_per_s": rates["encoder alone"], "decoding_images_per_s": rates["decoding alone"],
            "reading_encoder_images_per_s": rates["reading + encoder"],
            "caption_over_encoder": rates["caption"]["median"] / rates["encoder alone"]["median"],
            "caption_over_reading_encoder": rates["caption"]["median"] / rates["reading + encoder"]["median"]}
