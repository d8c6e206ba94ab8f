"""Running duplicity: its command line, environment, secrets, stall watchdog and failures.

Every run goes through execute.run, so secrets stay in the environment, and every failure is
turned into one RescueError by `failures.classify`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from rescue.backup import duplog, history, remotedir, shardmap
from rescue.backup.cache import cache_name, cached_status
from rescue.backup.destinations import Target, display_url, prepare
from rescue.backup.failures import classify
from rescue.backup.lock import reading
from rescue.backup.results import ProgressCallback
from rescue.backup.sets import BackupSet, Chain, Status, parse_collection_status
from rescue.backup.shardmap import ShardedChain
from rescue.config import Settings
from rescue.errors import (
    CorruptVolumeError,
    DuplicityError,
    LockedError,
    NoSpaceError,
    RescueError,
    StalledError,
)
from rescue.placement.fsops import free_bytes, fs_of, usage
from rescue.placement.scratch import run_dir
from rescue.process import execute, grandchildren, lifetime
from rescue.units import human_size


def _duplicity() -> str:
    """The duplicity installed beside this Python (the pinned one), else the one on PATH."""
    beside = Path(sys.executable).parent / "duplicity"
    return str(beside) if beside.exists() else "duplicity"


DUPLICITY = _duplicity()


class DuplicityRunner:
    """One configured backup's destination, and duplicity run against it: the base that the
    engine's listing (rescue.backup.listing), restores (rescue.backup.restoring) and backups
    (rescue.backup.engine) share."""

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
        (the drill's throwaway one, rescue.process.gpghome), else gpg's default. A throwaway home
        for every run would end each run's agent, but starting an agent costs about a second per
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
        level = self.settings.duplicity.compress_level
        if level is not None:  # one argv item: a separate value starting with - is refused
            args.append(f"--gpg-options=--compress-level={level}")
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
            # in this run's scratch directory: what a killed run leaves, the next one removes
            "--tempdir",
            str(run_dir()),
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
                    env={**env, **shims, **target.env},
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
        """The sets as the last duplicity run left them in the cache (see rescue.backup.cache)."""
        return cached_status(self.archive_dir / cache_name(target.url), target.display)

    # -- status ------------------------------------------------------------------------------

    def _status(self, target: Target) -> Status:
        parser = self._run(["collection-status", target.url], target)
        records = [r for r in parser.records if r.code == duplog.INFO_COLLECTION_STATUS]
        return parse_collection_status(records[-1].extra if records else [], target.display)

    # -- shards (rescue.backup.shardmap) ------------------------------------------------------

    def _sharded(self) -> dict[int, ShardedChain]:
        """The destination's sharded chains by full time: none for a backup never sharded."""
        try:
            with remotedir.opened(self.settings, make=False) as folder:
                return shardmap.read(folder)
        except FileNotFoundError:  # no destination directory yet: nothing sharded either
            return {}
        except shardmap.ShardMapError as exc:
            where = display_url(self.settings)
            raise CorruptVolumeError(f"{exc} (at the destination {where})") from None

    @staticmethod
    def _shard_targets(target: Target, count: int) -> list[Target]:
        """The targets of shards 0..count-1: shard 0 is the destination itself."""
        return [
            target
            if k == 0
            else replace(
                target,
                url=shardmap.shard_url(target.url, k),
                display=f"{target.display.rstrip('/')}/{shardmap.shard_dir(k)}",
            )
            for k in range(count)
        ]

    @staticmethod
    def _chain_of(
        status: Status, backup_set: BackupSet, chains: dict[int, ShardedChain]
    ) -> ShardedChain | None:
        """The sharded chain backup_set belongs to, or None for a one-shard chain."""
        return chains.get(status.chains[backup_set.chain - 1].start) if chains else None

    @staticmethod
    def _complete(status: Status, chains: dict[int, ShardedChain]) -> Status:
        """status without the sets of sharded chains that not every shard completed: they
        count as incomplete, and nothing is ever restored from them."""
        if not chains:
            return status
        kept: list[Chain] = []
        dropped = 0
        for chain in status.chains:
            sharded = chains.get(chain.start)
            sets = [s for s in chain.sets if sharded is None or s.time in sharded.sets]
            dropped += len(chain.sets) - len(sets)
            if sets and sets[0].kind == "full":
                kept.append(Chain(chain.index, sets))
            else:
                dropped += len(sets)
        for number, chain in enumerate(kept, start=1):
            chain.index = number
            for s in chain.sets:
                s.chain = number
        return replace(status, chains=kept, incomplete=status.incomplete + dropped)
