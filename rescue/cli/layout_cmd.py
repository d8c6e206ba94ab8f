"""`rescue layout show | plan | apply`: read the disks, and recreate a recorded layout on new ones.

The plan is a shell script an admin can read (ReaR's diskrestore.sh): `plan` prints it and changes
nothing; `apply` runs it only after an explicit yes, typed at the terminal or given as --yes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

from rescue import manifest
from rescue.cli.main import App
from rescue.cli.status_cmd import TIME_HELP
from rescue.engine import Engine
from rescue.errors import ManifestError, UsageError
from rescue.layout.capture import capture, layout_summary
from rescue.layout.mapping import describe_mapping, map_disks, read_mapping_file
from rescue.layout.model import Layout, layout_from_dict
from rescue.layout.recreate import apply_script, build_script
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


def _source_layout(
    app: App, manifest_file: Path | None, from_backup: bool, when: str | None
) -> Layout:
    if manifest_file is not None and from_backup:
        raise UsageError("give either --manifest or --from-backup, not both")
    if manifest_file is not None:
        data = manifest.load(manifest_file)
    elif from_backup:
        at = parse_time(when) if when else None
        with tempfile.TemporaryDirectory(prefix="rescue-manifest-") as tmp:
            target = Path(tmp) / "manifest.json"
            Engine(app.settings()).restore(manifest.MANIFEST_REL, target, at)
            data = manifest.load(target)
    else:
        raise UsageError("say where the layout comes from: --manifest FILE or --from-backup")
    if not data.get("layout"):
        raise ManifestError(
            f"the manifest holds no disk layout ({data.get('layout_error') or 'not recorded'})"
        )
    return layout_from_dict(data["layout"])


def _plan(
    app: App,
    manifest_file: Path | None,
    from_backup: bool,
    when: str | None,
    targets: tuple[str, ...],
    mapping_file: Path | None,
    grow: bool,
) -> tuple[list[str], str]:
    source = _source_layout(app, manifest_file, from_backup, when)
    target_disks = capture(list(targets) or None).disks
    explicit = read_mapping_file(mapping_file) if mapping_file else None
    protected = []
    if from_backup and app.settings().destination.method == "file":
        protected.append(app.settings().destination.path)
    mapping = map_disks(source, target_disks, explicit, protected=protected)
    return describe_mapping(source, target_disks, mapping), build_script(
        source, mapping, grow=grow, targets=target_disks
    )


def _layout_options(command):  # type: ignore[no-untyped-def]
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
    for option in reversed(options):
        command = option(command)
    return command


@layout_group.command()
@_layout_options
@click.pass_obj
def plan(
    app: App,
    manifest_file: Path | None,
    from_backup: bool,
    when: str | None,
    targets: tuple[str, ...],
    mapping_file: Path | None,
    grow: bool,
) -> None:
    """Print the disk mapping and the script that would recreate the layout. Changes nothing."""
    lines, script = _plan(app, manifest_file, from_backup, when, targets, mapping_file, grow)
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
def apply(
    app: App,
    manifest_file: Path | None,
    from_backup: bool,
    when: str | None,
    targets: tuple[str, ...],
    mapping_file: Path | None,
    grow: bool,
    yes: bool,
    log_dir: Path,
) -> None:
    """Recreate the layout on the target disks. ERASES them, after an explicit yes.

    The script is shown first. Without --yes, type the word "yes" to go on; with no terminal
    to ask on, rescue refuses rather than guess.
    """
    lines, script = _plan(app, manifest_file, from_backup, when, targets, mapping_file, grow)
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
    click.echo("layout recreated; check it with: rescue layout show " + " ".join(targets))
