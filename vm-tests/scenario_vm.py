"""The steps the VM scenarios share: the plan disk, booting the ISO into an unattended recovery,
and comparing the recovered disk with the source, with the figures the benchmark prints."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bootdisk import HOSTNAME, boot_disk, mounted_system
from clirun import toml_text, write_settings
from loopdisks import sh
from machine import Disk, Forward, Machine
from scenario import CHANGED_MARKER, EXCLUDE_GLOB, PASSPHRASE, assert_links_and_owners
from server import ARCHIVE_DIR, ODD_MODES, SERVICE_LINK, SPARSE_DATA, SPARSE_DATA_AT, SPARSE_REL

from rescue.backup.treecompare import compare_trees, difference_path
from rescue.config import DEFAULT_EXCLUDES
from rescue.exact.records import SIDECAR_REL
from rescue.exact.sizes import SIZES_REL
from rescue.live.console import DONE_MARKER, READY_MARKER
from rescue.live.plan_source import LABEL, PLAN_DIR
from rescue.recovery.manifest import MANIFEST_REL

PLAN_MOUNT = PLAN_DIR / "disk"  # where the rescue system mounts the RESCUEPLAN disk
TARGET_SERIAL = "RESCUE-TARGET"
ISO_APPEND = "boot=live components console=tty1 console=ttyS0,115200n8"
BOOT_TIMEOUT = 600
RECOVERY_TIMEOUT = 3600
# What the recovery writes itself (the bootloader step, its own log), and what the source server
# wrote after its last backup, while it ran on and shut down (its journal and systemd's state,
# rescue's own log of that backup): nothing else may differ.
REGENERATED = ("boot/grub/", "boot/initrd.img-", "var/lib/initramfs-tools/", "var/log/rescue/")
# gpg (run by duplicity) writes root's random seed and a lock file while the backup runs.
WRITTEN_AFTER_BACKUP = ("var/log/", "var/lib/systemd/", "var/lib/dhcp/", "root/.gnupg/")


@dataclass
class Figures:
    """What the benchmark prints for a scenario."""

    seconds: dict[str, float] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"{name}: {value:.0f} s" for name, value in self.seconds.items()]
        out += [f"  step {name}: {value:.1f} s" for name, value in self.steps.items()]
        return out


def plan_disk(
    folder: Path,
    destination: dict[str, object],
    secrets: dict[str, str],
    *,
    mounts: dict[str, str] | None = None,
    **plan: object,
) -> Path:
    """A small ext4 disk labelled RESCUEPLAN with plan.toml, its settings and their secrets.

    The settings name their secret files where the rescue system mounts this disk."""
    content = folder / "plan-disk"
    content.mkdir()
    for name, text in {"passphrase": PASSPHRASE, **secrets}.items():
        (content / name).write_text(text)
        (content / name).chmod(0o600)
    write_settings(
        content / "rescue.toml",
        {
            "destination": destination,
            "encryption": {
                "mode": "symmetric",
                "passphrase_file": str(PLAN_MOUNT / "passphrase"),
            },
        },
    )
    tables: dict[str, dict[str, object]] = {"disks": {"targets": [f"serial:{TARGET_SERIAL}"]}}
    if mounts:
        tables["mounts"] = {json.dumps(point): source for point, source in mounts.items()}
    tables["answers"] = {'"recover.erase"': "yes"}
    (content / "plan.toml").write_text(toml_text(tables, {"settings": "rescue.toml", **plan}))
    image = folder / "plan.img"
    sh("mkfs.ext4", "-q", "-F", "-L", LABEL, "-d", str(content), str(image), "16M")
    return image


def recover_from_iso(
    folder: Path,
    iso: Path,
    iso_kernel: tuple[Path, Path],
    target: Path,
    plan: Path,
    *,
    forwards: list[Forward] | None = None,
    firmware: str = "bios",
    accel: str = "tcg",
    extra_disks: list[Disk] | None = None,
    figures: Figures,
) -> None:
    """Boot the ISO with rescue.plan= on the plan disk; it recovers onto target and powers off."""
    append = f"{ISO_APPEND} rescue.plan=/plan.toml rescue.after=poweroff"
    disks = [
        Disk(target, serial=TARGET_SERIAL),
        Disk(plan, serial="PLANDISK"),
        *(extra_disks or []),
    ]
    with Machine(
        "rescue-iso",
        folder,
        disks=disks,
        cdrom=iso,
        kernel=(*iso_kernel, append),
        firmware=firmware,
        forwards=forwards,
        accel=accel,
    ) as vm:
        vm.wait_for(READY_MARKER, BOOT_TIMEOUT)
        figures.seconds["ISO boot to the rescue console"] = vm.elapsed()
        done = vm.wait_for(rf"{DONE_MARKER} (\d+)", RECOVERY_TIMEOUT)
        assert done[1] == "0", vm._failure(f"the unattended recovery exited {done[1]}")
        figures.seconds["ISO boot to recovery done"] = vm.elapsed()
        vm.wait_for(r"recovery done; poweroff", 60)
        vm.wait_for_shutdown(300)


def recovered_report(target: Path, folder: Path) -> dict[str, object]:
    """The recovery's report, as the finish step kept it in the restored system."""
    view = folder / "report-view"
    with mounted_system(target, view, read_only=True):
        reports = sorted((view / "var/log/rescue").glob("recover-*.json"))
        assert reports, "the recovered system holds no recovery report"
        return json.loads(reports[-1].read_text())


