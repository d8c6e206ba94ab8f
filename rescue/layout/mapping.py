"""Map the disks recorded in a layout (the source) to the disks of the machine being recovered.

Why so strict: the next step writes partition tables onto the chosen disks, so a wrong choice
destroys data that may be the only copy left -- the backup itself, the running rescue system, or
another disk of the machine. The rules, in order:

1. An explicit mapping (a mapping file, or the caller's dict) is honoured first, and still checked
   for safety.
2. The same disk is back: a target whose WWN, serial or a /dev/disk/by-id name equals the
   source's (only non-empty ids count) is that source's disk.
3. Otherwise by size: a target at least as large as the source; the exact size first, then the
   smallest that fits. Two equally good candidates (the same size, or within SIZE_CLASS of each
   other) are never guessed between: that is an error that lists them and says how to choose.
4. Except for mirror twins (see mirror_twins): source disks that are the halves of the same MD
   mirrors come out the same whichever twin goes where, so when a size pass finds exactly as
   many equally good candidates as there are twins still to place, the twins take them in
   order (source path order to target path order), "mirror twins: any order is the same".
   More candidates than twins is still an error: which disk is left alone would be a guess.

A source disk whose every file system is mounted at an excluded path (the disk of a file
destination at /backup, a scratch disk) is left out: the backup holds nothing of it, and
recreating it would erase what may be the backup itself. An explicit mapping still includes it.

A target is used at most once. A target is never used (automatically or explicitly) when it
holds the backup (a `protected` path lives on it), holds the running system (the disk of /) or
the rescue media, is mounted or active swap (any of its partitions), is in use by a stacked
device (device-mapper, MD), or is smaller than the source. Every refusal is a DiskMappingError
with one line naming the disk and the reason.

The policy is pure: what is mounted and what is running comes in a `SystemState`, which
`read_system_state()` (rescue.layout.system_state) fills from /proc and /sys, and which tests
build by hand. How a plan names the disks it maps is in rescue.layout.stable_ids.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from rescue.errors import DiskMappingError
from rescue.layout.model import Disk, Filesystem, Layout
from rescue.layout.system_state import SystemState, backup_disks, read_system_state
from rescue.units import human_size

log = logging.getLogger("rescue.layout")

# Two fitting disks whose sizes differ by less than this fraction are equally good: disks sold
# as the same capacity differ by a few MiB, and picking the one that is 2 MiB smaller is a guess.
SIZE_CLASS = 0.01

T = TypeVar("T")

HOW_TO_CHOOSE = (
    "choose with a mapping file (one 'SOURCE TARGET' line per disk, e.g. '{example}') "
    "or an explicit mapping"
)

TWINS_REASON = "mirror twins: any order is the same"


# --- the rules ------------------------------------------------------------------------------


def _size(size: int) -> str:
    """A size in human units and in bytes, as a refusal must show both."""
    return f"{human_size(size)} ({size} bytes)"


def _sized(disk: Disk) -> str:
    """A disk and its size in human units and bytes: /dev/sdb (32.0 GiB, 34359738368 bytes)."""
    return f"{disk.path} ({human_size(disk.size_bytes)}, {disk.size_bytes} bytes)"


def _keys(disk: Disk) -> set[str]:
    """Every name a SystemState may know the disk by."""
    return {disk.path, os.path.realpath(disk.path), f"/dev/{disk.name}"}


def _lookup(table: Mapping[str, T], disk: Disk) -> T | None:
    for key in sorted(_keys(disk)):
        if key in table:
            return table[key]
    return None


def unsafe_reason(target: Disk, state: SystemState) -> str | None:
    """Why nothing may be written to target, as the end of a sentence, or None if it is safe.

    The backup is named first: it is what recovery cannot do without.
    """
    backup = _lookup(state.backup, target)
    if backup is not None:
        return f"holds the backup ({backup})"
    running = _lookup(state.running, target)
    if running is not None:
        return f"holds the running system ({running})"
    mounted = _lookup(state.mounted, target)
    if mounted:
        points = list(mounted)
        files = [p for p in points if p != "[SWAP]"]
        words = [f"is mounted at {', '.join(files)}"] if files else []
        if "[SWAP]" in points:
            words.append("is in use as swap")
        return " and ".join(words)
    in_use = _lookup(state.in_use, target)
    if in_use:
        return f"is in use by {', '.join(in_use)}"
    return None


def too_small_reason(source: Disk, target: Disk) -> str | None:
    """Why target cannot take source's layout for size, or None if it is large enough."""
    if target.size_bytes >= source.size_bytes:
        return None
    return f"is smaller than {source.path}: {_size(target.size_bytes)} < {_size(source.size_bytes)}"


