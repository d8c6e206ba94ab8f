"""Which target takes which source disk, whether its table fits, and what grows on a larger one:
checked before a line of the script is written, so a too-small target, another sector size or a
bad grow_lv setting is refused up front."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from rescue.errors import DiskMappingError
from rescue.layout import LayoutError
from rescue.layout.model import MBR_EXTENDED_TYPES, Disk, Partition
from rescue.units import human_size

SYS_CLASS_BLOCK = Path("/sys/class/block")
# sfdisk aligns the end of a partition written without a size down to this grain.
GRAIN_BYTES = 1024**2

# What the grow_lv setting takes: which LV of a VG takes the VG's free space after recreation.
GROW_LV_NONE = "none"  # every LV keeps its recorded size; the free space stays in the VG
GROW_LV_LAST = "last"  # in each VG, the last LV (recorded order) that does not hold swap
GROW_LV_HELP = (
    "Which LV takes its VG's free space (a larger disk's new room): none (it stays free), "
    "last (each VG's last non-swap LV) or VG/LV."
)
# An LVM name: letters, digits and + _ . -, not starting with a hyphen.
_LVM_NAME = r"[A-Za-z0-9+_.][A-Za-z0-9+_.-]*"


def grow_lv_problem(value: object) -> str | None:
    """Why value is not a grow_lv setting, or None if it is one. Only its form is checked
    here, where it is given; whether the layout has that LV is checked when the script is
    built (rescue.layout.recreate.md_luks_lvm.check_grow_lv)."""
    if value in (GROW_LV_NONE, GROW_LV_LAST):
        return None
    if isinstance(value, str) and re.fullmatch(f"{_LVM_NAME}/{_LVM_NAME}", value):
        return None
    return f'must be "none", "last" or VG/LV (e.g. "vg0/root"), not {value!r}'


def probe_target(path: str) -> Disk:
    """A target disk's size and logical sector size from sysfs (no process needed).

    Why sysfs: the script is built before anything is written, and the target may be blank, so
    there is nothing to capture but its size.
    """
    real = os.path.realpath(path)
    name = os.path.basename(real)
    sys_dir = SYS_CLASS_BLOCK / name
    try:
        sectors = int((sys_dir / "size").read_text())
        sector_size = int((sys_dir / "queue" / "logical_block_size").read_text())
    except (OSError, ValueError) as exc:
        raise DiskMappingError(f"target {path} is not a whole block device") from exc
    if (sys_dir / "partition").exists():
        raise DiskMappingError(f"target {path} is a partition, not a whole disk")
    return Disk(name=name, path=path, size_bytes=sectors * 512, logical_sector_size=sector_size)


def _gpt_last_usable(size_bytes: int, sector_size: int) -> int:
    """The last usable sector of a new GPT with 128 entries: the backup header and its entry
    array (16 KiB) sit after it."""
    total = size_bytes // sector_size
    entry_sectors = -(-128 * 128 // sector_size)
    return total - 2 - entry_sectors


def _last_usable(target: Disk, table: str) -> int:
    """The last sector a partition of a new table of that kind may use on target."""
    sector = target.logical_sector_size
    if table == "gpt":
        return _gpt_last_usable(target.size_bytes, sector)
    return target.size_bytes // sector - 1


@dataclass
class DiskPlan:
    """One source disk, its target and the shell names the script gives them."""

    var: str
    source: Disk
    target: Disk
    grown: set[int] = field(default_factory=set)  # numbers of partitions written without size

    def part_var(self, part: Partition) -> str:
        return f"{self.var}P{part.number}"

    def growth_bytes(self, part: Partition) -> int:
        """About how many bytes part gains on the target: for a grown partition its end moves
        to the last usable sector, aligned down to sfdisk's grain; 0 for any other."""
        if part.number not in self.grown:
            return 0
        sector = self.target.logical_sector_size
        end = _last_usable(self.target, self.source.table or "") + 1
        end -= end % max(GRAIN_BYTES // sector, 1)
        return max(end - part.start_sector - part.size_sectors, 0) * sector


def is_extended(disk: Disk, part: Partition) -> bool:
    return disk.table == "dos" and part.type.lower() in MBR_EXTENDED_TYPES


def _grown_partitions(disk: Disk) -> set[int]:
    """The numbers of the partitions that end last on the disk (for MBR that can be a logical
    partition and its extended container): those take the rest of a larger target."""
    if not disk.partitions:
        return set()
    last_end = max(p.start_sector + p.size_sectors for p in disk.partitions)
    return {p.number for p in disk.partitions if p.start_sector + p.size_sectors == last_end}


def plan_disk(var: str, source: Disk, target: Disk, grow: bool) -> DiskPlan:
    """Check that the source's table fits the target and decide what grows."""
    plan = DiskPlan(var, source, target)
    if source.table is None:
        if target.size_bytes < source.size_bytes and source.filesystem is not None:
            raise DiskMappingError(
                f"target {target.path} ({human_size(target.size_bytes)}) is smaller than "
                f"{source.path} ({human_size(source.size_bytes)}), whose file system fills it"
            )
        return plan
    if source.table not in ("gpt", "dos"):
        raise LayoutError(f"{source.path}: a {source.table!r} partition table cannot be recreated")
    if target.logical_sector_size != source.logical_sector_size:
        raise DiskMappingError(
            f"target {target.path} has {target.logical_sector_size}-byte sectors, but "
            f"{source.path} had {source.logical_sector_size}-byte sectors; the partition table "
            "cannot be copied sector for sector"
        )
    if grow and target.size_bytes > source.size_bytes:
        plan.grown = _grown_partitions(source)
    last_usable = _last_usable(target, source.table)
    for part in source.partitions:
        end = part.start_sector + part.size_sectors - 1
        if part.number in plan.grown:
            end = part.start_sector
        if end > last_usable:
            raise DiskMappingError(
                f"target {target.path} ({human_size(target.size_bytes)}) is too small for "
                f"{source.path} ({human_size(source.size_bytes)}): partition {part.number} ends "
                f"at sector {end}, the target's last usable sector is {last_usable}"
            )
    return plan
