"""One writer per workdir: an exclusive ``flock`` on ``<workdir>/.lock`` for the life of
``sat train``.

The kernel releases the lock when the process exits in any way (SIGKILL and crashes
included), so a lock is never stale and never needs removing by hand; the file stays, holding
the last holder's pid and host for the message a second writer gets. On Linux ``flock`` also
works on NFS (the client maps it to an NFS byte-range lock). On an object store (a
``gs://`` workdir) there is no lock to take: an object store has no ``flock``, and a lock
object would outlive a killed holder (a stale lock a preempted job could not clear), so the
lock is skipped there and the one-writer rule rests on the launcher. Readers (``sat
evaluate``, ``caption``, ``compare``) never take it.
"""

import errno
import fcntl
import os
import socket
import time

from show_attend_tell import paths
from show_attend_tell.errors import UserError

LOCK_FILE = ".lock"


class WorkdirBusy(UserError, RuntimeError):
    """Another process holds the workdir's lock."""


class WorkdirLock:
    """``with WorkdirLock(workdir):`` — raises :class:`WorkdirBusy` naming the holder."""

    def __init__(self, workdir):
        self.workdir = paths.as_path(workdir)
        self.path = self.workdir / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self):
        if not paths.is_local(self.workdir):
            return self  # no lock on an object store (see the module)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = self.holder() or "a process that has not yet written its pid"
            raise WorkdirBusy(
                f"{self.workdir} is in use by another `sat train` ({holder}; lock {self.path}); "
                "wait for it to finish or use another --workdir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self._fd = fd
        return self

    def holder(self) -> str:
        try:
            return self.path.read_text().strip()
        except OSError:
            return ""

    def __exit__(self, *exc):
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the lock
            self._fd = None
