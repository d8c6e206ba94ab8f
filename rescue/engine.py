"""The duplicity wrapper: backup, status, listing, versions, restore and retention.

duplicity is driven through its command line (its Python internals are not an API) and read
through `--log-fd`. Every run goes through execute.run, so secrets stay in the environment, and
every failure is turned into one RescueError by `failures.classify`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from rescue import (
    cadence,
    destlock,
    duplog,
    execute,
    grandchildren,
    history,
    lifetime,
    manifest,
    remotedir,
)
from rescue.cache import cache_name, cached_status
from rescue.config import Settings, check_gpg_key
from rescue.destinations import Target, display_url, duplicity_url, prepare
from rescue.errors import (
    DuplicityError,
    LockedError,
    NoBackupError,
    NoSpaceError,
    PathNotInBackupError,
    RescueError,
    StalledError,
)
from rescue.exact.records import SIDECAR_REL
from rescue.failures import classify
from rescue.lock import exclusive, reading, retention_allowed
from rescue.placement.fsops import (
    free_bytes,
    fs_of,
    private_dir,
    remove_own,
    rename_noreplace,
    usage,
)
from rescue.placement.guard import Protected, RestoreTarget, fresh
from rescue.placement.place import Placed, place, staging
from rescue.selection import filter_args
from rescue.sets import (
    BackupSet,
    Kind,
    Status,
    parse_collection_status,
    pick_set,
    volume_sizes,
)
from rescue.timespec import from_duplicity_time, iso
from rescue.units import human_size

BackupMode = Literal["full", "incremental", "auto"]

log = logging.getLogger("rescue.engine")


def _duplicity() -> str:
    """The duplicity installed beside this Python (the pinned one), else the one on PATH."""
    beside = Path(sys.executable).parent / "duplicity"
    return str(beside) if beside.exists() else "duplicity"


DUPLICITY = _duplicity()


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
    retention_note: str | None = None

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
    placed: Placed

    def as_dict(self) -> dict[str, object]:
        plain = {k: v for k, v in asdict(self).items() if k != "placed"}
        return {**plain, "date": iso(self.time), **self.placed.as_dict()}


@dataclass
class Progress:
    """What a long run has done so far; the CLI draws it, the engine fills it in."""

    phase: str
    files: int = 0
    bytes: int = 0
    fraction: float | None = None
    current: str = ""
    started: float = field(default_factory=time.monotonic)


# Called with the progress of a long run, and with None when the run ends.
ProgressCallback = Callable[[Progress | None], None]


class Engine:
    """One configured backup: every duplicity action against its destination."""

    def __init__(self, settings: Settings, progress: ProgressCallback | None = None) -> None:
        self.settings = settings
        self.progress = progress
        self.archive_dir = Path(settings.duplicity.archive_dir)
        self.last_run: history.Run | None = None  # the last backup() call's history record
        # A GnuPG home for duplicity's gpg when the settings name none (the drill's throwaway
        # one, so the gpg-agent it starts can be ended with it); gpg mode keeps its keyring.
        self.gnupg_home: str | None = None

    # -- running duplicity -------------------------------------------------------------------

    @contextmanager
    def _gnupg_env(self) -> Iterator[dict[str, str]]:
        """GNUPGHOME for duplicity's gpg: the configured keyring, else the home a caller set
        (the drill's throwaway one, rescue.gpghome), else gpg's default. A throwaway home for
        every run would end each run's agent, but starting an agent costs about a second per
        duplicity run here (measured), so only the drill pays it for now."""
        home = self.settings.encryption.gnupg_home or self.gnupg_home
        yield {"GNUPGHOME": str(home)} if home else {}

    def _encryption(self) -> tuple[list[str], dict[str, str]]:
        enc = self.settings.encryption
        if enc.mode == "none":
            return ["--no-encryption"], {}
        # An empty PASSPHRASE keeps duplicity from prompting for a key that has none.
        secret = {"PASSPHRASE": self.settings.passphrase() or ""}
        args = ["--encrypt-key", enc.gpg_key] if enc.mode == "gpg" and enc.gpg_key else []
        return args, secret

    def _run(
        self,
        action: list[str],
        target: Target,
        *,
        verbosity: str = "notice",
        on_record: Callable[[duplog.Record], None] | None = None,
        log_output: bool = True,
        local: Path | None = None,
    ) -> duplog.LogParser:
        """One duplicity run; its failure as one RescueError. local: the restore's staging
        directory, named when its file system fills up."""
        enc_args, secret_env = self._encryption()
        self.archive_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for pid, command in lifetime.duplicity_using(self.archive_dir):
            raise LockedError(
                f"duplicity (pid {pid}: {command} ...) is still using the archive dir "
                f"{self.archive_dir}, left by a run that was stopped or started by hand: wait "
                f"for it to end, or stop it (kill {pid}), then run this again"
            )
        argv = [
            DUPLICITY,
            *action,
            execute.LOG_FD_ARG,
            "-v",
            verbosity,
            "--archive-dir",
            str(self.archive_dir),
            "--name",
            cache_name(target.url),
            "--num-retries",
            # a local file system does not get better by waiting: a full disk fails at once
            "1"
            if self.settings.destination.method == "file"
            else str(self.settings.duplicity.retries),
            *enc_args,
            *target.options,
        ]
        parser = duplog.LogParser(on_record)
        watchdog = lifetime.Watchdog(self.settings.duplicity.stall_seconds)

        def on_logfd(line: str) -> None:
            if line.startswith("ERROR "):
                watchdog.fatal()  # duplicity may now hang on its gpg child: it gets a minute
            parser.feed(line)

        secrets = {**secret_env, **target.secret_env}  # duplicity's, and only its
        try:
            with (
                self._gnupg_env() as env,
                grandchildren.without_secrets(secrets) as shims,  # its gpg and lftp: none
            ):
                result = execute.run(
                    argv,
                    env={**env, **shims},
                    secret_env=secrets,
                    on_logfd=on_logfd,
                    log_output=log_output,
                    watchdog=watchdog,
                )
            parser.close()
        except StalledError as exc:
            parser.close()
            found = classify(1, parser.errors(), "\n".join(exc.tail), target.display)
            if type(found) is DuplicityError:  # nothing more specific to say than that
                raise StalledError(f"duplicity was stopped: {exc} (last: {found})") from None
            raise self._explained(found, local) from None
        finally:
            if on_record is not None and self.progress is not None:
                self.progress(None)  # the run is over: its status line goes
        if result.returncode != 0:
            found = classify(result.returncode, parser.errors(), result.output, target.display)
            raise self._explained(found, local)
        return parser

    def _explained(self, error: RescueError, local: Path | None) -> RescueError:
        """A restore's full file system, said with where and how much room there was (a
        backup's is said by _backup, after the cleanup)."""
        if not isinstance(error, NoSpaceError) or local is None:
            return error
        room = human_size(free_bytes(local) + usage(local))  # its staging goes on the way out
        return NoSpaceError(
            f"{fs_of(local)} is full: the restore did not fit in the {room} free there, and "
            "what it had written is removed; make room there or restore elsewhere"
        )

    @contextmanager
    def _target(self, reads: bool = True) -> Iterator[Target]:
        """The destination for one action; reads=True holds the readers' lock, so retention
        never removes a chain under a restore, listing or verify in progress."""
        if not reads:
            with prepare(self.settings) as target:
                yield target
            return
        with reading(self.archive_dir), prepare(self.settings) as target:
            yield target

    def _cached(self, target: Target) -> Status:
        """The sets as the last duplicity run left them in the cache (see rescue.cache)."""
        return cached_status(self.archive_dir / cache_name(target.url), target.display)

    # -- status ------------------------------------------------------------------------------

    def local_status(self) -> Status:
        """The sets as this host's cache knows them, without contacting the destination: what
        the schedule needs to predict the next runs."""
        url = duplicity_url(self.settings)
        return cached_status(self.archive_dir / cache_name(url), display_url(self.settings))

    def status(self) -> Status:
        """The sets at the destination, each with the bytes its volumes take there."""
        with self._target() as target:
            status = self._status(target)
            sizes = self._volume_sizes()
            for s in status.sets:
                s.bytes = sizes.get(s.time)
            return status

    def _volume_sizes(self) -> dict[int, int]:
        """Bytes per set time, from the listing of the destination's files."""
        try:
            with remotedir.opened(self.settings, make=False) as folder:
                return volume_sizes(folder.listing())
        except FileNotFoundError:  # no destination directory: no sets either
            return {}

    def _status(self, target: Target) -> Status:
        parser = self._run(["collection-status", target.url], target)
        records = [r for r in parser.records if r.code == duplog.INFO_COLLECTION_STATUS]
        return parse_collection_status(records[-1].extra if records else [], target.display)

    # -- backup ------------------------------------------------------------------------------

    def backup(self, mode: BackupMode = "auto", now: float | None = None) -> BackupSummary:
        """One duplicity run. Auto mode makes a full when the schedule's period has begun since
        the last full (rescue.cadence), an incremental otherwise; every mode refuses to run
        with a clock earlier than the newest set. What it made is read from the cache.

        now (seconds) fakes the clock, as duplicity's --current-time does: for tests only.
        Every run, failed or not, is appended to the history (rescue.history)."""
        run = history.Run(time.time(), 0.0, mode, "failure")
        try:
            summary = self._backup(mode, now, run)
            run.outcome = "success"
            return summary
        except (KeyboardInterrupt, lifetime.Terminated) as exc:
            run.outcome, run.error = "interrupted", history.error_line(exc)
            raise
        except Exception as exc:
            run.error = history.error_line(exc)
            raise
        finally:
            run.end = time.time()
            history.record_run(self.archive_dir, run)
            self.last_run = run

    def _backup(self, mode: BackupMode, now: float | None, run: history.Run) -> BackupSummary:
        check_gpg_key(self.settings)
        with (
            exclusive(self.archive_dir, "backup"),
            self._target(reads=False) as target,
            destlock.held(self.settings) as lock,  # one writer per destination, its own host
        ):
            before = self._cached(target)
            kind, reason = choose_kind(mode, before, self.settings, now)
            manifest.write(self.settings, self._own_excludes())
            root = str(self.settings.selection.root)
            action: list[str] = [kind]
            if now is not None:
                action += ["--current-time", str(int(now))]
            action += ["--volsize", str(self.settings.duplicity.volsize)]
            action += [*self._selection_args(), root, target.url]
            progress = Progress(phase=f"{mode} backup")
            try:
                parser = self._run(
                    action,
                    target,
                    verbosity="info" if self.progress else "notice",
                    on_record=self._backup_progress(progress, root) if self.progress else None,
                )
            except NoSpaceError:
                self._cleanup_partial(target)
                raise self._full_destination(target) from None
            stats = next(
                (duplog.parse_statistics(r) for r in parser.records if duplog.is_statistics(r)),
                {},
            )
            after = self._cached(target)
            made = _new_set(before, after)
            summary = BackupSummary(
                kind=made.kind,
                reason=reason if made.kind == kind else f"duplicity made a {made.kind}",
                time=made.time,
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
            run.kind, run.bytes, run.set_time = made.kind, summary.bytes_written, made.time
            if made.kind == "full":
                summary.removed_chains, summary.retention_note = self._retain(target, after)
                after = self._cached(target) if summary.removed_chains else after
            lock.sets = (after.sets[0].time, after.sets[-1].time)  # for the caches of others
            return summary

    def _full_destination(self, target: Target) -> NoSpaceError:
        dest = self.settings.destination
        room = ""
        if dest.method == "file":
            free = human_size(free_bytes(Path(dest.path)))
            room = f" (with the partial volume removed, {free} are free there)"
        return NoSpaceError(
            f"the backup destination {target.display} is full{room}: make room there and run "
            "the backup again"
        )

    def _cleanup_partial(self, target: Target) -> None:
        """Remove what a failed backup left at the destination (its partial volume), so the
        room is there again; duplicity's own cleanup, best effort."""
        try:
            self._run(["cleanup", "--force", target.url], target)
        except RescueError as exc:
            log.warning("cleanup after the failed backup did not finish: %s", exc)

    def protected(self) -> tuple[Protected, ...]:
        """What a backup never holds and a restore never writes into: rescue's own cache and,
        for a file destination, the backups themselves."""
        dest = self.settings.destination
        found = [Protected("the archive dir", self.archive_dir)]
        if dest.method == "file":
            found.append(Protected("the backup destination", Path(dest.path)))
        return tuple(found)

    def _own_excludes(self) -> list[str]:
        return [str(p.path) for p in self.protected()]

    def _selection_args(self) -> list[str]:
        root = Path(str(self.settings.selection.root))
        always = [str(manifest.manifest_path(root)), str(root / SIDECAR_REL)]
        return filter_args(self.settings.selection, self._own_excludes(), always)

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

    def _retain(self, target: Target, status: Status) -> tuple[int, str | None]:
        """Keep the newest keep_full chains; called only after a successful full, under the
        backup lock. The chains removed, and why none were when a reader holds them."""
        keep = self.settings.schedule.keep_full
        excess = max(0, len(status.chains) - keep)
        if not excess:
            return 0, None
        with retention_allowed(self.archive_dir) as allowed:
            if not allowed:
                note = (
                    f"retention postponed: a restore, listing or verify is reading the backups; "
                    f"the {excess} old chain(s) go after the next full"
                )
                log.warning("%s", note)
                return 0, note
            self._run(["remove-all-but-n-full", str(keep), "--force", target.url], target)
        log.info("retention: removed %d chain(s), kept %d", excess, keep)
        return excess, None

    # -- listing -----------------------------------------------------------------------------

    def list_files(self, at: int | None = None, path: str | None = None) -> list[FileEntry]:
        """What the set as of `at` holds under path; PathNotInBackupError when path is not in
        it (an empty answer would look like an empty directory)."""
        with self._target() as target:
            status = self._status(target)
            backup_set = pick_set(status, at)
            entries = self._list(target, backup_set.time, path)
            if path and not entries and relative_path(path, self.settings):
                raise PathNotInBackupError(
                    f"{path} is not in the backup set of {iso(backup_set.time)}; "
                    "`rescue versions PATH` lists the sets that hold it"
                )
            return entries

    def _list(self, target: Target, at: int, path: str | None) -> list[FileEntry]:
        # a listing is output, not log lines: thousands of them per call
        parser = self._run(
            ["list-current-files", "-t", str(at), target.url], target, log_output=False
        )
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
        self,
        path: str | None,
        target: RestoreTarget,
        at: int | None = None,
        *,
        numeric_owner: bool = False,
        during: Callable[[Path], AbstractContextManager[object]] | None = None,
        before_place: Callable[[Path], None] | None = None,
        excludes: Sequence[str] = (),
        drop: Sequence[str] = (),
    ) -> RestoreSummary:
        """Restore path (everything when None) as of `at` to a checked target (see
        rescue.placement): staged on its file system, then moved or merged into place.

        A recovery restores each file system by itself, leaving out the backup paths below
        path where others are mounted, in one of two ways. excludes: the run selects by
        pattern, so they are never written, but it reads every volume (a plain
        --path-to-restore reads only those that hold path). drop: a plain run, whose copies of
        them are removed from the staging directory before the merge (they cost room there
        while duplicity runs). numeric_owner keeps the backup's uids and gids whatever the
        names map to here. during(staged path) is entered while duplicity writes
        (rescue.exact.watch follows the sparse files with it); before_place(staged path) runs
        after it, before anything is moved to the target, so a restore killed at any moment
        leaves at the target nothing or all of it (rescue.exact replays its records there).
        """
        rel = relative_path(path, self.settings) if path else ""
        with self._target() as remote:
            backup_set = self._pick(remote, at)
            action = ["restore", "-t", str(backup_set.time)]
            if excludes:
                action += [f"--exclude={_literal(x)}" for x in excludes]
                if rel:
                    action += [f"--include={_literal(rel)}", "--exclude", "**"]
            elif rel:
                action.append(f"--path-to-restore={rel}")  # one item: rel may start with -
            if numeric_owner:
                action.append("--numeric-owner")
            progress = Progress(phase="restore")
            start = time.monotonic()
            with staging(target.home) as staged:
                into = staged / "restored"
                item = into / rel if excludes and rel else into
                with during(item) if during else nullcontext():
                    self._run(
                        [*action, remote.url, str(into)],
                        target=remote,
                        verbosity="info" if self.progress else "notice",
                        on_record=self._restore_progress(progress) if self.progress else None,
                        local=staged,
                    )
                for rel_below in drop:
                    remove_own(item / PurePosixPath(rel_below).relative_to(rel or "."))
                files, size = _totals(item)
                if before_place is not None:
                    before_place(item)
                placed = place(
                    item,
                    target,
                    PurePosixPath(rel).name or "restored",
                    f"restore of {rel or '/'} as of {iso(backup_set.time)}",
                )
            return RestoreSummary(
                path=rel or "/",
                destination=str(target.path),
                time=backup_set.time,
                files=files,
                bytes=size,
                seconds=time.monotonic() - start,
                placed=placed,
            )

    def pick(self, at: int | None) -> BackupSet:
        """The set a restore as of `at` uses (the newest at or before it)."""
        with self._target() as target:
            return self._pick(target, at)

    def _pick(self, target: Target, at: int | None) -> BackupSet:
        # The cache is enough to pick the set, unless another cache wrote there since (or
        # retention removed sets): the destination's own note of its sets tells.
        status = self._cached(target)
        there = destlock.sets_there(self.settings)
        known = (status.sets[0].time, status.sets[-1].time) if status.sets else None
        if not status.sets or (there is not None and there != known):
            status = self._status(target)
        return pick_set(status, at)

    def verify(self, path: str, local: Path, at: int) -> tuple[int, list[str]]:
        """Compare local with path in the set at `at`, content included (duplicity verify
        --compare-data). Returns the number of files compared and every difference found."""
        rel = relative_path(path, self.settings)
        with self._target() as target:
            action = ["verify", "--compare-data", "-t", str(at)]
            if rel:
                action.append(f"--path-to-restore={rel}")
            differences: list[str] = []
            compared = 0

            def on_record(record: duplog.Record) -> None:
                nonlocal compared
                text = record.message
                if text.startswith("Difference found:"):
                    differences.append(text.removeprefix("Difference found:").strip())
                found = re.search(r"Verify complete: (\d+) file", text)
                if found:
                    compared = int(found.group(1))

            try:
                self._run([*action, target.url, str(local)], target, on_record=on_record)
            except DuplicityError:
                if not differences:
                    raise
            return compared, differences

    def restore_files(self, rels: list[str], dest: Path, at: int) -> list[str]:
        """Restore several files in ONE duplicity run (include patterns), each to dest/rel.

        Why one run: each duplicity start costs seconds on a server and a minute under
        emulation, and recovery needs the manifest and the identity files before anything else.
        dest is a fresh directory of rescue's own (the recovery's work directory). Returns the
        rels the backup held; a rel it does not hold is simply absent.
        """
        with self._target() as target, staging(dest) as staged:
            selection = [f"--include={_literal(rel)}" for rel in rels]
            self._run(
                ["restore", "-t", str(at), *selection, "--exclude", "**", target.url,
                 str(staged / "restored")],
                target,
            )  # fmt: skip
            found = []
            for rel in rels:
                got = staged / "restored" / rel
                if got.is_file():
                    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                    rename_noreplace(got, dest / rel)
                    found.append(rel)
            return found

    def load_manifest(self, at: int | None = None) -> manifest.Manifest:
        """The manifest stored in the backup as of `at`, restored alone, as recovery does first."""
        with private_dir("rescue-manifest-") as tmp:
            target = tmp / "manifest.json"
            self.restore(manifest.MANIFEST_REL, fresh(target), at)
            return manifest.load(target, name=f"{manifest.MANIFEST_REL} in the backup")

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


def _literal(rel: str) -> str:
    """A path as a duplicity selection pattern that matches only itself."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in rel)


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


def choose_kind(
    mode: BackupMode,
    before: Status,
    settings: Settings,
    now: float | None = None,
) -> tuple[Kind, str]:
    """The kind of set to make and why, in words an admin can check; ScheduleClockError when
    the clock reads earlier than the newest set (whatever the mode)."""
    moment = dt.datetime.fromtimestamp(time.time() if now is None else now)
    decision = cadence.decide_for(before, settings.schedule, moment)
    if mode == "full":
        return "full", "asked for with --full"
    if before.last_full() is None:
        return "full", "there was no backup chain yet"
    if mode == "incremental":
        return "incremental", "asked for with --incremental"
    return decision.kind, decision.reason


def _new_set(before: Status, after: Status) -> BackupSet:
    """The set a backup added: the one the cache names now and did not name before."""
    known = {(s.kind, s.time) for s in before.sets}
    added = [s for s in after.sets if (s.kind, s.time) not in known]
    if not added:
        raise DuplicityError("duplicity reported success but no new backup set appeared")
    return added[-1]
