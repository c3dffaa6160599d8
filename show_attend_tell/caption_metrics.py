"""Caption metrics under the COCO caption protocol (the paper's Table 1: BLEU-1..4, METEOR).

``caption_scores`` tokenises references and candidates with pycocoevalcap's PTBTokenizer
(Stanford CoreNLP, lower-cased, punctuation removed) and scores them with pycocoevalcap's
BLEU-1..4, METEOR 1.5, ROUGE-L and CIDEr (its ``Cider`` class is CIDEr-D: Gaussian length
penalty, clipped counts, document frequencies from the evaluated references). Scores are ×100.

Two of the tools need what may be missing, and neither takes the evaluation down with it:
  * SPICE needs Stanford CoreNLP models downloaded at first use, impossible offline; its
    value is always None, with the reason under ``notes``.
  * the PTB tokenizer and METEOR run Java; without it the captions are tokenised by
    ``data.tokenizer.tokenize`` (tested equal to the PTB tokenizer) and METEOR is None, both
    explained under ``notes``.
"""

import shutil
import subprocess
from collections.abc import Hashable

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from show_attend_tell.data.tokenizer import tokenize
from show_attend_tell.errors import InvalidInput

SPICE_NOTE = ("SPICE is not computed: it needs Stanford CoreNLP models that pycocoevalcap "
              "downloads on first use, and this evaluation runs offline")


def _tokenize(captions: dict[Hashable, list[str]], notes: dict) -> dict[Hashable, list[str]]:
    """PTB tokenisation (COCO protocol), or its Python equal when Java cannot run."""
    if shutil.which("java") is None:
        notes["tokenizer"] = ("Java not found: captions were tokenised by the Python "
                              "re-implementation of the PTB tokenizer (data/tokenizer.py)")
        return {key: [" ".join(tokenize(text)) for text in texts]
                for key, texts in captions.items()}
    return PTBTokenizer().tokenize(
        {key: [{"caption": text} for text in texts] for key, texts in captions.items()}
    )


_meteor_scorer: Meteor | None = None


def _meteor_process() -> Meteor:
    """This process's METEOR scorer, started at first use and kept: its Java start-up (about
    10 s of CPU, loading the paraphrase tables) dwarfs scoring, which a periodic validation
    repeats. Reuse changes no score: each EVAL request carries all its own statistics."""
    global _meteor_scorer
    if _meteor_scorer is None or _meteor_scorer.meteor_p.poll() is not None:
        _meteor_scorer = Meteor()
    return _meteor_scorer


def _meteor(references, candidates, notes: dict) -> float | None:
    """METEOR 1.5 ×100, or None (with the reason in ``notes``) when its Java process fails."""
    global _meteor_scorer
    if shutil.which("java") is None:
        notes["METEOR"] = "METEOR not computed: it runs on Java, which was not found"
        return None
    try:
        score, _ = _meteor_process().compute_score(references, candidates)
    except (OSError, ValueError, subprocess.SubprocessError) as error:
        # A dead METEOR process shows up as an empty line where a number should be; the next
        # call starts a new one (a failed request may have left this one out of step).
        _meteor_scorer = None
        notes["METEOR"] = f"METEOR failed: {type(error).__name__}: {error}"
        return None
    return 100.0 * score


METEOR_SKIPPED_NOTE = "METEOR not computed: the caller did not ask for it"


def caption_scores(references: dict[Hashable, list[str]],
                   candidates: dict[Hashable, str], *, meteor: bool = True) -> dict:
    """Corpus-level caption metrics.

    Args:
      references: image id -> its reference captions (raw text, at least one each).
      candidates: image id -> the generated caption (raw text); same ids as ``references``.
      meteor: False leaves METEOR out (None, with a note): a caller that reads only BLEU or
        CIDEr saves METEOR's Java start-up.
    Returns:
      ``{"BLEU-1".."BLEU-4", "METEOR", "ROUGE-L", "CIDEr": float ×100 or None, "SPICE": None,
      "notes": {metric: why it is None or approximate}}``.
    """
    if set(references) != set(candidates):
        missing = set(references) ^ set(candidates)
        raise InvalidInput(f"references and candidates must have the same image ids; "
                         f"{len(missing)} differ, e.g. {sorted(map(str, missing))[:5]}")
    if not candidates:
        raise InvalidInput("caption_scores needs at least one image")
    empty = [key for key, texts in references.items() if not texts]
    if empty:
        raise InvalidInput(f"{len(empty)} images have no reference caption, e.g. {empty[:5]}")

    notes = {"SPICE": SPICE_NOTE}
    ids = list(candidates)
    tokenized = _tokenize(
        {("ref", key): list(references[key]) for key in ids}
        | {("cand", key): [candidates[key]] for key in ids},
        notes,
    )
    refs = {key: tokenized[("ref", key)] for key in ids}
    cands = {key: tokenized[("cand", key)] for key in ids}

    bleu, _ = Bleu(4).compute_score(refs, cands, verbose=0)
    scores = {f"BLEU-{n}": 100.0 * value for n, value in enumerate(bleu, start=1)}
    if meteor:
        scores["METEOR"] = _meteor(refs, cands, notes)
    else:
        scores["METEOR"], notes["METEOR"] = None, METEOR_SKIPPED_NOTE
    scores["ROUGE-L"] = 100.0 * Rouge().compute_score(refs, cands)[0]
    scores["CIDEr"] = 100.0 * Cider().compute_score(refs, cands)[0]
    scores["SPICE"] = None
    scores["notes"] = notes
    return {name: (float(value) if isinstance(value, float) else value)
            for name, value in scores.items()}
