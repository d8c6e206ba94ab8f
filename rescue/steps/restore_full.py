"""Step 9: restore the whole backup into the target root, with progress.

It is staged inside the target root (on the new root file system, not in the rescue system's
RAM) and merged over the mount-point directories that are already there. A restore that was
killed leaves its staging directory behind: it is removed before the next attempt.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rescue.exact.fetch import Fetched
from rescue.exact.watch import HoleWatch
from rescue.steps.context import Context
from rescue.timespec import iso
from rescue.units import human_size

ID = "restore_full"
TITLE = "restore every file of the backup into the target root"
READ_ONLY = False
REDO_ON_RESUME = False


def plan(ctx: Context) -> list[str]:
    point = ctx.facts.restore_set
    which = f"the {point['kind']} set of {iso(point['time'])}" if point else "the chosen set"
    return [
        f"duplicity restore of {which} into {ctx.target_root} (merged over mount points), "
        "owners by number, the recorded holes of sparse files punched as they are written"
    ]


def run(ctx: Context) -> list[str]:
    for stale in ctx.target_root.glob(".rescue-restore-*"):
        shutil.rmtree(stale, ignore_errors=True)
    watch = HoleWatch(Fetched(_sidecar(ctx)).sparse_below(""))
    summary = ctx.engine().restore(
        None,
        ctx.target_root,
        ctx.restore_time(),
        force=True,
        stage_inside=True,
        numeric_owner=True,  # ids come back exactly, named or not (and restore_identity agrees)
        during=watch.during,
    )
    ctx.facts.punched = sorted(watch.touched)
    ctx.facts.restored_files = summary.files
    ctx.facts.restored_bytes = summary.bytes
    return [
        f"restored {summary.files} entries, {human_size(summary.bytes)}, from the set of "
        f"{iso(summary.time)} in {summary.seconds:.1f} s",
        f"{len(watch.sparse)} sparse files followed, {human_size(watch.freed)} of holes kept free",
    ]


def _sidecar(ctx: Context) -> Path | None:
    return Path(ctx.facts.metadata_file) if ctx.facts.metadata_file else None
