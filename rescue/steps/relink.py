"""Step 12: restore the hard links recorded in the manifest. duplicity restores each link of a
group as a separate copy; this makes them one inode again (a copy that differs from the first of
its group is left alone and reported: it changed between the manifest and the backup)."""

from __future__ import annotations

import filecmp
import os

from rescue.steps.context import Context

ID = "relink"
TITLE = "restore the hard-link groups"
READ_ONLY = False
REDO_ON_RESUME = False


def plan(ctx: Context) -> list[str]:
    if not ctx.facts.manifest_file:
        return ["link the copies of each recorded hard-link group back into one inode"]
    groups = ctx.manifest().get("hardlinks", [])
    return [f"link {len(groups)} groups ({sum(len(g) for g in groups)} paths) back together"]


def run(ctx: Context) -> list[str]:
    groups = ctx.manifest().get("hardlinks", [])
    linked = already = 0
    for group in groups:
        paths = [ctx.target(p) for p in group]
        present = [p for p in paths if p.is_file() and not p.is_symlink()]
        if len(present) < 2:
            continue
        first = present[0]
        st = first.lstat()
        for other in present[1:]:
            ot = other.lstat()
            if (ot.st_dev, ot.st_ino) == (st.st_dev, st.st_ino):
                already += 1
                continue
            if ot.st_dev != st.st_dev:
                ctx.warn(f"{other} and {first} are on different file systems: not linked")
                continue
            if not filecmp.cmp(first, other, shallow=False):
                ctx.warn(f"{other} differs from {first}: left as a separate file")
                continue
            tmp = other.with_name(f".{other.name}.rescue-link")
            tmp.unlink(missing_ok=True)
            os.link(first, tmp)
            os.replace(tmp, other)
            linked += 1
    return [f"{len(groups)} groups: {linked} paths linked, {already} were linked already"]
