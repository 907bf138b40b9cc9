"""Tests of the pure-Python caption metrics (parity with pycocoevalcap)."""

from __future__ import annotations

import math
import random
import shutil
import subprocess
import sys

import pytest

from captioning.metrics import (
    CiderDStatistics,
    cider_d,
    compute_caption_metrics,
    corpus_bleu,
    rouge_l,
    tokenize,
)

TOL = 1e-6

_SUBJECTS = ["a man", "a woman", "two dogs", "a small cat", "the child", "a group of people"]
_VERBS = ["is riding", "sits on", "is holding", "stands next to", "looks at", "plays with"]
_OBJECTS = ["a horse", "a red bus", "the table", "a frisbee", "a pizza", "a wooden bench"]
_PLACES = ["", "in the park", "on the street", "near the water", "in a kitchen"]

_HAND_WRITTEN = [
    "a man riding a wave on top of a surfboard",
    "a plate of food with broccoli and rice",
    "a giraffe standing next to a tall tree",
    "a a a a a",
    "dog",
]


def _sentence(rng: random.Random) -> str:
    parts = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS), rng.choice(_PLACES)]
    words = " ".join(part for part in parts if part).split()
    if rng.random() < 0.3:  # repeats and truncations vary lengths and counts
        words = words + words[: rng.randint(1, len(words))]
    if rng.random() < 0.2:
        words = words[: rng.randint(1, len(words))]
    return " ".join(words)


def _hypothesis(rng: random.Random, refs: list[str], index: int) -> str:
    kind = index % 6
    if kind == 0:
        return refs[0]  # exact copy of a reference
    if kind == 1:
        return rng.choice(_HAND_WRITTEN)
    if kind == 2:
        return " ".join(rng.choice(refs).split()[: rng.randint(1, 3)])  # very short
    if kind == 3 and index % 12 == 3:
        return ""  # empty hypothesis
    return _sentence(rng)


def _fixture(seed: int = 0, images: int = 30) -> tuple[dict[int, list[str]], dict[int, str]]:
    """Tokenized references (5 per image, a few with 1-3) and hypotheses."""
    rng = random.Random(seed)
    refs: dict[int, list[str]] = {}
    hyps: dict[int, str] = {}
    for index in range(images):
        image_id = 1000 + 37 * ((index * 7) % images)  # unsorted insertion order
        count = 5 if index % 10 else rng.randint(1, 3)
        refs[image_id] = [_sentence(rng) for _ in range(count)]
        if index % 9 == 4:
            refs[image_id][-1] = refs[image_id][0]  # duplicated reference
        hyps[image_id] = _hypothesis(rng, refs[image_id], index)
    return refs, hyps


# ----------------------------------------------------------------- hand-made cases


def test_bleu_exact_match_is_one() -> None:
    refs = {1: ["a man riding a horse on the beach"], 2: ["two dogs play in the snow"]}
    hyps = {1: "a man riding a horse on the beach", 2: "two dogs play in the snow"}
    scores, per_image = corpus_bleu(refs, hyps)
    assert scores == pytest.approx([1.0] * 4, abs=1e-8)
    assert all(row == pytest.approx([1.0, 1.0], abs=1e-8) for row in per_image)


def test_bleu_no_overlap_is_zero() -> None:
    scores, per_image = corpus_bleu({1: ["a cat on a mat"]}, {1: "three red buses today"})
    assert max(scores) < 1e-12
    assert max(max(row) for row in per_image) < 1e-12


def test_bleu_brevity_penalty() -> None:
    # Hypothesis of 3 words, all unigrams and bigrams match, reference of 6 words.
    scores, _ = corpus_bleu({1: ["the cat sat on the mat"]}, {1: "the cat sat"})
    penalty = math.exp(1 - 6 / 3)
    assert scores[0] == pytest.approx(penalty, rel=1e-6)
    assert scores[1] == pytest.approx(penalty, rel=1e-6)
    assert scores[2] == pytest.approx(penalty, rel=1e-6)  # the single trigram matches


def test_bleu_closest_reference_length_breaks_ties_to_shorter() -> None:
    # Lengths 2 and 4 are both at distance 1 from 3: the toolkit takes 2 (no penalty).
    scores, _ = corpus_bleu({1: ["a b", "a b c d"]}, {1: "a b c"})
    assert scores[0] == pytest.approx(1.0, abs=1e-8)


def test_bleu_clips_repeated_words() -> None:
    scores, _ = corpus_bleu({1: ["the cat is on the mat"]}, {1: "the the the the the the"})
    assert scores[0] == pytest.approx(2 / 6, rel=1e-6)


