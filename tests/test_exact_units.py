"""rescue.exact's pure parts and its file-system primitives, on the test host's own file system.

The round trips through duplicity are in test_exact.py and test_recover_e2e.py; these pin the
rules: the sidecar format and its version check, the hole arithmetic, that a stale record never
punches data away, the capture's "only what needs a line" rule and owner inheritance, and the
replay's guard against a file that changed after it was recorded.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from rescue.errors import ManifestError
from rescue.exact import holes, xattrs
from rescue.exact.capture import Discard, capture
from rescue.exact.deep import compare
from rescue.exact.records import Writer, read
from rescue.exact.replay import replay
from rescue.exact.sizes import load_sizes

MiB = 1024**2


def test_holes_are_the_complement_of_the_data() -> None:
    assert holes.holes_of([(0, 4096), (8192, 4096)], 16384) == [(4096, 4096), (12288, 4096)]
    assert holes.holes_of([], 100) == [(0, 100)]
    assert holes.holes_of([(0, 100)], 100) == []


def test_a_stale_record_never_punches_data(tmp_path: Path) -> None:
    path = tmp_path / "f"
    payload = os.urandom(MiB)
    with path.open("wb") as f:
        f.write(bytes(2 * MiB) + payload + bytes(MiB))  # zeros, data, zeros (fully allocated)
    fd = os.open(path, os.O_RDWR)
    try:
        freed = holes.punch_zeros(fd, [(0, 4 * MiB)])  # a record claiming all of it is a hole
        assert freed == 3 * MiB
        assert holes.data_extents(fd, 4 * MiB) == [(2 * MiB, MiB)]
    finally:
        os.close(fd)
    assert path.read_bytes() == bytes(2 * MiB) + payload + bytes(MiB)


def test_acl_text_reads_like_getfacl() -> None:
    raw = bytes.fromhex("02000000" "01000600ffffffff" "02000400e9030000" "04000400ffffffff"
                        "10000600ffffffff" "20000000ffffffff")  # fmt: skip
    assert xattrs.acl_text(raw) == "user::rw-,user:1001:r--,group::r--,mask::rw-,other::---"
    assert xattrs.kind("system.posix_acl_default") == "acl"
    assert xattrs.kind("security.capability") == "capability"
    assert xattrs.kind("user.x") == "xattr"


def test_records_round_trip_and_refuse_a_newer_format(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl.gz"
    writer = Writer(path, {"root": "/"})
    writer.add({"p": "a", "t": "f", "m": 1})
    writer.close()
    header, records = read(path)
    assert header["version"] == 1 and list(records) == [{"p": "a", "t": "f", "m": 1}]
    assert path.stat().st_mode & 0o777 == 0o600
    with gzip.open(path, "wt") as f:
        f.write(json.dumps({"format": "rescue-metadata", "version": 99}) + "\n")
    with pytest.raises(ManifestError, match="metadata format 99; this rescue reads up to 1"):
        read(path)
    path.write_bytes(b"not gzip")
    with pytest.raises(ManifestError, match="cannot read the metadata records"):
        read(path)


def _capture(top: Path, sidecar: Path) -> list[dict[str, object]]:
    writer = Writer(sidecar, {"root": str(top)})
    capture(top, [str(top)], [], writer)
    writer.close()
    return list(read(sidecar)[1])


def test_plain_files_cost_nothing_and_owners_are_inherited(tmp_path: Path) -> None:
    top = tmp_path / "top"
    (top / "d").mkdir(parents=True)
    for name in ("plain", "d/plain"):
        (top / name).write_text("x")
        os.utime(top / name, (1_700_000_000, 1_700_000_000))  # whole seconds
    (top / "d/other-owner").write_text("x")
    os.utime(top / "d/other-owner", (1_700_000_000, 1_700_000_000))
    os.chown(top / "d/other-owner", 4242, 4242)
    records = {r["p"]: r for r in _capture(top, tmp_path / "m.gz")}
    assert set(records) == {"", "d", "d/other-owner"}  # the plain files have no line
    assert records["d/other-owner"]["o"] == [4242, 4242] and "o" not in records["d"]


def test_replay_leaves_the_times_of_a_changed_file_and_deep_notes_it(tmp_path: Path) -> None:
    top, copy = tmp_path / "top", tmp_path / "copy"
    top.mkdir()
    (top / "f").write_text("old")
    os.utime(top / "f", ns=(1_700_000_000 * 10**9, 1_700_000_000_123_456_789))
    os.utime(top, ns=(1_700_000_000 * 10**9, 1_700_000_000_000_000_005))
    sidecar = tmp_path / "m.gz"
    _capture(top, sidecar)
    copy.mkdir()
    (copy / "f").write_text("new")  # "restored" from a backup made after a change
    os.utime(copy / "f", (1_700_000_100, 1_700_000_100))
    os.utime(copy, (1_700_000_000, 1_700_000_000))  # the directory itself did not change
    done = replay(read(sidecar)[1], "", copy)
    assert done.changed == 1 and (copy / "f").stat().st_mtime_ns == 1_700_000_100 * 10**9
    found = compare(read(sidecar)[1], "", copy)
    assert found.changed == 1 and found.differences == []
    assert (
        copy.stat().st_mtime_ns == 1_700_000_000_000_000_005
    )  # the unchanged directory got its ns


def test_a_directory_newer_in_the_backup_keeps_its_restored_time(tmp_path: Path) -> None:
    """gpg writes /root/.gnupg between the records and duplicity's read: the directory in the
    backup is newer than its record, and must not be set back to the older time."""
    top, copy = tmp_path / "top", tmp_path / "copy"
    (top / "d").mkdir(parents=True)
    os.utime(top / "d", ns=(0, 1_700_000_000_000_000_007))
    sidecar = tmp_path / "m.gz"
    _capture(top, sidecar)
    (copy / "d").mkdir(parents=True)
    os.utime(copy / "d", (1_700_000_015, 1_700_000_015))
    replay(read(sidecar)[1], "", copy)
    assert (copy / "d").stat().st_mtime_ns == 1_700_000_015 * 10**9
    assert compare(read(sidecar)[1], "", copy).differences == []


def test_relinking_keeps_the_directory_times(tmp_path: Path) -> None:
    from rescue.exact.links import relink

    for name in ("a", "b"):
        (tmp_path / name).write_text("same")
    os.utime(tmp_path, ns=(1, 1_700_000_000_000_000_009))
    done = relink([["a", "b"]], lambda rel: tmp_path / rel)
    assert done.linked == 1 and (tmp_path / "a").stat().st_ino == (tmp_path / "b").stat().st_ino
    assert tmp_path.stat().st_mtime_ns == 1_700_000_000_000_000_009


def test_sizes_count_each_inode_once_and_what_it_allocates(tmp_path: Path) -> None:
    """The room a restore needs: a hard-linked inode once, a sparse file by its data only, a
    large file alone, a subtree without the parts left out; a small file alone is unknown."""
    root = tmp_path / "root"
    (root / "data/sub").mkdir(parents=True)
    (root / "data/big").write_bytes(os.urandom(2 * MiB))
    os.link(root / "data/big", root / "data/sub/big-again")
    with (root / "data/sparse").open("wb") as f:
        f.truncate(64 * MiB)
        f.write(os.urandom(MiB))
    (root / "etc").mkdir()
    (root / "etc/hostname").write_text("sized\n")
    sizes = capture(root, [str(root)], [], Discard()).sizes

    def blocks(*rels: str) -> int:
        return sum(os.lstat(root / rel).st_blocks * 512 for rel in rels)

    data = ("data", "data/sub", "data/big", "data/sparse")
    assert sizes.needed("data") == blocks(*data)  # big-again is big's inode
    assert sizes.needed("") == blocks("", "etc", "etc/hostname", *data)
    assert sizes.needed("", without=["data"]) == blocks("", "etc", "etc/hostname")
    assert sizes.needed("data/big") == 2 * MiB
    assert sizes.needed("etc/hostname") is None and sizes.needed("no/such") is None
    assert blocks("data/sparse") < 2 * MiB  # the 64 MiB file takes its data only
    sizes.write(tmp_path / "sizes.json.gz")
    assert load_sizes(tmp_path / "sizes.json.gz") == sizes
    assert load_sizes(tmp_path / "missing.json.gz") is None
