"""The cache of the images the tests build once per machine: boot disks and the guest image.

Why: a debootstrap build takes minutes, so its result is kept under /var/cache/rescue-vm in a
directory named by a hash of every input (the callers' keys). Two test processes (CI runs two)
may want the same image at once: one builds it under a lock on NAME.lock while the other waits
and then finds it. The build runs in a fresh work directory next to the entry and is renamed
into place only when complete, so a killed build never leaves an image that looks good; the
leftovers of one are removed under the lock, never through a mount or a loop device.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from loopdisks import loop_devices_of

CACHE = Path("/var/cache/rescue-vm")
MIRROR = "http://deb.debian.org/debian"


def cached_build(name: str, product: str, build: Callable[[Path], None]) -> Path:
    """CACHE/name/product, made first by build(work) if absent (work becomes CACHE/name)."""
    final = CACHE / name
    result = final / product
    if result.exists():
        return result
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be building the same image
        if result.exists():
            return result
        for stale in CACHE.glob(f"{name}.build-*"):
            _remove_work(stale)
        work = Path(tempfile.mkdtemp(prefix=f"{name}.build-", dir=CACHE))
        work.chmod(0o755)
        try:
            build(work)
            shutil.rmtree(final, ignore_errors=True)
            work.rename(final)
        except BaseException:
            with contextlib.suppress(RuntimeError):
                _remove_work(work, keep_log=True)
            raise
    return result


def run_logged(argv: list[str], log: Path) -> None:
    """Run a build step with its output appended to log; on failure, raise with its last lines."""
    with log.open("ab") as out:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    if result.returncode:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"{argv[0]} failed ({result.returncode}):\n" + "\n".join(tail))


def _remove_work(work: Path, keep_log: bool = False) -> None:
    """Delete a build directory, but never through a mount or with a loop device still on it."""
    if _mounts_under(work) or loop_devices_of(work):
        raise RuntimeError(f"{work} still has mounts or loop devices; release them by hand")
    if keep_log:  # keep build.log of a failed build for the post-mortem
        for child in work.iterdir():
            if child.name != "build.log":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    else:
        shutil.rmtree(work)


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below path, from /proc/self/mountinfo."""
    prefix = str(path.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[4])
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return found
