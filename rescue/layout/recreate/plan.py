"""Which target takes which source disk, and whether its table fits: checked before a line of
the script is written, so a too-small target or other sector size is refused up front."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from rescue.errors import DiskMappingError
from rescue.layout import LayoutError
from rescue.layout.model import MBR_EXTENDED_TYPES, Disk, Partition
from rescue.units import human_size

SYS_CLASS_BLOCK = Path("/sys/class/block")


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


@dataclass
class DiskPlan:
    """One source disk, its target and the shell names the script gives them."""

    var: str
    source: Disk
    target: Disk
    grown: set[int] = field(default_factory=set)  # numbers of partitions written without size

    def part_var(self, part: Partition) -> str:
        return f"{self.var}P{part.number}"


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
    sector = target.logical_sector_size
    if source.table == "gpt":
        last_usable = _gpt_last_usable(target.size_bytes, sector)
    else:
        last_usable = target.size_bytes // sector - 1
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
