"""Exact times of what the records cannot describe by themselves, through real backups and
restores: the restored root directory's own times (and mode), the excluded mount points a
recovery recreates, and rescue's own files written during the backup (var/lib/rescue).

The source is a small tree in a directory (the test machine's ext4 keeps nanoseconds), backed
up once with the real duplicity to a file destination. The recovery part runs the real steps
choose_backup, load_manifest, restore_full, recreate_excluded and replay_metadata into a
directory that stands for a freshly made root file system (it exists before the restore, with
its own mode and time, as mkfs leaves one), so the restore merges into it.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from clirun import rescue, write_settings
from manifests import first_shape

from rescue.exact.deep import compare
from rescue.exact.records import SIDECAR_REL
from rescue.exact.records import read as read_records
from rescue.exact.replay import replay
from rescue.exact.sizes import SIZES_REL
from rescue.prompts import Answers
from rescue.recovery import manifest
from rescue.steps import (
    choose_backup,
    load_manifest,
    recreate_excluded,
    replay_metadata,
    restore_full,
)
from rescue.steps.context import Context, Options

pytestmark = pytest.mark.slow

ROOT_NS = 1_700_000_000_123_456_789
# excluded directory -> (mode, mtime in ns); mnt/data lies below another excluded one
EXCLUDED = {
    "tmp": (0o1777, 1_690_000_000_111_111_111),
    "dev": (0o755, 1_690_000_001_222_222_222),
    "proc": (0o555, 1_690_000_002_333_333_333),
    "mnt": (0o750, 1_690_000_003_444_444_444),
    "mnt/data": (0o700, 1_690_000_004_555_555_555),
}
OWN = (manifest.MANIFEST_REL, SIDECAR_REL, SIZES_REL, "var/lib/rescue")


@dataclass
class Source:
    settings: Path
    root: Path
    own: dict[str, int]  # rescue's own files: their mtimes after the backup


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    work = tmp_path_factory.mktemp("times")
    root = work / "src"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("web1\n")
    (root / "var/lib/rescue").mkdir(parents=True)  # as after an earlier backup
    for rel in EXCLUDED:
        (root / rel).mkdir()
        (root / rel / "scratch").write_text("excluded content\n")
    for rel, (mode, mtime) in sorted(EXCLUDED.items(), key=lambda item: -len(item[0])):
        os.chmod(root / rel, mode)
        os.utime(root / rel, ns=(mtime, mtime))
    os.utime(root / "etc", ns=(ROOT_NS, ROOT_NS + 3))
    os.chmod(root, 0o750)
    os.utime(root, ns=(ROOT_NS + 7, ROOT_NS))
    settings = write_settings(
        work / "rescue.toml",
        {
            "destination": {"method": "file", "path": str(work / "dest")},
            "encryption": {"mode": "none"},
            "selection": {"root": str(root), "exclude": [str(root / rel) for rel in EXCLUDED]},
            "duplicity": {"archive_dir": str(work / "cache")},
        },
    )
    with entry_made_after_the_walk(root):
        run = rescue(settings, "backup", "--full")
    assert run.code == 0, run.err
    own = {rel: (root / rel).lstat().st_mtime_ns for rel in OWN}
    listed = rescue(settings, "files", "/", "--json")
    stored = next(e for e in listed.json() if e["path"] == ".")
    assert stored["mtime"] != "2023-11-14T22:13:20+00:00", "the backup should hold a newer root"
    yield Source(settings, root, own)


@contextmanager
def entry_made_after_the_walk(root: Path) -> Iterator[None]:
    """Add an entry to root once the records are written and before duplicity reads root (it
    starts in a new process, about a second later): the backup then holds a root directory
    newer than its record, as a live system's can be. The record is the time to put back."""
    manifest_file = root / manifest.MANIFEST_REL
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set() and not manifest_file.exists():
            time.sleep(0.002)
        if not stop.is_set():
            (root / "late").mkdir()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()


