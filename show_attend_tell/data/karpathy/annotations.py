"""Reading and checking Karpathy's ``dataset_{flickr8k,flickr30k,coco}.json``.

Every problem is a one-line ``ValueError`` naming the file, the entry and the key, e.g.
``dataset_flickr8k.json: images[3]: missing key 'sentences'``.
"""

import dataclasses
import json
from pathlib import Path

from show_attend_tell.errors import InvalidInput

SPLITS = ("train", "val", "test", "restval")


@dataclasses.dataclass(frozen=True)
class Sentence:
    raw: str
    tokens: tuple[str, ...]
    sentid: int


@dataclasses.dataclass(frozen=True)
class ImageEntry:
    index: int  # position in the JSON's images list, for error messages
    image_id: int  # COCO's cocoid where present, else Karpathy's imgid
    filepath: str  # COCO's sub-folder (train2014 / val2014), "" for Flickr
    filename: str
    split: str
    sentences: tuple[Sentence, ...]


def _get(path: Path, where: str, entry: dict, key: str, kind: type):
    if key not in entry:
        raise InvalidInput(f"{path}: {where}: missing key {key!r}")
    value = entry[key]
    # bool is an int in Python, but never a valid id.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidInput(f"{path}: {where}: key {key!r} should be {kind.__name__}, "
                         f"got {type(value).__name__}")
    return value


def _sentence(path: Path, where: str, sentence) -> Sentence:
    if not isinstance(sentence, dict):
        raise InvalidInput(f"{path}: {where}: should be an object, got {type(sentence).__name__}")
    tokens = _get(path, where, sentence, "tokens", list)
    if not all(isinstance(token, str) for token in tokens):
        raise InvalidInput(f"{path}: {where}: key 'tokens' should be a list of strings")
    return Sentence(_get(path, where, sentence, "raw", str), tuple(tokens),
                    _get(path, where, sentence, "sentid", int))


def _image(path: Path, index: int, entry) -> ImageEntry:
    where = f"images[{index}]"
    if not isinstance(entry, dict):
        raise InvalidInput(f"{path}: {where}: should be an object, got {type(entry).__name__}")
    split = _get(path, where, entry, "split", str)
    if split not in SPLITS:
        raise InvalidInput(f"{path}: {where}: key 'split' is {split!r}, expected one of {SPLITS}")
    image_id = _get(path, where, entry, "cocoid" if "cocoid" in entry else "imgid", int)
    sentences = _get(path, where, entry, "sentences", list)
    return ImageEntry(
        index=index, image_id=image_id,
        filepath=_get(path, where, entry, "filepath", str) if "filepath" in entry else "",
        filename=_get(path, where, entry, "filename", str), split=split,
        sentences=tuple(_sentence(path, f"{where}.sentences[{i}]", s)
                        for i, s in enumerate(sentences)),
    )


def read_annotations(path) -> list[ImageEntry]:
    """All image entries of a Karpathy JSON file, checked; unique image ids."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise InvalidInput(f"{path}: no such file (expected Karpathy's split JSON)") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInput(f"{path}: not readable JSON ({error})") from error
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}: top level should be an object with key 'images'")
    entries = [_image(path, i, entry) for i, entry in enumerate(_get(path, "top level", data,
                                                                      "images", list))]
    first_index: dict[int, int] = {}
    for entry in entries:
        if entry.image_id in first_index:
            raise InvalidInput(f"{path}: images[{entry.index}]: duplicate image id {entry.image_id} "
                             f"(also images[{first_index[entry.image_id]}])")
        first_index[entry.image_id] = entry.index
    return entries
