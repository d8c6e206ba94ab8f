"""Keep a directory's times while recovery adds or renames entries in it.

duplicity restores directory mtimes to the second; the replay then sets the recorded nanoseconds
only where the seconds still agree (a directory that changed between the records and the
backup keeps the backup's time). Recovery's own edits (relinking, recreating excluded mount
points) must therefore not move a directory's mtime, or the replay would take it for a change.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def kept(directory: Path) -> Iterator[None]:
    """Put directory's atime and mtime back after the body, which changes its entries."""
    before = directory.lstat()
    try:
        yield
    finally:
        os.utime(directory, ns=(before.st_atime_ns, before.st_mtime_ns), follow_symlinks=False)


def nearest_existing(path: Path) -> Path:
    """The closest existing directory at or above path: the one a mkdir -p changes."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
