"""One backup at a time per archive directory, even across processes.

flock is released by the kernel when the holder dies, so a crashed run never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rescue.errors import LockedError


@contextmanager
def exclusive(directory: Path, what: str) -> Iterator[None]:
    """Hold the lock of directory for the block, or fail at once naming the holder."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / "rescue.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise LockedError(
                f"another rescue run holds {path} ({holder}); wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, {what}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
