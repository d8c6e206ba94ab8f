"""`rescue backup`: run a full or incremental backup now."""

from __future__ import annotations

import click

from rescue.backup import monitoring
from rescue.backup.engine import Engine
from rescue.backup.failure_hook import report_failure
from rescue.backup.results import BackupMode
from rescue.cli.main import App
from rescue.cli.render import emit_json, human_seconds, progress
from rescue.units import human_size


@click.command()
@click.option("--full", "mode", flag_value="full", help="Start a new chain with a full backup.")
@click.option(
    "--incremental", "mode", flag_value="incremental", help="Add an incremental to the last chain."
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@click.pass_obj
def backup(app: App, mode: BackupMode | None, as_json: bool) -> None:  # the flag_values
    """Back up the selected files to the destination.

    \b
    Without --full or --incremental (auto mode, as the timer runs it), a full is made when
    there is no chain yet or the last full is from before the current period of [schedule]
    full_every (each day, each Monday or each 1st, from start_time), and an incremental
    otherwise. A clock earlier than the newest backup is refused (exit 9). After a full,
    retention keeps the newest keep_full chains and removes older ones. Only one backup runs
    at a time. Every run is recorded (rescue status --history); a failed one calls the
    [schedule] on_failure hook with a summary on stdin. With [monitoring], each run pings
    ping_url (/start, then success or /fail) and rewrites the node_exporter textfile.
    """
    settings = app.settings()
    engine = Engine(settings)
    with monitoring.monitored(settings, "backup", _warn):
        try:
            with progress(not as_json) as callback:
                engine.progress = callback
                summary = engine.backup(mode or "auto")
        except BaseException as exc:
            if engine.last_run is not None:
                log_path = str(app.log_path) if app.log_path else None
                problem = report_failure(settings, engine.last_run, exc, log_path)
                if problem:
                    _warn(problem)
            raise
    if as_json:
        emit_json(summary.as_dict())
        return
    click.echo(
        f"{summary.kind} backup done ({summary.reason}): {summary.files_changed} files changed "
        f"of {summary.source_files}, {human_size(summary.source_bytes)} scanned, "
        f"{human_size(summary.bytes_written)} written to {summary.destination} "
        f"in {human_seconds(summary.seconds)}"
    )
    if summary.retention_note:
        click.echo(f"warning: {summary.retention_note}", err=True)
    if summary.removed_chains:
        click.echo(
            f"retention: removed {summary.removed_chains} old chain(s), "
            f"kept {settings.schedule.keep_full}"
        )


def _warn(problem: str) -> None:
    click.echo(f"rescue: warning: {problem}", err=True)
