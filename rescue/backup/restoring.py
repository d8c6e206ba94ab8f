"""Getting files out of the backup: restore (staged, then placed), verify, and the manifest."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from functools import partial
from pathlib import Path, PurePosixPath

from rescue.backup import destlock, duplog, keptrecords
from rescue.backup.destinations import Target, duplicity_url
from rescue.backup.duplicity_run import DuplicityRunner
from rescue.backup.listing import relative_path
from rescue.backup.results import Progress, RestoreSummary
from rescue.backup.selection import literal
from rescue.backup.sets import BackupSet, pick_set
from rescue.backup.shardmap import ShardedChain
from rescue.backup.timespec import iso
from rescue.errors import DuplicityError, PathNotInBackupError
from rescue.placement.fsops import move_into, remove_own, rename_noreplace
from rescue.placement.guard import RestoreTarget, fresh
from rescue.placement.place import place, staging
from rescue.placement.scratch import private_dir
from rescue.process.parallel import run_all
from rescue.recovery import manifest


class Restoring(DuplicityRunner):
    """Restores and verifies, each from the set picked for its time."""

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
            backup_set, chain = self._pick_chain(remote, at)
            holders = chain.holders(rel) if chain else [0]
            shards = self._shard_targets(remote, chain.count if chain else 1)
            action = ["restore", "-t", str(backup_set.time)]
            if excludes:
                action += [f"--exclude={literal(x)}" for x in excludes]
                if rel:
                    action += [f"--include={literal(rel)}", "--exclude", "**"]
            elif rel:
                action.append(f"--path-to-restore={rel}")  # one item: rel may start with -
            if numeric_owner:
                action.append("--numeric-owner")
            progress = Progress(phase="restore")
            start = time.monotonic()
            with staging(target.home) as staged:
                into = staged / "restored"
                item = into / rel if excludes and rel else into
                # one directory per shard that holds some of rel, all at once, then merged
                intos = [into, *(staged / f"shard-{k}" for k in holders[1:])]

                def run_shard(n: int) -> None:
                    self._run(
                        [*action, shards[holders[n]].url, str(intos[n])],
                        target=shards[holders[n]],
                        verbosity="info" if self.progress else "notice",
                        on_record=self._restore_progress(progress) if self.progress else None,
                        local=staged,
                    )

                with ExitStack() as watching:
                    for each in intos:
                        if during:
                            watching.enter_context(during(each / rel if excludes and rel else each))
                    self._run_holders(run_shard, len(holders))
                for part in intos[1:]:
                    _merge(part / rel if excludes and rel else part, item)
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
        return self._pick_chain(target, at)[0]

    def _pick_chain(self, target: Target, at: int | None) -> tuple[BackupSet, ShardedChain | None]:
        """The set for `at`, and its sharded chain (None: one stream). The cache is enough to
        pick the set, unless another cache wrote there since (or retention removed sets): the
        destination's own note of its sets tells."""
        status = self._cached(target)
        there = destlock.sets_there(self.settings)
        known = (status.sets[0].time, status.sets[-1].time) if status.sets else None
        if not status.sets or (there is not None and there != known):
            status = self._status(target)
        chains = self._sharded()
        status = self._complete(status, chains)
        backup_set = pick_set(status, at)
        return backup_set, self._chain_of(status, backup_set, chains)

    @staticmethod
    def _run_holders(run: Callable[[int], None], count: int) -> None:
        """Run the restores of the shards that hold a path at once. A shard that holds none
        of it at that set (its pieces below the path were all deleted by then) adds nothing;
        only when no shard holds it is the path not in the backup."""
        missing: list[PathNotInBackupError] = []

        def each(n: int) -> None:
            try:
                run(n)
            except PathNotInBackupError as exc:
                missing.append(exc)

        run_all([partial(each, n) for n in range(count)])
        if len(missing) == count:
            raise missing[0]

    def verify(self, path: str, local: Path, at: int) -> tuple[int, list[str]]:
        """Compare local with path in the set at `at`, content included (duplicity verify
        --compare-data). Returns the number of files compared and every difference found.

        A sharded set is verified by each shard that holds some of path, at once. duplicity
        compares its backup with everything in local, so each shard also calls the files of
        the others new: a "New file" counts only from the shard that backs that path up."""
        rel = relative_path(path, self.settings)
        with self._target() as target:
            _, chain = self._pick_chain(target, at)
            holders = chain.holders(rel) if chain else [0]
            shards = self._shard_targets(target, chain.count if chain else 1)
            action = ["verify", "--compare-data", "-t", str(at)]
            if rel:
                action.append(f"--path-to-restore={rel}")
            found: list[list[str]] = [[] for _ in holders]
            compared = [0] * len(holders)

            def run_shard(n: int) -> None:
                def on_record(record: duplog.Record) -> None:
                    text = record.message
                    if text.startswith("Difference found:"):
                        found[n].append(text.removeprefix("Difference found:").strip())
                    total = re.search(r"Verify complete: (\d+) file", text)
                    if total:
                        compared[n] = int(total.group(1))

                shard = shards[holders[n]]
                try:
                    self._run([*action, shard.url, str(local)], shard, on_record=on_record)
                except DuplicityError:
                    if not found[n]:
                        raise
                if chain is not None:
                    others = [
                        d for d in found[n] if not _anothers_new_file(d, rel, chain, holders[n])
                    ]
                    compared[n] -= len(found[n]) - len(others)
                    found[n] = others

            self._run_holders(run_shard, len(holders))
            return sum(compared), [d for each in found for d in each]

    def restore_files(self, rels: list[str], dest: Path, at: int) -> list[str]:
        """Restore several files in ONE duplicity run (include patterns), each to dest/rel.

        Why one run: each duplicity start costs seconds on a server and a minute under
        emulation, and recovery needs the manifest and the identity files before anything else.
        dest is a fresh directory of rescue's own (the recovery's work directory). Returns the
        rels the backup held; a rel it does not hold is simply absent.
        """
        with self._target() as target, staging(dest) as staged:
            _, chain = self._pick_chain(target, at)
            shards = self._shard_targets(target, chain.count if chain else 1)
            by_shard: dict[int, list[str]] = {}
            for rel in rels:  # a file is in one shard: the one whose piece holds it, else 0
                by_shard.setdefault(chain.owner(rel) if chain else 0, []).append(rel)

            def run_shard(shard: int) -> None:
                selection = [f"--include={literal(rel)}" for rel in by_shard[shard]]
                self._run(
                    ["restore", "-t", str(at), *selection, "--exclude", "**", shards[shard].url,
                     str(staged / f"restored-{shard}")],
                    shards[shard],
                )  # fmt: skip

            run_all([partial(run_shard, k) for k in by_shard])
            found = []
            for shard, held in by_shard.items():
                for rel in held:
                    got = staged / f"restored-{shard}" / rel
                    if got.is_file():
                        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                        rename_noreplace(got, dest / rel)
                        found.append(rel)
            return [rel for rel in rels if rel in found]

    def load_manifest(self, at: int | None = None) -> manifest.Manifest:
        """The manifest stored in the backup as of `at`: the copy kept in the archive dir
        (rescue.backup.keptrecords), or else restored alone, as recovery does first."""
        with self._target() as remote:
            at = self._pick(remote, at).time
        name = f"{manifest.MANIFEST_REL} in the backup"
        entry = keptrecords.kept(self.archive_dir, duplicity_url(self.settings), at)
        copy = entry / PurePosixPath(manifest.MANIFEST_REL).name if entry else None
        if copy is not None and copy.is_file():
            return manifest.load(copy, name=name)
        with private_dir("rescue-manifest-") as tmp:
            target = tmp / "manifest.json"
            self.restore(manifest.MANIFEST_REL, fresh(target), at)
            return manifest.load(target, name=name)

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


def _merge(part: Path, item: Path) -> None:
    """One shard's restored part into the tree the others made (see move_into); a part that
    is the item's first content (the first holder found none of it) is moved whole."""
    if not os.path.lexists(part):
        return
    if not os.path.lexists(item):
        item.parent.mkdir(parents=True, exist_ok=True)
        rename_noreplace(part, item)
        return
    move_into(part, item)


def _anothers_new_file(difference: str, rel: str, chain: ShardedChain, shard: int) -> bool:
    """Whether a difference is duplicity's "New file X" (relative to rel) for a path that
    another shard than `shard` backs up: its own verify compares it."""
    if not difference.startswith("New file "):
        return False
    name = difference.removeprefix("New file ")
    full = rel if name == "." else str(PurePosixPath(rel) / name) if rel else name
    return chain.owner(full) != shard
