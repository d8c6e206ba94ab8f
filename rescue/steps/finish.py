"""Step 17: put the rescue system's identity back, keep the log and the report in the
restored system (/var/log/rescue/), unmount everything, and reboot or power off if asked."""

from __future__ import annotations

import os
import shutil
import time

from rescue.process.execute import run as run_command
from rescue.prompts import Choice, Question
from rescue.recovery.mounts import unmount_tree
from rescue.recovery.runner import State, report
from rescue.steps import restore_identity
from rescue.steps.context import Context, write_json

ID = "finish"
# The generic title (the --help list has no plan yet); title(ctx) says the configured action.
TITLE = "unmount, keep the log in the restored system, then reboot, power off or not (--after)"
READ_ONLY = False
REDO_ON_RESUME = False
AFTER = {"reboot": ["systemctl", "reboot"], "poweroff": ["systemctl", "poweroff"]}
# How the title ends for each action: "none" must not read as a reboot (nor "shell").
TITLE_END = {
    "reboot": ", reboot",
    "poweroff": ", power off",
    "shell": " (no reboot: back to the shell)",
    "none": " (no reboot)",
}
TITLE_ASKED = ", then ask: reboot, power off, shell or none"


def planned_after(ctx: Context) -> str | None:
    """The action the run will take (--after, the plan's `after`, its answer to recover.after,
    or none when nobody can be asked); None when it will be asked at the end."""
    if ctx.options.after:
        return ctx.options.after
    if ctx.answers.has("recover.after"):
        return str(ctx.answers.planned["recover.after"])
    if not ctx.answers.interactive:
        return "none"
    return None


def title(ctx: Context) -> str:
    """The title with the configured action, so a run with `after = "none"` never says reboot."""
    after = planned_after(ctx)
    end = TITLE_ASKED if after is None else TITLE_END.get(after, f", then {after}")
    return f"unmount, keep the log in the restored system{end}"


def plan(ctx: Context) -> list[str]:
    return [
        "put back the rescue system's passwd and group",
        f"copy the log and the report to {ctx.target('var/log/rescue')}",
        f"unmount {ctx.target_root}",
        f"then: {planned_after(ctx) or 'ask (reboot, poweroff, shell or none)'}",
    ]


def _after(ctx: Context) -> str:
    """What planned_after(ctx) says; a plan's answer goes through ask(), which checks it."""
    if ctx.options.after:
        return ctx.options.after
    if not ctx.answers.interactive and not ctx.answers.has("recover.after"):
        return "none"
    choices = [Choice(c, c) for c in ("reboot", "poweroff", "shell", "none")]
    question = Question("recover.after", "select", "Recovery done. Now?", choices, default="none")
    return str(ctx.ask(question))


def keep_records(ctx: Context, report: dict[str, object]) -> str:
    """Copy the log and the report into the restored system; returns where."""
    folder = ctx.target("var/log/rescue")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    write_json(folder / f"recover-{stamp}.json", report)
    if ctx.options.log_file and os.path.isfile(ctx.options.log_file):
        shutil.copy(ctx.options.log_file, folder / f"recover-{stamp}.log")
        os.chmod(folder / f"recover-{stamp}.log", 0o600)
    return str(folder)


def run(ctx: Context) -> list[str]:
    done = restore_identity.put_back(ctx)
    ctx.drop_cleanup(restore_identity.CLEANUP)
    state = State.load(ctx.state_path)  # the report as it stands, this step still running
    state.facts = ctx.facts_dict()
    done.append(f"log and report kept in {keep_records(ctx, report(state))}")
    os.sync()
    unmount_tree(ctx.target_root)
    ctx.run_cleanups()
    done.append(f"{ctx.target_root} unmounted")
    after = _after(ctx)
    done.append(f"after recovery: {after}")
    if after in AFTER:
        run_command(AFTER[after], mask_output=False)
    return done
