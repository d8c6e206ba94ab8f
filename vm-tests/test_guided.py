"""Scenario 3, guided: an admin at the serial console recovers an older restore point by hand.

The source server backs itself up (full, change, incremental) to a file destination on its
second disk. The ISO then boots from the CD exactly as an admin boots it (the isolinux menu, no
kernel parameters) to the rescue console's menu. There the test, typing on the serial console
as the admin would, opens the shell, mounts the backup disk, runs `rescue recover -t` with the
time of the FULL backup, answers every prompt (no settings file: the destination and passphrase
are typed; the mapping is confirmed, after a Ctrl-C at that prompt opened a shell and `exit`
came back to it; "yes" is typed to erase), and powers off. The recovered disk
boots and holds the data of the full backup, not the incremental's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bootdisk import DISK_MIB, HOSTNAME, MARKER_SUM, MARKER_TEXT, boot_disk, mounted_system
from loopdisks import require_loop_disks, sh
from machine import Disk, Machine
from scenario import CHANGED_MARKER, PASSPHRASE, TOOLS
from scenario_vm import TARGET_SERIAL, Figures, recovered_report
from server import BACKUP_LABEL, file_backed_server

from rescue.live.console import READY_MARKER

pytestmark = pytest.mark.slow
LIVE_PROMPT = r"root@[\w.-]+:[^#\r\n]*# "


def test_guided(iso: Path, accel: str, tmp_path: Path) -> None:
    require_loop_disks(TOOLS)
    figures = Figures()
    server = file_backed_server(tmp_path, iso, accel=accel)
    figures.seconds = server.seconds
    full_date = server.sets[0]["date"]

    target = tmp_path / "target.img"
    sh("truncate", "-s", f"{DISK_MIB}M", str(target))
    with Machine(
        "rescue-iso",
        tmp_path,
        disks=[Disk(target, serial=TARGET_SERIAL), server.backups],
        cdrom=iso,  # booted as an admin boots it: the isolinux menu's default entry
        accel=accel,
    ) as vm:
        vm.wait_for(READY_MARKER, 600)
        vm.wait_for("rescue> ", 300)
        figures.seconds["ISO boot to the first prompt"] = vm.elapsed()
        vm.send("s\n")
        vm.wait_for(LIVE_PROMPT, 120)
        vm.sync_shell()  # keys typed before bash owns the tty are lost
        vm.succeed(f"mkdir -p /backup && mount -o ro LABEL={BACKUP_LABEL} /backup", 60)
        vm.send(f"rescue recover -t {full_date}\n")
        vm.wait_for("Settings file", 300)
        vm.send("\r")  # none: type them
        vm.wait_for("Where is the backup", 60)
        vm.send("\x1b[A\r")  # up from the default (sftp) to file
        vm.wait_for("Directory of the backups", 60)
        vm.send("/backup/rescue\r")
        vm.wait_for("How is the backup encrypted", 60)
        vm.send("\r")  # symmetric
        vm.wait_for("Passphrase of the backup", 60)
        vm.send(PASSPHRASE + "\r")
        vm.wait_for("Use this mapping", 1800)
        vm.send("\x03")  # Ctrl-C at a prompt: a shell, then the same question again
        vm.wait_for("Stopped at question", 60)
        vm.send("s\r")
        vm.wait_for(LIVE_PROMPT, 120)
        assert "console=ttyS0" in vm.succeed("cat /proc/cmdline", 60)
        vm.send("exit\r")
        vm.wait_for("Use this mapping", 120)
        vm.send("y")
        vm.wait_for('Type "yes" to go on', 120)
        vm.send("yes\r")
        vm.wait_for("Recovery done. Now", 3600)
        vm.send("\r")  # none: back to the shell
        # The shell answers again: recover has exited. Keys typed while it still owned the
        # tty went to its prompt, so the sync types until the shell itself answers.
        vm.sync_shell()
        assert PASSPHRASE not in vm.console()
        vm.send("systemctl poweroff\n")
        vm.wait_for_shutdown(300)

    report = recovered_report(target, tmp_path)
    # The report is kept by the finish step, while it runs: every step before it is done.
    assert all(s["outcome"] == "done" for s in report["steps"][:-1]), report["steps"]
    assert report["restore_point"]["kind"] == "full", report["restore_point"]
    line = boot_disk(target, tmp_path / "recovered.console.log", snapshot=True)
    assert f"host={HOSTNAME}" in line.split() and f"sum={MARKER_SUM}" in line.split(), line
    view = tmp_path / "view"
    with mounted_system(target, view, read_only=True):
        assert (view / "etc/rescue-marker.txt").read_text() == MARKER_TEXT != CHANGED_MARKER
        assert (view / "srv/data/delete-me").exists()  # deleted only before the incremental
        assert not (view / "srv/data/new.txt").exists()
        assert (view / "home/alice/notes.txt").read_text() == "alice's notes\n"
    print("\n".join(["guided:", *figures.lines()]))
