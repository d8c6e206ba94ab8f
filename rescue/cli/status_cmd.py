"""`rescue status`, `rescue files` and `rescue versions`: what the backup holds."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click

from rescue.backup import history, schedule_units
from rescue.backup.cadence import upcoming, window_now, window_of
from rescue.backup.engine import Engine
from rescue.backup.timespec import EXAMPLES, iso, parse_time
from rescue.cli.main import App
from rescue.cli.render import emit_json, human_seconds, table
from rescue.errors import ScheduleClockError
from rescue.units import human_size

TIME_HELP = f"As of this time: {EXAMPLES}. Default: the newest set."
# -t/--time WHEN: the one spelling of "as of" for every command that reads a backup set.
TIME_OPTION = click.option("-t", "--time", "when", default=None, help=TIME_HELP)


RECENT_RUNS = 5


def _run_dict(run: history.Run) -> dict[str, object]:
    return {
        "start": iso(run.start),
        "end": iso(run.end),
        "seconds": round(run.seconds, 1),
        "mode": run.mode,
        "kind": run.kind,
        "outcome": run.outcome,
        "bytes": run.bytes,
        "set_time": iso(run.set_time) if run.set_time is not None else None,
        "error": run.error,
    }


def _run_row(run: history.Run) -> list[str]:
    made = run.kind or "-"
    return [
        iso(run.start),
        f"{run.mode} -> {made}" if run.mode != made else made,
        run.outcome,
        human_seconds(run.seconds),
        human_size(run.bytes) if run.bytes is not None else "-",
        run.error or "",
    ]


RUN_COLUMNS = ["start", "mode -> made", "outcome", "duration", "written", "error"]


def _history(engine: Engine, as_json: bool) -> None:
    runs = history.runs(engine.archive_dir)
    if as_json:
        emit_json([_run_dict(r) for r in runs])
        return
    if not runs:
        click.echo(f"no runs recorded yet in {engine.archive_dir / history.HISTORY_FILE}")
        return
    table(f"{len(runs)} recorded run(s)", RUN_COLUMNS, [_run_row(r) for r in runs])


def _window_line(window: dict[str, Any] | None) -> str:
    """What can be restored now, from the sets that exist (not what the settings plan)."""
    if window is None:
        return "restore window: none, there is no backup to restore from"
    sets = f"{window['sets']} set(s) in {window['chains']} chain(s)"
    age = human_seconds(float(window["seconds"]))
    return f"restore window: back to {window['oldest_set']} ({age} ago; {sets})"


def last_drill(engine: Engine) -> tuple[str, dict[str, object] | None]:
    """The last recorded drill, as one status line and as data: "last drill: identical,
    2026-12-06 10:00, 12.3 MiB compared, restored in 4.1s"."""
    drills = history.drills(engine.archive_dir)
    if not drills:
        return "last drill: none recorded (run `rescue drill`, or set drill_every)", None
    d = drills[-1]
    data: dict[str, object] = {
        "start": iso(d.start),
        "outcome": d.outcome,
        "path": d.path,
        "set_time": iso(d.set_time) if d.set_time is not None else None,
        "restore_seconds": d.restore_seconds,
        "compared_bytes": d.compared_bytes,
        "differences": d.differences,
        "error": d.error,
    }
    when = dt.datetime.fromtimestamp(d.start).strftime("%Y-%m-%d %H:%M")
    if d.outcome in ("failure", "interrupted"):
        return f"last drill: {d.outcome.upper()}, {when}: {d.error}", data
    word = "identical" if d.outcome == "identical" else f"{d.differences} DIFFERENCE(S)"
    took = human_seconds(d.restore_seconds or 0.0)
    compared = human_size(d.compared_bytes or 0)
    return f"last drill: {word}, {when}, {compared} compared, restored in {took}", data


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the same as data.")
@click.option(
    "--history",
    "show_history",
    is_flag=True,
    help="List every recorded run instead (from this host's records; no connection).",
)
@click.pass_obj
def status(app: App, as_json: bool, show_history: bool) -> None:
    """Show every backup set, the last runs, the restore window and the next scheduled run.

    A chain is a full backup and the incrementals that depend on it; restoring any set needs
    its whole chain. Set sizes are the volumes at the destination; durations and failures are
    known for the runs this host made. The restore window is what the sets at the destination
    reach back to now; the planned window is what the schedule settings aim at.
    """
    settings = app.settings()
    engine = Engine(settings)
    if show_history:
        _history(engine, as_json)
        return
    result = engine.status()
    window = window_now(result, dt.datetime.now().timestamp())
    runs = history.runs(engine.archive_dir)[-RECENT_RUNS:]
    schedule = settings.schedule
    installed = schedule_units.installed(Path("/")).kind
    try:
        when, decision = upcoming(result, schedule, dt.datetime.now(), 1)[0]
        next_run: dict[str, object] = {
            "time": when.astimezone().isoformat(timespec="seconds"),
            "kind": decision.kind,
            "scheduled_by": installed,
        }
    except ScheduleClockError as exc:
        next_run = {"time": None, "kind": None, "scheduled_by": installed, "error": str(exc)}
    if as_json:
        emit_json(
            {
                **result.as_dict(),
                "last_drill": last_drill(engine)[1],
                "last_run": _run_dict(runs[-1]) if runs else None,
                "recent_runs": [_run_dict(r) for r in runs],
                "window": window,
                "planned_window": window_of(schedule),
                "next_run": next_run,
            }
        )
        return
    if result.damaged:
        click.echo(
            f"warning: {result.damaged} chain(s) at {result.destination} have lost their "
            "volumes and cannot be restored; run a full backup now",
            err=True,
        )
    if not result.sets:
        click.echo(f"no backup sets at {result.destination}")
    else:
        rows = [
            [str(s.chain), s.kind, iso(s.time), str(s.volumes), human_size(s.bytes)]
            for s in result.sets
        ]
        table(
            f"{result.destination}: {len(result.sets)} set(s) in {len(result.chains)} chain(s)",
            ["chain", "type", "date", "volumes", "size"],
            rows,
        )
    if result.orphaned or result.incomplete:
        click.echo(
            f"warning: {result.orphaned} orphaned and {result.incomplete} incomplete set(s); "
            "an interrupted backup leaves these, the next run cleans them up"
        )
    click.echo(last_drill(engine)[0])
    if runs:
        last = runs[-1]
        word = "succeeded" if last.outcome == "success" else last.outcome.upper()
        tail = f": {last.error}" if last.error else ""
        click.echo(f"last run: {word} at {iso(last.start)}{tail}")
        table(f"the last {len(runs)} run(s)", RUN_COLUMNS, [_run_row(r) for r in runs])
    else:
        click.echo("last run: none recorded on this host")
    click.echo(_window_line(window))
    click.echo(f"planned window (schedule settings): {window_of(schedule)}")
    if next_run["time"] is None:
        click.echo(f"next run: {next_run['error']}")
    else:
        how = (
            f"by the {installed} schedule"
            if installed
            else ("if scheduled: nothing is installed, run `rescue schedule install`")
        )
        click.echo(f"next run: {next_run['time']}, {next_run['kind']} ({how})")


