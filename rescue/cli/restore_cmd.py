"""`rescue restore`: bring back a file or directory as of a time."""

from __future__ import annotations

from pathlib import Path

import click

from rescue.cli.main import App
from rescue.cli.render import emit_json, human_seconds, progress
from rescue.cli.status_cmd import TIME_HELP
from rescue.engine import Engine
from rescue.timespec import iso, parse_time
from rescue.units import human_size


@click.command()
@click.argument("path")
@click.option(
    "--to",
    "dest",
    required=True,
    type=click.Path(path_type=Path),
    help="Where the restored file or directory goes (the new name, not its parent).",
)
@click.option("-t", "--time", "when", default=None, help=TIME_HELP)
@click.option("--force", is_flag=True, help="Overwrite DEST if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@click.pass_obj
def restore(app: App, path: str, dest: Path, when: str | None, force: bool, as_json: bool) -> None:
    """Restore PATH from the backup into DEST, as of a time.

    PATH is a path on the backed-up host (/etc/hosts) or relative to the backup root; "/" is
    everything. Owners and modes are kept when run as root. An existing DEST is never touched
    without --force.

    \b
    Examples:
      rescue restore /etc/hosts --to /tmp/hosts
      rescue restore /home/alice --to /srv/alice-old -t 2W
      rescue restore / --to /mnt/everything -t 2026-11-01
    """
    at = parse_time(when) if when else None
    with progress(not as_json) as callback:
        summary = Engine(app.settings(), progress=callback).restore(path, dest, at, force)
    if as_json:
        emit_json(summary.as_dict())
        return
    click.echo(
        f"restored {summary.path} as of {iso(summary.time)} to {summary.destination}: "
        f"{summary.files} files, {human_size(summary.bytes)} "
        f"in {human_seconds(summary.seconds)}"
    )
