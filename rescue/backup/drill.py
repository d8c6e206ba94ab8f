"""The restore drill: prove that a backup comes back byte for byte.

Without settings it is a self-contained demonstration on a generated tree and a temporary local
destination: full backup, a change, an incremental, status, a whole restore and a one-file restore
as of the earlier set, each compared with what was backed up. With settings, it restores the
configured backup into a scratch directory and compares it with the live files that have not
changed since that backup. Either way the report says "identical" or lists the differences.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rescue.backup import fleet, history
from rescue.backup.engine import Engine
from rescue.backup.listing import relative_path
from rescue.backup.results import ProgressCallback
from rescue.backup.sampletree import make_sample_tree, mutate_sample_tree
from rescue.backup.sets import Status
from rescue.backup.treecompare import compare_file, compare_trees
from rescue.config import Settings
from rescue.placement.guard import fresh
from rescue.placement.scratch import private_dir
from rescue.process import execute, gpghome

T = TypeVar("T")

log = logging.getLogger("rescue.backup.drill")


@dataclass
class DrillReport:
    destination: str
    sets: list[dict[str, Any]] = field(default_factory=list)  # BackupSet.as_dict() rows
    source_bytes: int = 0
    bytes_written: int = 0
    restored_files: int = 0
    restored_bytes: int = 0
    phases: list[tuple[str, float]] = field(default_factory=list)
    checks: list[tuple[str, list[str]]] = field(default_factory=list)
    skipped_changed: int = 0
    compared_bytes: int = 0
    restore_seconds: float = 0.0

    @property
    def identical(self) -> bool:
        return all(not diffs for _, diffs in self.checks)

    def timed(self, phase: str, work: Callable[[], T]) -> T:
        start = time.monotonic()
        result = work()
        self.phases.append((phase, time.monotonic() - start))
        return result

    def as_dict(self) -> dict[str, object]:
        return {
            "destination": self.destination,
            "sets": self.sets,
            "source_bytes": self.source_bytes,
            "bytes_written": self.bytes_written,
            "restored_files": self.restored_files,
            "restored_bytes": self.restored_bytes,
            "phases": [{"phase": p, "seconds": round(s, 3)} for p, s in self.phases],
            "checks": [{"check": c, "identical": not d, "differences": d} for c, d in self.checks],
            "skipped_changed_since_backup": self.skipped_changed,
            "compared_bytes": self.compared_bytes,
            "restore_seconds": round(self.restore_seconds, 3),
            "identical": self.identical,
        }


@contextmanager
def _workdir(keep: bool) -> Iterator[Path]:
    if keep:
        yield Path(tempfile.mkdtemp(prefix="rescue-drill-"))
        return
    with private_dir("rescue-drill-") as path:
        yield path


def _copy_tree(src: Path, dst: Path) -> None:
    """cp -a keeps owners, modes, links and mtimes; shutil.copytree does not keep owners."""
    result = execute.run(["cp", "-a", str(src), str(dst)])
    if result.returncode:
        raise OSError(f"cp -a {src} {dst} failed: {result.output}")


def demo_settings(work: Path) -> Settings:
    """Settings for the self-contained drill: symmetric encryption, a local destination."""
    passphrase = work / "passphrase"
    passphrase.write_text(secrets.token_urlsafe(24))
    passphrase.chmod(0o600)
    return Settings.model_validate(
        {
            "destination": {"method": "file", "path": str(work / "destination")},
            "encryption": {"mode": "symmetric", "passphrase_file": str(passphrase)},
            "selection": {"root": str(work / "source"), "include": [str(work / "source")]},
            "duplicity": {"archive_dir": str(work / "cache")},
        }
    )


def _set_rows(status: Status) -> list[dict[str, object]]:
    return [s.as_dict() for s in status.sets]


@contextmanager
def own_gnupg(engine: Engine) -> Iterator[None]:
    """A throwaway GnuPG home for the drill's own gpg (duplicity's, symmetric or none), and
    the gpg-agent that gpg starts there ended with it: a drill must leave no daemon behind.
    gpg mode needs the configured keyring (its secret key), so it is left as it is."""
    if engine.settings.encryption.mode == "gpg":
        yield
        return
    with gpghome.throwaway_home("rescue-drill-gnupg-") as home:
        engine.gnupg_home = str(home)
        try:
            yield
        finally:
            engine.gnupg_home = None


def run_demo(progress: ProgressCallback | None = None, keep: bool = False) -> DrillReport:
    """The built-in drill on a generated tree; see the module docstring."""
    with _workdir(keep) as work:
        settings = demo_settings(work)
        source = work / "source"
        engine = Engine(settings, progress)
        with own_gnupg(engine):
            return _demo(engine, work, source)


def _demo(engine: Engine, work: Path, source: Path) -> DrillReport:
    """The demonstration itself, run with the drill's own GnuPG home."""
    report = DrillReport(destination=str(work / "destination"))
    report.timed("generate sample tree", lambda: make_sample_tree(source))
    snapshot = work / "as-of-full"
    full = report.timed("full backup", lambda: engine.backup("full"))
    report.timed("keep a copy of the tree as of the full", lambda: _copy_tree(source, snapshot))
    changed = report.timed("change the tree", lambda: mutate_sample_tree(source))
    time.sleep(1)  # duplicity's set times have one-second resolution
    inc = report.timed("incremental backup", lambda: engine.backup("incremental"))
    status = report.timed("status", engine.status)
    report.sets = _set_rows(status)
    report.source_bytes = full.source_bytes
    report.bytes_written = full.bytes_written + inc.bytes_written

    whole = report.timed(
        "restore everything", lambda: engine.restore("/", fresh(work / "restored"))
    )
    report.restored_files, report.restored_bytes = whole.files, whole.bytes
    report.restore_seconds = report.phases[-1][1]
    diffs = report.timed("compare", lambda: compare_trees(source, work / "restored"))
    report.compared_bytes = whole.bytes
    report.checks.append(("whole tree as of the incremental", diffs))

    one = next(p for p in changed if (snapshot / p).is_file())
    target = work / "one-file"
    report.timed(
        "restore one file as of the full",
        lambda: engine.restore(str(source / one), fresh(target), status.sets[0].time),
    )
    report.checks.append((f"{one} as of the full", compare_file(snapshot / one, target, one)))
    return report


