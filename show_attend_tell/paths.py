"""One path type for every file the library reads or writes: local paths and object-store
URIs (``gs://bucket/run``) alike, through etils ``epath`` (the layer orbax and TFDS use).

``pathlib.Path("gs://b/r")`` is the local path ``gs:/b/r``; an ``epath.Path`` keeps the URI
and reaches the bucket through TensorFlow's GCS file system. Two operations differ between
the two kinds of storage and live here only:

- :func:`absolute` anchors a relative local path at the working directory and leaves a URI
  as it is;
- :func:`write_atomic` writes a file so that a reader sees the old contents or the new ones,
  never a part: locally a temporary file beside the target, flushed and renamed over it; on
  an object store one upload (an object becomes visible whole when its upload completes, and
  a rename there is a copy, so a temporary would add a window, not remove one).
"""

import contextlib
import os
import re
import tempfile

from etils import epath

Path = epath.Path
PathLike = epath.PathLike

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def as_path(path: PathLike) -> epath.Path:
    """``path`` as an ``epath.Path`` (a URI stays a URI)."""
    return epath.Path(path)


def is_local(path: PathLike) -> bool:
    """True for a path on this machine's file system, False for ``gs://…`` and other URIs."""
    return not _URI.match(os.fspath(path))


def absolute(path: PathLike) -> epath.Path:
    """A local path made absolute (against the working directory); a URI unchanged."""
    if is_local(path):
        return epath.Path(os.path.abspath(os.fspath(path)))
    return epath.Path(path)


def write_atomic(path: PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that no reader sees a partial file (see the module)."""
    path = epath.Path(path)
    payload = data.encode() if isinstance(data, str) else data
    if not is_local(path):
        path.write_bytes(payload)
        return
    handle, temporary = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def file_size(path: PathLike) -> int:
    """Size in bytes of the file at ``path``."""
    return epath.Path(path).stat().length
