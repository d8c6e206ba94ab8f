"""The units (or the cron.d file) that run `rescue backup` at the [schedule] times.

systemd first: the timer fires every incremental period at the start time (rescue.backup.cadence's
OnCalendar), Persistent=true catches up a run missed while the machine was off, and
RandomizedDelaySec spreads many hosts over random_delay_minutes. The service runs the backup in
auto mode, so each run decides full or incremental itself, and a failure shows in `systemctl
status` and the journal.

Where systemd is not running (a container, a chroot), a cron.d file runs the same command at
the same times. cron has no catch-up and no random delay, and install says so.

With [schedule] drill_every, `rescue drill` gets the same treatment: its own service and timer
(rescue-drill.*), or a second line in the cron.d file.

Everything is written under a root directory ("/" normally), so a mounted system or a test
tree can be set up the same way.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from rescue.backup.cadence import cron_fields, drill_calendar, drill_cron_fields, on_calendar
from rescue.config import Settings
from rescue.errors import UsageError
from rescue.placement.fsops import write_atomic
from rescue.process.execute import run_checked

SERVICE = "rescue-backup.service"
TIMER = "rescue-backup.timer"
DRILL_SERVICE = "rescue-drill.service"
DRILL_TIMER = "rescue-drill.timer"
UNIT_DIR = "etc/systemd/system"
WANTS_DIR = "etc/systemd/system/timers.target.wants"
CRON_FILE = "etc/cron.d/rescue-backup"
SYSTEMD_RUNNING = Path("/run/systemd/system")


@dataclass(frozen=True)
class Installed:
    """What is installed under a root: "systemd", "cron" or None, and the files."""

    kind: str | None
    files: list[Path]


def rescue_command(config_path: Path, action: str = "backup") -> list[str]:
    """The command that runs this same rescue with these settings (absolute paths: units and
    cron run with a bare PATH); action is backup or drill."""
    program = Path(sys.argv[0])
    if program.name == "rescue" and program.exists():
        argv = [str(program.resolve())]
    else:
        argv = [sys.executable, "-m", "rescue"]
    return [*argv, "--config", str(config_path.absolute()), action]


# The first line of every file rescue writes here: only such files are replaced or removed.
MARK = "# Written by `rescue schedule install`; remove with `rescue schedule remove`.\n"


def ours(path: Path) -> bool:
    """path was written by rescue (its first line), or is a timer's enable link."""
    if path.is_symlink():
        return path.name in (TIMER, DRILL_TIMER) and os.readlink(path) == f"/{UNIT_DIR}/{path.name}"
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            return f.readline() == MARK
    except OSError:
        return False


def _refuse_foreign(paths: list[Path]) -> None:
    """Never replace or remove a unit or cron file that an admin wrote under rescue's names."""
    foreign = [p for p in paths if (p.exists() or p.is_symlink()) and not ours(p)]
    if foreign:
        raise UsageError(
            f"{foreign[0]} exists and was not written by rescue: move it away first "
            "(nothing was changed)"
        )


def service_text(
    command: list[str], what: str = "backup (full or incremental, as the schedule says)"
) -> str:
    return MARK + (
        "[Unit]\n"
        f"Description=rescue {what}\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={shlex.join(command)}\n"
        "Nice=10\n"
        "IOSchedulingClass=best-effort\n"
        "IOSchedulingPriority=7\n"
    )