def same_disk(source: Disk, target: Disk) -> str | None:
    """The stable id that says target is source's own disk back ("serial X"), or None."""
    if source.wwn and target.wwn and source.wwn.lower() == target.wwn.lower():
        return f"WWN {source.wwn}"
    if source.serial and target.serial and source.serial.strip() == target.serial.strip():
        return f"serial {source.serial.strip()}"
    common = sorted(set(filter(None, source.by_id)) & set(filter(None, target.by_id)))
    if common:
        return f"by-id name {common[0]}"
    return None


def _needs_disk(disk: Disk) -> bool:
    """Whether a source disk has anything to recreate (a blank disk in the backup needs none)."""
    return bool(disk.partitions) or disk.filesystem is not None


def _under(point: str, excluded: Iterable[str]) -> bool:
    return any(point == e or point.startswith(e.rstrip("/") + "/") for e in excluded)


def left_out_disks(source: Layout, excluded: Iterable[str]) -> dict[str, list[str]]:
    """{source disk path: its mount points} for each disk with file systems that are all mounted
    at or below an excluded path (absolute, as recorded at capture time).

    Anything else on the disk -- swap, an LVM or RAID member, a partition without a file system,
    an unmounted file system -- may be needed by the restored system, so such a disk stays in.
    """
    excluded = [e.rstrip("/") or "/" for e in excluded if e.startswith("/")]
    result: dict[str, list[str]] = {}
    for disk in source.disks:
        systems: list[Filesystem | None] = [disk.filesystem] if disk.filesystem else []
        systems += [p.filesystem for p in disk.partitions]
        if not systems or not all(
            fs is not None and fs.mountpoint and _under(fs.mountpoint, excluded) for fs in systems
        ):
            continue
        result[disk.path] = sorted({fs.mountpoint for fs in systems if fs and fs.mountpoint})
    return result


def _find_source(source: Layout, name: str) -> Disk:
    for disk in source.disks:
        by_id = {f"/dev/disk/by-id/{b}" for b in disk.by_id} | set(disk.by_id)
        if name in (disk.path, disk.name, f"/dev/{disk.name}") or name in by_id:
            return disk
    known = ", ".join(d.path for d in source.disks) or "none"
    raise DiskMappingError(
        f"the disk mapping names {name}, which is not a disk of the backed-up layout "
        f"(its disks: {known})"
    )


def _find_target(targets: Sequence[Disk], name: str) -> Disk | None:
    real = os.path.realpath(name)
    for disk in targets:
        by_id = {f"/dev/disk/by-id/{b}" for b in disk.by_id} | set(disk.by_id)
        if name in _keys(disk) | {disk.name} | by_id or real in _keys(disk):
            return disk
    return None


def _candidates_text(disks: Iterable[Disk]) -> str:
    return ", ".join(_sized(d) for d in disks)


def _ambiguous(source: Disk, candidates: Sequence[Disk], why: str) -> DiskMappingError:
    how = HOW_TO_CHOOSE.format(example=f"{source.path} {candidates[0].path}")
    return DiskMappingError(
        f"{_sized(source)}: {len(candidates)} {why} target disks, "
        f"{_candidates_text(candidates)}; rescue does not guess: {how}"
    )


# --- mirror twins ---------------------------------------------------------------------------


def _arrays_by_member(layout: Layout) -> dict[str, str]:
    """{member device path (also as /dev/NAME): its MD array's uuid, or path} for every member
    and spare of every recorded array."""
    arrays: dict[str, str] = {}
    for raid in layout.raids:
        for member in (*raid.devices, *raid.spares):
            for key in (member, f"/dev/{os.path.basename(member)}"):
                arrays[key] = raid.uuid or raid.path
    return arrays


def _array_of(path: str, arrays: Mapping[str, str]) -> str | None:
    return arrays.get(path) or arrays.get(f"/dev/{os.path.basename(path)}")


def _mirror_shape(disk: Disk, arrays: Mapping[str, str]) -> tuple[object, ...] | None:
    """What a disk's mirror twins share with it, or None when it can have no twin.

    Partitions hold either an MD member or nothing at all (no signature recorded: a BIOS boot
    partition), and at least one is a member; a disk without a table is a member itself.
    Partition UUIDs and names are left out: they differ between twins and change nothing.
    """
    head = (disk.size_bytes, disk.logical_sector_size, disk.table)
    if not disk.partitions:
        array = _array_of(disk.path, arrays)
        return None if array is None else (*head, array)
    parts = []
    for part in sorted(disk.partitions, key=lambda p: p.number):
        array = _array_of(part.path, arrays)
        if array is None and part.filesystem is not None:
            return None
        parts.append(
            (
                part.number,
                part.start_sector,
                part.size_sectors,
                part.type.lower(),
                part.bootable,
                part.attrs or "",
                array,
            )
        )
    if all(p[-1] is None for p in parts):
        return None
    return (*head, tuple(parts))


