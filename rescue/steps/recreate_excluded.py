"""Step 10: recreate every excluded directory (and mount point) with the owner, mode and times
the manifest recorded: /dev, /proc, /sys, /run, /mnt, /media, and /tmp with its sticky 1777.
They are not in the backup, but the restored system cannot boot without them. Their times are
set last, deepest first, so creating /mnt/data does not move the /mnt just set (a manifest
older than the recorded times leaves them at the time of the recovery)."""

from __future__ import annotations

import os
from pathlib import Path

from rescue.exact.dirtimes import kept, nearest_existing
from rescue.recovery.manifest_model import ExcludedEntry
from rescue.steps.context import Context

ID = "recreate_excluded"
TITLE = "recreate the excluded directories and mount points"
READ_ONLY = False
REDO_ON_RESUME = False


def plan(ctx: Context) -> list[str]:
    return ctx.plan_from_manifest(
        "create each excluded directory with its recorded owner, mode and mtime",
        lambda manifest: [
            f"create {e.path} {e.mode} {e.uid}:{e.gid}" for e in manifest.excluded_dirs()
        ],
    )


def run(ctx: Context) -> list[str]:
    done = []
    timed: list[tuple[Path, int, int]] = []
    for entry in ctx.manifest().excluded:
        if not isinstance(entry, ExcludedEntry):
            continue
        if entry.type != "dir":
            ctx.warn(f"excluded {entry.path} was a {entry.type}, not recreated")
            continue
        path = ctx.target(entry.path)
        with kept(nearest_existing(path.parent)):  # the replay still sees the restored time
            path.mkdir(parents=True, exist_ok=True)
        os.chown(path, entry.uid, entry.gid, follow_symlinks=False)
        os.chmod(path, int(entry.mode, 8))
        if entry.mtime_ns is not None:
            atime = entry.atime_ns if entry.atime_ns is not None else entry.mtime_ns
            timed.append((path, atime, entry.mtime_ns))
        done.append(f"{entry.path} {entry.mode} {entry.uid}:{entry.gid}")
    for path, atime, mtime in sorted(timed, key=lambda item: -len(item[0].parts)):
        os.utime(path, ns=(atime, mtime), follow_symlinks=False)
    return done or ["the manifest records no excluded directory"]
