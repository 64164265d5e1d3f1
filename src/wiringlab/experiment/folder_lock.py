"""One sweep at a time per results folder: an advisory lock held while a sweep writes.

Why: two `wiringlab run` invocations on one folder (a command started twice, or on two
nodes of a cluster that share the disk) both see the same runs unfinished, train them
twice and append each epoch twice to `metrics.jsonl`. The lock is `fcntl.flock` on
`<folder>/.lock`, released by the kernel when the process ends however it ends, so a
killed sweep never leaves a stale lock behind.

Pitfalls:
    - Advisory: only wiringlab sweeps take it; `wiringlab report` reads without it.
    - POSIX only: on a platform without `fcntl` (Windows) no lock is taken, and a warning
      says so once per sweep.
    - On network file systems the lock is as good as the server's `flock` support (Linux NFS
      clients emulate it with byte-range locks, which the server sees).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from pathlib import Path

from .errors import FolderBusyError

__all__ = ["folder_lock", "LOCK_NAME"]

LOCK_NAME = ".lock"
log = logging.getLogger(__name__)


@contextlib.contextmanager
def folder_lock(folder: Path):
    """Hold the results folder's lock for the `with` block.

    Args:
        folder: the results folder (must exist).

    Raises:
        FolderBusyError: another process holds the lock; the message names its pid.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        log.warning("no results-folder lock on this platform: do not run two sweeps into %s at once", folder)
        yield
        return
    path = Path(folder) / LOCK_NAME
    fd, writable = _open_lock_file(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise FolderBusyError(f"{folder} is being written by another wiringlab sweep ({holder}): wait for it "
                                  "to finish, or give this one another --out") from None
        except OSError as err:  # a file system without flock (e.g. Lustre mounted without -o flock)
            log.warning("cannot lock %s (%s): do not run two sweeps into this folder at once", path, err)
        if writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _open_lock_file(path: Path) -> tuple[int, bool]:
    """The lock file, created with the umask's permissions (0666 & ~umask, like every results
    file); read-only where another user created it without write access for us (flock needs
    no write access)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666), True
    except PermissionError:
        return os.open(path, os.O_RDONLY), False
