"""The destination's record of its sharded chains: each one's plan and its complete sets.

Why a record at the destination: a sharded chain is shard 0's chain at the destination URL
plus one chain per other shard at `<url>/shard-K`, and every reader (on this host, on another,
or the rescue ISO with no cache at all) must know, before it reads anything, which shards a
set is spread over and whether every shard holds it. Shard 0 alone looks like a whole backup;
read as one, a sharded set would silently miss what the other shards hold.

The record (`rescue-shards.json`, one small file beside the volumes, written through
rescue.backup.remotedir) names each sharded chain by its full's time, with its plan (what each
shard 1..N-1 holds; shard 0 holds the rest) and the sets every shard has completed. A backup
adds the chain before any shard runs, and a set only once all of them succeeded. So:
- a chain the record does not name is a one-shard chain (every backup rescue made before
  shards, and every backup with `shards = 1`): read as always;
- a set of a named chain that the record does not list is incomplete (a shard failed or the
  run was killed): it is shown as such and never restored from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rescue.backup.remotedir import RemoteDir
from rescue.backup.shards import Piece, Plan
from rescue.exact.records import under

SHARDS_FILE = "rescue-shards.json"
VERSION = 1


def shard_dir(shard: int) -> str:
    """The sub-directory of the destination that holds shard k's chain (k >= 1)."""
    return f"shard-{shard}"


def shard_url(url: str, shard: int) -> str:
    """duplicity's URL of shard k: the destination itself for shard 0."""
    return url if shard == 0 else f"{url.rstrip('/')}/{shard_dir(shard)}"


@dataclass
class ShardedChain:
    """One sharded chain: its full's time, its plan and the sets all its shards hold."""

    full: int
    plan: Plan
    sets: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        return self.plan.count

    def owner(self, rel: str) -> int:
        """The shard that backs up rel itself: the one whose piece holds it, else shard 0."""
        for shard, pieces in enumerate(self.plan.pieces[1:], start=1):
            if any(piece.holds(rel) for piece in pieces):
                return shard
        return 0

    def holders(self, rel: str) -> list[int]:
        """The shards that hold something of rel ("" is everything): the owner alone when a
        piece holds all of rel (pieces never overlap), else shard 0 and each shard with a
        piece inside rel."""
        owner = self.owner(rel)
        if owner:
            return [owner]
        below = [
            shard
            for shard, pieces in enumerate(self.plan.pieces[1:], start=1)
            if any(under(piece.path, rel) for piece in pieces)
        ]
        return [0, *below]

    def as_dict(self) -> dict[str, object]:
        return {
            "full": self.full,
            "pieces": [
                [{"path": p.path, "initials": p.initials} for p in pieces]
                for pieces in self.plan.pieces
            ],
            "loads": list(self.plan.loads),
            "sets": sorted(set(self.sets)),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardedChain:
        pieces = tuple(
            tuple(Piece(str(p["path"]), str(p.get("initials", ""))) for p in shard)
            for shard in data["pieces"]
        )
        loads = tuple(int(n) for n in data.get("loads", [0] * len(pieces)))
        return cls(int(data["full"]), Plan(pieces, loads), [int(t) for t in data["sets"]])


class ShardMapError(ValueError):
    """The record is unreadable: the caller names the destination."""


def parse(raw: bytes | None) -> dict[int, ShardedChain]:
    """The sharded chains by full time; none when there is no record."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
        if int(data.get("version", 0)) > VERSION:
            raise ShardMapError(
                f"{SHARDS_FILE} was written by a newer rescue (version {data['version']})"
            )
        chains = [ShardedChain.from_dict(c) for c in data["chains"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, ShardMapError):
            raise
        raise ShardMapError(f"{SHARDS_FILE} cannot be read: {exc}") from None
    return {c.full: c for c in chains}


def read(folder: RemoteDir) -> dict[int, ShardedChain]:
    return parse(folder.read(SHARDS_FILE))


def write(folder: RemoteDir, chains: dict[int, ShardedChain]) -> None:
    """Replace the record (temporary name, then renamed: never half of one)."""
    if not chains:
        folder.delete(SHARDS_FILE)
        return
    record = {"version": VERSION, "chains": [chains[t].as_dict() for t in sorted(chains)]}
    folder.write(SHARDS_FILE, (json.dumps(record, indent=1) + "\n").encode())
