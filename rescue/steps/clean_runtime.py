"""Step 11: empty var/run and var/lock in the target where they are real directories (old
systems): a stale pid or lock file from the moment of the backup can stop a service at the
first boot. Where they are links to /run (modern systems), there is nothing to do."""

from __future__ import annotations

import os

from rescue.placement.fsops import CrossesMount, remove_own
from rescue.steps.context import Context

ID = "clean_runtime"
TITLE = "empty var/run and var/lock in the target"
READ_ONLY = False
REDO_ON_RESUME = False
RUNTIME_DIRS = ("var/run", "var/lock")


def plan(ctx: Context) -> list[str]:
    return [f"empty {ctx.target(rel)} unless it is a link" for rel in RUNTIME_DIRS]


def run(ctx: Context) -> list[str]:
    done = []
    root = os.path.realpath(ctx.target_root)
    for rel in RUNTIME_DIRS:
        path = ctx.target(rel)
        if path.is_symlink():
            done.append(f"{rel} is a link to {path.readlink()}: nothing to clean")
            continue
        if not path.is_dir():
            done.append(f"{rel} does not exist")
            continue
        real = os.path.realpath(path)
        if not real.startswith(root.rstrip("/") + "/"):  # var itself a link out of the target
            ctx.warn(f"{rel} resolves to {real}, outside the target: left alone")
            continue
        removed = 0
        for entry in path.iterdir():
            try:
                remove_own(entry)  # no link followed, no mount point crossed
            except CrossesMount as exc:
                ctx.warn(f"{rel}: {exc.strerror}")
            removed += 1
        done.append(f"{rel}: removed {removed} entries")
    return done
