"""Source systems on the layouts the Debian installer makes (LVM, LUKS under LVM, MD RAID1,
btrfs subvolumes), and the boot of recovered disks to their marker.

Why in a guest: this host's kernel has no device-mapper and no md, so a layout that stacks them
can be neither built nor read here. The Debian system itself is built on the host (debootstrap,
configured and trimmed exactly as bootdisk.py's source disk, plus the tools each layout's
initramfs needs) and kept as a tarball; the QEMU test guest (vm.py) then lays it onto blank
virtio disks in the layout and makes it bootable from a chroot (tests/guest/stacked_build.py).
Both are cached under /var/cache/rescue-vm, keyed by a hash of every input, so only the first
run pays (a few minutes each).

The images are a source to back up: tests attach them with `snapshot=True`, so a scenario that
backs them up, wipes them and recovers never changes the cached copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from bootdisk import (
    CHROOT_ENV,
    HOSTNAME,
    MARKER_PREFIX,
    PACKAGES,
    configure_system,
    trim_system,
)
from bootdisk import _key as bootdisk_key
from imagecache import MIRROR, cached_build, run_logged
from machine import Disk, Machine
from vm import PROJECT, run_guest

# What every layout's initramfs and tools need on top of the plain source system.
STACK_PACKAGES = ["lvm2", "mdadm", "cryptsetup", "cryptsetup-initramfs", "btrfs-progs"]
ROOTFS_RECIPE = 1
BUILD_SCRIPT = PROJECT / "tests/guest/stacked_build.py"
# The LUKS passphrase of the source (and of the recovered container: the plan gives the same).
LUKS_PASSPHRASE = "rescue stacked luks 7"
SOURCE_SERIALS = ("RESCUE-SRC-1", "RESCUE-SRC-2")
# Marker files the scenarios check beyond the path-by-path comparison.
HOME_MARKER = "home/alice/notes.txt"
HOME_TEXT = "alice's notes live on their own file system (LV or subvolume)\n"


@dataclass(frozen=True)
class StackedLayout:
    """One layout: its name (the guest's recipe), its disks' sizes and what a scenario needs to
    find its root again (the root's fstab spec and options are the same on the recovered disks,
    since recovery keeps file-system UUIDs)."""

    name: str
    disk_mib: tuple[int, ...]
    root_spec: str
    root_options: str = ""
    luks_name: str | None = None
    excludes: tuple[str, ...] = ()  # beyond the scenario's own (proc, sys, ...), from the root


# Every layout labels its root file system "root" (the label survives recovery with the UUID).
LAYOUTS = {
    "lvm": StackedLayout("lvm", (1536,), "LABEL=root"),
    "luks-lvm": StackedLayout("luks-lvm", (1536,), "LABEL=root", luks_name="vdb5_crypt"),
    "raid1": StackedLayout("raid1", (1280, 1280), "LABEL=root"),
    "btrfs": StackedLayout("btrfs", (1536,), "LABEL=root", "subvol=@", excludes=(".snapshots",)),
}


def _rootfs_key() -> str:
    parts = [str(ROOTFS_RECIPE), bootdisk_key("bios"), *STACK_PACKAGES]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def stacked_rootfs() -> Path:
    """The cached tarball of the configured, trimmed source system (no fstab of its own yet)."""
    return cached_build(f"stacked-rootfs-{_rootfs_key()}", "rootfs.tar", _build_rootfs)


def _build_rootfs(work: Path) -> None:
    log = work / "build.log"
    rootfs = work / "rootfs"
    packages = [*PACKAGES, *STACK_PACKAGES]
    debootstrap = ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}"]
    run_logged([*debootstrap, "bookworm", str(rootfs), MIRROR], log)
    # configure_system writes an fstab for the plain disk: the guest replaces it per layout.
    configure_system(rootfs, {"root": "", "boot": "", "swap": ""})
    kernel = trim_system(rootfs)
    (rootfs / "etc/fstab").write_text("")
    (work / "kernel.txt").write_text(kernel + "\n")
    tar = ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-cpf"]
    run_logged([*tar, str(work / "rootfs.tar"), "-C", str(rootfs), "."], log)
    run_logged(["rm", "-rf", "--one-file-system", str(rootfs)], log)


def _source_key(layout: StackedLayout) -> str:
    parts = [_rootfs_key(), repr(layout), BUILD_SCRIPT.read_text(), LUKS_PASSPHRASE, HOME_TEXT]
    parts += [*SOURCE_SERIALS, " ".join(CHROOT_ENV), HOSTNAME]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def disk_names(layout: StackedLayout) -> list[str]:
    return [f"disk{number}.img" for number in range(1, len(layout.disk_mib) + 1)]


def source_disks(name: str) -> list[Path]:
    """The cached source disks of a layout (raw, sparse), built first if absent. Attach them
    with snapshot=True (or copy them): they are shared by every run."""
    layout = LAYOUTS[name]
    first = disk_names(layout)[0]
    product = cached_build(
        f"stacked-{name}-{_source_key(layout)}", first, lambda work: _build_source(work, layout)
    )
    return [product.parent / disk for disk in disk_names(layout)]


def _build_source(work: Path, layout: StackedLayout) -> None:
    """Blank disks, the tarball and the task in work (shared into the guest), then the guest."""
    started = time.monotonic()
    tarball = stacked_rootfs()
    os.link(tarball, work / "rootfs.tar")
    disks = []
    for disk, mib in zip(disk_names(layout), layout.disk_mib, strict=True):
        path = work / disk
        with path.open("wb") as image:
            image.truncate(mib << 20)
        disks.append(Disk(path, serial=SOURCE_SERIALS[len(disks)]))
    task = {
        "layout": layout.name,
        "tarball": str(work / "rootfs.tar"),
        "passphrase": LUKS_PASSPHRASE,
        "home_marker": HOME_MARKER,
        "home_text": HOME_TEXT,
        "hostname": HOSTNAME,
    }
    (work / "task.json").write_text(json.dumps(task))
    run = run_guest(
        "stacked_build", disks, work / "build-console.log", 1800, work=work, memory_mib=1536
    )
    (work / "rootfs.tar").unlink()
    results = run.results()
    if results.get("build") != "PASS" or run.exit_code != 0:
        tail = "\n".join(run.console.splitlines()[-40:])
        raise RuntimeError(f"building the {layout.name} source failed: {results}\n{tail}")
    (work / "info.txt").write_text(
        f"layout {layout.name}\nbuild_seconds {time.monotonic() - started:.0f}\n"
    )


UNLOCK_PROMPT = r"Please unlock disk [^:\r\n]*:"


def boot_to_marker(
    disks: list[Path],
    log: Path,
    *,
    passphrase: str | None = None,
    timeout: float = 900,
) -> tuple[str, float]:
    """Boot disks (the first is the boot disk) to the marker, typing passphrase at the initramfs'
    LUKS prompt if given; the marker line and the seconds it took. Writes go to an overlay, so
    one recovered disk set can be booted several times (an MD member alone, say)."""
    machine = Machine(
        log.name,
        log.parent,
        console_log=log,
        disks=[
            Disk(path, snapshot=True, bootindex=0 if number == 0 else None)
            for number, path in enumerate(disks)
        ],
        network=False,
        memory_mib=1024,
    )
    with machine:
        if passphrase is not None:
            machine.wait_for(UNLOCK_PROMPT, timeout)
            machine.send(passphrase + "\n")
        line = machine.wait_for(re.escape(MARKER_PREFIX) + r"[^\r\n]*(?=[\r\n])", timeout)[0]
        return line.strip(), machine.elapsed()
