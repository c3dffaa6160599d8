"""CIDEr-D on token ids equals pycocoevalcap's CiderScorer (the reference implementation)."""

import numpy as np
import pytest
from pycocoevalcap.cider.cider_scorer import CiderScorer

from show_attend_tell.cider import DocumentFrequency, cider_d, ngram_counts

VOCAB = 12  # few words: many shared n-grams and repeated captions


def corpus(rng, images, refs_per_image=(1, 6), max_words=9):
    return [[list(rng.integers(4, VOCAB, rng.integers(1, max_words + 1)))
             for _ in range(rng.integers(*refs_per_image))] for _ in range(images)]


def candidates_for(rng, references):
    """Per image: a random caption, a copy of a reference, an empty one or one longer than
    every reference, in turn."""
    out = []
    for i, refs in enumerate(references):
        kind = i % 4
        if kind == 0:
            out.append(list(rng.integers(4, VOCAB, rng.integers(1, 8))))
        elif kind == 1:
            out.append(list(refs[0]))
        elif kind == 2:
            out.append([])
        else:
            longest = max(len(r) for r in refs)
            out.append(list(rng.integers(4, VOCAB, longest + rng.integers(1, 6))))
    return out


def text(ids):
    return " ".join(f"w{i}" for i in ids)


def reference_scores(candidates, references, train_references=None):
    scorer = CiderScorer(n=4, sigma=6.0)
    for cand, refs in zip(candidates, references, strict=True):
        scorer += (text(cand), [text(r) for r in refs])
    if train_references is None:
        return scorer.compute_score()[1]
    # Document frequencies of another corpus: counted as compute_doc_freq counts them, on a
    # corpus of the same size (compute_cider takes log |corpus| from the scored set's size).
    assert len(train_references) == len(references)
    other = CiderScorer(n=4, sigma=6.0)
    for refs in train_references:
        other += (None, [text(r) for r in refs])
    other.compute_doc_freq()
    scorer.document_frequency = other.document_frequency
    return np.array(scorer.compute_cider())


def test_cider_d_equals_pycocoevalcap_with_the_scored_references_as_corpus():
    rng = np.random.default_rng(0)
    references = corpus(rng, 300)
    references[5] = [references[5][0]] * 3  # repeated references
    candidates = candidates_for(rng, references)
    candidates[7] = candidates[8] = candidates[9]  # repeated candidates
    df = DocumentFrequency.from_references(references, VOCAB)
    ours = cider_d(candidates, references, df)
    expected = reference_scores(candidates, references)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)
    assert np.all(ours[2::4] == 0)  # empty candidates
    assert ours.std() > 0.5  # the scores are not all alike


def test_cider_d_equals_pycocoevalcap_with_training_document_frequencies():
    rng = np.random.default_rng(1)
    references = corpus(rng, 250)
    train = corpus(rng, 250)
    candidates = candidates_for(rng, references)
    df = DocumentFrequency.from_references(train, VOCAB)
    ours = cider_d(candidates, references, df)
    np.testing.assert_allclose(ours, reference_scores(candidates, references, train), atol=1e-6)
    # a different corpus gives different scores: the frequencies are really used
    other = cider_d(candidates, references, DocumentFrequency.from_references(references, VOCAB))
    assert np.abs(ours - other).max() > 1e-2


def test_padded_candidates_and_shared_reference_lists_give_the_same_scores():
    rng = np.random.default_rng(2)
    references = corpus(rng, 40)
    df = DocumentFrequency.from_references(references, VOCAB)
    k = 3  # K samples per image share the image's reference list
    samples = [candidates_for(rng, references) for _ in range(k)]
    flat = [samples[j][i] for i in range(len(references)) for j in range(k)]
    padded = np.zeros((len(flat), 16), np.int32)
    for row, ids in enumerate(flat):
        padded[row, : len(ids)] = ids
        padded[row, len(ids)] = 2  # <end>, then <pad>: ignored past the length
    shared = [references[i] for i in range(len(references)) for _ in range(k)]
    ours = cider_d(padded, shared, df, candidate_lengths=[len(ids) for ids in flat])
    separate = cider_d(flat, [list(r) for r in shared], df)
    np.testing.assert_allclose(ours, separate, atol=1e-12)
    scored = DocumentFrequency.from_references(shared, VOCAB)
    np.testing.assert_allclose(cider_d(padded, shared, scored, [len(ids) for ids in flat]),
                               reference_scores(flat, shared), atol=1e-6)


def test_ngram_interning_is_exact():
    ids = np.array([[4, 5, 4, 5, 4], [5, 4, 0, 0, 0]])
    rows, keys, orders, counts = ngram_counts(ids, np.array([5, 2]), base=VOCAB + 1)
    found = {}
    for r, key, n, c in zip(rows, keys, orders, counts, strict=True):
        digits = []
        for _ in range(n):
            digits.append(int(key % (VOCAB + 1)) - 1)
            key //= VOCAB + 1
        assert key == 0
        found[(int(r), tuple(digits))] = int(c)
    assert found[(0, (4, 5))] == 2 and found[(0, (4,))] == 3 and found[(0, (4, 5, 4, 5))] == 1
    assert found[(1, (5, 4))] == 1 and len([k for k in found if k[0] == 1]) == 3


def test_document_frequencies_round_trip_and_bad_files(tmp_path):
    rng = np.random.default_rng(3)
    df = DocumentFrequency.from_references(corpus(rng, 20), VOCAB)
    df.save(tmp_path / "df.npz")
    loaded = DocumentFrequency.load(tmp_path / "df.npz")
    np.testing.assert_array_equal(loaded.keys, df.keys)
    np.testing.assert_array_equal(loaded.counts, df.counts)
    assert (loaded.num_images, loaded.vocab_size) == (20, VOCAB)
    (tmp_path / "bad.npz").write_text("not numpy")
    with pytest.raises(ValueError, match="bad.npz: not a CIDEr-D document-frequency file"):
        DocumentFrequency.load(tmp_path / "bad.npz")