def _timer_unit(settings: Settings, description: str, on_calendar: str) -> str:
    """A timer unit: catches up a run missed while the host was off, spread by the random delay."""
    return MARK + (
        "[Unit]\n"
        f"Description={description}\n"
        "\n"
        "[Timer]\n"
        f"OnCalendar={on_calendar}\n"
        "Persistent=true\n"
        f"RandomizedDelaySec={settings.schedule.random_delay_minutes * 60}\n"
        "\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )


def timer_text(settings: Settings) -> str:
    schedule = settings.schedule
    return _timer_unit(
        settings,
        f"rescue backups: {schedule.incremental_every} at {schedule.start_time}, "
        f"fulls {schedule.full_every}",
        on_calendar(schedule.incremental_every, schedule.start),
    )


def drill_timer_text(settings: Settings) -> str:
    schedule = settings.schedule
    return _timer_unit(
        settings,
        "rescue drill: restore the backup to scratch and compare it, "
        f"{schedule.drill_every} at {schedule.drill_time}",
        drill_calendar(schedule.drill_every, schedule.drill_start),
    )


def cron_text(settings: Settings, command: list[str], drill: list[str] | None = None) -> str:
    schedule = settings.schedule
    fields = cron_fields(schedule.incremental_every, schedule.start)
    lines = f"{fields} root {shlex.join(command)} >/dev/null\n"
    if drill is not None:
        when = drill_cron_fields(schedule.drill_every, schedule.drill_start)
        lines += f"{when} root {shlex.join(drill)} >/dev/null\n"
    return (
        MARK
        + (
            "# Errors go to stderr, which cron mails; the summary of a good run is dropped.\n"
            "SHELL=/bin/sh\n"
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        )
        + lines
    )


SYSTEMD_BINARIES = ("lib/systemd/systemd", "usr/lib/systemd/systemd")


def systemd_running(root: Path) -> bool:
    """Whether units installed under root can be started now: the running system's root, and
    systemd is PID 1 there."""
    return root.resolve() == Path("/") and SYSTEMD_RUNNING.is_dir()


def pick_kind(root: Path, use_cron: bool) -> tuple[str, str | None]:
    """ "systemd" or "cron" for root, and a note when cron is a fallback the admin did not ask
    for: this system runs without systemd (a container), or another root has none."""
    if use_cron:
        return "cron", None
    if root.resolve() == Path("/"):
        if systemd_running(root):
            return "systemd", None
        return "cron", "systemd is not running here (a container or a chroot)"
    if any((root / rel).exists() for rel in SYSTEMD_BINARIES):
        return "systemd", None
    return "cron", f"{root} has no systemd"


def _systemctl(*args: str) -> None:
    run_checked(["systemctl", *args], f"systemctl {' '.join(args)}")


def install(settings: Settings, config_path: Path, root: Path, kind: str) -> Installed:
    """Write the units (enabled) or the cron.d file under root; start the timers when systemd
    runs this root. Whatever the other kind left is removed, so one schedule is active. With
    [schedule] drill_every, `rescue drill` gets its own timer and service (or cron line)."""
    command = rescue_command(config_path)
    drill = rescue_command(config_path, "drill") if settings.schedule.drill_every != "off" else None
    _refuse_foreign([root / rel for rel in _FILES])
    if systemd_running(root) and (root / UNIT_DIR / DRILL_TIMER).exists():
        _systemctl("disable", "--now", DRILL_TIMER)  # drills may now be off
    remove(root, start_stop=False)
    if kind == "cron":
        cron = root / CRON_FILE
        write_atomic(cron, cron_text(settings, command, drill))
        return Installed("cron", [cron])
    written = _timer(root, SERVICE, service_text(command), TIMER, timer_text(settings))
    if drill is not None:
        what = "drill (restore the backup to scratch and compare it with the live files)"
        written += _timer(
            root, DRILL_SERVICE, service_text(drill, what), DRILL_TIMER, drill_timer_text(settings)
        )
    if systemd_running(root):
        _systemctl("daemon-reload")
        _systemctl("restart", TIMER)
        if drill is not None:
            _systemctl("restart", DRILL_TIMER)
    return Installed("systemd", written)


def _timer(root: Path, service: str, service_unit: str, timer: str, timer_unit: str) -> list[Path]:
    """A service and its timer, the timer enabled (its link in timers.target.wants)."""
    paths = [root / UNIT_DIR / service, root / UNIT_DIR / timer]
    write_atomic(paths[0], service_unit)
    write_atomic(paths[1], timer_unit)
    link = root / WANTS_DIR / timer
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(f"/{UNIT_DIR}/{timer}")
    return [*paths, link]


def installed(root: Path) -> Installed:
    timer = root / UNIT_DIR / TIMER
    if timer.exists():
        files = [root / UNIT_DIR / SERVICE, timer, root / WANTS_DIR / TIMER]
        files += [root / UNIT_DIR / DRILL_SERVICE, root / UNIT_DIR / DRILL_TIMER]
        files.append(root / WANTS_DIR / DRILL_TIMER)
        return Installed("systemd", [f for f in files if f.exists() or f.is_symlink()])
    cron = root / CRON_FILE
    if cron.exists():
        return Installed("cron", [cron])
    return Installed(None, [])


_FILES = (
    f"{WANTS_DIR}/{TIMER}",
    f"{UNIT_DIR}/{TIMER}",
    f"{UNIT_DIR}/{SERVICE}",
    f"{WANTS_DIR}/{DRILL_TIMER}",
    f"{UNIT_DIR}/{DRILL_TIMER}",
    f"{UNIT_DIR}/{DRILL_SERVICE}",
    CRON_FILE,
)


def remove(root: Path, start_stop: bool = True) -> list[Path]:
    """Remove both kinds (stopping the timers first when systemd runs root); the files gone."""
    if start_stop and systemd_running(root):
        for timer in (TIMER, DRILL_TIMER):
            if (root / UNIT_DIR / timer).exists():
                _systemctl("disable", "--now", timer)
    _refuse_foreign([root / rel for rel in _FILES])
    gone = []
    for rel in _FILES:
        path = root / rel
        if path.exists() or path.is_symlink():
            path.unlink()
            gone.append(path)
    if gone and start_stop and systemd_running(root):
        _systemctl("daemon-reload")
    return gone
