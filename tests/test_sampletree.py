"""The sample and benchmark trees hold what they promise and are the same on every build."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from rescue.backup.sampletree import (
    BASE_MTIME,
    NON_ASCII_NAME,
    MiB,
    make_bench_tree,
    make_sample_tree,
    mutate_sample_tree,
)
from rescue.backup.treecompare import compare_trees, tree_totals


def _entries(root: Path) -> dict[str, os.stat_result]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            out[path.relative_to(root).as_posix()] = path.lstat()
    return out


def test_every_promised_kind_of_entry(sample_tree: Path) -> None:
    entries = _entries(sample_tree)
    regular = {r: st for r, st in entries.items() if stat.S_ISREG(st.st_mode)}
    links = {r for r, st in entries.items() if stat.S_ISLNK(st.st_mode)}
    dirs = {r for r, st in entries.items() if stat.S_ISDIR(st.st_mode)}

    assert {"etc", "home/alice", "var/lib/app", "usr/share/doc/app-1.2"} <= dirs
    assert any(st.st_size == 0 for st in regular.values()), "an empty file"
    assert any(not any((sample_tree / d).iterdir()) for d in dirs), "an empty directory"

    dangling = [r for r in links if not (sample_tree / r).exists()]
    to_file = [r for r in links if (sample_tree / r).is_file()]
    to_dir = [r for r in links if (sample_tree / r).is_dir()]
    assert dangling and to_file and to_dir
    assert all(not os.readlink(sample_tree / r).startswith("/") for r in to_dir)

    assert NON_ASCII_NAME in regular
    assert not NON_ASCII_NAME.isascii() and " " in NON_ASCII_NAME

    modes = {stat.S_IMODE(st.st_mode) for st in entries.values()}
    assert {0o600, 0o640, 0o755, 0o700} <= modes
    assert any(stat.S_IMODE(entries[d].st_mode) & stat.S_ISGID for d in dirs), "setgid dir"
    assert any(st.st_mode & stat.S_ISUID for st in regular.values()), "setuid file"

    big = [r for r, st in regular.items() if st.st_size >= MiB]
    assert len(big) == 1
    data = (sample_tree / big[0]).read_bytes()
    assert len(zlib.compress(data, 9)) > 0.99 * len(data), "the big file is incompressible"

    _count, size = tree_totals(sample_tree)
    assert 1.5 * MiB < size < 2.5 * MiB

    for rel, st in entries.items():
        assert st.st_mtime_ns % 10**9 == 0, rel
        assert st.st_mtime <= BASE_MTIME < time.time(), rel


@pytest.mark.skipif(os.geteuid() != 0, reason="the second owner needs root")
def test_daemon_owns_some_entries(sample_tree: Path) -> None:
    daemon = pwd.getpwnam("daemon")
    entries = _entries(sample_tree)
    owned = {r for r, st in entries.items() if st.st_uid == daemon.pw_uid}
    group_only = {
        r for r, st in entries.items() if st.st_gid == daemon.pw_gid and st.st_uid != daemon.pw_uid
    }
    assert "var/lib/app/blob.bin" in owned
    assert "var/lib/app/cache" in owned
    assert "var/spool/shared" in group_only
    assert all(entries[r].st_gid == daemon.pw_gid for r in owned)
    # duplicity does not restore a symlink's owner, so no symlink may have the second owner.
    assert not any(stat.S_ISLNK(entries[r].st_mode) for r in owned | group_only)


def test_same_seed_same_tree(sample_tree: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    make_sample_tree(again, seed=0)
    assert compare_trees(sample_tree, again) == []


def test_other_seed_other_content(sample_tree: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    make_sample_tree(other, seed=1)
    diffs = compare_trees(sample_tree, other)
    assert any(d.startswith("content differs: var/lib/app/blob.bin") for d in diffs)
    assert not any(d.startswith(("only in", "type", "mode", "owner")) for d in diffs)


def test_refuses_non_empty_root(sample_tree: Path) -> None:
    with pytest.raises(FileExistsError):
        make_sample_tree(sample_tree)


def test_mutate_reports_what_changed(sample_tree: Path, tmp_path: Path) -> None:
    before = tmp_path / "before"
    subprocess.run(["cp", "-a", str(sample_tree), str(before)], check=True)
    changed = mutate_sample_tree(sample_tree)
    assert len(changed) == 5
    diffs = compare_trees(before, sample_tree)
    for rel in changed:
        assert any(f": {rel}" in d for d in diffs), rel
    for d in diffs:
        assert any(d.endswith(f": {rel}") or f": {rel}:" in d for rel in changed), d
    kinds = {d.split(":")[0] for d in diffs}
    assert kinds == {
        "only in expected",
        "only in actual",
        "size differs",
        "mode differs",
        "mtime differs",
    }


def test_mutate_is_deterministic(sample_tree: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    make_sample_tree(other)
    assert mutate_sample_tree(sample_tree) == mutate_sample_tree(other)
    assert compare_trees(sample_tree, other) == []


def test_bench_tree_shape(tmp_path: Path) -> None:
    root = tmp_path / "bench"
    make_bench_tree(root, total_mib=16, seed=3)
    entries = _entries(root)
    files = {r: st for r, st in entries.items() if stat.S_ISREG(st.st_mode)}
    links = [r for r, st in entries.items() if stat.S_ISLNK(st.st_mode)]
    assert sum(st.st_size for st in files.values()) == 16 * MiB
    small = [r for r, st in files.items() if st.st_size <= 16 * 1024]
    assert 0.5 < len(small) / len(files) < 0.7
    assert links
    assert {r.split("/")[0] for r in files} >= {"etc", "usr", "var", "home"}

    incompressible = 0
    for rel, st in files.items():
        data = (root / rel).read_bytes()
        if len(zlib.compress(data, 1)) > 0.95 * len(data):
            incompressible += st.st_size
    assert 0.2 < incompressible / (16 * MiB) <= 0.25

    again = tmp_path / "again"
    make_bench_tree(again, total_mib=16, seed=3)
    assert compare_trees(root, again) == []


def test_bench_tree_is_fast_and_has_large_files(tmp_path: Path) -> None:
    root = tmp_path / "bench"
    started = time.monotonic()
    make_bench_tree(root, total_mib=200)
    elapsed = time.monotonic() - started
    try:
        sizes = [st.st_size for st in _entries(root).values() if stat.S_ISREG(st.st_mode)]
        assert sum(sizes) == 200 * MiB
        assert any(32 * MiB <= s <= 64 * MiB for s in sizes)
        assert elapsed < 30, elapsed
    finally:
        shutil.rmtree(root)
