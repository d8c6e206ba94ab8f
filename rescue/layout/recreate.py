"""Turn a captured layout and a disk mapping into a shell script that recreates it (ReaR's
diskrestore.sh), and run that script.

Why a script and not Python calls: the partitioning plan must be shown before anything is written,
and an admin must be able to read it, edit it and run it by hand when the machine in front of them
differs from the one that was backed up. So every value is in the script itself, shell-quoted
(labels and names can hold anything), with one commented step per job:

1. check: every target exists and nothing on it (a partition, or an array, LV or LUKS mapping
   stacked on it) is mounted or active swap; a VG, array or mapping the script will make does not
   already exist elsewhere; the tools and (for LUKS) the passphrase file are there. Nothing is
   changed before this step passes.
2. release: device-mapper devices and MD arrays stacked on the targets (left by an earlier,
   partial run) are removed, the top first, then the VGs the script makes, so that the old
   partitions can be wiped.
3. wipe: `wipefs -a` on every partition the kernel knows on a target, then on the disk.
4. partition: `sfdisk` from a here-document that reproduces the table (label, disk id, first
   LBA, start/size/type/GUID/name/attrs of every partition, bootable and logical partitions for
   MBR); `partx -u` makes the kernel see it, and `rescue_part` waits for each partition's node
   (/dev/sdb2, /dev/nvme0n1p2, /dev/loop3p2, as the kernel names it).
5. MD arrays, LUKS containers and LVM, in the order they stack.
6. file systems, each with its original UUID and label (and vfat volume id and FAT size).

Re-runnable: every step also works on a half-made disk (wipefs first, `sfdisk --wipe always`,
mkfs with force flags, removals guarded by existence checks), so a failed run is fixed and run
again, never repaired by hand.

Growth: when a target is larger and grow=True, the partition(s) that end last (for MBR, the last
logical partition together with its extended container) are written without a size, and sfdisk
gives them the rest of the disk (for GPT up to the last usable sector, before the backup
header; sfdisk aligns the end down to its 1 MiB grain). Everything else keeps its exact sectors.

What is proven where: on loop disks on the build host (tests/test_layout_recreate.py) the
partition tables (GPT, MBR with logical partitions, number gaps, odd names, an empty table, no
table), growth, ext2/ext4, xfs, vfat, swap and btrfs on one device, two disks at once, the
refusal of a mounted or swapped-on target, re-running over a half-made disk, a PV with its UUID
and a VG without LVs, and a closed LUKS container with its UUID. This host's kernel has no md
and no device-mapper, so MD arrays, lvcreate/lvchange, opening LUKS, releasing stacked devices
and multi-device btrfs are tested as generated text only; they can only be proven in a QEMU
guest (vm-tests).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rescue.errors import DiskMappingError, LayoutApplyError
from rescue.execute import run
from rescue.layout import LayoutError
from rescue.layout.model import (
    MBR_EXTENDED_TYPES,
    Disk,
    Filesystem,
    Layout,
    LogicalVolume,
    LuksContainer,
    Partition,
    PhysicalVolume,
    RaidArray,
    VolumeGroup,
    partition_type_name,
)
from rescue.layout.summary import layout_summary
from rescue.units import human_size

log = logging.getLogger("rescue.layout")

SCRIPT_NAME = "layout-recreate.sh"
OUTPUT_NAME = "layout-recreate.log"
# The environment variable that names the file holding the passphrase of recreated LUKS devices.
LUKS_PASSPHRASE_VAR = "RESCUE_LUKS_PASSPHRASE_FILE"
# Ends the sfdisk here-documents; no line of a partition script can equal it (see _sfdisk_script).
HEREDOC_END = "RESCUE_SFDISK_END"
SYS_CLASS_BLOCK = Path("/sys/class/block")
# Check, release and wipe come before the steps that depend on the layout.
FIXED_STEPS = 3

# Signatures that the stacking steps write (pvcreate, mdadm, luksFormat), never a mkfs.
STACK_TYPES = frozenset({"LVM2_member", "linux_raid_member", "crypto_LUKS"})
EXT_TYPES = frozenset({"ext2", "ext3", "ext4"})
LVM_TOOLS = ("pvcreate", "vgcreate", "lvcreate", "lvchange", "vgs", "vgremove")
# LV segment types lvcreate can make from the recorded size alone.
LV_SIMPLE_SEGTYPES = frozenset({"linear", "striped"})
LV_RAID_SEGTYPES = frozenset({"raid0", "raid1", "raid4", "raid5", "raid6", "raid10", "mirror"})

_HEX_ID = re.compile(r"(0x)?[0-9A-Fa-f][0-9A-Fa-f-]*")


# --- quoting --------------------------------------------------------------------------------


def _q(value: str | int) -> str:
    """One shell word for any value."""
    return shlex.quote(str(value))


def _c(text: str) -> str:
    """Text that is safe inside a # comment: a newline in a label must not end the comment."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _sfdisk_string(value: str) -> str:
    """A quoted sfdisk script value. sfdisk decodes \\xNN in a value and knows no other escape,
    so the quote, the backslash and control characters are written that way (a name can hold
    anything); this also keeps every value on its line of the here-document."""
    out = []
    for ch in value:
        if ch in '"\\' or not ch.isprintable():
            out.extend(f"\\x{b:02x}" for b in ch.encode())
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _checked_id(value: str, what: str) -> str:
    """A type code, GUID or disk id as written into the sfdisk script: hex digits and dashes only.

    Why: these are written unquoted into a here-document; a damaged manifest must fail here,
    not turn into a different partition table.
    """
    if not _HEX_ID.fullmatch(value):
        raise LayoutError(f"layout data: {what} {value!r} is not a valid identifier")
    return value


