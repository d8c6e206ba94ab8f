"""One view of many hosts' backups in one bucket, read from the bucket alone.

Why records beside each chain: asking duplicity for each host's collection status means
reading every host's manifests, minutes for a fleet. So each backup writes `rescue-summary.json`
beside its chain (its sets in a few numbers) and each drill writes `rescue-drill.json`; two
files, so that a drill and a backup never overwrite each other's news. `rescue fleet status`
finds the hosts by walking the bucket's "directories" from the top (one listing per level,
never into a host's own prefix, whose volumes may be thousands) and reads the two small files of
each host at once in a few threads: a hundred hosts take seconds.

A host's keys need only its own prefix: nothing is written outside it. A record that cannot be
written is a warning, never a failed backup.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from rescue import __version__
from rescue.backup import remotedir, s3
from rescue.backup.sets import Status
from rescue.config import Settings
from rescue.errors import RescueError, UsageError

log = logging.getLogger("rescue.backup.fleet")

SUMMARY_FILE = "rescue-summary.json"
DRILL_FILE = "rescue-drill.json"
FORMAT = 1
# How deep below the top the walk looks for hosts (prefix "a/b/c/host" is 4 levels).
MAX_DEPTH = 4
THREADS = 16


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def publish_backup(settings: Settings, status: Status, hostname: str, machine_id: str) -> None:
    """The summary of the sets now at the destination, beside them."""
    sets = status.sets
    fulls = [s.time for s in sets if s.kind == "full"]
    incrementals = [s.time for s in sets if s.kind == "incremental"]
    record = {
        "format": FORMAT,
        "hostname": hostname,
        "machine_id": machine_id,
        "written": _now_iso(),
        "rescue": __version__,
        "chains": len(status.chains),
        "sets": len(sets),
        "last_full": max(fulls, default=None),
        "last_incremental": max(incrementals, default=None),
        "oldest": sets[0].time if sets else None,
        "newest": sets[-1].time if sets else None,
    }
    _write(settings, SUMMARY_FILE, record)


def publish_drill(settings: Settings, outcome: str, differences: int, set_time: int | None) -> None:
    record = {
        "format": FORMAT,
        "time": int(time.time()),
        "outcome": outcome,
        "differences": differences,
        "set_time": set_time,
    }
    _write(settings, DRILL_FILE, record)


def _write(settings: Settings, name: str, record: dict[str, object]) -> None:
    try:
        with remotedir.opened(settings) as folder:
            folder.write(name, (json.dumps(record, sort_keys=True) + "\n").encode())
    except (RescueError, OSError) as exc:
        log.warning("the fleet record %s was not written: %s", name, exc)


@dataclass
class HostView:
    """One host as the fleet sees it."""

    prefix: str
    summary: dict[str, Any] | None
    drill: dict[str, Any] | None

    def age(self, now: float) -> float | None:
        newest = (self.summary or {}).get("newest")
        return now - newest if isinstance(newest, int | float) else None

    def stale(self, now: float, after_seconds: float) -> bool:
        age = self.age(now)
        return age is None or age > after_seconds

    def as_dict(self, now: float, after_seconds: float) -> dict[str, object]:
        summary = self.summary or {}
        return {
            "prefix": self.prefix,
            "hostname": summary.get("hostname"),
            "last_full": summary.get("last_full"),
            "last_incremental": summary.get("last_incremental"),
            "chains": summary.get("chains"),
            "sets": summary.get("sets"),
            "restore_window": [summary.get("oldest"), summary.get("newest")],
            "last_drill": self.drill,
            "age_seconds": self.age(now),
            "stale": self.stale(now, after_seconds),
        }


def hosts(settings: Settings, under: str = "") -> list[HostView]:
    """Every host below `under` in the destination's bucket, by its records."""
    if settings.destination.method != "s3":
        raise UsageError(
            f"fleet status reads an S3 bucket; this destination is method "
            f"{settings.destination.method}"
        )
    where = s3.place(settings)
    client = s3.client(settings)
    top = under.strip("/")
    with (
        s3.errors(s3.Place(where.endpoint, where.bucket, top)),
        ThreadPoolExecutor(THREADS) as pool,
    ):
        found = sorted(_walk(client, where.bucket, top, pool))

        def view(prefix: str) -> HostView:
            return HostView(
                prefix,
                _read(client, where.bucket, f"{prefix}/{SUMMARY_FILE}"),
                _read(client, where.bucket, f"{prefix}/{DRILL_FILE}"),
            )

        return list(pool.map(view, found))


def _walk(client: Any, bucket: str, top: str, pool: ThreadPoolExecutor) -> Iterator[str]:
    """The prefixes that hold a summary: a level's own files are checked first, and only the
    levels without one are walked into, in parallel, level by level."""
    level = [top]
    for _ in range(MAX_DEPTH + 1):
        below: list[str] = []
        for prefix, (is_host, children) in zip(
            level, pool.map(lambda p: _level(client, bucket, p), level), strict=True
        ):
            if is_host:
                yield prefix
            else:
                below += children
        if not below:
            return
        level = below


def _level(client: Any, bucket: str, prefix: str) -> tuple[bool, list[str]]:
    """Whether prefix is a host's (it holds a summary); its sub-prefixes otherwise."""
    start = f"{prefix}/" if prefix else ""
    if prefix and _read(client, bucket, f"{start}{SUMMARY_FILE}") is not None:
        return True, []
    children: list[str] = []
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=start, Delimiter="/"
    )
    for page in pages:
        children += [c["Prefix"].rstrip("/") for c in page.get("CommonPrefixes", [])]
    return False, children


def _read(client: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
