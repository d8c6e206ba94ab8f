"""A recovery killed at seeded random moments leaves no process and no mount, and resumes.

The source is a small two-file-system system on a loop disk (/ and /srv, ext4, fstab by UUID,
no bootloader: the boot proof is test_recover_e2e's; this one is about lifetimes), backed up
with symmetric encryption, so duplicity runs gpg. `rescue recover --plan` rebuilds it on a
blank loop disk and is sent SIGTERM or SIGKILL at 10 seeded points of its run each. After each
kill: every process the run had started is gone, no mount is left under the target root (a
SIGKILL runs no cleanup: rescue's guardian unmounts), SIGTERM gave one line and exit 143, and
`recover --resume` (or a new run, when the kill came before the state file) succeeds, with
the restored trees equal to the source's. SIGKILL is a fault this project does not own: the
kernel's, sent here by the test.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from clirun import rescue
from killing import assert_all_gone, kill_at
from loopdisks import attached_image, loop_disk, partition, require_loop_disks, sh
from scenario import recover_argv, recovery_state, run_recover, scenario_settings, write_plan

from rescue.backup.treecompare import compare_trees
from rescue.recovery.mounts import mounts_below

pytestmark = pytest.mark.slow

POINTS = 10
SEED = 23
TOOLS = {"sfdisk": "fdisk", "partx": "util-linux", "wipefs": "util-linux", "mkfs.ext4": "e2fsprogs"}
LAYOUT = "label: gpt\nsize=96MiB, name=root\nsize=48MiB, name=srv\n"
ROOT_UUID = "5a1e0000-0000-4000-8000-000000000001"
SRV_UUID = "5a1e0000-0000-4000-8000-000000000002"
# What recovery itself writes or rewrites in the restored system, and the backup's own files.
OWN = ("var/log", "var/lib/rescue", "lost+found")


@dataclass
class Source:
    work: Path
    tree: Path  # a copy of the backed-up trees: srv/ holds the second file system's
    settings: Path  # recovery settings: the file destination, an empty cache


def _fill(root: Path, rng: random.Random, name: str) -> None:
    for d in range(2):
        folder = root / name / f"d{d}"
        folder.mkdir(parents=True)
        for f in range(30):
            (folder / f"f{f}").write_bytes(rng.randbytes(rng.randrange(1_000, 80_000)))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    require_loop_disks(TOOLS)
    work = tmp_path_factory.mktemp("recover-kills")
    root = work / "src"
    root.mkdir()
    dest = {"method": "file", "path": str(work / "dest")}
    (work / "backup").mkdir()
    settings = scenario_settings(work / "backup/rescue.toml", dest, root, work / "backup/cache")
    rng = random.Random(SEED)
    with loop_disk(work / "source.img", "160M") as device:
        parts = partition(device, LAYOUT)
        sh("mkfs.ext4", "-q", "-U", ROOT_UUID, parts[0])
        sh("mkfs.ext4", "-q", "-U", SRV_UUID, parts[1])
        sh("mount", parts[0], str(root))
        try:
            (root / "srv").mkdir()
            sh("mount", parts[1], str(root / "srv"))
            (root / "etc").mkdir()
            for name in ("passwd", "group"):
                shutil.copy(f"/etc/{name}", root / "etc" / name)
            (root / "etc/fstab").write_text(
                f"UUID={ROOT_UUID} / ext4 defaults 0 1\nUUID={SRV_UUID} /srv ext4 defaults 0 2\n"
            )
            (root / "etc/hostname").write_text("killed-often\n")
            _fill(root, rng, "var/data")
            _fill(root / "srv", rng, "www")
            os.chown(root / "srv/www/d1/f3", 1001, 1001)
            run = rescue(settings, "backup", "--full")
            assert run.code == 0, run.err
            tree = work / "tree"
            sh("cp", "-a", str(root), str(tree))
        finally:
            sh("umount", "-R", str(root))
    folder = work / "recover"
    folder.mkdir()
    recovery = scenario_settings(folder / "rescue.toml", dest, root, folder / "cache")
    yield Source(work, tree, recovery)


def _start(source: Source, folder: Path, plan: Path) -> subprocess.Popen[str]:
    argv = recover_argv(source.settings, folder, "--plan", str(plan))
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _no_mounts(target_root: Path, what: str) -> None:
    """The guardian unmounts after a SIGKILL: give it a moment."""
    deadline = time.monotonic() + 20
    while mounts_below(target_root) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mounts_below(target_root) == [], f"{what}: still mounted"


def _assert_recovered(source: Source, image: Path, view: Path) -> None:
    """The target disk holds the source's trees, owners, modes and bytes."""
    with attached_image(image, read_only=True) as (_, parts):
        view.mkdir(exist_ok=True)
        sh("mount", "-o", "ro", parts[0], str(view))
        try:
            sh("mount", "-o", "ro", parts[1], str(view / "srv"))
            try:
                differences = [
                    d
                    for d in compare_trees(source.tree, view)
                    if not any(f" {own}" in d for own in OWN)
                ]
                assert differences == [], "\n".join(differences)
            finally:
                sh("umount", str(view / "srv"))
        finally:
            sh("umount", str(view))


def _finish(source: Source, folder: Path, plan: Path, what: str) -> None:
    """--resume the killed run, or start anew when it died before its state file."""
    if recovery_state(folder):
        done = run_recover(source.settings, folder, "--resume")
    else:
        done = run_recover(source.settings, folder, "--plan", str(plan))
    assert done.returncode == 0, f"after {what}: {done.stdout[-2000:]}{done.stderr}"


def _timed_recovery(source: Source, folder: Path, plan: Path) -> float:
    began = time.monotonic()
    done = run_recover(source.settings, folder, "--plan", str(plan))
    assert done.returncode == 0, done.stdout + done.stderr
    return time.monotonic() - began


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["TERM", "KILL"])
def test_recoveries_killed_leave_nothing_running_nor_mounted_and_resume(
    source: Source, tmp_path: Path, signum: int, host_identity: None
) -> None:
    image = tmp_path / "target.img"
    name = signal.Signals(signum).name
    with loop_disk(image, "160M"):
        first = tmp_path / "first"
        first.mkdir()
        duration = _timed_recovery(source, first, write_plan(first, source.settings, [image]))
        _assert_recovered(source, image, tmp_path / "view")
        rng = random.Random(f"{SEED}-{name}")
        caught = 0
        for n, point in enumerate(sorted(rng.uniform(0.2, duration) for _ in range(POINTS))):
            folder = tmp_path / f"run{n}"
            folder.mkdir()
            plan = write_plan(folder, source.settings, [image])
            proc = _start(source, folder, plan)
            children, err = kill_at(proc, point, signum)
            what = f"recover, {name} at {point:.2f} s"
            assert_all_gone(children, what)
            _no_mounts(folder / "target", what)
            if proc.returncode == 0:
                continue  # it finished first
            caught += bool(children)
            if signum == signal.SIGTERM:
                assert proc.returncode == 143, f"{what}: exit {proc.returncode}: {err}"
                assert "rescue: stopped by SIGTERM" in err and err.count("\n") == 1, err
            _finish(source, folder, plan, what)
            _no_mounts(folder / "target", what)
            _assert_recovered(source, image, tmp_path / "view")
    assert caught >= POINTS // 2, f"only {caught} of {POINTS} kills caught a child at work"
