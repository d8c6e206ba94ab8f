"""Bare-metal recovery of a UEFI system, proven by booting the result with OVMF.

This host's kernel cannot mount vfat, so the EFI system partition can be neither backed up nor
written here. The backup runs on the host (the ESP is not mounted, as on a machine whose ESP was
unmounted: its files come back from grub-install); the recovery runs inside the QEMU test guest
(testsupport/vm.py), with the real `rescue` from this project's virtualenv, onto a blank virtio
disk that the plan names by its serial. The recovered disk then boots under OVMF on the host until
its marker unit prints the hostname and the marker file's checksum.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from bootdisk import HOSTNAME, MARKER_SUM, boot_disk, source_image
from clirun import rescue
from loopdisks import attached_image, need, require_loop_disks, sh
from machine import OVMF_CODE
from scenario import TOOLS, populate, scenario_settings, write_plan
from vm import run_guest

pytestmark = pytest.mark.slow

SERIAL = "RESCUE-TGT-1"


def test_uefi_system_recovered_in_a_guest_boots_with_ovmf(tmp_path: Path) -> None:
    require_loop_disks(TOOLS)
    need("mdir", package="mtools")
    if not OVMF_CODE.exists():
        pytest.fail(f"missing {OVMF_CODE}: apt-get install ovmf")
    image = tmp_path / "source.img"
    sh("cp", "--sparse=always", str(source_image("uefi")), str(image))
    root = tmp_path / "src"
    root.mkdir()
    dest = {"method": "file", "path": str(tmp_path / "dest")}
    (tmp_path / "backup").mkdir()
    settings = scenario_settings(tmp_path / "backup/rescue.toml", dest, root, tmp_path / "cache")
    with attached_image(image) as (device, parts):
        sh("mount", parts[3], str(root))
        try:
            sh("mount", parts[1], str(root / "boot"))
            populate(root)
            run = rescue(settings, "backup", "--full")
            assert run.code == 0, run.err
            recorded = json.loads((root / "var/lib/rescue/manifest.json").read_text())
        finally:
            sh("umount", "-R", str(root))
    assert recorded["host"]["boot_mode"] == "uefi"
    assert recorded["bootloader"] == {"kind": "grub-efi", "disk": device}

    folder = tmp_path / "recover"
    folder.mkdir()
    guest_cache = Path("/var/tmp/rescue-cache")  # inside the guest
    recovery = scenario_settings(folder / "rescue.toml", dest, root, guest_cache)
    write_plan(folder, recovery, [f"serial:{SERIAL}"], target_root=Path("/mnt/target"))
    target = tmp_path / "target.img"
    sh("truncate", "-s", "1536M", str(target))
    guest = run_guest(
        "recover_uefi",
        [target],
        tmp_path / "guest.log",
        timeout=2400,
        serials=[SERIAL],
        work=tmp_path,
        memory_mib=1536,
    )
    stderr = (folder / "stderr.txt").read_text() if (folder / "stderr.txt").exists() else ""
    assert guest.results().get("recover") == "PASS", f"{guest.results()}\n{stderr[-3000:]}"
    report = json.loads((folder / "report.json").read_text())
    assert report["outcome"] == "success"
    boot = next(s for s in report["steps"] if s["id"] == "bootloader")
    assert any("--target=x86_64-efi" in line for line in boot["done"]), boot
    # The target is a virtio disk in the guest: the restored initramfs (MODULES=most) holds its
    # drivers, and the layout kept its UUIDs, so update-initramfs is not run (and it boots).
    kept = [line for line in boot["done"] if line.startswith("initramfs ")]
    assert len(kept) == 1 and kept[0].startswith("initramfs kept: "), boot
    assert "has the storage drivers virtio_blk, virtio_pci" in kept[0], kept

    with attached_image(target, read_only=True) as (_, parts):
        listing = subprocess.run(
            ["mdir", "-b", "-i", parts[0], "::/EFI/BOOT"], capture_output=True, text=True
        )
    assert "BOOTX64.EFI" in listing.stdout.upper(), listing.stdout + listing.stderr

    line = boot_disk(target, tmp_path / "console.log", firmware="uefi")
    assert f"host={HOSTNAME}" in line.split(), line
    assert f"sum={MARKER_SUM}" in line.split(), line
