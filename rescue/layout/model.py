"""The disk layout of a host as typed pydantic dataclasses that serialise to and from plain JSON.

Why strict pydantic dataclasses: the layout is written into the manifest at backup time and read
back by a possibly newer rescue on a blank machine, so the on-disk shape must be obvious and
stable, and a damaged manifest must fail loudly instead of recreating the wrong disks. Each class
refuses unknown keys and wrong types (no "1" for 1, no 1 for True), on construction and on
loading; they stay dataclasses (positional construction, equality, mutation as capture fills them
in). `layout_to_dict()` writes every field (None included; only a Filesystem's btrfs subvolume
fields are left out while empty, so that a layout without them is written as before they
existed); `layout_from_dict()` reads it back, and a round trip is exact:
`layout_from_dict(layout_to_dict(layout)) == layout`.

Where a file system lives (the one rule): a `Filesystem` is nested in the object that *is* the
block device it sits on -- `Disk.filesystem` (a signature on the whole disk),
`Partition.filesystem`, `LogicalVolume.filesystem` and `RaidArray.filesystem`. File systems on
block devices the model has no object for (the opened mapping of a LUKS container,
/dev/mapper/NAME, and other device-mapper devices) are listed in `Layout.filesystems`.
`Layout.all_filesystems()` walks all of them. blkid's "file system" types include the stacking
signatures (LVM2_member, linux_raid_member, crypto_LUKS): those are recorded as a `Filesystem`
too, so every device says what sits on it.

Sizes are bytes, except partition start and size, which are in the disk's logical sectors as
sfdisk prints them (`Disk.logical_sector_size`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import field
from typing import Any

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from rescue.layout import LayoutError

_STRICT = ConfigDict(strict=True, extra="forbid")


@dataclass(config=_STRICT)
class BtrfsSubvolume:
    """One btrfs subvolume, so that recovery can make it again before the restore fills it.

    `path` is relative to the file system's top level (id 5), as `subvol=` names it ("@",
    "@home", "@/var/lib/machines", "@snapshots/1"); `id` its subvolume id (what `subvolid=`
    names: recovery creates the subvolumes in id order to get the same ids back) and `parent_id`
    the id of the subvolume it sits in (5 for the top level). `readonly` is the subvolume's ro
    property. `snapshot` says it was made by `btrfs subvolume snapshot` (it has a parent UUID):
    a snapshot holds a copy of other data, so recovery does not make it again.
    """

    path: str
    id: int
    parent_id: int = 5
    readonly: bool = False
    snapshot: bool = False


@dataclass(config=_STRICT)
class Filesystem:
    """A signature found by blkid's low-level probe, and how the host uses it.

    `type` is blkid's TYPE (ext4, xfs, vfat, swap, btrfs, LVM2_member, linux_raid_member,
    crypto_LUKS, ...). `device` is the block device it was probed on at capture time. For vfat,
    `volume_id` is the volume serial as `mkfs.vfat -i` takes it (8 hex digits; blkid's UUID is
    the same number written as XXXX-XXXX). `uuid_sub` is blkid's UUID_SUB (the member's own
    UUID of a btrfs or MD member); `version` and `block_size` are blkid's VERSION (FAT32, 1.0,
    LVM2 001, 2 for LUKS2) and BLOCK_SIZE (the block size of ext*, the sector size of xfs).
    `mountpoint` is where it was mounted at capture time ("[SWAP]" for active swap);
    `fstab_options` the options of the host's fstab entry that names it.

    btrfs only: `subvolumes` are the file system's subvolumes (read from a mount of it at capture
    time; empty when it was not mounted, or has none) and `default_subvolume` the path of the
    one `btrfs subvolume set-default` chose (None: the top level, id 5). A btrfs file system on
    several devices has one Filesystem per device; each records the same subvolumes.
    """

    type: str
    device: str
    uuid: str | None = None
    uuid_sub: str | None = None
    label: str | None = None
    version: str | None = None
    block_size: int | None = None
    volume_id: str | None = None
    mountpoint: str | None = None
    fstab_options: str | None = None
    # Written only when set: a manifest without them is byte for byte what rescue wrote before
    # they existed, and an older rescue still reads it.
    subvolumes: list[BtrfsSubvolume] = Field(default_factory=list, exclude_if=lambda v: not v)
    default_subvolume: str | None = Field(default=None, exclude_if=lambda v: v is None)


@dataclass(config=_STRICT)
class Partition:
    """One entry of a partition table, as `sfdisk --json` prints it.

    `type` is a GPT type GUID or an MBR type code in sfdisk's spelling ("83", "5", "ef").
    `uuid` is the GPT partition GUID, or for MBR the PARTUUID the kernel derives
    (<disk id>-<number as 2 hex digits>), so fstab's PARTUUID= can be matched either way.
    `name` is the GPT partition name; `attrs` sfdisk's GPT attribute string; `bootable` the MBR
    active flag. start_sector and size_sectors are in the disk's logical sectors.
    """

    number: int
    path: str
    start_sector: int
    size_sectors: int
    type: str
    uuid: str | None = None
    name: str | None = None
    attrs: str | None = None
    bootable: bool = False
    filesystem: Filesystem | None = None


@dataclass(config=_STRICT)
class Disk:
    """A whole disk: identity (for mapping it to a new disk at recovery), table and partitions.

    `table` is sfdisk's label ("gpt" or "dos") or None for a disk without a partition table;
    `table_id` the disk GUID (GPT) or the MBR disk id ("0x5a3e1c2b"). `first_lba`/`last_lba` are
    the usable GPT range. `by_id` holds the names under /dev/disk/by-id (empty without udev).
    """

    name: str
    path: str
    size_bytes: int
    logical_sector_size: int = 512
    physical_sector_size: int = 512
    model: str | None = None
    serial: str | None = None
    wwn: str | None = None
    by_id: list[str] = field(default_factory=list)
    table: str | None = None
    table_id: str | None = None
    first_lba: int | None = None
    last_lba: int | None = None
    partitions: list[Partition] = field(default_factory=list)
    filesystem: Filesystem | None = None

    def partition_bytes(self, partition: Partition) -> int:
        """A partition's size in bytes (sfdisk counts in this disk's logical sectors)."""
        return partition.size_sectors * self.logical_sector_size


@dataclass(config=_STRICT)
class PhysicalVolume:
    """An LVM PV: the device it is on, its UUID (pvcreate --uuid) and its VG (None if orphan)."""

    device: str
    uuid: str
    vg: str | None = None
    size_bytes: int | None = None
    dev_size_bytes: int | None = None
    pe_start_bytes: int | None = None


@dataclass(config=_STRICT)
class VolumeGroup:
    """An LVM VG; the extent size is what vgcreate -s needs to fit the LVs again."""

    name: str
    uuid: str
    extent_size_bytes: int
    size_bytes: int | None = None
    free_bytes: int | None = None


@dataclass(config=_STRICT)
class LogicalVolume:
    """An LVM LV. `segtype` (linear, striped, raid1, thin-pool, ...) and `attr` are lvs's."""

    name: str
    vg: str
    uuid: str
    size_bytes: int
    path: str | None = None
    dm_path: str | None = None
    segtype: str | None = None
    stripes: int | None = None
    attr: str | None = None
    filesystem: Filesystem | None = None


