"""`rescue recover`: bare-metal recovery of this machine from its backup, step by step.

Guided (questions on the terminal) or unattended (--plan FILE, which answers everything and never
waits on stdin). The state is saved after every step, so a crash or a reboot of the rescue
system is continued with --resume.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from rescue.backup.lock import exclusive
from rescue.cli.completion_cmd import complete_from
from rescue.cli.main import App, dir_option
from rescue.cli.render import emit_json, human_seconds, paused, progress
from rescue.cli.status_cmd import TIME_OPTION
from rescue.errors import IncompleteRestoreError, PlanError, UsageError
from rescue.layout.recreate.plan import GROW_LV_HELP, GROW_LV_NONE, grow_lv_problem
from rescue.placement.fsops import remove_own
from rescue.process import guardian
from rescue.prompts import QUESTIONS, Answers
from rescue.recovery.initramfs import CHOICES as INITRAMFS_CHOICES
from rescue.recovery.recovery_plan import (
    AFTER_CHOICES,
    VERIFY_CHOICES,
    RecoveryPlan,
    load_plan,
    read_luks_passphrase,
)
from rescue.recovery.runner import Runner, State, Stopped, report, step_ids, title_of
from rescue.steps import RECOVER, restore_identity
from rescue.steps.context import (
    DEFAULT_TARGET_ROOT,
    DEFAULT_WORK_DIR,
    REPORT_FILE,
    STATE_FILE,
    Context,
    Options,
    write_json,
)

# One recovery per machine: it puts the backup's passwd and group on this system for a while.
LOCK_DIR = Path("/run/rescue-recover")
STEP_LIST = "\n".join(f"  {n:>2}. {s.ID:<18} {s.TITLE}" for n, s in enumerate(RECOVER, start=1))
QUESTION_LIST = "\n".join(f"  {qid:<24} {text}" for qid, text in QUESTIONS.items())
EPILOG = f"""\b
Steps:
{STEP_LIST}

