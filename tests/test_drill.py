"""The drill: the README's first command, and the restore-and-compare an admin runs."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from clirun import rescue
from test_roundtrip import settings_for

from rescue.backup.drill import DrillReport, _compare_unchanged

pytestmark = pytest.mark.slow


def test_builtin_drill_without_settings(tmp_path: Path) -> None:
    r = rescue(tmp_path / "absent.toml", "drill", "--json")
    assert r.code == 0, r.err
    report = r.json()
    assert report["identical"] is True
    assert [s["kind"] for s in report["sets"]] == ["full", "incremental"]
    assert [c["check"].split(" as of ")[-1] for c in report["checks"]][-1] == "the full"
    assert all(c["identical"] for c in report["checks"])
    phases = {p["phase"] for p in report["phases"]}
    assert {"full backup", "incremental backup", "restore everything", "compare"} <= phases
    assert report["source_bytes"] > 1_000_000
    assert report["restored_files"] > 20


def test_builtin_drill_prints_a_readable_report(tmp_path: Path) -> None:
    r = rescue(tmp_path / "absent.toml", "drill")
    assert r.code == 0, r.err
    assert "RESULT: identical" in r.out
    assert "incremental" in r.out and "restore everything" in r.out


def test_drill_against_the_configured_backup(tmp_path: Path, sample_tree: Path) -> None:
    config = settings_for("file", tmp_path, sample_tree)
    time.sleep(1)
    assert rescue(config, "backup").code == 0
    r = rescue(config, "drill", "--json", "--scratch", str(tmp_path / "scratch"))
    assert r.code == 0, r.err
    report = r.json()
    assert report["identical"] is True
    assert report["restored_files"] > 20
    # a live file changed after the backup is not a fault of the backup
    (sample_tree / "etc/hosts").write_text("changed since\n")
    r = rescue(config, "drill", "--json", "--path", "etc")
    assert r.code == 0, r.err
    assert r.json()["skipped_changed_since_backup"] >= 1


def test_compare_unchanged_reports_a_real_difference(tmp_path: Path, sample_tree: Path) -> None:
    restored = tmp_path / "restored"
    subprocess.run(["cp", "-a", str(sample_tree), str(restored)], check=True)
    victim = restored / "etc/hosts"
    data = bytearray(victim.read_bytes())
    data[0] ^= 0xFF
    stat = victim.stat()
    victim.write_bytes(bytes(data))
    import os

    os.utime(victim, (stat.st_atime, stat.st_mtime))
    report = DrillReport(destination="x")
    diffs = _compare_unchanged(sample_tree, restored, int(time.time()) + 60, report)
    assert len(diffs) == 1 and "etc/hosts" in diffs[0]
