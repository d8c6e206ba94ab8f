"""Proof that the cached source disk of tests/bootdisk.py really boots by itself in QEMU.

Why: every boot-after-recovery test trusts this image; if it cannot boot untouched, a failed
recovery boot would say nothing about the recovery.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from bootdisk import HOSTNAME, MARKER_PREFIX, MARKER_SUM, boot_disk, source_image

pytestmark = pytest.mark.slow


def test_source_image_boots_to_its_marker(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("building the boot disk needs root (loop devices, chroot)")
    for tool in ("qemu-system-x86_64", "debootstrap"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup --with-test-tools)")
    disk = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(source_image()), str(disk)], check=True)
    line = boot_disk(disk, tmp_path / "console.log")
    assert line.startswith(MARKER_PREFIX)
    assert f"host={HOSTNAME}" in line.split()
    assert f"sum={MARKER_SUM}" in line.split()
