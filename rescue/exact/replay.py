"""Put back, after a restore, what the records hold: xattrs and ACLs, holes, exact times.

The order matters: duplicity has already set owners and modes (chown clears file capabilities,
so the xattrs come after it); the hard links are made first (their renames touch directories);
punching a hole changes a file's mtime, so the times come last, per file. What cannot be applied
is counted by kind, with the first reason, and never passes silently.

The top directory of the replayed tree (the root of a whole restore, each file system's root in
a recovery, merged into rather than made) is the one whose record is always applied: owner and
mode (where recorded) and times, never taken for a change. An entry added to it between the
walk and duplicity's read of it (on a live root, or the root of a file system recovery merges
into) gives the backup a later second than the record, and the top's own time is what the
records are kept for; `rescue verify --deep` compares it with the record accordingly.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rescue.exact import holes, xattrs
from rescue.exact.records import Record, decode_xattrs, relative

KINDS = ("xattr", "acl", "capability", "sparse", "time", "owner")
_TYPES = {"f": stat.S_ISREG, "d": stat.S_ISDIR, "l": stat.S_ISLNK}


@dataclass
class Failure:
    count: int = 0
    reason: str = ""


@dataclass
class Replayed:
    """Counts of what was put back, and of what could not be, by kind."""

    applied: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))  # paths
    failed: dict[str, Failure] = field(default_factory=dict)
    freed: int = 0  # bytes deallocated by hole punching
    absent: int = 0  # recorded paths the restore did not bring (not selected, or excluded)
    changed: int = 0  # paths newer in the backup than in their record: times left as restored

    def fail(self, kind: str, reason: str) -> None:
        failure = self.failed.setdefault(kind, Failure(reason=reason))
        failure.count += 1

    def warnings(self) -> list[str]:
        """One line per kind that could not be applied, with its count and first reason."""
        return [
            f"{kind}: {f.count} path(s) could not get their {_NOUN[kind]} ({f.reason})"
            for kind, f in sorted(self.failed.items())
        ]

    def summary(self) -> str:
        a = self.applied
        return (
            f"put back: xattrs on {a['xattr']} paths, ACLs on {a['acl']}, capabilities on "
            f"{a['capability']}, holes in {a['sparse']} sparse files "
            f"({self.freed / 1024**2:.0f} MiB kept free), exact times on {a['time']}"
        )


_NOUN = {
    "xattr": "extended attributes",
    "acl": "POSIX ACLs",
    "capability": "file capabilities",
    "sparse": "holes (the file stays fully allocated)",
    "time": "exact times",
    "owner": "owner and mode",
}


def _reason(exc: OSError) -> str:
    if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
        return "the file system does not support them"
    return exc.strerror or str(exc)


def mapped(records: Iterator[Record], prefix: str, dest: Path) -> Iterator[tuple[Record, Path]]:
    """The records at or below prefix, each with the path it was restored to under dest."""
    for record in records:
        inside = relative(record["p"], prefix)
        if inside is not None:
            yield record, dest / inside if inside else dest


def replay(
    records: Iterator[Record],
    prefix: str,
    dest: Path,
    punched: Collection[Path] = (),
    tops: Collection[Path] = (),
) -> Replayed:
    """Apply every record at or below the backup path prefix, restored at dest. punched: files
    whose mtime the hole puncher changed during the restore (see watch.HoleWatch); tops: other
    directories merged into like dest (the mount points of a recovery's other file systems)."""
    done = Replayed()
    for record, path in mapped(records, prefix, dest):
        try:
            st = path.lstat()
        except OSError:
            done.absent += 1
            continue
        check = _TYPES.get(record["t"])
        if check is not None and not check(st.st_mode):
            done.absent += 1  # something else now: the restore did not bring this one
            continue
        name = str(path)
        top = record["t"] == "d" and (path == dest or path in tops)  # a file's time is its own
        if top:
            _owner(name, record, st, done)
        _xattrs(name, record, done)
        if "s" in record and record["t"] == "f":
            _holes(name, record, st, done)
        _times(name, record, st, done, trusted=top or path in punched)
    return done


def _owner(path: str, record: Record, st: os.stat_result, done: Replayed) -> None:
    """A merged-into top's owner and mode, as recorded (chown first: it clears setgid). Owners
    only as root, as duplicity sets them: anyone else's restore keeps their own."""
    owner, mode = record.get("o"), record.get("M")
    try:
        if owner is not None and os.geteuid() == 0 and [st.st_uid, st.st_gid] != list(owner):
            os.chown(path, owner[0], owner[1], follow_symlinks=False)
        if mode is not None and record["t"] != "l":
            os.chmod(path, mode)
    except OSError as exc:
        done.fail("owner", _reason(exc))


def _xattrs(path: str, record: Record, done: Replayed) -> None:
    """Set every recorded xattr; each kind is counted once per path, applied or failed."""
    applied: set[xattrs.Kind] = set()
    failed: dict[xattrs.Kind, str] = {}
    for name, value in decode_xattrs(record).items():
        kind = xattrs.kind(name)
        try:
            os.setxattr(path, name, value, follow_symlinks=False)
            applied.add(kind)
        except OSError as exc:
            failed.setdefault(kind, _reason(exc))
    for kind in applied - failed.keys():
        done.applied[kind] += 1
    for kind, reason in failed.items():
        done.fail(kind, reason)


def _holes(path: str, record: Record, st: os.stat_result, done: Replayed) -> None:
    size, extents = record["s"]
    if st.st_size != size:
        return  # another version of the file: its recorded holes say nothing about this one
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except OSError as exc:
        done.fail("sparse", _reason(exc))
        return
    try:
        done.freed += holes.punch_zeros(fd, holes.holes_of([tuple(e) for e in extents], size))
        done.applied["sparse"] += 1
    except OSError as exc:
        done.fail("sparse", _reason(exc))
    finally:
        os.close(fd)


def _times(path: str, record: Record, st: os.stat_result, done: Replayed, trusted: bool) -> None:
    mtime = record.get("m")
    if mtime is None:
        return
    if record["t"] != "l" and not trusted and st.st_mtime_ns // 10**9 != mtime // 10**9:
        # The backup holds a newer version than the record (duplicity sets every time but a
        # symlink's, to the second): its time stays as restored.
        done.changed += 1
        return
    try:
        os.utime(path, ns=(record.get("a", mtime), mtime), follow_symlinks=False)
        done.applied["time"] += 1
    except OSError as exc:
        done.fail("time", _reason(exc))
