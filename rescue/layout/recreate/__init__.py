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
6. file systems, each with its original UUID and label (and vfat volume id and FAT size); a
   btrfs with its recorded subvolumes (parents first, in id order so that `subvolid=` still
   matches; snapshots are not made, and named in a comment), its default subvolume and the
   read-only flags, made on its top level mounted on a temporary directory.

Re-runnable: every step also works on a half-made disk (wipefs first, `sfdisk --wipe always`,
mkfs with force flags, removals guarded by existence checks), so a failed run is fixed and run
again, never repaired by hand.

Growth: when a target is larger and grow=True, the partition(s) that end last (for MBR, the last
logical partition together with its extended container) are written without a size, and sfdisk
gives them the rest of the disk (for GPT up to the last usable sector, before the backup
header; sfdisk aligns the end down to its 1 MiB grain). Everything else keeps its exact sectors.

What is proven where: on loop disks on the build host (tests/test_layout_recreate.py) the
partition tables (GPT, MBR with logical partitions, number gaps, odd names, an empty table, no
table), growth, ext2/ext4, xfs, vfat, swap and btrfs on one device (with subvolumes, nested ones,
a skipped snapshot and a default: tests/test_layout_btrfs.py), two disks at once, the
refusal of a mounted or swapped-on target, re-running over a half-made disk, a PV with its UUID
and a VG without LVs, and a closed LUKS container with its UUID. This host's kernel has no md
and no device-mapper, so the rest is proven inside a QEMU guest: LVM and MD RAID1 round trips
with growth and `grow_lv` (tests/test_layout_stacked.py), and whole recoveries that boot of the
installer's LVM root, LUKS under LVM, MD RAID1 root and btrfs subvolumes
(vm-tests/test_stacked_*.py). Releasing stacked devices left by a partial run and multi-device
btrfs are tested as generated text only. shellcheck reads helpers.sh and generated scripts
(tests/test_layout_recreate_lint.py).

The modules, in the order a script is built: plan (source disk to target), script (the text,
its quoting and header; helpers.sh, the shell functions every script starts with), partitions,
stack_order and md_luks_lvm (MD, LUKS, LVM), filesystems and subvolumes (btrfs), build (all of
it), apply (running it).
"""

from rescue.layout.recreate.apply import OUTPUT_NAME, SCRIPT_NAME, apply_script
from rescue.layout.recreate.build import build_script
from rescue.layout.recreate.plan import probe_target
from rescue.layout.recreate.script import LUKS_PASSPHRASE_VAR

__all__ = [
    "LUKS_PASSPHRASE_VAR",
    "OUTPUT_NAME",
    "SCRIPT_NAME",
    "apply_script",
    "build_script",
    "probe_target",
]
