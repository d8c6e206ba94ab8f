"""The full/incremental decision, the timer's slots and the restore window, over simulated dates.

2026-11-02 is a Monday. The start time is 02:30 throughout.
"""

from __future__ import annotations

import datetime as dt

import pytest

from rescue.backup.cadence import (
    cron_fields,
    decide,
    next_runs,
    on_calendar,
    period_start,
    planned_runs,
    restore_window,
)
from rescue.errors import ScheduleClockError

START = dt.time(2, 30)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("full_every", "now", "last_full", "kind"),
    [
        # weekly: the week begins Monday 02:30
        (
            "weekly",
            "2026-11-09 02:30:07",
            "2026-11-02 02:30:12",
            "full",
        ),  # jitter: 5 s short of 7 days
        (
            "weekly",
            "2026-11-09 02:29:00",
            "2026-11-02 02:30:12",
            "incremental",
        ),  # not yet Monday's start
        ("weekly", "2026-11-08 23:00:00", "2026-11-02 02:30:12", "incremental"),  # Sunday
        ("weekly", "2026-11-05 02:30:00", "2026-11-02 02:30:12", "incremental"),
        ("weekly", "2026-11-19 10:00:00", "2026-11-02 02:30:12", "full"),  # a missed week
        ("weekly", "2026-11-04 09:00:00", "2026-11-01 02:30:00", "full"),  # Sunday's full, new week
        # daily: each day begins at 02:30
        ("daily", "2026-11-03 02:30:01", "2026-11-02 02:31:00", "full"),
        ("daily", "2026-11-03 01:00:00", "2026-11-02 02:31:00", "incremental"),
        ("daily", "2026-11-03 14:30:00", "2026-11-03 02:30:40", "incremental"),
        # monthly: the 1st at 02:30, across month and year boundaries
        ("monthly", "2026-12-01 02:30:05", "2026-11-30 23:00:00", "full"),
        ("monthly", "2026-12-01 02:00:00", "2026-11-01 02:30:00", "incremental"),
        ("monthly", "2027-01-01 02:30:00", "2026-12-01 02:30:00", "full"),
        (
            "monthly",
            "2027-03-01 00:10:00",
            "2027-02-01 02:31:00",
            "incremental",
        ),  # before the 1st's start
        ("monthly", "2027-03-31 02:30:00", "2027-03-01 02:30:30", "incremental"),
        ("monthly", "2027-02-15 02:30:00", "2026-12-20 02:30:00", "full"),  # a missed month
    ],
)
def test_full_or_incremental(full_every: str, now: str, last_full: str, kind: str) -> None:
    decision = decide(at(now), at(last_full), at(last_full), full_every, START)  # type: ignore[arg-type]
    assert decision.kind == kind, decision.reason


def test_the_first_run_is_a_full_and_says_why() -> None:
    decision = decide(at("2026-11-05 02:30:00"), None, None, "weekly", START)
    assert (decision.kind, decision.reason) == ("full", "there is no backup chain yet")


def test_reasons_name_the_dates_an_admin_can_check() -> None:
    full = decide(at("2026-11-09 02:30:07"), at("2026-11-02 02:30:12"), None, "weekly", START)
    assert full.reason == (
        "fulls are weekly and the last one (2026-11-02 02:30) is from before this week's start "
        "(2026-11-09 02:30)"
    )
    incr = decide(at("2026-11-05 02:30:00"), at("2026-11-02 02:30:12"), None, "weekly", START)
    assert incr.reason == "this week's full was made at 2026-11-02 02:30; fulls are weekly"


@pytest.mark.parametrize(
    ("last_full", "last_set"),
    [
        ("2026-11-10 02:30:00", "2026-11-10 02:30:00"),
        ("2026-11-02 02:30:00", "2026-11-09 03:00:00"),
    ],
    ids=["before the newest full", "before the newest incremental"],
)
def test_a_clock_set_backwards_is_refused(last_full: str, last_set: str) -> None:
    now = at("2026-11-09 02:30:00")
    with pytest.raises(
        ScheduleClockError, match=r"the clock reads 2026-11-09 02:30, before the newest backup"
    ):
        decide(now, at(last_full), at(last_set), "weekly", START)


def test_a_second_of_clock_drift_is_no_error() -> None:
    decision = decide(at("2026-11-09 02:30:00"), at("2026-11-09 02:30:30"), None, "daily", START)
    assert decision.kind == "incremental"


def test_period_starts() -> None:
    assert period_start(at("2026-11-08 23:59:00"), "weekly", START) == at("2026-11-02 02:30")
    assert period_start(at("2026-11-09 02:29:59"), "weekly", START) == at("2026-11-02 02:30")
    assert period_start(at("2026-11-09 02:30:00"), "weekly", START) == at("2026-11-09 02:30")
    assert period_start(at("2027-01-01 01:00:00"), "monthly", START) == at("2026-12-01 02:30")
    assert period_start(at("2027-03-01 00:00:00"), "daily", START) == at("2027-02-28 02:30")


def test_timer_expressions_and_cron_lines() -> None:
    assert on_calendar("daily", START) == "*-*-* 02:30:00"
    assert on_calendar("hourly", START) == "*-*-* *:30:00"
    assert on_calendar("weekly", dt.time(23, 5)) == "Mon *-*-* 23:05:00"
    assert cron_fields("daily", START) == "30 2 * * *"
    assert cron_fields("hourly", START) == "30 * * * *"
    assert cron_fields("weekly", dt.time(23, 5)) == "5 23 * * 1"


def test_next_runs() -> None:
    now = at("2026-11-26 10:00:00")  # a Thursday
    assert next_runs(now, "daily", START, 2) == [at("2026-11-27 02:30"), at("2026-11-28 02:30")]
    assert next_runs(now, "hourly", START, 2) == [at("2026-11-26 10:30"), at("2026-11-26 11:30")]
    assert next_runs(now, "weekly", START, 2) == [at("2026-11-30 02:30"), at("2026-12-07 02:30")]
    assert next_runs(at("2026-11-26 02:30:00"), "daily", START, 1) == [at("2026-11-27 02:30")]


def test_planned_runs_mark_the_next_full() -> None:
    plans = planned_runs(
        at("2026-11-26 10:00:00"), at("2026-11-23 02:30:05"), at("2026-11-26 02:30:05"),
        "weekly", "daily", START, 5,
    )  # fmt: skip
    assert [(w.strftime("%a %d"), d.kind) for w, d in plans] == [
        ("Fri 27", "incremental"),
        ("Sat 28", "incremental"),
        ("Sun 29", "incremental"),
        ("Mon 30", "full"),
        ("Tue 01", "incremental"),
    ]


@pytest.mark.parametrize(
    ("full_every", "incremental_every", "keep", "text"),
    [
        ("weekly", "daily", 4, "you can restore any day of the last 4 weeks (28 days)"),
        ("weekly", "hourly", 1, "you can restore any hour of the last week (7 days)"),
        ("monthly", "weekly", 3, "you can restore any week of the last 3 months (about 90 days)"),
        ("daily", "hourly", 7, "you can restore any hour of the last 7 days"),
    ],
)
def test_restore_window(full_every: str, incremental_every: str, keep: int, text: str) -> None:
    assert restore_window(full_every, incremental_every, keep) == text  # type: ignore[arg-type]
