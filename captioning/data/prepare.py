"""Preparing real datasets for :class:`CaptionDataModule`: checks, counts, and Karpathy-split conversion.

Official COCO 2014/2017 caption files are read as they are (through pycocotools); a Karpathy split file
(``dataset_coco.json``, ``dataset_flickr8k.json``, ``dataset_flickr30k.json``: ``images`` with ``filepath``
(COCO only), ``filename``, ``split``, ``sentences`` [{``raw``, ``tokens``}], ``imgid`` and, for COCO,
``cocoid``) is converted into official-format ``annotations/captions_karpathy_<split>.json`` files whose
``file_name`` is relative to the dataset root. Nothing is downloaded; a missing file is reported with the
place it was looked for.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from captioning.core.io import write_json_atomic
from captioning.data.vocab import Vocabulary

KARPATHY_SPLITS = ("train", "val", "test")


def require_file(path: Path, what: str, hint: str) -> Path:
    """``path`` if it is a file, else ``FileNotFoundError`` naming it, what it is and where to get it."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: looked for {path.resolve()}. {hint}")
    return path


def _check(condition: bool, path: Path, message: str) -> None:
    if not condition:
        raise ValueError(f"{path}: {message}")


def read_karpathy(path: Path) -> list[dict]:
    """The ``images`` of a Karpathy split file, each checked for the fields the conversion uses."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    _check(isinstance(data, dict) and isinstance(data.get("images"), list), path, "expected {'images': [...]}")
    for i, img in enumerate(data["images"]):
        _check(isinstance(img, dict), path, f"images[{i}] is not an object")
        for field, kind in (("filename", str), ("split", str), ("sentences", list), ("imgid", int)):
            _check(isinstance(img.get(field), kind), path, f"images[{i}] needs {field!r} ({kind.__name__})")
        _check(img["split"] in (*KARPATHY_SPLITS, "restval"), path, f"images[{i}] has unknown split {img['split']!r}")
        for j, sentence in enumerate(img["sentences"]):
            _check(isinstance(sentence, dict) and isinstance(sentence.get("raw"), str), path,
                   f"images[{i}].sentences[{j}] needs 'raw' (str)")
    return data["images"]


def karpathy_to_coco(source: Path, root: Path, image_folder: str = "", id_field: str = "imgid",
                     restval: str = "train") -> dict[str, dict]:
    """Writes ``root/annotations/captions_karpathy_{train,val,test}.json`` from a Karpathy split file.

    Args:
        source: The Karpathy JSON file.
        root: Dataset root; ``file_name`` = ``image_folder/filepath/filename`` relative to it.
        image_folder: Folder of the images under ``root`` (e.g. ``Flicker8k_Dataset``); COCO's ``filepath``
            (``train2014``/``val2014``) is appended.
        id_field: Image id: ``cocoid`` (COCO, so ids match the official files) or ``imgid``.
        restval: Where COCO's ``restval`` images go: ``train`` (the usual 113,287-image training set),
            ``val``, or ``drop``.

    Returns:
        The official-format data written, per split.
    """
    _check(restval in ("train", "val", "drop"), source, f"restval must be train, val or drop, got {restval!r}")
    splits = {s: {"info": {"description": f"Karpathy split {s!r} of {source.name}"}, "images": [],
                  "annotations": []} for s in KARPATHY_SPLITS}
    ann_id = 0
    for i, img in enumerate(read_karpathy(source)):
        split = restval if img["split"] == "restval" else img["split"]
        if split == "drop":
            continue
        _check(isinstance(img.get(id_field), int), source, f"images[{i}] has no integer {id_field!r}")
        parts = [p for p in (image_folder, img.get("filepath", ""), img["filename"]) if p]
        splits[split]["images"].append({"id": img[id_field], "file_name": "/".join(parts)})
        for sentence in img["sentences"]:
            ann_id += 1
            splits[split]["annotations"].append({"id": ann_id, "image_id": img[id_field],
                                                 "caption": sentence["raw"].strip()})
    for split, data in splits.items():
        write_json_atomic(root / "annotations" / f"captions_karpathy_{split}.json", data)
    return splits


def load_coco_captions(path: Path) -> dict:
    """An official captions file through pycocotools (its index checked), quietly; returns its dataset."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
    return coco.dataset


def split_counts(data: dict) -> tuple[int, int]:
    """(images with at least one caption, captions) of an official-format captions file."""
    return len({a["image_id"] for a in data["annotations"]}), len(data["annotations"])


def vocabulary_size(data: dict, min_count: int) -> int:
    """Size of the vocabulary :class:`CaptionDataModule` builds from these (training) captions."""
    return len(Vocabulary.build((a["caption"] for a in data["annotations"]), min_count=min_count))


def missing_images(data: dict, image_dir: Path) -> list[Path]:
    """Image files of a captions file that are not on disk."""
    return [image_dir / img["file_name"] for img in data["images"] if not (image_dir / img["file_name"]).is_file()]


