"""rescue's temporary directories: one directory per rescue process holds them all, with the
temporary files of the duplicity it starts, and the next run removes what a killed one left.

Why: duplicity builds each volume in its temporary directory (a volume or two in flight), a
drill restores a whole tree into one, and the shims and GnuPG homes are rescue's own. A
`kill -9` of rescue kills its children (rescue.process.lifetime) but no cleanup runs: in the
test runs here, 2,500 `duplicity-*-tempdir` directories (6 GB) piled up in /tmp that way. Each
run directory is named for its process (pid and start time), so a later run can tell that its
owner is gone, however it ended, and remove it; a live run's directory is never touched.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from rescue.placement.fsops import remove_own

log = logging.getLogger("rescue.placement.scratch")

PREFIX = "rescue-run-"
_NAME = re.compile(rf"^{PREFIX}(\d+)\.(\d+)\.[A-Za-z0-9_]+$")
_current: Path | None = None


def _started(pid: int) -> int | None:
    """The start time of process pid, in whole seconds, or None when there is none."""
    try:
        return int(psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:
        return None


def run_dir() -> Path:
    """This process's scratch directory (0700), made at the first call after the leftovers of
    dead runs are removed, and removed when the process exits normally."""
    global _current
    if _current is None or not _current.is_dir():
        base = Path(tempfile.gettempdir())
        sweep(base)
        pid = os.getpid()
        _current = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{pid}.{_started(pid)}.", dir=base))
        atexit.register(_remove, _current)
    return _current


def sweep(base: Path) -> list[Path]:
    """Remove the run directories in base whose process is gone (the pid is free, or now
    belongs to a process started at another time); returns them. Only directories of this
    user, never through a symlink or across a mount point (remove_own)."""
    removed: list[Path] = []
    try:
        names = os.listdir(base)
    except OSError:
        return removed
    for name in names:
        found = _NAME.match(name)
        if not found or _started(int(found.group(1))) == int(found.group(2)):
            continue
        path = base / name
        try:
            st = path.lstat()
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
                continue
            remove_own(path)
            removed.append(path)
        except OSError as exc:
            log.warning("cannot remove %s, left by a rescue that was killed: %s", path, exc)
    if removed:
        log.info("removed %d scratch directories left by killed runs", len(removed))
    return removed


def _remove(path: Path) -> None:
    try:
        remove_own(path)
    except OSError as exc:
        log.warning("cannot remove the scratch directory %s: %s", path, exc)


@contextmanager
def private_dir(prefix: str, parent: Path | None = None) -> Iterator[Path]:
    """A private temporary directory (0700) for rescue's own scratch work, in this run's
    directory unless parent says otherwise, removed at the end the same safe way as a staging
    directory (no symlink followed, no mount crossed)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent or run_dir()))
    try:
        yield path
    finally:
        remove_own(path)
