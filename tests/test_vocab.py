import pytest

from captioning.data.vocab import SPECIALS, Vocabulary, tokenize


def test_tokenize_lowercases_and_splits_punctuation() -> None:
    assert tokenize("A Red circle, left of a box.") == ["a", "red", "circle", ",", "left", "of", "a", "box", "."]


def test_build_counts_min_count_and_specials_first() -> None:
    vocab = Vocabulary.build(["a red circle", "a blue circle", "a red square"], min_count=2)
    assert vocab.itos[:4] == list(SPECIALS)
    assert vocab.itos[4:] == ["a", "circle", "red"]  # by count, then alphabetically; singletons dropped


def test_round_trip_encode_decode_and_unknown_words() -> None:
    vocab = Vocabulary.build(["a red circle above a blue square"])
    ids = vocab.encode("A red circle above a blue square")
    assert ids[0] == vocab.start_id and ids[-1] == vocab.end_id
    assert vocab.decode(ids) == "a red circle above a blue square"
    assert vocab.encode("a green circle")[2] == vocab.unk_id
    assert vocab.decode([vocab.start_id, vocab.stoi["red"], vocab.end_id, vocab.stoi["a"]]) == "red"


def test_dict_round_trip_and_bad_data() -> None:
    vocab = Vocabulary.build(["two squares and a triangle"])
    assert Vocabulary.from_dict(vocab.to_dict()) == vocab
    with pytest.raises(ValueError, match="itos"):
        Vocabulary.from_dict({"itos": ["a", "b"]})
