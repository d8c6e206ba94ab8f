"""`rescue manifest show`: what recovery will know about this host."""

from __future__ import annotations

import click

from rescue.backup.engine import Engine
from rescue.backup.timespec import parse_time
from rescue.cli.main import App
from rescue.cli.status_cmd import TIME_OPTION
from rescue.recovery import manifest


@click.group("manifest")
def manifest_group() -> None:
    """The host manifest that every backup carries (layout, ids, excluded dirs, hard links)."""


@manifest_group.command()
@click.option(
    "--from-backup",
    is_flag=True,
    help="Show the manifest stored in the backup instead of building one from this host.",
)
@TIME_OPTION
@click.pass_obj
def show(app: App, from_backup: bool, when: str | None) -> None:
    """Print the manifest as JSON.

    Without --from-backup it is built now from this host and the settings, exactly as the next
    backup would write it. With --from-backup it is restored alone from the backup (as of -t),
    which is what recovery does first.
    """
    settings = app.settings()
    if not from_backup:
        data = manifest.build(settings)
    else:
        data = Engine(settings).load_manifest(parse_time(when) if when else None)
    click.echo(data.to_json(), nl=False)
