"""`rescue drill`: prove that backups can be restored, byte for byte."""

from __future__ import annotations

from pathlib import Path

import click

from rescue.backup import monitoring
from rescue.backup.drill import DrillReport, run_configured, run_demo
from rescue.cli.main import App, dir_option
from rescue.cli.render import emit_json, human_seconds, progress, table
from rescue.errors import DrillMismatchError
from rescue.units import human_size


@click.command()
@click.option(
    "--demo",
    is_flag=True,
    help="Run the built-in drill even when a settings file exists.",
)
@click.option(
    "--path",
    default="/",
    show_default=True,
    help="With settings: restore and compare only this part of the backup.",
)
@dir_option(
    "--scratch", "With settings: restore into this directory (it must have room for the restore)."
)
@click.option("--keep", is_flag=True, help="Keep the drill's temporary files and print where.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as data.")
@click.pass_obj
def drill(app: App, demo: bool, path: str, scratch: Path | None, keep: bool, as_json: bool) -> None:
    """Back up, restore and compare, and report "identical" or every difference.

    \b
    With no settings file (or with --demo), it needs nothing: it generates a sample tree,
    backs it up with encryption to a temporary local destination, changes it, makes an
    incremental, shows the status, restores the whole tree and one file as of the earlier set,
    and compares each with what was backed up.

    \b
    With settings, it restores the configured backup (or --path) into a scratch directory and
    compares every restored file with the live one, skipping files changed since the backup.
    Run it regularly ([schedule] drill_every does): an untested backup is a hope, not a
    backup. Each such drill is recorded (rescue status shows the last), written to the
    [monitoring] textfile and pinged to drill_ping_url.

    Exits 41 when anything differs.
    """
    if demo or not app.config_path.exists():
        if not as_json:
            click.echo("drill: no settings file; running the built-in drill on a sample tree")
        with progress(not as_json) as callback:
            report = run_demo(callback, keep)
        _finish(report, as_json)
        return
    settings = app.settings()
    with monitoring.monitored(settings, "drill", _warn):
        with progress(not as_json) as callback:
            report = run_configured(settings, path, callback, keep, scratch)
        _finish(report, as_json)


def _warn(problem: str) -> None:
    click.echo(f"rescue: warning: {problem}", err=True)


def _finish(report: DrillReport, as_json: bool) -> None:
    """Print the report; a mismatch is an error (exit 41), after the report is shown."""
    if as_json:
        emit_json(report.as_dict())
    else:
        _print(report)
    if not report.identical:
        count = sum(len(d) for _, d in report.checks)
        raise DrillMismatchError(f"drill found {count} difference(s) between backup and restore")


def _print(report: DrillReport) -> None:
    table(
        f"backup sets at {report.destination}",
        ["chain", "type", "date", "volumes", "size"],
        [
            [
                str(s["chain"]),
                str(s["kind"]),
                str(s["date"]),
                str(s["volumes"]),
                human_size(s["bytes"]),
            ]
            for s in report.sets
        ],
    )
    click.echo(
        f"data: {human_size(report.source_bytes)} backed up, "
        f"{human_size(report.bytes_written)} written, "
        f"{report.restored_files} entries / {human_size(report.restored_bytes)} restored, "
        f"{human_size(report.compared_bytes)} compared"
    )
    table("phases", ["phase", "time"], [[p, human_seconds(s)] for p, s in report.phases])
    if report.skipped_changed:
        click.echo(f"skipped {report.skipped_changed} entries changed since the backup")
    for check, diffs in report.checks:
        if not diffs:
            click.echo(f"{check}: identical")
            continue
        click.echo(f"{check}: {len(diffs)} difference(s)")
        for line in diffs[:50]:
            click.echo(f"  {line}")
        if len(diffs) > 50:
            click.echo(f"  ... and {len(diffs) - 50} more")
    click.echo("RESULT: identical" if report.identical else "RESULT: DIFFERENCES FOUND")
