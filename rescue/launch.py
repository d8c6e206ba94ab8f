"""The `rescue` command's first and last moments: SIGTERM and SIGHUP are answered before the
command line (click, pydantic, every command module) is even imported, so a stop at any moment
gets its one line and its exit code; the real handlers (rescue.process.lifetime) take over in the
CLI, and once it is done a late stop is ignored while Python exits."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def _stopped_early(signum: int, frame: FrameType | None) -> None:
    """Nothing is started yet, so nothing is to undo: leave at once. An exception raised here
    could land inside an import's native code (pydantic's), which turns it into a traceback."""
    name = signal.Signals(signum).name
    print(f"rescue: stopped by {name} before it had started anything", file=sys.stderr)
    sys.stderr.flush()
    os._exit(128 + signum)


def main() -> None:
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stopped_early)
    from rescue.cli import main as cli_main

    try:
        cli_main()
    finally:
        # The work is done (or stopped): a stop that comes while Python shuts down changes
        # nothing, and must not turn the run's own exit code into a bare kill by SIGTERM
        # (Python puts the default handlers back as it exits).
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
