"""A candidate disk that fails its reads is named unusable, with the reason, and the mapping goes
on with the other disks, unattended and guided (issue 17).

The failing disk is real, not a stand-in: a device-mapper `error` target (under a loop device,
so that rescue lists it) inside the QEMU test guest, as this host's kernel has no
device-mapper. The host backs up a small system (GPT, one ext4 partition, an fstab that mounts
/ by UUID) from a loop disk to a file destination; the guest side, tests/guest/unreadable_disk.py,
runs the real `rescue recover --dry-run` in one boot twice: with a plan, and through a
pseudo-terminal. Both name the failing disk and its good twin as targets.

What the real device showed: blkid and wipefs find nothing on it (libblkid takes EIO for "no
signature"), so it looked blank and the mapping was ambiguous until map_disks read sample blocks
of every candidate itself; the fake blkid this test replaces had printed an error instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from clirun import rescue
from loopdisks import loop_disk, partition, require_loop_disks, sh
from scenario import TOOLS, scenario_settings, write_plan
from vm import GuestRun, run_guest

pytestmark = pytest.mark.slow

ROOT_UUID = "22222222-bbbb-4ccc-8ddd-000000000001"
GOOD_SERIAL = "RESCUE-GOOD"  # tests/guest/unreadable_disk.py names it too
DYING = "/dev/mapper/dying"  # made in the guest on vdb
# What the guest side reports and keeps in the work directory, for a failure message.
RESULTS = {"setup": "PASS", "unattended": "PASS", "guided": "PASS", "untouched": "PASS"}
KEPT = ("unattended.out", "unattended.err", "guided.terminal", "dmesg.txt")


def make_source(root: Path) -> None:
    """The least a recovery needs: ids, an fstab mounting / by UUID, and a few files."""
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    (root / "etc/fstab").write_text(f"UUID={ROOT_UUID} / ext4 defaults 0 1\n")
    (root / "etc/hostname").write_text("dying-disk-src\n")
    (root / "srv").mkdir()
    (root / "srv/data.txt").write_text("the data that comes back\n")
    (root / "root").mkdir(mode=0o700)
    (root / "root/notes.txt").write_text("root's notes\n")


def details(run: GuestRun, folder: Path, log: Path) -> str:
    """The console's tail and what the guest kept of each rescue run."""
    parts = [f"console log: {log}", *run.console.splitlines()[-60:]]
    for name in KEPT:
        path = folder / name
        if path.exists():
            parts += [f"--- {name} (tail)", *path.read_text(errors="replace").splitlines()[-40:]]
    return "\n".join(parts)


def test_a_disk_that_fails_its_reads_is_left_out_in_a_guest(tmp_path: Path) -> None:
    require_loop_disks(TOOLS)
    root = tmp_path / "src"
    root.mkdir()
    dest = {"method": "file", "path": str(tmp_path / "dest")}
    (tmp_path / "backup").mkdir()
    settings = scenario_settings(tmp_path / "backup/rescue.toml", dest, root, tmp_path / "cache")
    with loop_disk(tmp_path / "source.img", "64M") as device:
        (part,) = partition(device, "label: gpt\ntype=linux, name=root\n")
        sh("mkfs.ext4", "-q", "-F", "-U", ROOT_UUID, "-L", "root", part)
        sh("mount", part, str(root))
        try:
            make_source(root)
            run = rescue(settings, "backup", "--full")
            assert run.code == 0, run.err
        finally:
            sh("umount", str(root))

    folder = tmp_path / "recover"
    folder.mkdir()
    guest_cache = Path("/var/tmp/rescue-cache")  # inside the guest
    recovery = scenario_settings(folder / "rescue.toml", dest, root, guest_cache)
    targets = [f"file:{DYING}", f"serial:{GOOD_SERIAL}"]
    write_plan(folder, recovery, targets, target_root=Path("/mnt/target"))
    # The same size: were the failing disk taken for a blank one, the mapping would be ambiguous.
    disks = [tmp_path / "dying.img", tmp_path / "good.img"]
    for image in disks:
        sh("truncate", "-s", "128M", str(image))
    log = tmp_path / "console.log"
    guest = run_guest(
        "unreadable_disk",
        disks,
        log,
        timeout=2400,
        serials=["RESCUE-DYING-BASE", GOOD_SERIAL],
        work=tmp_path,
    )
    assert guest.results() == RESULTS, f"{guest.results()}\n{details(guest, folder, log)}"
    assert guest.exit_code == 0, details(guest, folder, log)
