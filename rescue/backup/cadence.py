"""When a full is due, when the timer fires, and how far back the kept chains reach (planned by
the settings, and as the destination holds them now).

Why calendar periods and not an age: a timer with a random delay fires at 02:30:10 one Monday
and 02:30:05 the next, so "the last full is older than 7 days" is false by five seconds and the
week's full silently becomes an incremental. Here a full is due when the last full was taken
before the start of the current period, which begins at the configured start time: each day
(daily), each Monday (weekly) or the first of each month (monthly). A missed week or a month
boundary then needs no special case: the first run in a new period is a full.

A clock that reads earlier than the newest backup is refused: duplicity would file the new set
before the chains it follows, and retention would then remove the newest backups.

Times are naive local datetimes, as systemd's calendar and the admin's start time are local.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from rescue.backup.sets import Status
from rescue.backup.timespec import iso
from rescue.config import Schedule
from rescue.errors import ScheduleClockError

Kind = Literal["full", "incremental"]
FullEvery = Literal["daily", "weekly", "monthly"]
IncrementalEvery = Literal["hourly", "daily", "weekly"]

# A set this far in the future is a clock problem, not a rounding difference.
CLOCK_SLACK = dt.timedelta(minutes=2)

PERIOD_WORDS = {"daily": "day", "weekly": "week", "monthly": "month"}
RUN_WORDS = {"hourly": "hour", "daily": "day", "weekly": "week"}
PERIOD_DAYS = {"daily": 1, "weekly": 7, "monthly": 30}
STEP = {"hourly": dt.timedelta(hours=1), "daily": dt.timedelta(days=1)}


@dataclass(frozen=True)
class Decision:
    """What the next run makes, and why, in words an admin can check."""

    kind: Kind
    reason: str


def period_start(moment: dt.datetime, full_every: FullEvery, start: dt.time) -> dt.datetime:
    """The start of the full period that holds moment: the latest start-time anchor (each day,
    each Monday, or each first of the month) at or before it."""
    anchor = dt.datetime.combine(moment.date(), start)
    if full_every == "daily":
        return anchor if anchor <= moment else anchor - dt.timedelta(days=1)
    if full_every == "weekly":
        anchor -= dt.timedelta(days=moment.weekday())
        return anchor if anchor <= moment else anchor - dt.timedelta(days=7)
    anchor = anchor.replace(day=1)
    if anchor <= moment:
        return anchor
    previous = anchor - dt.timedelta(days=1)
    return previous.replace(day=1)


def decide(
    now: dt.datetime,
    last_full: dt.datetime | None,
    last_set: dt.datetime | None,
    full_every: FullEvery,
    start: dt.time,
) -> Decision:
    """Full or incremental for a run at now, given the newest full and the newest set of any
    kind; ScheduleClockError when the clock reads earlier than the newest set."""
    newest = max((t for t in (last_full, last_set) if t is not None), default=None)
    if newest is not None and newest > now + CLOCK_SLACK:
        raise ScheduleClockError(
            f"the clock reads {now:%Y-%m-%d %H:%M}, before the newest backup "
            f"({newest:%Y-%m-%d %H:%M}); set the clock right (timedatectl, NTP) and run again: "
            "no backup was made"
        )
    if last_full is None:
        return Decision("full", "there is no backup chain yet")
    begins = period_start(now, full_every, start)
    word = PERIOD_WORDS[full_every]
    if last_full < begins:
        return Decision(
            "full",
            f"fulls are {full_every} and the last one ({last_full:%Y-%m-%d %H:%M}) is from "
            f"before this {word}'s start ({begins:%Y-%m-%d %H:%M})",
        )
    return Decision(
        "incremental",
        f"this {word}'s full was made at {last_full:%Y-%m-%d %H:%M}; fulls are {full_every}",
    )


@dataclass(frozen=True)
class _Days:
    """When in a period a timer fires: each hour at start's minute, or at start's time of each
    day, of one weekday (0 is Sunday) or of one day of the month."""

    hourly: bool = False
    weekday: int | None = None
    monthday: int | None = None

    def systemd(self, start: dt.time) -> str:
        """As a systemd OnCalendar expression."""
        weekday = f"{_WEEKDAY_NAMES[self.weekday]} " if self.weekday is not None else ""
        date = f"*-*-{self.monthday:02d}" if self.monthday else "*-*-*"
        hour = "*" if self.hourly else f"{start.hour:02d}"
        return f"{weekday}{date} {hour}:{start.minute:02d}:00"

    def cron(self, start: dt.time) -> str:
        """As the five fields of a crontab line."""
        hour = "*" if self.hourly else str(start.hour)
        weekday = "*" if self.weekday is None else str(self.weekday)
        return f"{start.minute} {hour} {self.monthday or '*'} * {weekday}"


_WEEKDAY_NAMES = {0: "Sun", 1: "Mon"}
# The backups run each incremental period; weekly ones on Mondays, where a week begins.
_RUN_DAYS = {"hourly": _Days(hourly=True), "daily": _Days(), "weekly": _Days(weekday=1)}
# The drills: out of the way of Monday's weekly full, on Sundays; monthly on the 1st.
_DRILL_DAYS = {"daily": _Days(), "weekly": _Days(weekday=0), "monthly": _Days(monthday=1)}


def on_calendar(incremental_every: IncrementalEvery, start: dt.time) -> str:
    """The systemd OnCalendar expression of the runs: every incremental period at the start
    time (hourly runs keep its minute)."""
    return _RUN_DAYS[incremental_every].systemd(start)


def cron_fields(incremental_every: IncrementalEvery, start: dt.time) -> str:
    """The same runs as on_calendar, as the five fields of a crontab line."""
    return _RUN_DAYS[incremental_every].cron(start)


def drill_calendar(drill_every: str, start: dt.time) -> str:
    """The systemd OnCalendar expression of the scheduled drills: each day, each Sunday (out of
    the way of Monday's weekly full) or each first of the month, at start."""
    return _DRILL_DAYS[drill_every].systemd(start)


def drill_cron_fields(drill_every: str, start: dt.time) -> str:
    """The same drills as drill_calendar, as the five fields of a crontab line."""
    return _DRILL_DAYS[drill_every].cron(start)


DRILL_WORDS = {
    "daily": "every day",
    "weekly": "every Sunday",
    "monthly": "on the 1st of each month",
}


def next_runs(
    now: dt.datetime, incremental_every: IncrementalEvery, start: dt.time, count: int
) -> list[dt.datetime]:
    """The next count times on_calendar fires after now."""
    if incremental_every == "hourly":
        slot = now.replace(minute=start.minute, second=0, microsecond=0)
    else:
        slot = dt.datetime.combine(now.date(), start)
        if incremental_every == "weekly":
            slot -= dt.timedelta(days=now.weekday())
    step = STEP.get(incremental_every, dt.timedelta(days=7))
    while slot <= now:
        slot += step
    return [slot + i * step for i in range(count)]


def planned_runs(
    now: dt.datetime,
    last_full: dt.datetime | None,
    last_set: dt.datetime | None,
    full_every: FullEvery,
    incremental_every: IncrementalEvery,
    start: dt.time,
    count: int,
) -> list[tuple[dt.datetime, Decision]]:
    """The next count runs and what each will make, assuming each one succeeds."""
    plans = []
    for when in next_runs(now, incremental_every, start, count):
        decision = decide(when, last_full, last_set, full_every, start)
        plans.append((when, decision))
        last_set = when
        if decision.kind == "full":
            last_full = when
    return plans


def restore_window(full_every: FullEvery, incremental_every: IncrementalEvery, keep: int) -> str:
    """How far back the kept chains reach, as an admin reads it: "you can restore any day of
    the last 4 weeks (28 days)". With keep chains it is between keep-1 and keep periods, just
    after and just before a full; the longer one is the promise an admin plans with."""
    unit = RUN_WORDS[incremental_every]
    word = PERIOD_WORDS[full_every]
    days = keep * PERIOD_DAYS[full_every]
    about = "about " if full_every == "monthly" else ""
    span = f"{keep} {word}s" if keep > 1 else f"{word}"
    if full_every == "daily":
        return f"you can restore any {unit} of the last {span}"
    return f"you can restore any {unit} of the last {span} ({about}{days} days)"


def window_now(status: Status, now: float) -> dict[str, object] | None:
    """The restore window the destination holds now: from its oldest restorable set to now.
    None without sets. Unlike restore_window (what the settings plan), this is what exists:
    right after retention removed a chain, or with one young chain, it is much shorter."""
    if not status.sets:
        return None
    oldest = status.sets[0].time
    return {
        "oldest_set": iso(oldest),
        "oldest_time": oldest,
        "seconds": max(0, int(now - oldest)),
        "sets": len(status.sets),
        "chains": len(status.chains),
    }


def last_times(status: Status) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The newest full and the newest set of any kind, as local datetimes."""
    full = status.last_full()
    newest = max((s.time for s in status.sets), default=None)
    local = dt.datetime.fromtimestamp
    return (local(full.time) if full else None, local(newest) if newest is not None else None)


def decide_for(status: Status, schedule: Schedule, now: dt.datetime) -> Decision:
    """decide() for the sets a destination holds, with the settings' schedule."""
    last_full, last_set = last_times(status)
    return decide(now, last_full, last_set, schedule.full_every, schedule.start)


def upcoming(
    status: Status, schedule: Schedule, now: dt.datetime, count: int
) -> list[tuple[dt.datetime, Decision]]:
    """planned_runs() for the sets a destination holds, with the settings' schedule."""
    last_full, last_set = last_times(status)
    return planned_runs(
        now, last_full, last_set, schedule.full_every, schedule.incremental_every,
        schedule.start, count,
    )  # fmt: skip


def window_of(schedule: Schedule) -> str:
    """restore_window() for the settings' schedule."""
    return restore_window(schedule.full_every, schedule.incremental_every, schedule.keep_full)