\b
Question IDs (a plan answers them under [answers]):
{QUESTION_LIST}
"""


def _options(
    app: App,
    plan: RecoveryPlan | None,
    work_dir: Path,
    target_root: Path | None,
    *,
    when: str | None,
    grow: bool,
    grow_lv: str | None,
    after: str | None,
    initramfs: str | None,
    verify: str | None,
    yes: bool,
    targets: Sequence[str],
    luks_passphrase_file: Path | None = None,
    luks_new_uuid: bool = False,
) -> Options:
    settings_file = None
    if plan is not None and plan.settings is not None:
        settings_file = str(plan.settings)
    elif app.config_path.exists():
        settings_file = str(app.config_path)
    elif plan is not None:
        raise PlanError(
            f'{plan.path}: no settings: add settings = "/path/rescue.toml" or pass --config'
        )
    root = target_root or (plan.target_root if plan else None) or DEFAULT_TARGET_ROOT
    luks_file = luks_passphrase_file or (plan.luks_passphrase_file if plan else None)
    # Absolute, all of them: --resume may run from any working directory.
    return Options(
        work_dir=os.path.abspath(work_dir),
        target_root=os.path.abspath(root),
        settings_file=os.path.abspath(settings_file) if settings_file else None,
        plan_file=os.path.abspath(plan.path) if plan else None,
        time=when or (plan.time if plan else None),
        grow=grow if plan is None or plan.grow is None else plan.grow,
        grow_lv=grow_lv or (plan.grow_lv if plan else None) or GROW_LV_NONE,
        after=after or (plan.after if plan else None),
        initramfs=initramfs or (plan.initramfs if plan else None) or "auto",
        verify=verify or (plan.verify if plan else None) or "sample",
        luks_passphrase_file=os.path.abspath(luks_file) if luks_file else None,
        luks_new_uuid=luks_new_uuid or bool(plan and plan.luks_new_uuid),
        unattended=plan is not None,
        assume_yes=yes,
        target_ids=list(targets or (plan.targets if plan else [])),
        map_ids=dict(plan.map) if plan else {},
        source_mounts=dict(plan.mounts) if plan else {},
        log_file=os.path.abspath(app.log_path) if app.log_path else None,
    )


def _print_report(data: dict[str, Any], as_json: bool, work_dir: Path) -> None:
    write_json(work_dir / REPORT_FILE, data)
    if as_json:
        emit_json(data)
        return
    click.echo("")
    for step in data["steps"]:
        seconds = "" if step["seconds"] is None else human_seconds(step["seconds"])
        line = f"  {step['outcome']:<8} {seconds:>8}  {step['id']}"
        if step["error"]:
            line += f": {step['error']}"
        click.echo(line)
    totals = data["totals"]
    click.echo(
        f"recovery {data['outcome']} in {human_seconds(totals['seconds'])}"
        f"; report: {work_dir / REPORT_FILE}"
    )


@click.command(epilog=EPILOG)
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Unattended: a plan file with the settings, restore point, disks and answers.",
)
@click.option("--dry-run", is_flag=True, help="Print every step's actions; change nothing.")
@click.option(
    "--resume", is_flag=True, help="Continue the recorded recovery at its first unfinished step."
)
@click.option(
    "--restart", is_flag=True, help="Forget a recorded unfinished recovery and start over."
)
@click.option(
    "--from",
    "from_step",
    metavar="STEP",
    shell_complete=complete_from(step_ids(RECOVER)),
    help="Run from STEP to the end.",
)
@click.option(
    "--only",
    metavar="STEP",
    shell_complete=complete_from(step_ids(RECOVER)),
    help="Run only STEP (after redoing mounts if needed).",
)
@click.option("--step-by-step", is_flag=True, help="Show each step's plan and ask before it.")
@TIME_OPTION
@click.option(
    "--target",
    "targets",
    multiple=True,
    help="A disk that may be erased (repeat): serial:X, wwn:X, by-id:NAME, file:IMAGE "
    "(a loop device's image), or in guided mode a /dev path.",
)
@dir_option("--target-root", f"Where the new system is mounted [default: {DEFAULT_TARGET_ROOT}].")
@dir_option("--work-dir", "State file, manifest, layout script and report.", DEFAULT_WORK_DIR)
@click.option(
    "--yes", is_flag=True, help="Confirm erasing the target disks (they must still be named)."
)
@click.option(
    "--grow/--no-grow",
    default=True,
    show_default=True,
    help="Let the last partition fill a larger disk.",
)
@click.option(
    "--grow-lv",
    metavar="none|last|VG/LV",
    help=f"{GROW_LV_HELP} [default: none, or the plan's grow_lv]",
)
@click.option("--after", type=click.Choice(AFTER_CHOICES), help="What to do when done.")
@click.option(
    "--initramfs",
    type=click.Choice(INITRAMFS_CHOICES),
    help="auto (the default): rebuild the restored initramfs only when it no longer fits "
    "(UUIDs, LUKS/MD, resume device or disk driver changed); always: rebuild it anyway.",
)
@click.option(
    "--luks-passphrase-file",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="New LUKS passphrase (FILE less one newline).",
)
@click.option(
    "--luks-new-uuid",
    is_flag=True,
    help="New LUKS UUIDs (crypttab is rewritten).",
)
@click.option(
    "--verify",
    type=click.Choice(VERIFY_CHOICES),
    help="How much content the verify step compares. records: ids, links, owners, modes, "
    "xattrs and times from the metadata records, reading nothing from the backup; sample "
    "(the default): those and the bytes of etc/; full: those and every byte of the backup.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the final report as JSON.")
@click.pass_obj
def recover(
    app: App,
    plan_file: Path | None,
    dry_run: bool,
    resume: bool,
    restart: bool,
    from_step: str | None,
    only: str | None,
    step_by_step: bool,
    when: str | None,
    targets: tuple[str, ...],
    target_root: Path | None,
    work_dir: Path,
    yes: bool,
    grow: bool,
    grow_lv: str | None,
    after: str | None,
    initramfs: str | None,
    verify: str | None,
    luks_passphrase_file: Path | None,
    luks_new_uuid: bool,
    as_json: bool,
) -> None:
    """Recover this machine from its backup onto blank disks (bare metal).

    Runs the steps below in order, saving the state after each. The disk layout, the ids and
    the bootloader come from the manifest inside the backup. Disks are erased only after an
    explicit yes (typed, or --yes / the plan's answer), and in unattended mode only the disks
    the plan names by a stable id. Exit 42: the system is recovered, but some xattrs, ACLs,
    holes or exact times could not be put back (the warnings and the report say which).

    \b
    Examples:
      rescue recover                        guided: asks what it needs
      rescue recover --dry-run              show what would be done
      rescue recover --plan /plan.toml      unattended
      rescue recover --resume               continue after a crash or reboot
      rescue recover --only verify          run one step again
      rescue recover --only verify --verify full   ... reading every byte this time
    """
    if sum(map(bool, (resume, restart, dry_run))) > 1:
        raise UsageError("give only one of --resume, --restart and --dry-run")
    if from_step and only:
        raise UsageError("give either --from or --only, not both")
    given = (plan_file, targets, when, grow_lv, initramfs, verify)
    if resume and any((*given, luks_passphrase_file, luks_new_uuid)):
        raise UsageError("--resume continues with the recorded plan and options; give no others")
    problem = grow_lv_problem(grow_lv) if grow_lv is not None else None
    if problem:
        raise UsageError(f"--grow-lv: {problem}")
    if luks_passphrase_file is not None:  # checked now, read when the layout is recreated
        read_luks_passphrase(luks_passphrase_file, "--luks-passphrase-file", UsageError)
    for name in (from_step, only):
        if name and name not in step_ids(RECOVER):
            raise UsageError(f"no step {name!r}; the steps are: {', '.join(step_ids(RECOVER))}")
    plan = load_plan(plan_file) if plan_file else None
    state_path = work_dir / STATE_FILE
    continuing = resume or ((from_step or only) and state_path.exists() and not restart)
    if continuing:
        options = Options(**State.load(state_path).options)
        # --from/--only may run a step again another way (--only verify --verify full).
        options.grow_lv = grow_lv or options.grow_lv
        if luks_passphrase_file:
            options.luks_passphrase_file = os.path.abspath(luks_passphrase_file)
        options.luks_new_uuid = luks_new_uuid or options.luks_new_uuid
        options.initramfs = initramfs or options.initramfs
        options.verify = verify or options.verify
        options.log_file = os.path.abspath(app.log_path) if app.log_path else options.log_file
        if plan is None and options.plan_file:
            plan = load_plan(Path(options.plan_file), check_secret_file=False)
    else:
        options = _options(
            app, plan, work_dir, target_root, when=when, grow=grow, grow_lv=grow_lv,
            after=after, initramfs=initramfs, verify=verify, yes=yes, targets=targets,
            luks_passphrase_file=luks_passphrase_file, luks_new_uuid=luks_new_uuid,
        )  # fmt: skip
    answers = Answers(plan.answers if plan else {}, interactive=False if plan else None)
    echo = (lambda text: click.echo(text, err=True)) if as_json else click.echo
    with contextlib.ExitStack() as stack:
        callback = stack.enter_context(progress(not as_json))
        ctx = Context(options, answers, echo=echo, progress=callback, quiet=paused)
        runner = Runner(RECOVER, ctx, ctx.state_path)
        if dry_run:
            _dry_run(runner, ctx)
            return
        stack.enter_context(exclusive(LOCK_DIR, "recover"))
        stack.enter_context(guardian.watching(ctx.target_root))  # mounts never outlive a kill
        if restart:
            _forget(ctx)
        if continuing:
            runner.load()
        else:
            runner.start(dataclasses.asdict(options))
        assert runner.state is not None
        runner.state.options = dataclasses.asdict(options)
        steps = runner.selection(from_step=from_step, only=only)
        if not steps:
            echo("every step is done already; nothing to resume")
        try:
            runner.run(steps, step_by_step=step_by_step)
        except Stopped as stop:
            echo(f"stopped before {stop.step_id}; continue with: rescue recover --resume")
        finally:
            _print_report(report(runner.state), as_json, ctx.work_dir)
        missing = ctx.facts.metadata_warnings
        if missing and report(runner.state)["outcome"] == "success":
            raise IncompleteRestoreError(
                f"the system is recovered, but {len(missing)} kind(s) of metadata could not be "
                f"put back: {missing[0]}"
            )


def _dry_run(runner: Runner, ctx: Context) -> None:
    click.echo("Dry run: nothing on the disks is changed. The steps, in order:")
    for number, (step, actions, error) in enumerate(runner.dry_run(), start=1):
        mark = "" if not error else f"  (FAILS NOW: {error})"
        title = title_of(step, ctx)
        click.echo(f"[{number:>2}/{len(runner.workflow)}] {step.ID}: {title}{mark}")
        for action in actions:
            click.echo(f"      {action}")


def _forget(ctx: Context) -> None:
    """--restart: put the rescue system's identity back and drop the recorded state."""
    restore_identity.put_back(ctx)
    for name in (STATE_FILE, "manifest.json", REPORT_FILE):
        (ctx.work_dir / name).unlink(missing_ok=True)
    for name in ("identity", "from-backup"):
        remove_own(ctx.work_dir / name)  # rescue's own copies (the originals are put back)
