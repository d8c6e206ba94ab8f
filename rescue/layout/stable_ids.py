"""Stable disk ids: how a plan names the disks it may erase (serial:X, wwn:X, by-id:NAME,
file:PATH).

Why a module of its own: kernel names (/dev/sdb) change between boots and between machines, so
a recovery plan written on one boot and run on another must name the disk itself; the plan's
writer and its reader resolve the same ids here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from rescue.errors import DiskMappingError
from rescue.layout.kernel import SYS_BLOCK
from rescue.layout.model import Disk


def loop_backing_file(disk: Disk) -> str | None:
    """The image file behind a loop device (its only stable id), or None."""
    try:
        text = (SYS_BLOCK / disk.name / "loop/backing_file").read_text().strip()
    except OSError:
        return None
    return text or None


def stable_ids(disk: Disk) -> list[str]:
    """Every stable name of a disk, as a plan writes it: serial:X, wwn:X, by-id:NAME, file:PATH.

    Why not /dev/sdb: kernel names change between boots and between machines; a plan that says
    which disk to erase must name the disk itself.
    """
    ids = []
    if disk.serial and disk.serial.strip():
        ids.append(f"serial:{disk.serial.strip()}")
    if disk.wwn:
        ids.append(f"wwn:{disk.wwn.lower()}")
    ids.extend(f"by-id:{name}" for name in disk.by_id if name)
    backing = loop_backing_file(disk)
    if backing:
        ids.append(f"file:{backing}")
    return ids


STABLE_ID_KINDS = ("serial", "wwn", "by-id", "file")


def _normal_id(ident: str) -> str:
    kind, _, value = ident.partition(":")
    if kind == "wwn":
        return f"wwn:{value.lower()}"
    if kind == "file":
        return f"file:{os.path.realpath(value)}"
    return ident


def resolve_stable_id(ident: str, disks: Sequence[Disk]) -> Disk:
    """The one disk a stable id names; DiskMappingError (listing what is there) otherwise."""
    kind, sep, value = ident.partition(":")
    if not sep or kind not in STABLE_ID_KINDS or not value:
        raise DiskMappingError(
            f"{ident!r} is not a stable disk id; write serial:X, wwn:X, by-id:NAME or file:PATH"
        )
    wanted = _normal_id(ident)
    found = [d for d in disks if wanted in {_normal_id(i) for i in stable_ids(d)}]
    if len(found) == 1:
        return found[0]
    present = "; ".join(f"{d.path}: {', '.join(stable_ids(d)) or 'no stable id'}" for d in disks)
    if not found:
        raise DiskMappingError(f"no disk here is {ident} (the disks: {present or 'none'})")
    raise DiskMappingError(f"{ident} names {len(found)} disks: {present}")
