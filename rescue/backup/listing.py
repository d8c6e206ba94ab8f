"""What the backup sets hold: the files of one set, and the versions of one path across sets."""

from __future__ import annotations

from functools import partial
from pathlib import PurePosixPath

from rescue.backup import duplog
from rescue.backup.destinations import Target
from rescue.backup.duplicity_run import DuplicityRunner
from rescue.backup.results import FileEntry, Version
from rescue.backup.sets import BackupSet, Status, pick_set
from rescue.backup.shardmap import ShardedChain
from rescue.backup.timespec import from_duplicity_time, iso
from rescue.config import Settings
from rescue.errors import NoBackupError, PathNotInBackupError
from rescue.process.parallel import run_all


class Listing(DuplicityRunner):
    """Listing the sets' content (duplicity list-current-files)."""

    def list_files(self, at: int | None = None, path: str | None = None) -> list[FileEntry]:
        """What the set as of `at` holds under path; PathNotInBackupError when path is not in
        it (an empty answer would look like an empty directory)."""
        with self._target() as target:
            found = self._status(target)  # duplicity first: its failures are the clearest
            chains = self._sharded()
            status = self._complete(found, chains)
            backup_set = pick_set(status, at)
            entries = self._list_set(target, status, chains, backup_set, path)
            if path and not entries and relative_path(path, self.settings):
                raise PathNotInBackupError(
                    f"{path} is not in the backup set of {iso(backup_set.time)}; "
                    "`rescue versions PATH` lists the sets that hold it"
                )
            return entries

    def _list_set(
        self,
        target: Target,
        status: Status,
        chains: dict[int, ShardedChain],
        backup_set: BackupSet,
        path: str | None,
    ) -> list[FileEntry]:
        """What backup_set holds under path: the union of its shards' listings, listed at once
        (a directory above a shard's piece is in both: one entry, in duplicity's order)."""
        chain = self._chain_of(status, backup_set, chains)
        if chain is None:
            return self._list(target, backup_set.time, path)
        rel = relative_path(path, self.settings) if path else ""
        shards = self._shard_targets(target, chain.count)
        lists = run_all(
            [partial(self._list, shards[k], backup_set.time, path) for k in chain.holders(rel)]
        )
        merged: dict[str, FileEntry] = {}
        for entries in lists:
            for entry in entries:
                merged.setdefault(entry.path, entry)
        return sorted(merged.values(), key=lambda e: e.path.split("/") if e.path != "." else [])

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
            found = self._status(target)  # duplicity first: its failures are the clearest
            chains = self._sharded()
            status = self._complete(found, chains)
            if not status.sets:
                raise NoBackupError(f"no backup found at {target.display}")
            result: list[Version] = []
            previous: FileEntry | None = None
            for backup_set in status.sets:
                listed = self._list_set(target, status, chains, backup_set, rel)
                entry = next((e for e in listed if e.path == rel), None)
                changed = entry is not None and (
                    previous is None or (entry.mtime, entry.type) != (previous.mtime, previous.type)
                )
                if entry is not None:
                    result.append(Version(backup_set, entry.mtime, entry.type, changed))
                previous = entry
            if not result:
                raise PathNotInBackupError(f"{path} is in none of the backup sets")
            return result


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
