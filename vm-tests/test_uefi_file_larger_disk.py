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
from bootdisk import DISK_MIB, OVMF_CODE
from loopdisks import require_loop_disks, sh
from scenario import TOOLS
from scenario_vm import (
    Figures,
    assert_boots,
    assert_same_system,
    plan_disk,
    recover_from_iso,
    recovered_report,
)
from server import (
    BACKUP_LABEL,
    FILE_DESTINATION,
    backup_disk,
    backup_story,
    prepare_server,
    server_disk,
)

pytestmark = pytest.mark.slow
TARGET_MIB = DISK_MIB + 512


def _partitions(image: Path) -> list[dict[str, object]]:
    return json.loads(sh("sfdisk", "--json", str(image)))["partitiontable"]["partitions"]


def test_uefi_file_larger_disk(
    iso: Path, iso_kernel: tuple[Path, Path], accel: str, tmp_path: Path
) -> None:
    require_loop_disks(TOOLS)
    if not OVMF_CODE.exists():
        pytest.skip("needs OVMF (apt-get install ovmf)")
    figures = Figures()
    source = server_disk(tmp_path, "uefi")
    destination = FILE_DESTINATION
    boot = prepare_server(source, iso, destination, {}, tmp_path, excludes=("/backup",))
    backups = backup_disk(tmp_path)

    _, figures.seconds = backup_story(
        tmp_path, source, boot, firmware="uefi", accel=accel,
        backup_disk=backups,
    )  # fmt: skip

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
        extra_disks=[backups],
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
