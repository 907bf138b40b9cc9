"""CHAIR: singularization as the reference's Pattern 2.6, mentions, ground truth and corpus scores.

Expected values are worked out by hand from the reference algorithm (LisaAnne/Hallucination utils/chair.py).
"""

from __future__ import annotations

import json

import pytest

from captioning.data.shapes import _SHAPE_SYNONYM, SHAPES, SYNONYMS
from captioning.metrics.chair import Chair, Mention, instance_categories, read_synonyms
from captioning.metrics.singular import singularize_fixed, singularize_reference
from conftest import SHARED, requires_shared

# A few lines in the format of the reference table, with its quirks: a stray space and a trailing comma.
TABLE = [
    ["person", "man", "woman", "people", "guy,"],
    ["bus", "minibus"],
    ["dog", "puppy"],
    ["bird", "duck"],
    ["hot dog"],
    ["teddy bear", "teddybear"],
    ["tie", "bow", "bow tie"],
    ["toilet", "urinal"],
    ["chair", "seat"],
    ["wine glass"],
    ["motorcycle", " motor bike", "motorbike"],
    ["cell phone", "phone", "iPhone"],
]


@pytest.fixture
def chair() -> Chair:
    return Chair(TABLE)


@pytest.mark.parametrize("word, singular", [
    ("dogs", "dog"), ("people", "person"), ("women", "woman"), ("knives", "knife"), ("boxes", "box"),
    ("buses", "bus"), ("bus", "bu"), ("glass", "glas"), ("glasses", "glass"), ("ties", "ty"),
    ("puppies", "puppy"), ("sheep", "sheep"), ("ice", "ice"), ("cheese", "cheese"), ("mice", "mouse"),
    ("dogs'", "dog's"), ("mothers-in-law", "mother-in-law"), ("skis", "ski"), ("leaves", "leaf"),
])
def test_reference_singularization_reproduces_pattern_quirks(word, singular):
    assert singularize_reference(word) == singular


def test_fixed_singularization_keeps_object_words():
    known = frozenset({"bus", "glass", "tie", "dog", "person"})
    assert [singularize_fixed(w, known) for w in ["bus", "glass", "ties", "dogs", "people", "cats"]] == [
        "bus", "glass", "tie", "dog", "person", "cat"]


def test_mentions_synonyms_plurals_repeats(chair):
    caption = "Two Puppies and a dog chase a man, and the dog barks."
    assert chair.mentions(caption) == [Mention("puppy", "dog", 1), Mention("dog", "dog", 4),
                                       Mention("man", "person", 7), Mention("dog", "dog", 11)]


def test_two_word_phrases_merge_and_indices_point_at_their_tokens(chair):
    caption = "a hot dog next to teddy bears and a baby duck near a toilet seat"
    tokens = chair.tokens(caption)
    mentions = chair.mentions(caption)
    assert [(m.word, m.category) for m in mentions] == [("hot dog", "hot dog"), ("teddy bear", "teddy bear"),
                                                         ("duck", "bird"), ("toilet", "toilet")]
    assert [(m.index, m.length) for m in mentions] == [(1, 2), (5, 2), (10, 1), (13, 2)]
    assert tokens[13:15] == ["toilet", "seat"]


def test_phrase_rules_of_the_reference(chair):
    got = [(m.word, m.category, m.index) for m in chair.mentions("a baby bird and a teddy bear and a bow tie")]
    assert got == [("bird", "bird", 1), ("teddy bear", "teddy bear", 5), ("tie", "tie", 9)]  # baby bird → bird
    # A seat in a caption that mentions a toilet is the toilet's seat, not a chair.
    assert [m.category for m in chair.mentions("a seat next to the toilet")] == ["toilet"]
    assert [m.category for m in chair.mentions("a seat next to the sink")] == ["chair"]


def test_reference_quirks_and_fixed_mode():
    reference, fixed = Chair(TABLE), Chair(TABLE, mode="fixed")
    caption = "a bus, a guy with an iPhone, two motor bikes and wine glasses"
    assert [m.word for m in reference.mentions(caption)] == ["wine glass"]  # bus→bu; " motor bike"; "guy,"
    assert [m.word for m in fixed.mentions(caption)] == ["bus", "guy", "iphone", "motor bike", "wine glass"]
    with pytest.raises(ValueError, match="unknown CHAIR mode 'exact'"):
        Chair(TABLE, mode="exact")


