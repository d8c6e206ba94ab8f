"""Five simulated weeks of scheduled runs against a real file destination and real duplicity.

Each day at 02:30 (plus a few seconds of timer jitter) the tree gets that day's marker and
`rescue backup` runs in auto mode, its clock faked with duplicity's --current-time. Weekly
fulls, daily incrementals, keep_full = 2: afterwards exactly two chains remain, every day they
cover restores that day's marker, and the days of the removed chains are gone.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from clirun import local_settings

from rescue.backup.engine import Engine
from rescue.backup.lock import reading
from rescue.config import load_settings
from rescue.errors import NoBackupError, ScheduleClockError
from rescue.placement.guard import fresh

pytestmark = pytest.mark.slow

FIRST = dt.datetime(2026, 11, 4, 2, 30)  # a Wednesday: the first week is a partial one
DAYS = 35


def _settings(tmp_path: Path, tree: Path) -> Path:
    return local_settings(
        tmp_path,
        {"root": str(tree), "include": [str(tree)]},
        encryption={"mode": "none"},
        schedule={
            "full_every": "weekly",
            "incremental_every": "daily",
            "keep_full": 2,
            "start_time": "02:30",
        },
        duplicity={"archive_dir": str(tmp_path / "cache"), "retries": 1},
    )


def test_five_weeks_of_runs_keep_two_chains_and_exactly_their_days(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "static.txt").write_text("unchanged\n")
    engine = Engine(load_settings(_settings(tmp_path, tree)))
    kinds, removed = {}, 0
    for day in range(DAYS):
        # timer jitter: each run a little earlier than a day after the last
        when = FIRST + dt.timedelta(days=day, seconds=DAYS - day)
        marker = tree / "day.txt"
        marker.write_text(f"{when:%Y-%m-%d}\n")
        os.utime(marker, (when.timestamp(), when.timestamp()))  # same size: mtime tells
        summary = engine.backup("auto", now=when.timestamp())
        kinds[when.date()] = summary.kind
        removed += summary.removed_chains
    fulls = sorted(d for d, k in kinds.items() if k == "full")
    # The first run, then every Monday (the week's start), and never a second full in a week.
    assert fulls == [FIRST.date()] + [d for d in kinds if d.weekday() == 0], kinds
    status = engine.status()
    assert len(status.chains) == 2 and removed == len(fulls) - 2
    kept_from = dt.datetime.fromtimestamp(status.chains[0].start).date()
    assert kept_from == fulls[-2]

    # Every day of the window restores its own marker ...
    for day in range(DAYS):
        when = FIRST + dt.timedelta(days=day, hours=1)
        dest = tmp_path / "restored" / f"{day}"
        if when.date() < kept_from:
            # ... and the days of the removed chains are gone.
            with pytest.raises(NoBackupError):
                engine.restore(str(tree / "day.txt"), fresh(dest), at=int(when.timestamp()))
            continue
        engine.restore(str(tree / "day.txt"), fresh(dest), at=int(when.timestamp()))
        assert dest.read_text() == f"{when:%Y-%m-%d}\n"


def test_a_clock_set_backwards_makes_no_backup(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text("a\n")
    engine = Engine(load_settings(_settings(tmp_path, tree)))
    engine.backup("auto", now=FIRST.timestamp())
    before = sorted(p.name for p in (tmp_path / "dest").iterdir())
    for mode in ("auto", "full", "incremental"):
        with pytest.raises(ScheduleClockError, match="before the newest backup"):
            engine.backup(mode, now=(FIRST - dt.timedelta(days=1)).timestamp())  # type: ignore[arg-type]
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == before


def test_retention_never_removes_chains_under_a_reader(tmp_path: Path) -> None:
    """A restore, listing or verify holds the readers' lock (rescue.backup.lock.reading) for its
    whole run; a full made meanwhile keeps the old chains and says so, the next full removes
    them."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text("a\n")
    engine = Engine(load_settings(_settings(tmp_path, tree)))  # keep_full = 2
    for week in range(2):
        engine.backup("full", now=(FIRST + dt.timedelta(weeks=week)).timestamp())
    with reading(tmp_path / "cache"):
        held = engine.backup("full", now=(FIRST + dt.timedelta(weeks=2)).timestamp())
    assert held.removed_chains == 0
    assert held.retention_note and "retention postponed" in held.retention_note
    assert len(engine.status().chains) == 3
    after = engine.backup("full", now=(FIRST + dt.timedelta(weeks=3)).timestamp())
    assert after.removed_chains == 2 and after.retention_note is None
    assert len(engine.status().chains) == 2
