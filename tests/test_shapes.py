"""Tests for the built-in procedurally generated ``shapes`` dataset (captioning.data.shapes)."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from captioning.data.shapes import COLOURS, SHAPES, SPLITS, generate_shapes

REPO = Path(__file__).resolve().parents[1]
SMALL = {"num_train": 12, "num_val": 4, "num_test": 4}
ANN_FILES = [f"{kind}_{split}.json" for kind in ("captions", "instances") for split in SPLITS]


def _coco(path: Path):
    coco_mod = pytest.importorskip("pycocotools.coco")
    return coco_mod.COCO(str(path))


def _tree_bytes(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("shapes") / "ds", **SMALL)


def test_layout_and_no_leftover_temp_dirs(dataset: Path) -> None:
    assert sorted(p.name for p in (dataset / "annotations").iterdir()) == sorted(ANN_FILES)
    assert (dataset / "shapes_meta.json").is_file()
    assert [p.name for p in dataset.parent.iterdir()] == [dataset.name]


def test_deterministic(dataset: Path, tmp_path: Path) -> None:
    again = generate_shapes(tmp_path / "again", **SMALL)
    assert _tree_bytes(again) == _tree_bytes(dataset)


def test_coco_captions_load(dataset: Path) -> None:
    for split in SPLITS:
        coco = _coco(dataset / "annotations" / f"captions_{split}.json")
        n = SMALL[f"num_{split}"]
        assert len(coco.getImgIds()) == n
        for image_id in coco.getImgIds():
            caps = [a["caption"] for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id))]
            assert len(caps) == 5 and len(set(caps)) == 5
            for cap in caps:
                assert cap == cap.lower().strip() and "  " not in cap and not cap.endswith(".")
            info = coco.loadImgs(image_id)[0]
            path = dataset / split / info["file_name"]
            assert info["file_name"] == f"{image_id:012d}.png"
            with Image.open(path) as img:
                assert img.size == (info["width"], info["height"]) == (64, 64)
                assert img.mode == "RGB"


def test_coco_instances_load(dataset: Path) -> None:
    for split in SPLITS:
        coco = _coco(dataset / "annotations" / f"instances_{split}.json")
        cats = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
        assert cats == {1: "circle", 2: "square", 3: "triangle"}
        for image_id in coco.getImgIds():
            anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
            assert 1 <= len(anns) <= 4
            for a in anns:
                x, y, w, h = a["bbox"]
                assert 0 <= x and 0 <= y and x + w <= 64 and y + h <= 64 and w > 0 and h > 0
                assert a["iscrowd"] == 0 and a["area"] > 0
                assert a["color"] in COLOURS and a["size"] in ("small", "large")
                assert coco.annToMask(a).sum() > 0


def test_ids_unique_across_splits(dataset: Path) -> None:
    seen: dict[str, set] = {"images": set(), "captions": set(), "instances": set()}
    for split in SPLITS:
        for kind in ("captions", "instances"):
            data = json.loads((dataset / "annotations" / f"{kind}_{split}.json").read_text())
            ids = {a["id"] for a in data["annotations"]}
            assert not ids & seen[kind]
            seen[kind] |= ids
        image_ids = {i["id"] for i in data["images"]}
        assert not image_ids & seen["images"]
        seen["images"] |= image_ids


def test_captions_mention_objects(dataset: Path) -> None:
    words: set[str] = set()
    for split in SPLITS:
        caps = json.loads((dataset / "annotations" / f"captions_{split}.json").read_text())
        inst = json.loads((dataset / "annotations" / f"instances_{split}.json").read_text())
        by_image: dict[int, list[str]] = {}
        for a in caps["annotations"]:
            by_image.setdefault(a["image_id"], []).append(a["caption"])
            words |= set(a["caption"].split())
        for a in inst["annotations"]:
            phrase = f"{a['color']} {SHAPES[a['category_id'] - 1]}"
            refs = by_image[a["image_id"]]
            assert any(phrase in c for c in refs), (phrase, refs)
    assert len(words) < 60


def test_cache_reuse_and_regenerate(tmp_path: Path) -> None:
    root = generate_shapes(tmp_path / "ds", **SMALL)
    files = [root / "shapes_meta.json", root / "annotations" / "captions_train.json"]
    before = [f.stat().st_mtime_ns for f in files]
    generate_shapes(root, **SMALL)
    assert [f.stat().st_mtime_ns for f in files] == before
    generate_shapes(root, **{**SMALL, "seed": 1})
    assert json.loads(files[0].read_text())["seed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_num_train_leaves_test_split_unchanged(dataset: Path, tmp_path: Path) -> None:
    other = generate_shapes(tmp_path / "other", **{**SMALL, "num_train": 7})
    for name in ("captions_test.json", "instances_test.json"):
        ann = Path("annotations") / name
        assert (other / ann).read_bytes() == (dataset / ann).read_bytes()
    assert _tree_bytes(other / "test") == _tree_bytes(dataset / "test")
    assert (other / "annotations" / "captions_train.json").read_bytes() != (
        dataset / "annotations" / "captions_train.json").read_bytes()


def test_removes_stale_temp_dirs_of_dead_runs(tmp_path: Path) -> None:
    stale = tmp_path / ".ds.tmp-999999999"  # no such process: a killed run's leftovers
    (stale / "annotations").mkdir(parents=True)
    generate_shapes(tmp_path / "ds", **SMALL)
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_refuses_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"ds exists and is not a shapes dataset; refusing to replace it"):
        generate_shapes(tmp_path / "ds", **SMALL)
    assert (tmp_path / "ds" / "precious.txt").read_text() == "keep me"


def test_bad_parameters(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_shapes(tmp_path / "ds", max_objects=5)
    with pytest.raises(ValueError):
        generate_shapes(tmp_path / "ds", image_size=16)


def _racer(root: str) -> None:
    generate_shapes(root, **SMALL)


def test_concurrent_generation(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    procs = [ctx.Process(target=_racer, args=(str(root),)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    reference = generate_shapes(tmp_path / "ref", **SMALL)
    assert _tree_bytes(root) == _tree_bytes(reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "ref"]


def test_prepare_cli(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "data" / "shapes" / "prepare.py"),
         "--root", str(tmp_path / "ds"), "--num-train", "6", "--num-val", "2", "--num-test", "2"],
        capture_output=True, text=True, check=True, cwd=tmp_path)
    lines = out.stdout.splitlines()
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines[2:6]}
    assert rows["train"][:2] == ["6", "30"] and rows["test"][:2] == ["2", "10"]
    assert rows["all"][:2] == ["10", "50"]
