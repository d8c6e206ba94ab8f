"""The last step: every recorded file system made again with its UUID and label (and a btrfs
with its subvolumes: rescue.layout.recreate.subvolumes)."""

from __future__ import annotations

import re

from rescue.layout.model import Filesystem
from rescue.layout.recreate.script import Script, comment_text, shell_word
from rescue.layout.recreate.subvolumes import make_subvolumes

# Signatures that the stacking steps write (pvcreate, mdadm, luksFormat), never a mkfs.
STACK_TYPES = frozenset({"LVM2_member", "linux_raid_member", "crypto_LUKS"})
EXT_TYPES = frozenset({"ext2", "ext3", "ext4"})


def _mkfs(fs: Filesystem, devices: list[str], whole_disk: bool) -> tuple[str, str] | None:
    """(tool, shell line) that makes fs again with its UUID and label, or None if no recipe.

    The force flags (-F, -f) make it work over whatever an earlier run left there.
    """
    uuid, label = fs.uuid, fs.label
    if fs.type in EXT_TYPES:
        tool = f"mkfs.{fs.type}"
        argv = [tool, "-F"] + (["-U", shell_word(uuid)] if uuid else [])
        argv += ["-L", shell_word(label)] if label else []
    elif fs.type == "xfs":
        tool = "mkfs.xfs"
        argv = [tool, "-f"] + (["-m", shell_word(f"uuid={uuid}")] if uuid else [])
        argv += ["-L", shell_word(label)] if label else []
    elif fs.type == "vfat":
        tool = "mkfs.vfat"
        argv = [tool] + (["-I"] if whole_disk else [])
        fat = re.fullmatch(r"FAT(12|16|32)", fs.version or "")
        argv += ["-F", fat.group(1)] if fat else []
        volume_id = fs.volume_id or (uuid.replace("-", "") if uuid else None)
        argv += ["-i", shell_word(volume_id)] if volume_id else []
        argv += ["-n", shell_word(label)] if label else []
    elif fs.type == "swap":
        tool = "mkswap"
        argv = [tool, "-f"] + (["-U", shell_word(uuid)] if uuid else [])
        argv += ["-L", shell_word(label)] if label else []
    elif fs.type == "btrfs":
        tool = "mkfs.btrfs"
        argv = [tool, "-f"] + (["-U", shell_word(uuid)] if uuid else [])
        argv += ["-L", shell_word(label)] if label else []
    else:
        return None
    return tool, " ".join(argv + devices)


def make_filesystems(script: Script) -> None:
    """One mkfs per recorded file system on a recreated device (btrfs: one per file system)."""
    made: list[tuple[Filesystem, str, bool]] = []
    for plan in script.plans:
        source = plan.source
        if source.table is None and source.filesystem:
            made.append((source.filesystem, f'"${plan.var}"', True))
        for part in source.partitions:
            if part.filesystem and part.path in script.devices:
                made.append((part.filesystem, script.devices[part.path], False))
    for raid in script.layout.raids:
        if raid.filesystem and raid.path in script.devices:
            made.append((raid.filesystem, script.devices[raid.path], False))
    if script.layout.lvm:
        for lv in script.layout.lvm.lvs:
            word = script.devices.get(f"/dev/{lv.vg}/{lv.name}")
            if lv.filesystem and word:
                made.append((lv.filesystem, word, False))
    for fs in script.layout.filesystems:
        if fs.device in script.devices:
            made.append((fs, script.devices[fs.device], False))
        elif fs.device not in script.skipped:
            script.notes.append(
                comment_text(
                    f"# {fs.type} on {fs.device}: rescue does not know how to make that device."
                )
            )

    script.section("file systems, with their recorded UUIDs and labels")
    btrfs_done: set[str] = set()
    for fs, word, whole_disk in made:
        if fs.type in STACK_TYPES:
            if fs.device not in script.stacked:
                script.emit(
                    comment_text(
                        f"# {fs.device} held {fs.type}, which the layout does not describe:"
                    ),
                    "# left blank.",
                )
            continue
        devices = [word]
        if fs.type == "btrfs" and fs.uuid:
            if fs.uuid in btrfs_done:
                continue
            btrfs_done.add(fs.uuid)
            devices = [w for f, w, _ in made if f.type == "btrfs" and f.uuid == fs.uuid]
        recipe = _mkfs(fs, devices, whole_disk)
        words = [f"# {fs.type} on {fs.device}"]
        if fs.mountpoint:
            words.append(f"(mounted on {fs.mountpoint})")
        if len(devices) > 1:
            words.append("with all its devices; data/metadata profiles were not recorded")
        script.emit(comment_text(" ".join(words)))
        if recipe is None:
            script.emit(
                f"# rescue has no recipe for {comment_text(fs.type)}: left blank; make it by hand."
            )
            continue
        tool, line = recipe
        script.tools.add(tool)
        script.emit(line)
        if fs.type == "btrfs":
            make_subvolumes(script, fs, devices)
