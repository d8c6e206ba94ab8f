"""A local record of every backup run: what duplicity cannot say about a set or a failure.

duplicity's collection status gives each set's type, time and volume count, but nothing about
the runs that made them or failed. Each `rescue backup` appends one JSON line here, beside
duplicity's cache: its start and end, the mode asked for, the kind made, the outcome, the bytes
written, the set's time and the error line (secrets masked). Each drill of the configured
backup appends one too: its outcome, restore time and the bytes it compared. `rescue status`
reads the last runs and the last drill from it (a set's size it takes from the destination's
volumes); losing it loses only those.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from rescue.process import execute, lifetime

HISTORY_FILE = "rescue-history.jsonl"

Outcome = Literal["success", "failure", "interrupted"]

log = logging.getLogger("rescue.backup.history")


@dataclass
class Run:
    """One backup run as the history file keeps it (times in epoch seconds)."""

    start: float
    end: float
    mode: str
    outcome: Outcome
    kind: str | None = None
    bytes: int | None = None
    set_time: int | None = None
    error: str | None = None

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)


DrillOutcome = Literal["identical", "different", "failure", "interrupted"]


@dataclass
class Drill:
    """One `rescue drill` against the configured backup. Kept in the same file as the backup
    runs, as lines with "drill": true, which older readers skip (Run() refuses the key)."""

    start: float
    end: float
    outcome: DrillOutcome
    path: str = "/"
    set_time: int | None = None
    restore_seconds: float | None = None
    compared_bytes: int | None = None
    differences: int | None = None
    error: str | None = None
    drill: bool = True

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)


def error_line(exc: BaseException) -> str:
    """The one line a record (and a failure ping) keeps of an error: its first line, masked."""
    if isinstance(exc, KeyboardInterrupt | lifetime.Terminated):
        return f"interrupted ({exc or 'Ctrl-C'})"
    text = str(exc).strip()
    return execute.mask(text.splitlines()[0]) if text else type(exc).__name__


def record_run(archive_dir: Path, run: Run | Drill) -> None:
    """Append run; a history that cannot be written is logged, never the run's failure."""
    try:
        archive_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(archive_dir / HISTORY_FILE, "a", encoding="utf-8") as out:
            out.write(json.dumps(asdict(run)) + "\n")
    except OSError as exc:
        log.warning("cannot record the run in %s: %s", archive_dir / HISTORY_FILE, exc)


@contextmanager
def recorded(archive_dir: Path, record: Run | Drill) -> Iterator[None]:
    """Append record to the history however its block ends, so a failed or interrupted backup
    or drill is on record too. The block sets the outcome of a success; an error leaves the
    record's outcome ("failure", or "interrupted" for Ctrl-C and SIGTERM) and its error line."""
    try:
        yield
    except (KeyboardInterrupt, lifetime.Terminated) as exc:
        record.outcome, record.error = "interrupted", error_line(exc)
        raise
    except Exception as exc:
        record.error = error_line(exc)
        raise
    finally:
        record.end = time.time()
        record_run(archive_dir, record)


def _parse(line: str) -> Run | None:
    try:
        entry = json.loads(line)
        if entry.get("drill"):
            return None
        if "outcome" not in entry:  # the older sets-only line: {"time", "kind", "bytes"}
            t = int(entry["time"])
            return Run(t, t, entry["kind"], "success", entry["kind"], int(entry["bytes"]), t)
        return Run(**entry)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def runs(archive_dir: Path) -> list[Run]:
    """Every recorded run, oldest first; unreadable lines are skipped."""
    try:
        lines = (archive_dir / HISTORY_FILE).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [r for r in map(_parse, lines) if r is not None]


def drills(archive_dir: Path) -> list[Drill]:
    """Every recorded drill, oldest first; unreadable lines are skipped."""
    try:
        lines = (archive_dir / HISTORY_FILE).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        try:
            entry = json.loads(line)
            if entry.get("drill"):
                found.append(Drill(**entry))
        except (ValueError, TypeError, AttributeError):
            continue
    return found
