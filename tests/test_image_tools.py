"""image/build on a machine without the image tools (set up by plain `scripts/setup`): one line
naming what is missing and how to install it, exit 51, no traceback, nothing started. The
machine's lack is real: the build runs with a PATH that holds only some of the programs (links
to the real ones), so no ISO is ever built here."""

from __future__ import annotations

import ast
import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

BUILD = Path(__file__).resolve().parent.parent / "image" / "build"


def build_with_path(path: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUILD), "--cache", str(cache)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": str(path)},
        timeout=60,
    )


def test_missing_image_tools_are_one_line_with_the_install_command(tmp_path: Path) -> None:
    present = ("chroot", "mount", "umount", "dpkg-query", "xorriso")
    if any(shutil.which(tool) is None for tool in present):
        pytest.skip(f"needs {', '.join(present)} on this machine to link them")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in present:
        (bin_dir / tool).symlink_to(shutil.which(tool))  # type: ignore[arg-type]
    cache = tmp_path / "cache"
    done = build_with_path(bin_dir, cache)
    assert done.returncode == 51, done.stderr
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "image/build: lb, debootstrap, mksquashfs, unsquashfs not found on PATH "
        "(Debian packages: live-build debootstrap squashfs-tools); "
        "install them with: bash scripts/setup --with-image-tools"
    ]
    assert not cache.exists()  # checked before the lock, the cache or any build step


def test_a_path_without_the_system_programs_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = build_with_path(empty, tmp_path / "cache")
    assert done.returncode == 51
    [line] = done.stderr.splitlines()
    assert "Traceback" not in done.stderr
    assert line.startswith("image/build: lb, debootstrap, xorriso, mksquashfs, unsquashfs, chroot,")
    assert "bash scripts/setup --with-image-tools" in line
    assert line.endswith("coreutils, mount and dpkg come with Debian: is /usr/sbin on PATH?")


def test_setup_installs_exactly_the_packages_image_build_checks_for() -> None:
    """scripts/setup --with-image-tools and image/build's check name the same packages."""
    setup = (BUILD.parent.parent / "scripts" / "setup").read_text()
    listed = next(line for line in setup.splitlines() if line.startswith("image_packages=("))
    packages = listed.removeprefix("image_packages=(").removesuffix(")").split()
    names: dict[str, object] = {}
    for node in ast.parse(BUILD.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            with contextlib.suppress(ValueError):
                names[node.targets[0].id] = ast.literal_eval(node.value)
    assert names["IMAGE_PACKAGES"] == tuple(packages)
    assert set(packages) <= set(names["TOOLS"].values())  # type: ignore[attr-defined]
