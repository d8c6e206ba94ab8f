"""A sandbox for every test that could remove files outside its target (a forced restore once
deleted a whole /etc here): a private mount namespace whose root is a fresh tmpfs, with /usr,
the repository (and its venv) and the test's data bind-mounted read-only, entered by chroot.
Inside, `--to /` means the tmpfs, never this machine; the tmpfs dies with the namespace.

It starts as `unshare --mount --propagation private` running a setup script that ends in
`chroot ROOT sleep infinity`. Commands run inside with `nsenter --target PID --mount --root`;
the test reads the sandbox's files through /proc/PID/root, with lstat only (an absolute
symlink inside must never lead a read back out to this machine).

    with Sandbox(tmp_path, readonly=[data_dir]) as box:
        box.run(["mkdir", "/srv/x"])
        before = tree_state(box.root)
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from clirun import Run

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv/bin/python"
# What rescue writes for itself in the sandbox: its log, the duplicity cache, gpg's home, the
# registry of undo directories, and scratch space. tree_state leaves these out.
OWN_STATE = ("var/log", "var/cache/rescue", "var/lib/rescue", "root/.gnupg", "tmp", "proc", "dev")
_BOUND = ("usr", "dev", "proc")
_SETUP = r"""
set -eu
root="$1"; size="$2"; shift 2
mount -t tmpfs -o "size=$size,mode=0755" sandbox "$root"
cd "$root"
mkdir -p usr etc proc dev tmp root run srv opt var/tmp
mkdir -p var/log/rescue var/cache/rescue var/lib/rescue
chmod 1777 tmp var/tmp; chmod 0700 root
for link in bin sbin lib lib64; do
    if [ -L "/$link" ]; then ln -s "$(readlink "/$link")" "$link"; fi
done
mount --bind /usr usr && mount -o remount,bind,ro usr
mount --bind /dev dev && mount -o remount,bind,ro dev
mount -t proc proc proc
cp -a /etc/. etc/
for path in "$@"; do          # read-only binds at the same path: the repo, the test data
    mkdir -p "$root$path"
    mount --bind "$path" "$root$path" && mount -o remount,bind,ro "$root$path"
