"""CIDEr-D on token ids, vectorised in NumPy: the reward of self-critical training.

Shape letters: N candidates, R references, T tokens, G n-grams.

Computes exactly what pycocoevalcap's ``CiderScorer`` computes (Vedantam et al. 2015, the
"-D" variant: clipped counts and a Gaussian length penalty), with document frequencies taken
from a fixed reference corpus (the training split's) instead of the scored set:

  * n-grams n = 1..4 of each caption's words (no ``<start>``/``<end>``);
  * g_n(x) = count · (log |corpus| − log max(1, df)), the tf-idf vector of order n;
  * sim_n(c, r) = Σ min(g_n(c), g_n(r)) · g_n(r) / (‖g_n(c)‖ ‖g_n(r)‖) · exp(−δ² / 2σ²),
    σ = 6, the division skipped when a norm is 0; δ is the difference of the two captions'
    bigram counts (``CiderScorer`` counts "length" as the number of bigrams: words − 1, 0 for
    an empty or one-word caption, and so does this module);
  * CIDEr-D(c) = 10 · mean_n (Σ_r sim_n(c, r)) / R.

An n-gram of ids ``w_1..w_n`` is interned exactly as ``Σ_i (w_i + 1) · B^(i−1)`` with base
``B = V + 1`` (digits 1..V, so n-grams of different lengths never collide), an int64 while
``B⁴ < 2⁶³``. Counting, the tf-idf weights and the clipped dot products are sorts and
segment sums over all captions of a batch at once.
"""

import io

import numpy as np

from show_attend_tell import paths
from show_attend_tell.errors import InvalidInput

MAX_N = 4
SIGMA = 6.0
FORMAT = "show_attend_tell/cider-df/1"
_MAX_BASE = int(np.floor((2**63 - 1) ** 0.25))


def _base(vocab_size: int) -> int:
    base = vocab_size + 1
    if base > _MAX_BASE:
        raise InvalidInput(f"CIDEr-D: vocabulary of {vocab_size} words is too large to intern "
                         f"4-grams in int64 (at most {_MAX_BASE - 1})")
    return base


def _rows(sequences, lengths=None) -> tuple[np.ndarray, np.ndarray]:
    """Captions -> (ids ``[N, T]`` int64, lengths ``[N]``): a padded array with lengths, or a list
    of id sequences."""
    if lengths is not None:
        ids = np.asarray(sequences, np.int64)
        return ids.reshape(len(ids), -1), np.asarray(lengths, np.int64)
    lengths = np.array([len(s) for s in sequences], np.int64)
    ids = np.zeros((len(sequences), max(int(lengths.max(initial=0)), 1)), np.int64)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = sequence
    return ids, lengths


def ngram_counts(ids: np.ndarray, lengths: np.ndarray, base: int):
    """Distinct n-grams of each caption and their counts.

    ids ``[N, T]``, lengths ``[N]`` -> (row ``[G]``, key ``[G]`` int64, order n ``[G]``,
    count ``[G]``), sorted by (row, key).
    """
    rows, keys, orders = [], [], []
    num, width = ids.shape
    key = np.zeros((num, width), np.int64)
    for n in range(1, MAX_N + 1):
        if width < n:
            break
        # key of the n-gram starting at i: the (n−1)-gram's key plus the new digit
        key = key[:, : width - n + 1] + (ids[:, n - 1:] + 1) * base ** (n - 1)
        starts = np.arange(width - n + 1)
        valid = starts[None, :] + n <= lengths[:, None]
        row_index = np.broadcast_to(np.arange(num)[:, None], valid.shape)[valid]
        rows.append(row_index)
        keys.append(key[valid])
        orders.append(np.full(row_index.shape, n, np.int64))
    if not rows:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, empty
    rows, keys, orders = map(np.concatenate, (rows, keys, orders))
    order = np.lexsort((keys, rows))
    rows, keys, orders = rows[order], keys[order], orders[order]
    first = np.ones(len(rows), bool)
    first[1:] = (rows[1:] != rows[:-1]) | (keys[1:] != keys[:-1])
    starts = np.flatnonzero(first)
    counts = np.diff(np.append(starts, len(rows)))
    return rows[starts], keys[starts], orders[starts], counts


