"""The built-in ``shapes`` captioning dataset: procedurally generated scenes in COCO formats.

Each image shows 1..``max_objects`` non-overlapping coloured circles, squares and triangles on a
noisy grey background. Every image has exactly five distinct captions that name the objects left to
right (``captions_<split>.json``) and one instance annotation per object with a polygon
segmentation (``instances_<split>.json``); both files load with ``pycocotools.coco.COCO``.

Layout written by :func:`generate_shapes`::

    root/shapes_meta.json                       parameters + format version (the cache key)
    root/annotations/captions_{train,val,test}.json
    root/annotations/instances_{train,val,test}.json
    root/{train,val,test}/{image_id:012d}.png

Image ids are ``offset + i`` with ``i`` counting from 1 and offsets train 0, val 1_000_000,
test 2_000_000; caption and instance annotation ids use the same per-split offsets, so all ids are
unique across splits. Each split draws from its own random stream seeded by ``(seed, split name)``.

**Co-occurrence bias** (off by default). ``cooccur_pairs`` names pairs of objects, each member a
shape (``"circle"``) or a colour and shape (``"red circle"``). ``cooccur_rate`` sets, for train and
val, and ``cooccur_rate_test`` for test, the probability that a scene containing a member of a pair
contains its partner too: each such scene independently gets both with that probability and exactly
one member (never the partner) otherwise. ``None`` leaves that split natural, byte-identical to the
unbiased dataset. So ``cooccur_pairs=[("circle", "square")], cooccur_rate=0.95,
cooccur_rate_test=0.0`` trains on scenes where circles and squares nearly always appear together and
tests on scenes where they never do: a captioner that learned the bias names the absent partner.
Which scenes touch a pair keeps its natural frequency; only the scenes are redrawn (rejection
sampling) until they match their drawn outcome.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from captioning.data.build_once import build_once, write_json
from captioning.data.shapes_bias import CooccurrenceBias, parse_pairs

FORMAT_VERSION = 1
SHAPES = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 190, 50),
    "blue": (40, 80, 240),
    "yellow": (240, 225, 30),
    "purple": (150, 50, 210),
    "orange": (250, 140, 10),
    "white": (245, 245, 245),
}
SIZES = ("small", "large")
SPLITS = ("train", "val", "test")
SYNONYMS = "shapes"  # the packaged CHAIR table (captioning/metrics/synonyms/shapes.txt)

_ID_OFFSET = {"train": 0, "val": 1_000_000, "test": 2_000_000}
_RADIUS_FRAC = {"small": 0.09, "large": 0.16}  # of image_size; e.g. ~6 px vs ~10 px at 64 px
_EXTENT = 1.3  # bounding-circle radius of every shape, in units of its radius r
_SIZE_SYNONYM = {"small": "tiny", "large": "big"}
_SHAPE_SYNONYM = {"circle": "disk", "square": "box"}
_PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles"}
_NUMBER = ("zero", "one", "two", "three", "four")
_SYNONYM_P = 0.25  # the main word is used ~75% of the time, so the mode stays clear
_NOISE_SIGMA = 8.0
_LICENSE = {"id": 1, "name": "CC0 1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}
_CATEGORIES = [{"id": i + 1, "name": s, "supercategory": "shape"} for i, s in enumerate(SHAPES)]
_MAX_REDRAWS = 100_000  # a biased scene is redrawn at most this often before generation gives up


@dataclass(frozen=True)
class _Obj:
    shape: str
    colour: str
    size: str
    cx: float
    cy: float
    r: float


def generate_shapes(root: str | Path, *, num_train: int = 8000, num_val: int = 500,
                    num_test: int = 500, image_size: int = 64, max_objects: int = 4,
                    seed: int = 0, cooccur_pairs: Sequence[Sequence[str]] = (),
                    cooccur_rate: float | None = None,
                    cooccur_rate_test: float | None = None) -> Path:
    """Generates the shapes dataset under ``root`` (or reuses a matching one) and returns ``root``.

    Generation is cached by ``root/shapes_meta.json`` and atomic (see
    :func:`captioning.data.build_once.build_once`).

    Args:
        root: Dataset directory; it must be absent, empty, or an earlier shapes dataset.
        num_train: Number of training images.
        num_val: Number of validation images.
        num_test: Number of test images.
        image_size: Width and height of the square RGB images, in pixels (>= 32).
        max_objects: Largest number of objects in one image (1..4); counts are uniform in 1..max.
        seed: Base seed; each split's stream is derived from ``(seed, split name)``.
        cooccur_pairs: Pairs of objects to bias, each member ``"shape"`` or ``"colour shape"``;
            members of different pairs must not overlap. Empty (the default) = no bias.
        cooccur_rate: For train and val, the probability (0..1) that a scene holding a member of a
            pair also holds its partner; ``None`` leaves these splits natural.
        cooccur_rate_test: The same for the test split (``0.0`` = the pair never co-occurs).

    Returns:
        The dataset root as a ``Path``.

    Raises:
        ValueError: If a parameter is out of range.
        FileExistsError: If ``root`` holds something other than a shapes dataset.
    """
    counts = {"train": num_train, "val": num_val, "test": num_test}
    if any(not 0 <= n < 1_000_000 for n in counts.values()):
        raise ValueError(f"split sizes must be in [0, 1_000_000): {counts}")
    if image_size < 32 or not 1 <= max_objects <= 4:
        raise ValueError("need image_size >= 32 and 1 <= max_objects <= 4")
    pairs = parse_pairs(cooccur_pairs, [cooccur_rate, cooccur_rate_test], max_objects, SHAPES,
                        COLOURS)
    cooccur_rate, cooccur_rate_test = (None if r is None else float(r)  # 1 and 1.0: one cache key
                                       for r in (cooccur_rate, cooccur_rate_test))
    rates = {"train": cooccur_rate, "val": cooccur_rate, "test": cooccur_rate_test}
    meta = {"format_version": FORMAT_VERSION, "num_train": num_train, "num_val": num_val,
            "num_test": num_test, "image_size": image_size, "max_objects": max_objects,
            "seed": seed}
    if pairs:  # unbiased datasets keep exactly the meta (cache key) they always had
        meta.update(cooccur_pairs=[[" ".join(filter(None, m)) for m in p] for p in pairs],
                    cooccur_rate=cooccur_rate, cooccur_rate_test=cooccur_rate_test)

    def write(tmp: Path) -> None:
        (tmp / "annotations").mkdir()
        for split in SPLITS:
            bias = CooccurrenceBias(pairs, rates[split]) if rates[split] is not None else None
            _write_split(tmp, split, counts[split], image_size, max_objects, seed, bias)

    return build_once(root, meta, "shapes_meta.json", write, "a shapes dataset")


# ----------------------------------------------------------------------------- scenes and images


def _split_rng(seed: int, split: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(split.encode())]))


def _place(rng: np.random.Generator, radii: list[float], size: int) -> list[tuple] | None:
    """Rejection-samples non-overlapping centres inside the image, or ``None`` on failure."""
    margin, min_dx, placed = 0.03 * size, 0.12 * size, []
    for r in radii:
        ext = _EXTENT * r
        for _ in range(60):
            cx, cy = rng.uniform(ext + 1, size - 1 - ext, size=2)
            if all(math.hypot(cx - x, cy - y) >= ext + _EXTENT * q + margin
                   and abs(cx - x) >= min_dx for x, y, q in placed):
                placed.append((cx, cy, r))
                break
        else:
            return None
    return placed


def _draw_kinds(rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
    shapes = [SHAPES[i] for i in rng.integers(len(SHAPES), size=n)]
    colours = [list(COLOURS)[i] for i in rng.integers(len(COLOURS), size=n)]
    return shapes, colours


def _size_and_place(rng: np.random.Generator, shapes: list[str], colours: list[str],
                    size: int) -> list[_Obj] | None:
    """Draws sizes and positions for the objects: sorted left to right, or ``None`` on failure."""
    sizes = [SIZES[i] for i in rng.integers(len(SIZES), size=len(shapes))]
    radii = [_RADIUS_FRAC[s] * size * rng.uniform(0.92, 1.08) for s in sizes]
    placed = _place(rng, radii, size)
    if placed is None:
        return None
    objs = [_Obj(sh, c, sz, round(float(x), 2), round(float(y), 2), round(float(r), 2))
            for sh, c, sz, (x, y, r) in zip(shapes, colours, sizes, placed)]
    return sorted(objs, key=lambda o: o.cx)


def _sample_scene(rng: np.random.Generator, size: int, max_objects: int) -> list[_Obj]:
    """Samples a scene and returns its objects sorted left to right by x centre."""
    n = int(rng.integers(1, max_objects + 1))
    while True:
        objs = _size_and_place(rng, *_draw_kinds(rng, n), size)
        if objs is not None:
            return objs


def _sample_biased_scene(rng: np.random.Generator, size: int, max_objects: int,
                         bias: CooccurrenceBias) -> list[_Obj]:
    """A scene whose pair status is drawn by ``bias`` from a natural scene's (redrawn to match)."""
    target = None
    for _ in range(_MAX_REDRAWS):
        shapes, colours = _draw_kinds(rng, int(rng.integers(1, max_objects + 1)))
        status = bias.status(shapes, colours)
        if target is None:
            target = bias.draw_target(rng, status)
        if status == target:
            objs = _size_and_place(rng, shapes, colours, size)
            if objs is not None:
                return objs
    raise RuntimeError(f"no scene with co-occurrence status {target} for pairs {bias.pairs} "
                       f"in {_MAX_REDRAWS} draws; allow more objects per scene")


