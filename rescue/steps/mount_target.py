"""Step 7: mount the recreated file systems under the target root, parents first, as the
restored system's fstab mounts them. Idempotent, and redone on resume (mounts do not survive a
reboot of the rescue system)."""

from __future__ import annotations

from pathlib import Path

from rescue.errors import RecoveryStepError
from rescue.recovery.mounts import mount, unmount_tree
from rescue.steps.context import Context

ID = "mount_target"
TITLE = "mount the new file systems under the target root"
READ_ONLY = False
REDO_ON_RESUME = True
CLEANUP = "unmount the target"


def plan(ctx: Context) -> list[str]:
    if not ctx.facts.mapping:
        return [f"mount the restored system's file systems under {ctx.target_root}"]
    entries, notes = ctx.mount_entries()
    return [
        *(f"mount {e.device} ({e.fstype}) at {ctx.target(e.mountpoint)}" for e in entries),
        *notes,
    ]


def run(ctx: Context) -> list[str]:
    entries, notes = ctx.mount_entries()
    if not any(e.mountpoint == "/" for e in entries):
        raise RecoveryStepError(
            "the layout names no root file system to mount; mount it at "
            f"{ctx.target_root} by hand and resume with --from restore_identity"
        )
    for note in notes:
        ctx.warn(note)
    root = ctx.target_root
    ctx.drop_cleanup(CLEANUP)
    ctx.add_cleanup(CLEANUP, lambda: unmount_tree(Path(root)))
    done = []
    ctx.facts.mounts = []
    for e in entries:
        point = ctx.target(e.mountpoint)
        fresh = mount(e.device, point, e.fstype, e.options)
        ctx.facts.mounts.append({"device": e.device, "mountpoint": e.mountpoint, "type": e.fstype})
        done.append(f"{e.device} at {point}" + ("" if fresh else " (was mounted already)"))
    return done