@click.command()
@click.argument("path", required=False, default="/")
@TIME_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the list as data.")
@click.pass_obj
def files(app: App, path: str, when: str | None, as_json: bool) -> None:
    """List what the backup holds under PATH as of a time.

    PATH is a path on the backed-up host (/etc) or relative to the backup root (etc). Exit 33
    when PATH is not in that set.
    """
    at = parse_time(when) if when else None
    entries = Engine(app.settings()).list_files(at, path)
    if as_json:
        emit_json([{"path": e.path, "mtime": iso(e.mtime), "type": e.type} for e in entries])
        return
    for e in entries:
        click.echo(f"{iso(e.mtime)}  {e.type:4}  {e.path or '.'}")


@click.command()
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print the versions as data.")
@click.pass_obj
def versions(app: App, path: str, as_json: bool) -> None:
    """List the dates PATH can be restored to, and whether it changed in each set.

    Use a date from this list with `rescue restore PATH --to DEST -t DATE`.
    """
    found = Engine(app.settings()).versions(path)
    if as_json:
        emit_json([v.as_dict() for v in found])
        return
    table(
        f"{path}: restorable from {len(found)} set(s)",
        ["set date", "set type", "changed", "file mtime", "type"],
        [
            [
                iso(v.set.time),
                v.set.kind,
                "yes" if v.changed else "no",
                iso(v.mtime) if v.mtime else "-",
                v.type or "-",
            ]
            for v in found
        ],
    )
