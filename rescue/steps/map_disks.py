"""Step 5: map the recorded disks to disks of this machine (rules in rescue.layout.mapping).

Which disks may be erased: in unattended mode only those the plan names by a stable id (serial,
WWN, by-id name, or a loop device's image file), never a kernel name, which can change between
boots. In guided mode the admin confirms the proposed mapping or picks each target.
"""

from __future__ import annotations

import os

from rescue.errors import DiskMappingError, PlanError
from rescue.layout import LayoutError
from rescue.layout.capture import capture, identify_disks
from rescue.layout.mapping import (
    describe_mapping,
    left_out_disks,
    map_disks,
    no_target_error,
    too_small_reason,
    unsafe_reason,
)
from rescue.layout.model import Disk, Layout
from rescue.layout.stable_ids import resolve_stable_id, stable_ids
from rescue.layout.system_state import SystemState, read_system_state
from rescue.manifest import excluded_mount_paths
from rescue.prompts import Choice, Question
from rescue.steps.context import Context
from rescue.steps.detect_disks import all_disks, protected_paths
from rescue.units import human_size

ID = "map_disks"
TITLE = "map the recorded disks to this machine's disks"
READ_ONLY = True
REDO_ON_RESUME = False


def plan(ctx: Context) -> list[str]:
    if ctx.options.target_ids:
        return [f"choose targets among {', '.join(ctx.options.target_ids)}"]
    return ["choose target disks among this machine's disks"]


def _resolve(ident: str, disks: list[Disk]) -> Disk:
    """A target given as a stable id, or (guided mode only) as a device path."""
    if ident.startswith("/"):
        real = os.path.realpath(ident)
        for disk in disks:
            if os.path.realpath(disk.path) == real:
                return disk
        raise DiskMappingError(f"{ident} is not a disk of this machine")
    return resolve_stable_id(ident, disks)


def _targets(ctx: Context, state: SystemState) -> list[Disk]:
    known = all_disks()
    if ctx.options.unattended:
        if not ctx.options.target_ids:
            lines = "; ".join(f"{d.path}: {', '.join(stable_ids(d)) or 'no id'}" for d in known)
            raise PlanError(
                "an unattended recovery erases only disks its plan names: add "
                f'[disks] targets = ["serial:..."] to the plan (the disks here: {lines})'
            )
        paths = [i for i in ctx.options.target_ids if i.startswith("/")]
        if paths:
            raise PlanError(
                f"the plan names {', '.join(paths)} by kernel name; name disks to erase by a "
                "stable id (serial:, wwn:, by-id: or file:), which cannot change between boots"
            )
    if ctx.options.target_ids:
        candidates = [_resolve(i, known) for i in dict.fromkeys(ctx.options.target_ids)]
    else:
        candidates = identify_disks(None)  # the real disks, as capture(None) would read them
    return _readable(ctx, candidates, state)


# Bytes read at the start, the middle and the end of a candidate disk.
SAMPLE = 4096


def _read_samples(disk: Disk) -> None:
    """LayoutError if a block at the start, the middle or the end of the disk cannot be read.

    Why: blkid (and wipefs) find "nothing" on a disk whose reads fail with EIO, exactly as on a
    blank one, so a dying disk would be offered as a target. The start and the end are where
    the new partition table goes (GPT keeps a copy at the end); the middle samples the rest.
    """
    last = max(disk.size_bytes - SAMPLE, 0) // SAMPLE * SAMPLE
    try:
        fd = os.open(disk.path, os.O_RDONLY)
    except OSError as exc:
        raise LayoutError(f"cannot open it: {exc.strerror}") from exc
    try:
        for offset in sorted({0, last // 2 // SAMPLE * SAMPLE, last}):
            try:
                os.pread(fd, SAMPLE, offset)
            except OSError as exc:
                raise LayoutError(f"a read at byte {offset} fails: {exc.strerror}") from exc
    finally:
        os.close(fd)


def _readable(ctx: Context, candidates: list[Disk], state: SystemState) -> list[Disk]:
    """The candidates' layouts, read disk by disk. A disk already ruled out (it holds the
    backup, the rescue media or a mount) is not read at all; one that cannot be read (a dying
    disk, I/O errors) is named with the reason and left out: the mapping goes on without it."""
    found = []
    for disk in candidates:
        if unsafe_reason(disk, state) is not None:
            found.append(disk)  # offered to nothing; kept so that the refusals can name it
            continue
        try:
            _read_samples(disk)
            found += capture([disk.path]).disks
        except LayoutError as exc:
            ctx.warn(f"{disk.path} cannot be read ({exc}): left out of the mapping")
    return found


def _ask_each(
    ctx: Context, layout: Layout, targets: list[Disk], state: SystemState, excluded: list[str]
) -> dict[str, str]:
    """The admin picks a target per source disk, among the safe ones that are large enough:
    a disk holding the backup, the rescue system or a mount is never offered."""
    explicit: dict[str, str] = {}
    left_out = left_out_disks(layout, excluded)
    for src in layout.disks:
        if (not src.partitions and src.filesystem is None) or src.path in left_out:
            continue
        taken = set(explicit.values())
        fits = [
            t
            for t in targets
            if t.path not in taken
            and unsafe_reason(t, state) is None
            and too_small_reason(src, t) is None
        ]
        if not fits:
            raise no_target_error(src, targets, {t: s for s, t in explicit.items()}, state)
        question = Question(
            "recover.target_disk",
            "select",
            f"Target disk for {src.path} ({human_size(src.size_bytes)})?",
            [Choice(f"{t.path} {human_size(t.size_bytes)} {t.model or ''}", t.path) for t in fits],
        )
        explicit[src.path] = ctx.ask(question)
    return explicit


def run(ctx: Context) -> list[str]:
    layout = ctx.layout()
    state = read_system_state(protected_paths(ctx))
    targets = _targets(ctx, state)
    known = {d.path: d for d in targets}
    explicit = {src: _resolve(i, targets).path for src, i in ctx.options.map_ids.items()}
    excluded = excluded_mount_paths(ctx.manifest())
    try:
        mapping = map_disks(layout, targets, explicit or None, state=state, excluded=excluded)
    except DiskMappingError:
        if ctx.options.unattended or not ctx.answers.interactive:
            raise
        mapping = None
    if mapping is not None and not ctx.options.unattended:
        for line in describe_mapping(layout, targets, mapping, excluded):
            ctx.echo(f"      {line}")
        question = Question("recover.confirm_mapping", "confirm", "Use this mapping?", default=True)
        if not ctx.ask(question):
            mapping = None
    if mapping is None:
        chosen = _ask_each(ctx, layout, targets, state, excluded)
        mapping = map_disks(layout, targets, chosen, state=state, excluded=excluded)
    ctx.facts.mapping = mapping
    ctx.facts.mapping_lines = describe_mapping(layout, targets, mapping, excluded)
    return [
        *ctx.facts.mapping_lines,
        *(f"{t}: {', '.join(stable_ids(known[t])) or 'no stable id'}" for t in mapping.values()),
    ]
