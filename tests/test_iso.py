"""The rescue ISO: built (or reused) by image/build, carrying the rescue layer, booting.

The boot runs the real ISO in QEMU (TCG, no network) from the CD-ROM, through isolinux, and waits
on the serial console for the line rescue-console.service prints once rescue runs in the guest.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from rescue import __version__

PROJECT = Path(__file__).resolve().parent.parent
BUILD = PROJECT / "image" / "build"
BOOT_TIMEOUT = 600
FATAL = ("Kernel panic", "Dropping to a shell", "Gave up waiting")
TOOLS = {"lb": "live-build", "xorriso": "xorriso", "qemu-system-x86_64": "qemu-system-x86"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def iso() -> Path:
    """The ISO path from image/build, which reuses its cache when nothing changed."""
    if os.geteuid() != 0:
        pytest.skip("building the ISO needs root (lb build, chroot, mounts)")
    missing = [package for tool, package in TOOLS.items() if shutil.which(tool) is None]
    if shutil.which("mksquashfs") is None:
        missing.append("squashfs-tools")
    if missing:
        pytest.skip(f"needs the packages {' '.join(missing)}")
    out = subprocess.run(
        [str(PROJECT / ".venv/bin/python"), str(BUILD), "--print-path"],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    path = Path(out.stdout.strip().splitlines()[-1])
    assert path.is_file(), out.stdout
    return path


def test_iso_carries_the_rescue_layer(iso: Path, tmp_path: Path) -> None:
    """The layer must sit next to filesystem.squashfs, or live-boot would not stack it."""
    live = tmp_path / "live"
    subprocess.run(
        ["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", "/live", str(live)],
        check=True,
        capture_output=True,
    )
    names = {path.name for path in live.iterdir()}
    assert {"filesystem.squashfs", "rescue.squashfs", "vmlinuz", "initrd.img"} <= names, names
    listing = subprocess.run(
        ["unsquashfs", "-l", str(live / "rescue.squashfs")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for path in (
        "/opt/rescue/venv/bin/rescue",
        "/usr/local/bin/rescue",
        "/etc/systemd/system/rescue-console.service",
        "/etc/systemd/system/multi-user.target.wants/rescue-console.service",
    ):
        assert f"squashfs-root{path}\n" in listing, path


def test_iso_boots_to_the_rescue_marker(iso: Path, tmp_path: Path) -> None:
    """BIOS boot from the CD to the marker, whose version is this tree's rescue."""
    log = tmp_path / "console.log"
    argv = [
        "qemu-system-x86_64",
        "-accel", "tcg",
        "-smp", "2",
        "-m", "2048",
        "-cdrom", str(iso),
        "-boot", "d",
        "-nographic",
        "-nic", "none",
        "-no-reboot",
    ]  # fmt: skip
    start = time.monotonic()
    marker = None
    with log.open("wb") as console:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console, stderr=console)
        try:
            while marker is None:
                text = log.read_text(errors="replace")
                marker = re.search(r"RESCUE-ISO-READY version=(.*)", text)
                if marker:
                    break
                fatal = [word for word in FATAL if word in text]
                assert not fatal, f"boot failed ({fatal[0]}); console:\n{text[-3000:]}"
                assert proc.poll() is None, f"QEMU exited; console:\n{text[-3000:]}"
                elapsed = time.monotonic() - start
                assert elapsed < BOOT_TIMEOUT, f"no marker after {elapsed:.0f} s:\n{text[-3000:]}"
                time.sleep(2)
        finally:
            proc.kill()
            proc.wait()
    print(f"boot to marker: {time.monotonic() - start:.0f} s (console log {log})")
    assert re.search(rf"\b{re.escape(__version__)}\b", marker.group(1)), marker.group(0)