done
exec chroot "$root" /usr/bin/sleep infinity
"""


class Sandbox:
    """A tmpfs root in a private mount namespace; see the module docstring."""

    def __init__(self, work: Path, readonly: Iterable[Path] = (), size: str = "512m") -> None:
        self.mountpoint = work / "sandbox-root"  # stays empty on this machine's side
        self.readonly = [REPO, *(Path(p).resolve() for p in readonly)]
        self.size = size
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Sandbox:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                "unshare", "--mount", "--propagation", "private", "--",
                "sh", "-c", _SETUP, "sandbox", str(self.mountpoint), self.size,
                *map(str, self.readonly),
            ],
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while os.readlink(f"/proc/{self.proc.pid}/root") != str(self.mountpoint):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox did not start (exit {self.proc.returncode})")
            time.sleep(0.01)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        self.mountpoint.rmdir()

    @property
    def root(self) -> Path:
        """The sandbox's / as this process sees it (read with lstat only)."""
        assert self.proc is not None
        return Path(f"/proc/{self.proc.pid}/root")

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def run(
        self,
        argv: list[str],
        cwd: str = "/",
        env: dict[str, str] | None = None,
        timeout: float = 300,
        check: bool = False,
    ) -> Run:
        """argv inside the sandbox (its root, its mounts), stdin closed."""
        assert self.proc is not None
        environment = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "RESCUE_SANDBOX": "1",  # helper scripts that must only run inside check it
            **(env or {}),
        }
        # --wd without a directory: the sleeper's cwd, the sandbox's /. (nsenter's --wd=DIR
        # is resolved before the new root: it left commands in this machine's /.) The cd to
        # cwd happens inside, so a relative path can only mean a sandbox path.
        proc = subprocess.run(
            ["nsenter", f"--target={self.proc.pid}", "--mount", "--root", "--wd",
             "env", "-i", *(f"{k}={v}" for k, v in environment.items()),
             "sh", "-c", 'cd -- "$1" && shift && exec "$@"', "sandbox", cwd, *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )  # fmt: skip
        result = Run(proc.returncode, proc.stdout, proc.stderr)
        if check and result.code != 0:
            raise AssertionError(f"{argv} failed in the sandbox ({result.code}): {result.err}")
        return result

    def rescue(self, config: Path, *args: str, cwd: str = "/", timeout: float = 300) -> Run:
        """The real `rescue` command inside the sandbox, logging inside it."""
        return self.run(
            [str(PYTHON), "-m", "rescue", "--config", str(config),
             "--log-file", "/var/log/rescue/rescue.log", *args],
            cwd=cwd,
            timeout=timeout,
        )  # fmt: skip

    def python(self, *args: str, timeout: float = 600) -> Run:
        return self.run([str(PYTHON), *args], cwd=str(REPO), timeout=timeout)

    def state(self, skip: Iterable[str] = ()) -> dict[str, Entry]:
        """The whole sandbox as tree_state sees it, without the read-only binds, rescue's own
        state (OWN_STATE) and skip."""
        binds = [str(p).lstrip("/") for p in self.readonly]
        return tree_state(self.root, [*OWN_STATE, *_BOUND, *binds, *skip], follow_top=True)


Entry = tuple[object, ...]


def entry_state(path: Path, content: bool = True, follow: bool = False) -> Entry:
    """What a tree hash compares of one entry: type, mode, owner, size, mtime, the bytes of a
    file (as a digest), the target of a link or the device number of a node, and its xattrs
    (ACLs and capabilities among them)."""
    st = path.stat() if follow else path.lstat()
    kind = stat.S_IFMT(st.st_mode)
    extra: object = None
    if stat.S_ISREG(st.st_mode) and content:
        extra = hashlib.sha256(path.read_bytes()).hexdigest()
    elif stat.S_ISLNK(st.st_mode):
        extra = os.readlink(path)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        extra = st.st_rdev
    size = st.st_size if not stat.S_ISDIR(st.st_mode) else None
    try:
        names = sorted(os.listxattr(path, follow_symlinks=follow))
        found = tuple((n, os.getxattr(path, n, follow_symlinks=follow)) for n in names)
    except OSError:
        found = ()
    mode = stat.S_IMODE(st.st_mode)
    return (kind, mode, st.st_uid, st.st_gid, size, st.st_mtime_ns, extra, found)


def tree_state(top: Path, skip: Iterable[str] = (), follow_top: bool = False) -> dict[str, Entry]:
    """Every entry under top (relative path -> entry_state), never following a symlink and
    leaving out the paths in skip (relative to top) with everything below them. follow_top:
    top is a link to follow (/proc/PID/root)."""
    left_out = set(skip)
    found: dict[str, Entry] = {"": entry_state(top, follow=follow_top)}

    def walk(directory: Path, rel: str) -> None:
        with os.scandir(directory) as entries:
            names = sorted(e.name for e in entries)
        for name in names:
            child_rel = f"{rel}/{name}" if rel else name
            if child_rel in left_out or any(child_rel.startswith(s + "/") for s in left_out):
                continue
            child = directory / name
            found[child_rel] = entry_state(child)
            if stat.S_ISDIR(child.lstat().st_mode):
                walk(child, child_rel)

    if stat.S_ISDIR((top.stat() if follow_top else top.lstat()).st_mode):
        walk(top, "")
    return found


def differences(before: dict[str, Entry], after: dict[str, Entry]) -> set[str]:
    """The relative paths whose entry was added, removed or changed."""
    return {rel for rel in before.keys() | after.keys() if before.get(rel) != after.get(rel)}
