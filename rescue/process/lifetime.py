"""Children die with rescue: every child in a process group of its own, stopped before rescue
goes on after any failure, signal or kill.

Why: a duplicity that outlives a stopped rescue goes on writing, a backup with no history and
no retention, or a restore into a disk that the cleanup has already unmounted. So:

- every child starts in a new process group (the processes it starts, gpg among them, join
  it), through `setpriv --pdeathsig KILL`: a `kill -9` of rescue kills the child too;
- SIGTERM and SIGHUP are passed on to every live child's group, then raised in rescue's main
  thread as Terminated; SIGINT (Ctrl-C) raises KeyboardInterrupt there as always;
- whatever ends the wait on a child, the run that started it stops the whole group (SIGTERM,
  then SIGKILL after GRACE_SECONDS) and reaps it before the exception goes on: no cleanup
  (an unmount, the identity files put back) runs while a child of the run is alive;
- when a child exits normally, what is left of its group (an orphaned helper) is killed before
  the child is reaped, so the group id cannot have been reused by then.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from rescue.process import guardian

GRACE_SECONDS = 10.0
FORWARDED = (signal.SIGTERM, signal.SIGHUP)
# The children rescue.process.execute started and has not reaped. This module starts no process
# itself (it is the gate's machinery: execute starts, it tracks and stops), hence no subprocess
# call.
_live: dict[int, subprocess.Popen[bytes]] = {}


class Terminated(BaseException):
    """rescue got SIGTERM or SIGHUP; its children were stopped first."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@functools.cache
def _setpriv() -> str | None:
    return shutil.which("setpriv")


def wrap(argv: Sequence[str]) -> list[str]:
    """argv started so that it dies with rescue (where setpriv, util-linux, is installed)."""
    setpriv = _setpriv()
    if setpriv is None:
        return list(argv)
    return [setpriv, "--pdeathsig", "KILL", "--", *argv]


def started(proc: subprocess.Popen[bytes]) -> None:
    _live[proc.pid] = proc
    guardian.tell(f"started {proc.pid}")


def finished(proc: subprocess.Popen[bytes]) -> int:
    """Reap a child that ended by itself, after killing what is left of its group."""
    try:
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # a zombie: its id stays taken
        _kill_group(proc.pid, signal.SIGKILL)
        return proc.wait()
    finally:
        _ended(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a child's whole group, politely first, and reap the child."""
    try:
        if proc.poll() is None:
            _kill_group(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + GRACE_SECONDS
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        if proc.returncode is None:
            _kill_group(proc.pid, signal.SIGKILL)
            proc.wait()
        _kill_group(proc.pid, signal.SIGKILL)  # helpers the leader left behind
    finally:
        _ended(proc)


def _ended(proc: subprocess.Popen[bytes]) -> None:
    _live.pop(proc.pid, None)
    guardian.tell(f"ended {proc.pid}")


def _kill_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def live_children() -> list[int]:
    return list(_live)


def signal_children(signum: int = signal.SIGTERM) -> None:
    """Send every live child's group signum: what stops the runs of other threads (the shards
    of one backup) when the main thread is interrupted; each run then reaps its own child."""
    for pid in list(_live):
        _kill_group(pid, signum)


@contextlib.contextmanager
def signals_stop_children() -> Iterator[None]:
    """While the body runs (in the main thread), SIGTERM and SIGHUP stop the children and
    raise Terminated."""

    def handler(signum: int, frame: FrameType | None) -> None:
        signal_children(signum)
        raise Terminated(signum)

    previous = {}
    try:
        for signum in FORWARDED:
            previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread: the caller's handlers stay
        yield
        return
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@dataclass
class Watchdog:
    """Stops a child that no longer moves: no output and no I/O in its group for idle_seconds,
    or still alive after_error seconds after it reported a fatal error (duplicity waits
    forever on a gpg blocked on a full pipe after ENOSPC or a corrupt volume)."""

    idle_seconds: float
    after_error: float = 10.0
    _last: float = field(default_factory=time.monotonic)
    _io: int = -1
    _fatal_at: float | None = None

    def output(self) -> None:
        self._last = time.monotonic()

    def fatal(self) -> None:
        if self._fatal_at is None:
            self._fatal_at = time.monotonic()

    def stalled(self, pid: int) -> str | None:
        """Why the child at pid (a group leader) counts as stuck now, or None."""
        now = time.monotonic()
        if self._fatal_at is not None and now - self._fatal_at > self.after_error:
            return f"it reported an error and did not exit within {self.after_error:.0f} s"
        if now - self._last < 1.0:
            return None  # it has just spoken: no need to look at its I/O
        io = _group_io(pid)
        if io != self._io:
            self._io, self._last = io, now
        elif now - self._last > self.idle_seconds:
            return f"it wrote nothing and did no I/O for {self.idle_seconds:.0f} s"
        return None


def _group_io(pid: int) -> int:
    """Bytes the child and its descendants have read and written so far (rchar + wchar)."""
    import psutil  # here, not at the top: execute (and with it this) runs in the test guest's
    # plain python3 too, for the layout code, where there is no psutil

    total = 0
    try:
        leader = psutil.Process(pid)
        for proc in [leader, *leader.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                counters = proc.io_counters()
                total += counters.read_chars + counters.write_chars
    except psutil.Error:
        pass
    return total


def duplicity_using(archive_dir: Path) -> list[tuple[int, str]]:
    """The duplicity processes (pid, command line) whose --archive-dir is archive_dir: one a
    killed run left behind, or one started by hand. duplicity would refuse to start beside it
    with its own lock line; rescue says who holds it instead. This run's own children (the
    other shards of one backup, each a chain of its own) are not counted."""
    import psutil  # see _group_io

    wanted = os.path.realpath(archive_dir)
    found = []
    mine = os.getpid()
    for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
        argv = proc.info["cmdline"] or []
        if proc.info["ppid"] == mine:  # setpriv execs duplicity: this process is its parent
            continue
        if not any(os.path.basename(a) == "duplicity" for a in argv[:3]):
            continue
        for flag, value in itertools.pairwise(argv):
            if flag == "--archive-dir" and os.path.realpath(value) == wanted:
                found.append((proc.info["pid"], " ".join(argv[:4])))
    return found
