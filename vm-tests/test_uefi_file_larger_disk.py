"""Scenario 2, uefi_file_larger_disk: the same story on UEFI firmware (OVMF), from a file
destination on a second virtual disk, onto a larger disk.

The source server (UEFI variant: an EFI system partition in its fstab, GRUB's x86_64-efi
modules) boots with OVMF, mounts its backup disk (ext4 labelled BACKUPS) and backs itself up
there, full then incremental. The ISO, also under OVMF, finds the plan on the RESCUEPLAN disk;
the plan's [mounts] mounts the backup disk read-only; the recovery grows the last partition onto
the larger disk, installs GRUB for UEFI (with a boot entry, and on the removable path) and
powers off. The recovered disk boots under OVMF with a fresh NVRAM, as on new hardware, and its
tree matches the source.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from bootdisk import DISK_MIB, OVMF_CODE, source_image
from loopdisks import require_loop_disks, sh
from machine import Disk, Machine
from scenario import TOOLS
from scenario_vm import (
    Figures,
    assert_boots,
    assert_same_system,
    plan_disk,
    recover_from_iso,
    recovered_report,
)
from server import CHANGE_IN_GUEST, SHELL_READY, SHELL_WORD, prepare_server

pytestmark = pytest.mark.slow
BACKUP_TIMEOUT = 1800
TARGET_MIB = DISK_MIB + 512
BACKUP_LABEL = "BACKUPS"


def _partitions(image: Path) -> list[dict[str, object]]:
    return json.loads(sh("sfdisk", "--json", str(image)))["partitiontable"]["partitions"]


def test_uefi_file_larger_disk(
    iso: Path, iso_kernel: tuple[Path, Path], accel: str, tmp_path: Path
) -> None:
    require_loop_disks(TOOLS)
    if not OVMF_CODE.exists():
        pytest.skip("needs OVMF (apt-get install ovmf)")
    figures = Figures()
    source = tmp_path / "server.img"
    sh("cp", "--sparse=always", str(source_image("uefi", server=True)), str(source))
    backups = tmp_path / "backups.img"
    sh("truncate", "-s", "2G", str(backups))
    sh("mkfs.ext4", "-q", "-F", "-L", BACKUP_LABEL, str(backups))
    destination: dict[str, object] = {"method": "file", "path": "/backup/rescue"}
    boot = prepare_server(source, iso, destination, {}, tmp_path, excludes=("/backup",))
    backup_disk = Disk(backups, serial=BACKUP_LABEL)

    append = boot.append(SHELL_WORD, "systemd.mask=serial-getty@ttyS0.service")
    with Machine(
        "source",
        tmp_path,
        disks=[Disk(source), backup_disk],
        kernel=(boot.kernel, boot.initrd, append),
        firmware="uefi",
        accel=accel,
    ) as vm:
        vm.wait_for(SHELL_READY, 600)
        vm.succeed(f"mkdir -p /backup && mount LABEL={BACKUP_LABEL} /backup", 60)
        vm.succeed("test -d /sys/firmware/efi", 30)  # the source really runs on UEFI
        started = time.monotonic()
        vm.succeed("rescue backup --full", BACKUP_TIMEOUT)
        figures.seconds["backup --full in the source VM"] = time.monotonic() - started
        time.sleep(1)
        vm.succeed(CHANGE_IN_GUEST, 60)
        started = time.monotonic()
        vm.succeed("rescue backup --incremental", BACKUP_TIMEOUT)
        figures.seconds["backup --incremental in the source VM"] = time.monotonic() - started
        vm.succeed("umount /backup && sync", 60)
        vm.send("systemctl poweroff\n")
        vm.wait_for_shutdown(300)

    target = tmp_path / "target.img"
    sh("truncate", "-s", f"{TARGET_MIB}M", str(target))
    plan = plan_disk(tmp_path, destination, {}, mounts={"/backup": f"label:{BACKUP_LABEL}"})
    started = time.monotonic()
    recover_from_iso(
        tmp_path,
        iso,
        iso_kernel,
        target,
        plan,
        firmware="uefi",
        accel=accel,
        extra_disks=[backup_disk],
        figures=figures,
    )
    report = recovered_report(target, tmp_path)
    assert report["restore_point"]["kind"] == "incremental", report["restore_point"]
    figures.steps = {s["id"]: s["seconds"] or 0.0 for s in report["steps"]}
    # The last partition (/) took the larger disk's extra space.
    grown, original = _partitions(target)[-1], _partitions(source)[-1]
    assert int(grown["size"]) - int(original["size"]) >= 500 * 2048, (grown, original)
    figures.seconds["recovered system boot to marker"] = assert_boots(
        target, tmp_path, firmware="uefi"
    )
    figures.seconds["ISO boot to recovered marker"] = time.monotonic() - started
    assert_same_system(source, target, tmp_path)
    print("\n".join(["uefi_file_larger_disk:", *figures.lines()]))
