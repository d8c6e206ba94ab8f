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
