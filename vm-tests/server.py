"""The source server of the VM scenarios: a small real Debian that backs itself up with rescue.

It starts from the cached "server" boot disk (testsupport/bootdisk.py: GPT, GRUB, /boot, swap,
/ last, plus Python and the native libraries rescue needs). Each test copies it and, on the host,
before the first boot:
- fills it with the runner scenario's content (tests/scenario.py: users and groups with
  non-default ids, a uid without a name, hard links, a symlink, a FIFO, a set-uid file, a setgid
  directory, excluded content) plus a sparse file, odd modes and an enabled service;
- installs rescue as the ISO has it: /opt/rescue and /usr/local/bin/rescue from the ISO's own
  layer (rescue.squashfs), so the backup runs the very code the recovery runs;
- writes /etc/rescue/rescue.toml (mode 0600) for the test's destination, with its secrets;
- enables networkd with DHCP (QEMU's user network answers it);
- adds the driver's root shell on ttyS0, active only when the kernel command line says
  `rescue.vmtest=shell` (the test boots it so, directly from the disk's own kernel and
  initramfs); with that word the boot marker unit stays quiet. A normal boot, by GRUB, prints
  the marker and powers off, as the recovered system must.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bootdisk import MARKER_FILE, mounted_system, source_image
from clirun import write_settings
from loopdisks import sh
from machine import Disk, Forward, Machine
from scenario import CHANGED_MARKER, EXCLUDE_GLOB, PASSPHRASE, populate

from rescue.config import DEFAULT_EXCLUDES

SHELL_WORD = "rescue.vmtest=shell"
SHELL_READY = "VMTEST-SHELL-READY"
SHELL_PROMPT = "vmtest# "
SHELL_UNIT = f"""[Unit]
Description=vm-tests: a root shell on ttyS0 for the test driver ({SHELL_WORD} only)
ConditionKernelCommandLine={SHELL_WORD}
After=multi-user.target

[Service]
ExecStartPre=/bin/echo {SHELL_READY}
ExecStart=/bin/bash --noprofile --norc -i
StandardInput=tty
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
Environment=PS1=vmtest#\\x20 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

[Install]
WantedBy=multi-user.target
"""
MARKER_QUIET = f"[Unit]\nConditionKernelCommandLine=!{SHELL_WORD}\n"
NETWORK = "[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n"
DEMO_UNIT = """[Unit]
Description=A service of the source server, enabled: recovery must keep it enabled

[Service]
Type=oneshot
ExecStart=/bin/true

[Install]
WantedBy=multi-user.target
"""
# What the VM scenarios check beyond the runner scenario's content.
SPARSE_REL = "srv/data/sparse.img"
SPARSE_SIZE = 64 << 20
SPARSE_DATA_AT = 8 << 20
SPARSE_DATA = b"sparse file data\n" * 4096
ODD_MODES = {"srv/odd/no-access": 0o000, "srv/odd/group-only": 0o070, "srv/odd/sticky": 0o1777}
SERVICE_LINK = "etc/systemd/system/multi-user.target.wants/rescue-demo.service"
BACKUP_TIMEOUT = 1800
# The server keeps its own duplicity cache out of its backup, as an admin would.
ARCHIVE_DIR = "/var/cache/rescue"


@dataclass
class BootFiles:
    """What a direct kernel boot of the server needs: its own kernel, initramfs and root."""

    kernel: Path
    initrd: Path
    root_uuid: str

    def append(self, *words: str) -> str:
        return " ".join([f"root=UUID={self.root_uuid}", "ro", "console=ttyS0,115200n8", *words])


def extract_layer(iso: Path, into: Path) -> Path:
    """The ISO's rescue layer (/live/rescue.squashfs) as a file."""
    layer = into / "rescue.squashfs"
    if not layer.exists():
        subprocess.run(
            ["xorriso", "-osirrox", "on", "-indev", str(iso),
             "-extract", "/live/rescue.squashfs", str(layer)],
            check=True, capture_output=True,
        )  # fmt: skip
    return layer


