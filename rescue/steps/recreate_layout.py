"""Step 6: recreate the recorded disk layout on the mapped targets, with a script the admin
can read (rescue.layout.recreate). This is the step that erases disks: it needs an explicit yes
(typed, --yes, or the plan's answer to recover.erase), and in unattended mode the targets were
already restricted to the disks the plan names by a stable id."""

from __future__ import annotations

import os

from rescue.errors import UsageError
from rescue.layout.recreate import LUKS_PASSPHRASE_VAR, SCRIPT_NAME, apply_script, build_script
from rescue.prompts import Question
from rescue.steps.context import Context

ID = "recreate_layout"
TITLE = "recreate the disk layout (ERASES the target disks)"
READ_ONLY = False
REDO_ON_RESUME = False


def _script(ctx: Context) -> str:
    return build_script(ctx.layout(), ctx.facts.mapping, grow=ctx.options.grow)


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


def _confirmed(ctx: Context, script_path: str) -> bool:
    if ctx.options.assume_yes:
        return True
    targets = ", ".join(ctx.facts.mapping.values())
    question = Question(
        "recover.erase",
        "typed-yes",
        f"ERASE {targets} and recreate the layout (script: {script_path})?",
    )
    return bool(ctx.ask(question))


def run(ctx: Context) -> list[str]:
    script = _script(ctx)
    log_dir = ctx.work_dir / "layout"
    script_path = str(log_dir / SCRIPT_NAME)
    for line in ctx.facts.mapping_lines:
        ctx.echo(f"      {line}")
    if not ctx.facts.erase_confirmed:
        if not _confirmed(ctx, script_path):
            raise UsageError("the layout was not confirmed; nothing was written to the disks")
        ctx.facts.erase_confirmed = True
    ctx.facts.restored_systems = {}  # new file systems: nothing is restored in them yet
    env = {}
    secret_file = None
    if f'"${{{LUKS_PASSPHRASE_VAR}:-}}"' in script:  # the script makes LUKS containers
        secret = ctx.ask(
            Question("recover.luks_passphrase", "password", "Passphrase for the new LUKS volumes:")
        )
        secret_file = ctx.work_dir / "luks-passphrase"
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secret)
        env[LUKS_PASSPHRASE_VAR] = str(secret_file)
    try:
        apply_script(script, log_dir, env=env)
    finally:
        if secret_file is not None:
            secret_file.unlink(missing_ok=True)
    return [*_sections(script), f"script and its output kept in {log_dir}"]
