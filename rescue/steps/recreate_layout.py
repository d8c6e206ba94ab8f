"""Step 6: recreate the recorded disk layout on the mapped targets, with a script the admin
can read (rescue.layout.recreate). This is the step that erases disks: it needs an explicit yes
(typed, --yes, or the plan's answer to recover.erase), and in unattended mode the targets were
already restricted to the disks the plan names by a stable id."""

from __future__ import annotations

from rescue.layout import plan as service
from rescue.layout.recreate import SCRIPT_NAME
from rescue.steps.context import Context

ID = "recreate_layout"
TITLE = "recreate the disk layout (ERASES the target disks)"
READ_ONLY = False
REDO_ON_RESUME = False


def _script(ctx: Context) -> str:
    options = ctx.options
    return service.script_for(
        ctx.layout(), ctx.facts.mapping, grow=options.grow, grow_lv=options.grow_lv
    )


def _sections(script: str) -> list[str]:
    return [line[2:].strip() for line in script.splitlines() if line.startswith("# Step ")]


def plan(ctx: Context) -> list[str]:
    if not ctx.facts.mapping:
        return ["erase the mapped target disks and recreate partitions, arrays, LVM, file systems"]
    script = _script(ctx)
    return [
        *(f"ERASE {t} (for {s})" for s, t in ctx.facts.mapping.items()),
        *_sections(script),
        f"the script is written to {ctx.work_dir / 'layout' / SCRIPT_NAME} first",
    ]


def run(ctx: Context) -> list[str]:
    script = _script(ctx)
    log_dir = ctx.work_dir / "layout"
    for line in ctx.facts.mapping_lines:
        ctx.echo(f"      {line}")
    if not ctx.facts.erase_confirmed:
        targets = ctx.facts.mapping.values()
        assume_yes = ctx.options.assume_yes
        service.confirm_erase(ctx.ask, targets, log_dir / SCRIPT_NAME, assume_yes=assume_yes)
        ctx.facts.erase_confirmed = True
    ctx.facts.restored_systems = {}  # new file systems: nothing is restored in them yet
    service.apply_layout(script, log_dir, ctx.ask, secret_dir=ctx.work_dir)
    return [*_sections(script), f"script and its output kept in {log_dir}"]