def prepare_server(
    image: Path,
    iso: Path,
    destination: dict[str, object],
    secrets: dict[str, str],
    work: Path,
    *,
    excludes: tuple[str, ...] = (),
) -> BootFiles:
    """Turn a copy of the server disk into the scenario's server (see the module docstring).

    secrets maps a file name under /etc/rescue to its content (mode 0600 there): the passphrase
    file is always written; destination may name others (e.g. an SSH key) by their path.
    excludes are left out of the backup besides the defaults (a backup disk's mount point)."""
    layer = extract_layer(iso, work)
    root = work / "server-root"
    with mounted_system(image, root) as parts:
        populate(root)
        _extras(root)
        sh("unsquashfs", "-q", "-f", "-n", "-d", str(root), str(layer),
           "opt/rescue", "usr/local/bin/rescue")  # fmt: skip
        _settings(root, destination, {"passphrase": PASSPHRASE, **secrets}, excludes)
        _units(root)
        kernel = sorted(root.glob("boot/vmlinuz-*"))[-1]
        initrd = sorted(root.glob("boot/initrd.img-*"))[-1]
        root_uuid = sh("blkid", "-o", "value", "-s", "UUID", parts[3]).strip()
        boot = BootFiles(work / "vmlinuz", work / "initrd.img", root_uuid)
        sh("cp", str(kernel), str(boot.kernel))
        sh("cp", str(initrd), str(boot.initrd))
    return boot


def _extras(root: Path) -> None:
    """A sparse file, odd modes and an enabled service."""
    with (root / SPARSE_REL).open("wb") as sparse:
        sparse.truncate(SPARSE_SIZE)
        sparse.seek(SPARSE_DATA_AT)
        sparse.write(SPARSE_DATA)
    for rel, mode in ODD_MODES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("sticky"):
            path.mkdir()
        else:
            path.write_text(f"{rel}: mode {mode:04o}\n")
        os.chmod(path, mode)
    units = root / "etc/systemd/system"
    (units / "rescue-demo.service").write_text(DEMO_UNIT)
    (root / SERVICE_LINK).symlink_to("/etc/systemd/system/rescue-demo.service")


