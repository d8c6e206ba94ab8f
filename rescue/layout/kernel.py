"""What the running kernel says about block devices and mounts: /proc/self/mountinfo,
/proc/swaps and sysfs.

Why a module of its own: the capture, the disk mapping (what must not be overwritten) and the
recovery's mounts all read the same files, the same way. Mounts are matched by device number,
which survives /dev/root and /dev/mapper vs /dev/dm-N.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

PROC_MOUNTINFO = Path("/proc/self/mountinfo")
PROC_SWAPS = Path("/proc/swaps")
SYS_CLASS_BLOCK = Path("/sys/class/block")
SYS_DEV_BLOCK = Path("/sys/dev/block")
SYS_BLOCK = Path("/sys/block")


# --- small readers --------------------------------------------------------------------------


def read_text(path: Path) -> str:
    """A kernel file's text; a file that is not there (no swap, no md) reads as empty."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def read_sys(path: Path) -> str | None:
    """A sysfs attribute, trimmed; None if it is missing, unreadable or empty."""
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


# --- device nodes and sysfs ----------------------------------------------------------------


def rdev(path: str) -> tuple[int, int] | None:
    """The (major, minor) of a block device node, or None if path is not one."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        return None
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def sys_block(path: str) -> Path | None:
    """The sysfs directory of a block device node, or None if it is not one."""
    dev = rdev(path)
    if dev is None:
        return None
    sys_dir = SYS_DEV_BLOCK / f"{dev[0]}:{dev[1]}"
    return sys_dir.resolve() if sys_dir.exists() else None


def device_aliases(path: str | None) -> set[str]:
    """The names a device path may be given by: itself and the node it resolves to."""
    if not path:
        return set()
    return {path, os.path.realpath(path)}


# --- mounts -------------------------------------------------------------------------------


def unescape_octal(text: str) -> str:
    r"""The kernel and fstab escape space, tab, newline and backslash as \040, \011, ..."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


@dataclass
class Mount:
    """One line of /proc/self/mountinfo."""

    major: int
    minor: int
    root: str
    mountpoint: str
    fstype: str
    source: str


def parse_mountinfo(text: str) -> list[Mount]:
    """/proc/self/mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - TYPE SOURCE."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        dash = fields.index("-", 6)
        major, _, minor = fields[2].partition(":")
        mounts.append(
            Mount(
                major=int(major),
                minor=int(minor),
                root=unescape_octal(fields[3]),
                mountpoint=unescape_octal(fields[4]),
                fstype=fields[dash + 1],
                source=unescape_octal(fields[dash + 2]) if len(fields) > dash + 2 else "",
            )
        )
    return mounts


def mount_device(mount: Mount) -> tuple[int, int] | None:
    """The block device of a mount; btrfs shows an anonymous 0:N, so its source path is used."""
    if mount.major != 0:
        return mount.major, mount.minor
    return rdev(mount.source) if mount.source.startswith("/dev/") else None


class MountTable:
    """Where each block device is mounted now, by device number."""

    def __init__(self, mountinfo: str, swaps: str) -> None:
        self.by_dev: dict[tuple[int, int], list[str]] = {}
        # A mount of the file system's own root first (a btrfs subvolume or bind mount later).
        for mount in sorted(parse_mountinfo(mountinfo), key=lambda m: m.root != "/"):
            dev = mount_device(mount)
            if dev:
                self.by_dev.setdefault(dev, []).append(mount.mountpoint)
        for line in swaps.splitlines()[1:]:
            fields = line.split()
            if fields and fields[1:2] == ["partition"]:
                dev = rdev(unescape_octal(fields[0]))
                if dev:
                    self.by_dev.setdefault(dev, []).append("[SWAP]")

    @classmethod
    def read(cls) -> MountTable:
        return cls(read_text(PROC_MOUNTINFO), read_text(PROC_SWAPS))

    def mountpoint(self, device: str) -> str | None:
        dev = rdev(device)
        points = self.by_dev.get(dev, []) if dev else []
        return points[0] if points else None


def disks_holding(root: Path) -> list[str]:
    """The whole disks under the file systems mounted at or below root (for a partial backup).

    Follows partitions to their disk and device-mapper/MD devices to their slaves through sysfs.
    A root on tmpfs, overlay or a network file system holds no disk: the list is then empty.
    """
    real = os.path.realpath(root)
    mounts = parse_mountinfo(read_text(PROC_MOUNTINFO))

    def under(path: str, top: str) -> bool:
        return path == top or path.startswith(top.rstrip("/") + "/")

    # The last of equally long mount points is the one on top (mounted over the others).
    containing = max(
        reversed([m for m in mounts if under(real, m.mountpoint)]),
        key=lambda m: len(m.mountpoint),
        default=None,
    )
    chosen = [
        m for m in mounts if m is containing or (m.mountpoint != real and under(m.mountpoint, real))
    ]
    disks: list[str] = []
    for mount in chosen:
        dev = mount_device(mount)
        if dev:
            for name in whole_disks(SYS_DEV_BLOCK / f"{dev[0]}:{dev[1]}"):
                if f"/dev/{name}" not in disks:
                    disks.append(f"/dev/{name}")
    return disks


def whole_disks(sys_path: Path) -> list[str]:
    """Kernel names of the whole disks under a sysfs block device."""
    try:
        sys_dir = sys_path.resolve(strict=True)
    except OSError:
        return []
    slaves = sorted((sys_dir / "slaves").glob("*"))
    if slaves:
        return [d for s in slaves for d in whole_disks(SYS_CLASS_BLOCK / s.name)]
    if (sys_dir / "partition").exists():
        return [sys_dir.parent.name]
    return [sys_dir.name]
