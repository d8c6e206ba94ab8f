"""`rescue schedule install|show|remove`, the status that shows the window and the next run.

The units are written into a directory tree standing for a system (--root), never into this
machine's /etc. They are checked by systemd itself (systemd-analyze verify, and calendar for
the times), and the command they run is run for real: a backup lands at the destination.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from clirun import local_settings, rescue

from rescue.backup.cadence import next_runs, on_calendar

pytestmark = pytest.mark.slow

UNITS = "etc/systemd/system"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text("a\n")
    return local_settings(
        tmp_path,
        {"root": str(tree), "include": [str(tree)]},
        encryption={"mode": "none"},
        schedule={
            "full_every": "weekly",
            "incremental_every": "daily",
            "keep_full": 4,
            "start_time": "03:15",
            "random_delay_minutes": 20,
        },
        duplicity={"archive_dir": str(tmp_path / "cache"), "retries": 1},
    )


def _systemd_root(tmp_path: Path) -> Path:
    """A tree that looks like a system with systemd installed."""
    root = tmp_path / "root"
    binary = root / "lib/systemd/systemd"
    binary.parent.mkdir(parents=True)
    binary.write_text("")
    return root


def _key(text: str, key: str) -> str:
    return next(line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "="))


def _sets(config: Path) -> list[str]:
    return [s["kind"] for s in rescue(config, "status", "--json").json()["sets"]]


def _systemd_times(expression: str, count: int) -> list[dt.datetime]:
    """When systemd says an OnCalendar expression fires next, count times."""
    out = subprocess.run(
        ["systemd-analyze", "calendar", f"--iterations={count}", expression],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [
        dt.datetime.strptime(" ".join(line.split(": ", 1)[1].split()[1:3]), "%Y-%m-%d %H:%M:%S")
        for line in out.splitlines()
        if line.strip().startswith(("Next elapse:", "Iter. #"))
    ]


@pytest.mark.parametrize("every", ["hourly", "daily", "weekly"])
@pytest.mark.parametrize("start", [dt.time(2, 30), dt.time(0, 0), dt.time(23, 59)])
def test_calendar_expressions_fire_when_rescue_predicts(every: str, start: dt.time) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: bash scripts/setup --with-test-tools installs it")
    expression = on_calendar(every, start)  # type: ignore[arg-type]
    assert _systemd_times(expression, 5) == next_runs(dt.datetime.now(), every, start, 5)  # type: ignore[arg-type]


def test_systemd_units_verify_fire_when_systemd_says_and_run_a_backup(
    tmp_path: Path, config: Path
) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: bash scripts/setup --with-test-tools installs it")
    root = _systemd_root(tmp_path)
    r = rescue(config, "schedule", "install", "--root", str(root))
    assert r.code == 0, r.err
    assert f"enabled rescue-backup.timer in {root}" in r.out
    assert "you can restore any day of the last 4 weeks (28 days)" in r.out
    service = (root / UNITS / "rescue-backup.service").read_text()
    timer = (root / UNITS / "rescue-backup.timer").read_text()
    link = root / UNITS / "timers.target.wants/rescue-backup.timer"
    assert os.readlink(link) == "/etc/systemd/system/rescue-backup.timer"
    assert _key(timer, "Persistent") == "true"
    assert _key(timer, "RandomizedDelaySec") == "1200"
    assert _key(service, "Type") == "oneshot"

    # systemd's own checks: no error and no warning (an unknown key is only a warning).
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(root / UNITS / "rescue-backup.timer"),
         str(root / UNITS / "rescue-backup.service")],
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{root / UNITS}:"},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    fired = _systemd_times(_key(timer, "OnCalendar"), 4)
    assert fired == next_runs(dt.datetime.now(), "daily", dt.time(3, 15), 4)

    # What the service runs, run as systemd would: a backup, auto mode, the first is a full.
    command = shlex.split(_key(service, "ExecStart"))
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert _sets(config) == ["full"]

    shown = rescue(config, "schedule", "show", "--root", str(root), "--json").json()
    assert shown["installed"] == "systemd"
    assert shown["on_calendar"] == "*-*-* 03:15:00"
    kinds = [(dt.datetime.fromisoformat(r["time"]), r["kind"]) for r in shown["next_runs"]]
    assert [t for t, _ in kinds] == next_runs(dt.datetime.now(), "daily", dt.time(3, 15), 8)
    # A full on the first run of each new week (Monday), incrementals on the other days.
    assert [k for _, k in kinds] == [
        "full" if t.weekday() == 0 else "incremental" for t, _ in kinds
    ]

    r = rescue(config, "schedule", "remove", "--root", str(root))
    assert r.code == 0 and not (root / UNITS / "rescue-backup.timer").exists()
    assert not link.is_symlink() and not (root / UNITS / "rescue-backup.service").exists()
    assert "installed: nothing" in rescue(config, "schedule", "show", "--root", str(root)).out


def test_without_systemd_a_cron_file_is_written_and_says_so(tmp_path: Path, config: Path) -> None:
    root = tmp_path / "container"
    root.mkdir()
    r = rescue(config, "schedule", "install", "--root", str(root))
    assert r.code == 0, r.err
    assert f"{root} has no systemd: wrote a cron.d file instead" in r.out
    assert "no random delay, no catch-up" in r.out
    cron = (root / "etc/cron.d/rescue-backup").read_text()
    assert oct((root / "etc/cron.d/rescue-backup").stat().st_mode & 0o777) == "0o644"
    line = next(ln for ln in cron.splitlines() if ln and ln[0].isdigit())
    minute, hour, day, month, weekday, user, command = line.split(None, 6)
    assert (minute, hour, day, month, weekday, user) == ("15", "3", "*", "*", "*", "root")
    done = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert _sets(config) == ["full"]
    assert (
        rescue(config, "schedule", "show", "--root", str(root), "--json").json()["installed"]
        == "cron"
    )
    # Installing the other kind replaces it: one schedule only.
    (root / "lib/systemd").mkdir(parents=True)
    (root / "lib/systemd/systemd").write_text("")
    assert rescue(config, "schedule", "install", "--root", str(root)).code == 0
    assert not (root / "etc/cron.d/rescue-backup").exists()
    assert (root / UNITS / "rescue-backup.timer").exists()
    # A file of the same name that rescue did not write is never replaced or removed.
    mine = root / UNITS / "rescue-backup.service"
    mine.write_text("[Unit]\nDescription=the admin's own\n")
    for args in (("install", "--root", str(root)), ("remove", "--root", str(root))):
        r = rescue(config, "schedule", *args)
        assert r.code == 2 and f"{mine} exists and was not written by rescue" in r.err, r.err
        assert mine.read_text() == "[Unit]\nDescription=the admin's own\n"
        assert (root / UNITS / "rescue-backup.timer").exists()


def test_status_shows_the_last_runs_window_and_next_run(tmp_path: Path, config: Path) -> None:
    assert rescue(config, "backup").code == 0
    (tmp_path / "tree/a.txt").write_text("changed, and longer\n")
    assert rescue(config, "backup", "--incremental").code == 0
    (tmp_path / "dest").rename(tmp_path / "dest-gone")
    (tmp_path / "dest").write_text("not a directory\n")  # the next run fails
    failed = rescue(config, "backup")
    assert failed.code != 0
    (tmp_path / "dest").unlink()
    (tmp_path / "dest-gone").rename(tmp_path / "dest")

    data = rescue(config, "status", "--json").json()
    assert [r["outcome"] for r in data["recent_runs"]] == ["success", "success", "failure"]
    assert [r["kind"] for r in data["recent_runs"]] == ["full", "incremental", None]
    assert data["last_run"]["outcome"] == "failure" and data["last_run"]["error"]
    assert all(r["seconds"] >= 0 for r in data["recent_runs"])
    assert data["recent_runs"][0]["bytes"] > 0
    assert data["planned_window"] == "you can restore any day of the last 4 weeks (28 days)"
    assert data["window"]["sets"] == 2 and data["window"]["oldest_set"] == data["sets"][0]["date"]
    tomorrow = next_runs(dt.datetime.now(), "daily", dt.time(3, 15), 1)[0]
    assert dt.datetime.fromisoformat(data["next_run"]["time"]).replace(tzinfo=None) == tomorrow
    assert data["next_run"]["kind"] == ("full" if tomorrow.weekday() == 0 else "incremental")

    text = rescue(config, "status").out
    assert f"last run: FAILURE at {data['last_run']['start']}: {data['last_run']['error']}" in text
    assert f"restore window: back to {data['sets'][0]['date']} (" in text
    assert "planned window (schedule settings): you can restore any day of the last 4 weeks" in text
    assert "nothing is installed, run `rescue schedule install`" in text
    history = rescue(config, "status", "--history", "--json").json()
    assert [r["outcome"] for r in history] == ["success", "success", "failure"]


def _schedule_keys(config: Path, **keys: str) -> Path:
    """config with more [schedule] keys."""
    extra = "".join(f'{k} = "{v}"\n' for k, v in keys.items())
    config.write_text(config.read_text().replace("[schedule]\n", "[schedule]\n" + extra))
    return config


def _sundays(now: dt.datetime, at: dt.time, count: int) -> list[dt.datetime]:
    day = dt.datetime.combine(now.date(), at) + dt.timedelta(days=(6 - now.weekday()) % 7)
    if day <= now:
        day += dt.timedelta(days=7)
    return [day + dt.timedelta(days=7 * i) for i in range(count)]


def test_scheduled_drills_get_their_own_timer_and_run_for_real(
    tmp_path: Path, config: Path
) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: bash scripts/setup --with-test-tools installs it")
    _schedule_keys(config, drill_every="weekly", drill_time="04:45")
    root = _systemd_root(tmp_path)
    r = rescue(config, "schedule", "install", "--root", str(root))
    assert r.code == 0, r.err
    assert "drills: `rescue drill` every Sunday at 04:45" in r.out
    assert "(+ up to 20 min at random)" in r.out  # a systemd timer adds it
    units = root / UNITS
    service = (units / "rescue-drill.service").read_text()
    timer = (units / "rescue-drill.timer").read_text()
    assert os.readlink(units / "timers.target.wants/rescue-drill.timer") == (
        "/etc/systemd/system/rescue-drill.timer"
    )
    assert _key(timer, "Persistent") == "true" and _key(timer, "OnCalendar") == "Sun *-*-* 04:45:00"
    verify = subprocess.run(
        ["systemd-analyze", "verify", *(str(units / n) for n in (
            "rescue-drill.timer", "rescue-drill.service", "rescue-backup.timer",
            "rescue-backup.service"))],
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:"},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    now = dt.datetime.now()
    assert _systemd_times(_key(timer, "OnCalendar"), 3) == _sundays(now, dt.time(4, 45), 3)

    # What the drill service runs, run as systemd would, after a backup: a recorded drill.
    # The backup starts in a later second than a.txt was written, so a.txt is compared.
    time.sleep(1.01 - time.time() % 1)
    assert rescue(config, "backup").code == 0
    command = shlex.split(_key(service, "ExecStart"))
    assert command[-1] == "drill"
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "RESULT: identical" in done.stdout
    drill = rescue(config, "status", "--json").json()["last_drill"]
    # a.txt and rescue's own files, those written before the second of the set's time
    # (duplicity's, whole seconds, taken when it starts): a file written in that same second
    # counts as changed since the backup and is left out (rescue starts fast enough that a.txt,
    # written by the fixture, can fall in it too: CI run 11)
    set_time = dt.datetime.fromisoformat(drill["set_time"]).timestamp()
    tree = config.parent / "tree"
    stats = [p.stat() for p in [tree / "a.txt", *(tree / "var/lib/rescue").iterdir()]]
    compared = sum(st.st_size for st in stats if max(st.st_mtime, st.st_ctime) < set_time)
    assert drill["outcome"] == "identical"
    assert drill["compared_bytes"] == compared >= len("a\n"), (drill, compared)
    shown = rescue(config, "schedule", "show", "--root", str(root), "--json").json()
    assert (shown["drill_every"], shown["drill_on_calendar"]) == ("weekly", "Sun *-*-* 04:45:00")

    # Drills off again: install removes the drill units, the backup's stay.
    config.write_text(config.read_text().replace('drill_every = "weekly"', 'drill_every = "off"'))
    r = rescue(config, "schedule", "install", "--root", str(root))
    assert r.code == 0 and "drills: off" in r.out
    assert sorted(p.name for p in units.iterdir() if p.is_file()) == [
        "rescue-backup.service",
        "rescue-backup.timer",
    ]
    assert not (units / "timers.target.wants/rescue-drill.timer").is_symlink()


def test_cron_gets_a_drill_line_and_no_promise_of_a_random_delay(
    tmp_path: Path, config: Path
) -> None:
    _schedule_keys(config, drill_every="monthly", drill_time="05:10")
    root = tmp_path / "container"
    root.mkdir()
    shown = rescue(config, "schedule", "show", "--root", str(root))
    assert shown.code == 0 and "at random" not in shown.out  # cron would be used here
    assert "a run every day at 03:15, keeping 4" in shown.out
    r = rescue(config, "schedule", "install", "--root", str(root))
    assert r.code == 0, r.err
    assert "at random" not in r.out and "on the 1st of each month at 05:10" in r.out
    lines = [
        ln for ln in (root / "etc/cron.d/rescue-backup").read_text().splitlines()
        if ln and ln[0].isdigit()
    ]  # fmt: skip
    assert [ln.split(None, 6)[:6] for ln in lines] == [
        ["15", "3", "*", "*", "*", "root"],
        ["10", "5", "1", "*", "*", "root"],
    ]
    assert lines[0].endswith(" backup >/dev/null") and lines[1].endswith(" drill >/dev/null")
    assert "at random" not in rescue(config, "schedule", "show", "--root", str(root)).out
    assert rescue(config, "backup").code == 0
    command = lines[1].split(None, 6)[6]
    done = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert rescue(config, "status", "--json").json()["last_drill"]["outcome"] == "identical"
    # where a systemd timer would be installed, the same settings promise the delay
    other = str(_systemd_root(tmp_path))
    assert "(+ up to 20 min at random)" in rescue(config, "schedule", "show", "--root", other).out
