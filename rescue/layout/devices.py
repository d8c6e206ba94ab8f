"""Where a recorded file system lives after recovery, and what the restored system mounts.

The layout records source device paths (/dev/vda2). After the layout is recreated on the mapped
targets, the same file system is on the target disk's partition of the same number (/dev/sdb2,
/dev/nvme0n1p2, /dev/loop3p2: the kernel adds a "p" after a name that ends in a digit). LVs,
arrays and LUKS mappings are recreated under their recorded names, so their paths stay.

Why not mount by UUID: the recreated file systems keep their UUIDs, and while the old disk is
still attached (a disk swap, a test) a UUID names two devices. The device path never does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from rescue.layout.fstab import fstab_target
from rescue.layout.model import Filesystem, Layout

# fstab types that are not on the recreated disks: nothing to mount from them at recovery.
NOT_ON_DISK = frozenset(
    {"swap", "none", "proc", "sysfs", "tmpfs", "devpts", "devtmpfs", "nfs", "nfs4", "cifs",
     "smb3", "fuse", "fuse.sshfs", "cgroup", "cgroup2", "securityfs", "efivarfs", "debugfs",
     "ramfs", "hugetlbfs", "mqueue", "overlay", "9p", "autofs"}
)  # fmt: skip


def partition_node(disk_path: str, number: int) -> str:
    """The kernel's name for partition number of disk_path (sdb2, nvme0n1p2, loop3p2)."""
    sep = "p" if os.path.basename(disk_path)[-1:].isdigit() else ""
    return f"{disk_path}{sep}{number}"


def target_device(layout: Layout, mapping: Mapping[str, str], fs: Filesystem) -> str:
    """The device that holds fs after the layout is recreated with mapping (source -> target)."""
    for disk in layout.disks:
        if disk.filesystem is fs and disk.path in mapping:
            return mapping[disk.path]
        for part in disk.partitions:
            if part.filesystem is fs and disk.path in mapping:
                return partition_node(mapping[disk.path], part.number)
    return fs.device


def recreated_path(layout: Layout, mapping: Mapping[str, str], device: str) -> str | None:
    """Where the source device path (a disk, a partition, an LV, an array) is after the layout
    is recreated with mapping; None for a disk or partition of a disk the mapping leaves out.
    Why by path: a LUKS container is recorded by the device it is on, not as a Filesystem."""
    for disk in layout.disks:
        target = mapping.get(disk.path)
        if device == disk.path:
            return target
        for part in disk.partitions:
            if device == part.path:
                return partition_node(target, part.number) if target else None
    return device


def unmapped_disk(layout: Layout, mapping: Mapping[str, str], fs: Filesystem) -> str | None:
    """The source disk that holds fs directly when the mapping leaves it out (a disk holding
    only excluded file systems), or None. Nothing on such a disk was recreated, and what is
    there now (the old disk, the backup) must not be mounted into the target."""
    if not mapping:
        return None
    for disk in layout.disks:
        if disk.filesystem is fs or any(p.filesystem is fs for p in disk.partitions):
            return None if disk.path in mapping else disk.path
    return None


@dataclass(frozen=True)
class MountEntry:
    """One file system to mount under the target root: device, mount point (absolute in the
    restored system), type and the options that matter for finding it (btrfs subvolumes)."""

    device: str
    mountpoint: str
    fstype: str
    options: str = ""
    uuid: str | None = None


def _relative(mountpoint: str, root: str) -> str | None:
    try:
        rel = PurePosixPath(mountpoint).relative_to(root)
    except ValueError:
        return None
    return "/" + str(rel) if str(rel) != "." else "/"


def _keep_options(options: str | None) -> str:
    kept = [o for o in (options or "").split(",") if o.startswith(("subvol=", "subvolid="))]
    return ",".join(kept)


def mount_entries(
    layout: Layout, mapping: Mapping[str, str], root: str
) -> tuple[list[MountEntry], list[str]]:
    """The file systems the restored system mounts, parents first, and notes on what is not
    mounted (network file systems, entries that name no recorded disk).

    The restored system's fstab (recorded in the layout) decides. Without one, the mount points
    recorded at capture time are used, relative to the backed-up root.
    """
    entries: list[MountEntry] = []
    notes: list[str] = []
    if layout.fstab:
        for line in layout.fstab:
            if line.type in NOT_ON_DISK or "bind" in line.options.split(","):
                continue
            if not line.mountpoint.startswith("/"):
                continue
            fs = fstab_target(layout, line.spec)
            if fs is None:
                notes.append(f"{line.spec} ({line.mountpoint}) is on no recreated disk")
                continue
            left = unmapped_disk(layout, mapping, fs)
            if left:
                notes.append(f"{line.spec} ({line.mountpoint}) is on {left}, left as it is")
                continue
            entries.append(
                MountEntry(
                    target_device(layout, mapping, fs),
                    line.mountpoint,
                    fs.type,
                    _keep_options(line.options),
                    fs.uuid,
                )
            )
    else:
        for fs in layout.all_filesystems():
            point = _relative(fs.mountpoint, root) if fs.mountpoint else None
            if point is None or fs.type in NOT_ON_DISK or unmapped_disk(layout, mapping, fs):
                continue
            entries.append(
                MountEntry(target_device(layout, mapping, fs), point, fs.type, "", fs.uuid)
            )
    entries.sort(key=lambda e: (len(PurePosixPath(e.mountpoint).parts), e.mountpoint))
    if not any(e.mountpoint == "/" for e in entries):
        notes.append("no file system of the layout is mounted at /")
    return entries, notes
