"""The human summary of a layout: one line per disk, VG, array, LUKS container and stacked file
system, and under each btrfs one line of its subvolumes.

Why a module of its own: `rescue layout show`, the recreate script's comments and the recovery
all print a layout the same way.
"""

from __future__ import annotations

from rescue.layout.model import Filesystem, Layout, partition_type_name
from rescue.units import human_size

# --- summary --------------------------------------------------------------------------------


# Partition types that say no more than the file system on them does (Linux data, Linux swap).
_PLAIN_TYPES = {
    "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
    "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
    "83",
    "82",
}


def _fs_words(fs: Filesystem | None) -> list[str]:
    if fs is None:
        return []
    words = [fs.type]
    if fs.mountpoint:
        words.append(fs.mountpoint)
    ids = []
    if fs.label:
        ids.append(f"LABEL {fs.label}")
    if fs.uuid:
        ids.append(f"UUID {fs.uuid}")
    if ids:
        words.append(f"({', '.join(ids)})")
    return words


def subvolume_line(fs: Filesystem) -> str | None:
    """One indented line for a btrfs file system's subvolumes: each plain one (the default
    marked), and the snapshots only counted (a host can keep hundreds)."""
    if not fs.subvolumes:
        return None
    names = []
    for subvol in fs.subvolumes:
        if subvol.snapshot and subvol.path != fs.default_subvolume:
            continue
        marks = ["default"] if subvol.path == fs.default_subvolume else []
        marks += ["ro"] if subvol.readonly else []
        marks += ["snapshot"] if subvol.snapshot else []
        names.append(subvol.path + (f" ({', '.join(marks)})" if marks else ""))
    snapshots = sum(s.snapshot and s.path != fs.default_subvolume for s in fs.subvolumes)
    words = f"btrfs subvolumes on {fs.device}: {', '.join(names) or 'none but snapshots'}"
    if snapshots:
        words += f"; {snapshots} snapshot{'s' if snapshots > 1 else ''}"
    return f"  {words}"


def _subvolume_lines(filesystems: list[Filesystem | None], seen: set[str]) -> list[str]:
    """The subvolume lines of the btrfs among filesystems, once per file system (a btrfs on
    several devices records its subvolumes on each)."""
    lines = []
    for fs in filesystems:
        if fs is None or (fs.uuid or fs.device) in seen:
            continue
        line = subvolume_line(fs)
        if line:
            seen.add(fs.uuid or fs.device)
            lines.append(line)
    return lines


def layout_summary(layout: Layout) -> list[str]:
    """Human lines, one per disk, VG, array, LUKS container and stacked file system, each
    btrfs followed by a line of its subvolumes."""
    lines = []
    seen: set[str] = set()
    for disk in layout.disks:
        head = f"{disk.name} {human_size(disk.size_bytes)}"
        if disk.table:
            parts = []
            for part in disk.partitions:
                words = [str(part.number), human_size(disk.partition_bytes(part))]
                if part.filesystem is None or part.type.upper() not in _PLAIN_TYPES:
                    words.append(partition_type_name(disk.table, part.type))
                if part.bootable:
                    words.append("bootable")
                words += _fs_words(part.filesystem)
                parts.append(" ".join(words))
            lines.append(f"{head} {disk.table}: {', '.join(parts) or 'no partitions'}")
        elif disk.filesystem:
            lines.append(f"{head} no partition table: {' '.join(_fs_words(disk.filesystem))}")
        else:
            lines.append(f"{head} blank")
        fss = [disk.filesystem, *(part.filesystem for part in disk.partitions)]
        lines += _subvolume_lines(fss, seen)
    for raid in layout.raids:
        words = [raid.name, raid.level or "inactive", f"metadata {raid.metadata}"]
        words.append(f"on {', '.join(raid.devices) or '?'}")
        if raid.spares:
            words.append(f"spares {', '.join(raid.spares)}")
        lines.append(" ".join(words + _fs_words(raid.filesystem)))
        lines += _subvolume_lines([raid.filesystem], seen)
    if layout.lvm:
        for vg in layout.lvm.vgs:
            pvs = [pv.device for pv in layout.lvm.pvs if pv.vg == vg.name]
            lvs = [
                " ".join([lv.name, human_size(lv.size_bytes), *_fs_words(lv.filesystem)])
                for lv in layout.lvm.lvs
                if lv.vg == vg.name
            ]
            size = f" {human_size(vg.size_bytes)}" if vg.size_bytes is not None else ""
            lines.append(
                f"VG {vg.name}{size} on {', '.join(pvs)}"
                f" (extent {human_size(vg.extent_size_bytes)}): {', '.join(lvs) or 'no LVs'}"
            )
            fss = [lv.filesystem for lv in layout.lvm.lvs if lv.vg == vg.name]
            lines += _subvolume_lines(fss, seen)
    for luks in layout.luks:
        opened = f", open as {luks.mapping}" if luks.mapping else ""
        lines.append(f"LUKS{luks.version or ''} on {luks.device} (UUID {luks.uuid}){opened}")
    for fs in layout.filesystems:
        lines.append(f"{fs.device}: {' '.join(_fs_words(fs))}")
        lines += _subvolume_lines([fs], seen)
    return lines
