"""`rescue verify`: compare a tree with a backup set, and with --deep with its records too."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from rescue.backup.engine import Engine
from rescue.backup.listing import relative_path
from rescue.exact.deep import Deep, compare
from rescue.exact.fetch import NO_RECORDS, fetched

_TOP_MTIME = re.compile(r"File \. has mtime ")


@dataclass
class Verified:
    set_time: int
    compared: int  # files duplicity compared, content included
    differences: list[str] = field(default_factory=list)
    deep: Deep | None = None
    notes: list[str] = field(default_factory=list)


def verify_tree(engine: Engine, path: str, local: Path, at: int | None, deep: bool) -> Verified:
    """Compare local (path of the backup, restored or live there) with the set as of `at`:
    duplicity verify --compare-data, then with deep the records (rescue.exact.deep)."""
    prefix = relative_path(path, engine.settings)
    backup_set = engine.pick(at)
    compared, differences = engine.verify(path, local, backup_set.time)
    result = Verified(backup_set.time, compared, list(differences))
    if not deep:
        return result
    with fetched(engine, backup_set.time) as records:
        if records.sidecar is None:
            result.notes.append(NO_RECORDS)
        result.deep = compare(records.records(), prefix, local, records.hardlinks)
    if result.deep.top_time:
        # The top's time is its record's, put back by every restore even where the backup
        # holds a later second (an entry added to it after the walk): the deep half judges it.
        result.differences = [d for d in result.differences if not _TOP_MTIME.match(d)]
    result.differences += result.deep.differences
    if result.deep.changed:
        result.notes.append(
            f"{result.deep.changed} path(s) changed between the records and the backup: "
            "their exact times were not compared"
        )
    return result
