"""What the engine's actions return, and the progress a long run reports while it works.

Why a module of its own: the CLI renders these and the drill and recovery read them, without
needing the engine that fills them in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

from rescue.backup.sets import BackupSet, Kind
from rescue.backup.timespec import iso
from rescue.placement.place import Placed

BackupMode = Literal["full", "incremental", "auto"]


@dataclass
class BackupSummary:
    kind: Kind
    reason: str
    time: int
    destination: str
    source_files: int
    source_bytes: int
    files_changed: int
    bytes_written: int
    seconds: float
    removed_chains: int = 0
    retention_note: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "date": iso(self.time)}


@dataclass
class FileEntry:
    path: str
    mtime: int
    type: str


@dataclass
class Version:
    set: BackupSet
    mtime: int | None
    type: str | None
    changed: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "date": iso(self.set.time),
            "set_type": self.set.kind,
            "exists": self.type is not None,
            "changed": self.changed,
            "mtime": iso(self.mtime) if self.mtime is not None else None,
            "type": self.type,
        }


@dataclass
class RestoreSummary:
    path: str
    destination: str
    time: int
    files: int
    bytes: int
    seconds: float
    placed: Placed

    def as_dict(self) -> dict[str, object]:
        plain = {k: v for k, v in asdict(self).items() if k != "placed"}
        return {**plain, "date": iso(self.time), **self.placed.as_dict()}


@dataclass
class Progress:
    """What a long run has done so far; the CLI draws it, the engine fills it in."""

    phase: str
    files: int = 0
    bytes: int = 0
    fraction: float | None = None
    current: str = ""
    started: float = field(default_factory=time.monotonic)


# Called with the progress of a long run, and with None when the run ends.
ProgressCallback = Callable[[Progress | None], None]
