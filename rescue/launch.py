"""The `rescue` command's first moment: SIGTERM and SIGHUP are answered before the command
line (click, pydantic, every command module) is even imported, so a stop at any moment gets
its one line and its exit code. The real handlers (rescue.lifetime) take over in the CLI."""

from __future__ import annotations

import signal
import sys
from types import FrameType


def _stopped_early(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    print(f"rescue: stopped by {name} before it had started anything", file=sys.stderr)
    sys.exit(128 + signum)


def main() -> None:
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stopped_early)
    from rescue.cli import main as cli_main

    cli_main()
