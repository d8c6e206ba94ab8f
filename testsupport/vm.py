"""A small QEMU test guest, for what this host's kernel cannot do (device-mapper, md).

The guest is a Debian 12 minbase made with debootstrap, with its own kernel and initramfs, turned
into an ext4 image with `mkfs.ext4 -d` (no loop mount needed). It is cached under
/var/cache/rescue-vm, keyed by a hash of everything that goes into it, so only the first run pays
for debootstrap (a few minutes); imagecache.py builds it under a lock, so two test processes never
build (or delete) the same one at once. The project tree is shared into the guest read-only over
9p; the guest's init runs `tests/guest/<name>.py` from it and powers off. QEMU is machine.py's
(TCG unless the accelerator probe found KVM working; no network at all), which keeps the whole
console log and kills the guest at the global timeout.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from imagecache import MIRROR, cached_build, run_logged
from machine import Disk, Machine, Share, accelerator

PROJECT = Path(__file__).resolve().parent.parent
PACKAGES = [
    "linux-image-amd64",
    "python3",
    "lvm2",
    "mdadm",
    "fdisk",
    "util-linux",
    "e2fsprogs",
    "xfsprogs",
    "dosfstools",
    "btrfs-progs",
    "cryptsetup-bin",
    "kmod",
    # what `rescue` itself needs, run from the host's virtualenv (same Debian, same Python)
    "librsync2",
    "gnupg",
]
INIT = """#!/bin/sh
# rescue test guest: mount the basics, share the project, run one guest test, power off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /run /tmp
mount -t tmpfs run /run
mount -t tmpfs tmp /tmp
for module in 9p 9pnet_virtio dm_mod md_mod raid1 loop vfat nls_cp437 nls_ascii; do
    modprobe "$module" 2>/dev/null
done
mkdir -p /src
mount -t 9p -o trans=virtio,version=9p2000.L,ro src /src
# The project (and its virtualenv) also at its host path, and a writable work share if given.
if [ -n "$rescuesrc" ]; then mkdir -p "$rescuesrc" && mount --bind /src "$rescuesrc"; fi
if [ -n "$rescuework" ]; then
    mkdir -p "$rescuework"
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 work "$rescuework"
fi
export TMPDIR=/var/tmp
echo "RESCUE-GUEST-START $rescuetest"
cd /tmp && PYTHONPATH=/src python3 "/src/tests/guest/$rescuetest.py"
echo "RESCUE-GUEST-EXIT $?"
sync
echo o > /proc/sysrq-trigger
sleep 10
"""
# No udev runs in the guest: LVM must make its own device nodes and not wait for udev.
LVM_LOCAL = """activation {
    udev_sync = 0
    udev_rules = 0
}
devices {
    obtain_device_list_from_udev = 0
}
"""


@dataclass
class GuestImage:
    kernel: Path
    initrd: Path
    root: Path


def _key() -> str:
    text = "\n".join([*PACKAGES, INIT, LVM_LOCAL, MIRROR])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def guest_image() -> GuestImage:
    """The cached guest image, built first if the cache has none for this recipe."""
    directory = cached_build(f"guest-{_key()}", "root.img", _build).parent
    return GuestImage(directory / "vmlinuz", directory / "initrd.img", directory / "root.img")


def _build(work: Path) -> None:
    """debootstrap into work/rootfs, add the init and LVM's settings, make work/root.img of it."""
    log = work / "build.log"
    rootfs = work / "rootfs"
    run_logged(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            "bookworm",
            str(rootfs),
            MIRROR,
        ],
        log,
    )
    (rootfs / "rescue-init").write_text(INIT)
    (rootfs / "rescue-init").chmod(0o755)
    (rootfs / "etc/lvm/lvmlocal.conf").write_text(LVM_LOCAL)
    shutil.copy(sorted(rootfs.glob("boot/vmlinuz-*"))[-1], work / "vmlinuz")
    shutil.copy(sorted(rootfs.glob("boot/initrd.img-*"))[-1], work / "initrd.img")
    for cache in ("var/cache/apt/archives", "usr/share/doc", "usr/share/man"):
        shutil.rmtree(rootfs / cache, ignore_errors=True)
    run_logged(["mkfs.ext4", "-q", "-F", "-d", str(rootfs), str(work / "root.img"), "2G"], log)
    shutil.rmtree(rootfs)


@dataclass
class GuestRun:
    exit_code: int | None
    console: str
    seconds: float

    def results(self) -> dict[str, str]:
        """RESULT lines of the guest test: name -> "PASS" or "FAIL: reason"."""
        found = {}
        for line in self.console.splitlines():
            if line.startswith("RESULT "):
                _, name, outcome = line.split(" ", 2)
                found[name] = outcome.strip()
        return found


# The guest has no systemd and no boot loader: only the kernel's and initramfs's failures count.
FATAL = ("Kernel panic", "Dropping to a shell", "Gave up waiting for root")


def run_guest(
    test: str,
    disks: list[Path] | list[Disk],
    log: Path,
    timeout: float = 900,
    *,
    serials: list[str] | None = None,
    work: Path | None = None,
    memory_mib: int = 1024,
) -> GuestRun:
    """Boot the guest with disks as vdb, vdc, ... and run tests/guest/<test>.py in it.

    disks are image paths or machine.Disk (for a serial or a snapshot of their own); serials gives
    the paths virtio serial numbers (their stable ids); work is a host directory
    shared read-write at the same path in the guest, as the project is (read-only), so paths in
    settings and plans mean the same on both sides.
    """
    image = guest_image()
    drives = [
        Disk(image.root, snapshot=True),  # vda, the root
        *(
            disk if isinstance(disk, Disk) else Disk(disk, serial=serial or None)
            for disk, serial in zip(disks, serials or [""] * len(disks), strict=True)
        ),
    ]
    shares = [Share(PROJECT, "src", readonly=True)]
    append = f"root=/dev/vda rw console=ttyS0 init=/rescue-init rescuetest={test} panic=-1 quiet"
    append += f" rescuesrc={PROJECT}"
    if work is not None:
        shares.append(Share(work, "work"))
        append += f" rescuework={work}"
    machine = Machine(
        log.name,
        log.parent,
        console_log=log,
        disks=drives,
        kernel=(image.kernel, image.initrd, append),
        shares=shares,
        network=False,
        memory_mib=memory_mib,
        accel=accelerator(image.kernel),
        fatal=FATAL,
    )
    with machine:
        machine.wait_for_shutdown(timeout)
    text = machine.console()
    code = None
    for line in text.splitlines():
        if line.startswith("RESCUE-GUEST-EXIT "):
            code = int(line.split()[1])
    return GuestRun(code, text, machine.elapsed())
