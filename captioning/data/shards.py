"""WebDataset tar shards (the layout img2dataset writes): ``KEY.jpg`` + ``KEY.json`` per sample in ``NNNNN.tar``.

A shard is streamed once with :mod:`tarfile` (no random access, no index), its members grouped into samples by
key (the member name up to the first dot of its base name, as WebDataset does). Corrupt members (image bytes
that do not decode, a sample without an image) and a truncated or damaged tar do not stop a run: they become
error items naming the shard and the member.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from torch.utils.data import IterableDataset, get_worker_info

from captioning.data.images import IMAGE_EXTENSIONS, ImageRef, load_image

_BRACE = re.compile(r"\{(\d+)\.\.(\d+)\}")
JSON_ID_FIELDS = ("image_id", "id", "key")  # first present wins, for a row's ``image_id``


def expand_braces(pattern: str) -> list[str]:
    """``shards/{00000..00002}.tar`` → the three names (zero padding kept; several ranges multiply).

    Raises:
        ValueError: naming the pattern, for a range that runs backwards.
    """
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    first, last = match.group(1), match.group(2)
    if int(last) < int(first):
        raise ValueError(f"shard pattern {pattern!r}: range {{{first}..{last}}} runs backwards")
    width = len(first) if first.startswith("0") else 0
    head, tail = pattern[:match.start()], pattern[match.end():]
    return [name for i in range(int(first), int(last) + 1) for name in expand_braces(f"{head}{i:0{width}d}{tail}")]


def is_shard_source(source: str | Path) -> bool:
    """Whether ``--images`` names shards: a brace pattern or a ``.tar`` file, or a folder holding ``.tar`` files
    directly and no image file at any depth."""
    text = str(source)
    if _BRACE.search(text) or text.lower().endswith(".tar"):
        return True
    folder = Path(source)
    if not folder.is_dir() or not any(folder.glob("*.tar")):
        return False
    return not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.rglob("*"))


def discover_shards(source: str | Path) -> list[Path]:
    """The shards of a brace pattern, a single ``.tar`` or a folder of ``.tar`` files (sorted).

    Raises:
        FileNotFoundError: naming the first shard of a pattern (or the file/folder) that does not exist.
        ValueError: when two shards share a name (their outputs would collide) or a folder holds no ``.tar``.
    """
    text = str(source)
    if Path(text).is_dir():
        shards = sorted(Path(text).glob("*.tar"))
        if not shards:
            raise ValueError(f"no .tar shards in folder {text}")
    else:
        shards = [Path(name) for name in expand_braces(text)]
        missing = [p for p in shards if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"shard not found: {missing[0]} ({len(missing)} of {len(shards)} shards of "
                                    f"{text} missing)")
    stems: dict[str, Path] = {}
    for shard in shards:
        other = stems.setdefault(shard.stem, shard)
        if other != shard:
            raise ValueError(f"shards {other} and {shard} share the name {shard.stem!r}: their outputs would collide")
    return shards


@dataclass
class _Sample:
    key: str
    members: dict[str, bytes] = field(default_factory=dict)  # extension -> bytes
    names: dict[str, str] = field(default_factory=dict)  # extension -> member name


def _split_name(name: str) -> tuple[str, str]:
    """``dir/000001.jpg`` → (``dir/000001``, ``jpg``); the extension starts at the base name's first dot."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), (ext.lower() if dot else "")


def iter_samples(shard: Path) -> Iterator[_Sample | str]:
    """The shard's samples in order; a final ``str`` (the reason) when the tar turns out damaged or truncated."""
    current: _Sample | None = None
    last = "its first member"
    try:
        with tarfile.open(shard, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = _split_name(member.name)
                data = tar.extractfile(member).read()
                last = member.name
                if current is not None and key != current.key:
                    yield current
                    current = None
                current = current or _Sample(key)
                current.members[ext], current.names[ext] = data, member.name
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        if current is not None:
            yield current
        yield f"truncated or corrupt tar after {last}: {err}"
        return
    if current is not None:
        yield current


def _image_id(meta: dict | None) -> int | str | None:
    for name in JSON_ID_FIELDS:
        if isinstance(meta, dict) and isinstance(meta.get(name), (int, str)) and not isinstance(meta.get(name), bool):
            return meta[name]
    return None


def sample_item(shard: Path, sample: _Sample, image_size: int) -> dict:
    """``{"ref", "image"}`` or ``{"ref", "error"}`` for one sample (``ref.file_name`` = ``<shard>.tar/<member>``)."""
    image_ext = next((e for e in sample.members if f".{e.rpartition('.')[2]}" in IMAGE_EXTENSIONS), None)
    meta, meta_error = None, None
    if "json" in sample.members:
        try:
            meta = json.loads(sample.members["json"])
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            meta_error = f"{sample.names['json']}: not valid JSON ({err})"
    member = sample.names[image_ext] if image_ext else next(iter(sample.names.values()))
    ref = ImageRef(f"{shard.name}/{member}", shard, _image_id(meta), key=sample.key)
    if image_ext is None:
        return {"ref": ref, "error": f"no image member for key {sample.key!r} (members: {sorted(sample.names.values())})"}
    if meta_error:
        return {"ref": ref, "error": meta_error}
    if not sample.members[image_ext]:
        return {"ref": ref, "error": "empty file"}
    try:
        return {"ref": ref, "image": load_image(io.BytesIO(sample.members[image_ext]), image_size)}
    except ValueError as err:
        return {"ref": ref, "error": f"cannot decode: {err.__cause__ or err}"}


def shard_batch(shard: Path, items: list[dict], first_index: int, end: bool) -> dict:
    """A batch like :func:`~captioning.data.images.collate_images`'s, plus ``shard`` and ``shard_end``."""
    ok = [it for it in items if "image" in it]
    return {"image": torch.stack([it["image"] for it in ok]) if ok else None,  # (B, 3, S, S)
            "refs": [it["ref"] for it in ok], "failed": [(it["ref"], it["error"]) for it in items if "error" in it],
            "first_index": first_index, "shard": str(shard), "shard_end": end}


class ShardImages(IterableDataset):
    """Batches of whole shards, never mixing two shards; the last batch of each has ``shard_end`` set (an
    empty shard gives one empty batch). DataLoader workers split the shards among themselves.

    Args:
        shards: ``(ordinal, path)`` of the shards to read; the ordinal seeds sampling (``first_index``).
        image_size: Side length images are resized to.
        batch_size: Samples per batch.
    """

    def __init__(self, shards: list[tuple[int, Path]], image_size: int, batch_size: int) -> None:
        self.shards, self.image_size, self.batch_size = shards, image_size, batch_size

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        mine = self.shards if info is None else self.shards[info.id::info.num_workers]
        for ordinal, shard in mine:
            yield from self._batches(ordinal, shard)

    def _batches(self, ordinal: int, shard: Path) -> Iterator[dict]:
        items: list[dict] = []
        start = count = 0
        for sample in iter_samples(shard):
            if isinstance(sample, str):
                items.append({"ref": ImageRef(shard.name, shard), "error": sample})
            else:
                items.append(sample_item(shard, sample, self.image_size))
            count += 1
            if len(items) == self.batch_size:
                yield shard_batch(shard, items, ordinal * 10_000_000 + start, end=False)
                items, start = [], count
        yield shard_batch(shard, items, ordinal * 10_000_000 + start, end=True)
