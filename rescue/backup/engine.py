"""The duplicity wrapper: backup, status, listing, versions, restore and retention.

duplicity is driven through its command line (its Python internals are not an API) and read
through `--log-fd`. Every run goes through execute.run, so secrets stay in the environment, and
every failure is turned into one RescueError by `failures.classify`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path, PurePosixPath

from rescue.backup import (
    cadence,
    destlock,
    duplog,
    fleet,
    history,
    keptrecords,
    remotedir,
    shardmap,
)
from rescue.backup.cache import cache_name, cached_status
from rescue.backup.destinations import Target, display_url, duplicity_url
from rescue.backup.listing import Listing
from rescue.backup.lock import exclusive, retention_allowed
from rescue.backup.restoring import Restoring
from rescue.backup.results import BackupMode, BackupSummary, Progress
from rescue.backup.selection import filter_args
from rescue.backup.sets import BackupSet, Kind, Status, volume_sizes
from rescue.backup.shardmap import ShardedChain
from rescue.backup.shards import auto_count, boundaries_below, plan, shard_args, subtree_totals
from rescue.config import Settings, check_gpg_key
from rescue.errors import DuplicityError, NoSpaceError, RescueError
from rescue.exact.records import SIDECAR_REL
from rescue.exact.sizes import SIZES_REL, load_sizes
from rescue.placement.fsops import free_bytes
from rescue.placement.guard import Protected
from rescue.process.parallel import run_all
from rescue.recovery import manifest
from rescue.units import human_size

log = logging.getLogger("rescue.backup.engine")


class Engine(Listing, Restoring):
    """One configured backup: every duplicity action against its destination (its listing in
    rescue.backup.listing, its restores in rescue.backup.restoring, the running of duplicity in
    rescue.backup.duplicity_run)."""

    def local_status(self) -> Status:
        """The sets as this host's cache knows them, without contacting the destination: what
        the schedule needs to predict the next runs."""
        url = duplicity_url(self.settings)
        return cached_status(self.archive_dir / cache_name(url), display_url(self.settings))

    def status(self) -> Status:
        """The sets at the destination (those of a sharded chain once every shard holds
        them), each with the bytes its volumes take there, in every shard."""
        with self._target() as target:
            found = self._status(target)  # duplicity first: its failures are the clearest
            chains = self._sharded()
            status = self._complete(found, chains)
            sizes = self._volume_sizes(max((c.count for c in chains.values()), default=1))
            for s in status.sets:
                s.bytes = sizes.get(s.time)
            return status

    def _volume_sizes(self, shards: int) -> dict[int, int]:
        """Bytes per set time, from the listings of the destination's files (and of its
        shards' directories)."""
        sizes: dict[int, int] = {}
        for shard in range(shards):
            sub = shardmap.shard_dir(shard) if shard else ""
            try:
                with remotedir.opened(self.settings, sub, make=False) as folder:
                    for when, size in volume_sizes(folder.listing()).items():
                        sizes[when] = sizes.get(when, 0) + size
            except FileNotFoundError:  # no destination directory: no sets either
                continue
        return sizes

    # -- backup ------------------------------------------------------------------------------

    def backup(self, mode: BackupMode = "auto", now: float | None = None) -> BackupSummary:
        """One duplicity run. Auto mode makes a full when the schedule's period has begun since
        the last full (rescue.backup.cadence), an incremental otherwise; every mode refuses to run
        with a clock earlier than the newest set. What it made is read from the cache.

        now (seconds) fakes the clock, as duplicity's --current-time does: for tests only.
        Every run, failed or not, is appended to the history (rescue.backup.history)."""
        run = history.Run(time.time(), 0.0, mode, "failure")
        self.last_run = run  # the same record, complete once the block below has ended
        with history.recorded(self.archive_dir, run):
            summary = self._backup(mode, now, run)
            run.outcome = "success"
        return summary

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
            chains = self._sharded()
            stamp = int(time.time() if now is None else now)
            chain = self._chain_to_write(kind, before, chains, stamp)
            targets = self._shard_targets(target, chain.count if chain else 1)
            progress = Progress(phase=f"{mode} backup")

            def run_shard(shard: int) -> duplog.LogParser:
                action: list[str] = [kind]
                if now is not None or chain is not None:  # one set time in every shard
                    action += ["--current-time", str(stamp)]
                action += ["--volsize", str(self.settings.duplicity.volsize)]
                action += [*self._selection_args(chain, shard), root, targets[shard].url]
                return self._run(
                    action,
                    targets[shard],
                    verbosity="info" if self.progress else "notice",
                    on_record=self._backup_progress(progress, root) if self.progress else None,
                )

            try:
                parsers = run_all([partial(run_shard, k) for k in range(len(targets))])
            except NoSpaceError:
                for each in targets:
                    self._cleanup_partial(each)
                raise self._full_destination(target) from None
            stats = _summed(
                duplog.parse_statistics(r)
                for parser in parsers
                for r in parser.records
                if duplog.is_statistics(r)
            )
            after = self._cached(target)
            made = _new_set(before, after)
            if chain is not None:
                self._record_set(chains, chain, made, stamp)
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
            # what duplicity just stored of rescue's own files, for the restores to come
            own = Path(root) / PurePosixPath(SIDECAR_REL).parent
            keptrecords.keep(self.archive_dir, target.url, made.time, own)
            if made.kind == "full":
                summary.removed_chains, summary.retention_note = self._retain(target, after, chains)
                after = self._cached(target) if summary.removed_chains else after
            keptrecords.prune(self.archive_dir, target.url, [s.time for s in after.sets])
            lock.sets = (after.sets[0].time, after.sets[-1].time)  # for the caches of others
            fleet.publish_backup(
                self.settings, self._complete(after, chains), lock.hostname, lock.machine_id
            )
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

    def _selection_args(self, chain: ShardedChain | None = None, shard: int = 0) -> list[str]:
        root = Path(str(self.settings.selection.root))
        always = [str(manifest.manifest_path(root))]
        always += [str(root / rel) for rel in (SIDECAR_REL, SIZES_REL, manifest.IDENTITY_REL)]
        if chain is None:
            return filter_args(self.settings.selection, self._own_excludes(), always)
        return shard_args(self.settings.selection, chain.plan, shard, self._own_excludes(), always)

    def _chain_to_write(
        self, kind: Kind, before: Status, chains: dict[int, ShardedChain], stamp: int
    ) -> ShardedChain | None:
        """The sharded chain this backup writes into, or None for one stream. A full is split
        as the settings say (from the sizes the capture walk just recorded), and the chain is
        recorded at the destination before any shard runs, so that a reader never takes shard
        0 alone for the whole set; an incremental keeps its chain's split."""
        if kind == "incremental":
            last = before.chains[-1].start if before.chains else None
            return chains.get(last) if last is not None else None
        wanted = self.settings.duplicity.shards
        root = Path(str(self.settings.selection.root))
        sizes = load_sizes(root / SIZES_REL) if wanted != 1 else None
        if sizes is None:
            return None
        total = subtree_totals(sizes).get("", 0)
        count = auto_count(total, os.cpu_count()) if wanted == "auto" else wanted
        if count < 2:
            return None
        made = plan(
            sizes,
            count,
            keep=[str(PurePosixPath(SIDECAR_REL).parent)],
            boundaries=boundaries_below(root, sizes),
        )
        if made.count < 2:
            return None
        chain = ShardedChain(stamp, made)
        with remotedir.opened(self.settings) as folder:
            shardmap.write(folder, {**chains, stamp: chain})
        chains[stamp] = chain
        log.info(
            "full backup in %d shards (balance %.2f): %s",
            made.count,
            made.balance(),
            "; ".join(", ".join(map(str, pieces)) or "the rest" for pieces in made.pieces),
        )
        return chain

    def _record_set(
        self, chains: dict[int, ShardedChain], chain: ShardedChain, made: BackupSet, stamp: int
    ) -> None:
        """Every shard has made the set: it counts from now on. A full that duplicity made on
        its own in shard 0 (asked for an incremental, it found no chain to add to) begins a
        chain that keeps this one's split."""
        if made.time != stamp:
            raise DuplicityError(
                f"shard 0 made a set of {made.time}, the run asked for {stamp}: the set is not "
                "counted"
            )
        if made.kind == "full" and chain.full != stamp:
            chain = ShardedChain(stamp, chain.plan)
            chains[stamp] = chain
        chain.sets.append(stamp)
        with remotedir.opened(self.settings) as folder:
            shardmap.write(folder, chains)

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

    def _retain(
        self, target: Target, status: Status, chains: dict[int, ShardedChain]
    ) -> tuple[int, str | None]:
        """Keep the newest keep_full chains (complete ones: a sharded chain whose full not
        every shard made does not count); called only after a successful full, under the
        backup lock. The chains removed, and why none were when a reader holds them."""
        keep = self.settings.schedule.keep_full
        status = self._complete(status, chains)
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
            if not chains:
                self._run(["remove-all-but-n-full", str(keep), "--force", target.url], target)
            else:  # the same cut in every shard: the oldest full kept, by its time
                cutoff = status.chains[-keep].start
                shards = self._shard_targets(target, max(c.count for c in chains.values()))
                older = ["remove-older-than", str(cutoff), "--force"]
                run_all([partial(self._run, [*older, each.url], each) for each in shards])
                kept = {t: c for t, c in chains.items() if t >= cutoff}
                with remotedir.opened(self.settings) as folder:
                    shardmap.write(folder, kept)
        log.info("retention: removed %d chain(s), kept %d", excess, keep)
        return excess, None


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


def _summed(records: Iterable[dict[str, float]]) -> dict[str, float]:
    """The statistics of the shards' runs as one: counts and sizes add up, the elapsed time
    is the longest (they ran at once)."""
    total: dict[str, float] = {}
    for record in records:
        for key, value in record.items():
            if key == "ElapsedTime":
                total[key] = max(total.get(key, 0.0), value)
            else:
                total[key] = total.get(key, 0.0) + value
    return total


def _new_set(before: Status, after: Status) -> BackupSet:
    """The set a backup added: the one the cache names now and did not name before."""
    known = {(s.kind, s.time) for s in before.sets}
    added = [s for s in after.sets if (s.kind, s.time) not in known]
    if not added:
        raise DuplicityError("duplicity reported success but no new backup set appeared")
    return added[-1]