# --- targets --------------------------------------------------------------------------------


def probe_target(path: str) -> Disk:
    """A target disk's size and logical sector size from sysfs (no process needed).

    Why sysfs: the script is built before anything is written, and the target may be blank, so
    there is nothing to capture but its size.
    """
    real = os.path.realpath(path)
    name = os.path.basename(real)
    sys_dir = SYS_CLASS_BLOCK / name
    try:
        sectors = int((sys_dir / "size").read_text())
        sector_size = int((sys_dir / "queue" / "logical_block_size").read_text())
    except (OSError, ValueError) as exc:
        raise DiskMappingError(f"target {path} is not a whole block device") from exc
    if (sys_dir / "partition").exists():
        raise DiskMappingError(f"target {path} is a partition, not a whole disk")
    return Disk(name=name, path=path, size_bytes=sectors * 512, logical_sector_size=sector_size)


def _gpt_last_usable(size_bytes: int, sector_size: int) -> int:
    """The last usable sector of a new GPT with 128 entries: the backup header and its entry
    array (16 KiB) sit after it."""
    total = size_bytes // sector_size
    entry_sectors = -(-128 * 128 // sector_size)
    return total - 2 - entry_sectors


# --- the plan -------------------------------------------------------------------------------


@dataclass
class _DiskPlan:
    """One source disk, its target and the shell names the script gives them."""

    var: str
    source: Disk
    target: Disk
    grown: set[int] = field(default_factory=set)  # numbers of partitions written without size

    def part_var(self, part: Partition) -> str:
        return f"{self.var}P{part.number}"


def _is_extended(disk: Disk, part: Partition) -> bool:
    return disk.table == "dos" and part.type.lower() in MBR_EXTENDED_TYPES


def _grown_partitions(disk: Disk) -> set[int]:
    """The numbers of the partitions that end last on the disk (for MBR that can be a logical
    partition and its extended container): those take the rest of a larger target."""
    if not disk.partitions:
        return set()
    last_end = max(p.start_sector + p.size_sectors for p in disk.partitions)
    return {p.number for p in disk.partitions if p.start_sector + p.size_sectors == last_end}


def _plan_disk(var: str, source: Disk, target: Disk, grow: bool) -> _DiskPlan:
    """Check that the source's table fits the target and decide what grows."""
    plan = _DiskPlan(var, source, target)
    if source.table is None:
        if target.size_bytes < source.size_bytes and source.filesystem is not None:
            raise DiskMappingError(
                f"target {target.path} ({human_size(target.size_bytes)}) is smaller than "
                f"{source.path} ({human_size(source.size_bytes)}), whose file system fills it"
            )
        return plan
    if source.table not in ("gpt", "dos"):
        raise LayoutError(f"{source.path}: a {source.table!r} partition table cannot be recreated")
    if target.logical_sector_size != source.logical_sector_size:
        raise DiskMappingError(
            f"target {target.path} has {target.logical_sector_size}-byte sectors, but "
            f"{source.path} had {source.logical_sector_size}-byte sectors; the partition table "
            "cannot be copied sector for sector"
        )
    if grow and target.size_bytes > source.size_bytes:
        plan.grown = _grown_partitions(source)
    sector = target.logical_sector_size
    if source.table == "gpt":
        last_usable = _gpt_last_usable(target.size_bytes, sector)
    else:
        last_usable = target.size_bytes // sector - 1
    for part in source.partitions:
        end = part.start_sector + part.size_sectors - 1
        if part.number in plan.grown:
            end = part.start_sector
        if end > last_usable:
            raise DiskMappingError(
                f"target {target.path} ({human_size(target.size_bytes)}) is too small for "
                f"{source.path} ({human_size(source.size_bytes)}): partition {part.number} ends "
                f"at sector {end}, the target's last usable sector is {last_usable}"
            )
    return plan


# --- the script's fixed part ------------------------------------------------------------------

HELPERS = r"""
rescue_die() {
    echo "rescue: $*" >&2
    exit 1
}

# The kernel name of a block device given by any path (/dev/disk/by-id/... -> sdb).
rescue_name() {
    local dev
    dev=$(readlink -f "$1")
    if [ ! -b "$dev" ]; then
        rescue_die "$1 is not a block device"
    fi
    echo "${dev##*/}"
}

# Kernel names of a device, its partitions and everything stacked on them (md, dm), top last.
rescue_tree() {
    local dir holder
    for dir in "/sys/class/block/$1" "/sys/class/block/$1/$1"*; do
        if [ -e "$dir/dev" ]; then
            echo "${dir##*/}"
            for holder in "$dir"/holders/*; do
                if [ -e "$holder" ]; then
                    rescue_tree "${holder##*/}"
                fi
            done
        fi
    done
    return 0
}

# Whether a device (any path) is one of the targets, their partitions or stacked on them.
rescue_ours() {
    local dev
    dev=$(readlink -f "$1")
    case " $RESCUE_TREE " in
        *" ${dev##*/} "*) return 0 ;;
    esac
    return 1
}

# Refuse a target when it, a partition or anything stacked on it is mounted or active swap.
rescue_check_unused() {
    local disk name num where
    disk=$(rescue_name "$1")
    for name in $(rescue_tree "$disk"); do
        num=$(cat "/sys/class/block/$name/dev")
        where=$(awk -v num="$num" -v dev="/dev/$name" '
            { for (i = 7; i < NF && $i != "-"; i++) ; }
            $3 == num || $(i + 2) == dev { print $5; exit }' /proc/self/mountinfo)
        if [ -n "$where" ]; then
            rescue_die "target $1: /dev/$name is mounted on $where; unmount it first" \
                "(nothing was changed)"
        fi
        if awk -v dev="/dev/$name" 'NR > 1 && $1 == dev { f = 1 } END { exit !f }' /proc/swaps
        then
            rescue_die "target $1: /dev/$name is active swap; swapoff it first" \
                "(nothing was changed)"
        fi
    done
}

# A volume group the script makes may already exist only on the targets (an earlier run).
rescue_check_vg() {
    local pv
    if vgs "$1" >/dev/null 2>&1; then
        for pv in $(vgs --noheadings -o pv_name "$1" 2>/dev/null); do
            if ! rescue_ours "$pv"; then
                rescue_die "volume group $1 already exists on $pv, which is not a target;" \
                    "rename or remove it first (nothing was changed)"
            fi
        done
    fi
}

# A device the script makes (/dev/md0, /dev/mapper/NAME) may already exist only on the targets.
rescue_check_free() {
    if [ -e "$1" ] && ! rescue_ours "$1"; then
        rescue_die "$1 already exists and is not on a target; stop or remove it first" \
            "(nothing was changed)"
    fi
}

# Remove a volume group left by an earlier run (rescue_check_vg made sure it is on the targets).
rescue_remove_vg() {
    if vgs "$1" >/dev/null 2>&1; then
        vgremove -ff -y "$1"
    fi
}

# Stop the MD arrays and remove the device-mapper devices stacked on a target, the top first.
rescue_release() {
    local disk name top_first
    disk=$(rescue_name "$1")
    top_first='{ a[NR] = $0 } END { for (i = NR; i > 0; i--) print a[i] }'
    for name in $(rescue_tree "$disk" | awk "$top_first"); do
        if [ -e "/sys/class/block/$name/dm/name" ]; then
            dmsetup remove --retry "$(cat "/sys/class/block/$name/dm/name")"
        elif [ -e "/sys/class/block/$name/md" ]; then
            mdadm --stop "/dev/$name"
        fi
    done
}

# Wipe the signatures of every partition the kernel knows on a disk, then of the disk itself,
# and make the kernel forget those partitions (the partition step tells it the new ones).
rescue_wipe() {
    local disk dir
    disk=$(rescue_name "$1")
    for dir in "/sys/class/block/$disk/$disk"*; do
        if [ -e "$dir/partition" ] && [ -b "/dev/${dir##*/}" ]; then
            wipefs -a "/dev/${dir##*/}"
        fi
    done
    wipefs -a "/dev/$disk"
    for dir in "/sys/class/block/$disk/$disk"*; do
        if [ -e "$dir/partition" ]; then
            partx -d "/dev/$disk"
            break
        fi
    done
}

# Print the node of partition $2 of disk $1 (/dev/sdb2, /dev/nvme0n1p2, /dev/loop3p2), as the
# kernel names it, waiting up to 10 s for it to appear.
rescue_part() {
    local disk dir tries
    disk=$(rescue_name "$1")
    tries=0
    while [ "$tries" -lt 50 ]; do
        for dir in "/sys/class/block/$disk/$disk"*; do
            if [ -e "$dir/partition" ] && [ "$(cat "$dir/partition")" = "$2" ]; then
                if [ -b "/dev/${dir##*/}" ]; then
                    echo "/dev/${dir##*/}"
                    return 0
                fi
            fi
        done
        tries=$((tries + 1))
        sleep 0.2
    done
    rescue_die "partition $2 of $1 has no device node after 10 s" \
        "(does the kernel see the table? partx -u $1)"
}

# Let udev (if it runs) finish with the new partitions before they are used.
rescue_settle() {
    if command -v udevadm >/dev/null 2>&1; then
        udevadm settle --timeout=10 || true
    fi
}
"""


# --- the script -----------------------------------------------------------------------------


class _Script:
    """Builds the script text step by step, keeping what each source device is called in it."""

    def __init__(self, layout: Layout, plans: list[_DiskPlan], first_step: int = 1) -> None:
        self.layout = layout
        self.plans = plans
        self.lines: list[str] = []
        self.step = first_step - 1
        # Source device path -> the shell word that names the recreated device.
        self.devices: dict[str, str] = {}
        # Source device paths that are not recreated (their disk has no target).
        self.skipped: set[str] = set()
        # Source device paths that the stacking steps wrote a signature on.
        self.stacked: set[str] = set()
        self.tools: set[str] = {"readlink", "awk", "wipefs", "sfdisk", "partx"}
        self.checks: list[str] = []
        self.releases: list[str] = []
        self.notes: list[str] = []
        # LUKS containers the script formats: step 1 then insists on a passphrase file.
        self.luks_made: list[LuksContainer] = []

    def emit(self, *lines: str) -> None:
        self.lines.extend(lines)

    def section(self, title: str) -> None:
        self.step += 1
        self.emit("", "# " + "-" * 94, f"# Step {self.step}: {_c(title)}", "# " + "-" * 94)


def _disk_words(plan: _DiskPlan) -> str:
    source = plan.source
    what = f"{source.table}, {len(source.partitions)} partitions" if source.table else "no table"
    return f"{source.path} ({human_size(source.size_bytes)}, {what})"


def _header(script: _Script, grow: bool) -> None:
    script.emit(
        "#!/bin/sh",
        "# Recreate the disk layout that rescue recorded at backup time on blank disks.",
        "#",
        "# Read it before you run it: it DESTROYS everything on the target disks below.",
        "# Edit it if the machine differs; it can be run again after a partial run.",
        "#",
        "# Source disk -> target disk:",
    )
    for plan in script.plans:
        target = plan.target
        line = f"#   {_disk_words(plan)} -> {target.path} ({human_size(target.size_bytes)})"
        if plan.grown:
            numbers = ", ".join(str(n) for n in sorted(plan.grown))
            line += f": partition {numbers} grows to the end of the disk"
        elif target.size_bytes > plan.source.size_bytes and plan.source.table:
            line += ": sizes kept exactly" + ("" if grow else " (no growth asked for)")
        script.emit(_c(line))
    mapped = {p.source.path for p in script.plans}
    for disk in script.layout.disks:
        if disk.path not in mapped:
            script.emit(_c(f"#   {disk.path} ({human_size(disk.size_bytes)}): not recreated"))
    script.emit("#", "# The recorded layout:")
    script.emit(*(_c(f"#   {line}") for line in layout_summary(script.layout)))
    script.emit("", "set -eu", "", "# The target disks (edit here to use other disks).")
    for plan in script.plans:
        script.emit(f"{plan.var}={_q(plan.target.path)}  # was {_c(plan.source.path)}")


# --- partitions ---------------------------------------------------------------------------


def _sfdisk_script(plan: _DiskPlan) -> list[str]:
    """The sfdisk input that writes the source's table onto the target, sector for sector."""
    source, target = plan.source, plan.target
    lines = [f"label: {source.table}"]
    if source.table_id:
        lines.append(f"label-id: {_checked_id(source.table_id, 'disk id')}")
    lines.append("unit: sectors")
    if source.table == "gpt":
        if source.first_lba is not None:
            lines.append(f"first-lba: {int(source.first_lba)}")
        if source.last_lba is not None and target.size_bytes == source.size_bytes:
            lines.append(f"last-lba: {int(source.last_lba)}")
    if source.logical_sector_size != 512:
        lines.append(f"sector-size: {int(source.logical_sector_size)}")
    lines.append("")
    # sfdisk takes the partition number from the name in front (for gaps and logical
    # partitions); a target path it could misread is left out, the bare number is enough.
    prefix = target.path if re.fullmatch(r"/dev/[A-Za-z0-9_./+-]+", target.path) else ""
    prefix += "p" if prefix[-1:].isdigit() else ""
    for part in sorted(source.partitions, key=lambda p: p.number):
        fields = [f"start={int(part.start_sector)}"]
        if part.number not in plan.grown:
            fields.append(f"size={int(part.size_sectors)}")
        fields.append(f"type={_checked_id(part.type, 'partition type')}")
        if source.table == "gpt":
            if part.uuid:
                fields.append(f"uuid={_checked_id(part.uuid, 'partition GUID')}")
            if part.name is not None:
                fields.append(f"name={_sfdisk_string(part.name)}")
            if part.attrs:
                fields.append(f"attrs={_sfdisk_string(part.attrs)}")
        elif part.bootable:
            fields.append("bootable")
        lines.append(f"{prefix}{int(part.number)} : {', '.join(fields)}")
    return lines


def _partition_disk(script: _Script, plan: _DiskPlan) -> None:
    source = plan.source
    disk = f'"${plan.var}"'
    script.section(f"partition {plan.target.path} like {_disk_words(plan)}")
    if source.table is None:
        script.emit("# No partition table was recorded: the disk stays as step 3 left it.")
        script.devices[source.path] = disk
        return
    for part in source.partitions:
        words = [f"# {part.number}: {part.start_sector}+{part.size_sectors} sectors"]
        words.append(f"({human_size(source.partition_bytes(part))})")
        words.append(partition_type_name(source.table, part.type))
        if part.number in plan.grown:
            words.append("-> grows to the end of the disk")
        script.emit(_c(" ".join(words)))
    script.emit(
        f"sfdisk --wipe always --wipe-partitions always --no-reread --no-tell-kernel {disk}"
        f" <<'{HEREDOC_END}'",
        *_sfdisk_script(plan),
        HEREDOC_END,
    )
    if source.partitions:
        # partx -u alone misses a partition numbered above the count (MBR's 5 after 1-3).
        last = max(p.number for p in source.partitions)
        script.emit(
            "# Tell the kernel (sfdisk was told not to, so this works alike on every kind of",
            "# disk); partx -u also copes when udev made the kernel reread the table already.",
            "rescue_settle",
            f"partx -u --nr 1:{int(last)} {disk}",
            "rescue_settle",
        )
    script.devices[source.path] = disk
    for part in source.partitions:
        if _is_extended(source, part):
            continue  # a container of logical partitions: nothing is made on it
        var = plan.part_var(part)
        script.emit(f'{var}=$(rescue_part "${plan.var}" {int(part.number)})')
        script.devices[part.path] = f'"${var}"'


# --- MD, LUKS, LVM ------------------------------------------------------------------------


@dataclass
class _Stack:
    """One stacked object: what it is built from and which device paths it provides."""

    obj: RaidArray | LuksContainer | VolumeGroup | PhysicalVolume
    needs: list[str]
    provides: list[str]


def _raid_path(raid: RaidArray) -> str:
    """Where the array is created: its /dev/md/ name if it had one, else its kernel name."""
    return f"/dev/md/{raid.devname}" if raid.devname else raid.path


def _lv_paths(lv: LogicalVolume) -> list[str]:
    dm_name = f"{lv.vg.replace('-', '--')}-{lv.name.replace('-', '--')}"
    paths = [f"/dev/{lv.vg}/{lv.name}", f"/dev/mapper/{dm_name}", lv.path, lv.dm_path]
    return [p for p in dict.fromkeys(paths) if p]


def _stacks(layout: Layout) -> list[_Stack]:
    stacks = []
    for raid in layout.raids:
        provides = [raid.path, _raid_path(raid)]
        stacks.append(_Stack(raid, [*raid.devices, *raid.spares], provides))
    for luks in layout.luks:
        provides = [luks.mapping_path] if luks.mapping_path else []
        stacks.append(_Stack(luks, [luks.device], provides))
    if layout.lvm:
        for vg in layout.lvm.vgs:
            pvs = [pv.device for pv in layout.lvm.pvs if pv.vg == vg.name]
            lvs = [p for lv in layout.lvm.lvs if lv.vg == vg.name for p in _lv_paths(lv)]
            stacks.append(_Stack(vg, pvs, lvs))
        for pv in layout.lvm.pvs:
            if pv.vg is None:
                stacks.append(_Stack(pv, [pv.device], []))
    return stacks


def _stack_name(stack: _Stack) -> str:
    obj = stack.obj
    if isinstance(obj, RaidArray):
        return f"MD array {obj.path}"
    if isinstance(obj, LuksContainer):
        return f"the LUKS container on {obj.device}"
    if isinstance(obj, VolumeGroup):
        return f"volume group {obj.name}"
    return f"the LVM PV {obj.device}"


def _order_stacks(script: _Script) -> list[_Stack]:
    """The stacked objects in an order where each comes after what it is built from.

    An object wholly on disks that are not recreated is skipped; one partly on them, or on a
    device the layout does not describe, cannot be made and is an error now, not halfway
    through the script.
    """
    for disk in script.layout.disks:
        if disk.path not in script.devices:
            script.skipped |= {disk.path, *(p.path for p in disk.partitions)}
    known = set(script.devices)
    pending = _stacks(script.layout)
    ordered: list[_Stack] = []
    while pending:
        progress = False
        for stack in list(pending):
            if all(n in known for n in stack.needs):
                ordered.append(stack)
                known |= set(stack.provides)
            elif stack.needs and all(n in script.skipped for n in stack.needs):
                script.skipped |= set(stack.provides)
                script.notes.append(
                    f"# {_stack_name(stack)} is not recreated: its disks have no target."
                )
            else:
                continue
            pending.remove(stack)
            progress = True
        if not progress:
            stack = pending[0]
            missing = [n for n in stack.needs if n not in known]
            if any(n in script.skipped for n in missing):
                raise DiskMappingError(
                    f"{_stack_name(stack)} is built from {', '.join(stack.needs)}, but "
                    f"{', '.join(n for n in missing if n in script.skipped)} is on a disk that "
                    "has no target; map that disk too"
                )
            raise LayoutError(
                f"{_stack_name(stack)} is built from {', '.join(missing) or 'nothing'}, which "
                "the layout does not describe"
            )
    return ordered


def _make_raid(script: _Script, raid: RaidArray) -> None:
    if not raid.level:
        raise LayoutError(f"MD array {raid.path} was inactive at backup: its level is unknown")
    path = _raid_path(raid)
    script.tools.add("mdadm")
    script.section(f"MD array {path} ({raid.level}) on {', '.join(raid.devices)}")
    script.checks.append(f"if mdadm --detail {_q(path)} >/dev/null 2>&1; then")
    script.checks.append(f"    rescue_check_free {_q(path)}")
    script.checks.append("fi")
    count = raid.raid_devices or len(raid.devices)
    members = [script.devices[d] for d in raid.devices]
    members += ["missing"] * max(0, count - len(members))
    argv = ["mdadm", "--create", _q(path), "--run", f"--level={_q(raid.level)}"]
    argv.append(f"--raid-devices={int(count)}")
    if raid.metadata:
        argv.append(f"--metadata={_q(raid.metadata)}")
    if raid.uuid:
        argv.append(f"--uuid={_q(raid.uuid)}")
    if raid.md_name:
        argv.append(f"--name={_q(raid.md_name)}")
    if raid.spares:
        argv.append(f"--spare-devices={len(raid.spares)}")
    argv += members + [script.devices[d] for d in raid.spares]
    script.emit(
        "# An array of this name left by an earlier run is stopped first.",
        f"if mdadm --detail {_q(path)} >/dev/null 2>&1; then",
        f"    mdadm --stop {_q(path)}",
        "fi",
        " ".join(argv),
    )
    for device in [raid.path, path]:
        script.devices[device] = _q(path)
    script.stacked |= set(raid.devices) | set(raid.spares)


def _make_luks(script: _Script, luks: LuksContainer) -> None:
    device = script.devices[luks.device]
    key = f'"${LUKS_PASSPHRASE_VAR}"'
    script.tools.add("cryptsetup")
    script.section(f"LUKS container on {luks.device}")
    kind = "luks1" if luks.version == "1" else "luks2"
    script.emit(
        "# The passphrase is not in the backup: recreating the container needs a new one.",
        "# Put it in a file (the whole file is the passphrase: write it with printf '%s', no",
        f"# newline) and set {LUKS_PASSPHRASE_VAR} to that file's path; step 1 checks it.",
    )
    argv = ["cryptsetup", "luksFormat", "--batch-mode", "--type", kind]
    if luks.uuid:
        argv += ["--uuid", _q(luks.uuid)]
    argv += ["--key-file", key, device]
    if luks.mapping:
        mapping = _q(luks.mapping)
        script.checks.append(f"rescue_check_free {_q(luks.mapping_path or '')}")
        script.emit(
            f"if [ -e {_q(luks.mapping_path or '')} ]; then",
            f"    cryptsetup close {mapping}",
            "fi",
            " ".join(argv),
            f"cryptsetup open --key-file {key} {device} {mapping}",
        )
        script.devices[luks.mapping_path or ""] = _q(luks.mapping_path or "")
    else:
        script.emit(
            " ".join(argv),
            "# It was not open at backup time, so nothing inside it is known or made.",
        )
    script.stacked.add(luks.device)
    script.luks_made.append(luks)


def _lvcreate(script: _Script, vg_title: str, lv: LogicalVolume) -> list[str]:
    """The lvcreate line for one LV; for a kind rescue cannot make from the record (thin pools,
    caches, snapshots) a commented template here and a stop in step 1, so the admin edits the
    script before anything is destroyed, not halfway through it."""
    segtype = lv.segtype or "linear"
    name = f"{lv.vg}/{lv.name}"
    argv = ["lvcreate", "-y", "-W", "y", "-Z", "y", "-n", _q(lv.name)]
    argv += ["-L", f"{int(lv.size_bytes)}b"]
    if segtype == "striped" and (lv.stripes or 1) > 1:
        argv += ["-i", str(int(lv.stripes or 1))]
    elif segtype in LV_RAID_SEGTYPES:
        argv += ["--type", segtype]  # images and stripes: lvcreate's defaults for the type
    elif segtype not in LV_SIMPLE_SEGTYPES:
        why = (
            f"{name} is a {segtype} LV, which rescue cannot recreate: make it in the step"
            f" '{vg_title}' and delete this check"
        )
        script.checks += [f"# {_c(why)}", f"rescue_die {_q(why + ' (nothing was changed)')}"]
        return [
            _c(f"# {name} is a {segtype} LV: make it here by hand (step 1 stops until then),"),
            _c(f"# e.g. lvcreate --type {segtype} -L {int(lv.size_bytes)}b -n {lv.name} {lv.vg}"),
        ]
    argv.append(_q(lv.vg))
    return [" ".join(argv), f"lvchange -ay {_q(name)}"]


def _make_vg(script: _Script, vg: VolumeGroup) -> None:
    assert script.layout.lvm is not None
    pvs = [pv for pv in script.layout.lvm.pvs if pv.vg == vg.name]
    lvs = [lv for lv in script.layout.lvm.lvs if lv.vg == vg.name]
    script.tools.update(LVM_TOOLS)
    title = f"LVM volume group {vg.name}"
    script.section(
        f"{title} on {', '.join(pv.device for pv in pvs)}"
        f" (extent {human_size(vg.extent_size_bytes)})"
    )
    script.checks.append(f"rescue_check_vg {_q(vg.name)}")
    script.releases.append(f"rescue_remove_vg {_q(vg.name)}")
    script.emit(
        "# The PV UUIDs are the recorded ones; vgcreate and lvcreate cannot set a VG or LV UUID,",
        "# so those are new (nothing refers to them: fstab and GRUB use file system UUIDs).",
    )
    for pv in pvs:
        script.emit(_pvcreate(script, pv))
    extent_kib = vg.extent_size_bytes // 1024
    devices = " ".join(script.devices[pv.device] for pv in pvs)
    script.emit(f"vgcreate -y -s {int(extent_kib)}k {_q(vg.name)} {devices}")
    for lv in lvs:
        script.emit(*_lvcreate(script, title, lv))
        for path in _lv_paths(lv):
            script.devices[path] = _q(f"/dev/{lv.vg}/{lv.name}")


def _pvcreate(script: _Script, pv: PhysicalVolume) -> str:
    script.stacked.add(pv.device)
    device = script.devices[pv.device]
    return f"pvcreate -ff -y --uuid {_q(pv.uuid)} --norestorefile {device}"


def _make_orphan_pv(script: _Script, pv: PhysicalVolume) -> None:
    script.tools.add("pvcreate")
    script.section(f"LVM physical volume {pv.device} (in no volume group)")
    script.emit(_pvcreate(script, pv))


# --- file systems ---------------------------------------------------------------------------


def _mkfs(fs: Filesystem, devices: list[str], whole_disk: bool) -> tuple[str, str] | None:
    """(tool, shell line) that makes fs again with its UUID and label, or None if no recipe.

    The force flags (-F, -f) make it work over whatever an earlier run left there.
    """
    uuid, label = fs.uuid, fs.label
    if fs.type in EXT_TYPES:
        tool = f"mkfs.{fs.type}"
        argv = [tool, "-F"] + (["-U", _q(uuid)] if uuid else [])
        argv += ["-L", _q(label)] if label else []
    elif fs.type == "xfs":
        tool = "mkfs.xfs"
        argv = [tool, "-f"] + (["-m", _q(f"uuid={uuid}")] if uuid else [])
        argv += ["-L", _q(label)] if label else []
    elif fs.type == "vfat":
        tool = "mkfs.vfat"
        argv = [tool] + (["-I"] if whole_disk else [])
        fat = re.fullmatch(r"FAT(12|16|32)", fs.version or "")
        argv += ["-F", fat.group(1)] if fat else []
        volume_id = fs.volume_id or (uuid.replace("-", "") if uuid else None)
        argv += ["-i", _q(volume_id)] if volume_id else []
        argv += ["-n", _q(label)] if label else []
    elif fs.type == "swap":
        tool = "mkswap"
        argv = [tool, "-f"] + (["-U", _q(uuid)] if uuid else [])
        argv += ["-L", _q(label)] if label else []
    elif fs.type == "btrfs":
        tool = "mkfs.btrfs"
        argv = [tool, "-f"] + (["-U", _q(uuid)] if uuid else [])
        argv += ["-L", _q(label)] if label else []
    else:
        return None
    return tool, " ".join(argv + devices)


def _filesystems(script: _Script) -> None:
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
                _c(f"# {fs.type} on {fs.device}: rescue does not know how to make that device.")
            )

    script.section("file systems, with their recorded UUIDs and labels")
    btrfs_done: set[str] = set()
    for fs, word, whole_disk in made:
        if fs.type in STACK_TYPES:
            if fs.device not in script.stacked:
                script.emit(
                    _c(f"# {fs.device} held {fs.type}, which the layout does not describe:"),
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
        script.emit(_c(" ".join(words)))
        if recipe is None:
            script.emit(f"# rescue has no recipe for {_c(fs.type)}: left blank; make it by hand.")
            continue
        tool, line = recipe
        script.tools.add(tool)
        script.emit(line)


# --- putting it together --------------------------------------------------------------------


def build_script(
    layout: Layout,
    mapping: Mapping[str, str],
    *,
    grow: bool = True,
    targets: Iterable[Disk] | None = None,
) -> str:
    """The shell script that recreates the mapped disks of layout on their targets.

    mapping is {source disk path: target disk path}; disks not in it are left alone. targets
    describes the target disks (size, sector size), e.g. as captured by the mapping step; a
    target not in it is read from sysfs. With grow=True the last partition of a disk grows when
    its target is larger. Nothing is run here: see apply_script.
    """
    sources: dict[str, Disk] = {}
    for disk in layout.disks:
        if disk.path in sources:
            raise LayoutError(f"layout data: two disks are both {disk.path}")
        sources[disk.path] = disk
    unknown = sorted(set(mapping) - set(sources))
    if unknown:
        raise DiskMappingError(f"the layout has no disk {', '.join(unknown)} to recreate")
    seen: dict[str, str] = {}
    for source, target in mapping.items():
        if target in seen:
            raise DiskMappingError(f"target {target} is given for both {seen[target]} and {source}")
        seen[target] = source
    described = {disk.path: disk for disk in targets or ()}
    plans = []
    for disk in layout.disks:
        if disk.path not in mapping:
            continue
        target_path = mapping[disk.path]
        target = described.get(target_path) or probe_target(target_path)
        plans.append(_plan_disk(f"D{len(plans) + 1}", disk, target, grow))
    if not plans:
        raise DiskMappingError("no disk of the layout is mapped to a target")

    # The steps after check, release and wipe are built first: they add to the check.
    body = _Script(layout, plans, first_step=FIXED_STEPS + 1)
    for plan in plans:
        _partition_disk(body, plan)
    for stack in _order_stacks(body):
        if isinstance(stack.obj, RaidArray):
            _make_raid(body, stack.obj)
        elif isinstance(stack.obj, LuksContainer):
            _make_luks(body, stack.obj)
        elif isinstance(stack.obj, VolumeGroup):
            _make_vg(body, stack.obj)
        else:
            _make_orphan_pv(body, stack.obj)
    _filesystems(body)
    if body.notes:
        body.section("what is not recreated")
        body.emit(*body.notes)

    script = _Script(layout, plans)
    _header(script, grow)
    script.emit("", "# --- helpers: read these once, the steps below only call them ---")
    script.emit(*HELPERS.strip("\n").splitlines())
    disks = " ".join(f'"${p.var}"' for p in plans)
    script.section("check the targets; nothing is changed before this step passes")
    script.emit(
        f"for rescue_tool in {' '.join(sorted(body.tools))}; do",
        '    if ! command -v "$rescue_tool" >/dev/null 2>&1; then',
        '        rescue_die "$rescue_tool is not installed (nothing was changed)"',
        "    fi",
        "done",
        f"for rescue_disk in {disks}; do",
        '    rescue_check_unused "$rescue_disk"',
        "done",
        "# Every device on the targets (for telling a leftover of an earlier run from a stranger).",
        "RESCUE_TREE=",
        f"for rescue_disk in {disks}; do",
        '    rescue_disk_name=$(rescue_name "$rescue_disk")',
        '    for rescue_device in $(rescue_tree "$rescue_disk_name"); do',
        '        RESCUE_TREE="$RESCUE_TREE $rescue_device"',
        "    done",
        "done",
    )
    if body.luks_made:
        script.emit(
            f'if [ ! -r "${{{LUKS_PASSPHRASE_VAR}:-}}" ]; then',
            f'    rescue_die "set {LUKS_PASSPHRASE_VAR} to a file holding the new LUKS passphrase'
            ' (nothing was changed)"',
            "fi",
        )
    script.emit(*body.checks)
    script.section("release what an earlier run left on the targets")
    script.emit(
        "# The top first: LUKS mappings and LVs, arrays; then the volume groups themselves.",
        f"for rescue_disk in {disks}; do",
        '    rescue_release "$rescue_disk"',
        "done",
        *body.releases,
    )
    script.section("wipe the old signatures (partitions first, then the disk)")
    script.emit(
        f"for rescue_disk in {disks}; do",
        '    rescue_wipe "$rescue_disk"',
        "done",
    )
    assert script.step == FIXED_STEPS
    script.emit(*body.lines)
    script.emit("", "echo 'rescue: the disk layout is recreated'")
    return "\n".join(script.lines) + "\n"


# --- running it ---------------------------------------------------------------------------


def _last_error(output: str) -> str:
    """The last line the script or a tool printed, without sh -x's trace lines."""
    for line in reversed(output.splitlines()):
        text = line.strip()
        if text and not text.startswith("+"):
            return text
    return "no error message"


def apply_script(script: str, log_dir: Path, *, env: Mapping[str, str] | None = None) -> None:
    """Write script to log_dir (mode 0700, so the admin can rerun it) and run it with sh -x.

    Its traced output goes to the log and to layout-recreate.log beside it. A non-zero exit
    raises LayoutApplyError with the last error line and the script's path. env adds variables,
    e.g. RESCUE_LUKS_PASSPHRASE_FILE.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / SCRIPT_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o700)
        out.write(script)
    log.info("recreating the disk layout with %s", path)
    result = run(["sh", "-x", str(path)], env=env)
    output_path = log_dir / OUTPUT_NAME
    output_path.write_text(result.output + "\n")
    if result.returncode != 0:
        raise LayoutApplyError(
            f"recreating the disk layout failed (exit {result.returncode}): "
            f"{_last_error(result.output)} (script {path}, output {output_path})"
        )