def run_configured(
    settings: Settings,
    path: str = "/",
    progress: ProgressCallback | None = None,
    keep: bool = False,
    scratch: Path | None = None,
) -> DrillReport:
    """Restore the configured backup to scratch and compare it with the unchanged live files.

    Every run is recorded in the history (rescue.backup.history.Drill): its outcome, the restore's
    time and the bytes compared, or the error line of a drill that could not finish."""
    engine = Engine(settings, progress)
    record = history.Drill(time.time(), 0.0, "failure", path)
    with history.recorded(engine.archive_dir, record):
        with own_gnupg(engine):
            report = _configured(engine, path, keep, scratch, record)
        record.outcome = "identical" if report.identical else "different"
        record.differences = sum(len(d) for _, d in report.checks)
    fleet.publish_drill(settings, record.outcome, record.differences, record.set_time)
    return report


def _configured(
    engine: Engine, path: str, keep: bool, scratch: Path | None, record: history.Drill
) -> DrillReport:
    settings = engine.settings
    root = Path(str(settings.selection.root))
    rel = relative_path(path, settings)
    with _workdir(keep) if scratch is None else _given(scratch) as work:
        status = engine.status()
        report = DrillReport(destination=status.destination, sets=_set_rows(status))
        newest = status.sets[-1].time if status.sets else None
        restored = work / "restored"
        summary = report.timed("restore", lambda: engine.restore(path, fresh(restored), newest))
        report.restored_files, report.restored_bytes = summary.files, summary.bytes
        report.restore_seconds = record.restore_seconds = report.phases[-1][1]
        record.set_time = summary.time
        # what the backup holds of path, and what its sets took at the destination (as far
        # as this host's history knows their sizes)
        report.source_bytes = summary.bytes
        report.bytes_written = sum(s.bytes or 0 for s in status.sets)
        live = root / rel if rel else root
        diffs = report.timed(
            "compare", lambda: _compare_unchanged(live, restored, summary.time, report)
        )
        record.compared_bytes = report.compared_bytes
        report.checks.append((f"{path} as of {when(summary.time)}", diffs))
        return report


def when(timestamp: float) -> str:
    """A set's time as people read it in a report line: 2026-12-06 10:00:00 +0000."""
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(timestamp))


@contextmanager
def _given(path: Path) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    yield path


def _compare_unchanged(
    live: Path, restored: Path, backup_time: int, report: DrillReport
) -> list[str]:
    """Compare each restored entry with its live twin, unless the live one changed since."""
    if not restored.is_dir() or restored.is_symlink():
        return compare_file(live, restored, live.name)
    diffs: list[str] = []
    for dirpath, dirnames, filenames in os.walk(restored):
        for name in [*dirnames, *filenames]:
            actual = Path(dirpath) / name
            rel = str(actual.relative_to(restored))
            expected = live / rel
            try:
                st = expected.lstat()
            except FileNotFoundError:
                report.skipped_changed += 1  # deleted since the backup
                continue
            if max(st.st_mtime, st.st_ctime) >= backup_time:
                report.skipped_changed += 1
                continue
            if not expected.is_dir() or expected.is_symlink():
                diffs += compare_file(expected, actual, rel)
                if stat.S_ISREG(st.st_mode):
                    report.compared_bytes += st.st_size
    return diffs