@dataclass(config=_STRICT)
class LvmLayout:
    """The PVs, VGs and LVs that sit on the captured disks."""

    pvs: list[PhysicalVolume] = field(default_factory=list)
    vgs: list[VolumeGroup] = field(default_factory=list)
    lvs: list[LogicalVolume] = field(default_factory=list)


@dataclass(config=_STRICT)
class RaidArray:
    """An MD array. `devices` are the active members in role order, `spares` the rest.

    `name` is the kernel name (md0), `md_name` the name in the superblock (host:0),
    `devname` the /dev/md/ name if mdadm knows one; `uuid` is in mdadm's form (8:8:8:8 hex).
    """

    name: str
    path: str
    level: str | None
    uuid: str | None = None
    metadata: str | None = None
    md_name: str | None = None
    devname: str | None = None
    raid_devices: int | None = None
    devices: list[str] = field(default_factory=list)
    spares: list[str] = field(default_factory=list)
    size_bytes: int | None = None
    filesystem: Filesystem | None = None


@dataclass(config=_STRICT)
class LuksContainer:
    """A LUKS container, recorded as present only (no keys, no header): recovery must ask.

    `mapping` is the /dev/mapper name it was open as at capture time, if it was open; the file
    system inside an open mapping is in `Layout.filesystems`.
    """

    device: str
    uuid: str | None = None
    version: str | None = None
    mapping: str | None = None

    @property
    def mapping_path(self) -> str | None:
        """The open mapping's device, /dev/mapper/NAME."""
        return f"/dev/mapper/{self.mapping}" if self.mapping else None


@dataclass(config=_STRICT)
class FstabEntry:
    """One line of the host's fstab, its escapes (\\040) decoded."""

    spec: str
    mountpoint: str
    type: str
    options: str = "defaults"
    dump: int = 0
    passno: int = 0


