"""`captioning caption`: inputs, output rows, unreadable images, resuming, determinism, two processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from caption_helpers import tiny_checkpoint
from captioning.cli.caption import main
from captioning.inference.output import journal_dir
from captioning.data.images import discover_images

REPO = Path(__file__).resolve().parents[1]
FIELDS = ["image_id", "file_name", "caption", "score"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture()
def folder(tiny_shapes: Path, tmp_path: Path) -> Path:
    """Five scenes (two in a subfolder) and three unreadable files."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    scenes = sorted((tiny_shapes / "test").glob("*.png"))[:5]
    for i, src in enumerate(scenes):
        shutil.copy(src, root / ("sub" if i >= 3 else ".") / src.name)
    (root / "empty.jpg").touch()
    (root / "notes.png").write_text("not an image")
    (root / "cut.png").write_bytes(scenes[0].read_bytes()[:60])
    (root / "readme.txt").write_text("ignored: not an image extension")
    return root


def _caption(ckpt: Path, images: Path, output: Path, *extra: str) -> dict:
    return main(["--checkpoint", str(ckpt), "--images", str(images), "--output", str(output), "--batch-size", "3",
                 "--num-workers", "0", "--no-progress", *extra])


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_discovery_of_folders_lists_and_coco_files(folder: Path, tiny_shapes: Path, tmp_path: Path) -> None:
    names = [r.file_name for r in discover_images(folder)]
    assert len(names) == 8 and names == sorted(names) and any(n.startswith("sub/") for n in names)
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my photos\n{names[0]}\n\n{names[0]}\n{folder / names[1]}\n".replace(names[0], f"photos/{names[0]}"))
    refs = discover_images(listing)
    assert [r.file_name for r in refs] == [f"photos/{names[0]}", str(folder / names[1])]
    assert refs[0].path == tmp_path / "photos" / names[0]  # relative to the list file
    coco = discover_images(tiny_shapes / "annotations/captions_test.json")
    assert all(r.image_id is not None and r.path.is_file() for r in coco)  # images found in root/test
    moved = tmp_path / "elsewhere.json"
    shutil.copy(tiny_shapes / "annotations/captions_test.json", moved)
    with pytest.raises(FileNotFoundError, match="cannot find its images.*--image-dir"):
        discover_images(moved)
    assert discover_images(moved, image_dir=tiny_shapes / "test")[0].path.is_file()
    with pytest.raises(FileNotFoundError, match="nowhere"):
        discover_images(tmp_path / "nowhere")


def test_folder_rows_errors_and_summary(ckpt: Path, folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "caps.jsonl"
    summary = _caption(ckpt, folder, out, "--beam-size", "2")
    rows = _rows(out)
    assert all(list(r) == FIELDS and r["image_id"] is None and isinstance(r["score"], float) for r in rows)
    assert [r["file_name"] for r in rows] == [r.file_name for r in discover_images(folder) if r.path.stat().st_size > 100]
    errors = {e["file_name"]: e["error"] for e in _rows(tmp_path / "caps.errors.jsonl")}
    assert errors["empty.jpg"] == "empty file" and errors["notes.png"].startswith("cannot decode")
    assert errors["cut.png"].startswith("cannot decode")
    assert summary["captioned"] == 5 and summary["errors"] == 3
    assert "captioned 5 images" in capsys.readouterr().err
    assert not journal_dir(out).exists()
    _caption(ckpt, folder, tmp_path / "again.jsonl", "--beam-size", "2")
    assert _rows(tmp_path / "again.jsonl") == rows  # beam search is deterministic


def test_sampling_is_reproducible_with_its_seed(ckpt: Path, folder: Path, tmp_path: Path) -> None:
    runs = {}
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        _caption(ckpt, folder, tmp_path / f"{name}.jsonl", "--sample", "--seed", seed)
        runs[name] = [r["caption"] for r in _rows(tmp_path / f"{name}.jsonl")]
    assert runs["a"] == runs["b"] and runs["a"] != runs["c"]


def test_resume_keeps_finished_rows_and_reads_a_killed_runs_journal(ckpt: Path, folder: Path, tmp_path: Path) -> None:
    full = tmp_path / "full.jsonl"
    _caption(ckpt, folder, full)
    rows = _rows(full)
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({**rows[0], "caption": "kept from before"}) + "\n")
    journal = journal_dir(out) / "rank0.captions.jsonl"  # a killed run: one complete line, one cut off
    journal.parent.mkdir()
    journal.write_text(json.dumps(rows[1]) + "\n" + json.dumps(rows[2])[:25])
    summary = _caption(ckpt, folder, out, "--resume")
    assert summary["kept"] == 2 and summary["captioned"] == 3
    assert _rows(out) == [{**rows[0], "caption": "kept from before"}, *rows[1:]]
    assert _caption(ckpt, folder, out, "--resume")["captioned"] == 0  # nothing left to do