class DocumentFrequency:
    """n-gram document frequencies of a reference corpus (one document = one image's
    references) and the corpus size; ``save``/``load`` keep them with a run."""

    def __init__(self, keys: np.ndarray, counts: np.ndarray, num_images: int, vocab_size: int):
        order = np.argsort(keys)
        self.keys = np.asarray(keys, np.int64)[order]
        self.counts = np.asarray(counts, np.float64)[order]
        self.num_images = int(num_images)
        self.vocab_size = int(vocab_size)
        self.base = _base(vocab_size)
        self.log_num_images = np.log(float(self.num_images))

    @classmethod
    def from_references(cls, references, vocab_size: int) -> "DocumentFrequency":
        """references: per image a list of id sequences (words only)."""
        base = _base(vocab_size)
        flat = [caption for captions in references for caption in captions]
        image_of = np.repeat(np.arange(len(references)), [len(c) for c in references])
        ids, lengths = _rows(flat)
        rows, keys, _, _ = ngram_counts(ids, lengths, base)
        pairs = np.unique(np.stack([image_of[rows], keys], axis=1), axis=0)  # (image, n-gram)
        unique_keys, counts = np.unique(pairs[:, 1], return_counts=True)
        return cls(unique_keys, counts, len(references), vocab_size)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """df of each key ``[G]`` (0 for n-grams the corpus never has)."""
        if not len(self.keys):
            return np.zeros(len(keys))
        index = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[index] == keys, self.counts[index], 0.0)

    def save(self, path) -> None:
        """Atomically (see :func:`paths.write_atomic`)."""
        buffer = io.BytesIO()
        np.savez(buffer, format=np.array(FORMAT), keys=self.keys, counts=self.counts,
                 num_images=self.num_images, vocab_size=self.vocab_size)
        paths.write_atomic(path, buffer.getvalue())

    @classmethod
    def load(cls, path) -> "DocumentFrequency":
        try:
            with paths.as_path(path).open("rb") as file, np.load(file) as data:
                if str(data["format"]) != FORMAT:
                    raise InvalidInput(f"format {str(data['format'])!r}, expected {FORMAT!r}")
                return cls(data["keys"], data["counts"], int(data["num_images"]),
                           int(data["vocab_size"]))
        except (OSError, KeyError, ValueError) as error:
            raise InvalidInput(f"{path}: not a CIDEr-D document-frequency file ({error})") from error


def _tfidf(ids, lengths, df: DocumentFrequency):
    """Per caption: its n-grams' tf-idf weights (sorted by row, key), norms ``[N, 4]`` and
    bigram counts ``[N]``."""
    rows, keys, orders, counts = ngram_counts(ids, lengths, df.base)
    weights = counts * (df.log_num_images - np.log(np.maximum(1.0, df.lookup(keys))))
    norms = np.zeros(len(ids) * MAX_N)
    np.add.at(norms, rows * MAX_N + orders - 1, weights**2)
    return rows, keys, orders, weights, np.sqrt(norms).reshape(-1, MAX_N), np.maximum(lengths - 1, 0)


