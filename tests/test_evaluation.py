"""`captioning evaluate` / `captioning gallery`: metrics, CHAIR per image, errors, report and gallery.

CHAIR numbers are counted by hand on the fixture below (table: person/dog/cat/hot dog/dining table):

| image | caption | mentions (token index) | ground truth | hallucinated |
| --- | --- | --- | --- | --- |
| 1 | A man and a cat with two dogs. | man→person 1, cat 4, dogs→dog 7 | person, dog | cat |
| 2 | a hot dog next to a cat on a table | hot dog 1 (2 tokens), cat 6, table 9 | cat, dining table | hot dog |
| 3 | A hot dog. | hot dog 1 | hot dog | - |
| 4 | <script>alert(1)</script> people | people→person 10 | (none) | person |

CHAIRs = 3/4, CHAIRi = 3/8.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from captioning.cli.evaluate import main
from captioning.evaluation.evaluate import evaluate
from captioning.evaluation.gallery import highlight
from captioning.cli.gallery import main as gallery_main
from captioning.data.results import InputError
from captioning.metrics.chair import Chair
from conftest import SHARED, requires_shared

TABLE = "person, man, woman, people\ndog, puppy\ncat, kitten\nhot dog\ndining table, table\n"
WEIRD = 'we"ird & name.png'
IMAGES = {1: "a.png", 2: "b.png", 3: "c.png", 4: WEIRD}
REFERENCES = {1: ["A man with a dog.", "A person walking a puppy"],
              2: ["A cat on a table.", "a kitten sitting on the dining table"],
              3: ["A hot dog on a plate"], 4: ["An empty street at night"]}
OBJECTS = {1: ["person", "dog"], 2: ["cat", "dining table"], 3: ["hot dog"], 4: []}
CAPTIONS = {1: "A man and a cat with two dogs.", 2: "a hot dog next to a cat on a table", 3: "A hot dog.",
            4: "<script>alert(1)</script> people"}


@pytest.fixture
def coco(tmp_path: Path) -> dict[str, Path]:
    """A 4-image dataset in the official layout (images listed out of id order), its table and results."""
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val").mkdir()
    order = [3, 1, 4, 2]
    images = [{"id": i, "file_name": IMAGES[i], "width": 8, "height": 8} for i in order]
    for i in order:
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / "val" / IMAGES[i], format="PNG")
    captions = [{"id": 10 * i + k, "image_id": i, "caption": c} for i in order for k, c in enumerate(REFERENCES[i])]
    names = sorted({n for v in OBJECTS.values() for n in v})
    categories = [{"id": k + 1, "name": n, "supercategory": "x"} for k, n in enumerate(names)]
    instances = [{"id": 100 * i + k, "image_id": i, "category_id": names.index(n) + 1, "bbox": [0, 0, 1, 1],
                  "area": 1, "iscrowd": 0} for i in order for k, n in enumerate(OBJECTS[i])]
    paths = {"annotations": root / "annotations/captions_val.json",
             "instances": root / "annotations/instances_val.json",
             "synonyms": tmp_path / "synonyms.txt", "results": tmp_path / "results.json", "images": root / "val"}
    info = {"description": "test"}
    paths["annotations"].write_text(json.dumps({"info": info, "images": images, "annotations": captions}))
    paths["instances"].write_text(json.dumps({"info": info, "images": images, "annotations": instances,
                                              "categories": categories}))
    paths["synonyms"].write_text(TABLE)
    paths["results"].write_text(json.dumps([{"image_id": i, "caption": CAPTIONS[i]} for i in (2, 4, 1, 3)]))
    return paths


def _run(coco: dict[str, Path], out: Path, **kwargs) -> dict:
    return evaluate(coco["results"], coco["annotations"], coco["instances"], coco["synonyms"],
                    output=out / "METRICS.json", backend=kwargs.pop("backend", "python"), log=lambda _: None,
                    **kwargs)


def test_evaluate_writes_metrics_chair_and_per_image(coco: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    metrics = _run(coco, out)
    assert json.loads((out / "METRICS.json").read_text()) == metrics
    assert metrics["CHAIRs"] == pytest.approx(3 / 4) and metrics["CHAIRi"] == pytest.approx(3 / 8)
    assert metrics["backend"] == "python" and metrics["chair_mode"] == "reference" and metrics["METEOR"] is None
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L"))
    rows = {row["image_id"]: row for row in metrics["per_image"]}
    assert [row["image_id"] for row in metrics["per_image"]] == [2, 4, 1, 3]  # the results file's order
    assert rows[1]["mentioned"] == [{"word": "man", "category": "person", "index": 1, "length": 1},
                                    {"word": "cat", "category": "cat", "index": 4, "length": 1},
                                    {"word": "dog", "category": "dog", "index": 7, "length": 1}]
    assert rows[1]["hallucinated"] == [{"word": "cat", "category": "cat", "index": 4, "length": 1}]
    assert rows[2]["hallucinated"] == [{"word": "hot dog", "category": "hot dog", "index": 1, "length": 2}]
    assert rows[3]["hallucinated"] == [] and rows[3]["CHAIRs"] == 0 and rows[3]["ground_truth"] == ["hot dog"]
    assert rows[4]["hallucinated"][0]["category"] == "person" and rows[4]["ground_truth"] == []
    assert rows[1]["CHAIRi"] == pytest.approx(1 / 3) and rows[1]["caption"] == CAPTIONS[1]
    assert {"Bleu_4", "ROUGE_L", "CIDEr"} <= set(rows[1])


def test_chair_needs_instances_and_a_table_that_names_their_categories(coco: dict[str, Path], tmp_path: Path) -> None:
    metrics = evaluate(coco["results"], coco["annotations"], backend="python", log=lambda _: None)
    assert metrics["CHAIRs"] is None and metrics["chair_mode"] is None
    assert any("CHAIR skipped: it needs --instances" in note for note in metrics["notes"])
    assert "mentioned" not in metrics["per_image"][0] and metrics["CIDEr"] > 0
    default = evaluate(coco["results"], coco["annotations"], coco["instances"], backend="python", log=lambda _: None)
    assert default["synonyms"] == "coco" and default["CHAIRs"] is not None  # COCO categories: the packaged table
    assert default["binding_errors"] is None  # no colours annotated
    odd = json.loads(Path(coco["instances"]).read_text())
    odd["categories"][0]["name"] = "spaceship"  # no packaged table names it
    (tmp_path / "odd.json").write_text(json.dumps(odd))
    skipped = evaluate(coco["results"], coco["annotations"], tmp_path / "odd.json", backend="python",
                       log=lambda _: None)
    assert skipped["CHAIRs"] is None and any("pass --synonyms" in note for note in skipped["notes"])


def test_without_pycocoevalcap_auto_falls_back_with_a_note(coco, monkeypatch) -> None:
    import sys

    monkeypatch.setattr("captioning.evaluation.toolkit.java_available", lambda: True)
    monkeypatch.setitem(sys.modules, "pycocoevalcap.bleu.bleu", None)  # an import of it raises ImportError
    metrics = evaluate(coco["results"], coco["annotations"], log=lambda _: None)
    assert metrics["backend"] == "python" and metrics["Bleu_4"] is not None
    assert metrics["notes"][0].startswith("pycocoevalcap is not installed")


def test_without_java_the_java_free_path_reports_the_rest(coco, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("captioning.evaluation.toolkit.java_available", lambda: False)
    lines: list[str] = []
    metrics = evaluate(coco["results"], coco["annotations"], log=lines.append)
    assert metrics["backend"] == "python" and metrics["METEOR"] is None and metrics["Bleu_4"] is not None
    assert metrics["notes"][0].startswith("java not found")
    assert "note: java not found" in lines[0]


@pytest.mark.skipif(shutil.which("java") is None, reason="java is not on PATH")
def test_toolkit_backend_equals_cocoevalcap_on_the_files(coco, tmp_path, monkeypatch) -> None:
    """The adapter adds nothing: the official COCOEvalCap run on the same files gives the same corpus and
    per-image values. SPICE is stubbed (it would download models); METEOR's JVM takes ~20 s to load its
    paraphrase table, so it runs once, in the adapter, and the test checks it received exactly the input
    COCOEvalCap gives METEOR."""
    import pycocoevalcap.eval as coco_eval
    import pycocoevalcap.meteor.meteor as meteor_module
    from pycocotools.coco import COCO

    seen: dict[str, tuple] = {}

    class Stub:
        def __init__(self, name: str) -> None:
            self.name = name

        def compute_score(self, gts, res):
            seen[self.name] = (gts, res)
            return 0.0, [0.0] * len(res)

        def method(self):
            return self.name

    class RecordingMeteor(meteor_module.Meteor):
        def compute_score(self, gts, res):
            seen["adapter"] = (gts, res)
            return super().compute_score(gts, res)

    monkeypatch.setattr(coco_eval, "Spice", lambda: Stub("SPICE"))
    monkeypatch.setattr(coco_eval, "Meteor", lambda: Stub("METEOR"))
    monkeypatch.setattr(meteor_module, "Meteor", RecordingMeteor)
    gt = COCO(str(coco["annotations"]))
    run = coco_eval.COCOEvalCap(gt, gt.loadRes(str(coco["results"])))
    run.params["image_id"] = run.cocoRes.getImgIds()
    run.evaluate()
    metrics = _run(coco, tmp_path / "out", backend="pycocoevalcap")
    assert metrics["backend"] == "pycocoevalcap"
    for name in ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"):
        assert metrics[name] == pytest.approx(run.eval[name], abs=1e-12), name
        for row in metrics["per_image"]:
            assert row[name] == pytest.approx(run.imgToEval[row["image_id"]][name], abs=1e-12), name
    assert {k: v for k, v in seen["adapter"][0].items()} == dict(seen["METEOR"][0])  # references, tokenized
    assert {k: v for k, v in seen["adapter"][1].items()} == dict(seen["METEOR"][1])  # captions, tokenized
    rows = {row["image_id"]: row for row in metrics["per_image"]}
    assert 0.0 < metrics["METEOR"] < 1.0 and rows[3]["METEOR"] > rows[4]["METEOR"]
    assert any(note.startswith("SPICE skipped") for note in metrics["notes"])


@pytest.mark.parametrize(("content", "problem"), [
    ("{not json", "not valid JSON"),
    ('{"image_id": 1, "caption": "a"}', "must be a JSON list"),
    ("[]", "no captions"),
    ("[5]", "must be an object"),
    ('[{"caption": "a dog"}]', "no 'image_id' key"),
    ('[{"image_id": 1}]', "no 'caption' key"),
    ('[{"image_id": "1", "caption": "a dog"}]', "'image_id' must be an integer"),
    ('[{"image_id": true, "caption": "a dog"}]', "'image_id' must be an integer"),
    ('[{"image_id": 1, "caption": 7}]', "'caption' must be a string"),
    ('[{"image_id": 1, "caption": "a dog", "attention": [[0.5, "x"]]}]',
     "(image_id 1) 'attention' must be a list of lists of numbers"),
    ('[{"image_id": 1, "caption": "a"}, {"image_id": 99, "caption": "b"}]', "no reference captions"),
    ('[{"image_id": 1, "caption": "a"}, {"image_id": 1, "caption": "b"}]', "image_id 1 appears more than once"),
])
def test_malformed_results_name_file_and_problem_and_write_nothing(coco, tmp_path, content, problem) -> None:
    coco["results"].write_text(content)
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        _run(coco, out, gallery=out / "gallery", report=out / "report")
    assert str(coco["results"]) in str(err.value) and problem in str(err.value)
    assert not out.exists()


def test_cli_reports_errors_with_status_2(coco, tmp_path, capsys) -> None:
    coco["results"].write_text('[{"image_id": 1, "caption": "a"}, {"image_id": 1, "caption": "b"}]')
    with pytest.raises(SystemExit) as exit_info:
        main(["--results", str(coco["results"]), "--annotations", str(coco["annotations"]),
              "--output", str(tmp_path / "out/M.json")])
    assert exit_info.value.code == 2
    assert str(coco["results"]) in capsys.readouterr().err and not (tmp_path / "out").exists()
    coco["results"].write_text('[{"image_id": 1, "caption": "a"}]')
    with pytest.raises(SystemExit):
        main(["--results", str(coco["results"]), "--annotations", str(tmp_path / "missing.json")])
    assert "missing.json" in capsys.readouterr().err


def test_report_numbers_match_hand_counts(coco, tmp_path) -> None:
    out = tmp_path / "out"
    _run(coco, out, report=out / "report")
    report = json.loads((out / "report/report.json").read_text())
    assert report["per_category"]["person"] == {"mentions": 2, "hallucinated": 1, "rate": 0.5}
    assert report["per_category"]["hot dog"] == {"mentions": 2, "hallucinated": 1, "rate": 0.5}
    assert report["per_category"]["dog"] == {"mentions": 1, "hallucinated": 0, "rate": 0.0}
    top = {row["category"]: row for row in report["top_hallucinated"]}
    assert [row["category"] for row in report["top_hallucinated"]] == ["cat", "hot dog", "person"]
    assert top["cat"]["co_occurring"] == [["dog", 1], ["person", 1]]
    assert top["hot dog"]["co_occurring"] == [["cat", 1], ["dining table", 1]] and top["person"]["co_occurring"] == []
    by_length = {row["words"]: row for row in report["by_length"]}
    assert set(by_length) == {"1-5", "6-8", "9-11"}  # 3 and 5 words, 8 words, 10 words
    assert by_length["1-5"]["captions"] == 2 and by_length["1-5"]["CHAIRs"] == 0.5 and by_length["1-5"]["CHAIRi"] == 0.5
    assert by_length["6-8"]["CHAIRi"] == pytest.approx(1 / 3)
    assert (out / "report/hallucination.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| cat | 1 | 1 | dog (1), person (1) |" in (out / "report/report.md").read_text()


def test_gallery_escapes_captions_and_file_names(coco, tmp_path) -> None:
    out = tmp_path / "out"
    _run(coco, out, gallery=out / "gallery")  # images found in the official layout: coco/val
    page = (out / "gallery/index.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'src="../../coco/val/we%22ird%20%26%20name.png"' in page and 'alt="we&quot;ird &amp; name.png"' in page
    assert '<mark class="halluc" title="hallucinated: hot dog">hot dog</mark>' in page
    assert "A person walking a puppy" in page  # references
    # Flex rows stretch their children to the row's height unless told not to: images keep their aspect ratio
    # (seen in headless Chromium: a square scene rendered as a tall rectangle before).
    assert ".item{display:flex;align-items:flex-start;" in page


def test_highlight_marks_tokens_in_the_original_text() -> None:
    chair = Chair([["dog", "puppy"], ["cat"], ["hot dog"]])
    caption = "Two DOGS & a hot dog, near <b>cat</b>"
    tokens = chair.tokens(caption)
    mentions = [{"word": m.word, "category": m.category, "index": m.index, "length": m.length}
                for m in chair.mentions(caption)]
    html = highlight(caption, tokens, mentions, [m for m in mentions if m["category"] == "hot dog"])
    assert html == ('Two <mark class="object" title="in the image: dog">DOGS</mark> &amp; a '
                    '<mark class="halluc" title="hallucinated: hot dog">hot dog</mark>, near &lt;b&gt;'
                    '<mark class="object" title="in the image: cat">cat</mark>&lt;/b&gt;')


def test_highlight_marks_a_colour_bound_to_the_wrong_object() -> None:
    """The shapes binding error CHAIR cannot see: both shapes are in the scene, one word pair is not."""
    chair = Chair([["circle"], ["square"]])
    caption = "a red circle and a green circle"  # scene: a green circle and a red square
    tokens = chair.tokens(caption)
    mentions = [{"word": m.word, "category": m.category, "index": m.index, "length": m.length}
                for m in chair.mentions(caption)]
    html = highlight(caption, tokens, mentions, [], binding_errors=[["red", "circle"]])
    assert html == ('a <mark class="binding" title="no object of this colour and category in the image: circle">'
                    'red circle</mark> and a green <mark class="object" title="in the image: circle">circle</mark>')


def test_gallery_command_on_batch_captioning_output(coco, tmp_path, capsys) -> None:
    lines = [{"image_id": 4, "file_name": WEIRD, "caption": CAPTIONS[4], "score": -1.5},
             {"image_id": 1, "file_name": "a.png", "caption": CAPTIONS[1], "score": -0.25}]
    captions = tmp_path / "captions.jsonl"
    captions.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    index = gallery_main([str(captions), "--images", str(coco["images"]), "--output", str(tmp_path / "g"),
                          "--synonyms", str(coco["synonyms"])])
    page = index.read_text()
    assert "<script>" not in page and 'src="../coco/val/we%22ird%20%26%20name.png"' in page
    assert '<mark class="object" title="in the image: person">people</mark>' in page and "-1.500" in page
    results = tmp_path / "results.json"  # a COCO results list has no file names: --annotations supplies them
    results.write_text(json.dumps([{"image_id": 2, "caption": "a cat"}]))
    with pytest.raises(SystemExit):
        gallery_main([str(results), "--images", str(coco["images"]), "--output", str(tmp_path / "g2")])
    assert "image_id 2 has no file_name" in capsys.readouterr().err and not (tmp_path / "g2").exists()
    gallery_main([str(results), "--images", str(coco["images"]), "--output", str(tmp_path / "g2"),
                  "--annotations", str(coco["annotations"])])
    assert 'src="../coco/val/b.png"' in (tmp_path / "g2/index.html").read_text()


@requires_shared("coco-mini", "chair/synonyms.txt")
def test_coco_mini_first_references_and_shifted_captions(tmp_path: Path) -> None:
    root = SHARED / "coco-mini/annotations"
    refs: dict[int, str] = {}
    for ann in json.loads((root / "captions_val2017.json").read_text())["annotations"]:
        refs.setdefault(ann["image_id"], ann["caption"])
    ids = sorted(refs)
    results = tmp_path / "first.json"
    results.write_text(json.dumps([{"image_id": i, "caption": refs[i]} for i in ids]))
    args = dict(instances=root / "instances_val2017.json", synonyms=SHARED / "chair/synonyms.txt",
                backend="python", log=lambda _: None)
    own = evaluate(results, root / "captions_val2017.json", **args)
    assert own["Bleu_4"] == pytest.approx(1.0, abs=1e-6) and own["CHAIRs"] == 0.0  # refs are ground truth
    assert sum(len(row["mentioned"]) for row in own["per_image"]) > len(ids)
    results.write_text(json.dumps([{"image_id": i, "caption": refs[ids[k - 1]]} for k, i in enumerate(ids)]))
    shifted = evaluate(results, root / "captions_val2017.json", **args)  # another image's caption
    assert shifted["CHAIRs"] > 0.3 and shifted["CHAIRi"] > 0.3 and shifted["CIDEr"] < 0.5


def test_datamodule_supplies_categories_only_with_instances(tiny_shapes: Path) -> None:
    from captioning.training.datamodules import CaptionDataModule, ShapesDataModule
    from captioning.data.shapes import SYNONYMS

    shapes = ShapesDataModule(root=str(tiny_shapes), num_train=16, num_val=6, num_test=6, image_size=32,
                              eval_batch_size=6)
    assert shapes.synonyms == SYNONYMS == "shapes"
    batch = next(iter(shapes.val_dataloader()))
    assert len(batch["categories"]) == 6 and all(set(c) <= {"circle", "square", "triangle"} and c
                                                 for c in batch["categories"])
    plain = CaptionDataModule(root=str(tiny_shapes), train_split="train", val_split="val", test_split="test",
                              instances_pattern=None, num_workers=0, min_word_count=1)
    assert plain.synonyms is None and plain.categories("val") is None
    assert "categories" not in next(iter(plain.val_dataloader()))


def test_auto_falls_back_when_the_java_toolkit_fails(coco, monkeypatch) -> None:
    from captioning.evaluation import toolkit

    def broken(references, predictions):
        raise OSError("read-only site-packages")

    monkeypatch.setattr(toolkit, "java_available", lambda: True)
    monkeypatch.setitem(toolkit.SCORERS._entries, "pycocoevalcap", broken)
    metrics = evaluate(coco["results"], coco["annotations"], log=lambda _: None)
    assert metrics["backend"] == "python" and metrics["CIDEr"] is not None
    assert metrics["notes"][0].startswith("the Java PTB tokenizer failed (OSError: read-only site-packages)")
