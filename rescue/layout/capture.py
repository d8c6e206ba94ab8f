"""Read the disk layout of this host into the model (rescue.layout.model).

Sources, and why each:
- `lsblk --json --bytes` lists the disks (and sizes, sector sizes, model/serial/WWN if udev
  knows them). Without udev lsblk knows no file systems, so it is used for the tree only.
- `sfdisk --json DISK` is the partition table exactly as sfdisk will need it back at recovery.
- `blkid -p -o export` (the low-level probe) reads the signatures from the device itself, so it
  works without udev, in a rescue system or a container. A partition whose kernel node is missing
  or stale is probed through the disk at its offset (`-O`/`-S`).
- pyudev (optional: may be absent or have no udev database), then sysfs, fill in WWN, serial and
  model; /dev/disk/by-id gives the by-id names when udev made them.
- /proc/self/mountinfo (the richer form of /proc/mounts) and /proc/swaps say what is mounted.
  Mounts are matched by device number, which survives /dev/root and /dev/mapper vs /dev/dm-N.
- The fstab gives the options for each file system it names (UUID=, LABEL=, PARTUUID=,
  PARTLABEL=, /dev/disk/by-*/ or a device path).
- LVM (`pvs`/`vgs`/`lvs --reportformat json --units b`) only when blkid found a PV
  (LVM2_member) on a recorded device, and MD (`/proc/mdstat`, `mdadm --detail --export`) only
  when the kernel lists an array built from one. LUKS containers are recorded as present (blkid
  crypto_LUKS), and an open one's mapping is found through sysfs holders.
- btrfs subvolumes and the default subvolume (`btrfs subvolume list`, `get-default`) of every
  btrfs file system that is mounted (rescue.layout.btrfs).

What is proven where: the disks, partition tables, file systems, mounts, fstab matching and btrfs
subvolumes are tested on loop disks on the build host. The LVM report parsing is tested on real
lvm2 output from that host, including a live capture of a VG whose metadata was written without
device-mapper (LVs inactive). The host kernel has no device-mapper and no md, so the file system
of an active LV, MD arrays (`parse_mdstat`, `parse_mdadm_export`, only tested on text in the
documented formats) and open LUKS mappings are proven only in a QEMU guest (vm-tests), later.

All processes are started through rescue.process.execute.run. A missing tool raises
CommandNotFoundError, a failing probe LayoutError: a layout that was only partly read must never
pass for a whole one.

This module reads the disks and puts the layout together; each source has its own module:
kernel (mountinfo, swaps, sysfs), tools (running the probes), blkid, identity (udev, sysfs,
by-id), fstab, lvm, md and btrfs.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rescue.errors import CommandNotFoundError
from rescue.layout import LayoutError
from rescue.layout.blkid import filesystem_from_probe, probe
from rescue.layout.btrfs import capture_subvolumes
from rescue.layout.fstab import apply_fstab, parse_fstab
from rescue.layout.identity import fill_identity
from rescue.layout.kernel import (
    SYS_CLASS_BLOCK,
    MountTable,
    device_aliases,
    read_sys,
    read_text,
    sys_block,
)
from rescue.layout.lvm import capture_lvm
from rescue.layout.md import capture_raids
from rescue.layout.model import MBR_EXTENDED_TYPES, Disk, Layout, LuksContainer, Partition
from rescue.layout.tools import int_field, parse_json_output, run_probe_ok, text_field

log = logging.getLogger("rescue.layout")

LSBLK_COLUMNS = "NAME,KNAME,PATH,MAJ:MIN,TYPE,SIZE,LOG-SEC,PHY-SEC,MODEL,SERIAL,WWN,RM,RO,PKNAME"
# Kernel names of block devices that are never a server's disk, even when lsblk calls them "disk".
VIRTUAL_DISK_PREFIXES = ("ram", "zram", "sr", "fd")


# --- lsblk and sfdisk -----------------------------------------------------------------------


def lsblk(paths: Sequence[str] = ()) -> list[dict[str, Any]]:
    """lsblk's device tree: all devices, or just the given ones."""
    output = run_probe_ok(["lsblk", "--json", "--bytes", "--output", LSBLK_COLUMNS, *paths])
    return list(parse_json_output(output, "lsblk").get("blockdevices") or [])


@dataclass
class PartitionTable:
    """What `sfdisk --json` says about one disk."""

    label: str
    id: str | None
    sector_size: int | None
    first_lba: int | None
    last_lba: int | None
    partitions: list[dict[str, Any]]


