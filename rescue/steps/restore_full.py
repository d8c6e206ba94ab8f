"""Step 9: restore the whole backup into the target, one file system at a time, with progress.

Each mounted file system of the target gets its own duplicity run, staged on that file system
itself and merged into it by rename (rescue.placement): the root's run leaves out the paths
where other file systems are mounted, and each of those restores its own path (see _restore for
the file systems mounted below it in turn). So no file is ever copied across file systems, and
a separate /boot or /home is filled directly, never through the root's free space. A run that
was killed leaves its staging directory behind: it is removed before the next attempt, and the
merge's journal lets the next attempt replace what the killed one had already placed. A file
system whose run finished is recorded in the state file at once, so a resumed recovery does not
restore it again (which would need its room twice). Before the first run, every file system's
part of the backup is checked against the room of the file system that receives it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from rescue.backup.engine import Engine
from rescue.backup.results import RestoreSummary
from rescue.backup.timespec import iso
from rescue.errors import PathNotInBackupError, RescueError
from rescue.exact.fetch import Fetched
from rescue.exact.sizes import check_room, load_sizes
from rescue.exact.watch import HoleWatch
from rescue.placement.guard import file_system_root
from rescue.steps.context import Context
from rescue.units import human_size

log = logging.getLogger("rescue.steps")

ID = "restore_full"
TITLE = "restore every file of the backup into the target root"
READ_ONLY = False
REDO_ON_RESUME = False


def plan(ctx: Context) -> list[str]:
    point = ctx.facts.restore_set
    which = f"the {point['kind']} set of {iso(point['time'])}" if point else "the chosen set"
    systems = file_systems(ctx) if ctx.facts.mounts else [("", [])]
    return [
        f"duplicity restore of {which} into {ctx.target_root}, one run per file system "
        f"({', '.join('/' + rel for rel, _ in systems)}), each staged on its own file system "
        "and merged in by rename; owners by number, the recorded holes of sparse files "
        "punched as they are written"
    ]


def _under(rel: str, other: str) -> bool:
    return other != rel and (not rel or other.startswith(rel + "/"))


def file_systems(ctx: Context) -> list[tuple[str, list[str]]]:
    """(backup path of each mounted file system, the mount points below it), root first.

    A file system mounted under an excluded path (/mnt/data with /mnt excluded) is skipped:
    the backup holds nothing of it."""
    points = sorted({m["mountpoint"].strip("/") for m in ctx.facts.mounts} | {""})
    excluded = ctx.manifest().excluded_paths()
    points = [p for p in points if not any(p == x or _under(x, p) for x in excluded if x)]
    return [(rel, [p for p in points if _under(rel, p)]) for rel in points]


def run(ctx: Context) -> list[str]:
    records = Fetched(_sidecar(ctx))
    engine = ctx.engine()
    at = ctx.restore_time()
    systems = file_systems(ctx)
    done = ctx.facts.restored_systems
    room = load_sizes(Path(ctx.facts.sizes_file) if ctx.facts.sizes_file else None)
    for rel, below in systems:  # every file system is checked before any is written
        if rel not in done:
            check_room(room, rel, ctx.target(rel), f"the backup's /{rel}", below, whole=True)
    lines = []
    for rel, below in systems:
        if rel in done and done[rel]["at"] == at:
            lines.append(f"/{rel}: restored by an earlier attempt")
            continue
        watch = HoleWatch(records.sparse_below(rel))
        try:
            summary = _restore(engine, ctx.target(rel), rel, below, at, watch)
        except PathNotInBackupError:
            lines.append(f"/{rel}: the backup holds nothing there")
            continue
        kept = summary.placed.undo
        # The top of a file system mounted below the root is its mount point: restored with
        # it (owner, mode, times), and left out of the root's run, so it is counted here.
        files = summary.files + (1 if rel else 0)
        lines.append(
            f"/{rel}: {files} entries, {human_size(summary.bytes)} in "
            f"{summary.seconds:.1f} s"
            + (f"; {summary.placed.replaced} replaced entries kept in {kept}" if kept else "")
        )
        done[rel] = {
            "at": at,
            "files": files,
            "bytes": summary.bytes,
            "seconds": summary.seconds,
            "followed": len(watch.sparse),
            "freed": watch.freed,
            "punched": [str(PurePosixPath(rel, t)) if rel else t for t in watch.touched],
        }
        ctx.checkpoint()  # a resume after a kill starts with the next file system
    results = list(done.values())
    ctx.facts.punched = sorted(p for r in results for p in r["punched"])
    ctx.facts.restored_files = files = sum(r["files"] for r in results)
    ctx.facts.restored_bytes = size = sum(r["bytes"] for r in results)
    followed = sum(r["followed"] for r in results)
    freed = sum(r["freed"] for r in results)
    seconds = sum(r["seconds"] for r in results)
    return [
        f"restored {files} entries, {human_size(size)}, from the set of {iso(at)} in "
        f"{seconds:.1f} s",
        *lines,
        f"{followed} sparse files followed, {human_size(freed)} of holes kept free",
    ]


def _restore(
    engine: Engine, point: Path, rel: str, below: list[str], at: int, watch: HoleWatch
) -> RestoreSummary:
    """One file system's run. The root selects by pattern, leaving out the file systems
    mounted below it (it reads every volume anyway). Another file system restores its own path,
    reading only the volumes that hold it; what belongs to a file system mounted below it (an
    ESP under /boot) comes along and is dropped from its staging directory. Should that not fit
    there, the run is made again by pattern, which never writes it."""

    def run(*, excludes: Sequence[str] = (), drop: Sequence[str] = ()) -> RestoreSummary:
        return engine.restore(
            rel or None,
            file_system_root(point),
            at,
            numeric_owner=True,  # ids come back exactly, named or not (restore_identity agrees)
            during=watch.during,
            excludes=excludes,
            drop=drop,
        )

    if not rel or not below:
        return run(excludes=below)
    try:
        return run(drop=below)
    except PathNotInBackupError:
        raise
    except RescueError as exc:
        log.warning("/%s: %s; restoring it again without the file systems below it", rel, exc)
        return run(excludes=below)


def _sidecar(ctx: Context) -> Path | None:
    return Path(ctx.facts.metadata_file) if ctx.facts.metadata_file else None
