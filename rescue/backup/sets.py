"""Backup sets and chains: what a destination holds, as duplicity's collection status tells it.

A chain is a full backup and the incrementals that depend on it; restoring any set needs its
whole chain. These types are shared by the engine and by the cache reader.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Literal

from rescue.backup.timespec import from_duplicity_time, iso
from rescue.errors import MissingVolumeError, NoBackupError

Kind = Literal["full", "incremental"]


@dataclass
class BackupSet:
    kind: Kind
    time: int
    volumes: int
    encrypted: bool
    chain: int
    bytes: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "date": iso(self.time)}


@dataclass
class Chain:
    index: int
    sets: list[BackupSet]

    @property
    def start(self) -> int:
        return self.sets[0].time

    @property
    def end(self) -> int:
        return self.sets[-1].time


@dataclass
class Status:
    destination: str
    chains: list[Chain]
    orphaned: int = 0
    incomplete: int = 0
    damaged: int = 0  # chains duplicity lists with no usable set: their volumes are gone

    @property
    def sets(self) -> list[BackupSet]:
        return [s for c in self.chains for s in c.sets]

    def last_full(self) -> BackupSet | None:
        fulls = [s for s in self.sets if s.kind == "full"]
        return fulls[-1] if fulls else None

    def as_dict(self) -> dict[str, object]:
        return {
            "destination": self.destination,
            "chains": [
                {"chain": c.index, "start": iso(c.start), "end": iso(c.end), "sets": len(c.sets)}
                for c in self.chains
            ],
            "sets": [s.as_dict() for s in self.sets],
            "orphaned_sets": self.orphaned,
            "incomplete_sets": self.incomplete,
            "damaged_chains": self.damaged,
        }


def pick_set(status: Status, at: int | None) -> BackupSet:
    """The newest set at or before `at` (now when None), as duplicity's -t would choose."""
    if not status.sets:
        if status.damaged:
            raise MissingVolumeError(
                f"backup volumes are missing from {status.destination}: "
                f"{status.damaged} chain(s) hold no restorable set"
            )
        raise NoBackupError(f"no backup found at {status.destination}")
    if at is None:
        return status.sets[-1]
    candidates = [s for s in status.sets if s.time <= at]
    if not candidates:
        oldest = status.sets[0]
        raise NoBackupError(
            f"no backup as old as {iso(at)}; the oldest set is from {iso(oldest.time)}"
        )
    return candidates[-1]


# duplicity's volume names: a full's carry its time, an incremental's the time it starts from
# and its own (the set's time), then the volume number and the compression or encryption.
_STAMP = r"(\d{8}T\d{6}Z)"
VOLUME_NAME = re.compile(
    rf"^duplicity-(?:full\.{_STAMP}|inc\.{_STAMP}\.to\.{_STAMP})\.vol\d+\.difftar(?:\.\w+)?$"
)


def volume_sizes(listing: dict[str, int]) -> dict[int, int]:
    """Bytes of each set's volumes at the destination, by set time, from a listing of its
    files (name -> size). The volumes themselves are the truth: a run's own count misses
    what an earlier, interrupted run uploaded before the one that resumed it, and a set that
    another process (a raw duplicity, an orphan) finished has no run of this host at all."""
    sizes: dict[int, int] = {}
    for name, size in listing.items():
        found = VOLUME_NAME.match(name)
        if found is None:
            continue
        stamp = found.group(1) or found.group(3)
        when = from_duplicity_time(stamp)
        sizes[when] = sizes.get(when, 0) + size
    return sizes


def parse_collection_status(lines: list[str], destination: str) -> Status:
    """Read the control lines of duplicity's collection-status record.

    They look like: `chain-no-sig 0` / `chain-complete`, then ` full 20261126T082608Z 1 enc`
    per set, then `orphaned-sets-num 0` and `incomplete-sets-num 0`.
    """
    chains: list[Chain] = []
    orphaned = incomplete = 0
    for line in lines:
        words = line.split()
        if not words:
            continue
        if words[0] in ("chain-no-sig", "chain-complete"):
            chains.append(Chain(index=0, sets=[]))
        elif words[0] in ("full", "inc") and chains and len(words) >= 4:
            chains[-1].sets.append(
                BackupSet(
                    kind="full" if words[0] == "full" else "incremental",
                    time=from_duplicity_time(words[1]),
                    volumes=int(words[2]),
                    encrypted=words[3] == "enc",
                    chain=0,
                )
            )
        elif words[0] == "orphaned-sets-num":
            orphaned = int(words[1])
        elif words[0] == "incomplete-sets-num":
            incomplete = int(words[1])
    damaged = sum(1 for c in chains if not c.sets)
    chains = sorted((c for c in chains if c.sets), key=lambda c: c.start)
    for number, chain in enumerate(chains, start=1):
        chain.index = number
        for s in chain.sets:
            s.chain = number
    return Status(destination, chains, orphaned, incomplete, damaged)
