#!/bin/sh
# Recreate the disk layout that rescue recorded at backup time on blank disks.
#
# Read it before you run it: it DESTROYS everything on the target disks below.
# Edit it if the machine differs; it can be run again after a partial run.
#
# Source disk -> target disk:
#   /dev/vda (20.0 GiB, gpt, 2 partitions) -> /dev/sdb (20.0 GiB)
#   /dev/vdb (20.0 GiB, gpt, 2 partitions) -> /dev/nvme0n1 (30.0 GiB): partition 2 grows to the end of the disk
#
# The recorded layout:
#   vda 20.0 GiB gpt: 1 1 MiB BIOS boot, 2 19.1 GiB Linux RAID linux_raid_member (UUID m)
#   vdb 20.0 GiB gpt: 1 1 MiB BIOS boot, 2 19.1 GiB Linux RAID linux_raid_member (UUID m)
#   md127 raid1 metadata 1.2 on /dev/vda2, /dev/vdb2 LVM2_member (UUID pv-uuid)
#   VG vg0 on /dev/md127 (extent 4 MiB): root 8.0 GiB ext4 (LABEL my root, UUID r00t), crypt 1.0 GiB crypto_LUKS (UUID l1), pool 1.0 GiB
#   LUKS2 on /dev/mapper/vg0-crypt (UUID l1), open as secret
#   /dev/mapper/secret: xfs (LABEL srv, UUID x1)

set -eu

# The target disks (edit here to use other disks).
D1=/dev/sdb  # was /dev/vda
D2=/dev/nvme0n1  # was /dev/vdb

# --- helpers: read these once, the steps below only call them ---

# ----------------------------------------------------------------------------------------------
# Step 1: check the targets; nothing is changed before this step passes
# ----------------------------------------------------------------------------------------------
for rescue_tool in awk cryptsetup lvchange lvcreate mdadm mkfs.ext4 mkfs.xfs partx pvcreate readlink sfdisk vgcreate vgremove vgs wipefs; do
    if ! command -v "$rescue_tool" >/dev/null 2>&1; then
        rescue_die "$rescue_tool is not installed (nothing was changed)"
    fi
done
for rescue_disk in "$D1" "$D2"; do
    rescue_check_unused "$rescue_disk"
done
# Every device on the targets (for telling a leftover of an earlier run from a stranger).
RESCUE_TREE=
for rescue_disk in "$D1" "$D2"; do
    rescue_disk_name=$(rescue_name "$rescue_disk")
    for rescue_device in $(rescue_tree "$rescue_disk_name"); do
        RESCUE_TREE="$RESCUE_TREE $rescue_device"
    done
done
if [ ! -r "${RESCUE_LUKS_PASSPHRASE_FILE:-}" ]; then
    rescue_die "set RESCUE_LUKS_PASSPHRASE_FILE to a file holding the new LUKS passphrase (nothing was changed)"
fi
if mdadm --detail /dev/md/root >/dev/null 2>&1; then
    rescue_check_free /dev/md/root
fi
rescue_check_vg vg0
# vg0/pool is a thin-pool LV, which rescue cannot recreate: make it in the step 'LVM volume group vg0' and delete this check
rescue_die 'vg0/pool is a thin-pool LV, which rescue cannot recreate: make it in the step '"'"'LVM volume group vg0'"'"' and delete this check (nothing was changed)'
rescue_check_free /dev/mapper/secret

# ----------------------------------------------------------------------------------------------
# Step 2: release what an earlier run left on the targets
# ----------------------------------------------------------------------------------------------
# The top first: LUKS mappings and LVs, arrays; then the volume groups themselves.
for rescue_disk in "$D1" "$D2"; do
    rescue_release "$rescue_disk"
done
rescue_remove_vg vg0

# ----------------------------------------------------------------------------------------------
# Step 3: wipe the old signatures (partitions first, then the disk)
# ----------------------------------------------------------------------------------------------
for rescue_disk in "$D1" "$D2"; do
    rescue_wipe "$rescue_disk"
done

# ----------------------------------------------------------------------------------------------
# Step 4: partition /dev/sdb like /dev/vda (20.0 GiB, gpt, 2 partitions)
# ----------------------------------------------------------------------------------------------
# 1: 2048+2048 sectors (1 MiB) BIOS boot
# 2: 4096+40000000 sectors (19.1 GiB) Linux RAID
sfdisk --wipe always --wipe-partitions always --no-reread --no-tell-kernel "$D1" <<'RESCUE_SFDISK_END'
label: gpt
label-id: 6E1F6F3C-8C43-4E4B-9E0E-2C1E5A7B9D01
unit: sectors
first-lba: 2048
last-lba: 41943006

