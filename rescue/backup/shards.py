"""Splitting one backup's selection into shards that duplicity can back up at once.

Why: duplicity is one process, and gzip and gpg on one core are its limit. Two size-balanced
chains run at once made a full backup 0.49-0.59x as long and a restore 0.59-0.61x on this
2-core machine (DUPLICITY-NOTES.md); one chain cannot use the second core.

The shape, chosen so that every command can keep seeing one backup:
- Every shard backs up the same root with rules of its own, so a path has the same name in
  whichever shard holds it as in an unsharded backup: listings, versions and restore paths
  need no translation.
- Shard 0 is the catch-all: the whole selection except the subtrees given to the others. A
  path that appears after the plan was made falls to it, and so does rescue's own directory
  (the manifest, the records and the sizes), whose ancestors are never given away whole.
- Shards 1..N-1 each hold a list of subtrees (directories, or single large files).

The plan is made from the sizes the capture walk records (rescue.exact.sizes), before duplicity
runs: file systems first (each mount point below the root becomes a subtree of its own, since a
file system is usually a disk that can be read at the same time as another), then the largest
subtrees are split into their children until each is small against a shard's share, and the
pieces go, largest first, to the shard that holds least so far.
"""

from __future__ import annotations

import heapq
import math
import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rescue.backup.selection import filter_args, literal
from rescue.config import Selection
from rescue.exact.records import under
from rescue.exact.sizes import Sizes
from rescue.layout.kernel import parse_mountinfo, read_text

MOUNTINFO = Path("/proc/self/mountinfo")

# A subtree larger than this share of one shard's part is split further, when it can be.
SPLIT_SHARE = 0.25
# At most this many pieces per shard: each given-away piece is one rule that duplicity checks
# against every path of shard 0, so thousands of them would slow the walk they are there to share.
PIECES_PER_SHARD = 16


# shards = "auto": at most one shard per this many bytes of the selection, so that a small
# backup is not split into chains whose start costs more than the parallel work saves.
AUTO_SHARD_BYTES = 256 * 2**20
# shards = "auto": at most this many, whatever the cores. Each shard is a duplicity process, a
# gpg and a connection to the destination at once; past a handful, the destination's link and
# disks, not the cores, set the pace, and a server of many cores also has other work to do.
AUTO_MAX_SHARDS = 8

# Names a group of small siblings may be cut by: their first character, in a glob's [...] set.
INITIALS = string.ascii_letters + string.digits + "._+@,%=~"


@dataclass(frozen=True, order=True)
class Piece:
    """What one shard is given: a subtree (a directory or a large file), or, with initials, the
    entries of the directory `path` whose names begin with one of those characters (the many
    small directories of /usr/share/doc, given as a few rules instead of thousands)."""

    path: str
    initials: str = ""

    def pattern(self, root: PurePosixPath) -> str:
        """The duplicity selection pattern that matches exactly this piece."""
        base = literal(str(root / self.path)).rstrip("/")
        return f"{base}/[{self.initials}]*" if self.initials else base or "/"

    def holds(self, rel: str) -> bool:
        """Whether rel (relative to the root) is this piece or inside it."""
        if not self.initials:
            return under(rel, self.path)
        if rel == self.path or not under(rel, self.path):
            return False
        return rel[len(self.path) + 1 if self.path else 0 :][:1] in self.initials

    def __str__(self) -> str:
        return f"{self.path}/[{self.initials}]*" if self.initials else self.path


@dataclass(frozen=True)
class Plan:
    """pieces[k]: what shard k is given; shard 0 holds its pieces and everything else.
    loads[k]: its bytes when the plan was made."""

    pieces: tuple[tuple[Piece, ...], ...]
    loads: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.pieces)

    def given_away(self) -> list[Piece]:
        """Every piece of shards 1..N-1: what shard 0 leaves out."""
        return [piece for pieces in self.pieces[1:] for piece in pieces]

    def balance(self) -> float:
        """The largest load against an even share (1.0 is a perfect split)."""
        total = sum(self.loads)
        return max(self.loads) * len(self.loads) / total if total else 1.0


def subtree_totals(sizes: Sizes) -> dict[str, int]:
    """Bytes under each recorded directory ("" is the root), its subdirectories included."""
    totals: dict[str, int] = {}
    for rel, allocated in sizes.dirs.items():
        node = rel
        while True:
            totals[node] = totals.get(node, 0) + allocated
            if not node:
                break
            node = node.rpartition("/")[0]
    return totals


def _name(rel: str) -> str:
    return rel.rpartition("/")[2]


