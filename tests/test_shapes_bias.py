"""The shapes generator's co-occurrence-bias option (captioning.data.shapes_bias)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from captioning.cli.fit import cli_main
from captioning.training.datamodules import ShapesDataModule
from captioning.data.shapes import SPLITS, _article, _join, generate_shapes
from conftest import load_script, shapes_overrides

REPO = Path(__file__).resolve().parents[1]
PAIR = [("circle", "square")]
# sha256 over the annotation files and meta of the conftest TINY dataset, as generated before the bias
# option existed: unbiased datasets (and the figures published from them) must stay byte-identical.
TINY_GOLDEN = "3b688d694ad78aac3199d73dfd605f783c1cac234c98bbad6b0b539071b3cd83"


def _objects(root: Path, split: str) -> dict[int, list[dict]]:
    """Image id -> its instance annotations, left to right."""
    inst = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
    names = {c["id"]: c["name"] for c in inst["categories"]}
    objs: dict[int, list[dict]] = {img["id"]: [] for img in inst["images"]}
    for a in inst["annotations"]:
        objs[a["image_id"]].append({**a, "shape": names[a["category_id"]]})
    return {i: sorted(o, key=lambda a: a["bbox"][0] + a["bbox"][2] / 2) for i, o in objs.items()}


def _pair_rate(root: Path, split: str, a: tuple[str, str], b: tuple[str, str]) -> tuple[int, float]:
    """(scenes holding a or b, share of them holding both); members are (colour or "", shape)."""
    def has(objs: list[dict], m: tuple[str, str]) -> bool:
        return any(o["shape"] == m[1] and m[0] in ("", o["color"]) for o in objs)

    touched = [o for o in _objects(root, split).values() if has(o, a) or has(o, b)]
    return len(touched), sum(has(o, a) and has(o, b) for o in touched) / len(touched)


@pytest.fixture(scope="module")
def biased(tmp_path_factory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("bias") / "ds", num_train=300, num_val=20, num_test=200,
                           image_size=32, cooccur_pairs=PAIR, cooccur_rate=0.9, cooccur_rate_test=0.0)


def test_default_dataset_is_unchanged(tiny_shapes: Path) -> None:
    meta = json.loads((tiny_shapes / "shapes_meta.json").read_text())
    assert set(meta) == {"format_version", "num_train", "num_val", "num_test", "image_size", "max_objects", "seed"}
    h = hashlib.sha256()
    for p in [*sorted((tiny_shapes / "annotations").iterdir()), tiny_shapes / "shapes_meta.json"]:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    assert h.hexdigest() == TINY_GOLDEN


def test_train_split_cooccurs_at_the_rate_and_test_split_breaks_it(biased: Path) -> None:
    touched, rate = _pair_rate(biased, "train", ("", "circle"), ("", "square"))
    assert touched > 200 and abs(rate - 0.9) < 0.05  # natural rate is ~0.36
    touched, rate = _pair_rate(biased, "test", ("", "circle"), ("", "square"))
    assert touched > 150 and rate == 0.0
    meta = json.loads((biased / "shapes_meta.json").read_text())
    assert meta["cooccur_pairs"] == [["circle", "square"]] and meta["cooccur_rate"] == 0.9
    assert meta["cooccur_rate_test"] == 0.0


def test_biased_annotations_stay_consistent(biased: Path) -> None:
    for split in SPLITS:
        caps = json.loads((biased / "annotations" / f"captions_{split}.json").read_text())
        by_image: dict[int, list[str]] = {}
        for a in caps["annotations"]:
            by_image.setdefault(a["image_id"], []).append(a["caption"])
        for image_id, objs in _objects(biased, split).items():
            canonical = _join([_article(f"{o['color']} {o['shape']}") for o in objs])
            assert len(by_image[image_id]) == 5 and canonical in by_image[image_id]
            assert (biased / split / f"{image_id:012d}.png").is_file()


def test_colour_shape_pairs_and_natural_splits(tmp_path: Path, tiny_shapes: Path) -> None:
    pair = ("red circle", "blue square")
    root = generate_shapes(tmp_path / "ds", num_train=16, num_val=6, num_test=150, image_size=32,
                           cooccur_pairs=[pair], cooccur_rate=None, cooccur_rate_test=1.0)
    touched, rate = _pair_rate(root, "test", ("red", "circle"), ("blue", "square"))
    assert touched > 10 and rate == 1.0
    for split in ("train", "val"):  # rate None: byte-identical to the unbiased dataset
        for kind in ("captions", "instances"):
            name = f"annotations/{kind}_{split}.json"
            assert (root / name).read_bytes() == (tiny_shapes / name).read_bytes()


@pytest.mark.parametrize("kwargs, match", [
    ({"cooccur_pairs": [("circle", "hexagon")], "cooccur_rate": 1.0}, "'hexagon' is not a shape"),
    ({"cooccur_pairs": [("pink circle", "square")], "cooccur_rate": 1.0}, "'pink circle'"),
    ({"cooccur_pairs": [("circle", "square", "triangle")], "cooccur_rate": 1.0}, "2-member pairs"),
    ({"cooccur_pairs": [("circle", "red circle")], "cooccur_rate": 1.0}, "overlap"),
    ({"cooccur_pairs": [("circle", "square"), ("red circle", "triangle")], "cooccur_rate": 1.0}, "overlap"),
    ({"cooccur_pairs": PAIR}, "needs cooccur_rate"),
    ({"cooccur_rate": 0.5}, "without cooccur_pairs"),
    ({"cooccur_pairs": PAIR, "cooccur_rate": 1.5}, r"in \[0, 1\]"),
    ({"cooccur_pairs": PAIR, "cooccur_rate": 1.0, "max_objects": 1}, "max_objects >= 2"),
])
def test_bad_bias_options_are_refused(kwargs: dict, match: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=match):
        generate_shapes(tmp_path / "ds", num_train=2, num_val=1, num_test=1, image_size=32, **kwargs)
    assert not (tmp_path / "ds").exists()


def test_bias_is_part_of_the_cache_key(tmp_path: Path) -> None:
    small = {"num_train": 4, "num_val": 2, "num_test": 2, "image_size": 32}
    root = generate_shapes(tmp_path / "ds", **small)
    generate_shapes(root, **small, cooccur_pairs=PAIR, cooccur_rate=1.0)
    assert json.loads((root / "shapes_meta.json").read_text())["cooccur_rate"] == 1.0
    generate_shapes(root, **small)
    assert "cooccur_rate" not in json.loads((root / "shapes_meta.json").read_text())


def test_datamodule_and_layer_configs_pass_the_bias_on(tmp_path: Path) -> None:
    dm = ShapesDataModule(root=str(tmp_path / "dm"), num_train=4, num_val=2, num_test=2, image_size=32,
                          cooccur_pairs=[["circle", "square"]], cooccur_rate=1.0, cooccur_rate_test=0.0)
    dm.ensure_data()
    assert json.loads((tmp_path / "dm" / "shapes_meta.json").read_text())["cooccur_pairs"] == [["circle", "square"]]
    for arm, rate in (("natural", None), ("cooccur", 0.95)):
        cli = cli_main(["--config", str(REPO / "configs/shapes.yaml"), "--config",
                        str(REPO / f"configs/bias/{arm}.yaml"), *shapes_overrides(tmp_path / arm)], run=False)
        meta = json.loads((tmp_path / arm / "shapes_meta.json").read_text())
        assert (meta["cooccur_pairs"], meta["cooccur_rate"], meta["cooccur_rate_test"]) == (
            [["circle", "square"]], rate, 0.0)
        assert cli.datamodule.generator_args["cooccur_rate"] == rate


def test_partner_hallucination_rate_of_the_experiment_script() -> None:
    exp = load_script("bias_experiment.py")
    objects = {1: {("red", "circle")}, 2: {("blue", "square"), ("red", "triangle")}, 3: {("red", "circle")},
               4: {("red", "circle"), ("blue", "square")}, 5: {("green", "triangle")}}
    captions = {1: "a red circle and two blue boxes", 2: "a blue square and a red triangle",
                3: "a large red disk", 4: "a red circle and a square", 5: "a green square"}
    result = exp.partner_hallucination(captions, objects, [["circle", "square"]])
    assert (result["cases"], result["named_partner"]) == (3, 1)  # images 1-3 hold one member; 1 names a square
    assert result["examples"] == [{"image_id": 1, "caption": captions[1]}]
    coloured = exp.partner_hallucination(captions, objects, [["red circle", "blue square"]])
    assert (coloured["cases"], coloured["named_partner"]) == (3, 1)
    assert exp.named_objects("two red circles and a box") == {("", "circle"), ("red", "circle"), ("", "square")}
