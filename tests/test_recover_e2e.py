"""Bare-metal recovery end to end, on loop disks, proven by booting the result in QEMU.

The story: a small bootable Debian (testsupport/bootdisk.py: GPT, BIOS boot partition, /boot, swap,
/ last) is backed up (full, then changed, then incremental) to a file destination and to sftp on
127.0.0.1. Its disk is then lost: `rescue recover --plan` rebuilds it on a blank loop disk of the
same size (from the file destination, killed mid-restore and resumed) and of a larger size (from
sftp, where the backup is in two shards: two duplicity chains written at once, restored at once
and merged), and guided mode does it through a terminal. Each result is compared with the source
tree (every path, type, size, numeric owner, mode, mtime, symlink target, hard-link group and the
bytes of every file), and booted until its marker unit prints the hostname and the checksum of a
file changed in the incremental.

Recovery runs as a new machine would: with an empty duplicity cache (its own archive_dir), so
the metadata comes from the destination.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest
from bootdisk import HOSTNAME, boot_disk, mounted_system, source_image
from clirun import rescue
from exacttree import assert_exact_copy
from loopdisks import loop_disk, require_loop_disks, sh
from scenario import (
    CHANGED_MARKER,
    EXACT_REL,
    EXCLUDE_GLOB,
    PASSPHRASE,
    SOURCE_EXCLUDES,
    TOOLS,
    add_exact_tree,
    assert_links_and_owners,
    change,
    mark_disk,
    populate,
    recover_argv,
    recovery_state,
    run_recover,
    scenario_settings,
    step_record,
    untouched,
    write_plan,
)
from servers import SshServer

from rescue.backup.shardmap import SHARDS_FILE
from rescue.backup.treecompare import compare_trees, difference_path
from rescue.exact.records import SIDECAR_REL
from rescue.exact.sizes import SIZES_REL
from rescue.placement.place import STAGING_PREFIX
from rescue.recovery.manifest import MANIFEST_REL
from rescue.steps import RECOVER

pytestmark = pytest.mark.slow

REGENERATED = (
    "boot/grub/",  # grub-install and update-grub (the bootloader step)
    "boot/initrd.img-",  # update-initramfs (the bootloader step)
    "var/lib/initramfs-tools/",  # update-initramfs's record of the image it made
    "var/log/rescue/",  # the recovery's log and report, kept in the restored system
)


@dataclass
class Scenario:
    work: Path
    source: Path  # the source disk image, as it was at the incremental backup
    file_settings: Path  # recovery settings: file destination, empty cache
    sftp_settings: Path  # recovery settings: sftp destination, empty cache


def _sftp_destination(work: Path, sshd: SshServer) -> dict[str, object]:
    return sshd.destination(work / "dest-sftp")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, sshd: SshServer) -> Iterator[Scenario]:
    """The source disk, backed up full + incremental to a file destination and to sftp."""
    require_loop_disks(TOOLS)
    work = tmp_path_factory.mktemp("recover")
    image = work / "source.img"
    sh("cp", "--sparse=always", str(source_image()), str(image))
    root = work / "src"
    root.mkdir()
    destinations = {
        "file": {"method": "file", "path": str(work / "dest-file")},
        "sftp": _sftp_destination(work, sshd),
    }
    settings = {}
    for kind, dest in destinations.items():
        (work / f"backup-{kind}").mkdir()
        settings[kind] = scenario_settings(
            work / f"backup-{kind}/rescue.toml",
            dest,
            root,
            work / f"backup-{kind}/cache",
            **({"shards": 2} if kind == "sftp" else {}),
        )
    with mounted_system(image, root):
        populate(root)
        add_exact_tree(root)
        for path in settings.values():
            run = rescue(path, "backup", "--full")
            assert run.code == 0, run.err
        time.sleep(1)  # duplicity set times have one-second resolution
        change(root)
        for path in settings.values():
            run = rescue(path, "backup", "--incremental")
            assert run.code == 0, run.err
    recovery = {}
    for kind, dest in destinations.items():
        folder = work / f"recover-{kind}"
        folder.mkdir()
        recovery[kind] = scenario_settings(folder / "rescue.toml", dest, root, folder / "cache")
    yield Scenario(work, image, recovery["file"], recovery["sftp"])


def _allowed(line: str) -> bool:
    """A difference the recovery explains: what the selection leaves out (the excluded
    directories' content and the glob exclusions, both recorded in the manifest), a file the
    bootloader step regenerates, the recovery's own log, or the manifest, its metadata records
    and sizes (each backup rewrites them in the source; the source's copies are from the last
    backup of the two)."""
    path = difference_path(line)
    excluded = tuple(f"{d}/" for d in SOURCE_EXCLUDES)
    if path.startswith(excluded) or fnmatch.fnmatch(os.path.basename(path), EXCLUDE_GLOB):
        return True
    if path in (MANIFEST_REL, SIDECAR_REL, SIZES_REL) and line.startswith(
        ("size differs", "mtime differs", "content")
    ):
        return True
    return (path + "/").startswith(REGENERATED) or path.startswith(REGENERATED)


def assert_same_system(
    scenario: Scenario, target: Path, folder: Path, settings: Path | None = None
) -> None:
    """The recovered disk holds the source system: the tree, the hard links, the boot files,
    and what duplicity drops (by the standard tools, and by `rescue verify --deep` against the
    backup it was recovered from: settings, the file destination's by default)."""
    source_view, target_view = folder / "source-view", folder / "target-view"
    with (
        mounted_system(scenario.source, source_view, read_only=True),
        mounted_system(target, target_view, read_only=True),
    ):
        differences = compare_trees(source_view, target_view)
        unexplained = [d for d in differences if not _allowed(d)]
        assert unexplained == [], "\n".join(unexplained)
        # What the comparison allowed really is there: excluded content is not restored,
        # and the regenerated boot files exist.
        assert "only in expected: tmp/scratch.txt" in differences
        assert not (target_view / "srv/data/movie.avi").exists()
        assert (target_view / "tmp").stat().st_mode & 0o7777 == 0o1777
        grub_cfg = (target_view / "boot/grub/grub.cfg").read_text()
        assert "/dev/loop" not in grub_cfg
        assert "root=UUID=" in grub_cfg
        assert list((target_view / "var/log/rescue").glob("recover-*.json"))
        assert list((target_view / "var/log/rescue").glob("recover-*.log"))
        assert_links_and_owners(source_view, target_view)
        # What duplicity drops, as getcap, getfattr, getfacl, stat and du see it.
        assert_exact_copy(source_view / EXACT_REL, target_view / EXACT_REL)
        deep = rescue(
            settings or scenario.file_settings,
            "verify", "--deep", str(scenario.work / "src" / EXACT_REL),
            "--restored", str(target_view / EXACT_REL),
        )  # fmt: skip
        assert deep.code == 0 and "0 difference(s)" in deep.out, deep.out + deep.err


def assert_boots(target: Path, folder: Path) -> None:
    line = boot_disk(target, folder / "console.log")
    words = line.split()
    assert f"host={HOSTNAME}" in words, line
    assert f"sum={hashlib.sha256(CHANGED_MARKER.encode()).hexdigest()}" in words, line


def staged_files(target: Path, enough: int) -> int:
    """How many files the restore's staging directories in target hold, counting up to enough."""
    count = 0
    for staging in target.glob(f"{STAGING_PREFIX}*"):
        for _, _, files in os.walk(staging):
            count += len(files)
            if count >= enough:
                return count
    return count


def wait_for_staged_files(
    target: Path, proc: subprocess.Popen[bytes], deadline: float, enough: int = 200
) -> None:
    """Return once duplicity has written enough files into the staging directory: a kill then
    lands in the middle of the restore, not before its first file (the minbase has >5,000)."""
    while staged_files(target, enough) < enough:
        assert proc.poll() is None, proc.communicate()[0].decode(errors="replace")
        assert time.monotonic() < deadline, "the restore wrote no files"
        time.sleep(0.2)


def test_same_size_disk_killed_mid_restore_resumes_and_boots(
    scenario: Scenario, tmp_path: Path, host_identity: None
) -> None:
    target = tmp_path / "target.img"
    with loop_disk(target, "1536M"):
        plan = write_plan(tmp_path, scenario.file_settings, [target])
        proc = subprocess.Popen(
            recover_argv(scenario.file_settings, tmp_path, "--plan", str(plan)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 600
        while step_record(recovery_state(tmp_path), "restore_full").get("outcome") != "running":
            assert proc.poll() is None, proc.communicate()[0].decode(errors="replace")
            assert time.monotonic() < deadline, "the restore never started"
            time.sleep(0.2)
        wait_for_staged_files(tmp_path / "target", proc, deadline)  # duplicity is writing now
        os.killpg(proc.pid, signal.SIGKILL)  # a crash: no cleanup runs, duplicity dies too
        proc.wait()
        assert step_record(recovery_state(tmp_path), "restore_full")["outcome"] == "running"
        assert Path("/etc/passwd").read_text().count("games:x:1500") == 1  # still swapped

        resumed = run_recover(scenario.file_settings, tmp_path, "--resume", "--json")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        report = json.loads(resumed.stdout)
        assert report["outcome"] == "success"
        steps = {s["id"]: s for s in report["steps"]}
        assert steps["restore_full"]["runs"] == 2
        assert steps["mount_target"]["runs"] == 2  # redone: the mounts were lost with the crash
        assert steps["recreate_layout"]["runs"] == 1
        assert report["restore_point"]["kind"] == "incremental"
        assert report["totals"]["files"] > 5_000  # the whole minbase system, not a part
        # Same UUIDs, loop disks (no driver module): the restored initramfs is kept, and boots.
        boot = [line for line in steps["bootloader"]["done"] if line.startswith("initramfs ")]
        assert len(boot) == 1, steps["bootloader"]
        assert re.fullmatch(
            "initramfs kept: file-system UUIDs as recorded; resume device present; "
            r"kernel \S+ needs no module for the target disks",
            boot[0],
        ), boot
        assert any(
            line.startswith("etc: ") and "(verify = sample), 0 differ" in line
            for line in steps["verify"]["done"]
        ), steps["verify"]
        assert not list((tmp_path / "target").glob(".rescue-restore-*"))
    assert_same_system(scenario, target, tmp_path)
    assert_boots(target, tmp_path)


def test_larger_disk_from_sftp_grows_the_last_partition_and_boots(
    scenario: Scenario, tmp_path: Path, host_identity: None
) -> None:
    target = tmp_path / "target.img"
    with loop_disk(target, "2048M"):
        plan = write_plan(tmp_path, scenario.sftp_settings, [target], initramfs="always")
        done = run_recover(
            scenario.sftp_settings, tmp_path, "--plan", str(plan), "--verify", "full", "--json"
        )
        assert done.returncode == 0, done.stdout + done.stderr
        steps = {s["id"]: s for s in json.loads(done.stdout)["steps"]}
        assert 'initramfs rebuilt: asked for (initramfs = "always")' in steps["bootloader"]["done"]
        # the backup it came from is in two shards, each with its own chain
        shards = json.loads((scenario.work / "dest-sftp" / SHARDS_FILE).read_text())
        assert [len(c["pieces"]) for c in shards["chains"]] == [2]
        assert list((scenario.work / "dest-sftp/shard-1").glob("duplicity-inc.*.manifest.gpg"))
        compared = [line for line in steps["verify"]["done"] if "the whole backup" in line]
        assert len(compared) == 1 and compared[0].endswith("(verify = full), 0 differ"), compared
        assert int(compared[0].split()[3]) > 5_000, compared  # every file, not etc/ alone
    table = json.loads(sh("sfdisk", "--json", str(target)))["partitiontable"]
    source = json.loads(sh("sfdisk", "--json", str(scenario.source)))["partitiontable"]
    assert [p["start"] for p in table["partitions"]] == [p["start"] for p in source["partitions"]]
    assert [p["size"] for p in table["partitions"][:3]] == [
        p["size"] for p in source["partitions"][:3]
    ]
    grown = table["partitions"][3]
    assert grown["start"] + grown["size"] > source["lastlba"] + 1000_000  # took the new 512 MiB
    assert_same_system(scenario, target, tmp_path, scenario.sftp_settings)
    assert_boots(target, tmp_path)


def spawn(argv: list[str], folder: Path) -> pexpect.spawn:
    """A command on a pseudo-terminal, as an admin at the console runs it."""
    child = pexpect.spawn(
        argv[0], argv[1:], env={**os.environ, "TERM": "xterm"}, dimensions=(50, 200),
        encoding="utf-8", codec_errors="replace", timeout=300,
    )  # fmt: skip
    child.logfile_read = (folder / "terminal.log").open("w")
    return child


def test_guided_mode_through_a_terminal_reaches_the_same_result(
    scenario: Scenario, tmp_path: Path, host_identity: None
) -> None:
    target = tmp_path / "target.img"
    with loop_disk(target, "1536M"):
        argv = recover_argv(
            scenario.file_settings,
            tmp_path,
            "--target", f"file:{target}",
            "--target-root", str(tmp_path / "target"),
        )  # fmt: skip
        child = spawn(argv, tmp_path)
        child.expect("Restore which backup set")
        child.send("\r")  # the default: the newest
        child.expect("Use this mapping")
        child.send("y")
        child.expect('Type "yes" to go on')
        child.sendline("yes")
        child.expect("Recovery done. Now", timeout=1200)
        child.send("\r")  # the default: none
        child.expect(pexpect.EOF, timeout=120)
        child.close()
        assert child.exitstatus == 0, (tmp_path / "terminal.log").read_text()[-3000:]
    report = json.loads((tmp_path / "work/report.json").read_text())
    assert report["outcome"] == "success"
    assert report["restore_point"]["kind"] == "incremental"
    assert_same_system(scenario, target, tmp_path)


def test_guided_mode_asks_for_the_destination_when_there_are_no_settings(
    scenario: Scenario, tmp_path: Path
) -> None:
    """A new machine with only the rescue system: the destination and passphrase are typed (a
    dry run, so it ends after the plan); the passphrase never reaches the screen or the log."""
    target = tmp_path / "target.img"
    with loop_disk(target, "1536M") as device:
        argv = recover_argv(tmp_path / "no-such-settings.toml", tmp_path, "--dry-run")
        argv += ["--target", f"file:{target}"]
        child = spawn(argv, tmp_path)
        child.expect("Settings file")
        child.sendline("")  # none: type them
        child.expect("Where is the backup")
        child.send("\x1b[A")  # up from the default (sftp) to file
        child.send("\r")
        child.expect("Directory of the backups")
        child.sendline(str(scenario.work / "dest-file"))
        child.expect("How is the backup encrypted")
        child.send("\r")  # the default: symmetric
        child.expect("Passphrase of the backup")
        child.sendline(PASSPHRASE)
        child.expect("Restore which backup set")
        child.send("\r")
        child.expect("Use this mapping")
        child.send("y")
        child.expect(pexpect.EOF, timeout=300)
        child.close()
        screen = (tmp_path / "terminal.log").read_text()
        assert child.exitstatus == 0, screen[-3000:]
        assert f"ERASE {device} (for " in screen
        assert "host rescue-src" in screen  # the manifest came from the typed destination
        assert PASSPHRASE not in screen
        assert PASSPHRASE not in (tmp_path / "rescue.log").read_text()


def test_wrong_passphrase_stops_before_any_disk_is_written(
    scenario: Scenario, tmp_path: Path, host_identity: None
) -> None:
    settings = tmp_path / "rescue.toml"
    text = scenario.file_settings.read_text()
    secret = tmp_path / "wrong"
    secret.write_text("not the passphrase")
    secret.chmod(0o600)
    settings.write_text(re.sub(r'passphrase_file = ".*"', f'passphrase_file = "{secret}"', text))
    settings.chmod(0o600)
    target = tmp_path / "target.img"
    with loop_disk(target, "1536M") as device:
        mark_disk(device)
        done = run_recover(
            settings, tmp_path, "--plan", str(write_plan(tmp_path, settings, [target]))
        )
        assert done.returncode == 10, done.stdout + done.stderr
        assert "rescue: error: " in done.stderr and "passphrase" in done.stderr
        assert "not the passphrase" not in done.stdout + done.stderr
        assert untouched(device)
    state = recovery_state(tmp_path)
    assert step_record(state, "recreate_layout")["outcome"] == "pending"
    assert not (tmp_path / "target").exists() or not any((tmp_path / "target").iterdir())


def test_ambiguous_mapping_fails_unattended_and_names_the_candidates(
    scenario: Scenario, tmp_path: Path
) -> None:
    one, two = tmp_path / "one.img", tmp_path / "two.img"
    with loop_disk(one, "1600M") as first, loop_disk(two, "1600M") as second:
        mark_disk(first)
        mark_disk(second)
        plan = write_plan(tmp_path, scenario.file_settings, [one, two])
        done = run_recover(scenario.file_settings, tmp_path, "--plan", str(plan))
        assert done.returncode == 61, done.stdout + done.stderr
        error = next(ln for ln in done.stderr.splitlines() if ln.startswith("rescue: error: "))
        assert first in error and second in error and "does not guess" in error
        assert untouched(first) and untouched(second)


def test_dry_run_shows_every_step_and_changes_nothing(scenario: Scenario, tmp_path: Path) -> None:
    target = tmp_path / "target.img"
    with loop_disk(target, "1536M") as device:
        mark_disk(device)
        plan = write_plan(tmp_path, scenario.file_settings, [target])
        done = run_recover(scenario.file_settings, tmp_path, "--plan", str(plan), "--dry-run")
        assert done.returncode == 0, done.stdout + done.stderr
        steps = len(RECOVER)
        assert len(re.findall(rf"^\[\s*\d+/{steps}\] ", done.stdout, flags=re.M)) == steps
        assert f"ERASE {device} (for " in done.stdout
        assert f"mount {device}p4 (ext4) at {tmp_path / 'target'}" in done.stdout
        assert "grub-install --target=i386-pc --recheck " + device in done.stdout
        assert untouched(device)
        # -t picks an older restore point: the full set, not the newest incremental.
        status = rescue(scenario.file_settings, "status", "--json")
        assert status.code == 0, status.err
        full = status.json()["sets"][0]
        assert full["kind"] == "full"
        older = run_recover(
            scenario.file_settings, tmp_path, "--plan", str(plan), "--dry-run", "-t", full["date"]
        )
        assert older.returncode == 0, older.stdout + older.stderr
        assert re.search(rf"chosen: {re.escape(full['date'])}\s+full ", older.stdout), older.stdout
        assert untouched(device)
    assert not (tmp_path / "work/state.json").exists()
