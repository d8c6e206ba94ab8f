"""Tell someone when a backup fails: the [schedule] on_failure command.

A scheduled run fails at night, where no one reads its exit code. The hook (a mail or webhook
script) gets a plain-text summary on stdin: the host, the times, the mode, the error line, the
exit code and the destination (as display_url shows it, without a password). It runs without a
shell and with a minimal environment, so no secret from ours (a passphrase or password variable)
reaches it; the error line is masked like the log. A hook that fails or hangs is reported on
stderr and in the log, but never changes the backup's own exit code.
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
import time

from rescue.backup.destinations import display_url
from rescue.backup.history import Run
from rescue.config import Settings
from rescue.errors import CommandNotFoundError, RescueError, TimedOutError
from rescue.process import execute

HOOK_TIMEOUT = 120
HOOK_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "RESCUE_EVENT": "backup-failed",
}

log = logging.getLogger("rescue.hook")


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(seconds))


def failure_summary(settings: Settings, run: Run, exit_code: int, log_path: str | None) -> str:
    """The text the hook reads; every value is masked like the log."""
    lines = [
        f"rescue backup FAILED on {socket.gethostname()}",
        f"started: {_when(run.start)}",
        f"ended: {_when(run.end)} ({run.seconds:.0f} s)",
        f"mode: {run.mode}",
        f"error: {run.error or 'unknown'}",
        f"exit code: {exit_code}",
        f"destination: {display_url(settings)}",
    ]
    if log_path:
        lines.append(f"log: {log_path}")
    return execute.mask("\n".join(lines) + "\n")


def call_failure_hook(settings: Settings, summary: str) -> str | None:
    """Run the on_failure command with summary on stdin; a line saying what went wrong with
    the hook itself, or None when it ran (or none is set)."""
    command = settings.schedule.on_failure
    if not command:
        return None
    argv = shlex.split(command)
    try:
        result = execute.run(
            argv,
            stdin_text=summary,
            env=HOOK_ENV,
            clean_env=True,
            separate_stderr=True,
            timeout=HOOK_TIMEOUT,
        )
    except CommandNotFoundError:
        problem = f"the on_failure hook {argv[0]} is " + (
            "not executable" if os.path.isfile(argv[0]) else "not installed"
        )
    except TimedOutError:
        problem = f"the on_failure hook {argv[0]} did not finish in {HOOK_TIMEOUT} s"
    else:
        if result.returncode == 0:
            log.info("on_failure hook %s ran", argv[0])
            return None
        tail = result.last_line()
        problem = f"the on_failure hook {argv[0]} exited with {result.returncode}" + (
            f": {tail}" if tail else ""
        )
    log.warning("%s", problem)
    return problem


def exit_code_of(exc: BaseException) -> int:
    """The exit code the CLI's one handler gives exc (rescue.cli.main)."""
    if isinstance(exc, RescueError):
        return exc.exit_code
    return 130 if isinstance(exc, KeyboardInterrupt) else 1


def report_failure(
    settings: Settings, run: Run, exc: BaseException, log_path: str | None
) -> str | None:
    """Call the hook for a failed run; what went wrong with the hook itself, or None."""
    summary = failure_summary(settings, run, exit_code_of(exc), log_path)
    return call_failure_hook(settings, summary)
