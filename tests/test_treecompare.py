"""treecompare finds every kind of difference a bad restore can cause, and nothing else."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from rescue.backup.treecompare import compare_file, compare_trees, difference_path, tree_totals

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


@pytest.fixture
def copy(sample_tree: Path, tmp_path: Path) -> Path:
    """An exact copy (cp -a keeps modes, owners, mtimes and links) to alter."""
    dst = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(sample_tree), str(dst)], check=True)
    return dst


def _rewrite_same_size(path: Path) -> None:
    """Flip one byte but keep size and mtime, so only the hash can tell."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_identical_trees(sample_tree: Path, copy: Path) -> None:
    assert compare_trees(sample_tree, copy) == []
    assert compare_trees(sample_tree, sample_tree) == []


def test_content_with_same_size_and_mtime(sample_tree: Path, copy: Path) -> None:
    _rewrite_same_size(copy / "var/lib/app/blob.bin")
    (line,) = compare_trees(sample_tree, copy)
    assert line.startswith("content differs: var/lib/app/blob.bin: expected sha256 ")


def test_size(sample_tree: Path, copy: Path) -> None:
    target = copy / "etc/hostname"
    st = target.stat()
    target.write_bytes(target.read_bytes() + b"x")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert compare_trees(sample_tree, copy) == [
        "size differs: etc/hostname: expected 24 bytes, actual 25 bytes"
    ]


def test_mtime_of_files_counts_but_not_of_dirs_or_links(sample_tree: Path, copy: Path) -> None:
    os.utime(copy / "etc/hosts", (1_600_000_000, 1_600_000_000))
    os.utime(copy / "etc", (1_600_000_000, 1_600_000_000))
    os.utime(copy / "etc/app/current.conf", (1, 1), follow_symlinks=False)
    (line,) = compare_trees(sample_tree, copy)
    assert line.startswith("mtime differs: etc/hosts: expected 2023-")
    assert line.endswith("actual 2020-09-13 12:26:40 UTC")


def test_mode_includes_setuid_and_setgid(sample_tree: Path, copy: Path) -> None:
    os.chmod(copy / "usr/local/bin/apptool-suid", 0o755)
    os.chmod(copy / "var/spool/shared", 0o775)
    os.chmod(copy / "etc/ssl/private/server.key", 0o644)
    assert compare_trees(sample_tree, copy) == [
        "mode differs: etc/ssl/private/server.key: expected 0600, actual 0644",
        "mode differs: usr/local/bin/apptool-suid: expected 4755, actual 0755",
        "mode differs: var/spool/shared: expected 2775, actual 0775",
    ]


def test_sticky_bit(tmp_path: Path) -> None:
    (tmp_path / "a/tmp").mkdir(parents=True)
    (tmp_path / "b/tmp").mkdir(parents=True)
    os.chmod(tmp_path / "a/tmp", 0o1777)
    os.chmod(tmp_path / "b/tmp", 0o777)
    assert compare_trees(tmp_path / "a", tmp_path / "b") == [
        "mode differs: tmp: expected 1777, actual 0777"
    ]


@needs_root
def test_owner(sample_tree: Path, copy: Path) -> None:
    os.chown(copy / "home/alice/notes.txt", 1, 1)
    os.chown(copy / "var/lib/app/cache", 0, 0)  # a directory: owners count there too
    os.lchown(copy / "etc/app/current.conf", 1, 1)  # a symlink: lstat, not the target
    assert compare_trees(sample_tree, copy) == [
        "owner differs: etc/app/current.conf: expected 0:0, actual 1:1",
        "owner differs: home/alice/notes.txt: expected 0:0, actual 1:1",
        "owner differs: var/lib/app/cache: expected 1:1, actual 0:0",
    ]


def test_symlink_target(sample_tree: Path, copy: Path) -> None:
    link = copy / "usr/share/doc/app"
    link.unlink()
    os.symlink("/usr/share/doc/app-1.2", link)
    assert compare_trees(sample_tree, copy) == [
        "symlink target differs: usr/share/doc/app: expected 'app-1.2', "
        "actual '/usr/share/doc/app-1.2'"
    ]


