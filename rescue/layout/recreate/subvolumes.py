"""The btrfs subvolumes of a new btrfs file system, made right after its mkfs.

Why: the restore fills the subvolumes through the restored system's fstab (`subvol=@`,
`subvol=@home`), so they must exist before it. Made on the file system's top level, mounted
(subvolid=5) on a temporary directory that a trap unmounts and removes however the script ends.

What is made, and why:
- every recorded subvolume that is not a snapshot, its parents first (plain directories between
  them made with mkdir -p), in id order: a fresh btrfs numbers subvolumes from 256 up, so ids
  that the recorded ones skip (deleted subvolumes, snapshots) are taken by stand-ins, deleted
  again at the end, and `subvolid=` in an fstab keeps naming the same subvolume;
- no snapshot: its files are a copy of another subvolume's, restored (if the backup holds them)
  as plain files. Subvolumes inside a snapshot are not made either. One exception: a snapshot
  that is the default subvolume (a rollback) is what the system boots, so it is made as a plain
  subvolume. Each one not made is named in a comment;
- the recorded default subvolume (`btrfs subvolume set-default`);
- the read-only flag of the read-only subvolumes that are made, last (a subvolume inside one
  must be made first).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from rescue.layout.model import BtrfsSubvolume, Filesystem
from rescue.layout.recreate.script import Script, comment_text, shell_word

FIRST_ID = 256  # BTRFS_FIRST_FREE_OBJECTID: the id a new file system gives its first subvolume
TOP_VAR = "rescue_btrfs_top"
# The name of a stand-in for a subvolume id that is not made (deleted again at the end).
STAND_IN = ".rescue-id-"


@dataclass
class SubvolumePlan:
    """What make_subvolumes makes: `made` in creation order, `skipped` with the reason for
    each, the id gaps that stand-ins fill (first, last), and notes for the script."""

    made: list[BtrfsSubvolume] = field(default_factory=list)
    skipped: list[tuple[BtrfsSubvolume, str]] = field(default_factory=list)
    gaps: dict[int, tuple[int, int]] = field(default_factory=dict)  # before made[i]
    notes: list[str] = field(default_factory=list)


def _skip_reason(fs: Filesystem) -> dict[int, str]:
    """Why each subvolume that is not made is not: a snapshot, or inside one not made."""
    by_id = {s.id: s for s in fs.subvolumes}
    reasons: dict[int, str] = {}

    def reason(subvol: BtrfsSubvolume, seen: frozenset[int]) -> str | None:
        if subvol.id not in reasons:
            parent = by_id.get(subvol.parent_id)
            if subvol.snapshot and subvol.path != fs.default_subvolume:
                reasons[subvol.id] = "a snapshot"
            elif (
                parent is not None
                and parent.id not in seen
                and reason(parent, seen | {parent.id}) is not None
            ):
                reasons[subvol.id] = f"inside {parent.path}, which is not made"
        return reasons.get(subvol.id)

    for subvol in fs.subvolumes:
        reason(subvol, frozenset({subvol.id}))
    return reasons


def plan_subvolumes(fs: Filesystem) -> SubvolumePlan:
    """Which subvolumes of fs are made again, in which order, and which are not (and why)."""
    plan = SubvolumePlan()
    skipped = _skip_reason(fs)
    plan.skipped = [
        (s, skipped[s.id]) for s in sorted(fs.subvolumes, key=lambda s: s.id) if s.id in skipped
    ]
    making = {s.id: s for s in fs.subvolumes if s.id not in skipped}
    for subvol in sorted(making.values(), key=lambda s: s.id):
        if subvol.snapshot:
            plan.notes.append(
                f"{subvol.path} is a snapshot, but the default subvolume: made as a plain one"
            )
    # The lowest id first whose parent is made: a subvolume moved below a newer one waits.
    children: dict[int, list[int]] = {}
    ready: list[int] = []
    for subvol in making.values():
        if subvol.parent_id in making and subvol.parent_id != subvol.id:
            children.setdefault(subvol.parent_id, []).append(subvol.id)
        else:
            heapq.heappush(ready, subvol.id)
    while ready:
        subvol_id = heapq.heappop(ready)
        plan.made.append(making[subvol_id])
        for child in children.pop(subvol_id, []):
            heapq.heappush(ready, child)
    # Parents in a loop (damaged data) are never ready: made last rather than lost.
    plan.made += sorted((making[i] for ids in children.values() for i in ids), key=lambda s: s.id)
    next_id = FIRST_ID
    for index, subvol in enumerate(plan.made):
        if subvol.id > next_id:
            plan.gaps[index] = (next_id, subvol.id - 1)
        elif subvol.id < next_id:
            plan.notes.append(
                f"{subvol.path} gets a new id instead of {subvol.id} (made after its parent)"
            )
        next_id = max(subvol.id, next_id) + 1
    default = fs.default_subvolume
    if default is not None and default not in {s.path for s in plan.made}:
        plan.notes.append(
            f"the default subvolume {default} is not made: the default stays the top level"
        )
    return plan


def _at(path: str) -> str:
    """A path below the top level mount as one shell word (however odd the name)."""
    return f'"${TOP_VAR}"/{shell_word(path)}'


def _stand_ins(first: int, last: int) -> list[str]:
    """Lines that make stand-in subvolumes for ids first..last."""
    if first == last:
        return [f"btrfs subvolume create {_at(f'{STAND_IN}{first}')} >/dev/null"]
    return [
        f"rescue_id={first}",
        f'while [ "$rescue_id" -le {last} ]; do',
        f'    btrfs subvolume create "${TOP_VAR}/{STAND_IN}$rescue_id" >/dev/null',
        "    rescue_id=$((rescue_id + 1))",
        "done",
    ]


def make_subvolumes(script: Script, fs: Filesystem, devices: list[str]) -> None:
    """The lines that make fs's recorded subvolumes and default on the btrfs just made on
    devices (shell words); nothing when none were recorded."""
    if not fs.subvolumes:
        return
    plan = plan_subvolumes(fs)
    made_paths = {s.path for s in plan.made}
    if any(why == "a snapshot" for _, why in plan.skipped):
        script.emit(
            "# a snapshot is not made: its files are a copy of another subvolume's, or excluded"
        )
    for subvol, why in plan.skipped:
        script.emit(comment_text(f"# not made: {subvol.path} ({why})"))
    script.emit(*(comment_text(f"# {note}") for note in plan.notes))
    if not plan.made:
        return
    script.tools |= {"btrfs", "mktemp", "mount", "umount"}
    script.emit(
        "# its subvolumes, parents first, in id order (the same ids, for subvolid=)",
        f"{TOP_VAR}=$(mktemp -d)",
        f'trap \'umount "${TOP_VAR}" 2>/dev/null || :; rmdir "${TOP_VAR}" || :\' EXIT',
        "trap 'exit 1' HUP INT TERM",
    )
    if len(devices) > 1:
        script.emit(f"btrfs device scan {' '.join(devices)}")
    script.emit(f'mount -t btrfs -o subvolid=5 {devices[0]} "${TOP_VAR}"')
    for index, subvol in enumerate(plan.made):
        if index in plan.gaps:
            first, last = plan.gaps[index]
            script.emit(f"# ids {first}-{last} are not made: stand-ins keep the ids that follow")
            script.emit(*_stand_ins(first, last))
        folder, _, _ = subvol.path.rpartition("/")
        if folder and folder not in made_paths:
            script.emit(f"mkdir -p {_at(folder)}")
        script.emit(f"btrfs subvolume create {_at(subvol.path)}")
    if plan.gaps:
        script.emit(f'btrfs subvolume delete "${TOP_VAR}"/{STAND_IN}* >/dev/null')
    if fs.default_subvolume is not None and fs.default_subvolume in made_paths:
        script.emit(f"btrfs subvolume set-default {_at(fs.default_subvolume)}")
    for subvol in plan.made:
        if subvol.readonly and not subvol.snapshot:
            script.emit(f"btrfs property set -ts {_at(subvol.path)} ro true")
    script.emit(
        f'umount "${TOP_VAR}"',
        f'rmdir "${TOP_VAR}"',
        "trap - EXIT HUP INT TERM",
    )
