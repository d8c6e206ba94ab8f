"""The duplicity wrapper: backup, status, listing, versions, restore and retention.

duplicity is driven through its command line (its Python internals are not an API) and read
through `--log-fd`. Every run goes through execute.run, so secrets stay in the environment, and
every failure is turned into one RescueError by `failures.classify`.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from rescue import duplog, execute, history
from rescue.config import Settings
from rescue.destinations import Target, prepare
from rescue.errors import (
    MissingVolumeError,
    NoBackupError,
    PathNotInBackupError,
    RestoreTargetExistsError,
)
from rescue.failures import classify
from rescue.lock import exclusive
from rescue.placement import merge_into, staging_dir
from rescue.selection import filter_args
from rescue.timespec import from_duplicity_time, iso

log = logging.getLogger("rescue.engine")


def _duplicity() -> str:
    """The duplicity installed beside this Python (the pinned one), else the one on PATH."""
    beside = Path(sys.executable).parent / "duplicity"
    return str(beside) if beside.exists() else "duplicity"


DUPLICITY = _duplicity()
FULL_PERIODS = {"daily": 86400, "weekly": 7 * 86400, "monthly": 30 * 86400}

Kind = Literal["full", "incremental"]


@dataclass
class BackupSet:
    kind: Kind
    time: int
    volumes: int
    encrypted: bool
    chain: int
    bytes: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "date": iso(self.time)}


@dataclass
class Chain:
    index: int
    sets: list[BackupSet]

    @property
    def start(self) -> int:
        return self.sets[0].time

    @property
    def end(self) -> int:
        return self.sets[-1].time


@dataclass
class Status:
    destination: str
    chains: list[Chain]
    orphaned: int = 0
    incomplete: int = 0
    damaged: int = 0  # chains duplicity lists with no usable set: their volumes are gone

    @property
    def sets(self) -> list[BackupSet]:
        return [s for c in self.chains for s in c.sets]

    def last_full(self) -> BackupSet | None:
        fulls = [s for s in self.sets if s.kind == "full"]
        return fulls[-1] if fulls else None

    def as_dict(self) -> dict[str, object]:
        return {
            "destination": self.destination,
            "chains": [
                {"chain": c.index, "start": iso(c.start), "end": iso(c.end), "sets": len(c.sets)}
                for c in self.chains
            ],
            "sets": [s.as_dict() for s in self.sets],
            "orphaned_sets": self.orphaned,
            "incomplete_sets": self.incomplete,
            "damaged_chains": self.damaged,
        }


@dataclass
class BackupSummary:
    kind: Kind
    reason: str
    time: int
    destination: str
    source_files: int
    source_bytes: int
    files_changed: int
    bytes_written: int
    seconds: float
    removed_chains: int = 0

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "date": iso(self.time)}


@dataclass
class FileEntry:
    path: str
    mtime: int
    type: str


@dataclass
class Version:
    set: BackupSet
    mtime: int | None
    type: str | None
    changed: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "date": iso(self.set.time),
            "set_type": self.set.kind,
            "exists": self.type is not None,
            "changed": self.changed,
            "mtime": iso(self.mtime) if self.mtime is not None else None,
            "type": self.type,
        }


@dataclass
class RestoreSummary:
    path: str
    destination: str
    time: int
    files: int
    bytes: int
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "date": iso(self.time)}


@dataclass
class Progress:
    """What a long run has done so far; the CLI draws it, the engine fills it in."""

    phase: str
    files: int = 0
    bytes: int = 0
    fraction: float | None = None
    current: str = ""
    started: float = field(default_factory=time.monotonic)


ProgressCallback = Callable[[Progress], None]


class Engine:
    """One configured backup: every duplicity action against its destination."""

    def __init__(self, settings: Settings, progress: ProgressCallback | None = None) -> None:
        self.settings = settings
        self.progress = progress
        self.archive_dir = Path(settings.duplicity.archive_dir)

    # -- running duplicity -------------------------------------------------------------------

    def _encryption(self) -> tuple[list[str], dict[str, str], dict[str, str]]:
        enc = self.settings.encryption
        if enc.mode == "none":
            return ["--no-encryption"], {}, {}
        env = {"GNUPGHOME": str(enc.gnupg_home)} if enc.gnupg_home else {}
        # An empty PASSPHRASE keeps duplicity from prompting for a key that has none.
        secret = {"PASSPHRASE": self.settings.passphrase() or ""}
        args = ["--encrypt-key", enc.gpg_key] if enc.mode == "gpg" else []
        return args, env, secret

    def _run(
        self,
        action: list[str],
        target: Target,
        *,
        verbosity: str = "notice",
        on_record: Callable[[duplog.Record], None] | None = None,
        ok_codes: tuple[int, ...] = (0,),
    ) -> duplog.LogParser:
        enc_args, env, secret_env = self._encryption()
        self.archive_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        argv = [
            DUPLICITY,
            *action,
            execute.LOG_FD_ARG,
            "-v",
            verbosity,
            "--archive-dir",
            str(self.archive_dir),
            "--num-retries",
            str(self.settings.duplicity.retries),
            *enc_args,
            *target.options,
        ]
        parser = duplog.LogParser(on_record)
        result = execute.run(
            argv,
            env=env,
            secret_env={**secret_env, **target.secret_env},
            on_logfd=parser.feed,
        )
        parser.close()
        if result.returncode not in ok_codes:
            raise classify(result.returncode, parser.errors(), result.output, target.display)
        return parser

    @contextmanager
    def _target(self) -> Iterator[Target]:
        with prepare(self.settings) as target:
            yield target

    # -- status ------------------------------------------------------------------------------

    def status(self) -> Status:
        with self._target() as target:
            return self._status(target)

    def _status(self, target: Target) -> Status:
        parser = self._run(["collection-status", target.url], target)
        records = [r for r in parser.records if r.code == duplog.INFO_COLLECTION_STATUS]
        status = parse_collection_status(records[-1].extra if records else [], target.display)
        sizes = history.set_sizes(self.archive_dir)
        for s in status.sets:
            s.bytes = sizes.get(s.time)
        return status

    # -- backup ------------------------------------------------------------------------------

    def backup(self, mode: Literal["full", "incremental", "auto"] = "auto") -> BackupSummary:
        with exclusive(self.archive_dir, "backup"), self._target() as target:
            status = self._status(target)
            kind, reason = decide_kind(mode, status, self.settings.schedule.full_every)
            root = str(self.settings.selection.root)
            volsize = ["--volsize", str(self.settings.duplicity.volsize)]
            action = [kind, *volsize, *self._selection_args(), root, target.url]
            progress = Progress(phase=f"{kind} backup")
            parser = self._run(
                action,
                target,
                verbosity="info" if self.progress else "notice",
                on_record=self._backup_progress(progress, root) if self.progress else None,
            )
            stats = next(
                (duplog.parse_statistics(r) for r in parser.records if duplog.is_statistics(r)),
                {},
            )
            after = self._status(target)
            newest = after.sets[-1] if after.sets else None
            summary = BackupSummary(
                kind=kind,
                reason=reason,
                time=newest.time if newest else int(time.time()),
                destination=target.display,
                source_files=int(stats.get("SourceFiles", 0)),
                source_bytes=int(stats.get("SourceFileSize", 0)),
                files_changed=int(
                    stats.get("NewFiles", 0)
                    + stats.get("ChangedFiles", 0)
                    + stats.get("DeletedFiles", 0)
                ),
                bytes_written=int(stats.get("TotalDestinationSizeChange", 0)),
                seconds=float(stats.get("ElapsedTime", 0.0)),
            )
            history.record_backup(self.archive_dir, summary.time, kind, summary.bytes_written)
            if kind == "full":
                summary.removed_chains = self._retain(target, after)
            return summary

    def _selection_args(self) -> list[str]:
        dest = self.settings.destination
        extra = [str(self.archive_dir)]
        if dest.method == "file":
            extra.append(dest.path)
        return filter_args(self.settings.selection, extra)

    def _backup_progress(self, progress: Progress, root: str) -> Callable[[duplog.Record], None]:
        changed = (duplog.INFO_DIFF_NEW, duplog.INFO_DIFF_CHANGED, duplog.INFO_DIFF_DELETED)

        def on_record(record: duplog.Record) -> None:
            if record.level != "INFO" or record.code not in changed or not record.extra:
                return
            rel = duplog.unescape_path(record.extra[0])
            progress.files += 1
            progress.current = rel
            try:
                st = os.lstat(os.path.join(root, rel))
                progress.bytes += st.st_size if not os.path.isdir(os.path.join(root, rel)) else 0
            except OSError:
                pass
            assert self.progress is not None
            self.progress(progress)

        return on_record

    def _retain(self, target: Target, status: Status) -> int:
        """Keep the newest keep_full chains; called only after a successful full."""
        keep = self.settings.schedule.keep_full
        excess = max(0, len(status.chains) - keep)
        if excess:
            self._run(["remove-all-but-n-full", str(keep), "--force", target.url], target)
            log.info("retention: removed %d chain(s), kept %d", excess, keep)
        return excess

    def remove_all_but(self, keep: int) -> int:
        with exclusive(self.archive_dir, "retention"), self._target() as target:
            status = self._status(target)
            excess = max(0, len(status.chains) - keep)
            if excess:
                self._run(["remove-all-but-n-full", str(keep), "--force", target.url], target)
            return excess

    # -- listing -----------------------------------------------------------------------------

    def list_files(self, at: int | None = None, path: str | None = None) -> list[FileEntry]:
        with self._target() as target:
            status = self._status(target)
            backup_set = pick_set(status, at)
            return self._list(target, backup_set.time, path)

    def _list(self, target: Target, at: int, path: str | None) -> list[FileEntry]:
        parser = self._run(["list-current-files", "-t", str(at), target.url], target)
        prefix = relative_path(path, self.settings) if path else ""
        entries = []
        for r in parser.records:
            if r.level != "INFO" or r.code != duplog.INFO_FILE_LIST or not r.extra:
                continue
            stamp, rest = r.extra[0].split(" ", 1)
            quoted, kind = rest.rsplit(" ", 1)
            rel = duplog.unescape_path(quoted)
            if prefix and rel != prefix and not rel.startswith(prefix.rstrip("/") + "/"):
                continue
            entries.append(FileEntry(rel, from_duplicity_time(stamp), kind))
        return entries

    def versions(self, path: str) -> list[Version]:
        """Every set at which path can be restored, and whether it changed in that set."""
        rel = relative_path(path, self.settings)
        with self._target() as target:
            status = self._status(target)
            if not status.sets:
                raise NoBackupError(f"no backup found at {target.display}")
            result: list[Version] = []
            previous: FileEntry | None = None
            for backup_set in status.sets:
                entry = next(
                    (e for e in self._list(target, backup_set.time, rel) if e.path == rel), None
                )
                changed = entry is not None and (
                    previous is None or (entry.mtime, entry.type) != (previous.mtime, previous.type)
                )
                if entry is not None:
                    result.append(Version(backup_set, entry.mtime, entry.type, changed))
                previous = entry
            if not result:
                raise PathNotInBackupError(f"{path} is in none of the backup sets")
            return result

    # -- restore -----------------------------------------------------------------------------

    def restore(
        self, path: str | None, dest: Path, at: int | None = None, force: bool = False
    ) -> RestoreSummary:
        dest = dest.absolute()
        if (dest.exists() or dest.is_symlink()) and not force:
            raise RestoreTargetExistsError(
                f"{dest} exists; rescue will not overwrite it without --force"
            )
        rel = relative_path(path, self.settings) if path else ""
        with self._target() as target:
            status = self._status(target)
            backup_set = pick_set(status, at)
            action = ["restore", "-t", str(backup_set.time)]
            if rel:
                action += ["--path-to-restore", rel]
            exists = dest.exists() or dest.is_symlink()
            staging = staging_dir(dest) if exists else None
            into = staging / "restored" if staging else dest
            progress = Progress(phase="restore")
            start = time.monotonic()
            try:
                self._run(
                    [*action, target.url, str(into)],
                    target,
                    verbosity="info" if self.progress else "notice",
                    on_record=self._restore_progress(progress) if self.progress else None,
                )
                files, size = _totals(into)
                if staging:
                    merge_into(into, dest)
            finally:
                if staging:
                    shutil.rmtree(staging, ignore_errors=True)
            return RestoreSummary(
                path=rel or "/",
                destination=str(dest),
                time=backup_set.time,
                files=files,
                bytes=size,
                seconds=time.monotonic() - start,
            )

    def _restore_progress(self, progress: Progress) -> Callable[[duplog.Record], None]:
        def on_record(record: duplog.Record) -> None:
            if record.level != "INFO" or not record.extra:
                return
            if record.code == duplog.INFO_PATCH_FILE_WRITING:
                progress.files += 1
                progress.current = duplog.unescape_path(record.extra[0].rsplit(" ", 1)[0])
            elif record.code == duplog.INFO_PROGRESS:
                parts = record.extra[0].split()
                if len(parts) == 2 and int(parts[1]):
                    progress.fraction = int(parts[0]) / int(parts[1])
            else:
                return
            assert self.progress is not None
            self.progress(progress)

        return on_record


def _totals(dest: Path) -> tuple[int, int]:
    """Entries and bytes of what a restore wrote, a file or a tree."""
    if not dest.is_dir() or dest.is_symlink():
        return 1, dest.lstat().st_size if dest.is_file() else 0
    files = size = 0
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in [*filenames, *dirnames]:
            st = os.lstat(os.path.join(dirpath, name))
            files += 1
            if not os.path.isdir(os.path.join(dirpath, name)):
                size += st.st_size
    return files, size


def relative_path(path: str, settings: Settings) -> str:
    """A path as the backup stores it: relative to the selection root.

    Accepts the host path (/etc/hosts) or the stored form (etc/hosts); "/" means everything.
    """
    root = PurePosixPath(str(settings.selection.root))
    p = PurePosixPath(path)
    if p.is_absolute():
        if p in (root, PurePosixPath("/")):
            return ""
        try:
            p = p.relative_to(root)
        except ValueError:
            raise PathNotInBackupError(f"{path} is outside the backed-up root {root}") from None
    text = str(p)
    return "" if text == "." else text


def decide_kind(
    mode: Literal["full", "incremental", "auto"], status: Status, full_every: str
) -> tuple[Kind, str]:
    """Full or incremental, and why, in words an admin can check."""
    last = status.last_full()
    if mode == "full":
        return "full", "asked for with --full"
    if last is None:
        return "full", "there is no backup chain yet"
    if mode == "incremental":
        return "incremental", "asked for with --incremental"
    age = time.time() - last.time
    if age >= FULL_PERIODS[full_every]:
        return "full", f"the last full is {age / 86400:.1f} days old and fulls are {full_every}"
    return "incremental", f"the last full is {age / 86400:.1f} days old; fulls are {full_every}"


def pick_set(status: Status, at: int | None) -> BackupSet:
    """The newest set at or before `at` (now when None), as duplicity's -t would choose."""
    if not status.sets:
        if status.damaged:
            raise MissingVolumeError(
                f"backup volumes are missing from {status.destination}: "
                f"{status.damaged} chain(s) hold no restorable set"
            )
        raise NoBackupError(f"no backup found at {status.destination}")
    if at is None:
        return status.sets[-1]
    candidates = [s for s in status.sets if s.time <= at]
    if not candidates:
        oldest = status.sets[0]
        raise NoBackupError(
            f"no backup as old as {iso(at)}; the oldest set is from {iso(oldest.time)}"
        )
    return candidates[-1]