def test_sentences_unicode_empty_and_punctuation(chair):
    assert [m.index for m in chair.mentions("a dog. a man.")] == [1, 4]  # "dog." ends a sentence
    assert [m.word for m in chair.mentions("Ünïcödé café — a puppy!")] == ["puppy"]
    assert chair.mentions("") == [] and chair.mentions("...!?,") == []


def test_evaluate_counts_captions_and_mentions(chair):
    truth = {1: chair.ground_truth(["dog"], ["a man walks a dog"]), 2: {"bus"}, 3: set()}
    assert truth[1] == {"dog", "person"}
    result = chair.evaluate({1: "a dog and a puppy with a man and a bow", 2: "two buses", 3: "grass"}, truth)
    # Image 1: 4 mentions, 1 hallucinated (bow → tie); image 2: 1 mention, none; image 3: no mention.
    assert result.chair_s == pytest.approx(1 / 3) and result.chair_i == pytest.approx(1 / 5)
    image = result.per_image[1]
    assert [m.word for m in image.hallucinated] == ["bow"] and image.chair_i == pytest.approx(0.25)
    assert image.ground_truth == ["dog", "person"] and result.per_image[3].chair_i == 0.0
    with pytest.raises(KeyError, match="image id 4"):
        chair.evaluate({4: "a dog"}, truth)
    assert Chair(TABLE).evaluate({1: "grass"}, {1: set()}).chair_i == 0.0  # no mention at all: 0, not a crash


def test_ground_truth_errors_and_instances(chair, tmp_path):
    with pytest.raises(ValueError, match="'zebra' is not in the CHAIR synonym table"):
        chair.ground_truth(["zebra"], [])
    instances = {"images": [{"id": 5}, {"id": 6}], "categories": [{"id": 1, "name": "dog"}],
                 "annotations": [{"image_id": 5, "category_id": 1}, {"image_id": 5, "category_id": 1}]}
    assert instance_categories(instances) == {5: ["dog", "dog"], 6: []}
    with pytest.raises(ValueError, match="lacks 'categories'"):
        instance_categories({"annotations": []})
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        read_synonyms(tmp_path / "nowhere.txt")


def test_shapes_table_matches_the_generator_words():
    table = read_synonyms(SYNONYMS)
    assert [line[0] for line in table] == list(SHAPES)
    assert {w: line[0] for line in table for w in line[1:]} == {v: k for k, v in _SHAPE_SYNONYM.items()}
    chair = Chair.from_file(SYNONYMS)
    assert [m.category for m in chair.mentions("two big boxes left of three disks and a triangle")] == [
        "square", "circle", "triangle"]


@requires_shared("chair/synonyms.txt")
def test_reference_table_reads_like_the_reference():
    table = read_synonyms(SHARED / "chair" / "synonyms.txt")
    assert len(table) == 80 and table[0][0] == "person"
    chair = Chair.from_file(SHARED / "chair" / "synonyms.txt")
    assert len(chair.categories) == 80
    got = [(m.word, m.category) for m in chair.mentions("Two men on motorcycles near a bus and a fire hydrant")]
    assert got == [("man", "person"), ("motorcycle", "motorcycle"), ("fire hydrant", "fire hydrant")]


@requires_shared("coco-mini", "chair/synonyms.txt")
def test_coco_references_never_hallucinate():
    chair = Chair.from_file(SHARED / "chair" / "synonyms.txt")
    ann = SHARED / "coco-mini" / "annotations"
    objects = instance_categories(json.loads((ann / "instances_val2017.json").read_text()))
    refs: dict[int, list[str]] = {}
    for a in json.loads((ann / "captions_val2017.json").read_text())["annotations"]:
        refs.setdefault(a["image_id"], []).append(a["caption"])
    truth = {i: chair.ground_truth(objects.get(i, []), r) for i, r in refs.items()}
    result = chair.evaluate({i: r[0] for i, r in refs.items()}, truth)
    assert result.chair_s == 0.0 and result.chair_i == 0.0  # a reference's objects are ground truth
    assert sum(len(r.mentioned) for r in result.per_image.values()) > len(refs)  # and real mentions were found
