"""A tree holding everything duplicity drops, and checks of it with the standard tools.

The tree (on a file system that supports it all, ext4 on a loop disk in the tests): a file with
cap_net_raw+ep, user and trusted xattrs, access and default ACLs (one whose mask differs from
its group entry, so dropping the ACL would leave the group writable), a 1 GiB sparse file with
3 MiB of data in three extents, hard-link groups of 2 and 3 across directories, and files and
symlinks with sub-second mtimes. The checks use getcap, getfattr, getfacl, stat and du, not
rescue's own code, so they are an independent judge of a restored copy.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SPARSE_SIZE = 1024**3
SPARSE_DATA = ((0, 1), (300, 1), (1023, 1))  # (offset MiB, length MiB): 3 MiB in 3 extents
MiB = 1024**2
STAMP_NS = 1_700_000_000_123_456_789


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def make_tree(top: Path, sparse_size: int = SPARSE_SIZE) -> None:
    """Build the tree below top (an existing directory)."""
    (top / "bin").mkdir()
    ping = top / "bin/ping"
    ping.write_bytes(b"\x7fELF pretend ping\n")
    ping.chmod(0o755)
    _run("setcap", "cap_net_raw+ep", str(ping))

    attrs = top / "attrs"
    attrs.mkdir()
    tagged = attrs / "tagged.txt"
    tagged.write_text("a file with xattrs\n")
    os.setxattr(tagged, "user.origin", b"rescue test")
    os.setxattr(tagged, "user.binary", bytes(range(256)))
    os.setxattr(tagged, "trusted.secret", b"only root sees this")
    os.setxattr(attrs, "user.dir-note", b"directories have them too")

    shared = top / "shared"
    shared.mkdir()
    shared.chmod(0o2770)
    _run("setfacl", "-m", "u:1001:rwx,g:1002:r-x", str(shared))
    _run("setfacl", "-d", "-m", "u:1001:rwx,g:1002:r-x,o::---", str(shared))
    report = shared / "report.txt"
    report.write_text("group may only read this\n")
    report.chmod(0o640)
    # group::r-- but mask::rw- (from user 1001): without its ACL the group bits read rw-.
    _run("setfacl", "-m", "u:1001:rw-,g::r--,m::rw-", str(report))

    sparse = top / "vm/disk.img"
    sparse.parent.mkdir()
    with sparse.open("wb") as f:
        f.truncate(sparse_size)
        for offset, length in SPARSE_DATA:
            start = min(offset * MiB, sparse_size - length * MiB)
            f.seek(start)
            f.write(os.urandom(length * MiB))

    (top / "links/a").mkdir(parents=True)
    (top / "links/b").mkdir()
    (top / "links/a/pair").write_text("two names\n")
    os.link(top / "links/a/pair", top / "links/b/pair")
    (top / "links/a/trio").write_text("three names\n")
    os.link(top / "links/a/trio", top / "links/b/trio")
    os.link(top / "links/a/trio", top / "trio-at-top")

    times = top / "times"
    times.mkdir()
    (times / "fine.txt").write_text("sub-second mtime\n")
    os.symlink("fine.txt", times / "fine.link")
    os.utime(times / "fine.txt", ns=(STAMP_NS + 111, STAMP_NS))
    os.utime(
        times / "fine.link", ns=(STAMP_NS + 222, STAMP_NS + 987_654_321), follow_symlinks=False
    )
    os.utime(times, ns=(STAMP_NS, STAMP_NS + 5))


def facts(top: Path) -> dict[str, str]:
    """What the standard tools say about the tree: compare a source's with a restored copy's."""
    return {
        "getcap": _in(top, "getcap", "-r", "."),
        "getfattr": _in(top, "getfattr", "-R", "-P", "-d", "-m", "-", "-e", "hex", "."),
        "getfacl": _in(top, "getfacl", "-R", "-P", "-n", "."),
        "stat": _in(top, "find", ".", "-exec", "stat", "-c", "%n %F %a %u:%g %y %h", "{}", "+"),
        "du": _in(top, "du", "-a", "-l", "--block-size=1", "."),
        "inodes": _links(top),
    }


def _in(top: Path, *argv: str) -> str:
    out = subprocess.run(argv, cwd=top, check=True, capture_output=True, text=True).stdout
    return "\n".join(sorted(out.splitlines()))


def _links(top: Path) -> str:
    """Which names share an inode, as sorted groups (inode numbers differ between copies)."""
    groups: dict[int, list[str]] = {}
    for path in sorted(top.rglob("*")):
        st = path.lstat()
        if st.st_nlink > 1 and not path.is_dir():
            groups.setdefault(st.st_ino, []).append(str(path.relative_to(top)))
    return "\n".join(sorted(" ".join(g) for g in groups.values()))


def assert_exact_copy(source: Path, copy: Path) -> None:
    """The copy is exact by every tool's account, and the features really are there."""
    want, got = facts(source), facts(copy)
    for tool in want:
        assert got[tool] == want[tool], f"{tool} differs:\n{want[tool]}\n---\n{got[tool]}"
    assert "cap_net_raw=ep" in got["getcap"]
    acl = _run("getfacl", "-n", "-P", str(copy / "shared/report.txt"))
    assert "group::r--" in acl and "mask::rw-" in acl, acl
    assert (copy / "shared/report.txt").stat().st_mode & 0o777 == 0o660  # group bits = mask
    assert os.getxattr(copy / "attrs/tagged.txt", "trusted.secret") == b"only root sees this"
    disk = (copy / "vm/disk.img").stat()
    assert disk.st_size == SPARSE_SIZE and disk.st_blocks * 512 <= 4 * MiB
    assert (copy / "times/fine.link").lstat().st_mtime_ns == STAMP_NS + 987_654_321
    assert (copy / "links/a/trio").stat().st_ino == (copy / "trio-at-top").stat().st_ino
