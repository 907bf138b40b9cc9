"""The scale rehearsal: the synthetic COCO generator, the exponent fit and a two-fraction smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from captioning.benchmark.scale import fit_exponent, markdown_table, rehearse
from captioning.data.coco import read_caption_file, read_instance_categories
from captioning.data import synthetic_coco
from captioning.data.synthetic_coco import category_names, generate_synthetic_coco, split_sizes


def test_generator_counts_and_coco_validity(tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    sizes = generate_synthetic_coco(tmp_path, 0.001)
    assert sizes == {"train2014": 83, "val2014": 41} == split_sizes(0.001)
    for split, n in sizes.items():
        images = read_caption_file(tmp_path / f"annotations/captions_{split}.json", tmp_path / split)
        assert len(images) == n and all(len(img.captions) == 5 and img.path.is_file() for img in images)
        assert all(8 <= len(c.split()) <= 20 for img in images for c in img.captions)
        coco = COCO(str(tmp_path / f"annotations/instances_{split}.json"))
        assert len(coco.getImgIds()) == n and len(coco.getCatIds()) == 80
        assert 5 < len(coco.getAnnIds()) / n < 9  # about 7 objects per image
    val = read_caption_file(tmp_path / "annotations/captions_val2014.json", tmp_path / "val2014")
    train = read_caption_file(tmp_path / "annotations/captions_train2014.json", tmp_path / "train2014")
    assert not {i.image_id for i in val} & {i.image_id for i in train}
    assert set(read_instance_categories(tmp_path / "annotations/instances_val2014.json")) == {i.image_id for i in val}
    assert len(category_names()) == 80 and val[0].path.stat().st_nlink == 1 + sizes["val2014"]  # one shared file
    results = json.loads((tmp_path / "results_val2014.json").read_text())
    assert [r["image_id"] for r in results] == [i.image_id for i in val]
    with pytest.raises(ValueError, match="fraction must be in"):
        split_sizes(1.5)


def test_links_spread_over_copies_of_the_shared_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ext4 allows 65,000 links to one file: every LINKS_PER_FILE images get their own copy to link to."""
    monkeypatch.setattr(synthetic_coco, "LINKS_PER_FILE", 30)
    sizes = generate_synthetic_coco(tmp_path, 0.001)  # 83 train images: copies of 30, 30 and 23 links
    links = sorted(p.stat().st_nlink - 1 for p in tmp_path.glob("shared_8x8_train2014_*.jpg"))
    assert links == [23, 30, 30] and len(list((tmp_path / "train2014").iterdir())) == sizes["train2014"]


def test_exponent_fit_recovers_power_laws() -> None:
    sizes = [0.1, 0.3, 1.0]
    assert fit_exponent(sizes, [3 * s for s in sizes]) == pytest.approx(1.0)
    assert fit_exponent(sizes, [2 * s ** 1.5 for s in sizes]) == pytest.approx(1.5)
    assert fit_exponent(sizes, [5.0, 5.0, 5.0]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="two or more distinct sizes"):
        fit_exponent([0.1, 0.1], [1.0, 2.0])


def test_rehearsal_smoke_two_fractions(tmp_path: Path) -> None:
    report = rehearse(tmp_path, [0.0005, 0.001], ["annotations_vocab"], log=lambda _: None)
    saved = json.loads((tmp_path / "scale.json").read_text())
    assert saved == report and set(saved["stages"]) == {"annotations_vocab"}
    for entry in saved["stages"].values():
        assert set(entry["seconds"]) == {"0.0005", "0.001"} and isinstance(entry["exponent"], float)
        assert 100 < entry["peak_rss_mib"] < 4096
    assert (tmp_path / "scale.md").read_text() == markdown_table(report)
    with pytest.raises(ValueError, match="unknown stages"):
        rehearse(tmp_path, [0.001], ["nope"])


def test_gather_stage_merges_two_ranks_in_a_fresh_process(tmp_path: Path) -> None:
    """The two-rank gather (gloo, spawned) merges every val image once; the stage fails loudly otherwise."""
    report = rehearse(tmp_path, [0.0005], ["val_metrics_5k", "gather_rows_2ranks"], log=lambda _: None)
    for entry in report["stages"].values():
        assert entry["seconds"]["0.0005"] >= 0 and entry["process_seconds"]["0.0005"] > entry["seconds"]["0.0005"]
        assert entry["exponent"] is None  # one fraction: no slope
