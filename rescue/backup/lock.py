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


READERS_LOCK = "rescue.readers.lock"


@contextmanager
def reading(directory: Path) -> Iterator[None]:
    """A shared lock held while a run reads the backups (restore, listing, verify): retention
    waits for no one, it skips its turn instead (see retention_allowed)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(directory / READERS_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


@contextmanager
def retention_allowed(directory: Path) -> Iterator[bool]:
    """True for the block when no run is reading the backups (and none can start until it
    ends); False when one is: deleting a chain under a restore would break the restore."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(directory / READERS_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
