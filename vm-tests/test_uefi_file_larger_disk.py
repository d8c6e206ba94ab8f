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
from bootdisk import DISK_MIB
from loopdisks import require_loop_disks, sh
from machine import OVMF_CODE
from scenario import TOOLS
from scenario_vm import Figures, assert_recovered, plan_disk, recover_from_iso
from server import BACKUP_LABEL, FILE_DESTINATION, file_backed_server

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
    server = file_backed_server(tmp_path, iso, firmware="uefi", accel=accel)
    figures.seconds = server.seconds

    target = tmp_path / "target.img"
    sh("truncate", "-s", f"{TARGET_MIB}M", str(target))
    plan = plan_disk(tmp_path, FILE_DESTINATION, {}, mounts={"/backup": f"label:{BACKUP_LABEL}"})
    started = time.monotonic()
    recover_from_iso(
        tmp_path,
        iso,
        iso_kernel,
        target,
        plan,
        firmware="uefi",
        accel=accel,
        extra_disks=[server.backups],
        figures=figures,
    )
    # The last partition (/) took the larger disk's extra space.
    grown, original = _partitions(target)[-1], _partitions(server.disk)[-1]
    assert int(grown["size"]) - int(original["size"]) >= 500 * 2048, (grown, original)
    assert_recovered(server.disk, target, tmp_path, figures, started, firmware="uefi")
    print("\n".join(["uefi_file_larger_disk:", *figures.lines()]))
