"""Where a restore may go, decided before any work: the checks behind `--to DEST`.

A restore never goes to / (a whole system is `rescue recover`'s job), to an empty --to, into
rescue's own archive dir or backup destination, or over a tree that holds another mount point
(every move of a restore is a rename on one file system: no copy across file systems, ever).
DEST is resolved through symlinks first, so a link cannot lead a restore around these checks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rescue.errors import RestoreDestinationRefused, RestoreTargetExistsError
from rescue.exact.dirtimes import nearest_existing
from rescue.placement.fsops import Attrs, inside
from rescue.recovery.mounts import mount_points


@dataclass(frozen=True)
class Protected:
    """A path no restore may write into, and what it is (for the message)."""

    what: str
    path: Path

    @property
    def real(self) -> str:
        return os.path.realpath(self.path)


@dataclass(frozen=True)
class RestoreTarget:
    """A checked restore destination.

    home: the directory that holds the staging and undo directories, on path's file system
    (beside path, or inside it when path is a mount point). attrs: path's own attributes before
    any work, for the undo record (staging inside path changes its mtime).
    """

    path: Path
    force: bool
    home: Path
    attrs: Attrs | None
    protected: tuple[Protected, ...] = ()
    keep_undo_without_replaced: bool = True

    @property
    def exists(self) -> bool:
        return self.attrs is not None


def check(
    raw: str, force: bool, protected: Iterable[Protected] = (), cwd: Path | None = None
) -> RestoreTarget:
    """The destination a user typed, resolved and checked; refused with one line otherwise."""
    if not raw.strip():
        raise RestoreDestinationRefused(
            "--to is empty: name the new path of the restored file or directory"
        )
    path = Path(os.path.realpath(os.path.join(cwd or os.getcwd(), raw)))
    if path == Path("/"):
        raise RestoreDestinationRefused(
            f"--to {raw} is the root directory: a whole system comes back with `rescue recover`; "
            "restore into a directory such as /mnt/restore instead"
        )
    guards = tuple(protected)
    for guard in guards:
        if inside(str(path), guard.real):
            raise RestoreDestinationRefused(
                f"--to {raw} resolves to {path}, inside {guard.what} {guard.path}: a restore "
                "must never write into the backups it reads"
            )
    exists = os.path.lexists(path)
    if exists and not force:
        raise RestoreTargetExistsError(
            f"{path} exists; rescue will not overwrite it without --force"
        )
    if not exists:
        above = nearest_existing(path.parent)
        if not above.is_dir():
            raise RestoreDestinationRefused(
                f"--to {raw}: {above} is not a directory, so nothing can be restored below it"
            )
        return RestoreTarget(path, force, path.parent, None, guards)
    points = mount_points()
    mounted = str(path) in points
    if not path.is_dir() and mounted:
        raise RestoreDestinationRefused(f"{path} is a mount point: a restore cannot replace it")
    below = sorted(p for p in points if inside(p, str(path)) and p != str(path))
    below = below if path.is_dir() else []
    if below:
        raise RestoreDestinationRefused(
            f"{below[0]} is a mount point inside {path}: a forced restore moves entries by "
            "rename(2) on one file system and never copies across file systems; restore into "
            f"each file system by itself (e.g. --to {below[0]} for what lies there)"
        )
    return RestoreTarget(
        path, force, path if mounted else path.parent, Attrs.of(path, with_xattrs=True), guards
    )


def fresh(path: Path) -> RestoreTarget:
    """A new path inside a directory rescue made (a scratch or work directory)."""
    path = path.absolute()
    if os.path.lexists(path):
        raise RestoreTargetExistsError(
            f"{path} exists; rescue will not overwrite it without --force"
        )
    return RestoreTarget(path, False, path.parent, None)


def file_system_root(path: Path) -> RestoreTarget:
    """A mounted file system of a recovery's target: merged into, staging and undo inside it.

    An undo directory is kept only if the merge replaced something: what it added is all that
    a fresh file system of the recovery holds."""
    path = Path(os.path.realpath(path))
    return RestoreTarget(
        path, True, path, Attrs.of(path, with_xattrs=True), keep_undo_without_replaced=False
    )
