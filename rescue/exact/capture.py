"""Record, at backup time, what duplicity drops: one walk of the selection, streamed out.

The same walk finds the hard-link groups the manifest keeps, so the file system is walked once
per backup. Only paths with something to keep get a line (see records), and only the hard-linked
files are held in memory.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from rescue.config import Settings
from rescue.errors import ManifestError
from rescue.exact import holes, xattrs
from rescue.exact.records import SIDECAR_REL, Record, Writer, encode_xattrs, type_code
from rescue.exact.sizes import SIZES_REL, Sizes

log = logging.getLogger("rescue.exact")

# rescue's own files, rewritten by every backup after the walk: never recorded.
OWN = ("var/lib/rescue",)


@dataclass
class Captured:
    """What one capture found: the counts, for the log, and the hard-link groups."""

    entries: int = 0
    records: int = 0
    with_xattrs: int = 0
    with_acls: int = 0
    sparse: int = 0
    hardlinks: list[list[str]] = field(default_factory=list)
    seconds: float = 0.0
    sizes: Sizes = field(default_factory=Sizes)


class Discard:
    """A writer that keeps nothing: for a walk that only wants the hard-link groups."""

    def add(self, record: Record) -> None:
        pass


class _Walk:
    def __init__(self, skip: set[str], writer: Writer | Discard) -> None:
        self.skip = skip
        self.writer = writer
        self.found = Captured()
        self.inodes: dict[tuple[int, int], list[str]] = {}
        self.recorded: set[str] = set()

    def entry(
        self, path: str, rel: str, st: os.stat_result, parent: tuple[int, int] | None
    ) -> None:
        """Record one path if it has anything duplicity would drop."""
        self.found.entries += 1
        kind = type_code(st.st_mode)
        record: Record = {"p": rel, "t": kind}
        owner = (st.st_uid, st.st_gid)
        if owner != parent:
            record["o"] = list(owner)
        if parent is None:  # a walk's top: what a merge into an existing directory leaves alone
            record["M"] = stat.S_IMODE(st.st_mode)
        values = xattrs.read_all(path)
        if values:
            record["x"] = encode_xattrs(values)
            self.found.with_xattrs += 1
            if any(xattrs.kind(n) == "acl" for n in values):
                self.found.with_acls += 1
        if kind == "f" and holes.maybe_sparse(st):
            extents = self._extents(path, st.st_size)
            if extents is not None:
                record["s"] = [st.st_size, [list(e) for e in extents]]
                self.found.sparse += 1
        if len(record) > 2 or kind in "dl" or st.st_mtime_ns % 1_000_000_000:
            record["m"] = st.st_mtime_ns
            record["a"] = st.st_atime_ns
            self.writer.add(record)
            self.found.records += 1
        linked = kind != "d" and st.st_nlink > 1
        if not linked or (st.st_dev, st.st_ino) not in self.inodes:  # an inode's room once
            self.found.sizes.add(rel, kind == "d", st.st_blocks * 512)
        if linked:
            self.inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)

    @staticmethod
    def _extents(path: str, size: int) -> holes.Extents | None:
        """The data runs of a file with holes; None when it has none (or cannot be read)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            extents = holes.data_extents(fd, size)
        except OSError:
            return None
        finally:
            os.close(fd)
        return extents if sum(length for _, length in extents) < size else None

    def tree(self, top: str, rel: str, parent: tuple[int, int] | None) -> None:
        """Record top (a directory or a file) and everything below it."""
        if top in self.skip or rel in self.recorded:
            return
        try:
            st = os.lstat(top)
        except OSError:
            return
        self.entry(top, rel, st, parent)
        self.recorded.add(rel)
        if not stat.S_ISDIR(st.st_mode):
            return
        stack = [(top, rel, (st.st_uid, st.st_gid))]
        while stack:
            directory, dir_rel, owner = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except OSError:
                continue
            for item in entries:
                if item.path in self.skip:
                    continue
                child_rel = f"{dir_rel}/{item.name}" if dir_rel else item.name
                try:
                    child = item.stat(follow_symlinks=False)
                except OSError:
                    continue
                self.entry(item.path, child_rel, child, owner)
                if stat.S_ISDIR(child.st_mode):
                    stack.append((item.path, child_rel, (child.st_uid, child.st_gid)))


def capture(
    root: Path, includes: Iterable[str], excludes: Iterable[str], writer: Writer | Discard
) -> Captured:
    """Walk the included paths under root (never the excluded ones) into writer.

    The directories above an include are recorded too, as duplicity restores them.
    """
    start = time.monotonic()
    own = {str(root / rel) for rel in OWN}
    walk = _Walk({str(PurePosixPath(p)) for p in excludes} | own, writer)
    for include in sorted(str(PurePosixPath(p)) for p in includes):
        rel = os.path.relpath(include, root)
        rel = "" if rel == "." else rel
        parts = rel.split("/") if rel else []
        for depth in range(len(parts)):  # the ancestors: root, then down to the include
            ancestor = "/".join(parts[:depth])
            path = str(root / ancestor) if ancestor else str(root)
            if ancestor not in walk.recorded:
                try:
                    walk.entry(path, ancestor, os.lstat(path), None)
                except OSError:
                    continue
                walk.recorded.add(ancestor)
        walk.tree(include, rel, None)
    walk.found.hardlinks = sorted(sorted(paths) for paths in walk.inodes.values() if len(paths) > 1)
    walk.found.seconds = time.monotonic() - start
    return walk.found


def record_selection(settings: Settings, extra_excludes: Iterable[str] = ()) -> Captured:
    """Write the sidecar of the selection settings describe, at root/SIDECAR_REL, and the
    room its parts take, at root/SIZES_REL."""
    root = Path(str(settings.selection.root))
    path = root / SIDECAR_REL
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = Writer(path, {"root": str(root), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    except OSError as exc:
        raise ManifestError(f"cannot write the metadata records {path}: {exc.strerror}") from None
    try:
        captured = capture(
            root,
            [str(p) for p in settings.selection.include],
            [*map(str, settings.selection.exclude), *extra_excludes],
            writer,
        )
        captured.sizes.write(root / SIZES_REL)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    log.info(
        "metadata: %d entries walked, %d recorded (%d with xattrs, %d with ACLs, %d sparse), "
        "%d hard-link groups, %.2f s",
        captured.entries, captured.records, captured.with_xattrs, captured.with_acls,
        captured.sparse, len(captured.hardlinks), captured.seconds,
    )  # fmt: skip
    return captured
