"""A SHA-256 digest of every file of a checkpoint step, and its verification.

``<step>/digest.json`` lists each file of the committed step (path relative to the step
folder, size in bytes, SHA-256). It is written after orbax commits the step, so it describes
exactly what the commit left; verifying re-reads the files and compares. A mismatch is an
:class:`IntegrityError` naming the step folder and the file. A step without ``digest.json``
(written before digests existed) is *unverified*, never silently treated as verified.
"""

import hashlib
import json

from show_attend_tell import paths
from show_attend_tell.errors import InvalidInput, UserError

DIGEST_FILE = "digest.json"
FORMAT = "sha256-per-file/1"
CHUNK = 8 << 20


class IntegrityError(UserError, RuntimeError):
    """A checkpoint file is missing, truncated or differs from its digest."""


def _sha256(path: paths.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(step_dir: paths.Path) -> list[str]:
    """Every file under ``step_dir`` except the digest itself (and its temporary copy)."""
    return sorted(
        (root / name).relative_to(step_dir).as_posix() for root, _, names in step_dir.walk()
        for name in names if not name.startswith(DIGEST_FILE)
    )


def write_digest(step_dir: paths.PathLike) -> None:
    """Hash every file of ``step_dir`` into ``digest.json`` (atomically, see
    :func:`paths.write_atomic`)."""
    step_dir = paths.as_path(step_dir)
    files = {name: {"bytes": paths.file_size(step_dir / name), "sha256": _sha256(step_dir / name)}
             for name in _files(step_dir)}
    paths.write_atomic(step_dir / DIGEST_FILE,
                       json.dumps({"format": FORMAT, "files": files}, indent=1))


def has_digest(step_dir: paths.Path) -> bool:
    return (step_dir / DIGEST_FILE).is_file()


def read_digest(step_dir: paths.Path) -> dict:
    path = step_dir / DIGEST_FILE
    try:
        digest = json.loads(path.read_text())
        files = digest["files"]
        if digest.get("format") != FORMAT or not isinstance(files, dict):
            raise InvalidInput(f"format {digest.get('format')!r}, expected {FORMAT!r}")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise IntegrityError(f"{path}: the digest itself is unreadable or corrupt "
                             f"({' '.join(str(error).split())[:120]})") from error
    return files


def verify_files(step_dir: paths.PathLike, include=lambda name: True) -> None:
    """Compare the files of ``step_dir`` (those ``include(name)`` selects) with its digest;
    the first difference raises :class:`IntegrityError` naming the file."""
    step_dir = paths.as_path(step_dir)
    expected = {name: entry for name, entry in read_digest(step_dir).items() if include(name)}
    present = [name for name in _files(step_dir) if include(name)]
    for name in sorted(set(present) - set(expected)):
        raise IntegrityError(f"{step_dir / name}: file not in {DIGEST_FILE} (added after the "
                             "save?)")
    for name, entry in sorted(expected.items()):
        path = step_dir / name
        if not path.is_file():
            raise IntegrityError(f"{path}: file missing (deleted?); {DIGEST_FILE} lists "
                                 f"{entry['bytes']} bytes")
        size = paths.file_size(path)
        if size != entry["bytes"]:
            what = "truncated" if size < entry["bytes"] else "longer than saved"
            raise IntegrityError(f"{path}: {what}, {size} bytes where {DIGEST_FILE} lists "
                                 f"{entry['bytes']}")
        if _sha256(path) != entry["sha256"]:
            raise IntegrityError(f"{path}: contents differ from {DIGEST_FILE} (corrupt: "
                                 "SHA-256 mismatch)")