def test_rouge_l_by_hand() -> None:
    # LCS("a b c d", "a c e") = 2 -> precision 2/3, recall 2/4.
    score, per_image = rouge_l({1: ["a b c d"]}, {1: "a c e"})
    p, r, beta2 = 2 / 3, 2 / 4, 1.2**2
    expected = (1 + beta2) * p * r / (r + beta2 * p)
    assert score == pytest.approx(expected, rel=1e-12)
    assert per_image == pytest.approx([expected], rel=1e-12)
    assert rouge_l({1: ["x y"]}, {1: "a b"})[0] == 0.0


def test_cider_identical_corpus_and_zero_overlap() -> None:
    refs = {1: ["a man rides a horse"], 2: ["two dogs play in snow"]}
    same, _ = cider_d(refs, {1: "a man rides a horse", 2: "two dogs play in snow"})
    # Every n-gram occurs in one of two images: idf = log 2 for all, cosine 1.
    assert same == pytest.approx(10.0, rel=1e-9)
    none, _ = cider_d(refs, {1: "blue sky", 2: "green grass"})
    assert none == 0.0


def test_cider_precomputed_statistics_equal_default() -> None:
    refs, hyps = _fixture(seed=3)
    stats = CiderDStatistics.from_references(refs)
    assert stats.ref_len == pytest.approx(math.log(len(refs)))
    assert cider_d(refs, hyps, stats=stats) == cider_d(refs, hyps)
    listed = CiderDStatistics.from_references(list(refs.values()))
    assert listed == stats
    with pytest.raises(ValueError, match="n-grams up to 2"):
        cider_d(refs, hyps, stats=CiderDStatistics.from_references(refs, n=2))


# ------------------------------------------------------------------- toolkit parity


