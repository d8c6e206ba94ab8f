"""Put a restored file or tree in place, over an existing one with `restore --force`.

Every restore goes to a staging directory beside the target (same file system, so moves are
renames) and is moved into place only when duplicity succeeded, so a failed restore never leaves
a half-written tree that looks like a good one. duplicity 3.x also refuses to restore into
anything that exists and is not an empty directory, even with its own --force, so a forced
restore is merged in: restored entries replace entries of
the same name, directories are merged, and entries the backup does not hold are kept. Where a
move would cross a mount point (a separate /boot under a restored root), it copies with
`cp -a`, which keeps owners, modes, links and device nodes.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from rescue import execute


def staging_dir(dest: Path, inside: bool = False) -> Path:
    """An empty private directory on dest's file system, for duplicity to restore into:
    beside dest, or inside it (dest must then be a directory, e.g. a mounted target root)."""
    parent = dest if inside else dest.parent
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".rescue-restore-", dir=parent))


def merge_into(staged: Path, dest: Path) -> None:
    """Move staged onto dest: replace files, merge directories, keep what only dest has."""
    if staged.is_dir() and not staged.is_symlink() and dest.is_dir() and not dest.is_symlink():
        # Read the restored attributes first: moving the entries out changes staged's mtime.
        restored = staged.lstat()
        for entry in sorted(os.listdir(staged)):
            merge_into(staged / entry, dest / entry)
        _copy_attributes(restored, dest)
        staged.rmdir()
        return
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    _move(staged, dest)


def _move(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        result = execute.run(["cp", "-a", "--", str(src), str(dst)])
        if result.returncode:
            raise OSError(f"cp -a {src} {dst} failed: {result.output}") from None
        if src.is_dir() and not src.is_symlink():
            shutil.rmtree(src)
        else:
            src.unlink()


def _copy_attributes(st: os.stat_result, dst: Path) -> None:
    """A merged directory takes the restored owner, mode and mtime."""
    if os.geteuid() == 0:
        os.chown(dst, st.st_uid, st.st_gid)
    os.chmod(dst, st.st_mode & 0o7777)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