def report(splits: dict[str, Path], image_dirs: dict[str, Path], train_split: str,
           min_count: int) -> dict[str, dict]:
    """Prints (and returns) images, captions and missing image files per split, and the vocabulary size.

    Raises:
        FileNotFoundError: naming the first missing image file and how many are missing.
    """
    counts: dict[str, dict] = {}
    for split, path in splits.items():
        data = load_coco_captions(path)
        images, captions = split_counts(data)
        missing = missing_images(data, image_dirs[split])
        counts[split] = {"images": images, "captions": captions, "missing_images": len(missing)}
        if split == train_split:
            counts[split]["vocabulary"] = vocabulary_size(data, min_count)
        vocab = f", vocabulary {counts[split]['vocabulary']:,} (words seen ≥ {min_count}×)" if split == train_split else ""
        print(f"{split}: {images:,} images, {captions:,} captions{vocab}")
        if missing:
            raise FileNotFoundError(f"{len(missing):,} image files of {path} are missing, e.g. {missing[0]} "
                                    f"(images are looked for under {image_dirs[split]})")
    return counts


def karpathy_main(argv: list[str] | None, dataset: str, image_folder: str, id_field: str) -> dict[str, dict]:
    """The prepare script of a Karpathy-split dataset (Flickr8k, Flickr30k; COCO adds its official files).

    Args:
        argv: Command-line arguments (``--root``, ``--karpathy-file``, ``--image-folder``, ``--min-word-count``).
        dataset: Dataset name as in ``dataset_<name>.json``.
        image_folder: Default image folder under the root.
        id_field: Karpathy field used as the image id.
    """
    import argparse

    parser = argparse.ArgumentParser(description=f"Convert the Karpathy split of {dataset} for captioning.")
    parser.add_argument("--root", type=Path, default=Path(f"data/{dataset}"), help="dataset folder")
    parser.add_argument("--karpathy-file", type=Path, help=f"default: ROOT/dataset_{dataset}.json")
    parser.add_argument("--image-folder", default=image_folder, help="image folder under ROOT")
    parser.add_argument("--min-word-count", type=int, default=5, help="vocabulary threshold to report")
    args = parser.parse_args(argv)
    return convert_and_report(args.root, args.karpathy_file or args.root / f"dataset_{dataset}.json",
                              args.image_folder, id_field, "train", args.min_word_count)


def convert_and_report(root: Path, source: Path, image_folder: str, id_field: str, restval: str,
                       min_count: int) -> dict[str, dict]:
    """Converts a Karpathy file (see :func:`karpathy_to_coco`) and reports its counts."""
    require_file(source, "Karpathy split file", f"Put {source.name} (from Karpathy's caption_datasets.zip) there "
                                                f"or pass --karpathy-file.")
    if not (root / image_folder).is_dir():
        raise FileNotFoundError(f"image folder not found: looked for {(root / image_folder).resolve()}")
    karpathy_to_coco(source, root, image_folder, id_field, restval)
    files = {f"karpathy_{s}": root / "annotations" / f"captions_karpathy_{s}.json" for s in KARPATHY_SPLITS}
    print(f"wrote {', '.join(str(p) for p in files.values())}")
    return report(files, {s: root for s in files}, "karpathy_train", min_count)


def coco_main(argv: list[str] | None = None) -> dict[str, dict]:
    """The COCO prepare script: checks and counts the official 2014/2017 caption files (read as they are),
    or with ``--karpathy`` converts ``dataset_coco.json`` (over the 2014 images, ids = COCO ids)."""
    import argparse

    parser = argparse.ArgumentParser(description="Check COCO captions, or convert its Karpathy split.")
    parser.add_argument("--root", type=Path, default=Path("data/coco"), help="dataset folder")
    parser.add_argument("--year", choices=("2014", "2017"), default="2017", help="official release to check")
    parser.add_argument("--karpathy", action="store_true", help="convert the Karpathy split instead")
    parser.add_argument("--karpathy-file", type=Path, help="default: ROOT/dataset_coco.json")
    parser.add_argument("--restval", choices=("train", "val", "drop"), default="train",
                        help="where Karpathy's 30,504 'restval' images go")
    parser.add_argument("--min-word-count", type=int, default=5, help="vocabulary threshold to report")
    args = parser.parse_args(argv)
    if args.karpathy:
        return convert_and_report(args.root, args.karpathy_file or args.root / "dataset_coco.json", "",
                                  "cocoid", args.restval, args.min_word_count)
    splits = {f"{s}{args.year}": args.root / "annotations" / f"captions_{s}{args.year}.json" for s in ("train", "val")}
    for path in splits.values():
        require_file(path, "COCO caption annotations", f"Unzip annotations_trainval{args.year}.zip into {args.root}.")
    return report(splits, {s: args.root / s for s in splits}, f"train{args.year}", args.min_word_count)