def assert_boots(target: Path, folder: Path, firmware: str = "bios") -> float:
    """The recovered disk boots to its marker, with the content of the incremental backup."""
    started = time.monotonic()
    # snapshot: the boot is killed at the marker, and must not leave the disk to compare dirty.
    log = folder / "recovered.console.log"
    line = boot_disk(target, log, firmware=firmware, snapshot=True)
    words = line.split()
    assert f"host={HOSTNAME}" in words, line
    digest = subprocess.run(
        ["sha256sum"], input=CHANGED_MARKER.encode(), capture_output=True, check=True
    ).stdout.split()[0]
    assert f"sum={digest.decode()}" in words, line
    return time.monotonic() - started


def assert_recovered(
    source: Path,
    target: Path,
    folder: Path,
    figures: Figures,
    started: float,
    firmware: str = "bios",
) -> None:
    """After an unattended recovery (recover_from_iso, started at the monotonic time started):
    it restored the incremental backup, the recovered disk boots and holds the source's system;
    the figures get its steps' seconds and the boot's."""
    report = recovered_report(target, folder)
    assert report["restore_point"]["kind"] == "incremental", report["restore_point"]
    figures.steps = {s["id"]: s["seconds"] or 0.0 for s in report["steps"]}
    figures.seconds["recovered system boot to marker"] = assert_boots(target, folder, firmware)
    figures.seconds["ISO boot to recovered marker"] = time.monotonic() - started
    assert_same_system(source, target, folder)


def _allowed(line: str) -> bool:
    path = difference_path(line)
    excluded = tuple(f"{d.strip('/')}/" for d in (*DEFAULT_EXCLUDES, ARCHIVE_DIR))
    if path.startswith(excluded) or fnmatch.fnmatch(os.path.basename(path), EXCLUDE_GLOB):
        return True
    # An excluded mount point is recreated with the mode the running source showed for it,
    # which is its mounted file system's (proc 0555), not the directory's beneath (0755).
    if line.startswith("mode differs") and f"{path}/" in excluded:
        return True
    if path in (MANIFEST_REL, SIDECAR_REL, SIZES_REL):  # each backup rewrites them
        return True
    allowed = REGENERATED + WRITTEN_AFTER_BACKUP
    return (path + "/").startswith(allowed) or path.startswith(allowed)


def assert_same_system(source: Path, target: Path, folder: Path) -> None:
    """Every path, type, size, numeric owner, mode, mtime, link and byte, as in the source."""
    source_view, target_view = folder / "source-view", folder / "target-view"
    with (
        mounted_system(source, source_view, read_only=True),
        mounted_system(target, target_view, read_only=True),
    ):
        differences = compare_trees(source_view, target_view)
        unexplained = [d for d in differences if not _allowed(d)]
        assert unexplained == [], "\n".join(unexplained)
        assert (target_view / "etc/rescue-marker.txt").read_text() == CHANGED_MARKER
        assert not (target_view / "srv/data/delete-me").exists()
        assert (target_view / "srv/data/new.txt").exists()
        assert not (target_view / "srv/data/movie.avi").exists()
        assert_links_and_owners(source_view, target_view)
        for rel, mode in ODD_MODES.items():
            assert (target_view / rel).lstat().st_mode & 0o7777 == mode, rel
        assert (target_view / SERVICE_LINK).is_symlink()
        with (target_view / SPARSE_REL).open("rb") as sparse:
            sparse.seek(SPARSE_DATA_AT)
            assert sparse.read(len(SPARSE_DATA)) == SPARSE_DATA
