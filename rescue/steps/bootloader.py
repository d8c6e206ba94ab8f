"""Step 15: install GRUB on the target, regenerate its configuration and, when it no longer
fits, the initramfs, from a chroot into the restored system (its own grub and kernel, so
versions match). grub-install and update-grub always run; update-initramfs only when
rescue.recovery.initramfs finds a reason (or the plan says `initramfs = "always"`), because it
is most of this step's time: the report says which case held.

/dev, /proc and /sys are bound in as slave mounts (so the unmount stays local) and always
unmounted again. Without udev (a bare rescue shell, loop disks) /dev/disk/by-uuid lacks the new
file systems and update-grub would write root=/dev/sdb4, a name that is wrong at the next
boot: the links are made for the run, and grub.cfg is checked afterwards (any kernel device
path left on a linux line is replaced by its UUID).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from rescue.errors import RecoveryStepError
from rescue.layout.blkid import probe
from rescue.process.execute import run as run_command
from rescue.recovery.initramfs import Inputs, Verdict, decide
from rescue.recovery.mounts import bind, unmount_tree
from rescue.steps.context import Context
from rescue.steps.fix_fstab import renames

ID = "bootloader"
TITLE = "install the bootloader, regenerate grub.cfg (and the initramfs if it must)"
READ_ONLY = False
REDO_ON_RESUME = False
BY_UUID = Path("/dev/disk/by-uuid")
CHROOT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def _boot_disks(ctx: Context) -> tuple[str, list[str]]:
    """The bootloader's kind and the targets of the disks it was on: every disk whose boot
    sector held GRUB (both members of an MD RAID1, so either boots alone), or the only target."""
    boot = ctx.manifest().bootloader
    kind = boot.kind
    mapping = ctx.facts.mapping
    sources = boot.disks or ([boot.disk] if boot.disk else [])
    mapped = [mapping[source] for source in sources if source in mapping]
    if mapped:
        return kind, mapped
    if len(mapping) == 1:
        return kind, [next(iter(mapping.values()))]
    raise RecoveryStepError(
        f"the manifest does not say which disk boots ({boot.disk or 'none recorded'}); install "
        "the bootloader by hand in a chroot and resume with --from verify"
    )


INITRAMFS = ["update-initramfs", "-u", "-k", "all"]
UPDATE_GRUB = ["update-grub"]


def _installs(kind: str, disks: list[str], efi_vars: bool) -> list[list[str]]:
    if kind != "grub-pc":
        install = ["grub-install", "--target=x86_64-efi", "--efi-directory=/boot/efi", "--recheck"]
        # The removable path (EFI/BOOT/BOOTX64.EFI) always: new hardware, a reset NVRAM or
        # a disk moved to another machine still boots. With efivars, a boot entry as well.
        removable = [*install, "--no-nvram", "--removable"]
        return [install, removable] if efi_vars else [removable]
    return [["grub-install", "--target=i386-pc", "--recheck", disk] for disk in disks]


def plan(ctx: Context) -> list[str]:
    when = (
        "always (asked for)"
        if ctx.options.initramfs == "always"
        else "only if UUIDs, the storage stack, the resume device or the disk driver changed"
    )
    rebuild = f"update-initramfs: {when}"
    if not ctx.facts.mapping:
        return ["grub-install on the boot disk and update-grub in a chroot", rebuild]
    kind, disks = _boot_disks(ctx)
    if kind == "unknown":
        return ["the manifest names no known bootloader: nothing is installed"]
    installs = [f"chroot {ctx.target_root}: {' '.join(c)}" for c in _installs(kind, disks, True)]
    return [*installs, rebuild, f"chroot {ctx.target_root}: {' '.join(UPDATE_GRUB)}"]


def _chroot(ctx: Context, argv: list[str]) -> str:
    result = run_command(
        ["chroot", str(ctx.target_root), *argv], env={"PATH": CHROOT_PATH}, mask_output=False
    )
    return result.check(RecoveryStepError, f"{argv[0]} in the restored system").output


def _initramfs_verdict(ctx: Context) -> Verdict:
    """Whether update-initramfs must run; the chroot's /dev, /proc and /sys are bound."""
    layout = ctx.layout()
    names = renames(layout, ctx.facts.mapping)

    def list_initrd(path: str) -> list[str]:
        return _chroot(ctx, ["lsinitramfs", path]).splitlines()

    return decide(
        Inputs(
            choice=ctx.options.initramfs,
            root=ctx.target_root,
            layout=layout,
            uuid_changes=names.uuids,
            present_uuids=names.present,
            changed_files=ctx.facts.changed,
            target_disks=ctx.facts.mapping.values(),
            list_initrd=list_initrd,
        )
    )