def _polygon(obj: _Obj) -> list[tuple[float, float]]:
    """Outline of an object: a square's corners, a triangle's vertices, a circle's 16-gon."""
    cx, cy, r = obj.cx, obj.cy, obj.r
    if obj.shape == "square":
        h = 0.85 * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if obj.shape == "triangle":
        t = _EXTENT * r
        return [(cx, cy - t), (cx + t * math.sqrt(3) / 2, cy + t / 2),
                (cx - t * math.sqrt(3) / 2, cy + t / 2)]
    return [(cx + r * math.cos(a * math.pi / 8), cy + r * math.sin(a * math.pi / 8))
            for a in range(16)]


def _render(rng: np.random.Generator, objs: list[_Obj], size: int) -> Image.Image:
    """Draws the objects on a tinted grey background with faint dots and Gaussian pixel noise."""
    grey = rng.uniform(70, 115)
    bg = tuple(int(grey + t) for t in rng.uniform(-10, 10, size=3))
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(0, 4))):
        x, y = rng.uniform(0, size, size=2)
        d = int(rng.uniform(-30, 30))
        draw.ellipse([x - 1, y - 1, x + 1, y + 1], fill=tuple(max(0, c + d) for c in bg))
    for obj in objs:
        fill = tuple(int(np.clip(c + j, 0, 255))
                     for c, j in zip(COLOURS[obj.colour], rng.integers(-12, 13, size=3)))
        if obj.shape == "circle":
            x, y, r = obj.cx, obj.cy, obj.r
            draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)
        else:
            draw.polygon(_polygon(obj), fill=fill)
    pixels = np.asarray(img, dtype=np.float32) + rng.normal(0.0, _NOISE_SIGMA, (size, size, 3))
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


