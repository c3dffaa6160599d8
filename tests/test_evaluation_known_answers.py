"""Evaluation end to end with known answers: a table captioner that writes, for each image, the
first words of that image's own first reference. Each caption must come back under its own
image id, and the metrics must equal pycocoevalcap's, called directly on the same pairs."""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from configs.shapes import get_config
from show_attend_tell.data import pipeline
from show_attend_tell.data.vocab import END, Vocabulary, tokenize
from show_attend_tell.evaluation import decode_split, score_results
from show_attend_tell.models.captioner import Captioner
from show_attend_tell.models.decoder import StepOutput
from show_attend_tell.parallel import make_mesh

WORDS = 4  # each caption: the first 4 words of the image's first reference


def fingerprint(images):
    """uint8 ``[B, 64, 64, 3]`` -> one number per image (distinct for distinct images)."""
    weights = (jnp.arange(64 * 64 * 3) % 97).astype(jnp.float32).reshape(64, 64, 3)
    return jnp.sum(images.astype(jnp.float32) / 255.0 * weights, axis=(1, 2, 3))


class FingerprintEncoder(nn.Module):
    image_size: int = 64

    def __call__(self, images, train=False):
        return fingerprint(images)[:, None, None]  # annotations [B, 1, 1]


class LookupStep(nn.Module):
    """Emits, for the image whose fingerprint is nearest ``keys[i]``, ``captions[i]``."""

    keys: tuple
    captions: tuple  # token ids per image, <end> last, padded with <end>
    vocab_size: int

    def project_annotations(self, annotations):
        return annotations

    def initial_carry(self, annotations):
        index = jnp.argmin(jnp.abs(annotations[:, 0, :1] - jnp.asarray(self.keys)[None]), axis=1)
        return index.astype(jnp.float32)[:, None], jnp.zeros((annotations.shape[0], 1))

    def __call__(self, carry, prev_tokens, annotations, projected, use_expected, key, train):
        index, step = carry[0][:, 0].astype(jnp.int32), carry[1][:, 0].astype(jnp.int32)
        token = jnp.asarray(self.captions, jnp.int32)[index, jnp.minimum(step, len(self.captions[0]) - 1)]
        logits = jnp.where(jnp.arange(self.vocab_size) == token[:, None], 10.0, -10.0)
        rows = prev_tokens.shape[0]
        out = StepOutput(logits=logits, alpha=jnp.ones((rows, 1)), beta=jnp.ones((rows,)),
                         location=jnp.zeros((rows,), jnp.int32),
                         location_log_prob=jnp.zeros((rows,)), entropy=jnp.zeros((rows,)),
                         context=jnp.zeros((rows, 1)))
        return (carry[0], carry[1] + 1), out


@pytest.fixture(scope="module")
def setup(tiny_shapes):
    config = get_config("smoke")
    config.data.data_dir, config.data.builder_config = str(tiny_shapes), "tiny"
    config.eval.batch_size = 8  # 12 test images: a full batch and a padded one
    config.eval.max_length = WORDS + 2
    batches = list(pipeline.eval_batches(config, None, "test", 8, 64))
    images = np.concatenate([b["image"][b["example_mask"]] for b in batches])
    ids = [int(i) for b in batches for i in b["image_id"][b["example_mask"]]]
    references = {i: r for b in batches
                  for i, r, m in zip(b["image_id"], b["references"], b["example_mask"], strict=True)
                  if m}
    vocab = Vocabulary.build([text for refs in references.values() for text in refs])
    expected = {i: tokenize(references[i][0])[:WORDS] for i in ids}
    keys = np.asarray(fingerprint(jnp.asarray(images)))
    assert len(set(np.round(keys, 1))) == len(ids)  # every image has its own fingerprint
    captions = tuple(tuple(vocab.lookup(expected[i]) + [END] * 2) for i in ids)
    model = Captioner(encoder=FingerprintEncoder(),
                      step_module=LookupStep(tuple(map(float, keys)), captions, len(vocab)))
    return config, vocab, model, references, expected


def test_each_caption_comes_back_with_its_own_image(setup):
    config, vocab, model, references, expected = setup
    results = decode_split(model, {}, config, vocab, "test", make_mesh(), beam_size=1,
                           progress=False)
    assert len(results) == 12
    assert {r["image_id"]: r["words"] for r in results} == expected
    assert len({" ".join(words) for words in expected.values()}) > 6  # distinguishable captions
    for r in results:
        assert r["references"] == references[r["image_id"]]


def test_metrics_equal_pycocoevalcap_on_the_true_pairs(setup, monkeypatch):
    from show_attend_tell import caption_metrics

    # METEOR (a Java process, several seconds) is pinned by test_caption_metrics.py.
    monkeypatch.setattr(caption_metrics, "_meteor", lambda *args: None)
    config, vocab, model, references, expected = setup
    results = decode_split(model, {}, config, vocab, "test", make_mesh(), beam_size=1,
                           progress=False)
    scores = score_results(results)
    ids = sorted(references)
    tokenized = PTBTokenizer().tokenize(
        {("ref", i): [{"caption": c} for c in references[i]] for i in ids}
        | {("cand", i): [{"caption": " ".join(expected[i])}] for i in ids})
    refs = {i: tokenized[("ref", i)] for i in ids}
    cands = {i: tokenized[("cand", i)] for i in ids}
    bleu, _ = Bleu(4).compute_score(refs, cands, verbose=0)
    np.testing.assert_allclose([scores[f"BLEU-{n}"] for n in range(1, 5)],
                               100 * np.asarray(bleu), rtol=1e-9)
    np.testing.assert_allclose(scores["ROUGE-L"], 100 * Rouge().compute_score(refs, cands)[0],
                               rtol=1e-9)
    cider = 100 * Cider().compute_score(refs, cands)[0]
    np.testing.assert_allclose(scores["CIDEr"], cider, rtol=1e-9)
    # Pairs shifted by one image score lower: the check above can tell a wrong pairing.
    shifted = {i: cands[ids[(k + 1) % len(ids)]] for k, i in enumerate(ids)}
    assert 100 * Cider().compute_score(refs, shifted)[0] < cider - 10