def parse_collection_status(lines: list[str], destination: str) -> Status:
    """Read the control lines of duplicity's collection-status record.

    They look like: `chain-no-sig 0` / `chain-complete`, then ` full 20261126T082608Z 1 enc`
    per set, then `orphaned-sets-num 0` and `incomplete-sets-num 0`.
    """
    chains: list[Chain] = []
    orphaned = incomplete = 0
    for line in lines:
        words = line.split()
        if not words:
            continue
        if words[0] in ("chain-no-sig", "chain-complete"):
            chains.append(Chain(index=0, sets=[]))
        elif words[0] in ("full", "inc") and chains and len(words) >= 4:
            chains[-1].sets.append(
                BackupSet(
                    kind="full" if words[0] == "full" else "incremental",
                    time=from_duplicity_time(words[1]),
                    volumes=int(words[2]),
                    encrypted=words[3] == "enc",
                    chain=0,
                )
            )
        elif words[0] == "orphaned-sets-num":
            orphaned = int(words[1])
        elif words[0] == "incomplete-sets-num":
            incomplete = int(words[1])
    damaged = sum(1 for c in chains if not c.sets)
    chains = sorted((c for c in chains if c.sets), key=lambda c: c.start)
    for number, chain in enumerate(chains, start=1):
        chain.index = number
        for s in chain.sets:
            s.chain = number
    return Status(destination, chains, orphaned, incomplete, damaged)