@dataclass(config=_STRICT)
class Layout:
    """Everything recovery needs to recreate the disks. See the module docstring for the rule on
    where a file system is recorded."""

    disks: list[Disk] = field(default_factory=list)
    lvm: LvmLayout | None = None
    raids: list[RaidArray] = field(default_factory=list)
    luks: list[LuksContainer] = field(default_factory=list)
    filesystems: list[Filesystem] = field(default_factory=list)
    fstab: list[FstabEntry] = field(default_factory=list)

    def all_filesystems(self) -> Iterator[Filesystem]:
        """Every recorded file system, wherever the rule above put it."""
        for disk in self.disks:
            if disk.filesystem:
                yield disk.filesystem
            for part in disk.partitions:
                if part.filesystem:
                    yield part.filesystem
        for raid in self.raids:
            if raid.filesystem:
                yield raid.filesystem
        if self.lvm:
            for lv in self.lvm.lvs:
                if lv.filesystem:
                    yield lv.filesystem
        yield from self.filesystems


_LAYOUT: TypeAdapter[Layout] = TypeAdapter(Layout)


def layout_to_dict(layout: Layout) -> dict[str, Any]:
    """The layout as plain JSON data (for the manifest)."""
    data: dict[str, Any] = _LAYOUT.dump_python(layout, mode="json")
    return data


def layout_from_dict(data: Any) -> Layout:
    """A layout back from layout_to_dict() data; LayoutError if it is malformed.

    Validated as the JSON it comes from: strict JSON takes an object for each dataclass."""
    try:
        return _LAYOUT.validate_json(json.dumps(data))
    except ValidationError as exc:
        raise LayoutError(f"layout data: {describe_error(exc, 'Layout')}") from None


# pydantic's error types for a key no field takes: from a model, from a dataclass
UNKNOWN_KEY_ERRORS = ("extra_forbidden", "unexpected_keyword_argument")
_KINDS = {
    "int_type": "an integer",
    "string_type": "a string",
    "bool_type": "a bool",
    "float_type": "a number",
    "list_type": "a list",
    "dict_type": "an object",
    "dataclass_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def dotted(where: str, loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a path: Layout.disks[0].size_bytes."""
    text = where
    for part in loc:
        if part in ("True", "False"):  # the tag of a union told apart by a bool field
            continue
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def describe_error(exc: ValidationError, where: str) -> str:
    """pydantic's first error as one line: where it is (below where) and what is wrong."""
    errors = exc.errors()
    first = errors[0]
    loc, kind = tuple(first["loc"]), first["type"]
    if kind in UNKNOWN_KEY_ERRORS:
        parent = loc[:-1]
        keys = [
            str(e["loc"][-1])
            for e in errors
            if tuple(e["loc"][:-1]) == parent and e["type"] in UNKNOWN_KEY_ERRORS
        ]
        return f"unknown key(s) {', '.join(sorted(keys))} in {dotted(where, parent)}"
    if kind in ("missing", "missing_argument"):
        return f"{dotted(where, loc[:-1])} has no {loc[-1]}"
    if kind in _KINDS:
        return f"{dotted(where, loc)} must be {_KINDS[kind]}, not {first['input']!r}"
    return f"{dotted(where, loc)}: {first['msg']}"


# Names for the summary. Only the types a server's boot disk commonly has; others print as-is.
GPT_TYPE_NAMES = {
    "21686148-6449-6E6F-744E-656564454649": "BIOS boot",
    "C12A7328-F81F-11D2-BA4B-00A0C93EC93B": "EFI System",
    "0FC63DAF-8483-4772-8E79-3D69D8477DE4": "Linux filesystem",
    "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "Linux swap",
    "E6D6D379-F507-44C2-A23C-238F2A3DF928": "Linux LVM",
    "A19D880F-05FC-4D3B-A006-743F0F84911E": "Linux RAID",
    "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709": "Linux root (x86-64)",
    "BC13C2FF-59E6-4262-A352-B275FD6F7172": "Linux extended boot",
    "933AC7E1-2EB4-4F13-B844-0E14E2AEF915": "Linux home",
    "CA7D7CCB-63ED-4C53-861C-1742536059CC": "Linux LUKS",
    "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7": "Microsoft basic data",
}
MBR_TYPE_NAMES = {
    "5": "Extended",
    "f": "W95 Ext'd (LBA)",
    "85": "Linux extended",
    "7": "HPFS/NTFS/exFAT",
    "b": "W95 FAT32",
    "c": "W95 FAT32 (LBA)",
    "82": "Linux swap / Solaris",
    "83": "Linux",
    "8e": "Linux LVM",
    "ee": "GPT",
    "ef": "EFI (FAT-12/16/32)",
    "fd": "Linux raid autodetect",
}
# MBR types whose partition is a container of logical partitions, never a file system.
MBR_EXTENDED_TYPES = frozenset({"5", "f", "85"})


def partition_type_name(table: str | None, type_code: str) -> str:
    """A human name for a partition type, or the code itself if it is not a common one."""
    if table == "gpt":
        return GPT_TYPE_NAMES.get(type_code.upper(), type_code)
    return MBR_TYPE_NAMES.get(type_code.lower(), f"type {type_code}")