def mirror_twins(layout: Layout) -> dict[str, list[str]]:
    """{source disk path: its twin group's paths, itself included, sorted} for each disk that
    has mirror twins.

    Twins have the same size and logical sector size, the same table type and the same
    partitions (number, start, size, type, boot flag, attributes), and the partitions with
    the same number on all of them are members of the same MD array (or all hold nothing);
    disks without a table are members of the same array. Why that is safe to map in any
    order: each array gets one member from each twin either way, and nothing else is on them.
    """
    arrays = _arrays_by_member(layout)
    groups: dict[tuple[object, ...], list[str]] = {}
    for disk in layout.disks:
        shape = _mirror_shape(disk, arrays)
        if shape is not None:
            groups.setdefault(shape, []).append(disk.path)
    return {path: sorted(group) for group in groups.values() if len(group) > 1 for path in group}


def _equally_good(a: Disk, b: Disk) -> bool:
    """Whether two fitting targets are equally good by size (within SIZE_CLASS)."""
    small, large = sorted((a.size_bytes, b.size_bytes))
    return large <= small * (1 + SIZE_CLASS)


@dataclass
class _Choices:
    """The targets and the choices made so far, which map_disks' passes share."""

    targets: Sequence[Disk]
    state: SystemState
    twins: Mapping[str, list[str]] = field(default_factory=dict)  # see mirror_twins()
    mapping: dict[str, str] = field(default_factory=dict)  # source path -> target path
    used: dict[str, str] = field(default_factory=dict)  # target path -> source path

    def refusal(self, src: Disk, tgt: Disk) -> str | None:
        return unsafe_reason(tgt, self.state) or too_small_reason(src, tgt)

    def assign(self, src: Disk, tgt: Disk, why: str) -> None:
        log.info("disk mapping: %s -> %s (%s)", src.path, tgt.path, why)
        self.mapping[src.path] = tgt.path
        self.used[tgt.path] = src.path

    def free_fits(self, src: Disk) -> list[Disk]:
        return [t for t in self.targets if t.path not in self.used and self.refusal(src, t) is None]

    def place_twins(self, src: Disk, rest: Sequence[Disk], candidates: Sequence[Disk]) -> bool:
        """Give src and its unplaced twins the equally good candidates in path order, when
        they are exactly as many and each fits each; False (nothing assigned) otherwise."""
        group = [
            d for d in rest if d.path in self.twins.get(src.path, ()) and d.path not in self.mapping
        ]
        if len(group) != len(candidates) or any(
            self.refusal(s, t) for s in group for t in candidates
        ):
            return False
        by_path = sorted(group, key=lambda d: d.path)
        for twin, tgt in zip(by_path, sorted(candidates, key=lambda d: d.path), strict=True):
            self.assign(twin, tgt, TWINS_REASON)
        return True

    def twins_first(self, disks: Sequence[Disk]) -> list[Disk]:
        """Twins before other disks (stable otherwise): a twin group needs as many equal
        candidates as it has members, and must not lose one to a disk that could go elsewhere."""
        return sorted(disks, key=lambda d: d.path not in self.twins)


def _map_explicit(
    choices: _Choices, source: Layout, needed: Sequence[Disk], explicit: Mapping[str, str]
) -> None:
    """Pass 1: the explicit entries, still checked for safety."""
    for src_name, tgt_name in explicit.items():
        src = _find_source(source, src_name)
        tgt = _find_target(choices.targets, tgt_name)
        if tgt is None:
            known = ", ".join(d.path for d in choices.targets) or "none"
            raise DiskMappingError(
                f"cannot map {src.path} to {tgt_name}: it is not one of the target disks ({known})"
            )
        if src not in needed:
            log.info(
                "disk mapping: %s is blank in the backup; %s is left alone", src.path, tgt.path
            )
            continue
        if src.path in choices.mapping:
            raise DiskMappingError(f"the disk mapping maps {src.path} twice")
        if tgt.path in choices.used:
            raise DiskMappingError(
                f"cannot map {src.path} to {tgt.path}: "
                f"it is already mapped to {choices.used[tgt.path]}"
            )
        reason = choices.refusal(src, tgt)
        if reason:
            raise DiskMappingError(f"cannot map {src.path} to {tgt.path}: {tgt.path} {reason}")
        choices.assign(src, tgt, "explicit")