def cider_d(candidates, references, df: DocumentFrequency, candidate_lengths=None) -> np.ndarray:
    """CIDEr-D of each candidate against its image's references.

    Args:
      candidates: ``[N, T]`` ids with ``candidate_lengths`` ``[N]`` (words before ``<end>``),
        or a list of N id sequences.
      references: per candidate a list of id sequences (words only); candidates of the same
        image may pass the same list object, whose captions are then weighted once.
      df: the corpus document frequencies.
    Returns:
      ``[N]`` float64 scores (the ×10 scale of ``CiderScorer``, not ×100).
    """
    cand_ids, cand_lengths = _rows(candidates, candidate_lengths)
    num = len(cand_ids)
    if len(references) != num:
        raise InvalidInput(f"CIDEr-D: {num} candidates but {len(references)} reference lists")
    # Each distinct reference list once; each candidate is paired with all of its list's rows.
    group_of, ref_rows_of_group, flat = {}, [], []
    candidate_group = np.empty(num, np.int64)
    for i, refs in enumerate(references):
        group = group_of.get(id(refs))
        if group is None:
            group = group_of[id(refs)] = len(ref_rows_of_group)
            ref_rows_of_group.append(np.arange(len(flat), len(flat) + len(refs)))
            flat.extend(refs)
        candidate_group[i] = group
    ref_counts = np.array([len(ref_rows_of_group[g]) for g in candidate_group])
    if (ref_counts == 0).any():
        raise InvalidInput("CIDEr-D: every candidate needs at least one reference")
    ref_ids, ref_lengths = _rows(flat)

    c_rows, c_keys, c_orders, c_weights, c_norms, c_len = _tfidf(cand_ids, cand_lengths, df)
    r_rows, r_keys, _, r_weights, r_norms, r_len = _tfidf(ref_ids, ref_lengths, df)

    # Pairs (candidate, reference): pair p = pair_start[i] + j for the j-th reference of i.
    pair_cand = np.repeat(np.arange(num), ref_counts)
    pair_ref = np.concatenate([ref_rows_of_group[g] for g in candidate_group])
    pair_start = np.concatenate([[0], np.cumsum(ref_counts)[:-1]])

    # The candidate's n-grams repeated for each of its references, and each reference's n-grams
    # for each candidate it is paired with; a (pair, key) on both sides is a shared n-gram.
    c_pair = np.repeat(pair_start[c_rows], ref_counts[c_rows]) + _ramp(ref_counts[c_rows])
    c_entry = np.repeat(np.arange(len(c_rows)), ref_counts[c_rows])
    ref_start = np.concatenate([[0], np.cumsum(np.bincount(r_rows, minlength=len(flat)))])
    per_pair = ref_start[pair_ref + 1] - ref_start[pair_ref]
    r_entry = np.repeat(ref_start[pair_ref], per_pair) + _ramp(per_pair)
    r_pair = np.repeat(np.arange(len(pair_ref)), per_pair)

    pair = np.concatenate([c_pair, r_pair])
    key = np.concatenate([c_keys[c_entry], r_keys[r_entry]])
    side = np.concatenate([np.zeros(len(c_pair), np.int8), np.ones(len(r_pair), np.int8)])
    entry = np.concatenate([c_entry, r_entry])
    order = np.lexsort((side, key, pair))
    pair, key, side, entry = pair[order], key[order], side[order], entry[order]
    shared = np.flatnonzero((pair[1:] == pair[:-1]) & (key[1:] == key[:-1]))
    hyp, ref = c_weights[entry[shared]], r_weights[entry[shared + 1]]
    dots = np.zeros(len(pair_ref) * MAX_N)
    np.add.at(dots, pair[shared] * MAX_N + c_orders[entry[shared]] - 1, np.minimum(hyp, ref) * ref)
    dots = dots.reshape(-1, MAX_N)

    norm_product = c_norms[pair_cand] * r_norms[pair_ref]
    similarity = np.where(norm_product != 0, dots / np.where(norm_product != 0, norm_product, 1),
                          dots)
    delta = (c_len[pair_cand] - r_len[pair_ref]).astype(np.float64)
    similarity = similarity * np.exp(-(delta**2) / (2 * SIGMA**2))[:, None]
    totals = np.zeros((num, MAX_N))
    np.add.at(totals, pair_cand, similarity)
    return 10.0 * totals.mean(axis=1) / ref_counts


def _ramp(counts: np.ndarray) -> np.ndarray:
    """``[0..c_0-1, 0..c_1-1, ...]`` for counts ``[c_0, c_1, ...]``."""
    total = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total) - starts
