"""Step 1: list the disks of this machine, with size, model and stable ids, and say which ones
hold the running system or the backup (those are never offered as targets)."""

from __future__ import annotations

from typing import Any

from rescue.layout import plan as service
from rescue.layout.mapping import unsafe_reason
from rescue.layout.model import Disk
from rescue.layout.stable_ids import stable_ids
from rescue.layout.system_state import SystemState
from rescue.steps.context import Context
from rescue.units import human_size

ID = "detect_disks"
TITLE = "find the disks of this machine"
READ_ONLY = True
REDO_ON_RESUME = False


def plan(ctx: Context) -> list[str]:
    return [
        "list the disks with size, model and stable ids (lsblk, udev, sysfs)",
        "mark the disks that hold the running system, the rescue media or the backup",
    ]


def target_state(ctx: Context) -> SystemState:
    """What must not be overwritten: mounts, the running system, the backup, the work dir."""
    return service.target_state(ctx.settings(), ctx.work_dir)


def describe(disk: Disk, role: str | None) -> dict[str, Any]:
    return {
        "path": disk.path,
        "size_bytes": disk.size_bytes,
        "model": disk.model,
        "ids": stable_ids(disk),
        "role": role,
    }


def run(ctx: Context) -> list[str]:
    state = target_state(ctx)
    ctx.facts.disks = [describe(d, unsafe_reason(d, state)) for d in service.all_disks()]
    lines = []
    for d in ctx.facts.disks:
        ids = ", ".join(d["ids"]) or "no stable id"
        role = f" -- {d['role']}" if d["role"] else ""
        lines.append(f"{d['path']} {human_size(d['size_bytes'])} {d['model'] or ''} ({ids}){role}")
    return lines or ["no disks found"]