def _map_same_disks(choices: _Choices, wanted: Sequence[Disk]) -> None:
    """Pass 2: the same disk is back (by WWN, serial or by-id name)."""
    for src in wanted:
        if src.path in choices.mapping:
            continue
        same = [
            (t, i)
            for t in choices.targets
            if t.path not in choices.used and (i := same_disk(src, t))
        ]
        if len(same) > 1:
            raise _ambiguous(src, [t for t, _ in same], "same-id")
        if same:
            tgt, ident = same[0]
            reason = choices.refusal(src, tgt)
            if reason:
                how = HOW_TO_CHOOSE.format(example=f"{src.path} /dev/OTHER")
                raise DiskMappingError(
                    f"{src.path} is back as {tgt.path} ({ident}), but {tgt.path} {reason}; "
                    f"rescue does not fall back to another disk on its own: {how}"
                )
            choices.assign(src, tgt, f"same disk, {ident}")


def _map_exact_sizes(choices: _Choices, rest: Sequence[Disk]) -> None:
    """Pass 3: a free, safe target of exactly the source's size."""
    for src in choices.twins_first(rest):
        if src.path in choices.mapping:  # placed with its twins
            continue
        exact = [t for t in choices.free_fits(src) if t.size_bytes == src.size_bytes]
        if len(exact) > 1:
            if choices.place_twins(src, rest, exact):
                continue
            raise _ambiguous(src, exact, "same-size")
        if exact:
            choices.assign(src, exact[0], "exact size")


def _map_smallest_fits(choices: _Choices, rest: Sequence[Disk]) -> None:
    """Pass 4: the smallest free, safe target that fits, largest sources first (twins first
    among sources of one size).

    That greedy order never strands a source that some assignment could have served: whatever the
    largest source takes, a smaller source could only have fitted on a disk at least as big.
    """
    for src in sorted(choices.twins_first(rest), key=lambda d: -d.size_bytes):
        if src.path in choices.mapping:  # placed with its twins
            continue
        fits = choices.free_fits(src)
        if not fits:
            raise no_target_error(src, choices.targets, choices.used, choices.state)
        smallest = min(t.size_bytes for t in fits)
        best = [t for t in fits if t.size_bytes <= smallest * (1 + SIZE_CLASS)]
        if len(best) > 1:
            if choices.place_twins(src, rest, best):
                continue
            raise _ambiguous(src, sorted(best, key=lambda t: t.size_bytes), "equally good")
        choices.assign(src, best[0], "smallest that fits")


def map_disks(
    source: Layout,
    targets: list[Disk],
    explicit: dict[str, str] | None = None,
    *,
    protected: Iterable[Path | str] = (),
    state: SystemState | None = None,
    excluded: Iterable[str] = (),
) -> dict[str, str]:
    """{source disk path: target disk path} for every source disk with partitions or a file
    system, except those left out for holding only excluded file systems (see
    left_out_disks(source, excluded)) unless explicit names them; DiskMappingError (one line)
    when a disk has no safe, unambiguous target.

    state defaults to read_system_state(protected); when a state is given, the disks of the
    protected paths are added to its backup disks.
    """
    protected = list(protected)
    if state is None:
        state = read_system_state(protected)
    elif protected:
        state = dataclasses.replace(state, backup={**state.backup, **backup_disks(protected)})

    needed = [d for d in source.disks if _needs_disk(d)]
    left_out = left_out_disks(source, excluded)
    for path, points in left_out.items():
        log.info("disk mapping: %s holds only excluded file systems (%s)", path, ", ".join(points))
    choices = _Choices(targets, state, mirror_twins(source))
    _map_explicit(choices, source, needed, explicit or {})
    wanted = [d for d in needed if d.path in choices.mapping or d.path not in left_out]
    _map_same_disks(choices, wanted)
    rest = [d for d in wanted if d.path not in choices.mapping]
    _map_exact_sizes(choices, rest)
    _map_smallest_fits(choices, [d for d in rest if d.path not in choices.mapping])
    return {d.path: choices.mapping[d.path] for d in wanted}