def parse_sfdisk(data: dict[str, Any]) -> PartitionTable:
    """The partitiontable object of `sfdisk --json`."""
    table = data.get("partitiontable")
    if not isinstance(table, dict) or "label" not in table:
        raise LayoutError("sfdisk printed no partition table")
    return PartitionTable(
        label=table["label"],
        id=text_field(table.get("id")),
        sector_size=int_field(table.get("sectorsize")),
        first_lba=int_field(table.get("firstlba")),
        last_lba=int_field(table.get("lastlba")),
        partitions=list(table.get("partitions") or []),
    )


def _partition_number(node: str) -> int:
    """sfdisk names partitions disk + [p] + number, so the number is the trailing digits."""
    m = re.search(r"(\d+)$", node)
    if not m:
        raise LayoutError(f"cannot tell the partition number of {node}")
    return int(m.group(1))


def _node_matches(node: str, start: int, size: int, sector_size: int) -> bool:
    """Whether the kernel's partition node covers exactly this table entry (not a stale one)."""
    sys_dir = sys_block(node)
    if sys_dir is None or not (sys_dir / "partition").exists():
        return False
    k_start = read_sys(sys_dir / "start")
    k_size = read_sys(sys_dir / "size")
    scale = sector_size // 512  # the kernel counts 512-byte sectors
    return k_start == str(start * scale) and k_size == str(size * scale)


def _partitions(disk: Disk, table: PartitionTable) -> list[Partition]:
    parts = []
    for entry in table.partitions:
        node = entry.get("node") or ""
        number = _partition_number(node)
        start, size = int(entry["start"]), int(entry["size"])
        ptype = str(entry.get("type") or "")
        uuid = text_field(entry.get("uuid"))
        if uuid is None and table.label == "dos" and table.id:
            uuid = f"{int(table.id, 16):08x}-{number:02x}"  # the kernel's PARTUUID for MBR
        part = Partition(
            number=number,
            path=node,
            start_sector=start,
            size_sectors=size,
            type=ptype,
            uuid=uuid,
            name=text_field(entry.get("name")),
            attrs=text_field(entry.get("attrs")),
            bootable=bool(entry.get("bootable", False)),
        )
        if not (table.label == "dos" and ptype.lower() in MBR_EXTENDED_TYPES):
            sector = disk.logical_sector_size
            if _node_matches(node, start, size, sector):
                values = probe(node)
            else:
                log.info("%s: no current kernel node; probing %s at its offset", node, disk.path)
                values = probe(disk.path, offset=start * sector, size=size * sector)
            part.filesystem = filesystem_from_probe(values, node)
        parts.append(part)
    return parts


# --- LUKS -----------------------------------------------------------------------------------


def _crypt_mapping(device: str) -> str | None:
    """The device-mapper name a LUKS device is open as (a sysfs holder with a CRYPT- uuid)."""
    sys_dir = sys_block(device)
    if sys_dir is None:
        return None
    try:
        holders = sorted((sys_dir / "holders").iterdir())
    except OSError:
        return None
    for holder in holders:
        dm = SYS_CLASS_BLOCK / holder.name / "dm"
        if (read_sys(dm / "uuid") or "").startswith("CRYPT-"):
            return read_sys(dm / "name")
    return None


def _capture_luks(layout: Layout, mounts: MountTable) -> None:
    """Record every crypto_LUKS signature, and what is inside the open ones."""
    recorded = {luks.device for luks in layout.luks}
    for fs in list(layout.all_filesystems()):
        if fs.type != "crypto_LUKS" or fs.device in recorded:
            continue
        mapping = _crypt_mapping(fs.device)
        layout.luks.append(LuksContainer(fs.device, fs.uuid, fs.version, mapping))
        inner_path = layout.luks[-1].mapping_path
        if inner_path:
            inner = filesystem_from_probe(probe(inner_path), inner_path)
            if inner:
                inner.mountpoint = mounts.mountpoint(inner_path)
                layout.filesystems.append(inner)


# --- the disks ------------------------------------------------------------------------------


