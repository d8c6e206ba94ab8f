"""`rescue backup`: run a full or incremental backup now."""

from __future__ import annotations

import click

from rescue.cli.main import App
from rescue.cli.render import emit_json, human_seconds, progress
from rescue.config import check_gpg_key
from rescue.engine import Engine
from rescue.units import human_size


@click.command()
@click.option("--full", "mode", flag_value="full", help="Start a new chain with a full backup.")
@click.option(
    "--incremental", "mode", flag_value="incremental", help="Add an incremental to the last chain."
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@click.pass_obj
def backup(app: App, mode: str | None, as_json: bool) -> None:
    """Back up the selected files to the destination.

    Without --full or --incremental, a full is made when there is no chain yet or the last full
    is older than [schedule] full_every, and an incremental otherwise. After a full, retention
    keeps the newest [schedule] keep_full chains and removes older ones. Only one backup runs
    at a time.
    """
    settings = app.settings()
    check_gpg_key(settings)
    with progress(not as_json) as callback:
        summary = Engine(settings, progress=callback).backup(mode or "auto")  # type: ignore[arg-type]
    if as_json:
        emit_json(summary.as_dict())
        return
    click.echo(
        f"{summary.kind} backup done ({summary.reason}): {summary.files_changed} files changed "
        f"of {summary.source_files}, {human_size(summary.source_bytes)} scanned, "
        f"{human_size(summary.bytes_written)} written to {summary.destination} "
        f"in {human_seconds(summary.seconds)}"
    )
    if summary.removed_chains:
        click.echo(
            f"retention: removed {summary.removed_chains} old chain(s), "
            f"kept {settings.schedule.keep_full}"
        )
