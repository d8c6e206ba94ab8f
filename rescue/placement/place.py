"""Stage a restore beside its destination, then put it in place: the one way files arrive.

duplicity writes into a private staging directory on DEST's file system; only when it
succeeded is the result moved into place, so a failed restore (a wrong passphrase, a corrupt
volume) never leaves a half-written tree that looks like a good one. A new DEST is one rename;
an existing one is merged by the rules in merge.py, with an undo directory (journal.py).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from rescue.errors import RestoreTargetExistsError
from rescue.exact.dirtimes import kept
from rescue.placement import merge
from rescue.placement.fsops import CrossesMount, remove_own, rename_noreplace
from rescue.placement.guard import RestoreTarget
from rescue.placement.journal import UndoDir, find_unfinished

STAGING_PREFIX = ".rescue-restore-"
STAGING_MARK = ".rescue-staging.lock"  # held (flock) while its run lives


@dataclass
class Placed:
    """Where a restore went, and what it changed there."""

    path: Path
    undo: Path | None = None  # the undo directory, when a forced merge changed anything
    added: int = 0
    replaced: int = 0
    merged: int = 0
    resumed: bool = False  # an interrupted forced restore into path was finished

    def as_dict(self) -> dict[str, object]:
        return {
            "undo_dir": str(self.undo) if self.undo else None,
            "added": self.added,
            "replaced": self.replaced,
            "merged_directories": self.merged,
            "resumed": self.resumed,
        }


@contextmanager
def staging(home: Path) -> Iterator[Path]:
    """An empty private directory in home (a RestoreTarget's home: on its file system),
    removed at the end whatever happens (never across a mount point), with home's times kept.
    Stale ones that killed runs left there are removed first: a lock inside each tells a live
    run's from a dead one's."""
    home.mkdir(parents=True, exist_ok=True)
    clear_stale(home)
    with kept(home):
        path = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=home))
        fd = os.open(path / STAGING_MARK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield path
    finally:
        os.close(fd)
        with kept(home):
            remove_own(path)


def clear_stale(home: Path) -> list[Path]:
    """Remove the staging directories of dead runs in home (only those rescue marked)."""
    removed = []
    for candidate in home.glob(f"{STAGING_PREFIX}*"):
        mark = candidate / STAGING_MARK
        if candidate.is_symlink() or not mark.is_file() or mark.is_symlink():
            continue
        fd = os.open(mark, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live run's
            with kept(home):
                remove_own(candidate)
            removed.append(candidate)
        except CrossesMount:
            continue
        finally:
            os.close(fd)
    return removed


def place(staged: Path, target: RestoreTarget, name: str, what: str) -> Placed:
    """Move the staged restore to target.path: a rename when it is new, else a forced merge."""
    dest = target.path
    prior_path = find_unfinished(target.home, dest, "restore") if target.force else None
    if not target.exists and prior_path is None:
        try:
            rename_noreplace(staged, dest)
        except FileExistsError:
            raise RestoreTargetExistsError(
                f"{dest} appeared during the restore; rescue will not overwrite it without --force"
            ) from None
        return Placed(dest, added=1)
    if not target.force:
        raise RestoreTargetExistsError(
            f"{dest} exists; rescue will not overwrite it without --force"
        )
    prior = UndoDir.open(prior_path) if prior_path else None
    # DEST's parent is not part of the restore: its times stay (when DEST is a mount point,
    # home is DEST itself, whose attributes come from the backup)
    keep_home = kept(target.home) if target.home != dest else nullcontext()
    try:
        found = merge.plan(staged, target, prior, name)
        merge.check(found)
        with keep_home:
            with kept(target.home):
                undo = prior or UndoDir.create(target.home, dest, what)
            try:
                counts = merge.apply(found, staged, dest, undo, target.attrs)
                undo.finish()
            finally:
                undo.close()
    finally:
        if prior is not None:
            prior.close()
    placed = Placed(dest, undo.path, counts.added, counts.replaced, counts.merged, bool(prior))
    if not counts.replaced and not target.keep_undo_without_replaced:
        with kept(target.home):
            remove_own(undo.path)  # only a journal and empty carriers: nothing was replaced
        placed.undo = None
    return placed
