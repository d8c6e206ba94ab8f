"""Step 6: recreate the recorded disk layout on the mapped targets, with a script the admin
can read (rescue.layout.recreate). This is the step that erases disks: it needs an explicit yes
(typed, --yes, or the plan's answer to recover.erase), and in unattended mode the targets were
already restricted to the disks the plan names by a stable id.

A layout with LUKS containers needs a new passphrase (the backup holds none). It comes from
luks_passphrase_file (the plan or --luks-passphrase-file), else RESCUE_LUKS_PASSPHRASE_FILE,
else the question recover.luks_passphrase (typed, or a plan's answer). An unattended run with
none of these stops here before the erase question, so no disk is erased and then left blank
for want of a passphrase.
"""

from __future__ import annotations

import os
from pathlib import Path

from rescue.errors import PlanError, UsageError
from rescue.layout import plan as service
from rescue.layout.recreate import LUKS_PASSPHRASE_VAR, SCRIPT_NAME
from rescue.recovery.recovery_plan import read_luks_passphrase
from rescue.steps.context import Context

ID = "recreate_layout"
TITLE = "recreate the disk layout (ERASES the target disks)"
READ_ONLY = False
REDO_ON_RESUME = False
PASSPHRASE_QUESTION = "recover.luks_passphrase"


def _script(ctx: Context) -> str:
    options = ctx.options
    return service.script_for(
        ctx.layout(),
        ctx.facts.mapping,
        grow=options.grow,
        grow_lv=options.grow_lv,
        luks_new_uuid=options.luks_new_uuid,
    )


def _sections(script: str) -> list[str]:
    return [line[2:].strip() for line in script.splitlines() if line.startswith("# Step ")]


def _passphrase_source(ctx: Context, script: str) -> list[str]:
    """Where the new LUKS passphrase comes from, as plan lines (none without LUKS); PlanError
    for an unattended run that has no passphrase at all: it would stop after the erase."""
    if not service.makes_luks(script):
        return []
    options = ctx.options
    uuids = (
        "the LUKS containers get new UUIDs (luks_new_uuid): fix_fstab writes them into crypttab"
        if options.luks_new_uuid
        else "the LUKS containers keep their recorded UUIDs"
    )
    if options.luks_passphrase_file:
        source = f"the new LUKS passphrase is read from {options.luks_passphrase_file}"
    elif os.environ.get(LUKS_PASSPHRASE_VAR):
        source = f"the new LUKS passphrase is the file ${LUKS_PASSPHRASE_VAR} names"
    elif ctx.answers.has(PASSPHRASE_QUESTION):
        source = f"the new LUKS passphrase is the plan's answer to {PASSPHRASE_QUESTION}"
    elif options.unattended:
        devices = ", ".join(luks.device for luks in ctx.layout().luks)
        raise PlanError(
            f"the layout has LUKS containers ({devices}) and the plan gives no passphrase for "
            'them: add luks_passphrase_file = "/path" to the plan (a file only root can read; '
            "one trailing newline is dropped); nothing was written to the disks"
        )
    else:
        source = f"the new LUKS passphrase is asked ({PASSPHRASE_QUESTION})"
    return [source, uuids]


def _passphrase(ctx: Context) -> str | None:
    """The passphrase luks_passphrase_file holds (checked again: it may have changed since the
    run started), or None: then apply_layout takes it from the environment or asks."""
    path = ctx.options.luks_passphrase_file
    if not path:
        return None
    error = PlanError if ctx.options.unattended else UsageError
    return read_luks_passphrase(Path(path), "luks_passphrase_file", error)


def plan(ctx: Context) -> list[str]:
    if not ctx.facts.mapping:
        return ["erase the mapped target disks and recreate partitions, arrays, LVM, file systems"]
    script = _script(ctx)
    return [
        *(f"ERASE {t} (for {s})" for s, t in ctx.facts.mapping.items()),
        *_sections(script),
        *_passphrase_source(ctx, script),
        f"the script is written to {ctx.work_dir / 'layout' / SCRIPT_NAME} first",
    ]


def run(ctx: Context) -> list[str]:
    script = _script(ctx)
    # Before the erase question: a missing passphrase must stop the run while the disks are
    # still as they were.
    luks = _passphrase_source(ctx, script)
    passphrase = _passphrase(ctx) if service.makes_luks(script) else None
    log_dir = ctx.work_dir / "layout"
    for line in ctx.facts.mapping_lines:
        ctx.echo(f"      {line}")
    if not ctx.facts.erase_confirmed:
        targets = ctx.facts.mapping.values()
        assume_yes = ctx.options.assume_yes
        service.confirm_erase(ctx.ask, targets, log_dir / SCRIPT_NAME, assume_yes=assume_yes)
        ctx.facts.erase_confirmed = True
    ctx.facts.restored_systems = {}  # new file systems: nothing is restored in them yet
    service.apply_layout(script, log_dir, ctx.ask, secret_dir=ctx.work_dir, passphrase=passphrase)
    return [*_sections(script), *luks, f"script and its output kept in {log_dir}"]