def test_only_in_expected_and_actual(sample_tree: Path, copy: Path) -> None:
    (copy / "etc/app/empty.conf").unlink()
    (copy / "var/lib/app/app.pid.lock").unlink()  # the dangling link
    (copy / "etc/new.conf").write_text("x")
    (copy / "home/alice/new dir").mkdir()
    assert compare_trees(sample_tree, copy) == [
        "only in expected: etc/app/empty.conf",
        "only in actual: etc/new.conf",
        "only in actual: home/alice/new dir",
        "only in expected: var/lib/app/app.pid.lock",
    ]


def test_missing_directory_is_one_line(sample_tree: Path, copy: Path) -> None:
    shutil.rmtree(copy / "var/log")
    assert compare_trees(sample_tree, copy) == [
        "only in expected: var/log (directory, and 3 entries below it)"
    ]


def test_type(sample_tree: Path, copy: Path) -> None:
    (copy / "etc/hostname").unlink()
    (copy / "etc/hostname").mkdir()
    shutil.rmtree(copy / "usr/lib/app")
    (copy / "usr/lib/app").write_text("now a file")
    link = copy / "etc/app/current.conf"
    link.unlink()
    link.write_text("a copy instead of a link")
    assert compare_trees(sample_tree, copy) == [
        "type differs: etc/app/current.conf: expected symlink, actual regular file",
        "type differs: etc/hostname: expected regular file, actual directory",
        # The lost directory's content is not listed entry by entry.
        "type differs: usr/lib/app: expected directory, actual regular file",
    ]


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    """Links to the same-looking target compare equal even when the targets differ."""
    for side, content in (("a", b"one"), ("b", b"two")):
        (tmp_path / side).mkdir()
        (tmp_path / side / "target").write_bytes(content)
        os.symlink(str(tmp_path / "a" / "target"), tmp_path / side / "link")
        os.utime(tmp_path / side / "target", (1_000_000_000, 1_000_000_000))
    assert compare_trees(tmp_path / "a", tmp_path / "b") == [
        "content differs: target: expected sha256 "
        + _sha_prefix(b"one")
        + "…, actual sha256 "
        + _sha_prefix(b"two")
        + "…"
    ]


def _sha_prefix(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def test_compare_file(sample_tree: Path, copy: Path) -> None:
    rel = "usr/local/bin/apptool"
    assert compare_file(sample_tree / rel, copy / rel, rel) == []
    os.chmod(copy / rel, 0o700)
    assert compare_file(sample_tree / rel, copy / rel, rel) == [
        f"mode differs: {rel}: expected 0755, actual 0700"
    ]
    (copy / rel).unlink()
    assert compare_file(sample_tree / rel, copy / rel, rel) == [f"only in expected: {rel}"]
    assert compare_file(copy / rel, sample_tree / rel, rel) == [f"only in actual: {rel}"]


def test_names_that_would_break_a_line_are_escaped(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "evil\nname").write_text("x")
    (line,) = compare_trees(tmp_path / "a", tmp_path / "b")
    assert line == "only in expected: 'evil\\nname'"


def test_root_must_be_a_directory(sample_tree: Path, tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        compare_trees(sample_tree, tmp_path / "missing")


def test_tree_totals(tmp_path: Path) -> None:
    (tmp_path / "d/e").mkdir(parents=True)
    (tmp_path / "d/f").write_bytes(b"12345")
    (tmp_path / "d/e/g").write_bytes(b"")
    (tmp_path / "h").write_bytes(b"123")
    os.symlink("h", tmp_path / "link")
    os.symlink("d", tmp_path / "dirlink")
    assert tree_totals(tmp_path) == (5, 8)


def test_difference_path_names_the_path_of_each_kind_of_line() -> None:
    assert difference_path("only in actual: root/.x") == "root/.x"
    assert difference_path("only in expected: tmp (directory, and 3 entries below it)") == "tmp"
    assert difference_path("mode differs: proc: expected 0755, actual 0555") == "proc"
    with pytest.raises(ValueError, match="not a line of compare_trees"):
        difference_path("something else")
