"""Step 5: map the recorded disks to disks of this machine (rules in rescue.layout.mapping).

Which disks may be erased: in unattended mode only those the plan names by a stable id (serial,
WWN, by-id name, or a loop device's image file), never a kernel name, which can change between
boots. In guided mode the admin confirms the proposed mapping or picks each target.
"""

from __future__ import annotations

from rescue.errors import DiskMappingError, PlanError
from rescue.layout import plan as service
from rescue.layout.mapping import left_out_disks, no_target_error, too_small_reason, unsafe_reason
from rescue.layout.model import Disk
from rescue.layout.stable_ids import stable_ids
from rescue.layout.system_state import SystemState
from rescue.prompts import Choice, Question
from rescue.steps.context import Context
from rescue.steps.detect_disks import target_state
from rescue.units import human_size

ID = "map_disks"
TITLE = "map the recorded disks to this machine's disks"
READ_ONLY = True
REDO_ON_RESUME = False


def plan(ctx: Context) -> list[str]:
    if ctx.options.target_ids:
        return [f"choose targets among {', '.join(ctx.options.target_ids)}"]
    return ["choose target disks among this machine's disks"]


def _check_plan_targets(ctx: Context) -> None:
    """An unattended plan names the disks it may erase, by stable ids only."""
    if not ctx.options.unattended:
        return
    if not ctx.options.target_ids:
        known = service.all_disks()
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


def _ask_each(
    ctx: Context, source: service.Source, targets: list[Disk], state: SystemState
) -> dict[str, str]:
    """The admin picks a target per source disk, among the safe ones that are large enough:
    a disk holding the backup, the rescue system or a mount is never offered."""
    explicit: dict[str, str] = {}
    left_out = left_out_disks(source.layout, source.excluded)
    for src in source.layout.disks:
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
    source = ctx.source()
    state = target_state(ctx)
    _check_plan_targets(ctx)
    targets = service.find_targets(ctx.options.target_ids, state, ctx.warn)
    known = {d.path: d for d in targets}
    map_ids = ctx.options.map_ids
    explicit = {src: service.resolve_disk(i, targets).path for src, i in map_ids.items()}
    try:
        mapping = service.map_layout(source, targets, state, explicit)
    except DiskMappingError:
        if ctx.options.unattended or not ctx.answers.interactive:
            raise
        mapping = None
    if mapping is not None and not ctx.options.unattended:
        for line in service.mapping_lines(source, targets, mapping):
            ctx.echo(f"      {line}")
        question = Question("recover.confirm_mapping", "confirm", "Use this mapping?", default=True)
        if not ctx.ask(question):
            mapping = None
    if mapping is None:
        chosen = _ask_each(ctx, source, targets, state)
        mapping = service.map_layout(source, targets, state, chosen)
    ctx.facts.mapping = mapping
    ctx.facts.mapping_lines = service.mapping_lines(source, targets, mapping)
    return [
        *ctx.facts.mapping_lines,
        *(f"{t}: {', '.join(stable_ids(known[t])) or 'no stable id'}" for t in mapping.values()),
    ]