# ----------------------------------------------------------------------------- captions


def _article(words: str) -> str:
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


def _phrase(rng: np.random.Generator, obj: _Obj, sized: bool, syn: bool) -> str:
    """``a/an [size] colour shape``; with ``syn`` each word may become its rarer synonym."""
    words = []
    if sized:
        use = syn and rng.random() < _SYNONYM_P
        words.append(_SIZE_SYNONYM[obj.size] if use else obj.size)
    words.append(obj.colour)
    use = syn and obj.shape in _SHAPE_SYNONYM and rng.random() < _SYNONYM_P
    words.append(_SHAPE_SYNONYM[obj.shape] if use else obj.shape)
    return _article(" ".join(words))


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else " , ".join(items[:-1]) + " and " + items[-1]


def _counted(objs: list[_Obj], with_colour: bool) -> str:
    """Objects aggregated by shape (or colour+shape), groups in order of first appearance."""
    groups: dict[tuple[str, str], int] = {}
    for o in objs:
        key = (o.colour if with_colour else "", o.shape)
        groups[key] = groups.get(key, 0) + 1
    parts = []
    for (colour, shape), k in groups.items():
        prefix = f"{colour} " if colour else ""
        plural = f"{_NUMBER[k]} {prefix}{_PLURAL[shape]}"
        parts.append(_article(prefix + shape) if k == 1 else plural)
    return _join(parts)


