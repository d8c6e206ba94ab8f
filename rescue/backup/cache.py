"""The backup sets as duplicity's local cache (its archive dir) names them.

Why: asking duplicity for its collection status costs a whole duplicity start (about 0.4 s),
twice per backup. Every duplicity run first synchronises its cache with the destination and
leaves one manifest per set there, named `duplicity-full.<T>.manifest` or
`duplicity-inc.<T1>.to.<T2>.manifest` (duplicity's documented file-name format). So after any run
the cache lists exactly the sets the destination holds, and before a run it lists what the last
run saw. rescue names the cache directory itself (`--name`), so it knows where to look.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from rescue.backup.sets import BackupSet, Chain, Status
from rescue.backup.timespec import from_duplicity_time

_MANIFEST = re.compile(
    r"^duplicity-(?P<kind>full|inc)\.(?P<start>\d{8}T\d{6}Z)"
    r"(?:\.to\.(?P<end>\d{8}T\d{6}Z))?\.manifest$"
)


def cache_name(url: str) -> str:
    """The --name rescue gives duplicity for a destination URL: stable and filesystem-safe."""
    return "rescue-" + hashlib.sha256(url.encode()).hexdigest()[:20]


def cached_status(cache: Path, destination: str) -> Status:
    """The chains and sets the cache names, oldest first (volume counts are not known here)."""
    fulls: dict[int, Chain] = {}
    incs: list[tuple[int, int]] = []
    try:
        names = [p.name for p in cache.iterdir()]
    except FileNotFoundError:
        names = []
    for name in names:
        match = _MANIFEST.match(name)
        if not match:
            continue
        start = from_duplicity_time(match.group("start"))
        if match.group("kind") == "full":
            fulls[start] = Chain(0, [BackupSet("full", start, 0, False, 0)])
        else:
            incs.append((start, from_duplicity_time(match.group("end"))))
    chains = [fulls[t] for t in sorted(fulls)]
    for start, end in sorted(incs, key=lambda pair: pair[1]):
        owner = next((c for c in reversed(chains) if c.start <= start), None)
        if owner is not None:
            owner.sets.append(BackupSet("incremental", end, 0, False, 0))
    for number, chain in enumerate(chains, start=1):
        chain.index = number
        for backup_set in chain.sets:
            backup_set.chain = number
    return Status(destination, chains)
