"""Vocabulary: tokenisation, build limits, encode/decode round-trip, unk, save/load."""

import json

import numpy as np
import pytest

from show_attend_tell.data.vocab import END, PAD, SPECIALS, START, UNK, Vocabulary, tokenize

CAPTIONS = [
    "A large red circle to the left of a small blue square.",
    "There is a small blue square and a large red circle!",
    "a small blue square",
    "   ",
    "",
]


def test_tokenize_is_the_coco_protocols():
    """The vocabulary's tokenize is the PTB one (tests/test_tokenizer.py checks it on Java)."""
    assert tokenize("A dog, running!  Fast...") == ["a", "dog", "running", "fast"]
    assert tokenize("The man's T-shirt") == ["the", "man", "'s", "t-shirt"]
    assert tokenize("Un café 🐶 über-cool") == ["un", "café", "über-cool"]
    assert tokenize("🙂🙂") == [] and tokenize("   ") == []


def test_specials_and_frequency_order():
    vocab = Vocabulary.build(CAPTIONS)
    assert vocab.words[:4] == ["<pad>", "<start>", "<end>", "<unk>"]
    assert (PAD, START, END, UNK) == (0, 1, 2, 3)
    assert vocab.words[4] == "a"  # the most frequent word first
    assert len(vocab) == len(set(vocab.words))


def test_min_count_and_max_size():
    vocab = Vocabulary.build(CAPTIONS, min_count=2)
    assert "there" not in vocab.ids and "square" in vocab.ids
    # Exactly the words seen at least twice (a 5, blue/small/square 3, circle/large/red 2),
    # by decreasing count, ties alphabetical.
    assert vocab.words[4:] == ["a", "blue", "small", "square", "circle", "large", "red"]
    assert len(Vocabulary.build(CAPTIONS, max_size=6)) == 6
    with pytest.raises(ValueError, match="max_size"):
        Vocabulary.build(CAPTIONS, max_size=4)


def test_encode_decode_round_trip_and_unk():
    vocab = Vocabulary.build(CAPTIONS)
    ids = vocab.to_ids("A small red square.")
    assert vocab.to_text(ids) == "a small red square"
    assert vocab.to_ids("a purple elephant") == [vocab.ids["a"], UNK, UNK]
    assert vocab.to_text([UNK]) == "<unk>"
    assert vocab.to_ids("a small blue square", max_length=2) == vocab.to_ids("a small")
    assert vocab.to_ids("   ") == []


def test_decode_stops_at_end_and_skips_pad_start():
    vocab = Vocabulary.build(CAPTIONS)
    a, red = vocab.ids["a"], vocab.ids["red"]
    assert vocab.to_text(np.array([START, a, PAD, red, END, a, a])) == "a red"
    assert vocab.to_text([len(vocab) + 5]) == "<unk>"


def test_save_load_and_dict(tmp_path):
    vocab = Vocabulary.build(CAPTIONS + ["un café"])
    vocab.save(tmp_path / "vocab.json")
    loaded = Vocabulary.load(tmp_path / "vocab.json")
    assert loaded.words == vocab.words
    assert Vocabulary.from_dict(vocab.to_dict()).words == vocab.words


def test_bad_files_give_clear_errors(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="vocab.json"):
        Vocabulary.load(path)
    path.write_text('{"words": ["a", "b"]}')
    with pytest.raises(ValueError, match="specials"):
        Vocabulary.load(path)
    path.write_text('{"format_version": 3, "words": ["<pad>", "<start>", "<end>", "<unk>"]}')
    with pytest.raises(ValueError, match=r"vocab.json: vocabulary format 3"):
        Vocabulary.load(path)


def test_format_1_vocabularies_are_refused_except_for_shapes(tmp_path):
    """Format 1 was built with the old tokenizer ("man's" -> mans): loading it for a real
    dataset would mis-score silently, so it is an error naming the file; shapes captions
    tokenise identically under both (tests/test_tokenizer.py), so there it still loads."""
    old = {"format_version": 1, "words": [*SPECIALS, "a", "mans", "t", "shirt"]}
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(old))
    with pytest.raises(ValueError, match=r"vocab.json: vocabulary format 1 .*retrain") as error:
        Vocabulary.load(path, dataset="karpathy/flickr8k")
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="runs/x: checkpoint 7: vocabulary format 1"):
        Vocabulary.from_dict({"words": old["words"]}, where="runs/x: checkpoint 7")
    assert Vocabulary.load(path, dataset="shapes").words == old["words"]
    assert Vocabulary(["a"]).to_dict()["format_version"] == 2
