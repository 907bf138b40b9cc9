"""The stages of the scale rehearsal, each run alone in a fresh process:
``python -m captioning.benchmark.scale_stages STAGE ROOT WORK FRACTION``.

ROOT is a synthetic COCO 2014 (:mod:`captioning.data.synthetic_coco`); WORK a scratch folder for the stage.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import importlib

from captioning.data.coco import read_caption_file, read_instance_categories
from captioning.data.vocab import Vocabulary

NEEDS = {  # what a stage imports before its clock starts (the others are not loaded at all)
    "datamodule_setup": ["captioning.training.datamodules"], "train_loader_epoch": ["captioning.training.datamodules"],
    "val_metrics_5k": ["captioning.metrics"], "gather_rows_2ranks": ["torch.distributed"],
    "scst_document_frequencies": ["captioning.training.scst"],
    "caption_resume": ["captioning.inference.checkpoint", "captioning.models"],
    "feature_cache": ["captioning.inference.features", "captioning.data.features", "captioning.models"]}
VAL_METRICS_IMAGES = 5_000  # at fraction 1.0; the stage scores 5,000 × fraction images


def _files(root: Path, split: str) -> tuple[Path, Path, Path]:
    return root / f"annotations/captions_{split}.json", root / f"annotations/instances_{split}.json", root / split


def annotations_vocab(root: Path, work: Path, fraction: float) -> None:
    """Reads the training captions and builds the vocabulary (min count 5, as the data module does)."""
    captions, _, images = _files(root, "train2014")
    Vocabulary.build((c for img in read_caption_file(captions, images) for c in img.captions), min_count=5)


def _datamodule(root: Path):
    from captioning.training.datamodules import CaptionDataModule

    return CaptionDataModule(str(root), train_split="train2014", val_split="val2014", test_split="val2014",
                             image_size=8, batch_size=64, eval_batch_size=256, num_workers=0)


def datamodule_setup(root: Path, work: Path, fraction: float) -> None:
    """What ``fit`` does before the first batch: both splits, the val instances, the vocabulary, CHAIR's table."""
    dm = _datamodule(root)
    dm.images("train"), dm.images("val"), dm.categories("val")
    assert dm.vocab_size > 4 and dm.synonyms == "coco"


def train_loader_epoch(root: Path, work: Path, fraction: float) -> None:
    """One pass of the training loader over every training image and its captions (no model)."""
    dm = _datamodule(root)
    seen = sum(len(batch["image_id"]) for batch in dm._loader("train"))
    assert seen == len(dm.images("train")), (seen, len(dm.images("train")))


def _predictions(root: Path, limit: int | None = None) -> tuple[dict[int, list[str]], dict[int, str], dict]:
    import json
    captions, instances, images = _files(root, "val2014")
    refs = {img.image_id: list(img.captions) for img in read_caption_file(captions, images)}
    results = json.loads((root / "results_val2014.json").read_text())[:limit]
    preds = {r["image_id"]: r["caption"] for r in results}
    return {i: refs[i] for i in preds}, preds, read_instance_categories(instances)


def val_metrics_5k(root: Path, work: Path, fraction: float) -> None:
    """Reads 5,000 × fraction decoded captions and scores them as the validation hook does: BLEU/ROUGE/CIDEr, CHAIR."""
    from captioning.metrics import compute_caption_metrics
    from captioning.metrics.chair import Chair

    refs, preds, categories = _predictions(root, max(1, round(VAL_METRICS_IMAGES * fraction)))
    compute_caption_metrics(refs, preds)
    chair = Chair.from_file("coco")
    chair.evaluate(preds, chair.ground_truths(list(preds), categories, refs))


def _evaluate(root: Path, work: Path, backend: str) -> None:
    captions, instances, _ = _files(root, "val2014")
    subprocess.run([sys.executable, "-m", "captioning.cli.main", "evaluate", "--results",
                    str(root / "results_val2014.json"), "--annotations", str(captions), "--instances",
                    str(instances), "--synonyms", "coco", "--backend", backend, "--output",
                    str(work / "METRICS.json")], check=True, stdout=subprocess.DEVNULL)


def evaluate_40k_python(root: Path, work: Path, fraction: float) -> None:
    """``captioning evaluate --backend python`` with CHAIR over every val image."""
    _evaluate(root, work, "python")


def evaluate_40k_toolkit(root: Path, work: Path, fraction: float) -> None:
    """``captioning evaluate --backend pycocoevalcap`` (the COCO caption toolkit, Java) with CHAIR over every val
    image."""
    _evaluate(root, work, "pycocoevalcap")


def _gather_rank(rank: int, world_size: int, root: Path, init_file: Path, seconds) -> None:
    import torch.distributed as dist

    from captioning.training.distributed import gather_objects

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        refs, preds, categories = _predictions(root)
        ids = sorted(preds)[rank::world_size]  # the distributed sampler's interleaved shard
        rows = [{"image_id": i, "caption": preds[i], "references": refs[i], "categories": categories.get(i, [])}
                for i in ids]
        dist.barrier()
        start = time.perf_counter()
        merged = {row["image_id"]: row for row in gather_objects(rows, world_size)}  # as the validation hook
        seconds[rank] = time.perf_counter() - start
        assert len(merged) == len(preds), (len(merged), len(preds))
    finally:
        dist.destroy_process_group()