def no_target_error(
    src: Disk, targets: Sequence[Disk], used: Mapping[str, str], state: SystemState
) -> DiskMappingError:
    """The error for a source that no target can take, with why each one was refused."""
    head = f"no safe target disk for {_sized(src)}"
    if not targets:
        return DiskMappingError(f"{head}: this machine has no target disks")
    why = []
    for tgt in targets:
        if tgt.path in used:
            reason = f"is already mapped to {used[tgt.path]}"
        else:
            reason = unsafe_reason(tgt, state) or too_small_reason(src, tgt) or "?"
        why.append(f"{tgt.path} {reason}")
    return DiskMappingError(f"{head}: {'; '.join(why)}")


# --- mapping files and the summary ----------------------------------------------------------


def read_mapping_file(path: Path) -> dict[str, str]:
    """A mapping file: "SOURCE TARGET" per line (/dev/vda /dev/sdb); '#' starts a comment.

    Why strict: a typo here decides which disk is wiped, so anything but two device paths on a
    line is an error naming the line, and so is a source or target named twice.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise DiskMappingError(f"cannot read the disk mapping file {path}: {exc.strerror}") from exc
    mapping: dict[str, str] = {}
    lines: dict[str, int] = {}  # target -> line number
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        where = f"{path} line {number}"
        if len(fields) != 2 or not all(f.startswith("/") for f in fields):
            raise DiskMappingError(
                f"{where}: expected 'SOURCE TARGET' (two device paths, e.g. '/dev/vda /dev/sdb'), "
                f"got {raw.strip()!r}"
            )
        src, tgt = fields
        if src in mapping:
            raise DiskMappingError(f"{where}: {src} is mapped a second time")
        if tgt in lines:
            raise DiskMappingError(f"{where}: {tgt} is already the target on line {lines[tgt]}")
        mapping[src] = tgt
        lines[tgt] = number
    return mapping


def _identity(disk: Disk) -> str:
    if disk.serial:
        return f", serial {disk.serial}"
    if disk.wwn:
        return f", WWN {disk.wwn}"
    return ""


def _twin_targets_alike(
    src: Disk,
    tgt: Disk,
    twins: Mapping[str, list[str]],
    mapping: Mapping[str, str],
    targets: Sequence[Disk],
) -> bool:
    """Whether src has a mirror twin mapped to a target as good as tgt: then the order of the
    two does not matter, and the line says so (why rescue chose it without asking)."""
    for twin in twins.get(src.path, ()):
        other_path = mapping.get(twin)
        if twin == src.path or other_path is None:
            continue
        other = _find_target(targets, other_path)
        if other is not None and other.path != tgt.path and _equally_good(other, tgt):
            return True
    return False


def describe_mapping(
    source: Layout, targets: list[Disk], mapping: dict[str, str], excluded: Iterable[str] = ()
) -> list[str]:
    """Human lines, one per source disk, so the user sees which disk is overwritten before it is.

    /dev/vda (20.0 GiB, serial X) -> /dev/sdb (32.0 GiB): larger by 12.0 GiB
    /dev/vdb (20.0 GiB) -> /dev/sdc (20.0 GiB): same size; mirror twins: any order is the same
    """
    lines = []
    left_out = left_out_disks(source, excluded)
    twins = mirror_twins(source)
    for src in source.disks:
        head = f"{src.path} ({human_size(src.size_bytes)}{_identity(src)})"
        tgt_path = mapping.get(src.path)
        if tgt_path is None:
            if not _needs_disk(src):
                note = "blank in the backup"
            elif src.path in left_out:
                note = f"holds only excluded file systems ({', '.join(left_out[src.path])})"
            else:
                note = "NOT MAPPED"
            lines.append(f"{head}: {note}, nothing is written for it")
            continue
        tgt = _find_target(targets, tgt_path)
        if tgt is None:
            lines.append(f"{head} -> {tgt_path}: not a disk of this machine")
            continue
        ident = same_disk(src, tgt)
        if ident:
            tail = f"the same disk ({ident})"
        elif tgt.size_bytes == src.size_bytes:
            tail = "same size"
        elif tgt.size_bytes > src.size_bytes:
            tail = f"larger by {human_size(tgt.size_bytes - src.size_bytes)}"
        else:
            tail = f"SMALLER by {human_size(src.size_bytes - tgt.size_bytes)}"
        if tgt.logical_sector_size != src.logical_sector_size:
            tail += (
                f"; logical sectors {src.logical_sector_size} -> {tgt.logical_sector_size} bytes"
            )
        if not ident and _twin_targets_alike(src, tgt, twins, mapping, targets):
            tail += f"; {TWINS_REASON}"
        lines.append(f"{head} -> {tgt.path} ({human_size(tgt.size_bytes)}): {tail}")
    return lines
