"""Proof that the cached source disks of testsupport/bootdisk.py really boot by themselves.

Why: every boot-after-recovery test trusts these images; if one cannot boot untouched, a failed
recovery boot would say nothing about the recovery. The UEFI image's ESP is empty by design (the
recovery under test installs GRUB there), so its test first makes the ESP bootable by hand,
without mounting vfat (the host cannot): a standalone GRUB built in the image's own chroot,
written to the removable path EFI/BOOT/BOOTX64.EFI with mtools. That proves OVMF, the image's
kernel, initramfs and fstab (with the vfat ESP mounted at /boot/efi) boot to the marker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from bootdisk import (
    CHROOT_ENV,
    ESP_LABEL,
    GRUB_EFI_BOOT,
    GRUB_EFI_LIB,
    HOSTNAME,
    MARKER_PREFIX,
    MARKER_SUM,
    _chroot_binds,
    _mounted,
    boot_disk,
    source_image,
)
from loopdisks import attached_image, need, sh
from machine import OVMF_CODE, OVMF_VARS

pytestmark = pytest.mark.slow


def _require_vm_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("building the boot disk needs root (loop devices, chroot)")
    for tool in ("qemu-system-x86_64", "debootstrap"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup --with-test-tools)")


def _assert_marker(line: str) -> None:
    assert line.startswith(MARKER_PREFIX)
    assert f"host={HOSTNAME}" in line.split()
    assert f"sum={MARKER_SUM}" in line.split()


def test_source_image_boots_to_its_marker(tmp_path: Path) -> None:
    _require_vm_tools()
    disk = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(source_image()), str(disk)], check=True)
    line = boot_disk(disk, tmp_path / "console.log")
    _assert_marker(line)


def test_uefi_source_image_boots_once_its_esp_has_a_loader(tmp_path: Path) -> None:
    _require_vm_tools()
    for path in (OVMF_CODE, OVMF_VARS):
        if not path.exists():
            pytest.skip(f"{path} is missing (apt-get install ovmf)")
    need("mdir", "mmd", "mcopy", package="mtools")
    need("blkid", package="util-linux")
    disk = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(source_image("uefi")), str(disk)], check=True)
    mtools = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    with attached_image(disk) as (_device, parts):
        esp, boot, _swap, root = parts
        assert sh("blkid", "-s", "TYPE", "-o", "value", esp).strip() == "vfat"
        assert sh("blkid", "-s", "LABEL", "-o", "value", esp).strip() == ESP_LABEL
        esp_uuid = sh("blkid", "-s", "UUID", "-o", "value", esp).strip()
        boot_uuid = sh("blkid", "-s", "UUID", "-o", "value", boot).strip()
        listing = subprocess.run(
            ["mdir", "-i", esp, "-b", "::/"], env=mtools, capture_output=True, text=True
        )
        assert listing.stdout.strip() == "", "the source image's ESP must be empty"
        mnt = tmp_path / "mnt"
        mnt.mkdir()
        with _mounted(root, mnt), _mounted(boot, mnt / "boot"):
            # What the image promises a recovery: UEFI GRUB's modules, an ESP in fstab.
            assert (mnt / GRUB_EFI_LIB / "normal.mod").is_file()
            assert (mnt / GRUB_EFI_BOOT / "normal.mod").is_file()
            assert (mnt / GRUB_EFI_BOOT / "command.lst").is_file()
            assert (mnt / "boot/grub/grub.cfg").is_file()
            assert (mnt / "boot/efi").is_dir() and not any((mnt / "boot/efi").iterdir())
            assert f"UUID={esp_uuid}\t/boot/efi\tvfat\t" in (mnt / "etc/fstab").read_text()
            assert not (mnt / "usr/lib/grub/i386-pc").exists()
            # A standalone GRUB that finds /boot by UUID and runs the image's own grub.cfg,
            # loading modules from /boot/grub/x86_64-efi as an installed GRUB would.
            cfg = mnt / "tmp/rescue-esp.cfg"
            cfg.write_text(
                "insmod part_gpt\n"
                "insmod ext2\n"
                f"search --no-floppy --fs-uuid --set=root {boot_uuid}\n"
                "set prefix=($root)/grub\n"
                "configfile /grub/grub.cfg\n"
            )
            loader = mnt / "tmp/BOOTX64.EFI"
            try:
                with _chroot_binds(mnt):
                    subprocess.run(
                        [
                            "chroot", str(mnt), *CHROOT_ENV,
                            "grub-mkstandalone", "-O", "x86_64-efi", "-o", "/tmp/BOOTX64.EFI",
                            "boot/grub/grub.cfg=/tmp/rescue-esp.cfg",
                        ],
                        check=True,
                        capture_output=True,
                    )  # fmt: skip
                shutil.copyfile(loader, tmp_path / "BOOTX64.EFI")
            finally:
                cfg.unlink(missing_ok=True)
                loader.unlink(missing_ok=True)
        for argv in (
            ["mmd", "-i", esp, "::/EFI", "::/EFI/BOOT"],
            ["mcopy", "-i", esp, str(tmp_path / "BOOTX64.EFI"), "::/EFI/BOOT/BOOTX64.EFI"],
        ):
            subprocess.run(argv, env=mtools, check=True, capture_output=True)
        subprocess.run(["fsck.vfat", "-n", esp], check=True, capture_output=True)
    line = boot_disk(disk, tmp_path / "console.log", firmware="uefi")
    _assert_marker(line)
    console = (tmp_path / "console.log").read_text(errors="replace")
    assert "BdsDxe: starting Boot" in console  # OVMF, not SeaBIOS, started it
