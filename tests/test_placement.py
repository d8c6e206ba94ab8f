"""restore --force: a forced restore merges into what exists and keeps what only it has."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import rescue
from test_roundtrip import settings_for

from rescue.placement import merge_into


def make(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def test_merge_replaces_files_and_keeps_extras(tmp_path: Path) -> None:
    staged, dest = tmp_path / "staged", tmp_path / "dest"
    make(staged / "a/same.txt", "restored", 0o600)
    make(staged / "a/new.txt", "new")
    os.symlink("same.txt", staged / "a/link")
    make(dest / "a/same.txt", "local edit")
    make(dest / "a/extra.txt", "only here")
    (dest / "a/link").mkdir()  # a directory where the backup has a link: replaced
    merge_into(staged, dest)
    assert (dest / "a/same.txt").read_text() == "restored"
    assert (dest / "a/same.txt").stat().st_mode & 0o777 == 0o600
    assert (dest / "a/new.txt").read_text() == "new"
    assert (dest / "a/extra.txt").read_text() == "only here"
    assert os.readlink(dest / "a/link") == "same.txt"
    assert not staged.exists()


def test_merged_directories_keep_the_restored_mtime(tmp_path: Path) -> None:
    """Moving entries out of a staged directory changes its mtime: the restored one must win."""
    staged, dest = tmp_path / "staged", tmp_path / "dest"
    make(staged / "boot/vmlinuz", "kernel")
    os.utime(staged / "boot", (1_600_000_000, 1_600_000_000))
    (dest / "boot").mkdir(parents=True)
    merge_into(staged, dest)
    assert (dest / "boot/vmlinuz").read_text() == "kernel"
    assert (dest / "boot").stat().st_mtime == 1_600_000_000


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A second file system, so that a move must cross a mount point as into a separate /boot."""
    mount = tmp_path / "dest" / "boot"
    mount.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_merge_across_a_mount_point_keeps_owners(tmp_path: Path, tmpfs: Path) -> None:
    staged = tmp_path / "staged"
    make(staged / "boot/grub/grub.cfg", "menu", 0o640)
    os.chown(staged / "boot/grub/grub.cfg", 1, 1)
    os.symlink("grub/grub.cfg", staged / "boot/cfg-link")
    merge_into(staged, tmp_path / "dest")
    restored = tmpfs / "grub/grub.cfg"
    assert restored.read_text() == "menu"
    st = restored.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1, 1, 0o640)
    assert os.readlink(tmpfs / "cfg-link") == "grub/grub.cfg"


@pytest.mark.slow
def test_forced_restore_of_a_tree_merges(tmp_path: Path, sample_tree: Path) -> None:
    config = settings_for("file", tmp_path, sample_tree)
    assert rescue(config, "backup").code == 0
    target = tmp_path / "live"
    subprocess.run(["cp", "-a", str(sample_tree), str(target)], check=True)
    (target / "etc/hosts").write_text("broken by an admin\n")
    (target / "etc/local-only.conf").write_text("not in any backup\n")
    r = rescue(config, "restore", "etc", "--to", str(target / "etc"))
    assert r.code == 40 and (target / "etc/hosts").read_text() == "broken by an admin\n"
    r = rescue(config, "restore", "etc", "--to", str(target / "etc"), "--force")
    assert r.code == 0, r.err
    assert (target / "etc/hosts").read_bytes() == (sample_tree / "etc/hosts").read_bytes()
    assert (target / "etc/local-only.conf").exists()
    assert not list(target.glob(".rescue-restore-*"))
