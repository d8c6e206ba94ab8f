"""One writer per destination: a lock at the destination itself, and the host its backups
belong to.

Why at the destination: two archive dirs (two hosts with copied settings, or one host with a
second cache) share no local lock, and two duplicity runs writing one chain at once made
duplicate set names and a broken chain that later incrementals built on. So every backup holds:

- `rescue.lock/`, a directory made with mkdir, the one "create if absent" that a local disk,
  SFTP and FTP all do atomically; beside it `rescue.lock.json` names the holder: host, machine
  id, pid, start and a lease that a thread renews while the backup runs. A lock whose lease ran
  out, or whose holder is this machine and no longer runs, is stale and taken over; any other
  is refused with one line (exit 5). `rescue unlock` removes a lock a dead run left.
- `rescue-host.json`, written by the first backup: the host (hostname and machine id) whose
  backups these are. A backup from another machine is refused with one line that names both
  (exit 25): each host needs a path of its own. `rescue unlock --claim` hands the destination
  to this machine (a reinstalled host has a new machine id; a recovered one keeps its own).

Readers (restore, files, verify, drill) take no lock: they keep working while a backup runs.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from rescue.backup.destinations import display_url
from rescue.backup.remotedir import RemoteDir, opened
from rescue.config import Settings
from rescue.errors import LockedError, OtherHostError

LOCK_DIR = "rescue.lock"
LOCK_FILE = "rescue.lock.json"
HOST_FILE = "rescue-host.json"
SETS_FILE = "rescue-sets.json"  # the oldest and newest set there, written by every backup
LEASE_SECONDS = 900.0  # renewed every third of it while the backup runs
MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))

log = logging.getLogger("rescue.backup.destlock")


@dataclass(frozen=True)
class Host:
    hostname: str
    machine_id: str

    @classmethod
    def this(cls) -> Host:
        for path in MACHINE_ID_FILES:
            try:
                found = path.read_text().strip()
            except OSError:
                continue
            if found:
                return cls(socket.gethostname(), found)
        return cls(socket.gethostname(), f"hostname:{socket.gethostname()}")

    def __str__(self) -> str:
        return f"{self.hostname} (machine id {self.machine_id[:12]})"


@dataclass
class Holder:
    hostname: str
    machine_id: str
    pid: int
    started: str
    lease_until: float
    what: str
    token: str
    sets: tuple[int, int] | None = None  # (oldest, newest) after the run: written on release

    @property
    def host(self) -> Host:
        return Host(self.hostname, self.machine_id)

    def describe(self) -> str:
        until = dt.datetime.fromtimestamp(self.lease_until).strftime("%Y-%m-%d %H:%M:%S")
        return (
            f"{self.host}, pid {self.pid}, a {self.what} started {self.started}, "
            f"lease until {until}"
        )

    def stale(self, here: Host, now: float) -> str | None:
        """Why this holder no longer holds the lock, or None."""
        if now > self.lease_until:
            return "its lease ran out"
        if self.machine_id == here.machine_id and not _running_rescue(self.pid):
            return f"pid {self.pid} no longer runs here"
        return None


def _running_rescue(pid: int) -> bool:
    try:
        argv = psutil.Process(pid).cmdline()
    except psutil.Error:
        return False
    return any("rescue" in os.path.basename(a) or a == "rescue" for a in argv[:3])


def _read_holder(folder: RemoteDir) -> Holder | None:
    raw = folder.read(LOCK_FILE)
    if raw is None:
        return None
    try:
        return Holder(**json.loads(raw))
    except (ValueError, TypeError):
        return None


def read_host(folder: RemoteDir) -> Host | None:
    raw = folder.read(HOST_FILE)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return Host(data["hostname"], data["machine_id"])
    except (ValueError, KeyError, TypeError):
        return None


def write_host(folder: RemoteDir, host: Host) -> None:
    record = {**asdict(host), "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    folder.write(HOST_FILE, (json.dumps(record) + "\n").encode())


def check_host(folder: RemoteDir, settings: Settings, here: Host) -> None:
    """Refuse another host's destination; a destination without a record becomes ours."""
    owner = read_host(folder)
    if owner is None:
        write_host(folder, here)
        return
    if owner.machine_id != here.machine_id:
        dest = settings.destination
        raise OtherHostError(
            f"{display_url(settings)} holds the backups of {owner}, and this is {here}: give "
            f'each host a path of its own (path = "{dest.path.rstrip("/")}/{here.hostname}"); '
            f"if this machine is {owner.hostname} reinstalled, run `rescue unlock --claim` once"
        )


