"""Mounting and unmounting under a target root, idempotently (a resumed recovery mounts again
what may still be mounted from before the crash)."""

from __future__ import annotations

import os
from pathlib import Path

from rescue.errors import RecoveryStepError
from rescue.layout.kernel import PROC_MOUNTINFO, parse_mountinfo, read_text
from rescue.process.execute import run, run_checked


def mounted_at(path: Path) -> str | None:
    """The source of the file system mounted at path (the top one), or None."""
    real = os.path.realpath(path)
    found = None
    for mount in parse_mountinfo(read_text(PROC_MOUNTINFO)):
        if mount.mountpoint == real:
            found = mount.source
    return found


def mount_points() -> set[str]:
    """Every mount point of this system (bind mounts of single files too)."""
    return {m.mountpoint for m in parse_mountinfo(read_text(PROC_MOUNTINFO))}


def mounts_below(path: Path) -> list[str]:
    """Every mount point at or below path, deepest last (in mount order)."""
    real = os.path.realpath(path)
    return [
        m.mountpoint
        for m in parse_mountinfo(read_text(PROC_MOUNTINFO))
        if m.mountpoint == real or m.mountpoint.startswith(real.rstrip("/") + "/")
    ]


def _check(argv: list[str], what: str) -> None:
    run_checked(argv, what, RecoveryStepError)


def mount(device: str, point: Path, fstype: str | None = None, options: str = "") -> bool:
    """Mount device at point unless it is there already; True when this call mounted it."""
    point.mkdir(parents=True, exist_ok=True)
    current = mounted_at(point)
    if current is not None:
        if os.path.realpath(current) == os.path.realpath(device):
            return False
        raise RecoveryStepError(f"{point} already has {current} mounted, not {device}")
    argv = ["mount"]
    if fstype:
        argv += ["-t", fstype]
    if options:
        argv += ["-o", options]
    _check([*argv, device, str(point)], f"mounting {device} at {point}")
    return True


def bind(source: str, point: Path) -> bool:
    """Bind source at point (recursively, as a slave so unmounting stays local)."""
    point.mkdir(parents=True, exist_ok=True)
    if mounted_at(point) is not None:
        return False
    _check(["mount", "--rbind", source, str(point)], f"binding {source} at {point}")
    _check(["mount", "--make-rslave", str(point)], f"making {point} a slave mount")
    return True


def unmount_tree(path: Path) -> None:
    """Unmount everything at or below path, deepest first."""
    for point in reversed(mounts_below(path)):
        result = run(["umount", point], mask_output=False)
        if result.returncode:
            # A lazy unmount as the last resort, so a cleanup never leaves the tree half mounted.
            lazy = run(["umount", "-l", point], mask_output=False)
            if lazy.returncode:
                raise RecoveryStepError(f"cannot unmount {point}: {result.output.strip()}")


def filesystem_device(spec: str) -> str | None:
    """The device of a file system named `label:NAME` or `uuid:UUID`, or None if absent.

    blkid asks the disks themselves, so this works before (or without) udev's by-label links."""
    kind, _, value = spec.partition(":")
    flags = {"label": "-L", "uuid": "-U"}
    if kind not in flags or not value:
        raise RecoveryStepError(f"{spec!r}: name a file system as label:NAME or uuid:UUID")
    found = run(["blkid", flags[kind], value], mask_output=False)
    device = found.output.strip()
    return device if found.returncode == 0 and device.startswith("/dev/") else None