class _Planner:
    """The split of one plan() call: the recorded tree, and the pieces found so far."""

    def __init__(self, sizes: Sizes, shards: int, kept: list[str], edges: list[str]) -> None:
        self.totals = subtree_totals(sizes)
        self.files = sizes.files
        self.children: dict[str, list[str]] = {}
        for rel in [*self.totals, *sizes.files]:
            if rel:
                self.children.setdefault(rel.rpartition("/")[0], []).append(rel)
        self.kept = kept
        self.marks = [*kept, *edges]  # kept paths and file-system boundaries
        self.share = self.totals.get("", 0) / shards
        self.limit = PIECES_PER_SHARD * shards
        self.pieces: dict[Piece, int] = {}

    def size(self, rel: str) -> int:
        return self.totals[rel] if rel in self.totals else self.files[rel]

    def stays(self, rel: str) -> bool:
        """Inside a kept path: shard 0's, whatever its size."""
        return any(under(rel, k) for k in self.kept)

    def must_split(self, rel: str) -> bool:
        """A proper ancestor of a kept path or of a file-system boundary: never one piece."""
        return any(under(k, rel) and k != rel for k in self.marks)

    def wanted(self, rel: str) -> bool:
        """Worth a piece of its own: not tiny, or on the way to a kept path or a boundary."""
        tiny = self.share / (2 * PIECES_PER_SHARD)
        return self.size(rel) >= tiny or any(under(k, rel) for k in self.marks)

    def split(self) -> dict[Piece, int]:
        heap = [(-self.size(c), c) for c in self.children.get("", [])]
        self._group("", heap)
        heapq.heapify(heap)
        while heap:
            negative, rel = heapq.heappop(heap)
            if self.stays(rel):
                continue
            below = self.children.get(rel, []) if rel in self.totals else []
            big = -negative > self.share * SPLIT_SHARE
            if below and (self.must_split(rel) or big) and self._room(heap, 1):
                grown = [(-self.size(c), c) for c in below]
                self._group(rel, grown, len(heap))
                for item in grown:
                    heapq.heappush(heap, item)
            elif below and self.must_split(rel):  # no room: its own ones, the rest stays
                for child in below:
                    if self.wanted(child):
                        heapq.heappush(heap, (-self.size(child), child))
            elif not self.must_split(rel):
                self.pieces[Piece(rel)] = -negative
        return self.pieces

    def _room(self, heap: list[tuple[int, str]], more: int) -> bool:
        return len(self.pieces) + len(heap) + more <= self.limit

    def _group(self, parent: str, items: list[tuple[int, str]], waiting: int = 0) -> None:
        """When the children of parent are too many for a piece each, keep the ones worth it
        and make the small ones a few pieces by their names' first characters (an initial
        that a kept child also starts with stays out: its small siblings stay in shard 0)."""
        if len(self.pieces) + waiting + len(items) <= self.limit:
            return
        keep = [(n, c) for n, c in items if self.wanted(c)]
        small = [c for _, c in items if not self.wanted(c) and not self.stays(c)]
        taken = {_name(c)[:1] for _, c in keep}
        by_initial: dict[str, int] = {}
        for rel in small:
            initial = _name(rel)[:1]
            if initial in INITIALS and initial not in taken:
                by_initial[initial] = by_initial.get(initial, 0) + self.size(rel)
        items[:] = keep
        room = self.limit - len(self.pieces) - waiting - len(keep)
        total = sum(by_initial.values())
        count = min(room, math.ceil(total / (self.share / PIECES_PER_SHARD))) if total else 0
        if count < 1:
            return
        group, weight = "", 0
        for initial in sorted(by_initial):
            group, weight = group + initial, weight + by_initial[initial]
            if weight >= total / count:
                self.pieces[Piece(parent, group)] = weight
                group, weight = "", 0
        if group:
            self.pieces[Piece(parent, group)] = weight


def plan(
    sizes: Sizes,
    shards: int,
    *,
    keep: Iterable[str] = (),
    boundaries: Iterable[str] = (),
) -> Plan:
    """Split the recorded selection into `shards` parts. keep: paths that must stay in shard 0
    (rescue's own directory): no ancestor of one is given away whole. boundaries: mount points
    below the root (relative), each made a piece of its own before any split by size."""
    total = subtree_totals(sizes).get("", 0)
    if shards < 2 or total == 0:
        return Plan(((),), (total,))
    kept = [k.strip("/") for k in keep]
    pieces = _Planner(sizes, shards, kept, [b.strip("/") for b in boundaries]).split()
    loads = [total - sum(pieces.values())] + [0] * (shards - 1)  # shard 0: the rest
    given: list[list[Piece]] = [[] for _ in range(shards)]
    for piece, bytes_ in sorted(pieces.items(), key=lambda item: (-item[1], item[0])):
        lightest = min(range(shards), key=lambda k: (loads[k], k))
        loads[lightest] += bytes_
        given[lightest].append(piece)
    return Plan(tuple(tuple(sorted(g)) for g in given), tuple(loads))


def shard_args(
    selection: Selection,
    shard_plan: Plan,
    shard: int,
    extra_excludes: Iterable[str] = (),
    always: Iterable[str] = (),
) -> list[str]:
    """duplicity's selection arguments for one shard: the settings' selection (filter_args),
    less the pieces of the other shards for shard 0, or cut down to its own pieces for the
    others. always (rescue's own files) travels in shard 0 only."""
    root = PurePosixPath(str(selection.root))
    if shard == 0:
        away = [piece.pattern(root) for piece in shard_plan.given_away()]
        return filter_args(selection, [*extra_excludes, *away], always)
    includes: list[str] = []
    for include in map(PurePosixPath, map(str, selection.include)):
        rel = "" if include == root else str(include.relative_to(root))
        for piece in shard_plan.pieces[shard]:
            if under(piece.path, rel):  # the include holds the whole piece
                includes.append(piece.pattern(root))
            elif piece.holds(rel):  # the piece holds the include
                includes.append(str(include))
    cut = selection.model_copy(update={"include": includes})
    return filter_args(cut, extra_excludes) if includes else ["--exclude", "**"]


def boundaries_below(root: Path, sizes: Sizes) -> list[str]:
    """The mount points below root (relative) that the recorded walk went into: each a file
    system of its own, usually a disk that can be read beside the others."""
    found = []
    for mount in parse_mountinfo(read_text(MOUNTINFO)):
        point = PurePosixPath(mount.mountpoint)
        if point == PurePosixPath(root) or not point.is_relative_to(root):
            continue
        rel = str(point.relative_to(root))
        if rel in sizes.dirs:
            found.append(rel)
    return sorted(found)


def auto_count(total: int, cores: int | None) -> int:
    """shards = "auto": one per core, at most one per AUTO_SHARD_BYTES and AUTO_MAX_SHARDS."""
    return max(1, min(cores or 1, total // AUTO_SHARD_BYTES, AUTO_MAX_SHARDS))