@contextmanager
def held(settings: Settings, what: str = "backup") -> Iterator[Holder]:
    """The destination's lock for the block (after its host check), renewed while it runs."""
    here = Host.this()
    me = Holder(
        here.hostname,
        here.machine_id,
        os.getpid(),
        dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        time.time() + LEASE_SECONDS,
        what,
        secrets.token_hex(8),
    )
    with opened(settings) as folder:
        check_host(folder, settings, here)
        _acquire(folder, settings, me, here)
    stop = threading.Event()
    renewer = threading.Thread(
        target=_renew, args=(settings, me, stop), name="rescue-lock-lease", daemon=True
    )
    renewer.start()
    try:
        yield me
    finally:
        stop.set()
        renewer.join()
        _release(settings, me)


def _acquire(folder: RemoteDir, settings: Settings, me: Holder, here: Host) -> None:
    for _ in range(3):
        if folder.make_dir(LOCK_DIR):
            folder.write(LOCK_FILE, _encode(me))
            return
        other = _holder_of(folder)
        if other is None and folder.make_dir(LOCK_DIR):
            # The holder released it while this run looked: it was writing when this one came.
            # (make_dir is the one test of a directory every protocol has; listing() names
            # files only, so a lock dir whose holder was killed before it wrote its record
            # was taken for this case, and refused every later run.)
            folder.remove_dir(LOCK_DIR)
            raise LockedError(
                f"{display_url(settings)} was locked by another backup, which has just ended; "
                "run again to make the next backup"
            )
        why = "it names no holder" if other is None else other.stale(here, time.time())
        if why is None:
            assert other is not None
            raise LockedError(
                f"{display_url(settings)} is locked by {other.describe()}: one backup at a "
                "time may write there; if that run is dead, `rescue unlock` removes the lock"
            )
        log.warning("taking over the lock at %s: %s", display_url(settings), why)
        folder.delete(LOCK_FILE)
        folder.remove_dir(LOCK_DIR)
    raise LockedError(f"{display_url(settings)}: another run took the lock first; try again")


def _holder_of(folder: RemoteDir) -> Holder | None:
    """The holder of a lock just found; a second look if its record is not written yet."""
    for _ in range(3):
        found = _read_holder(folder)
        if found is not None:
            return found
        time.sleep(1)
    return None


def _encode(holder: Holder) -> bytes:
    return (json.dumps(asdict(holder)) + "\n").encode()


def _renew(settings: Settings, me: Holder, stop: threading.Event) -> None:
    while not stop.wait(LEASE_SECONDS / 3):
        try:
            with opened(settings) as folder:
                current = _read_holder(folder)
                if current is None or current.token != me.token:
                    log.error("the lock at %s was taken away from this run", display_url(settings))
                    return
                me.lease_until = time.time() + LEASE_SECONDS
                folder.write(LOCK_FILE, _encode(me))
        except Exception as exc:  # the backup goes on; the next renewal tries again
            log.warning("cannot renew the lock at %s: %s", display_url(settings), exc)


def _release(settings: Settings, me: Holder) -> None:
    try:
        with opened(settings) as folder:
            current = _read_holder(folder)
            if current is not None and current.token == me.token:
                if me.sets is not None:
                    oldest, newest = me.sets
                    record = {"oldest": oldest, "newest": newest}
                    folder.write(SETS_FILE, (json.dumps(record) + "\n").encode())
                folder.delete(LOCK_FILE)
                folder.remove_dir(LOCK_DIR)
    except Exception as exc:  # a lock left behind is stale once this pid is gone
        log.warning("cannot release the lock at %s: %s", display_url(settings), exc)


def sets_there(settings: Settings) -> tuple[int, int] | None:
    """(oldest, newest) set time at the destination as its last backup left it, or None: a
    cache that knows other sets is stale (another cache wrote there since, or retention ran)."""
    try:
        with opened(settings, make=False) as folder:
            raw = folder.read(SETS_FILE)
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw) if raw else None
        return (int(data["oldest"]), int(data["newest"])) if data else None
    except (ValueError, KeyError, TypeError):
        return None


def unlock(settings: Settings, claim: bool = False) -> list[str]:
    """Remove a lock a dead run left (never a live run of this machine's); with claim, make
    this machine the destination's host. What was done, as lines."""
    here = Host.this()
    done = []
    with opened(settings) as folder:
        holder = _read_holder(folder)
        if holder is not None and holder.stale(here, time.time()) is None and holder.host == here:
            raise LockedError(
                f"pid {holder.pid} on this machine still runs a {holder.what} that holds "
                f"the lock at {display_url(settings)}: wait for it, or stop it first"
            )
        folder.delete(LOCK_FILE)
        folder.remove_dir(LOCK_DIR)
        done.append(
            f"removed the lock of {holder.describe()}"
            if holder is not None
            else f"{display_url(settings)} held no lock record (an empty lock is gone too)"
        )
        if claim:
            before = read_host(folder)
            write_host(folder, here)
            done.append(
                f"the backups at {display_url(settings)} now belong to {here}"
                + (f" (they belonged to {before})" if before and before != here else "")
            )
    return done
