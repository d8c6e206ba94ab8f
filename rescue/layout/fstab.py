"""The fstab: its entries, and which recorded file system each one names.

Why a module of its own: the capture records the fstab and each file system's options from it,
and recovery (rescue.layout.devices) finds the file systems it names the same way: by UUID=,
LABEL=, PARTUUID=, PARTLABEL=, /dev/disk/by-*/ or a device path.
"""

from __future__ import annotations

import os
import re

from rescue.layout.kernel import device_aliases, unescape_octal
from rescue.layout.model import Filesystem, FstabEntry, Layout


def parse_fstab(text: str) -> list[FstabEntry]:
    """fstab(5): spec, mount point, type, options, dump, pass; the last four may be missing."""
    entries = []
    for line in text.splitlines():
        fields = [] if line.lstrip().startswith("#") else line.split()
        if len(fields) < 2:
            continue
        entries.append(
            FstabEntry(
                spec=unescape_octal(fields[0]),
                mountpoint=unescape_octal(fields[1]),
                type=fields[2] if len(fields) > 2 else "auto",
                options=fields[3] if len(fields) > 3 else "defaults",
                dump=int(fields[4]) if len(fields) > 4 and fields[4].isdigit() else 0,
                passno=int(fields[5]) if len(fields) > 5 and fields[5].isdigit() else 0,
            )
        )
    return entries


_BY_DIRS = {
    "/dev/disk/by-uuid/": "UUID",
    "/dev/disk/by-label/": "LABEL",
    "/dev/disk/by-partuuid/": "PARTUUID",
    "/dev/disk/by-partlabel/": "PARTLABEL",
}


def _spec_key(spec: str) -> tuple[str, str]:
    """An fstab spec as (kind, value): UUID, LABEL, PARTUUID, PARTLABEL or PATH."""
    kind, sep, value = spec.partition("=")
    if sep and kind in ("UUID", "LABEL", "PARTUUID", "PARTLABEL"):
        return kind, value.strip('"').strip("'")
    for prefix, by_kind in _BY_DIRS.items():
        if spec.startswith(prefix):
            # udev escapes unsafe characters in these names as \xHH.
            name = re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), spec)
            return by_kind, name[len(prefix) :]
    return "PATH", spec


def fstab_target(layout: Layout, spec: str) -> Filesystem | None:
    """The recorded file system an fstab spec names, if any."""
    kind, value = _spec_key(spec)
    if kind in ("PARTUUID", "PARTLABEL"):
        for disk in layout.disks:
            for part in disk.partitions:
                if kind == "PARTUUID" and (part.uuid or "").lower() == value.lower():
                    return part.filesystem
                if kind == "PARTLABEL" and part.name == value:
                    return part.filesystem
        return None
    candidates: list[tuple[Filesystem, set[str]]] = []
    for fs in layout.all_filesystems():
        candidates.append((fs, device_aliases(fs.device)))
    if layout.lvm:
        for lv in layout.lvm.lvs:
            if lv.filesystem:
                candidates.append(
                    (lv.filesystem, device_aliases(lv.path) | device_aliases(lv.dm_path))
                )
    for raid in layout.raids:
        if raid.filesystem and raid.devname:
            candidates.append((raid.filesystem, device_aliases(f"/dev/md/{raid.devname}")))
    for fs, aliases in candidates:
        if kind == "UUID" and (fs.uuid or "").lower() == value.lower():
            return fs
        if kind == "LABEL" and fs.label == value:
            return fs
        if kind == "PATH" and (value in aliases or os.path.realpath(value) in aliases):
            return fs
    return None


def apply_fstab(layout: Layout, entries: list[FstabEntry]) -> None:
    """Record the fstab and give each file system it names that entry's options (first wins)."""
    layout.fstab = entries
    for entry in entries:
        fs = fstab_target(layout, entry.spec)
        if fs is not None and fs.fstab_options is None:
            fs.fstab_options = entry.options