/dev/sdb1 : start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, name="BIOS boot"
/dev/sdb2 : start=4096, size=40000000, type=A19D880F-05FC-4D3B-A006-743F0F84911E
RESCUE_SFDISK_END
# Tell the kernel (sfdisk was told not to, so this works alike on every kind of
# disk); partx -u also copes when udev made the kernel reread the table already.
rescue_settle
partx -u --nr 1:2 "$D1"
rescue_settle
D1P1=$(rescue_part "$D1" 1)
D1P2=$(rescue_part "$D1" 2)

# ----------------------------------------------------------------------------------------------
# Step 5: partition /dev/nvme0n1 like /dev/vdb (20.0 GiB, gpt, 2 partitions)
# ----------------------------------------------------------------------------------------------
# 1: 2048+2048 sectors (1 MiB) BIOS boot
# 2: 4096+40000000 sectors (19.1 GiB) Linux RAID -> grows to the end of the disk
sfdisk --wipe always --wipe-partitions always --no-reread --no-tell-kernel "$D2" <<'RESCUE_SFDISK_END'
label: gpt
label-id: 6E1F6F3C-8C43-4E4B-9E0E-2C1E5A7B9D02
unit: sectors
first-lba: 2048

/dev/nvme0n1p1 : start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, name="BIOS boot"
/dev/nvme0n1p2 : start=4096, type=A19D880F-05FC-4D3B-A006-743F0F84911E
RESCUE_SFDISK_END
# Tell the kernel (sfdisk was told not to, so this works alike on every kind of
# disk); partx -u also copes when udev made the kernel reread the table already.
rescue_settle
partx -u --nr 1:2 "$D2"
rescue_settle
D2P1=$(rescue_part "$D2" 1)
D2P2=$(rescue_part "$D2" 2)

# ----------------------------------------------------------------------------------------------
# Step 6: MD array /dev/md/root (raid1) on /dev/vda2, /dev/vdb2
# ----------------------------------------------------------------------------------------------
# An array of this name left by an earlier run is stopped first.
if mdadm --detail /dev/md/root >/dev/null 2>&1; then
    mdadm --stop /dev/md/root
fi
mdadm --create /dev/md/root --run --level=raid1 --raid-devices=2 --metadata=1.2 --uuid=3f1c9a2b:5d6e7f80:91a2b3c4:d5e6f708 --name=debian:root "$D1P2" "$D2P2"

# ----------------------------------------------------------------------------------------------
# Step 7: LVM volume group vg0 on /dev/md127 (extent 4 MiB)
# ----------------------------------------------------------------------------------------------
# The PV UUIDs are the recorded ones; vgcreate and lvcreate cannot set a VG or LV UUID,
# so those are new (nothing refers to them: fstab and GRUB use file system UUIDs).
pvcreate -ff -y --uuid pvUUID-aaaa --norestorefile /dev/md/root
vgcreate -y -s 4096k vg0 /dev/md/root
lvcreate -y -W y -Z y -n root -L 8589934592b vg0
lvchange -ay vg0/root
lvcreate -y -W y -Z y -n crypt -L 1073741824b -i 2 vg0
lvchange -ay vg0/crypt
# vg0/pool is a thin-pool LV: make it here by hand (step 1 stops until then),
# e.g. lvcreate --type thin-pool -L 1073741824b -n pool vg0

# ----------------------------------------------------------------------------------------------
# Step 8: LUKS container on /dev/mapper/vg0-crypt
# ----------------------------------------------------------------------------------------------
# The passphrase is not in the backup: recreating the container needs a new one.
# Put it in a file (the whole file is the passphrase: write it with printf '%s', no
# newline) and set RESCUE_LUKS_PASSPHRASE_FILE to that file's path; step 1 checks it.
if [ -e /dev/mapper/secret ]; then
    cryptsetup close secret
fi
cryptsetup luksFormat --batch-mode --type luks2 --uuid l1 --key-file "$RESCUE_LUKS_PASSPHRASE_FILE" /dev/vg0/crypt
cryptsetup open --key-file "$RESCUE_LUKS_PASSPHRASE_FILE" /dev/vg0/crypt secret

# ----------------------------------------------------------------------------------------------
# Step 9: file systems, with their recorded UUIDs and labels
# ----------------------------------------------------------------------------------------------
# ext4 on /dev/mapper/vg0-root
mkfs.ext4 -F -U r00t -L 'my root' /dev/vg0/root
# xfs on /dev/mapper/secret
mkfs.xfs -f -m uuid=x1 -L srv /dev/mapper/secret

echo 'rescue: the disk layout is recreated'
