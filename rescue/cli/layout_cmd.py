"""`rescue layout show | plan | apply`: read the disks, and recreate a recorded layout on new ones.

The plan is a shell script an admin can read (ReaR's diskrestore.sh): `plan` prints it and changes
nothing; `apply` runs it only after an explicit yes, typed at the terminal or given as --yes.
The work is rescue.layout.plan's, which the recovery steps use too: this module parses the
options and prints.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from rescue.backup.engine import Engine
from rescue.backup.timespec import parse_time
from rescue.cli.main import App, dir_option
from rescue.cli.status_cmd import TIME_OPTION
from rescue.errors import UsageError
from rescue.layout import plan as service
from rescue.layout.mapping import read_mapping_file
from rescue.layout.recreate import SCRIPT_NAME
from rescue.layout.recreate.plan import GROW_LV_HELP, GROW_LV_NONE, grow_lv_problem
from rescue.layout.summary import layout_summary
from rescue.prompts import Answers

DEFAULT_LOG_DIR = Path("/var/log/rescue")


@click.group("layout")
def layout_group() -> None:
    """Disk layouts: what this host has, and recreating a recorded one on blank disks."""


@layout_group.command()
@click.argument("devices", nargs=-1)
def show(devices: tuple[str, ...]) -> None:
    """Show the disks, partitions and file systems of this host (or of DEVICES)."""
    for line in layout_summary(service.live_layout(devices)):
        click.echo(line)


@dataclass
class PlanRequest:
    """The options plan and apply share: where the layout comes from and where it may go."""

    manifest_file: Path | None
    from_backup: bool
    when: str | None
    targets: tuple[str, ...]
    mapping_file: Path | None
    grow: bool
    grow_lv: str


def _source(app: App, request: PlanRequest) -> service.Source:
    """The recorded layout: from a manifest file, or restored from the backup."""
    if request.manifest_file is not None and request.from_backup:
        raise UsageError("give either --manifest or --from-backup, not both")
    if request.manifest_file is not None:
        return service.source_of(service.read_manifest(request.manifest_file))
    if request.from_backup:
        at = parse_time(request.when) if request.when else None
        return service.source_of(Engine(app.settings()).load_manifest(at))
    raise UsageError("say where the layout comes from: --manifest FILE or --from-backup")


def _plan(app: App, request: PlanRequest) -> service.LayoutPlan:
    problem = grow_lv_problem(request.grow_lv)
    if problem:
        raise UsageError(f"--grow-lv: {problem}")
    source = _source(app, request)
    state = service.target_state(app.settings() if request.from_backup else None)
    return service.plan_layout(
        source,
        request.targets,
        state,
        warn=lambda text: click.echo(f"WARNING: {text}", err=True),
        explicit=read_mapping_file(request.mapping_file) if request.mapping_file else None,
        grow=request.grow,
        grow_lv=request.grow_lv,
    )


def _layout_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add the shared options, handed to the command as one PlanRequest named `request`."""
    options = [
        click.option(
            "--manifest",
            "manifest_file",
            type=click.Path(path_type=Path, dir_okay=False, exists=True),
            help="A manifest file (e.g. restored with `rescue manifest show --from-backup`).",
        ),
        click.option("--from-backup", is_flag=True, help="Take the layout from the backup."),
        TIME_OPTION,
        click.option(
            "--target",
            "targets",
            multiple=True,
            help=(
                "A disk that may be written (repeat): a path or a stable id (serial:, wwn:, "
                "by-id:, file:IMAGE). Default: every disk of this machine."
            ),
        ),
        click.option(
            "--mapping-file",
            type=click.Path(path_type=Path, dir_okay=False, exists=True),
            help='Lines "SOURCE TARGET", e.g. "/dev/vda /dev/sdb", instead of automatic mapping.',
        ),
        click.option(
            "--grow/--no-grow",
            default=True,
            show_default=True,
            help="On a larger disk, let the last partition take the extra space.",
        ),
        click.option(
            "--grow-lv",
            metavar="none|last|VG/LV",
            default=GROW_LV_NONE,
            show_default=True,
            help=GROW_LV_HELP,
        ),
    ]
    fields = [f.name for f in dataclasses.fields(PlanRequest)]

    @functools.wraps(command)
    def bundled(*args: Any, **kwargs: Any) -> None:  # what click parsed, typed by the options
        request = PlanRequest(**{name: kwargs.pop(name) for name in fields})
        command(*args, request=request, **kwargs)

    for option in reversed(options):
        bundled = option(bundled)
    return bundled


@layout_group.command()
@_layout_options
@click.pass_obj
def plan(app: App, request: PlanRequest) -> None:
    """Print the disk mapping and the script that would recreate the layout. Changes nothing."""
    planned = _plan(app, request)
    for line in planned.lines():
        click.echo(f"# {line}")
    click.echo(planned.script())


@layout_group.command()
@_layout_options
@click.option("--yes", is_flag=True, help='Answer "recover.erase": erase the target disks.')
@dir_option("--log-dir", "Where the script that ran is kept.", DEFAULT_LOG_DIR)
@click.pass_obj
def apply(app: App, request: PlanRequest, yes: bool, log_dir: Path) -> None:
    """Recreate the layout on the target disks. ERASES them, after an explicit yes.

    The script is shown first. Without --yes, the recovery's question recover.erase is asked:
    type the word "yes" to go on; with no terminal to ask on, rescue refuses rather than guess.
    A layout with LUKS asks recover.luks_passphrase (or set RESCUE_LUKS_PASSPHRASE_FILE).
    """
    planned = _plan(app, request)
    for line in planned.lines():
        click.echo(line)
    script = planned.script()
    answers = Answers()
    if not yes:
        if not answers.interactive:
            raise UsageError("refusing to erase disks without --yes (no terminal to ask on)")
        click.echo(script)
    targets = list(planned.mapping.values())
    service.confirm_erase(answers.ask, targets, log_dir / SCRIPT_NAME, assume_yes=yes)
    service.apply_layout(script, log_dir, answers.ask, secret_dir=log_dir)
    click.echo("layout recreated; check it with: rescue layout show " + " ".join(targets))
