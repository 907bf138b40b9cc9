"""Dataset preparation: Karpathy-split conversion on synthetic files, clear errors for missing files, and the
real-data path on ../shared/coco-mini (prepare, cache features, train a few steps, caption, evaluate)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from captioning.training import CaptionDataModule
from captioning.data.coco import read_caption_file
from captioning.data.prepare import coco_main, karpathy_main
from conftest import SHARED, requires_shared

REPO = Path(__file__).resolve().parents[1]
COCO_MINI = SHARED / "coco-mini"


def _karpathy_image(i: int, split: str, coco: bool) -> dict:
    words = ["a dog runs", "a cat sleeps on a mat", "two birds fly"][i % 3]
    img = {"filename": f"img{i}.jpg", "split": split, "imgid": i,
           "sentences": [{"raw": f"{words} {j}. ", "tokens": f"{words} {j}".split(), "imgid": i} for j in range(5)]}
    if coco:
        img.update(filepath="val2014" if i % 2 else "train2014", cocoid=1000 + i,
                   filename=f"COCO_{'val' if i % 2 else 'train'}2014_{1000 + i:012d}.jpg")
    return img


@pytest.fixture()
def karpathy(tmp_path: Path):
    """Writes a tiny Karpathy-format dataset (file + empty image files) and returns its root."""

    def make(name: str, folder: str, coco: bool) -> Path:
        root = tmp_path / name
        splits = ["train", "train", "restval", "val", "test", "test"]
        images = [_karpathy_image(i, s, coco) for i, s in enumerate(splits)]
        for img in images:
            path = root / folder / img.get("filepath", "") / img["filename"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        (root / f"dataset_{name}.json").write_text(json.dumps({"images": images, "dataset": name}))
        return root

    return make


def test_karpathy_flickr_file_becomes_official_caption_files(karpathy, capsys) -> None:
    root = karpathy("flickr8k", "Flicker8k_Dataset", coco=False)
    counts = karpathy_main(["--root", str(root), "--min-word-count", "1"], "flickr8k", "Flicker8k_Dataset", "imgid")
    assert {s: (c["images"], c["captions"]) for s, c in counts.items()} == {
        "karpathy_train": (3, 15), "karpathy_val": (1, 5), "karpathy_test": (2, 10)}  # restval joins train
    assert "karpathy_train: 3 images, 15 captions, vocabulary" in capsys.readouterr().out
    images = read_caption_file(root / "annotations/captions_karpathy_test.json", root)  # the one reader
    assert [i.image_id for i in images] == [4, 5] and images[0].path == root / "Flicker8k_Dataset/img4.jpg"
    assert images[0].captions[0] == "a cat sleeps on a mat 0."  # raw text, stripped
    layer = yaml.safe_load((REPO / "configs/karpathy.yaml").read_text())["data"]["init_args"]
    data = CaptionDataModule(root=str(root), **layer)
    assert [i.path for i in data.images("test")] == [i.path for i in images] and len(data.images("train")) == 3


def test_karpathy_coco_file_keeps_coco_ids_and_2014_folders(karpathy) -> None:
    root = karpathy("coco", "", coco=True)
    coco_main(["--root", str(root), "--karpathy", "--restval", "val"])
    val = read_caption_file(root / "annotations/captions_karpathy_val.json", root)
    assert [i.image_id for i in val] == [1002, 1003]  # restval moved to val, COCO ids
    assert all(i.path.is_file() and i.path.parent.name in ("train2014", "val2014") for i in val)


def test_missing_files_are_named_with_where_they_were_looked_for(karpathy, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"captions_train2014\.json.*annotations_trainval2014\.zip"):
        coco_main(["--root", str(tmp_path / "nowhere"), "--year", "2014"])
    with pytest.raises(FileNotFoundError, match=r"looked for .*dataset_flickr30k\.json"):
        karpathy_main(["--root", str(tmp_path)], "flickr30k", "flickr30k-images", "imgid")
    root = karpathy("flickr8k", "Flicker8k_Dataset", coco=False)
    (root / "Flicker8k_Dataset/img4.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 image files .* missing, e\.g\. .*img4\.jpg"):
        karpathy_main(["--root", str(root)], "flickr8k", "Flicker8k_Dataset", "imgid")
    (root / "dataset_flickr8k.json").write_text(json.dumps({"images": [{"filename": "x.jpg", "split": "train"}]}))
    with pytest.raises(ValueError, match=r"images\[0\] needs 'sentences'"):
        karpathy_main(["--root", str(root)], "flickr8k", "Flicker8k_Dataset", "imgid")


@requires_shared("coco-mini")
def test_real_coco_subset_prepare_cache_train_caption_evaluate(tmp_path: Path) -> None:
    from captioning.cli.caption import main as caption
    from captioning.cli.fit import cli_main
    from captioning.cli.features import main as features
    from captioning.metrics import compute_caption_metrics

    counts = coco_main(["--root", str(COCO_MINI), "--min-word-count", "1"])
    assert (counts["train2017"]["images"], counts["val2017"]["images"], counts["val2017"]["captions"]) == (80, 79, 395)
    config = ["--config", str(REPO / "configs/coco.yaml"), f"--data.init_args.root={COCO_MINI}",
              "--data.init_args.image_size=96", "--data.init_args.num_workers=0", "--data.init_args.min_word_count=1",
              "--data.init_args.batch_size=8", "--data.init_args.eval_batch_size=40"]
    features([*config, "--output", str(tmp_path / "cache"), "--stages", "train", "val", "--num-workers", "0"])
    cli = cli_main(["fit", *config, "--config", str(REPO / "configs/coco_features.yaml"),
                    f"--data.init_args.features={tmp_path / 'cache'}", f"--trainer.default_root_dir={tmp_path}",
                    "--trainer.max_steps=6", "--trainer.limit_val_batches=1", "--model.beam_size=1",
                    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"])
    ckpt = next(cb.best_model_path for cb in cli.trainer.checkpoint_callbacks if cb.filename == "last")
    out = tmp_path / "val2017_results.json"
    caption(["--checkpoint", ckpt, "--images", str(COCO_MINI / "annotations/captions_val2017.json"),
             "--output", str(out), "--num-workers", "0", "--no-progress"])  # the checkpoint holds the encoder
    results = {r["image_id"]: r["caption"] for r in json.loads(out.read_text())}
    refs = {i.image_id: i.captions for i in read_caption_file(COCO_MINI / "annotations/captions_val2017.json",
                                                               COCO_MINI / "val2017")}
    assert set(refs) <= set(results)  # every captioned val image (plus those without captions) got one
    metrics = compute_caption_metrics(refs, {i: results[i] for i in refs})
    assert {"Bleu_4", "CIDEr", "ROUGE_L"} <= set(metrics) and all(v >= 0 for v in metrics.values())
