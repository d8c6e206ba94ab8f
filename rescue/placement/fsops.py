"""The few file-system moves a restore is allowed: a rename that never replaces, attributes
read and put back, and the removal of a tree rescue made itself that never crosses a mount.

Why renameat2(RENAME_NOREPLACE): between the check that a name is free and the move onto it,
another process may create it; a plain rename would then silently replace that entry. With
NOREPLACE the kernel refuses instead, so no move of a restore can ever destroy anything.
"""

from __future__ import annotations

import base64
import ctypes
import errno
import os
import stat
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from rescue.exact import xattrs

_RENAME_NOREPLACE = 1
_AT_FDCWD = -100
_libc = ctypes.CDLL(None, use_errno=True)


def rename_noreplace(src: Path, dst: Path) -> None:
    """Move src to dst on one file system; FileExistsError if dst exists, EXDEV across mounts."""
    result = _libc.renameat2(
        _AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE
    )
    if result == 0:
        return
    code = ctypes.get_errno()
    if code == errno.EINVAL and not os.path.lexists(dst):
        os.rename(src, dst)  # a file system without the flag (rare): checked just before
        return
    raise OSError(code, os.strerror(code), str(src), None, str(dst))


def move_into(src: Path, dest: Path) -> None:
    """Move the tree src into the directory dest, both rescue's own staging on one file system
    (the shards of one restore): a name dest lacks moves whole, a directory both hold is
    merged in turn, and anything else stays in src (dest's copy wins: both came from one
    source). Every directory dest had keeps its times, which the renames would change."""
    st = os.lstat(dest)
    for entry in os.scandir(src):
        there = dest / entry.name
        if not os.path.lexists(there):
            rename_noreplace(Path(entry.path), there)
        elif entry.is_dir(follow_symlinks=False) and is_dir(os.lstat(there)):
            move_into(Path(entry.path), there)
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


@dataclass(frozen=True)
class Attrs:
    """What a merge changes on a directory it keeps: owner, mode, times and xattrs (ACLs
    among them). xattrs None: leave them as they are."""

    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int
    xattrs: dict[str, str] | None = None  # name -> base64 value

    @classmethod
    def of(cls, path: Path, with_xattrs: bool = False) -> Attrs:
        st = path.lstat()
        found = None
        if with_xattrs:
            raw = xattrs.read_all(str(path))
            found = {name: base64.b64encode(value).decode() for name, value in raw.items()}
        return cls(
            stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_atime_ns, st.st_mtime_ns, found
        )

    def apply(self, path: Path) -> None:
        if os.geteuid() == 0:
            os.chown(path, self.uid, self.gid, follow_symlinks=False)
        os.chmod(path, self.mode)
        if self.xattrs is not None:
            wanted = {name: base64.b64decode(value) for name, value in self.xattrs.items()}
            for name in set(xattrs.read_all(str(path))) - set(wanted):
                os.removexattr(path, name, follow_symlinks=False)
            for name, value in wanted.items():
                os.setxattr(path, name, value, follow_symlinks=False)
        os.utime(path, ns=(self.atime_ns, self.mtime_ns), follow_symlinks=False)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def is_dir(st: os.stat_result) -> bool:
    return stat.S_ISDIR(st.st_mode)


def is_empty_dir(path: Path) -> bool:
    with os.scandir(path) as entries:
        return next(entries, None) is None


class CrossesMount(OSError):
    """A tree rescue was removing holds a mount point: it is left as it is."""


def remove_own(path: Path) -> None:
    """Remove a tree that is rescue's to remove (its own staging and scratch directories, or
    what a recovery step empties by design): never through a symlink, never across a mount
    point (CrossesMount, with everything else removed)."""
    try:
        top = path.lstat()
    except FileNotFoundError:
        return
    if not is_dir(top):
        path.unlink()
        return
    blocked = _remove_below(path, top.st_dev)
    if blocked:
        raise CrossesMount(errno.EBUSY, f"{blocked} is a mount point: left in place", str(path))
    path.rmdir()


def _remove_below(directory: Path, device: int) -> Path | None:
    """Empty directory (one file system); the first mount point met, which is kept. An entry
    that vanishes meanwhile is already what was wanted: a process of the run may still be
    tidying up its own files (a gpg-agent removes its sockets as its home goes)."""
    blocked: Path | None = None
    with os.scandir(directory) as entries:
        children = list(entries)
    for entry in children:
        child = Path(entry.path)
        try:
            st = child.lstat()
            if not is_dir(st):
                child.unlink()
                continue
            if st.st_dev != device or os.path.ismount(child):
                blocked = blocked or child
                continue
            inner = _remove_below(child, device)
            if inner is not None:
                blocked = blocked or inner
                continue
            child.rmdir()
        except FileNotFoundError:
            continue
    return blocked


def usage(path: Path) -> int:
    """The room a tree takes on its file system (its allocated blocks), links not followed."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [*dirnames, *filenames]:
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def fs_of(path: Path) -> str:
    """The mount point of the file system that holds path."""
    real = Path(os.path.realpath(path))
    while not os.path.ismount(real) and real != real.parent:
        real = real.parent
    return str(real)


def _statvfs(path: Path) -> os.statvfs_result:
    """statvfs of path, or of its nearest existing parent (a restore's target may not exist)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return os.statvfs(path)


def free_bytes(path: Path) -> int:
    """Free space at path (or its nearest existing parent), as rescue can use it: root may
    also fill the blocks a file system reserves for root."""
    st = _statvfs(path)
    return (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize


def capacity_bytes(path: Path) -> int:
    """The room of the whole file system at path (or its nearest existing parent); 0 where the
    file system keeps no count (ramfs)."""
    st = _statvfs(path)
    return st.f_blocks * st.f_frsize


def inside(path: str, top: str) -> bool:
    """path is top or below it (both absolute and resolved)."""
    return path == top or path.startswith(top.rstrip("/") + "/")


def write_atomic(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Replace path with data (text is written as UTF-8) so a reader sees the old file or the
    whole new one, never a part (a scraper reading a half-written metrics file, a crash
    mid-write of a unit or a manifest): a temporary file of this run's own in the same
    directory, written and fsynced, then renamed over path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data.encode() if isinstance(data, str) else data)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
