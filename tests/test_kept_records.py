"""The records of each set kept in the archive dir (rescue.backup.keptrecords): a restore of one
file makes one duplicity run, not two, and still puts back what duplicity drops.

Real duplicity with symmetric encryption to a file destination. What the records put back is
seen in the restored file's mtime, which duplicity alone keeps in whole seconds only; how many
duplicity runs a restore made is read from rescue's own log ("run: .../duplicity restore ...").
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from clirun import rescue, symmetric_settings

from rescue.backup.cache import cache_name

pytestmark = pytest.mark.slow

PASSPHRASE = "kept records, a test passphrase"
STAMP_NS = 1_700_000_000_123_456_789  # a time with nanoseconds: only the records bring them back
OWN = Path("var/lib/rescue")


def _source(root: Path) -> Path:
    (root / "data/sub").mkdir(parents=True)
    for n in range(20):
        (root / f"data/sub/f{n}").write_bytes(os.urandom(4096))
    target = root / "data/sub/f7"
    os.utime(target, ns=(STAMP_NS, STAMP_NS))
    return target


def _entries(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "rescue-records" / cache_name(f"file://{tmp_path / 'dest'}")


def _restores_run(log: Path, since: int) -> int:
    """How many duplicity restores the log shows after its first `since` bytes."""
    text = log.read_text()[since:]
    return sum(1 for line in text.splitlines() if "run: " in line and " restore " in line)


def _restore_one(config: Path, file: Path, to: Path) -> int:
    """Restore file to `to` and return how many duplicity restores that took."""
    log = config.parent / "rescue.log"
    since = len(log.read_text())
    run = rescue(config, "restore", str(file), "--to", str(to))
    assert run.code == 0, run.err
    assert to.read_bytes() == file.read_bytes()
    assert to.stat().st_mtime_ns == STAMP_NS, "the records were not replayed"
    return _restores_run(log, since)


def test_a_backup_keeps_its_records_and_a_one_file_restore_runs_duplicity_once(
    tmp_path: Path,
) -> None:
    source = tmp_path / "src"
    file = _source(source)
    config = symmetric_settings(tmp_path, source, _file_dest(tmp_path), PASSPHRASE)
    assert rescue(config, "backup", "--full").code == 0
    (entry,) = list(_entries(tmp_path).iterdir())
    assert sorted(p.name for p in entry.iterdir()) == [
        "manifest.json",
        "metadata.jsonl.gz",
        "sizes.json.gz",
    ]
    for kept in entry.iterdir():  # exactly what the set holds: the files the backup wrote
        assert kept.read_bytes() == (source / OWN / kept.name).read_bytes()
    assert _restore_one(config, file, tmp_path / "one") == 1


def test_without_the_kept_copy_the_records_are_fetched_once_and_kept(tmp_path: Path) -> None:
    """As on another host, or after the archive dir was lost: the first restore fetches the
    records from the set (a second duplicity run), the next one finds them kept."""
    source = tmp_path / "src"
    file = _source(source)
    config = symmetric_settings(tmp_path, source, _file_dest(tmp_path), PASSPHRASE)
    assert rescue(config, "backup", "--full").code == 0
    folder = _entries(tmp_path)
    before = {p.name: p.read_bytes() for p in next(folder.iterdir()).iterdir()}
    for entry in folder.iterdir():
        for kept in entry.iterdir():
            kept.unlink()
        entry.rmdir()
    assert _restore_one(config, file, tmp_path / "first") == 2
    (entry,) = list(folder.iterdir())
    assert {p.name: p.read_bytes() for p in entry.iterdir()} == before
    assert _restore_one(config, file, tmp_path / "second") == 1


def test_retention_drops_the_records_of_the_sets_it_removes(tmp_path: Path) -> None:
    source = tmp_path / "src"
    _source(source)
    config = symmetric_settings(tmp_path, source, _file_dest(tmp_path), PASSPHRASE)
    text = config.read_text() + "[schedule]\nkeep_full = 1\n"
    config.write_text(text)
    assert rescue(config, "backup", "--full").code == 0
    (first,) = [p.name for p in _entries(tmp_path).iterdir()]
    time.sleep(1.1)  # duplicity's set times are whole seconds
    run = rescue(config, "backup", "--full")
    assert run.code == 0, run.err
    status = rescue(config, "status", "--json")
    assert status.code == 0, status.err
    times = [str(s["time"]) for s in status.json()["sets"]]
    assert len(times) == 1 and times[0] != first
    assert [p.name for p in _entries(tmp_path).iterdir()] == times


def _file_dest(tmp_path: Path) -> dict[str, object]:
    return {"method": "file", "path": str(tmp_path / "dest")}