def gather_rows_2ranks(root: Path, work: Path, fraction: float) -> float:
    """The validation hook's gather of every val image's row (caption, references, categories) across 2 CPU
    processes (gloo), then the merge by image; returns the slower rank's seconds for the gather and merge alone
    (spawning the ranks and reading the files are in the process's time)."""
    import torch.multiprocessing as mp

    init_file = work / "gloo-init"
    init_file.unlink(missing_ok=True)
    seconds = mp.get_context("spawn").Manager().dict()
    mp.spawn(_gather_rank, args=(2, root, init_file, seconds), nprocs=2, join=True)
    return max(seconds.values())


def scst_document_frequencies(root: Path, work: Path, fraction: float) -> None:
    """SCST's CIDEr-D statistics of the training references (tokenized, counted, cached to JSON)."""
    from captioning.training.scst import _scored, training_statistics

    captions, _, images = _files(root, "train2014")
    references = [[_scored(c) for c in img.captions] for img in read_caption_file(captions, images)]
    cache = work / "cider_stats.json"
    cache.unlink(missing_ok=True)  # a previous run's cache would be read instead of computing the statistics
    training_statistics(references, cache)


def _tiny_checkpoint(path: Path) -> Path:
    import torch

    from captioning.inference.checkpoint import save_captioner
    from captioning.models import Captioner, RNNDecoder, SmallCNN

    torch.manual_seed(0)
    encoder = SmallCNN(channels=(8, 16), out_dim=16, grid_size=2)
    vocab = Vocabulary.build(["a red blue green circle square triangle left right of the above below"])
    model = Captioner(encoder, RNNDecoder(len(vocab), encoder.out_dim, embed_dim=8, hidden_dim=16, cell="gru"))
    return save_captioner(path, model.eval(), vocab, 32)


def caption_resume(root: Path, work: Path, fraction: float) -> None:
    """``captioning caption`` over the val images, killed once half the images are journaled, then resumed."""
    ckpt = _tiny_checkpoint(work / "tiny.ckpt")
    captions, _, _ = _files(root, "val2014")
    out = work / "val.jsonl"
    command = [sys.executable, "-m", "captioning.cli.main", "caption", "--checkpoint", str(ckpt), "--images",
               str(captions), "--format", "jsonl", "--output", str(out), "--batch-size", "256", "--num-workers",
               "1", "--no-progress"]
    total = len(read_caption_file(captions, root / "val2014"))
    journal = work / "val.jsonl.parts" / "rank0.captions.jsonl"
    run = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    while run.poll() is None and (not journal.is_file() or journal.read_bytes().count(b"\n") < total // 2):
        time.sleep(0.05)
    run.kill()
    run.wait()
    subprocess.run(command + ["--resume"], check=True, stderr=subprocess.DEVNULL)
    assert out.read_bytes().count(b"\n") == total


def feature_cache(root: Path, work: Path, fraction: float) -> None:
    """Writes a pooled-feature cache of every val image (small CNN, 32 px) and reads every row back."""
    import torch

    from captioning.data.features import FeatureCache
    from captioning.inference.features import extract_split, update_index
    from captioning.models import SmallCNN

    captions, _, images = _files(root, "val2014")
    val = read_caption_file(captions, images)
    encoder = SmallCNN(channels=(8, 16), out_dim=16, grid_size=2).eval()
    folder = work / "features"
    shutil.rmtree(folder, ignore_errors=True)
    with torch.no_grad():
        entry = extract_split(encoder, val, folder, "val2014", 32, batch_size=256, num_workers=1)
    update_index(folder, {"encoder": "SmallCNN"}, "val2014", entry, "float32")
    split = FeatureCache(folder).split("val2014")
    assert sum(float(split.pooled(img.image_id)[0]) * 0 + 1 for img in val) == len(val)


STAGES: dict[str, Callable[[Path, Path, float], float | None]] = {  # a stage may return its own timed work
    f.__name__: f for f in (annotations_vocab, datamodule_setup, train_loader_epoch, val_metrics_5k,
                            evaluate_40k_python, evaluate_40k_toolkit, scst_document_frequencies,
                            gather_rows_2ranks, caption_resume, feature_cache)}


def main(argv: list[str] | None = None) -> None:
    """Runs one stage: ``STAGE ROOT WORK FRACTION``."""
    stage, root, work, fraction = argv if argv is not None else sys.argv[1:]
    if stage not in STAGES:
        raise SystemExit(f"unknown stage {stage!r}; choose from {', '.join(STAGES)}")
    Path(work).mkdir(parents=True, exist_ok=True)
    for module in NEEDS.get(stage, []):
        importlib.import_module(module)
    start = time.perf_counter()  # the stage's work, after the imports every stage shares
    own = STAGES[stage](Path(root), Path(work), float(fraction))
    print(f"STAGE_SECONDS {time.perf_counter() - start if own is None else own:.6f}")


if __name__ == "__main__":
    main()