def _block_device(path: str) -> str:
    """The real /dev path of a block device given by any name; LayoutError if it is not one."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError as exc:
        raise LayoutError(f"{path}: {exc.strerror}") from exc
    if not stat.S_ISBLK(st.st_mode):
        raise LayoutError(f"{path} is not a block device")
    return real


def _is_real_disk(node: dict[str, Any]) -> bool:
    name = str(node.get("kname") or node.get("name") or "")
    return (
        node.get("type") == "disk"
        and not name.startswith(VIRTUAL_DISK_PREFIXES)
        and (int_field(node.get("size")) or 0) > 0
    )


def select_disks(devices: Sequence[str] | None) -> list[dict[str, Any]]:
    """lsblk nodes of the disks to record: every real disk, or exactly the ones given."""
    if devices is None:
        return [n for n in lsblk() if _is_real_disk(n)]
    paths = list(dict.fromkeys(_block_device(d) for d in devices))
    if not paths:
        return []
    by_path = {os.path.realpath(n.get("path") or f"/dev/{n.get('kname')}"): n for n in lsblk(paths)}
    nodes = []
    for path in paths:
        node = by_path.get(path)
        if node is None:
            raise LayoutError(f"lsblk does not list {path}")
        if node.get("type") not in ("disk", "loop"):
            raise LayoutError(f"{path} is a {node.get('type')}, not a whole disk")
        if not int_field(node.get("size")):
            raise LayoutError(f"{path} has size 0 (no medium, or a detached loop device)")
        nodes.append(node)
    return nodes


def _disk_from_node(node: dict[str, Any]) -> Disk:
    """A disk's identity and size from its lsblk node and udev/sysfs, without reading it."""
    name = str(node.get("kname") or node["name"])
    disk = Disk(
        name=name,
        path=str(node.get("path") or f"/dev/{name}"),
        size_bytes=int(node["size"]),
        logical_sector_size=int_field(node.get("log-sec")) or 512,
        physical_sector_size=int_field(node.get("phy-sec")) or 512,
        model=text_field(node.get("model")),
        serial=text_field(node.get("serial")),
        wwn=text_field(node.get("wwn")),
    )
    fill_identity(disk)
    return disk


def identify_disks(devices: list[str] | None = None) -> list[Disk]:
    """Every real disk (or the given ones) with size, model and stable ids; nothing is opened,
    so this works where a disk cannot be read."""
    return [_disk_from_node(node) for node in select_disks(devices)]


def _capture_disk(node: dict[str, Any], mounts: MountTable) -> Disk:
    disk = _disk_from_node(node)
    values = probe(disk.path)
    if values.get("PTTYPE"):
        table = parse_sfdisk(
            parse_json_output(run_probe_ok(["sfdisk", "--json", disk.path]), "sfdisk")
        )
        disk.table = table.label
        disk.table_id = table.id
        disk.first_lba = table.first_lba
        disk.last_lba = table.last_lba
        if table.sector_size:
            disk.logical_sector_size = table.sector_size
        disk.partitions = _partitions(disk, table)
        for part in disk.partitions:
            if part.filesystem:
                part.filesystem.mountpoint = mounts.mountpoint(part.path)
    disk.filesystem = filesystem_from_probe(values, disk.path)
    if disk.filesystem:
        disk.filesystem.mountpoint = mounts.mountpoint(disk.path)
    return disk


def capture(devices: list[str] | None = None, fstab: Path = Path("/etc/fstab")) -> Layout:
    """The layout of every real disk (devices=None) or of exactly the given disks.

    devices=None skips RAM, zram, CD-ROM, empty and loop devices; a loop device is recorded only
    when it is named. LVM, MD and LUKS are followed from the recorded disks. A missing fstab
    counts as empty.
    """
    mounts = MountTable.read()
    layout = Layout(disks=[_capture_disk(node, mounts) for node in select_disks(devices)])

    # Every device path on the recorded disks, for following the stacks built on them.
    ours: set[str] = set()
    names: set[str] = set()
    for disk in layout.disks:
        for path in [disk.path, *(p.path for p in disk.partitions)]:
            ours |= device_aliases(path)
            names.add(os.path.basename(os.path.realpath(path)))

    layout.raids = capture_raids(names, mounts)
    ours |= {a for raid in layout.raids for a in device_aliases(raid.path)}
    # LUKS on a disk, partition or array; then LVM on any of those or in an open mapping; then
    # LUKS in an LV.
    _capture_luks(layout, mounts)
    ours |= {a for luks in layout.luks if luks.mapping for a in device_aliases(luks.mapping_path)}
    if any(fs.type == "LVM2_member" for fs in layout.all_filesystems()):
        if shutil.which("pvs") is None:
            raise CommandNotFoundError(
                "pvs (lvm2) is not installed, but a recorded disk holds a PV"
            )
        layout.lvm = capture_lvm(ours, mounts)
    _capture_luks(layout, mounts)
    capture_subvolumes(layout)
    apply_fstab(layout, parse_fstab(read_text(fstab)))
    return layout
