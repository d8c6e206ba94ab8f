"""`rescue schedule install|show|remove`: run the backups by themselves, at the [schedule] times."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from rescue.backup import schedule_units
from rescue.backup.cadence import (
    DRILL_WORDS,
    RUN_WORDS,
    drill_calendar,
    on_calendar,
    upcoming,
    window_of,
)
from rescue.backup.engine import Engine
from rescue.cli.main import App, root_option
from rescue.cli.render import emit_json
from rescue.config import Schedule

ROOT_OPTION = root_option(
    "The system to install into (a mounted or chroot system: written, not started)."
)


@click.group("schedule")
def schedule_group() -> None:
    """Run `rescue backup` by itself at the [schedule] times (systemd timer, else cron.d).

    \b
    The timer fires every incremental_every period at start_time (plus a random delay of up to
    random_delay_minutes; cron has none), catches up a run missed while the machine was off,
    and each run decides full or incremental by full_every. With drill_every, a second timer
    runs `rescue drill` at drill_time. Change the settings, then install again.
    """


def _describe(schedule: Schedule, kind: str) -> str:
    """The schedule in words; the random delay only where a systemd timer adds it (cron runs
    at the exact time)."""
    delay = (
        f" (+ up to {schedule.random_delay_minutes} min at random)"
        if schedule.random_delay_minutes and kind == "systemd"
        else ""
    )
    every = RUN_WORDS[schedule.incremental_every]
    return (
        f"fulls {schedule.full_every}, a run every {every} at {schedule.start_time}{delay}, "
        f"keeping {schedule.keep_full} full chain(s)"
    )


def _drills(schedule: Schedule) -> str:
    """The scheduled drills in words."""
    if schedule.drill_every == "off":
        return "off ([schedule] drill_every)"
    return f"`rescue drill` {DRILL_WORDS[schedule.drill_every]} at {schedule.drill_time}"


@schedule_group.command()
@click.option("--cron", "use_cron", is_flag=True, help="Write a cron.d file even under systemd.")
@ROOT_OPTION
@click.pass_obj
def install(app: App, use_cron: bool, root: Path) -> None:
    """Install (or update) the timer and service, or a cron.d file where systemd is not running.

    Under a running systemd the timer is enabled and started at once. Elsewhere (a container, a
    chroot) a cron.d file runs the same command; cron does not catch up missed runs.
    """
    settings = app.settings()
    kind, note = schedule_units.pick_kind(root, use_cron)
    done = schedule_units.install(settings, app.config_path, root, kind)
    if note:
        click.echo(f"{note}: wrote a cron.d file instead")
    for path in done.files:
        click.echo(f"wrote {path}")
    schedule = settings.schedule
    if done.kind == "cron":
        click.echo(
            "cron runs at the start time exactly: no random delay, no catch-up of missed runs"
        )
    elif schedule_units.systemd_running(root):
        click.echo(f"started {schedule_units.TIMER}; see it with: systemctl list-timers rescue-*")
    else:
        click.echo(f"enabled {schedule_units.TIMER} in {root}; it starts when that system boots")
    click.echo(f"schedule: {_describe(schedule, done.kind or kind)}")
    click.echo(f"drills: {_drills(schedule)}")
    click.echo(window_of(schedule))


@schedule_group.command()
@click.option("--count", default=8, show_default=True, help="How many runs to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the same as data.")
@ROOT_OPTION
@click.pass_obj
def show(app: App, count: int, as_json: bool, root: Path) -> None:
    """Show what is installed, the next runs and what each will make, and the restore window.

    The prediction reads this host's cache of the destination (no connection is made) and
    assumes each run succeeds.
    """
    settings = app.settings()
    schedule = settings.schedule
    where = schedule_units.installed(root)
    kind = where.kind or schedule_units.pick_kind(root, False)[0]  # what install would write
    runs = upcoming(Engine(settings).local_status(), schedule, dt.datetime.now(), count)
    if as_json:
        emit_json(
            {
                "installed": where.kind,
                "files": [str(f) for f in where.files],
                "on_calendar": on_calendar(schedule.incremental_every, schedule.start),
                "random_delay_minutes": schedule.random_delay_minutes,
                "drill_every": schedule.drill_every,
                "drill_on_calendar": drill_calendar(schedule.drill_every, schedule.drill_start)
                if schedule.drill_every != "off"
                else None,
                "next_runs": [
                    {"time": t.isoformat(), "kind": d.kind, "reason": d.reason} for t, d in runs
                ],
                "window": window_of(schedule),
            }
        )
        return
    if where.kind is None:
        click.echo("installed: nothing; run `rescue schedule install` to start the schedule")
    else:
        click.echo(f"installed: {where.kind} ({', '.join(str(f) for f in where.files)})")
    click.echo(f"schedule: {_describe(schedule, kind)}")
    click.echo(f"drills: {_drills(schedule)}")
    click.echo("next runs (if each succeeds):")
    for when, decision in runs:
        why = f"  ({decision.reason})" if decision.kind == "full" else ""
        click.echo(f"  {when:%a %Y-%m-%d %H:%M}  {decision.kind}{why}")
    click.echo(window_of(schedule))


@schedule_group.command()
@ROOT_OPTION
def remove(root: Path) -> None:
    """Stop and remove the timer and service, or the cron.d file. The backups stay."""
    gone = schedule_units.remove(root)
    for path in gone:
        click.echo(f"removed {path}")
    if not gone:
        click.echo("no schedule was installed")
