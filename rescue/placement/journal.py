"""The undo directory of a forced restore: the replaced entries, and a journal of every move.

Layout of `.rescue-replaced-<name>-<stamp>/`, on DEST's file system:
  tree/      mirrors DEST: each replaced entry at its relative path, moved there by rename, so
             it keeps its inode, owner, mode, times, xattrs and links (the directories that only
             lead to it are plain 0700 carriers);
  journal    one JSON line per step, written before the step it describes:
               {"dest": ..., "created": ..., "kind": ..., "what": ...}   the header
                                 (kind: "restore", or "undo" for what `rescue undo` moved)
               ["R", ino, rel]   the entry of inode ino at DEST/rel goes to tree/rel
               ["P", ino, rel]   the entry of inode ino is placed at DEST/rel (a rename keeps
                                 the inode, so DEST/rel with that inode is this restore's own)
               ["M", rel, attrs] a directory kept and merged into: its attributes before
               ["done"]
Why a journal: a restore killed at any point leaves each entry either at DEST (old or new), in
tree/ (old) or in the staging directory (new); the journal lets the same command, run again,
tell its own entries from the user's and finish the merge into the same undo directory.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rescue.errors import LockedError, UndoError
from rescue.placement.fsops import Attrs, rename_noreplace

PREFIX = ".rescue-replaced-"
JOURNAL = "journal"
TREE = "tree"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class UndoDir:
    """One undo directory, opened (and locked) for writing or reading."""

    path: Path
    dest: Path
    created: str
    what: str
    kind: str = "restore"
    replaced: dict[str, int] = field(default_factory=dict)
    placed: dict[str, int] = field(default_factory=dict)
    dirs: dict[str, Attrs] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # rels in the order they were first named
    done: bool = False
    _fd: int | None = None

    @property
    def tree(self) -> Path:
        return self.path / TREE

    def held(self, rel: str) -> Path:
        """Where the replaced entry of rel lies in the tree."""
        return self.tree / rel if rel else self.tree

    def holds(self, rel: str) -> bool:
        """The old entry of rel is in the tree (the R line alone may predate its move)."""
        if rel not in self.replaced:
            return False
        try:
            return self.held(rel).lstat().st_ino == self.replaced[rel]
        except FileNotFoundError:
            return False

    # -- writing ---------------------------------------------------------------------------

    @classmethod
    def create(cls, home: Path, dest: Path, what: str, kind: str = "restore") -> UndoDir:
        home.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        name = f"{PREFIX}{dest.name or 'root'}-{stamp}-"
        path = Path(tempfile.mkdtemp(prefix=name, dir=home))  # 0700: it may hold secrets
        undo = cls(path, dest, _now(), what, kind)
        undo._fd = os.open(path / JOURNAL, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(undo._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        undo._write({"dest": str(dest), "created": undo.created, "kind": kind, "what": what})
        return undo

    def _write(self, item: Any) -> None:
        """One line, one write(2) on an O_APPEND descriptor: on disk, or in the page cache
        that survives a SIGKILL, before the move it announces."""
        assert self._fd is not None
        os.write(self._fd, (json.dumps(item) + "\n").encode())

    def note_replaced(self, rel: str, ino: int) -> None:
        self._write(["R", ino, rel])
        self._name(rel)
        self.replaced[rel] = ino

    def note_placed(self, rel: str, ino: int) -> None:
        self._write(["P", ino, rel])
        self._name(rel)
        self.placed[rel] = ino

    def note_dir(self, rel: str, attrs: Attrs) -> None:
        if rel in self.dirs:
            return  # a resumed merge keeps the first record: the directory as the user had it
        self._write(["M", rel, attrs.as_dict()])
        self._name(rel)
        self.dirs[rel] = attrs

    def _name(self, rel: str) -> None:
        if rel not in self.replaced and rel not in self.placed and rel not in self.dirs:
            self.order.append(rel)

    def keep(self, rel: str, entry: Path) -> None:
        """Move DEST's entry of rel into the tree (carriers made as needed)."""
        held = self.held(rel)
        held.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.note_replaced(rel, entry.lstat().st_ino)
        rename_noreplace(entry, held)

    def finish(self) -> None:
        if not self.done:
            self._write(["done"])
            self.done = True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def empty(self) -> bool:
        return not (self.replaced or self.placed or self.dirs)

    # -- reading ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, lock: bool = True) -> UndoDir:
        """An existing undo directory; locked for writing (a resume, an undo) when lock."""
        path = Path(os.path.realpath(path))
        journal = path / JOURNAL
        try:
            fd = os.open(journal, os.O_WRONLY | os.O_APPEND if lock else os.O_RDONLY)
        except FileNotFoundError:
            raise UndoError(f"{path} is not an undo directory of rescue (no {JOURNAL})") from None
        if lock:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise LockedError(f"another rescue run is using {path}; wait for it") from None
        try:
            undo = cls._parse(path, journal.read_text(encoding="utf-8", errors="surrogateescape"))
        except BaseException:
            os.close(fd)
            raise
        if lock:
            undo._fd = fd
        else:
            os.close(fd)
        return undo

    @classmethod
    def _parse(cls, path: Path, text: str) -> UndoDir:
        lines = text.splitlines()
        try:
            header = json.loads(lines[0])
            undo = cls(
                path,
                Path(header["dest"]),
                header["created"],
                header.get("what", ""),
                header.get("kind", "restore"),
            )
            for line in lines[1:]:
                if not line.endswith(("]", "}")):
                    continue  # a line cut by a crash: its step never started
                item = json.loads(line)
                if item[0] == "R":
                    undo._name(item[2])
                    undo.replaced[item[2]] = int(item[1])
                elif item[0] == "P":
                    undo._name(item[2])
                    undo.placed[item[2]] = int(item[1])
                elif item[0] == "M":
                    undo._name(item[1])
                    undo.dirs.setdefault(item[1], Attrs(**item[2]))
                elif item[0] == "done":
                    undo.done = True
        except (IndexError, KeyError, TypeError, ValueError) as exc:
            raise UndoError(f"{path / JOURNAL} is damaged ({exc}); nothing was moved") from None
        return undo


def find_unfinished(home: Path, dest: Path, kind: str, what: str | None = None) -> Path | None:
    """The newest undo directory in home that a killed run of this kind (and, if given, this
    what) left for dest. A restore never resumes an undo's journal, nor the reverse: each
    treats the entries its journal placed as its own."""
    found = []
    for candidate in home.glob(f"{PREFIX}*"):
        try:
            undo = UndoDir.open(candidate, lock=False)
        except (UndoError, OSError):
            continue
        if undo.dest != dest or undo.done or undo.kind != kind:
            continue
        if what is None or undo.what == what:
            found.append((undo.created, candidate))
    return max(found)[1] if found else None
