"""Word vocabulary: one tokenisation for training targets, decoding and metric references.

Words are :func:`show_attend_tell.data.tokenizer.tokenize`'s, the COCO caption protocol's
(``"A man's T-shirt."`` -> ``a man 's t-shirt``), so a decoded caption can match its
references token for token. Ids 0..3 are the specials ``<pad>``, ``<start>``, ``<end>``,
``<unk>``; words follow in order of decreasing training-split frequency (ties alphabetical, so a
build is reproducible).
"""

import collections
import json
from collections.abc import Iterable

from show_attend_tell import paths
from show_attend_tell.data.tokenizer import tokenize
from show_attend_tell.errors import InvalidInput

PAD, START, END, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<start>", "<end>", "<unk>")
# 2: PTB tokenisation. Format 1 dropped apostrophes and split hyphens ("man's" -> mans,
# "t-shirt" -> t shirt), words the COCO scoring never sees.
FORMAT_VERSION = 2
# Datasets whose captions format 1 tokenised exactly as format 2 does (lower-case words,
# commas; pinned by tests/test_tokenizer.py), so their format-1 vocabularies stay valid.
_FORMAT_1_UNCHANGED = ("shapes",)

__all__ = ["END", "FORMAT_VERSION", "PAD", "SPECIALS", "START", "UNK", "Vocabulary", "tokenize"]


class Vocabulary:
    """Bidirectional word <-> id map with the four specials first."""

    PAD, START, END, UNK = PAD, START, END, UNK

    def __init__(self, words: Iterable[str]):
        """``words`` are the non-special words in id order (ids from 4 on)."""
        self.words = list(SPECIALS) + list(words)
        self.ids = {word: index for index, word in enumerate(self.words)}
        if len(self.ids) != len(self.words):
            raise InvalidInput("vocabulary words must be unique and must not repeat the specials")

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1, max_size: int = 10_000) -> "Vocabulary":
        """From training captions: words seen at least ``min_count`` times, the most frequent
        first, at most ``max_size`` entries in all (specials included, so ``len(vocab) <=
        max_size`` bounds the softmax). Empty captions contribute nothing."""
        if max_size <= len(SPECIALS):
            raise InvalidInput(f"max_size={max_size} leaves no room for words after the 4 specials")
        counts = collections.Counter()
        for caption in captions:
            counts.update(tokenize(caption))
        for special in SPECIALS:
            counts.pop(special, None)
        ranked = sorted((word for word, n in counts.items() if n >= min_count),
                        key=lambda word: (-counts[word], word))
        return cls(ranked[: max_size - len(SPECIALS)])

    def __len__(self) -> int:
        return len(self.words)

    def lookup(self, words: Iterable[str]) -> list[int]:
        """Ids of already tokenised words; unknown words -> ``UNK``."""
        return [self.ids.get(word, UNK) for word in words]

    def to_ids(self, text: str, max_length: int | None = None) -> list[int]:
        """Word ids of ``text`` (no ``<start>``/``<end>``), truncated to ``max_length`` words."""
        ids = self.lookup(tokenize(text))
        return ids if max_length is None else ids[:max_length]

    def to_text(self, ids: Iterable[int]) -> str:
        """Words up to the first ``<end>``, skipping ``<pad>``/``<start>``; ids outside the
        vocabulary read as ``<unk>``."""
        words = []
        for index in ids:
            index = int(index)
            if index == END:
                break
            if index in (PAD, START):
                continue
            words.append(self.words[index] if 0 <= index < len(self.words) else SPECIALS[UNK])
        return " ".join(words)

    def to_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION, "words": self.words}

    @classmethod
    def from_dict(cls, data: dict, where: str = "vocabulary",
                  dataset: str | None = None) -> "Vocabulary":
        """Inverse of :meth:`to_dict`; ``where`` names the source in errors, ``dataset`` (the
        run's ``config.data.name``) decides whether a format-1 vocabulary is still valid."""
        words = data.get("words") if isinstance(data, dict) else None
        if not isinstance(words, list) or not all(isinstance(word, str) for word in words):
            raise InvalidInput(f"{where}: expected a dict with a 'words' list of strings")
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise InvalidInput(f"{where}: the first words must be the specials {SPECIALS}")
        version = data.get("format_version", 1)
        if version == 1 and dataset not in _FORMAT_1_UNCHANGED:
            raise InvalidInput(
                f"{where}: vocabulary format 1 uses the old tokenizer (\"man's\" -> mans), whose "
                f"words the COCO scoring never produces; retrain in a new --workdir to build a "
                f"format-{FORMAT_VERSION} vocabulary")
        if version not in (1, FORMAT_VERSION):
            raise InvalidInput(f"{where}: vocabulary format {version!r}; this version reads "
                             f"formats 1 (shapes only) and {FORMAT_VERSION}")
        return cls(words[len(SPECIALS):])

    def save(self, path) -> None:
        paths.write_atomic(path, json.dumps(self.to_dict(), ensure_ascii=False))

    @classmethod
    def load(cls, path, dataset: str | None = None) -> "Vocabulary":
        """A vocabulary file; ``dataset`` as in :meth:`from_dict`."""
        try:
            data = json.loads(paths.as_path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise InvalidInput(f"{path}: not a readable vocabulary JSON file ({error})") from error
        return cls.from_dict(data, where=str(path), dataset=dataset)
