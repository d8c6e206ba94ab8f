"""Kill a running `rescue` at a chosen moment and check that what it had started is gone:
the kill matrices of test_kills.py and test_recover_kills.py share it."""

from __future__ import annotations

import subprocess
import time

import psutil


def kill_at(proc: subprocess.Popen[str], after: float, signum: int) -> tuple[list[int], str]:
    """Send signum `after` seconds into the run; (the pids it had started then, its stderr)."""
    deadline = time.monotonic() + after
    children: list[int] = []
    while time.monotonic() < deadline and proc.poll() is None:
        children = _descendants(proc.pid) or children
        time.sleep(0.02)
    children = _descendants(proc.pid) or children
    if proc.poll() is None:
        proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    return children, err


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
