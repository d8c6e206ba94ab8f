"""What on this machine must not be overwritten: the disks that are mounted, active swap, in use
by a stacked device, hold the running system or the backup.

Why a module of its own: the disk mapping's rules (rescue.layout.mapping) are pure and take this
state as a value, which tests build by hand; only read_system_state() looks at /proc and /sys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rescue.layout.kernel import (
    PROC_MOUNTINFO,
    PROC_SWAPS,
    SYS_BLOCK,
    SYS_CLASS_BLOCK,
    SYS_DEV_BLOCK,
    Mount,
    disks_holding,
    mount_device,
    parse_mountinfo,
    rdev,
    read_text,
    unescape_octal,
    whole_disks,
)

# Where live-boot mounts the medium it booted from (Debian 12; older live-boot).
LIVE_MEDIA_MOUNTS = ("/run/live/medium", "/lib/live/mount/medium")


@dataclass
class SystemState:
    """What on this machine must not be overwritten, keyed by whole-disk path (/dev/NAME).

    mounted: the mount points of file systems on the disk, "[SWAP]" for active swap.
    in_use: the stacked devices (dm or md names) that hold the disk or one of its partitions.
    running: what of the running system the disk holds ("/" or "the rescue media at ...").
    backup: the protected path (the backup) that lives on the disk.
    """

    mounted: Mapping[str, Sequence[str]] = field(default_factory=dict)
    in_use: Mapping[str, Sequence[str]] = field(default_factory=dict)
    running: Mapping[str, str] = field(default_factory=dict)
    backup: Mapping[str, str] = field(default_factory=dict)


def _mount_disks(mount: Mount) -> list[str]:
    """The whole disks (/dev/NAME) under one mount; none for tmpfs, overlay, nfs and the like."""
    dev = mount_device(mount)
    if dev is None:
        return []
    return [f"/dev/{name}" for name in whole_disks(SYS_DEV_BLOCK / f"{dev[0]}:{dev[1]}")]


def _device_disks(path: str) -> list[str]:
    """The whole disks under a block device node (a swap partition, say)."""
    dev = rdev(path)
    if dev is None:
        return []
    return [f"/dev/{name}" for name in whole_disks(SYS_DEV_BLOCK / f"{dev[0]}:{dev[1]}")]


def _holder_names(sys_dir: Path) -> list[str]:
    """The devices stacked on a block device: dm names (vg-root, cryptroot) or md names."""
    try:
        holders = sorted(p.name for p in (sys_dir / "holders").iterdir())
    except OSError:
        return []
    names = []
    for holder in holders:
        dm_name = read_text(SYS_CLASS_BLOCK / holder / "dm" / "name").strip()
        names.append(dm_name or holder)
    return names


def read_in_use(sys_block: Path = SYS_BLOCK) -> dict[str, list[str]]:
    """Whole disks that something is stacked on (an open LUKS, an active VG, an MD array).

    Such a disk may be mounted through the stack -- that shows as mounted -- but even an
    unmounted active LV or array would be corrupted under the running kernel's feet.
    """
    in_use: dict[str, list[str]] = {}
    try:
        disks = sorted(sys_block.iterdir())
    except OSError:
        return in_use
    for disk in disks:
        names = _holder_names(disk)
        for part in sorted(disk.glob(f"{disk.name}*")):
            if (part / "partition").exists():
                names += _holder_names(part)
        if names:
            in_use[f"/dev/{disk.name}"] = names
    return in_use


def backup_disks(protected: Iterable[Path | str]) -> dict[str, str]:
    """{disk: protected path} for every disk a protected path (a file:// destination) lives on."""
    backup: dict[str, str] = {}
    for item in protected:
        text = str(item)
        if text.startswith("file://"):
            text = text[len("file://") :]
        if not text:
            continue
        for disk in disks_holding(Path(text)):
            backup.setdefault(disk, text)
    return backup


def read_system_state(protected: Iterable[Path | str] = ()) -> SystemState:
    """The mounts, swaps, stacked devices, running system and backup of this machine.

    The running system is the disk of the file system mounted at / itself (not of everything
    mounted below it, which counts as mounted) plus the medium live-boot booted from.
    """
    mounts = parse_mountinfo(read_text(PROC_MOUNTINFO))
    mounted: dict[str, list[str]] = {}
    for mount in mounts:
        for disk in _mount_disks(mount):
            points = mounted.setdefault(disk, [])
            if mount.mountpoint not in points:
                points.append(mount.mountpoint)
    for line in read_text(PROC_SWAPS).splitlines()[1:]:
        fields = line.split()
        for disk in _device_disks(unescape_octal(fields[0])) if fields else []:
            points = mounted.setdefault(disk, [])
            if "[SWAP]" not in points:
                points.append("[SWAP]")
    running: dict[str, str] = {}
    for point in ("/", *LIVE_MEDIA_MOUNTS):
        # The last mount at a point is the one on top (it hides the others).
        top = next((m for m in reversed(mounts) if m.mountpoint == point), None)
        what = "/" if point == "/" else f"the rescue media at {point}"
        for disk in _mount_disks(top) if top else []:
            running.setdefault(disk, what)
    return SystemState(
        mounted=mounted,
        in_use=read_in_use(),
        running=running,
        backup=backup_disks(protected),
    )
