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
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise FolderBusyError(f"{folder} is being written by another wiringlab sweep (pid {holder}): wait for "
                                  "it to finish, or give this one another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
