"""Step 12: restore the hard links recorded in the manifest. duplicity restores each link of a
group as a separate copy; this makes them one inode again (a copy that differs from the first of
its group is left alone and reported: it changed between the manifest and the backup)."""

from __future__ import annotations

from rescue.exact.links import relink
from rescue.steps.context import Context

ID = "relink"
TITLE = "restore the hard-link groups"
READ_ONLY = False
REDO_ON_RESUME = False


def plan(ctx: Context) -> list[str]:
    return ctx.plan_from_manifest(
        "link the copies of each recorded hard-link group back into one inode",
        lambda manifest: [_groups_line(manifest.hardlinks)],
    )


def _groups_line(groups: list[list[str]]) -> str:
    return f"link {len(groups)} groups ({sum(len(g) for g in groups)} paths) back together"


def run(ctx: Context) -> list[str]:
    groups = ctx.manifest().hardlinks
    done = relink(groups, ctx.target)
    for problem in done.problems:
        ctx.warn(problem)
    return [f"{len(groups)} groups: {done.linked} paths linked, {done.already} were linked already"]
