"""Step 13: put back what duplicity dropped, from the backup's records (rescue.exact): xattrs,
POSIX ACLs and file capabilities (after the owners are final: chown clears capabilities), the
holes of sparse files, and exact mtimes, last. What the target's file systems cannot take is a
warning per kind, with a count: the recovery goes on, and the report says it. The target root
and every mount point below it were merged into (their own directories come from mkfs, with
the merge's time), so their records are applied whatever their restored times say."""

from __future__ import annotations

from rescue.exact.replay import replay
from rescue.steps.context import Context

ID = "replay_metadata"
TITLE = "put back xattrs, ACLs, capabilities, holes and exact times"
READ_ONLY = False
REDO_ON_RESUME = False


def plan(ctx: Context) -> list[str]:
    return [
        "set the recorded xattrs, ACLs and capabilities, punch the recorded holes, then set the "
        "exact mtimes, on every restored path that has a record"
    ]


def run(ctx: Context) -> list[str]:
    if not ctx.facts.metadata_file:
        return ["the backup holds no metadata records: nothing to put back"]
    punched = {ctx.target(rel) for rel in ctx.facts.punched}
    tops = {ctx.target(m["mountpoint"]) for m in ctx.facts.mounts if "mountpoint" in m}
    done = replay(ctx.records(), "", ctx.target_root, punched, tops)
    ctx.facts.metadata_warnings = done.warnings()
    for warning in done.warnings():
        ctx.warn(warning)
    lines = [done.summary()]
    if done.changed:
        lines.append(
            f"{done.changed} paths changed between the records and the backup: their restored "
            "times are kept"
        )
    return lines