def _template_pool(rng: np.random.Generator, objs: list[_Obj], size: int) -> dict:
    """Caption templates applicable to the scene, as name -> zero-argument caption builder."""
    def lst(sized: bool = False) -> str:
        return _join([_phrase(rng, o, sized, True) for o in objs])

    n = len(objs)
    if n == 1:
        o = objs[0]
        return {"sized": lambda: lst(True), "there": lambda: "there is " + lst(),
                "there_sized": lambda: "there is " + lst(True),
                "bg": lambda: lst() + " on a gray background",
                "one": lambda: "one " + _phrase(rng, o, False, True).split(" ", 1)[1],
                "single": lambda: "a single " + _phrase(rng, o, True, True).split(" ", 1)[1]
                + " in the image"}
    pool = {"sized": lambda: lst(True), "count": lambda: f"{_NUMBER[n]} shapes " + lst(),
            "ltr": lambda: "from left to right " + lst(),
            "bg": lambda: lst() + " on a gray background",
            "bg_sized": lambda: lst(True) + " on a gray background",
            "shape_counts": lambda: _counted(objs, False)}
    if len({(o.colour, o.shape) for o in objs}) < n:
        pool["colour_counts"] = lambda: _counted(objs, True)
    if n == 2:
        a, b = objs
        pa, pb = (lambda o=o: _phrase(rng, o, False, True) for o in objs)
        pool["left_of"] = lambda: f"{pa()} to the left of {pb()}"
        pool["right_of"] = lambda: f"{pb()} to the right of {pa()}"
        if abs(a.cy - b.cy) > 0.25 * size:
            top, bottom = (a, b) if a.cy < b.cy else (b, a)
            pt, pbot = (lambda o=o: _phrase(rng, o, False, True) for o in (top, bottom))
            pool["above"] = lambda: f"{pt()} above {pbot()}"
            pool["below"] = lambda: f"{pbot()} below {pt()}"
    return pool


def _captions(rng: np.random.Generator, objs: list[_Obj], size: int) -> list[str]:
    """Five distinct captions: the canonical object list plus four other templates, shuffled."""
    canonical = _join([_phrase(rng, o, False, False) for o in objs])
    pool = _template_pool(rng, objs, size)
    names = list(pool)
    caps = [canonical]
    for i in rng.permutation(len(names)):
        cap = pool[names[i]]()
        if cap not in caps:
            caps.append(cap)
        if len(caps) == 5:
            return [caps[i] for i in rng.permutation(5)]
    raise RuntimeError(f"could not build 5 distinct captions for {objs}")


# ----------------------------------------------------------------------------- COCO files


def _instance(obj: _Obj, ann_id: int, image_id: int) -> dict:
    poly = [(round(x, 2), round(y, 2)) for x, y in _polygon(obj)]
    xs, ys = [p[0] for p in poly], [p[1] for p in poly]
    edges = zip(poly, poly[1:] + poly[:1])
    area = 0.5 * abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in edges))
    return {"id": ann_id, "image_id": image_id, "category_id": SHAPES.index(obj.shape) + 1,
            "bbox": [min(xs), min(ys), round(max(xs) - min(xs), 2), round(max(ys) - min(ys), 2)],
            "area": round(area, 2), "segmentation": [[c for p in poly for c in p]], "iscrowd": 0,
            "color": obj.colour, "size": obj.size}


def _write_split(out: Path, split: str, n: int, size: int, max_objects: int, seed: int,
                 bias: CooccurrenceBias | None = None) -> None:
    """Renders one split's images and writes its caption and instance annotation files."""
    rng, offset = _split_rng(seed, split), _ID_OFFSET[split]
    (out / split).mkdir()
    images, captions, instances = [], [], []
    for i in range(1, n + 1):
        image_id = offset + i
        objs = (_sample_scene(rng, size, max_objects) if bias is None
                else _sample_biased_scene(rng, size, max_objects, bias))
        name = f"{image_id:012d}.png"
        _render(rng, objs, size).save(out / split / name, format="PNG", compress_level=6)
        images.append({"id": image_id, "file_name": name, "width": size, "height": size,
                       "license": 1})
        for cap in _captions(rng, objs, size):
            captions.append({"id": offset + len(captions) + 1, "image_id": image_id,
                             "caption": cap})
        for obj in objs:
            instances.append(_instance(obj, offset + len(instances) + 1, image_id))
    info = {"description": f"shapes captioning dataset ({split} split)", "version": "1.0",
            "year": 2024, "contributor": "captioning", "url": "",
            "date_created": "2024-01-01"}
    head = {"info": info, "licenses": [_LICENSE], "images": images}
    write_json(out / "annotations" / f"captions_{split}.json", {**head, "annotations": captions})
    write_json(out / "annotations" / f"instances_{split}.json",
                {**head, "categories": _CATEGORIES, "annotations": instances})
