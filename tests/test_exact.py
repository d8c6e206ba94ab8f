"""Exact restores through `rescue restore` and `rescue verify --deep` (rescue.exact).

The source is the exacttree tree on an ext4 loop disk (every feature supported), backed up
once with the real duplicity to a file destination. Each restore goes to another ext4 loop disk
of 256 MiB, smaller than the 1 GiB sparse file: it fits only because its holes are punched
while duplicity writes. The copies are judged by getcap, getfattr, getfacl, stat and du
(exacttree.assert_exact_copy) as well as by `rescue verify --deep`. ramfs stands in for a file
system without xattrs, ACLs or hole punching: it supports none of them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from clirun import rescue, write_settings
from exacttree import STAMP_NS, assert_exact_copy, make_tree
from loopdisks import loop_disk, require_loop_disks, sh

pytestmark = pytest.mark.slow

TOOLS = {"mkfs.ext4": "e2fsprogs", "setfattr": "attr", "getfacl": "acl", "setcap": "libcap2-bin"}


@dataclass
class Source:
    settings: Path
    tree: Path  # the tree on the source disk (backed up as tree/)
    scratch: Path  # an empty ext4 file system of 256 MiB


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    require_loop_disks(TOOLS)
    work = tmp_path_factory.mktemp("exact")
    root, scratch = work / "src", work / "scratch"
    with (
        loop_disk(work / "src.img", "256M") as src_dev,
        loop_disk(work / "dst.img", "256M") as dst_dev,
    ):
        for device, point in ((src_dev, root), (dst_dev, scratch)):
            sh("mkfs.ext4", "-q", device)
            point.mkdir()
            sh("mount", device, str(point))
        try:
            (root / "tree").mkdir()
            make_tree(root / "tree")
            settings = write_settings(
                work / "rescue.toml",
                {
                    "destination": {"method": "file", "path": str(work / "dest")},
                    "encryption": {"mode": "none"},
                    "selection": {"root": str(root), "exclude": []},
                    "duplicity": {"archive_dir": str(work / "cache")},
                },
            )
            run = rescue(settings, "backup", "--full")
            assert run.code == 0, run.err
            yield Source(settings, root / "tree", scratch)
        finally:
            sh("umount", str(root))
            sh("umount", str(scratch))


def test_restore_puts_back_everything_duplicity_drops(source: Source) -> None:
    dest = source.scratch / "whole"
    run = rescue(source.settings, "restore", str(source.tree), "--to", str(dest))
    assert run.code == 0, run.out + run.err
    assert "ACLs on 2, capabilities on 1, holes in 1 sparse files" in run.out, run.out
    assert_exact_copy(source.tree, dest)
    verify = rescue(source.settings, "verify", "--deep", str(source.tree), "--restored", str(dest))
    assert verify.code == 0, verify.out + verify.err
    assert "0 difference(s)" in verify.out


def test_a_single_file_keeps_its_capability(source: Source) -> None:
    dest = source.scratch / "ping"
    run = rescue(source.settings, "restore", str(source.tree / "bin/ping"), "--to", str(dest))
    assert run.code == 0, run.err
    out = subprocess.run(["getcap", str(dest)], capture_output=True, text=True).stdout
    assert "cap_net_raw=ep" in out


def test_verify_deep_names_every_kind_of_difference(source: Source) -> None:
    dest = source.scratch / "damaged"
    assert rescue(source.settings, "restore", str(source.tree), "--to", str(dest)).code == 0
    os.removexattr(dest / "attrs/tagged.txt", "user.origin")
    sh("setfacl", "-b", str(dest / "shared/report.txt"))
    sh("setcap", "-r", str(dest / "bin/ping"))
    with (dest / "vm/disk.img").open("r+b") as f:
        f.seek(500 * 1024**2)
        f.write(b"\0" * 4096)  # same bytes, but allocated where the source had a hole
    os.utime(dest / "times/fine.txt", ns=(STAMP_NS, STAMP_NS + 1))
    os.chown(dest / "links/b/pair", 1001, 1001)
    (dest / "links/b/trio").unlink()
    (dest / "links/b/trio").write_text("three names\n")

    run = rescue(source.settings, "verify", "--deep", str(source.tree), "--restored", str(dest))
    assert run.code == 43, run.out + run.err
    for expected in (
        "xattr differs: attrs/tagged.txt: user.origin: expected 'rescue test', actual none",
        "acl differs: shared/report.txt: system.posix_acl_access: expected user::rw-,user:1001",
        "capability differs: bin/ping: security.capability",
        "sparse differs: vm/disk.img",
        "mtime differs: times/fine.txt: expected 2023-11-14 22:13:20.123456789 UTC, "
        "actual 2023-11-14 22:13:20.123456790 UTC",
        "owner differs: links/b/pair: expected 0:0, actual 1001:1001",
        "hard links differ: links/a/trio, links/b/trio, trio-at-top: expected one file, actual 2",
    ):
        assert f"DIFFERENCE: {expected}" in run.out, f"{expected!r} not in:\n{run.out}"
    # duplicity's half sees what it can: the owner, and the mode the lost ACL's mask leaves.
    assert "File links/b/pair has permissions 1001:1001 644, expected 0:0 644" in run.out
    assert "File shared/report.txt has permissions 0:0 640, expected 0:0 660" in run.out


def test_a_file_system_without_xattrs_acls_or_holes_warns_per_kind(source: Source) -> None:
    ram = source.scratch.parent / "ramfs"
    ram.mkdir()
    sh("mount", "-t", "ramfs", "none", str(ram))  # no xattrs, no ACLs, no hole punching
    try:
        dest = ram / "tree"
        run = rescue(source.settings, "restore", str(source.tree), "--to", str(dest))
        assert run.code == 42, run.out + run.err
        warnings = [line for line in run.err.splitlines() if line.startswith("WARNING:")]
        assert warnings == [
            "WARNING: acl: 2 path(s) could not get their POSIX ACLs "
            "(the file system does not support them)",
            "WARNING: capability: 1 path(s) could not get their file capabilities "
            "(the file system does not support them)",
            "WARNING: sparse: 1 path(s) could not get their holes (the file stays fully "
            "allocated) (the file system does not support them)",
            "WARNING: xattr: 2 path(s) could not get their extended attributes "
            "(the file system does not support them)",
        ], run.err
        assert "metadata could not be put back" in run.err
        # The data is all there, and what ramfs can keep is kept.
        assert (dest / "links/a/pair").read_text() == "two names\n"
        assert (dest / "vm/disk.img").stat().st_size == 1024**3
        assert (dest / "times/fine.txt").stat().st_mtime_ns == STAMP_NS
    finally:
        sh("umount", str(ram))


def test_restore_refuses_an_existing_target_before_fetching_anything(source: Source) -> None:
    dest = source.scratch / "exists"
    dest.mkdir()
    run = rescue(source.settings, "restore", str(source.tree), "--to", str(dest))
    assert run.code == 40 and "without --force" in run.err