def test_the_root_and_rescues_own_files_come_back_with_their_exact_times(
    source: Source, tmp_path: Path
) -> None:
    dest = tmp_path / "whole"
    run = rescue(source.settings, "restore", "/", "--to", str(dest))
    assert run.code == 0, run.out + run.err
    assert "changed between" not in run.out + run.err
    assert dest.stat().st_mtime_ns == ROOT_NS  # as recorded, not the backup's newer second
    assert (dest / "late").is_dir()
    for rel, mtime in source.own.items():
        assert mtime % 10**9 == 0, f"{rel} was left with a sub-second time"
        assert (dest / rel).lstat().st_mtime_ns == mtime, rel
    verify = rescue(source.settings, "verify", "--deep", "/", "--restored", str(dest))
    assert verify.code == 0, verify.out + verify.err
    assert "0 difference(s)" in verify.out and "changed between" not in verify.out

    # One nanosecond and one mode bit off on the root itself: verify --deep names both.
    # The replay alone, on the restored copy: the top's recorded owner, mode and times win
    # over whatever the directory it lands in had (a merge target's, an earlier copy's).
    os.chown(dest, 1001, 1001)
    os.chmod(dest, 0o700)
    os.utime(dest, ns=(0, 5))
    done = replay(read_records(source.root / SIDECAR_REL)[1], "", dest)
    assert (done.changed, done.failed) == (0, {})
    got = dest.stat()
    assert (got.st_uid, got.st_gid, stat.S_IMODE(got.st_mode)) == (0, 0, 0o750)
    assert (got.st_atime_ns, got.st_mtime_ns) == (ROOT_NS + 7, ROOT_NS)

    # A root a second off is compared too (elsewhere that means "changed since the records").
    os.utime(dest, ns=(ROOT_NS, ROOT_NS + 10**9))
    os.chmod(dest, 0o755)
    verify = rescue(source.settings, "verify", "--deep", "/", "--restored", str(dest))
    assert verify.code == 43, verify.out + verify.err
    assert (
        "DIFFERENCE: mtime differs: .: expected 2023-11-14 22:13:20.123456789 UTC, "
        "actual 2023-11-14 22:13:21.123456789 UTC" in verify.out
    ), verify.out
    assert "DIFFERENCE: mode differs: .: expected 0750, actual 0755" in verify.out


def test_a_recovery_puts_back_the_roots_and_the_excluded_mount_points_times(
    source: Source, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    (target / "etc").mkdir(parents=True)  # fresh file systems' roots: mode 0755, this moment
    lines: list[str] = []
    options = Options(
        work_dir=str(tmp_path / "work"),
        target_root=str(target),
        settings_file=str(source.settings),
        unattended=True,
    )
    ctx = Context(options, Answers({}, interactive=False), echo=lines.append)
    # etc/ stands for a file system of its own (as /boot often is): restored by a run of its
    # own, merged into its root directory, while the root's run leaves it out by pattern
    ctx.facts.mounts = [{"device": "none", "mountpoint": "/etc", "type": "none"}]
    for step in (choose_backup, load_manifest, restore_full, recreate_excluded, replay_metadata):
        lines += step.run(ctx)
    assert not ctx.facts.warnings, ctx.facts.warnings
    assert not any("changed between" in line for line in lines), lines

    root = target.stat()
    assert (root.st_mtime_ns, stat.S_IMODE(root.st_mode)) == (ROOT_NS, 0o750)
    assert (target / "etc").stat().st_mtime_ns == ROOT_NS + 3
    assert (target / "etc/hostname").read_text() == "web1\n"
    for rel, (mode, mtime) in EXCLUDED.items():
        got = (target / rel).stat()
        assert (stat.S_IMODE(got.st_mode), got.st_mtime_ns) == (mode, mtime), rel
        assert not (target / rel / "scratch").exists()  # excluded content stays out
    for rel, mtime in source.own.items():
        assert (target / rel).lstat().st_mtime_ns == mtime, rel
    deep = compare(ctx.records(), "", target, skip={rel for rel in EXCLUDED})
    assert deep.differences == [] and deep.changed == 0


def test_a_manifest_without_recorded_times_still_recreates_the_excluded_dirs(
    tmp_path: Path,
) -> None:
    """A manifest of an older rescue (no times, no kernels) loads, and recovery recreates its
    excluded directories with their modes, at the time of the recovery."""
    old = tmp_path / "manifest.json"
    old.write_text(json.dumps(first_shape()))
    target = tmp_path / "target"
    target.mkdir()
    ctx = Context(
        Options(work_dir=str(tmp_path / "work"), target_root=str(target)),
        Answers({}, interactive=False),
        echo=lambda _: None,
    )
    ctx.facts.manifest_file = str(old)
    assert ctx.manifest().host.kernel == "5.10.0-9"
    assert ctx.manifest().host.kernels == []
    assert recreate_excluded.run(ctx) == ["/tmp 1777 0:0", "/proc 0555 0:0", "/mnt 0750 1001:1001"]
    assert stat.S_IMODE((target / "tmp").stat().st_mode) == 0o1777