def _settings(
    root: Path, destination: dict[str, object], secrets: dict[str, str], excludes: tuple[str, ...]
) -> None:
    etc = root / "etc/rescue"
    etc.mkdir(mode=0o700, exist_ok=True)
    for name, content in secrets.items():
        fd = os.open(etc / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
    write_settings(
        etc / "rescue.toml",
        {
            "destination": destination,
            "encryption": {"mode": "symmetric", "passphrase_file": "/etc/rescue/passphrase"},
            "selection": {
                "exclude": [*DEFAULT_EXCLUDES, ARCHIVE_DIR, *excludes],
                "exclude_globs": [EXCLUDE_GLOB],
            },
            "duplicity": {"archive_dir": f"{ARCHIVE_DIR}/duplicity"},
        },
    )


def _units(root: Path) -> None:
    units = root / "etc/systemd/system"
    wants = units / "multi-user.target.wants"
    (units / "vmtest-shell.service").write_text(SHELL_UNIT)
    (wants / "vmtest-shell.service").symlink_to("/etc/systemd/system/vmtest-shell.service")
    dropin = units / "rescue-marker.service.d"
    dropin.mkdir(exist_ok=True)
    (dropin / "vmtest-quiet.conf").write_text(MARKER_QUIET)
    network = root / "etc/systemd/network"
    network.mkdir(parents=True, exist_ok=True)
    (network / "50-dhcp.network").write_text(NETWORK)
    lib = "/lib/systemd/system"
    for target, unit in (
        ("multi-user.target.wants", "systemd-networkd.service"),
        ("sockets.target.wants", "systemd-networkd.socket"),
    ):
        (units / target).mkdir(exist_ok=True)
        link = units / target / unit
        if not link.is_symlink():
            link.symlink_to(f"{lib}/{unit}")


# scenario.change(), done inside the running server between its full and incremental backups.
CHANGE_IN_GUEST = "\n".join(
    [
        "set -e",
        f"printf %s {shlex.quote(CHANGED_MARKER)} > {MARKER_FILE}",
        "rm /srv/data/delete-me",
        "printf 'made after the full backup\\n' > /srv/data/new.txt",
        'printf %s "alice\'s notes, edited\n" > /home/alice/notes.txt',
    ]
)


def backup_story(
    folder: Path,
    source: Path,
    boot: BootFiles,
    *,
    firmware: str = "bios",
    accel: str = "tcg",
    forwards: list[Forward] | None = None,
    backup_disk: Disk | None = None,
) -> tuple[list[dict[str, object]], dict[str, float]]:
    """Boot the server, back it up in full, change its data, back it up again (incremental)
    and power it off; the backup sets as `rescue status --json` lists them, and the seconds of
    each backup. A backup_disk (see backup_disk()) is mounted at /backup for a file destination;
    forwards reach an sftp server."""
    append = boot.append(SHELL_WORD, "systemd.mask=serial-getty@ttyS0.service")
    disks = [Disk(source), *([backup_disk] if backup_disk else [])]
    seconds = {}
    with Machine(
        "source",
        folder,
        disks=disks,
        kernel=(boot.kernel, boot.initrd, append),
        firmware=firmware,
        forwards=forwards,
        accel=accel,
    ) as vm:
        # Either line can be lost on a loaded UART (READY was, under OVMF); the sync decides.
        vm.wait_for(f"{SHELL_READY}|{SHELL_PROMPT}", 600)
        vm.sync_shell()  # keys typed before bash owns the tty are lost
        if firmware == "uefi":
            vm.succeed("test -d /sys/firmware/efi", 30)  # the source really runs on UEFI
        if backup_disk:
            vm.succeed(f"mkdir -p /backup && mount LABEL={BACKUP_LABEL} /backup", 60)
        if forwards:
            vm.succeed("/lib/systemd/systemd-networkd-wait-online --timeout=120", 180)
        for kind, change in (("full", ""), ("incremental", CHANGE_IN_GUEST)):
            if change:
                time.sleep(1)  # duplicity's set times have one-second resolution
                vm.succeed(change, 60)
            started = time.monotonic()
            vm.succeed(f"rescue backup --{kind}", BACKUP_TIMEOUT)
            seconds[f"backup --{kind} in the source VM"] = time.monotonic() - started
        sets = json.loads(vm.succeed("rescue status --json", 600))["sets"]
        check_schedule(vm)
        if backup_disk:
            vm.succeed("umount /backup && sync", 60)
        vm.send("systemctl poweroff\n")
        vm.wait_for_shutdown(300)
    assert [s["kind"] for s in sets] == ["full", "incremental"], sets
    return sets, seconds


def check_schedule(vm: Machine) -> None:
    """`rescue schedule install` on a machine where systemd runs: the timer is enabled and
    active with a next elapse; then it is removed again, so nothing of it is on the disk the
    recovery is compared with (the backups were taken before)."""
    out = vm.succeed(
        "rescue schedule install && systemctl is-enabled rescue-backup.timer && "
        "systemctl is-active rescue-backup.timer && "
        "systemctl show -P NextElapseUSecRealtime rescue-backup.timer",
        120,
    )
    lines = out.splitlines()
    assert "started rescue-backup.timer" in out, out
    assert lines[-3:-1] == ["enabled", "active"] and lines[-1].strip(), out
    out = vm.succeed("rescue schedule remove && ! systemctl is-active rescue-backup.timer", 120)
    assert "removed /etc/systemd/system/rescue-backup.timer" in out, out


BACKUP_LABEL = "BACKUPS"
FILE_DESTINATION: dict[str, object] = {"method": "file", "path": "/backup/rescue"}


def server_disk(folder: Path, firmware: str = "bios") -> Path:
    """A fresh copy of the cached server disk, for one scenario."""
    source = folder / "server.img"
    sh("cp", "--sparse=always", str(source_image(firmware, server=True)), str(source))
    return source


def backup_disk(folder: Path) -> Disk:
    """An empty ext4 disk labelled BACKUPS, for a file destination (FILE_DESTINATION) at
    /backup on it; backup_story mounts it there."""
    image = folder / "backups.img"
    sh("truncate", "-s", "2G", str(image))
    sh("mkfs.ext4", "-q", "-F", "-L", BACKUP_LABEL, str(image))
    return Disk(image, serial=BACKUP_LABEL)


@dataclass
class FileBackedServer:
    """A source server that backed itself up to its own backup disk (file_backed_server)."""

    disk: Path
    backups: Disk
    sets: list[dict[str, object]]  # as `rescue status --json` lists them
    seconds: dict[str, float]  # of each backup


def file_backed_server(
    folder: Path, iso: Path, firmware: str = "bios", accel: str = "tcg"
) -> FileBackedServer:
    """The story's server with FILE_DESTINATION on its backup disk (mounted at /backup, which
    the backup leaves out): made, backed up in full, changed, backed up again, powered off."""
    disk = server_disk(folder, firmware)
    boot = prepare_server(disk, iso, FILE_DESTINATION, {}, folder, excludes=("/backup",))
    backups = backup_disk(folder)
    sets, seconds = backup_story(
        folder, disk, boot, firmware=firmware, accel=accel, backup_disk=backups
    )
    return FileBackedServer(disk, backups, sets, seconds)
