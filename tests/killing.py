"""Kill a running `rescue` at a chosen moment and check that what it had started is gone:
the kill matrices of test_kills.py and test_recover_kills.py share it."""

from __future__ import annotations

import subprocess
import time

import psutil


def kill_at(
    proc: subprocess.Popen[str], after: float, signum: int, *, from_child: bool = False
) -> tuple[list[int], str]:
    """Send signum `after` seconds into the run, or with from_child, `after` seconds after its
    first child appeared; (the pids it had started then, its stderr)."""
    deadline = None if from_child else time.monotonic() + after
    children: list[int] = []
    while proc.poll() is None:
        children = _descendants(proc.pid) or children
        if deadline is None and children:
            deadline = time.monotonic() + after
        if deadline is not None and time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    children = _descendants(proc.pid) or children
    if proc.poll() is None:
        proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    return children, err


def children_window(proc: subprocess.Popen[str]) -> float:
    """Seconds from the first child seen to the last one seen, for a run left to finish: where
    a kill catches the run with a child at work."""
    first = last = None
    while proc.poll() is None:
        if _descendants(proc.pid):
            last = time.monotonic()
            first = first or last
        time.sleep(0.02)
    proc.communicate(timeout=60)
    assert proc.returncode == 0, f"exit {proc.returncode}"
    assert first is not None and last is not None, "the run started no child"
    return last - first


def _descendants(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def assert_all_gone(pids: list[int], what: str) -> None:
    """None of pids lives on (a zombie waiting for init counts as gone)."""
    deadline = time.monotonic() + 15
    while True:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not alive, f"{what}: still running: {[_cmd(pid) for pid in alive]}"


def _cmd(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.NoSuchProcess:
        return str(pid)