def _target_uuids(ctx: Context) -> dict[str, str]:
    """device -> file-system UUID of everything the restored system mounts."""
    entries, _ = ctx.mount_entries()
    found = {e.device: probe(e.device).get("UUID") for e in entries}
    return {device: uuid for device, uuid in found.items() if uuid}


def _uuid_links(uuid_of: dict[str, str]) -> list[Path]:
    """Make /dev/disk/by-uuid links for the target file systems that lack one (no udev)."""
    made = []
    for device, uuid in sorted(uuid_of.items()):
        link = BY_UUID / uuid
        if link.exists() and os.path.realpath(link) == os.path.realpath(device):
            continue
        BY_UUID.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(device)
        made.append(link)
    return made


# Names that stay the same at the next boot: an LV's /dev/mapper/VG-LV (what Debian's update-grub
# writes for a root on LVM) and udev's links. Only kernel names (/dev/sdb4) need replacing.
STABLE_DEVICE_NAMES = ("/dev/mapper/", "/dev/disk/")


def fix_grub_cfg(path: Path, uuid_of: dict[str, str]) -> int:
    """Replace root=/dev/X on grub.cfg's linux lines by root=UUID=.. where X is a kernel name
    (STABLE_DEVICE_NAMES are left as update-grub wrote them); returns how many."""
    if not path.is_file():
        return 0
    text = path.read_text()
    count = 0

    def swap(match: re.Match[str]) -> str:
        nonlocal count
        uuid = uuid_of.get(match.group(1))
        if not uuid or match.group(1).startswith(STABLE_DEVICE_NAMES):
            return match.group(0)
        count += 1
        return f"root=UUID={uuid}"

    new = re.sub(r"root=(/dev/[\w/.-]+)", swap, text)
    if count:
        path.write_text(new)
    return count


def run(ctx: Context) -> list[str]:
    kind, disks = _boot_disks(ctx)
    if kind == "unknown":
        ctx.warn("the manifest names no known bootloader: none was installed")
        return ["no bootloader installed"]
    efi_vars = Path("/sys/firmware/efi/efivars").is_dir()
    points = [ctx.target(name) for name in ("dev", "proc", "sys")]
    links: list[Path] = []
    done = []
    uuid_of = _target_uuids(ctx)
    try:
        for source, point in zip(("/dev", "/proc", "/sys"), points, strict=True):
            bind(source, point)
        links = _uuid_links(uuid_of)
        for argv in _installs(kind, disks, efi_vars):
            _chroot(ctx, argv)
            done.append(" ".join(argv))
        verdict = _initramfs_verdict(ctx)
        ctx.echo(f"      {verdict.line}")
        if verdict.rebuild:
            _chroot(ctx, INITRAMFS)
        done.append(verdict.line)
        _chroot(ctx, UPDATE_GRUB)
        done.append(" ".join(UPDATE_GRUB))
    finally:
        for link in links:
            link.unlink(missing_ok=True)
        for point in reversed(points):
            unmount_tree(point)
    fixed = fix_grub_cfg(ctx.target("boot/grub/grub.cfg"), uuid_of)
    if fixed:
        done.append(f"grub.cfg: {fixed} root=/dev/... replaced by root=UUID=...")
    return done
