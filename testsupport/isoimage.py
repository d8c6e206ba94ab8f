"""The rescue ISO for tests: image/build's result, built or reused from its cache.

Shared by tests/test_iso.py and the VM scenarios (vm-tests/), so there is one way to get it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
BUILD = PROJECT / "image" / "build"
TOOLS = {
    "lb": "live-build",
    "xorriso": "xorriso",
    "mksquashfs": "squashfs-tools",
    "qemu-system-x86_64": "qemu-system-x86",
}


def missing_for_iso() -> str | None:
    """Why this machine cannot build and boot the ISO, or None."""
    if os.geteuid() != 0:
        return "building the ISO needs root (lb build, chroot, mounts)"
    missing = sorted({package for tool, package in TOOLS.items() if shutil.which(tool) is None})
    return f"needs the packages {' '.join(missing)}" if missing else None


def iso_for_tests() -> Path:
    """The ISO for a test's fixture; a skip naming what this machine lacks to build it."""
    reason = missing_for_iso()
    if reason:
        pytest.skip(reason)
    return rescue_iso()


def rescue_iso() -> Path:
    """The ISO path; image/build reuses its cache when nothing changed (seconds), builds the
    base in about 5 minutes and the layer in about 15 s otherwise."""
    out = subprocess.run(
        [str(PROJECT / ".venv/bin/python"), str(BUILD), "--print-path"],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"image/build failed ({out.returncode}):\n{out.stderr[-4000:]}")
    path = Path(out.stdout.strip().splitlines()[-1])
    if not path.is_file():
        raise RuntimeError(f"image/build printed {path}, which is not a file")
    return path


def extract(iso: Path, paths: dict[str, Path]) -> None:
    """Copy files out of the ISO (the host kernel cannot mount iso9660): {iso path: target}."""
    argv = ["xorriso", "-osirrox", "on", "-indev", str(iso)]
    for inside, target in paths.items():
        argv += ["-extract", inside, str(target)]
    subprocess.run(argv, check=True, capture_output=True)
