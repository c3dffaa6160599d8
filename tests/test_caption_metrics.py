"""Caption metrics: pycocoevalcap wiring pinned on a small fixed corpus; no Java, no crash."""

import pytest

from show_attend_tell import caption_metrics
from show_attend_tell.caption_metrics import caption_scores

REFERENCES = {
    1: ["A large red circle above a small blue square.",
        "a small blue square below a large red circle"],
    2: ["A green triangle.", "There is one small green triangle."],
    3: ["Two yellow diamonds, side by side!", "a large yellow diamond and a small yellow diamond"],
    4: ["an orange square left of a purple circle",
        "A purple circle to the right of an orange square."],
    5: ["a small red square", "One small red square on a textured background."],
}
CANDIDATES = {
    1: "a large red circle above a small blue square",
    2: "a small green triangle",
    3: "a large yellow diamond and a small red diamond",
    4: "a purple circle",
    5: "small red square on a background",
}
# Computed once with pycocoevalcap 1.2 directly (Java 17): PTBTokenizer().tokenize on the
# references and on the candidates separately, then Bleu(4), Meteor(), Rouge(), Cider()
# .compute_score(gts, res)[0], ×100.
EXPECTED = {
    "BLEU-1": 90.72783801031761,
    "BLEU-2": 84.83702839942668,
    "BLEU-3": 81.7448700805103,
    "BLEU-4": 78.72378146373015,
    "METEOR": 44.93337163774672,
    "ROUGE-L": 82.16890501915408,
    "CIDEr": 449.505060539379,
}


@pytest.mark.slow
def test_scores_match_pycocoevalcap_on_a_fixed_corpus():
    scores = caption_scores(REFERENCES, CANDIDATES)
    for name, value in EXPECTED.items():
        assert scores[name] == pytest.approx(value, rel=1e-6), name
    assert scores["SPICE"] is None and "offline" in scores["notes"]["SPICE"]
    assert set(scores["notes"]) == {"SPICE"}


@pytest.mark.slow
def test_one_meteor_process_scores_every_call_and_a_dead_one_is_replaced():
    """The METEOR process is kept between calls (its start-up is ~10 s of CPU): a call after
    another corpus scores as a fresh process does, and a process that died is started anew."""
    caption_scores({1: ["a blue square"], 2: ["a red circle"]}, {1: "a red square", 2: "a circle"})
    first = caption_metrics._meteor_process()
    assert caption_scores(REFERENCES, CANDIDATES)["METEOR"] == pytest.approx(EXPECTED["METEOR"],
                                                                             rel=1e-6)
    assert caption_metrics._meteor_process() is first
    first.meteor_p.kill()
    first.meteor_p.wait()
    scores = caption_scores(REFERENCES, CANDIDATES)
    assert scores["METEOR"] == pytest.approx(EXPECTED["METEOR"], rel=1e-6), scores["notes"]
    assert caption_metrics._meteor_process() is not first


def test_without_java_meteor_is_none_and_the_rest_still_scores(monkeypatch):
    monkeypatch.setattr(caption_metrics.shutil, "which", lambda name: None)
    scores = caption_scores(REFERENCES, CANDIDATES)
    assert scores["METEOR"] is None and "Java" in scores["notes"]["METEOR"]
    assert "tokenizer" in scores["notes"]
    # The punctuation-only differences are tokenised away as PTB would, so the scores agree.
    for name in ("BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr"):
        assert scores[name] == pytest.approx(EXPECTED[name], rel=1e-6), name


def test_meteor_left_out_starts_no_java_and_the_rest_scores(monkeypatch):
    def no_meteor():
        raise AssertionError("METEOR was started")

    monkeypatch.setattr(caption_metrics, "_meteor_process", no_meteor)
    scores = caption_scores(REFERENCES, CANDIDATES, meteor=False)
    assert scores["METEOR"] is None
    assert scores["notes"]["METEOR"] == caption_metrics.METEOR_SKIPPED_NOTE
    for name in ("BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr"):
        assert scores[name] == pytest.approx(EXPECTED[name], rel=1e-6), name


def test_mismatched_ids_are_an_error():
    with pytest.raises(ValueError, match="same image ids"):
        caption_scores(REFERENCES, {1: "a red circle"})


# Apostrophes (straight and curly), n't, hyphens, an acronym, brackets, times, an emoticon.
MESSY = {
    1: ["A man's red T-shirt, drying on a line."],
    2: ["The dogs’ owner isn't home; it's 10:30 a.m. in the U.S. (Smith's St.)"],
    3: ["A well-known double-decker bus 'tis rock'n'roll y'all, 1,000 people :)"],
    4: ["Two 20-year-old women can't find AT&T's Mass. office..."],
}


@pytest.mark.slow
def test_a_caption_decoded_from_its_references_vocabulary_ids_scores_perfectly():
    """The model's best possible output: each reference encoded with the vocabulary built from
    the references, decoded back to words, scored by ``sat evaluate``'s scoring code."""
    from show_attend_tell.data.vocab import Vocabulary
    from show_attend_tell.evaluation import score_results

    vocab = Vocabulary.build(text for texts in MESSY.values() for text in texts)
    results = [{"image_id": key, "references": texts, "objects": None,
                "words": vocab.to_text(vocab.to_ids(texts[0])).split()}
               for key, texts in MESSY.items()]
    scores = score_results(results)
    perfect = caption_scores(MESSY, {key: texts[0] for key, texts in MESSY.items()})
    assert scores["BLEU-4"] == pytest.approx(100.0)
    assert scores["CIDEr"] == pytest.approx(perfect["CIDEr"], rel=1e-12)
    assert scores["ROUGE-L"] == pytest.approx(100.0)
