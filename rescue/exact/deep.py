"""Compare a restored tree with the backup's records: the half of `rescue verify --deep` that
duplicity cannot do.

duplicity's own verify compares content, type, permissions, whole-second mtimes and symlink
targets. This adds, from the records: numeric owners (recorded where they differ from the
parent directory's, so inherited elsewhere), every xattr with ACLs and capabilities, the data
extents of sparse files, exact mtimes (nanoseconds; symlinks and directories too) and the
hard-link groups. One line per difference. The top directory of the compared tree has its mtime (and
its mode, where recorded) always compared: a restore puts its record back (see replay).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rescue.exact import holes, xattrs
from rescue.exact.records import Record, decode_xattrs, relative, type_code, under

_TYPE_NAMES = {"f": "file", "d": "directory", "l": "symlink", "o": "special file"}


@dataclass
class Deep:
    differences: list[str] = field(default_factory=list)
    checked: int = 0  # entries of the restored tree looked at
    recorded: int = 0  # records at or below the path
    changed: int = 0  # files newer in the backup than in the records: times not compared
    top_time: bool = False  # the top's mtime was compared with its record


def show_ns(ns: int) -> str:
    moment = datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{moment}.{ns % 10**9:09d} UTC"


def _extents(path: Path, size: int) -> holes.Extents:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        return holes.data_extents(fd, size)
    finally:
        os.close(fd)


def _show_extents(extents: Iterable[tuple[int, int]]) -> str:
    runs = [f"{o}+{n}" for o, n in extents]
    shown = ",".join(runs[:4]) + (f",… ({len(runs)} runs)" if len(runs) > 4 else "")
    return f"data at {shown}" if runs else "no data"


def compare(
    records: Iterator[Record],
    prefix: str,
    dest: Path,
    hardlinks: Iterable[list[str]] = (),
    skip: Collection[str] = (),
    ignore_times: Collection[str] = (),
) -> Deep:
    """Compare dest (the backup path prefix, restored there) with the records.

    skip: backup paths left out, with everything below them; ignore_times: backup paths whose
    mtime is not compared (directories recovery itself writes into). The records of the compared
    subtree are held in memory: only paths that have one.
    """
    found = Deep()
    below: dict[str, Record] = {}
    ancestors: dict[str, list[int]] = {}
    for record in records:
        rel = record["p"]
        inside = relative(rel, prefix)
        if inside is not None:
            below[inside] = record
        elif "o" in record and under(prefix, rel):
            ancestors[rel] = record["o"]
    found.recorded = len(below)
    top = below.get("", {}).get("o") or _nearest(ancestors, prefix)

    def backup_rel(rel: str) -> str:
        return "/".join(p for p in (prefix, rel) if p)

    stack: list[tuple[Path, str, list[int] | None]] = [(dest, "", top)]
    while stack:
        path, rel, inherited = stack.pop()
        full = backup_rel(rel)
        if full in skip:
            continue
        try:
            st = path.lstat()
        except OSError:
            continue
        found.checked += 1
        recorded = below.get(rel)
        expected = (recorded or {}).get("o") or inherited
        _check(found, path, rel, st, recorded, expected, full in ignore_times, top=not rel)
        if stat.S_ISDIR(st.st_mode):
            owner = [st.st_uid, st.st_gid] if expected is None else expected
            with os.scandir(path) as entries:
                for entry in entries:
                    stack.append(
                        (Path(entry.path), f"{rel}/{entry.name}" if rel else entry.name, owner)
                    )
    for group in hardlinks:
        _links(found, group, prefix, dest)
    return found


def _nearest(ancestors: dict[str, list[int]], prefix: str) -> list[int] | None:
    parts = prefix.split("/") if prefix else []
    for depth in range(len(parts), -1, -1):
        owner = ancestors.get("/".join(parts[:depth]))
        if owner is not None:
            return owner
    return None


def _check(
    found: Deep,
    path: Path,
    rel: str,
    st: os.stat_result,
    record: Record | None,
    owner: list[int] | None,
    ignore_time: bool,
    top: bool = False,
) -> None:
    shown = rel or "."  # relative to the compared tree, as duplicity's own lines are
    diff = found.differences.append
    if owner is not None and [st.st_uid, st.st_gid] != list(owner):
        diff(f"owner differs: {shown}: expected {owner[0]}:{owner[1]}, "
             f"actual {st.st_uid}:{st.st_gid}")  # fmt: skip
    kind = type_code(st.st_mode)
    if record is not None and record["t"] != kind:
        diff(f"type differs: {shown}: expected {_TYPE_NAMES[record['t']]}, "
             f"actual {_TYPE_NAMES[kind]}")  # fmt: skip
        return
    expected_x = decode_xattrs(record) if record else {}
    actual_x = xattrs.read_all(str(path))
    for name in sorted(expected_x.keys() | actual_x.keys()):
        want, got = expected_x.get(name), actual_x.get(name)
        if want != got:
            diff(f"{xattrs.kind(name)} differs: {shown}: {name}: expected "
                 f"{xattrs.show(name, want)}, actual {xattrs.show(name, got)}")  # fmt: skip
    if kind == "f":
        _sparse(found, path, shown, st, record)
    top = top and kind == "d"
    if top and record is not None and "M" in record and stat.S_IMODE(st.st_mode) != record["M"]:
        diff(f"mode differs: {shown}: expected {record['M']:04o}, "
             f"actual {stat.S_IMODE(st.st_mode):04o}")  # fmt: skip
    if record is None or ignore_time or "m" not in record:
        return
    mtime = record["m"]
    found.top_time = found.top_time or top
    if kind != "l" and not top and st.st_mtime_ns // 10**9 != mtime // 10**9:
        found.changed += 1  # newer in the backup than in the records: duplicity verify's part
        return
    if st.st_mtime_ns != mtime:
        diff(f"mtime differs: {shown}: expected {show_ns(mtime)}, actual {show_ns(st.st_mtime_ns)}")


def _sparse(found: Deep, path: Path, shown: str, st: os.stat_result, record: Record | None) -> None:
    recorded = record.get("s") if record else None
    if recorded is None:
        if holes.maybe_sparse(st):
            actual = _extents(path, st.st_size)
            if sum(n for _, n in actual) < st.st_size:
                found.differences.append(
                    f"sparse differs: {shown}: expected fully allocated, "
                    f"actual {_show_extents(actual)}"
                )
        return
    size, extents = recorded
    if st.st_size != size:
        return  # a size difference is duplicity verify's to report
    actual = _extents(path, size)
    want = [tuple(e) for e in extents]
    if actual != want:
        found.differences.append(
            f"sparse differs: {shown}: expected {_show_extents(want)}, "
            f"actual {_show_extents(actual)}"
        )


def _links(found: Deep, group: list[str], prefix: str, dest: Path) -> None:
    inodes = set()
    present = []
    for rel in group:
        inside = relative(rel, prefix)
        if inside is None:
            continue
        try:
            st = (dest / inside if inside else dest).lstat()
        except OSError:
            continue
        inodes.add((st.st_dev, st.st_ino))
        present.append(inside or ".")
    if len(inodes) > 1:
        found.differences.append(
            f"hard links differ: {', '.join(present)}: expected one file, actual {len(inodes)}"
        )
