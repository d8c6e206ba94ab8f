"""Put back what a forced restore replaced; list and prune the undo directories.

An undo is itself a forced operation, kept the same way: what stands at DEST where the restore
placed something (the restored entries, and anything made there since) moves into a new undo
directory, and the old entries move back by rename. So an undo loses nothing either, and can
itself be undone (`rescue undo apply` on the new directory is a redo). A killed undo, run again,
finishes into the same new directory (its journal tells what already moved).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from rescue.errors import UndoError
from rescue.exact.dirtimes import kept
from rescue.placement.fsops import Attrs, remove_own, rename_noreplace, usage
from rescue.placement.journal import JOURNAL, UndoDir, find_unfinished

REGISTRY = Path("/var/lib/rescue/undo-dirs.jsonl")

log = logging.getLogger("rescue.placement")


@dataclass
class Undone:
    dest: Path
    put_back: int  # old entries moved back
    moved_out: int  # restored entries (or later ones) moved into the new undo directory
    directories: int  # directories given their old owner, mode and times
    redo: Path  # the new undo directory: applying it redoes the restore
    removed_old: bool  # the old undo directory was emptied and removed


def _home(undo: UndoDir) -> Path:
    return undo.path.parent


def _depth(rel: str) -> int:
    return rel.count("/") + (1 if rel else 0)


def apply_undo(path: Path) -> Undone:
    """Swap DEST's restored entries with the old ones kept in the undo directory at path."""
    old = UndoDir.open(path)
    try:
        return _swap(old)
    finally:
        old.close()


def _swap(old: UndoDir) -> Undone:
    dest, home = old.dest, _home(old)
    what = f"undo of {old.path}"
    unfinished = find_unfinished(home, dest, "undo", what)
    with kept(home):
        new = UndoDir.open(unfinished) if unfinished else UndoDir.create(home, dest, what, "undo")
    # DEST's parent keeps its times, as in the restore (place.py); a DEST that is a mount
    # point holds the undo directories itself and gets its old attributes from the journal
    try:
        with kept(home) if home != dest else nullcontext():
            put_back, moved_out = _put_back(old, new)
            directories = _old_attributes(old, new)
        new.finish()
        old.finish()  # applied: no later restore may take it for an interrupted one
    finally:
        new.close()
    old.close()
    with kept(home):
        removed = _remove_emptied(old.path)
    return Undone(dest, put_back, moved_out, directories, new.path, removed)


def _put_back(old: UndoDir, new: UndoDir) -> tuple[int, int]:
    """Move what stands where the restore placed or replaced something into new, then the
    old entries back; (put back, moved out). Entries new already put back are left alone."""
    put_back = moved_out = 0
    for rel in old.order:
        if rel not in old.placed and rel not in old.replaced:
            continue
        here = old.dest / rel if rel else old.dest
        back_already = rel in new.placed and _ino(here) == new.placed[rel]
        if os.path.lexists(here) and not back_already:
            new.keep(rel, here)
            moved_out += 1
        if old.holds(rel):
            held = old.held(rel)
            if not here.parent.is_dir():
                raise UndoError(
                    f"{here.parent} is gone: {rel} cannot go back (nothing more was moved; "
                    f"{new.path} holds what was moved so far)"
                )
            new.note_placed(rel, held.lstat().st_ino)
            rename_noreplace(held, here)
            put_back += 1
    return put_back, moved_out


def _old_attributes(old: UndoDir, new: UndoDir) -> int:
    """The merged directories' owner, mode and times as they were, deepest first."""
    count = 0
    for rel in sorted(old.dirs, key=_depth, reverse=True):
        here = old.dest / rel if rel else old.dest
        if here.is_dir() and not here.is_symlink():
            new.note_dir(rel, Attrs.of(here, with_xattrs=True))
            old.dirs[rel].apply(here)
            count += 1
    return count


def _ino(path: Path) -> int | None:
    try:
        return path.lstat().st_ino
    except FileNotFoundError:
        return None


def _remove_emptied(path: Path) -> bool:
    """Remove an applied undo directory if only its journal and empty carriers are left."""
    if not _prune_empty(path / "tree"):
        return False
    if any(p.name != JOURNAL for p in path.iterdir()):
        return False
    remove_own(path)
    return True


def _prune_empty(directory: Path) -> bool:
    """Remove directory and the directories below it if they hold nothing else (rmdir only);
    True when it is gone (or was never there)."""
    if not os.path.lexists(directory):
        return True
    if directory.is_symlink() or not directory.is_dir():
        return False
    emptied = all([_prune_empty(child) for child in list(directory.iterdir())])
    if emptied:
        directory.rmdir()
    return emptied


# -- the registry: every undo directory `rescue restore --force` made on this machine -------


@dataclass
class Listed:
    path: Path
    dest: str
    created: str
    what: str
    finished: bool
    replaced: int
    placed: int
    bytes: int

    def as_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "dest": self.dest,
            "created": self.created,
            "what": self.what,
            "finished": self.finished,
            "replaced": self.replaced,
            "placed": self.placed,
            "bytes": self.bytes,
        }


def register(path: Path, registry: Path = REGISTRY) -> None:
    """Remember an undo directory, so `rescue undo list` finds it wherever it lies; a registry
    that cannot be written is logged, never the restore's failure (the path was printed)."""
    try:
        registry.parent.mkdir(parents=True, exist_ok=True)
        with open(registry, "a", encoding="utf-8") as out:
            out.write(json.dumps({"path": str(path)}) + "\n")
    except OSError as exc:
        log.warning("cannot record %s in %s: %s", path, registry, exc)


def listed(registry: Path = REGISTRY) -> list[Listed]:
    """The registered undo directories that still exist, oldest first."""
    seen: dict[str, None] = {}
    try:
        lines = registry.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    for line in lines:
        try:
            seen[json.loads(line)["path"]] = None
        except (ValueError, KeyError, TypeError):
            continue
    found = []
    for name in seen:
        path = Path(name)
        try:
            undo = UndoDir.open(path, lock=False)
        except (UndoError, OSError):
            continue
        found.append(
            Listed(
                path,
                str(undo.dest),
                undo.created,
                undo.what,
                undo.done,
                sum(1 for rel in undo.replaced if undo.holds(rel)),
                len(undo.placed),
                usage(path),
            )
        )
    return sorted(found, key=lambda item: item.created)


def created_at(item: Listed) -> float:
    moment = dt.datetime.strptime(item.created, "%Y-%m-%dT%H:%M:%SZ")
    return moment.replace(tzinfo=dt.UTC).timestamp()


def prune(items: list[Listed]) -> None:
    """Remove undo directories for good (the admin asked, by name or by age)."""
    for item in items:
        with kept(item.path.parent):
            remove_own(item.path)
