"""Keep sparse files sparse while duplicity writes them.

duplicity writes every file whole, zeros included, so a sparse image bigger than the free space
would fail the restore with "No space left on device" before any replay could run. A thread
follows each recorded sparse file as it grows and punches the recorded holes behind the writer
(only where the bytes read as zeros), so the disk never holds more than the data plus a few
megabytes. duplicity writes each file front to back, so what lies below the current size is final.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rescue.exact import holes

log = logging.getLogger("rescue.exact")
POLL_SECONDS = 0.05


@dataclass
class _Follow:
    path: Path
    size: int
    holes: holes.Extents
    inode: tuple[int, int] | None = None
    fd: int | None = None
    done_upto: int = 0
    punched: bool = False

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class _Puncher(threading.Thread):
    def __init__(self, files: list[_Follow]) -> None:
        super().__init__(name="rescue-hole-puncher", daemon=True)
        self.files = files
        self.stop = threading.Event()
        self.freed = 0

    def run(self) -> None:
        pending = list(self.files)
        while pending and not self.stop.wait(POLL_SECONDS):
            pending = [f for f in pending if not self._step(f)]
        for f in self.files:
            f.close()

    def _step(self, f: _Follow) -> bool:
        """Punch what f's writer has written since the last look; True once f is complete."""
        try:
            st = f.path.lstat()
            if (st.st_dev, st.st_ino) != f.inode:  # new, or replaced: start over
                f.close()
                f.fd = os.open(f.path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)
                f.inode, f.done_upto = (st.st_dev, st.st_ino), 0
            assert f.fd is not None
            upto = os.fstat(f.fd).st_size
            if upto > f.done_upto:
                todo = [
                    (max(o, f.done_upto), o + n - max(o, f.done_upto))
                    for o, n in f.holes
                    if o + n > f.done_upto
                ]
                freed = holes.punch_zeros(f.fd, todo, upto)
                self.freed += freed
                f.punched = f.punched or freed > 0
                f.done_upto = upto
            return f.done_upto >= f.size
        except FileNotFoundError:
            return False  # not written yet
        except OSError as exc:
            log.info("hole punching %s stopped: %s", f.path, exc)
            f.close()
            return True


class HoleWatch:
    """Follows the sparse files of one restore; `touched` names those it punched (their mtime
    is then its doing, not the backup's: the replay sets it from the records)."""

    def __init__(self, sparse: dict[str, tuple[int, holes.Extents]]) -> None:
        self.sparse = sparse
        self.touched: set[str] = set()
        self.freed = 0

    @contextmanager
    def during(self, into: Path) -> Iterator[None]:
        """While the body runs, follow each rel of sparse (relative to into)."""
        if not self.sparse:
            yield
            return
        files = {
            rel: _Follow(into / rel if rel else into, size, h)
            for rel, (size, h) in self.sparse.items()
        }
        thread = _Puncher(list(files.values()))
        thread.start()
        try:
            yield
        finally:
            thread.stop.set()
            thread.join()
            self.freed += thread.freed
            self.touched |= {rel for rel, f in files.items() if f.punched}
            log.info("hole punching during the restore freed %d bytes", thread.freed)
