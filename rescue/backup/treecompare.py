"""Compare two directory trees the way a restore drill needs: metadata as well as bytes.

A restore is only proven when the restored tree matches the original in every attribute a
server depends on: content, size, type, the full permission bits (setuid, setgid and sticky
included), numeric owner, symlink targets and file mtimes. `diff -r` checks content only, so the
drill uses this module instead and prints one readable line per difference.

Nothing is followed: symlinks are compared as links (with `lstat` and `readlink`), never as what
they point to. The roots themselves are not compared, only what lies below them, because a
restore target is often a directory the user made.

Directory and symlink mtimes are deliberately ignored. duplicity sets a directory's mtime before
it restores the entries inside it (which then bump it again) and it never sets a symlink's mtime,
so both differ after every honest restore and would only hide the real differences.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TypeVar

_CHUNK = 1024 * 1024

_TYPE_NAMES = {
    stat.S_IFREG: "regular file",
    stat.S_IFDIR: "directory",
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
}


def compare_trees(expected: Path, actual: Path) -> list[str]:
    """Return one line per difference between the trees below `expected` and `actual`.

    An empty list means the trees are identical. Paths in the lines are relative to the roots.
    When a directory is missing on one side (or is something else there), its descendants are
    summarised in that one line rather than listed one by one, so a lost subtree stays readable.
    Raises `NotADirectoryError` if a root is not a directory: comparing against nothing would
    report every file as missing, which hides the real mistake.
    """
    exp_entries = _scan(expected)
    act_entries = _scan(actual)
    diffs: list[str] = []
    collapsed: set[str] = set()
    for rel in sorted(exp_entries.keys() | act_entries.keys()):
        if any(str(parent) in collapsed for parent in PurePosixPath(rel).parents):
            continue
        exp_st = exp_entries.get(rel)
        act_st = act_entries.get(rel)
        if exp_st is None or act_st is None:
            side = "expected" if act_st is None else "actual"
            present = exp_entries if act_st is None else act_entries
            st = exp_st if act_st is None else act_st
            assert st is not None
            below = _count_below(present, rel) if stat.S_ISDIR(st.st_mode) else 0
            diffs.append(_only_in(side, rel, below))
            if below:
                collapsed.add(rel)
            continue
        lines = _compare_stats(expected / rel, exp_st, actual / rel, act_st, rel)
        if lines and _type_differs(exp_st, act_st):
            collapsed.add(rel)
        diffs.extend(lines)
    return diffs


def difference_path(line: str) -> str:
    """The path a compare_trees line is about, so callers can explain differences by path."""
    found = re.match(r"only in \w+: (.*?)(?: \(directory, and \d+ entries below it\))?$", line)
    if found is None:
        found = re.match(r"[a-z ]+ differs: (.*?): expected", line)
    if found is None:
        raise ValueError(f"not a line of compare_trees: {line}")
    return found.group(1)


def compare_file(expected: Path, actual: Path, rel: str) -> list[str]:
    """Compare one entry (file, directory, symlink, ...) with the same checks as compare_trees.

    `rel` is only used to name the entry in the lines. A missing side is reported as
    "only in expected/actual", like in a tree comparison.
    """
    exp_st = _lstat_or_none(expected)
    act_st = _lstat_or_none(actual)
    if exp_st is None and act_st is None:
        return []
    if exp_st is None:
        return [_only_in("actual", rel, 0)]
    if act_st is None:
        return [_only_in("expected", rel, 0)]
    return _compare_stats(expected, exp_st, actual, act_st, rel)


def tree_totals(root: Path) -> tuple[int, int]:
    """Return (entries that are not directories, bytes in regular files) below `root`.

    The drill and the benchmark print these so a reader can tell an empty restore from a full one.
    """
    count = 0
    size = 0
    for st in _scan(root).values():
        if stat.S_ISDIR(st.st_mode):
            continue
        count += 1
        if stat.S_ISREG(st.st_mode):
            size += st.st_size
    return count, size


# --- the checks: each one exists once and is shared by compare_trees and compare_file ---

T = TypeVar("T")

_Check = Callable[[Path, os.stat_result, Path, os.stat_result], tuple[str, str] | None]


def _compare_stats(
    exp_path: Path, exp_st: os.stat_result, act_path: Path, act_st: os.stat_result, rel: str
) -> list[str]:
    """Run every check that applies to this pair; a type mismatch makes the rest meaningless."""
    shown = _show(rel)
    if _type_differs(exp_st, act_st):
        return [
            f"type differs: {shown}: expected {_type_name(exp_st)}, actual {_type_name(act_st)}"
        ]
    checks: list[tuple[str, _Check]] = [("mode", _check_mode), ("owner", _check_owner)]
    if stat.S_ISREG(exp_st.st_mode):
        checks += [("size", _check_size), ("content", _check_content), ("mtime", _check_mtime)]
    elif stat.S_ISLNK(exp_st.st_mode):
        checks.append(("symlink target", _check_link_target))
    elif stat.S_ISCHR(exp_st.st_mode) or stat.S_ISBLK(exp_st.st_mode):
        checks.append(("device", _check_device))
    lines = []
    for name, check in checks:
        found = check(exp_path, exp_st, act_path, act_st)
        if found is not None:
            lines.append(f"{name} differs: {shown}: expected {found[0]}, actual {found[1]}")
    return lines


def _type_differs(exp_st: os.stat_result, act_st: os.stat_result) -> bool:
    return stat.S_IFMT(exp_st.st_mode) != stat.S_IFMT(act_st.st_mode)


def _differ(exp: T, act: T, show: Callable[[T], str]) -> tuple[str, str] | None:
    """None when the two values are equal, else both as a report shows them."""
    return None if exp == act else (show(exp), show(act))


def _of_stat(key: Callable[[os.stat_result], T], show: Callable[[T], str]) -> _Check:
    """The check of one value taken from each side's lstat."""
    return lambda _e, exp_st, _a, act_st: _differ(key(exp_st), key(act_st), show)


