"""The packaged CHAIR tables: the COCO table equals the reference file in ../shared, is the default for COCO-style
instance files, and checkpoints name tables instead of storing this machine's paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from captioning.evaluation.evaluate import evaluate
from captioning.metrics.chair import TABLES, Chair, read_synonyms, synonyms_path, table_for
from conftest import SHARED, requires_shared

REFERENCE = SHARED / "chair" / "synonyms.txt"
COCO_MINI = SHARED / "coco-mini" / "annotations"


@requires_shared("chair/synonyms.txt")
def test_packaged_coco_table_reads_exactly_as_the_reference_file() -> None:
    assert read_synonyms("coco") == read_synonyms(REFERENCE)  # quirks included: stray spaces, duplicates
    header = TABLES["coco"].read_text().splitlines()[:6]
    assert any("LisaAnne/Hallucination" in line for line in header) and any("BSD 2-Clause" in line for line in header)


def test_table_names_resolve_and_defaults_follow_the_instance_categories(tmp_path: Path) -> None:
    assert synonyms_path("coco") == TABLES["coco"] and synonyms_path(tmp_path / "t.txt") == tmp_path / "t.txt"
    assert table_for(["person", "dog", "hair drier"]) == "coco" and table_for(["circle", "triangle"]) == "shapes"
    assert table_for(["person", "circle"]) is None and table_for([]) is None
    assert len(Chair.from_file("coco").categories) == 80


@requires_shared("coco-mini", "chair/synonyms.txt")
@pytest.mark.parametrize("mode", ["reference", "fixed"])
def test_packaged_table_gives_the_reference_files_chair_on_coco_mini(tmp_path: Path, mode: str) -> None:
    refs: dict[int, list[str]] = {}
    for a in json.loads((COCO_MINI / "captions_val2017.json").read_text())["annotations"]:
        refs.setdefault(a["image_id"], []).append(a["caption"])
    ids = sorted(refs)
    results = tmp_path / "shifted.json"  # each image gets another image's caption: plenty of hallucinations
    results.write_text(json.dumps([{"image_id": i, "caption": refs[ids[(k + 1) % len(ids)]][0]}
                                   for k, i in enumerate(ids)]))
    common = dict(instances=COCO_MINI / "instances_val2017.json", backend="python", chair_mode=mode,
                  log=lambda _: None)
    explicit = evaluate(results, COCO_MINI / "captions_val2017.json", synonyms=REFERENCE, **common)
    default = evaluate(results, COCO_MINI / "captions_val2017.json", **common)  # no --synonyms: packaged coco
    assert default["synonyms"] == "coco" and explicit["CHAIRs"] > 0.3
    assert (default["CHAIRs"], default["CHAIRi"]) == (explicit["CHAIRs"], explicit["CHAIRi"])
    assert [r["hallucinated"] for r in default["per_image"]] == [r["hallucinated"] for r in explicit["per_image"]]