def _toolkit_scores(refs: dict[int, list[str]], hyps: dict[int, str]) -> dict[str, object]:
    pycocoevalcap = pytest.importorskip(
        "pycocoevalcap", reason="pycocoevalcap (test extra) is not installed"
    )
    del pycocoevalcap
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    res = {key: [hyp] for key, hyp in hyps.items()}
    bleu, bleu_images = Bleu(4).compute_score(refs, res, verbose=0)
    cider, cider_images = Cider().compute_score(refs, res)
    rouge, rouge_images = Rouge().compute_score(refs, res)
    return {
        "bleu": (bleu, bleu_images),
        "cider": (float(cider), [float(x) for x in cider_images]),
        "rouge": (float(rouge), [float(x) for x in rouge_images]),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parity_with_pycocoevalcap(seed: int) -> None:
    refs, hyps = _fixture(seed)
    expected = _toolkit_scores(refs, hyps)
    bleu, bleu_images = corpus_bleu(refs, hyps)
    exp_bleu, exp_bleu_images = expected["bleu"]
    assert bleu == pytest.approx(exp_bleu, abs=TOL)
    for row, exp_row in zip(bleu_images, exp_bleu_images):
        assert row == pytest.approx(exp_row, abs=TOL)
    cider, cider_images = cider_d(refs, hyps)
    assert cider == pytest.approx(expected["cider"][0], abs=TOL)
    assert cider_images == pytest.approx(expected["cider"][1], abs=TOL)
    rouge, rouge_images = rouge_l(refs, hyps)
    assert rouge == pytest.approx(expected["rouge"][0], abs=TOL)
    assert rouge_images == pytest.approx(expected["rouge"][1], abs=TOL)
    assert 0.0 < bleu[3] < 1.0 and cider > 0.0  # the fixture is neither trivial nor void


def test_parity_of_precomputed_statistics_with_toolkit_on_union() -> None:
    # Scoring eval images with document frequencies of (train + eval) equals
    # the toolkit's per-image scores for those images on the union corpus.
    train_refs, train_hyps = _fixture(seed=10, images=20)
    eval_refs, eval_hyps = _fixture(seed=11, images=12)
    eval_refs = {key + 1: refs for key, refs in eval_refs.items()}  # disjoint ids
    eval_hyps = {key + 1: hyp for key, hyp in eval_hyps.items()}
    union_refs = {**train_refs, **eval_refs}
    union_hyps = {**train_hyps, **eval_hyps}
    expected = dict(zip(union_refs, _toolkit_scores(union_refs, union_hyps)["cider"][1]))
    stats = CiderDStatistics.from_references(union_refs)
    _, scores = cider_d(eval_refs, eval_hyps, stats=stats)
    assert scores == pytest.approx([expected[key] for key in eval_refs], abs=TOL)


def test_order_independence() -> None:
    refs, hyps = _fixture(seed=4)
    reversed_refs = dict(reversed(list(refs.items())))
    for metric in (corpus_bleu, cider_d, rouge_l):
        forward, backward = metric(refs, hyps), metric(reversed_refs, hyps)
        assert forward[0] == pytest.approx(backward[0], abs=1e-12)
    raw_refs = {key: [ref.capitalize() + "." for ref in value] for key, value in refs.items()}
    shuffled = dict(sorted(raw_refs.items(), key=lambda item: -item[0]))
    assert compute_caption_metrics(raw_refs, hyps) == compute_caption_metrics(shuffled, hyps)


def test_compute_caption_metrics_matches_toolkit_on_tokenized_input() -> None:
    refs, hyps = _fixture(seed=5)
    raw_refs = {key: [ref.upper() + " ." for ref in value] for key, value in refs.items()}
    raw_hyps = {key: hyp.capitalize() + "!" for key, hyp in hyps.items()}
    metrics = compute_caption_metrics(raw_refs, raw_hyps)
    assert set(metrics) == {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"}
    ordered = {key: refs[key] for key in sorted(refs)}
    expected = _toolkit_scores(ordered, {key: hyps[key] for key in ordered})
    for k in range(4):
        assert metrics[f"Bleu_{k + 1}"] == pytest.approx(expected["bleu"][0][k], abs=TOL)
    assert metrics["ROUGE_L"] == pytest.approx(expected["rouge"][0], abs=TOL)
    assert metrics["CIDEr"] == pytest.approx(expected["cider"][0], abs=TOL)


# ----------------------------------------------------------------------- tokenizer


@pytest.mark.parametrize(
    ("caption", "tokens"),
    [
        ("A man's dog .", ["a", "man", "'s", "dog"]),
        ("A man's dog.", ["a", "man", "'s", "dog"]),
        ("Two DOGS, playing; in the park!", ["two", "dogs", "playing", "in", "the", "park"]),
        ('A sign that says "stop."', ["a", "sign", "that", "says", "stop"]),
        ("The dogs' toys aren't here", ["the", "dogs", "toys", "are", "n't", "here"]),
        ("I can't, won't, cannot", ["i", "ca", "n't", "wo", "n't", "can", "not"]),
        ("a cat (white) sits", ["a", "cat", "-lrb-", "white", "-rrb-", "sits"]),
        ("is it a cat?!", ["is", "it", "a", "cat", "?!"]),
        ("a black-and-white photo -- 1,000 cats at 3.5", ["a", "black-and-white", "photo",
                                                          "1,000", "cats", "at", "3.5"]),
        ("Mr. Smith at the U.S. Open", ["mr.", "smith", "at", "the", "u.s.", "open"]),
        ("a picture of the letter a.", ["a", "picture", "of", "the", "letter", "a."]),
        ("$5 or 50% of b&w", ["$", "5", "or", "50", "%", "of", "b", "&", "w"]),
        ("\u201cquoted\u201d \u2026 end", ["quoted", "end"]),
        ("...", []),
        ("", []),
    ],
)
def test_tokenize(caption: str, tokens: list[str]) -> None:
    assert tokenize(caption) == tokens


_JAVA_SENTENCES = [
    "A man's dog.",
    "Two dogs playing with a frisbee in the park .",
    "A kitchen with a stove, a sink, and a refrigerator.",
    "Is this a cat? Yes, it's a cat!",
    'A bus that says "Downtown" on the front.',
    "A train (an old one) on the tracks; it can't move.",
    "Mr. Smith's dog isn't on the couch at St. Patrick's.",
    "A 3-year-old boy eating a hot-dog at 10:30 p.m.",
    "Kids' toys -- and 1,000 cats... at the U.S. Open",
    "A PLATE OF FOOD WITH BROCCOLI & RICE",
]


@pytest.mark.skipif(shutil.which("java") is None, reason="java is not on PATH")
def test_tokenize_matches_java_ptb_tokenizer() -> None:
    pytest.importorskip("pycocoevalcap", reason="pycocoevalcap (test extra) is not installed")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    captions = {index: [{"caption": text}] for index, text in enumerate(_JAVA_SENTENCES)}
    expected = PTBTokenizer().tokenize(captions)
    for index, text in enumerate(_JAVA_SENTENCES):
        assert " ".join(tokenize(text)) == expected[index][0], text


# ---------------------------------------------------------------------- errors


def test_compute_caption_metrics_errors_name_the_image() -> None:
    with pytest.raises(ValueError, match="image id 7 has no references"):
        compute_caption_metrics({1: ["a dog"]}, {1: "a dog", 7: "a cat"})
    with pytest.raises(ValueError, match="image id 2 has references but no prediction"):
        compute_caption_metrics({1: ["a dog"], 2: ["a cat"]}, {1: "a dog"})
    with pytest.raises(ValueError, match="image id 3 has no references"):
        compute_caption_metrics({3: []}, {3: "a dog"})
    with pytest.raises(ValueError, match="no images"):
        compute_caption_metrics({}, {})
    with pytest.raises(TypeError, match="image id 1 must be a string"):
        compute_caption_metrics({1: ["a dog"]}, {1: ["a dog"]})  # type: ignore[dict-item]


def test_metrics_do_not_import_heavy_frameworks() -> None:
    code = (
        "import sys, captioning.metrics; "
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'lightning', 'pytorch_lightning') or m.startswith('captioning.models')]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
