"""`rescue layout show | plan | apply`: read the disks, and recreate a recorded layout on new ones.

The plan is a shell script an admin can read (ReaR's diskrestore.sh): `plan` prints it and changes
nothing; `apply` runs it only after an explicit yes, typed at the terminal or given as --yes.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from rescue import manifest
from rescue.cli.main import App
from rescue.cli.status_cmd import TIME_HELP
from rescue.engine import Engine
from rescue.errors import ManifestError, UsageError
from rescue.layout.capture import capture
from rescue.layout.mapping import describe_mapping, map_disks, read_mapping_file
from rescue.layout.model import Layout, layout_from_dict
from rescue.layout.recreate import apply_script, build_script
from rescue.layout.summary import layout_summary
from rescue.timespec import parse_time

DEFAULT_LOG_DIR = Path("/var/log/rescue")


@click.group("layout")
def layout_group() -> None:
    """Disk layouts: what this host has, and recreating a recorded one on blank disks."""


@layout_group.command()
@click.argument("devices", nargs=-1)
def show(devices: tuple[str, ...]) -> None:
    """Show the disks, partitions and file systems of this host (or of DEVICES)."""
    for line in layout_summary(capture(list(devices) or None)):
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


def _source_layout(app: App, request: PlanRequest) -> tuple[Layout, list[str]]:
    """The recorded layout, and the excluded paths whose disks the mapping leaves out."""
    if request.manifest_file is not None and request.from_backup:
        raise UsageError("give either --manifest or --from-backup, not both")
    if request.manifest_file is not None:
        data = manifest.load(request.manifest_file)
    elif request.from_backup:
        at = parse_time(request.when) if request.when else None
        data = Engine(app.settings()).load_manifest(at)
    else:
        raise UsageError("say where the layout comes from: --manifest FILE or --from-backup")
    if not data.get("layout"):
        raise ManifestError(
            f"the manifest holds no disk layout ({data.get('layout_error') or 'not recorded'})"
        )
    return layout_from_dict(data["layout"]), manifest.excluded_mount_paths(data)


def _plan(app: App, request: PlanRequest) -> tuple[list[str], str]:
    source, excluded = _source_layout(app, request)
    target_disks = capture(list(request.targets) or None).disks
    explicit = read_mapping_file(request.mapping_file) if request.mapping_file else None
    protected = []
    if request.from_backup and app.settings().destination.method == "file":
        protected.append(app.settings().destination.path)
    mapping = map_disks(source, target_disks, explicit, protected=protected, excluded=excluded)
    script = build_script(source, mapping, grow=request.grow, targets=target_disks)
    return describe_mapping(source, target_disks, mapping, excluded), script


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
        click.option("-t", "--time", "when", default=None, help=TIME_HELP),
        click.option(
            "--target",
            "targets",
            multiple=True,
            help="A disk that may be written (repeat). Default: every disk of this machine.",
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
    ]
    fields = [f.name for f in dataclasses.fields(PlanRequest)]

    @functools.wraps(command)
    def bundled(*args: object, **kwargs: object) -> None:
        request = PlanRequest(**{name: kwargs.pop(name) for name in fields})  # type: ignore[arg-type]
        command(*args, request=request, **kwargs)

    for option in reversed(options):
        bundled = option(bundled)
    return bundled


@layout_group.command()
@_layout_options
@click.pass_obj
def plan(app: App, request: PlanRequest) -> None:
    """Print the disk mapping and the script that would recreate the layout. Changes nothing."""
    lines, script = _plan(app, request)
    for line in lines:
        click.echo(f"# {line}")
    click.echo(script)


@layout_group.command()
@_layout_options
@click.option("--yes", is_flag=True, help="Do not ask: erase the target disks and recreate.")
@click.option(
    "--log-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_LOG_DIR,
    show_default=True,
    help="Where the script that ran is kept.",
)
@click.pass_obj
def apply(app: App, request: PlanRequest, yes: bool, log_dir: Path) -> None:
    """Recreate the layout on the target disks. ERASES them, after an explicit yes.

    The script is shown first. Without --yes, type the word "yes" to go on; with no terminal
    to ask on, rescue refuses rather than guess.
    """
    lines, script = _plan(app, request)
    for line in lines:
        click.echo(line)
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("refusing to erase disks without --yes (no terminal to ask on)")
        click.echo(script)
        answer = click.prompt("Erase the target disks above and recreate the layout? Type yes")
        if answer.strip() != "yes":
            raise click.Abort()
    apply_script(script, log_dir)
    click.echo("layout recreated; check it with: rescue layout show " + " ".join(request.targets))
