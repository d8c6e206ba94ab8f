"""A recovery's mounts do not outlive a `kill -9` of rescue.

A SIGTERM or Ctrl-C runs the recovery's cleanups (stop the children, then unmount). A SIGKILL
runs nothing: the children die by their death signal (rescue.process.lifetime), but the target's
mounts would stay, and the helpers a child started (gpg) might still hold them. So a real recovery
starts a guardian first: a small process in a session of its own, that rescue tells over a pipe
which process groups it starts and ends. When the pipe closes without "done", rescue died
abruptly: the guardian kills the groups still listed, waits until they are empty, and then
unmounts everything at or below the target root, deepest first. Never while a process of the
run lives, so nothing can write into the directories under a mount point. The next recovery
waits for a guardian still at work, so its unmounts never race that run's mounts.

Run as `python -m rescue.process.guardian TARGET_ROOT`, with the pipe as its standard input. It is
the one process rescue starts outside rescue.process.execute: it must outlive rescue, not die with
it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

_pipe: int | None = None
WAIT_SECONDS = 30.0


def tell(message: str) -> None:
    """Send one line to the guardian, if one watches this run."""
    global _pipe
    if _pipe is None:
        return
    try:
        os.write(_pipe, f"{message}\n".encode())
    except OSError:  # the guardian is gone: nothing to tell
        _pipe = None


@contextlib.contextmanager
def watching(target_root: Path) -> Iterator[None]:
    """While the body runs, a guardian unmounts target_root's tree should rescue be killed."""
    global _pipe
    _wait_for_others()
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, False)
    # here: the guardian itself imports nothing of rescue
    from rescue.process.execute import child_env

    try:
        # Not through rescue.process.execute: the gate makes every child die with rescue (pdeathsig,
        # its own group that lifetime stops), and the guardian must outlive a kill -9 of rescue.
        subprocess.Popen(
            [sys.executable, "-m", "rescue.process.guardian", str(target_root)],
            stdin=read_end, stdout=subprocess.DEVNULL, start_new_session=True,
            env=child_env(),  # it unmounts: it needs no secret
        )  # fmt: skip
    finally:
        os.close(read_end)
    _pipe = write_end
    try:
        yield
    finally:
        tell("done")
        _pipe = None
        os.close(write_end)


def _wait_for_others() -> None:
    """A guardian still at work is a killed run's, cleaning up (a live run would hold the
    recovery lock, which the caller has): its unmounts must not race this run's mounts."""
    deadline = time.monotonic() + WAIT_SECONDS + 30
    while _others() and time.monotonic() < deadline:
        time.sleep(0.1)


def _others() -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"rescue.process.guardian" in argv[:4]:
            found.append(int(entry.name))
    return found


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_groups(groups: set[int]) -> None:
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + WAIT_SECONDS
    while any(_group_alive(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.05)


def main(argv: list[str]) -> int:
    target_root = Path(argv[0])
    groups: set[int] = set()
    done = False
    for line in sys.stdin.buffer:
        word, _, value = line.decode().strip().partition(" ")
        if word == "started":
            groups.add(int(value))
        elif word == "ended":
            groups.discard(int(value))
        elif word == "done":
            done = True
    if done:
        return 0
    _stop_groups(groups)
    from rescue.errors import RecoveryStepError
    from rescue.recovery.mounts import unmount_tree

    try:
        unmount_tree(target_root)  # nothing of the run is alive: a lazy unmount is safe too
    except RecoveryStepError as exc:
        print(f"rescue guardian: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C at the console is rescue's to handle
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    sys.exit(main(sys.argv[1:]))
