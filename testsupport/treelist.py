"""A tree's every path with what a restore must keep, as JSON-ready data, and the comparison of
two such listings.

Why a listing and not treecompare.compare_trees: the stacked layouts (LVM, LUKS, MD, btrfs
subvolumes) can only be mounted inside a QEMU guest, and the source is wiped there before it is
recovered, so the two trees never exist side by side. The guest lists each (tests/guest/
stacked_cycle.py imports this file by path: standard library only), the host compares. The
same attributes as compare_trees: type, permission bits, numeric owner, size, file mtime,
content (sha256), link target and device number; plus the link count of files, which shows a
lost hard link. Directory and symlink mtimes are left out, for compare_trees' reasons.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

Entry = list[object]  # [kind, mode, uid, gid, size, mtime, nlink, detail]
KINDS = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
}
FIELDS = ("type", "mode", "uid", "gid", "size", "mtime", "links", "content")


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def entry(path: Path) -> Entry:
    st = path.lstat()
    kind = KINDS.get(stat.S_IFMT(st.st_mode), "other")
    detail: object = None
    size = mtime = nlink = None
    if kind == "file":
        detail, size, mtime, nlink = _digest(path), st.st_size, int(st.st_mtime), st.st_nlink
    elif kind == "symlink":
        detail = os.readlink(path)
    elif kind in ("char", "block"):
        detail = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return [kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, size, mtime, nlink, detail]


def listing(root: Path, skip_below: Iterable[str] = ()) -> dict[str, Entry]:
    """Every path below root (relative), not following links or leaving its mounts' tree;
    the directories in skip_below (relative) are listed but not their content."""
    skipped = {s.strip("/") for s in skip_below}
    found: dict[str, Entry] = {}
    for top, dirs, files in os.walk(root):
        rel_top = os.path.relpath(top, root)
        for name in [*dirs, *files]:
            rel = name if rel_top == "." else f"{rel_top}/{name}"
            found[rel] = entry(Path(top) / name)
        dirs[:] = [d for d in dirs if (d if rel_top == "." else f"{rel_top}/{d}") not in skipped]
    return found


def differences(expected: dict[str, Entry], actual: dict[str, Entry]) -> list[str]:
    """One line per difference: `only in expected: P`, `only in actual: P` or
    `P: mode 0o644 -> 0o600`."""
    lines = []
    for rel in sorted(expected.keys() | actual.keys()):
        if rel not in actual:
            lines.append(f"only in expected: {rel}")
        elif rel not in expected:
            lines.append(f"only in actual: {rel}")
        else:
            for name, old, new in zip(FIELDS, expected[rel], actual[rel], strict=True):
                if old != new:
                    shown = (oct(old), oct(new)) if name == "mode" else (old, new)  # type: ignore[arg-type]
                    lines.append(f"{rel}: {name} {shown[0]} -> {shown[1]}")
    return lines


def difference_path(line: str) -> str:
    """The path a differences() line is about."""
    if line.startswith(("only in expected: ", "only in actual: ")):
        return line.split(": ", 1)[1]
    return line.rsplit(": ", 1)[0]