# Full permission bits, so a lost setuid/setgid/sticky bit is caught too.
_check_mode = _of_stat(lambda st: stat.S_IMODE(st.st_mode), lambda mode: f"{mode:04o}")
# Numeric ids: names can map differently on the rescue system, numbers are what counts.
_check_owner = _of_stat(lambda st: f"{st.st_uid}:{st.st_gid}", str)
_check_size = _of_stat(lambda st: st.st_size, lambda size: f"{size} bytes")
# Whole seconds: duplicity's tar headers keep no fractions.
_check_mtime = _of_stat(lambda st: st.st_mtime_ns // 10**9, lambda sec: _show_time(sec))
_check_device = _of_stat(lambda st: st.st_rdev, lambda dev: f"{os.major(dev)}:{os.minor(dev)}")


def _check_content(
    exp_path: Path, exp_st: os.stat_result, act_path: Path, act_st: os.stat_result
) -> tuple[str, str] | None:
    """Hash only when sizes match: a size difference is already reported and proves this one."""
    if exp_st.st_size != act_st.st_size:
        return None
    return _differ(_sha256(exp_path), _sha256(act_path), lambda sha: f"sha256 {sha[:16]}…")


def _check_link_target(
    exp_path: Path, _es: os.stat_result, act_path: Path, _as: os.stat_result
) -> tuple[str, str] | None:
    return _differ(os.readlink(exp_path), os.readlink(act_path), repr)


# --- helpers ---


def _scan(root: Path) -> dict[str, os.stat_result]:
    """lstat every entry below `root`, keyed by its relative POSIX path. Never follows links."""
    if not root.is_dir():
        raise NotADirectoryError(f"not a directory: {root}")
    entries: dict[str, os.stat_result] = {}
    for rel, path in _walk(root):
        entries[rel] = path.lstat()
    return entries


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    def fail(err: OSError) -> None:
        raise err

    # os.walk puts symlinks to directories into `dirnames` but does not descend into them when
    # followlinks is False, so listing dirnames + filenames covers every entry exactly once.
    for dirpath, dirnames, filenames in os.walk(root, onerror=fail):
        base = Path(dirpath)
        for name in dirnames + filenames:
            path = base / name
            yield path.relative_to(root).as_posix(), path


def _count_below(entries: dict[str, os.stat_result], rel: str) -> int:
    prefix = rel + "/"
    return sum(1 for other in entries if other.startswith(prefix))


def _only_in(side: str, rel: str, below: int) -> str:
    line = f"only in {side}: {_show(rel)}"
    if below:
        line += f" (directory, and {below} entries below it)"
    return line


def _lstat_or_none(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None


def _type_name(st: os.stat_result) -> str:
    return _TYPE_NAMES.get(stat.S_IFMT(st.st_mode), f"type {stat.S_IFMT(st.st_mode):o}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _show(rel: str) -> str:
    """Keep one difference per line: names with control characters or undecodable bytes are
    shown escaped (Python string syntax) instead of breaking the line or the terminal."""
    if rel.isprintable():
        return rel
    return ascii(os.fsencode(rel).decode("utf-8", "backslashreplace"))


def _show_time(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