def test_coco_annotation_file_gives_coco_results(ckpt: Path, tiny_shapes: Path, folder: Path, tmp_path: Path) -> None:
    ann = tiny_shapes / "annotations/captions_test.json"
    out = tmp_path / "results.json"
    _caption(ckpt, ann, out)  # a COCO annotation file defaults to --format coco
    results = json.loads(out.read_text())
    expected = sorted(img["id"] for img in json.loads(ann.read_text())["images"])
    assert [r["image_id"] for r in results] == expected and set(results[0]) == {"image_id", "caption", "score"}
    with pytest.raises(SystemExit, match="--format coco needs COCO image ids"):
        _caption(ckpt, folder, tmp_path / "x.json", "--format", "coco")


def test_a_run_with_no_readable_image_fails(ckpt: Path, tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad/a.jpg").write_text("no")
    with pytest.raises(SystemExit, match="no image could be captioned"):
        _caption(ckpt, tmp_path / "bad", tmp_path / "out.jsonl")
    assert _rows(tmp_path / "out.errors.jsonl")[0]["file_name"] == "a.jpg"


def test_two_processes_write_shards_merged_without_duplicates_or_gaps(ckpt: Path, folder: Path, tmp_path: Path) -> None:
    _caption(ckpt, folder, tmp_path / "one.jsonl")
    two = tmp_path / "two.jsonl"
    done = subprocess.run([sys.executable, "-m", "captioning.cli.main", "caption", "--checkpoint", str(ckpt),
                           "--images", str(folder), "--output", str(two), "--batch-size", "2", "--num-workers", "0",
                           "--devices", "2", "--no-progress"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = _rows(tmp_path / "one.jsonl"), _rows(two)  # 5 images over 2 ranks: every image once, in order
    assert [(r["file_name"], r["caption"]) for r in two] == [(r["file_name"], r["caption"]) for r in one]
    assert [r["score"] for r in two] == pytest.approx([r["score"] for r in one], abs=1e-5)
    assert len(_rows(tmp_path / "two.errors.jsonl")) == 3 and not journal_dir(tmp_path / "two.jsonl").exists()


def test_attention_maps_per_word_with_an_attention_checkpoint(folder: Path, tmp_path: Path) -> None:
    from captioning.data.results import read_caption_rows
    from captioning.cli.gallery import main as gallery_main

    att = tiny_checkpoint(tmp_path / "att.ckpt", decoder="updown")
    _caption(att, folder, tmp_path / "att.jsonl", "--attention")
    rows = _rows(tmp_path / "att.jsonl")
    assert len(rows) == 5
    for row in rows:  # one map per word over the 2×2 grid, each a distribution
        assert len(row["attention"]) == len(row["caption"].split())
        assert all(len(w) == 4 and abs(sum(w) - 1) < 1e-3 for w in row["attention"])
    assert read_caption_rows(tmp_path / "att.jsonl")[0].attention == rows[0]["attention"]
    gallery_main([str(tmp_path / "att.jsonl"), "--images", str(folder), "--output", str(tmp_path / "g")])
    page = (tmp_path / "g" / "index.html").read_text()
    assert page.count("<canvas") == sum(len(r["attention"]) for r in rows) and "data-att=" in page
    assert "<script>" in page  # the maps are drawn over each image in the browser
    with pytest.raises(SystemExit, match="--attention needs an attention decoder"):
        _caption(tiny_checkpoint(tmp_path / "rnn.ckpt"), folder, tmp_path / "rnn.jsonl", "--attention")


def test_attention_maps_are_refused_for_a_block_decoder_without_regions(folder: Path, tmp_path: Path) -> None:
    """Pooled RWKV has a teacher-forced `attend` but nothing to attend over: `--attention` names the fix."""
    from caption_helpers import WORDS
    from captioning.inference.checkpoint import save_captioner
    from captioning.models import Captioner, RWKVDecoder, SmallCNN
    from captioning.data.vocab import Vocabulary

    encoder, vocab = SmallCNN(channels=(8, 16), out_dim=16, grid_size=2), Vocabulary.build([" ".join(WORDS)])
    ckpt = save_captioner(tmp_path / "rwkv.ckpt", Captioner(encoder, RWKVDecoder(len(vocab), 16, d_model=16)).eval(),
                          vocab, 32)
    with pytest.raises(SystemExit, match=r"--attention needs an attention decoder .*grid: true.*decoder is rwkv"):
        _caption(ckpt, folder, tmp_path / "rwkv.jsonl", "--attention")
    assert not (tmp_path / "rwkv.jsonl").exists()  # refused before anything is written
