"""The rescue ISO: built (or reused) by image/build, carrying the rescue layer, booting.

The boots run the real ISO in QEMU (TCG, no network) from the CD-ROM, through isolinux (BIOS) and
through GRUB (UEFI, with OVMF), with the VM driver of vm-tests/, and wait on the serial console for
the line rescue-console@ttyS0 prints once rescue runs in the guest, then for its menu.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from isoimage import iso_for_tests
from machine import OVMF_CODE, Disk, Machine

from rescue import __version__

BOOT_TIMEOUT = 600
# What a recovery may need, in the base: the list, by the files that provide it.
RESCUE_TOOLS = [
    "/usr/bin/gpg",
    "/usr/bin/ssh",
    "/usr/sbin/sshd",
    "/usr/sbin/parted",
    "/usr/sbin/sgdisk",
    "/usr/sbin/sfdisk",
    "/usr/sbin/lvm",
    "/usr/sbin/mdadm",
    "/usr/sbin/cryptsetup",
    "/usr/sbin/mkfs.ext4",
    "/usr/sbin/mkfs.xfs",
    "/usr/sbin/mkfs.vfat",
    "/usr/sbin/mkfs.btrfs",
    "/usr/sbin/grub-install",
    "/usr/lib/grub/i386-pc/boot.img",
    "/usr/lib/grub/x86_64-efi/normal.mod",
    "/usr/bin/efibootmgr",
    "/usr/bin/rsync",
    "/usr/sbin/dhclient",
    "/usr/lib/x86_64-linux-gnu/librsync.so.2",
]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def iso() -> Path:
    """The ISO path from image/build, which reuses its cache when nothing changed."""
    return iso_for_tests()


def _listing(squashfs: Path) -> str:
    """Every path in a squashfs, one per line, as `unsquashfs -l` prints them."""
    listed = subprocess.run(["unsquashfs", "-l", str(squashfs)], check=True, capture_output=True)
    return listed.stdout.decode()


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
    listing = _listing(live / "rescue.squashfs")
    for path in (
        "/opt/rescue/venv/bin/rescue",
        "/usr/local/bin/rescue",
        "/etc/systemd/system/rescue-console@.service",
        "/etc/systemd/system/multi-user.target.wants/rescue-console@tty1.service",
        "/etc/systemd/system/multi-user.target.wants/rescue-console@ttyS0.service",
        "/etc/systemd/system/serial-getty@ttyS0.service",
    ):
        assert f"squashfs-root{path}\n" in listing, path
    base = _listing(live / "filesystem.squashfs")
    missing = [tool for tool in RESCUE_TOOLS if f"squashfs-root{tool}\n" not in base]
    assert missing == [], f"the ISO lacks {missing}"
    # Generic: no SSH host keys (each boot makes its own), no rescue settings.
    assert "squashfs-root/etc/ssh/ssh_host_" not in base
    assert "squashfs-root/etc/rescue/" not in base + listing


@pytest.mark.parametrize(("firmware", "medium"), [("bios", "cd"), ("uefi", "cd"), ("bios", "usb")])
def test_iso_boots_to_the_rescue_console(
    iso: Path, tmp_path: Path, firmware: str, medium: str
) -> None:
    """The hybrid ISO as an admin boots it: from a CD (isolinux on BIOS, GRUB on UEFI with
    OVMF) and written to a USB stick or disk (its MBR), to the console's marker, whose version
    is this tree's rescue, and to its menu."""
    if firmware == "uefi" and not OVMF_CODE.exists():
        pytest.skip("needs OVMF (apt-get install ovmf)")
    cdrom = iso if medium == "cd" else None
    disks = [] if medium == "cd" else [Disk(iso, snapshot=True, bootindex=0)]
    with Machine("iso", tmp_path, cdrom=cdrom, disks=disks, firmware=firmware, network=False) as vm:
        marker = vm.wait_for(r"RESCUE-ISO-READY version=([^\r\n]*)", BOOT_TIMEOUT)
        vm.wait_for(r"rescue> ", 120)
        print(f"{firmware} {medium}: boot to the menu: {vm.elapsed():.0f} s ({vm.console_log})")
    assert re.search(rf"\b{re.escape(__version__)}\b", marker[1]), marker[0]
