"""The room each part of a backup takes, recorded at backup time, so a restore can say before
any work that it will not fit.

duplicity knows the size of its volumes (compressed and encrypted), not of what they restore
to. The capture walk (rescue.exact.capture) sees every path anyway, so it adds up the allocated
bytes: per directory, of the directory and its direct non-directory entries (a hard-linked
inode once), and per file of SIZE_FLOOR or more on its own. The sum of a subtree's directories
is then the room a restore of it takes; a smaller file alone is too small to matter. Written
gzip-compressed JSON beside the records, in rescue's own directory of every backup.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

from rescue.errors import ManifestError, NoSpaceError
from rescue.exact.records import under
from rescue.placement.fsops import capacity_bytes, free_bytes, fs_of, write_atomic
from rescue.units import human_size

__all__ = ["SIZES_REL", "Sizes", "check_room", "load_sizes"]

# Where the sizes travel in every backup: rescue's own directory, beside the manifest.
SIZES_REL = "var/lib/rescue/sizes.json.gz"

FORMAT = "rescue-sizes"
VERSION = 1
SIZE_FLOOR = 1 << 20  # a file this large gets a line of its own


@dataclass
class Sizes:
    """Allocated bytes: dirs[rel] for a directory and its direct entries, files[rel] for a
    large file (also counted in its directory)."""

    dirs: dict[str, int] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)

    def add(self, rel: str, is_dir: bool, allocated: int) -> None:
        """Count one walked path (a directory, or any other entry once per inode)."""
        if is_dir:
            self.dirs[rel] = self.dirs.get(rel, 0) + allocated
            return
        parent = rel.rpartition("/")[0]
        self.dirs[parent] = self.dirs.get(parent, 0) + allocated
        if allocated >= SIZE_FLOOR:
            self.files[rel] = allocated

    def needed(self, prefix: str, without: list[str] | tuple[str, ...] = ()) -> int | None:
        """The room a restore of prefix ("" is everything) takes, leaving out the subtrees in
        without; None when the backup does not say (a file smaller than SIZE_FLOOR, a path
        it does not hold)."""
        if prefix in self.files:
            return self.files[prefix]

        total, found = 0, False
        for rel, allocated in self.dirs.items():
            if under(rel, prefix) and not any(under(rel, w) for w in without if w):
                total, found = total + allocated, True
        return total if found else None

    def write(self, path: Path) -> None:
        """Write it whole or not at all (fsops.write_atomic)."""
        data = {"format": FORMAT, "version": VERSION, "dirs": self.dirs, "files": self.files}
        packed = gzip.compress(json.dumps(data, separators=(",", ":")).encode())
        try:  # rescue's own file, rewritten at every backup
            write_atomic(path, packed, mode=0o600)
        except OSError as exc:
            raise ManifestError(f"cannot write the sizes {path}: {exc.strerror}") from None


def load_sizes(path: Path | None) -> Sizes | None:
    """The sizes a backup recorded, or None when it has none (an older rescue made it) or they
    cannot be read: the restore then goes on without the early check."""
    if path is None:
        return None
    try:
        with gzip.open(path, "rb") as raw:
            data = json.loads(raw.read())
    except (OSError, ValueError, EOFError):
        return None
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        return None
    return Sizes(dict(data.get("dirs", {})), dict(data.get("files", {})))


def check_room(
    sizes: Sizes | None,
    prefix: str,
    where: Path,
    what: str,
    without: list[str] | tuple[str, ...] = (),
    whole: bool = False,
) -> None:
    """Refuse, before any work, a restore of prefix that cannot fit at where: its free space,
    or with whole=True the file system's whole room (a recovery's target file system is
    rescue's own, so what an interrupted attempt put there is replaced, not added to)."""
    needed = sizes.needed(prefix, without) if sizes is not None else None
    capacity = capacity_bytes(where)
    if needed is None or capacity == 0:  # ramfs and the like keep no count
        return
    room = capacity if whole else free_bytes(where)
    if needed > room:
        where_text = (
            f"the file system at {fs_of(where)} holds only" if whole else f"{fs_of(where)} has only"
        )
        raise NoSpaceError(
            f"{what} needs about {human_size(needed)} (its size at backup time), but "
            f"{where_text} {human_size(room)}{'' if whole else ' free'}: make room there or "
            "restore elsewhere; nothing was written"
        )
