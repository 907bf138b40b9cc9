"""The files of ``captioning caption`` over tar shards: one output per shard, written when the shard is done.

``OUT_DIR/<shard-stem>.jsonl`` holds the shard's rows (``image_id``, ``file_name`` = ``<shard>.tar/<member>``,
``caption``, ``score``, ``key``) and ``OUT_DIR/<shard-stem>.errors.jsonl`` its unreadable samples; both are
written atomically by the process that captioned the shard, the errors file first, so an output that exists
belongs to a finished shard. ``--resume`` skips the shards whose output exists.
"""

from __future__ import annotations

import json
from pathlib import Path

from captioning.core.io import atomic_path
from captioning.data.shards import discover_shards
from captioning.inference.output import read_jsonl, write_output


def shard_output(out_dir: Path, shard: Path) -> Path:
    """The output file of one shard."""
    return out_dir / f"{shard.stem}.jsonl"


def shard_errors(out_dir: Path, shard: Path) -> Path:
    """The errors file of one shard."""
    return out_dir / f"{shard.stem}.errors.jsonl"


class ShardJob:
    """What one ``captioning caption`` run over tar shards reads and writes.

    Args:
        source: A brace pattern (``shards/{00000..00099}.tar``), a ``.tar`` file or a folder of ``.tar`` files.
        out_dir: The folder of the per-shard outputs.
        resume: Skip the shards whose output already exists.
    """

    def __init__(self, source: str | Path, out_dir: str | Path, resume: bool = False) -> None:
        self.source, self.out_dir, self.resume = source, Path(out_dir), resume
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise ValueError(f"--output {self.out_dir} is a file; captioning tar shards writes one output per "
                             f"shard into a folder")

    def plan(self) -> dict:
        """``{"shards", "pending"}``: every shard as ``(ordinal, path)``, and those still to caption."""
        shards = list(enumerate(discover_shards(self.source)))
        pending = [(i, s) for i, s in shards if not (self.resume and shard_output(self.out_dir, s).is_file())]
        return {"shards": shards, "pending": pending}

    def write_shard(self, shard: Path, rows: list[dict], errors: list[dict]) -> None:
        """Writes one finished shard's errors file (or removes a stale one), then its output, atomically."""
        errors_file = shard_errors(self.out_dir, shard)
        if errors:
            with atomic_path(errors_file) as tmp:
                tmp.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in errors), encoding="utf-8")
        else:
            errors_file.unlink(missing_ok=True)
        write_output(shard_output(self.out_dir, shard), rows, "jsonl")

    def finish(self, plan: dict) -> dict:
        """Counts over the shards captioned in this run (read back from their outputs) and all outputs.

        Raises:
            RuntimeError: naming a pending shard that has no output (a process lost it).
        """
        captioned = errors = 0
        for _, shard in plan["pending"]:
            output = shard_output(self.out_dir, shard)
            if not output.is_file():
                raise RuntimeError(f"shard {shard} was not captioned: {output} is missing")
            captioned += len(read_jsonl(output))
            errors_file = shard_errors(self.out_dir, shard)
            errors += len(read_jsonl(errors_file)) if errors_file.is_file() else 0
        total = sum(len(read_jsonl(shard_output(self.out_dir, s))) for _, s in plan["shards"]
                    if shard_output(self.out_dir, s).is_file())
        return {"captioned": captioned, "kept": total - captioned, "errors": errors, "total": total,
                "shards": len(plan["pending"]), "shards_skipped": len(plan["shards"]) - len(plan["pending"])}

    @property
    def output(self) -> Path:
        """Where the outputs go (for the summary line)."""
        return self.out_dir

    @property
    def errors(self) -> Path:
        """Where the errors files go (for the summary line)."""
        return self.out_dir / "*.errors.jsonl"
