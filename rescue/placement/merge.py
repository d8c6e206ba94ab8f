"""Merge a staged restore into an existing DEST: the rules of `restore --force`.

- Only entries the restored tree holds are replaced; nothing else at DEST is ever removed.
- A directory meets a directory: it is kept and merged into, and takes the restored owner,
  mode and times (its old ones are journaled for the undo).
- Otherwise the restored entry replaces DEST's, which must be a file, a symlink, a special file
  or an empty directory. A non-empty directory is never removed: the whole merge is refused
  before anything is touched, naming the path.
- Every replaced entry is moved, by rename, into the undo directory (see journal.py), and every
  move is a rename(2) on DEST's file system: a directory on another file system (a mount point)
  is refused, never copied into.

The plan is made first and checked whole; only then is anything moved.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rescue.errors import RestoreDestinationRefused, RestoreTargetExistsError
from rescue.placement.fsops import Attrs, inside, is_dir, is_empty_dir, rename_noreplace
from rescue.placement.guard import RestoreTarget
from rescue.placement.journal import UndoDir

Kind = Literal["add", "replace", "own", "enter", "leave"]


@dataclass
class Step:
    kind: Kind  # add: DEST has nothing there; replace: DEST's entry goes to the undo tree;
    # own: DEST's entry is this restore's own, from a killed run (it is replaced, not kept);
    # enter/leave: a directory merged into, before and after its entries
    rel: str
    own: bool = False  # enter: a directory a killed run of this restore placed


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    mount: str | None = None

    @property
    def replaces(self) -> int:
        return sum(1 for s in self.steps if s.kind == "replace")


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _kind(st: os.stat_result) -> str:
    if is_dir(st):
        return "directory"
    return "symlink" if stat.S_ISLNK(st.st_mode) else "file"


def plan(staged: Path, target: RestoreTarget, prior: UndoDir | None, name: str) -> Plan:
    """What merging staged into target.path would do; refuses what it must not do."""
    dest = target.path
    found = Plan()
    device = target.home.lstat().st_dev  # home is on dest's file system (guard.RestoreTarget)
    guards = [(g, g.real) for g in target.protected]

    def ours(rel: str, st: os.stat_result) -> bool:
        return prior is not None and prior.placed.get(rel) == st.st_ino

    def walk(rel: str, own: bool) -> None:
        here = dest / rel if rel else dest
        s = (staged / rel if rel else staged).lstat()
        try:
            d = here.lstat()
        except FileNotFoundError:
            found.steps.append(Step("add", rel))
            return
        for guard, real in guards:
            if inside(str(here), real):
                found.refused.append(f"{here} is inside {guard.what} {guard.path}")
                return
        own = own or ours(rel, d)
        if is_dir(s) and is_dir(d):
            if rel and (d.st_dev != device or os.path.ismount(here)):
                found.mount = found.mount or str(here)
                return
            found.steps.append(Step("enter", rel, own))
            with os.scandir(staged / rel if rel else staged) as entries:
                names = sorted(e.name for e in entries)
            for child in names:
                walk(_join(rel, child), own)
            found.steps.append(Step("leave", rel))
            return
        if not own and prior is not None and prior.holds(rel):
            found.refused.append(
                f"{here} was replaced by an interrupted restore, whose undo directory "
                f"{prior.path} holds the old entry, and it exists again: move it away first"
            )
            return
        if is_dir(d):
            if not is_empty_dir(here):
                found.refused.append(_non_empty(here, rel, _kind(s), dest, name))
                return
            if os.path.ismount(here):
                found.mount = found.mount or str(here)
                return
        found.steps.append(Step("own" if own else "replace", rel))

    walk("", False)
    return found


def _non_empty(here: Path, rel: str, kind: str, dest: Path, name: str) -> str:
    if not rel:
        return (
            f"{here} is a non-empty directory and the backup holds a {kind} there: rescue never "
            f"removes a non-empty directory; to put the {kind} inside it use --to {here / name}"
        )
    return (
        f"{here} is a non-empty directory and the backup holds a {kind} there: rescue never "
        f"removes a non-empty directory; move it away first, or restore to a new place "
        f"(e.g. --to {dest.parent / (dest.name + '.restored')})"
    )


def check(found: Plan) -> None:
    """Refuse the whole merge, before anything is moved, if one step is not allowed."""
    if found.mount:
        raise RestoreDestinationRefused(
            f"{found.mount} is a mount point: a forced restore moves entries by rename(2) on one "
            "file system and never copies across file systems; restore what lies there by "
            "itself with --to " + found.mount
        )
    if found.refused:
        more = f" (and {len(found.refused) - 1} more)" if len(found.refused) > 1 else ""
        first = found.refused[0]
        if "never removes a non-empty directory" in first:
            raise RestoreTargetExistsError(f"{first}{more}; nothing was changed")
        raise RestoreDestinationRefused(
            f"{first}: a restore must never write into the backups it reads{more}"
        )


@dataclass
class Counts:
    added: int = 0
    replaced: int = 0
    merged: int = 0


def apply(
    found: Plan,
    staged: Path,
    dest: Path,
    undo: UndoDir,
    top_attrs: Attrs | None,
) -> Counts:
    """Carry out a checked plan; every move journaled in undo before it happens.

    A merged directory takes the staged one's owner, mode, times and xattrs (none: duplicity
    drops them, and the replay then sets the backup's from its records), read before its
    entries move out (which changes the staged directory's mtime). top_attrs are DEST's own
    from before the restore began (a staging directory inside DEST has changed its mtime
    since)."""
    done = Counts()
    pending: dict[str, Attrs] = {}
    for step in found.steps:
        rel = step.rel
        here = dest / rel if rel else dest
        source = staged / rel if rel else staged
        if step.kind == "enter":
            pending[rel] = Attrs.of(source, with_xattrs=True)
            if not step.own:
                undo.note_dir(
                    rel, top_attrs if not rel and top_attrs else Attrs.of(here, with_xattrs=True)
                )
            continue
        if step.kind == "leave":
            pending.pop(rel).apply(here)
            done.merged += 1
            continue
        if step.kind == "replace":
            undo.keep(rel, here)
            done.replaced += 1
        elif step.kind == "own":
            _drop_own(here)
        elif undo.holds(rel):
            done.replaced += 1  # its old entry went to the tree before a kill: finish the move
        else:
            done.added += 1
        undo.note_placed(rel, source.lstat().st_ino)
        rename_noreplace(source, here)
    return done


def _drop_own(here: Path) -> None:
    """Remove what a killed run of this same restore placed (the journal names its inode):
    a file or link, or an empty directory. It is this restore's output, not the user's."""
    if here.is_dir() and not here.is_symlink():
        here.rmdir()
    else:
        here.unlink()
