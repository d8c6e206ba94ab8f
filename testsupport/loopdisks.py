"""Loop disks for tests: a sparse image attached as /dev/loopN, always detached again.

Why the care: a leaked loop device outlives the test run and holds its image open, and on this
kind of host `losetup -P` makes no partition devices (see VM-NOTES), so partitions are added with
`partx`, and if the kernel still made no /dev node for them they are made here with mknod from
sysfs (and removed again by the same cleanup). Test-only code: it runs its tools directly with
subprocess, because sfdisk reads its script on stdin, which rescue.process.execute closes by design.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

SYS_BLOCK = Path("/sys/block")

# GPT partition type GUIDs that the tests' sfdisk scripts write.
BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
SWAP = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
LINUX_LVM = "E6D6D379-F507-44C2-A23C-238F2A3DF928"

# The tools every layout test module runs on its loop disks, each with its Debian package; a
# module's TOOLS adds what it runs besides (the `loops` fixture in conftest.py checks them).
LAYOUT_TOOLS = {
    "sfdisk": "fdisk",
    "partx": "util-linux",
    "blkid": "util-linux",
    "lsblk": "util-linux",
    "mkswap": "util-linux",
    "mkfs.ext4": "e2fsprogs",
}


def sh(*argv: str, input: str | None = None) -> str:
    """Run a tool, return its stdout; raise with its stderr if it fails."""
    result = subprocess.run(argv, input=input, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def loop_devices_of(directory: Path) -> list[str]:
    """`losetup -a` lines whose backing file is under directory: what a test may have leaked."""
    out = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(directory) in line]


# Partition nodes this module made with mknod, per loop device, so cleanup removes only those.
_made_nodes: dict[str, list[Path]] = {}


@contextlib.contextmanager
def loop_disk(path: Path, size: str) -> Iterator[str]:
    """A sparse image of size (truncate's syntax, e.g. "200M") attached as a loop device."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sh("truncate", "-s", size, str(path))
    device = sh("losetup", "--find", "--show", str(path)).strip()
    try:
        yield device
    finally:
        _detach(device)


@contextlib.contextmanager
def attached_image(path: Path, read_only: bool = False) -> Iterator[tuple[str, list[str]]]:
    """An existing disk image attached as a loop device, with its partitions exposed."""
    flags = ["--read-only"] if read_only else []
    device = sh("losetup", "--find", "--show", *flags, str(path)).strip()
    try:
        yield device, expose_partitions(device)
    finally:
        _detach(device)


def _detach(device: str) -> None:
    """Forget the partitions, remove the nodes made here, detach. Every step is attempted."""
    errors = []
    name = os.path.basename(device)
    if any(SYS_BLOCK.joinpath(name).glob(f"{name}p*")):
        with contextlib.suppress(RuntimeError):
            sh("partx", "-d", device)
    for node in _made_nodes.pop(device, []):
        with contextlib.suppress(FileNotFoundError):
            node.unlink()
    try:
        sh("losetup", "-d", device)
    except RuntimeError as exc:
        errors.append(str(exc))
    if errors:
        raise RuntimeError("; ".join(errors))


def partition(device: str, script: str) -> list[str]:
    """Write a partition table from an sfdisk script and make the kernel and /dev see it.

    Returns the partition device paths in number order.
    """
    sh("sfdisk", "--quiet", "--no-reread", "--wipe", "always", device, input=script)
    return expose_partitions(device)


def expose_partitions(device: str) -> list[str]:
    """Make the kernel and /dev see the partitions of a loop device (no udev, no losetup -P
    here); returns their device paths in number order."""
    name = os.path.basename(device)
    sys_dir = SYS_BLOCK / name
    if any(sys_dir.glob(f"{name}p*")):
        sh("partx", "-d", device)  # the kernel knew an older table: forget it first
    sh("partx", "-a", device)
    nodes = []
    for part in sorted(sys_dir.glob(f"{name}p*"), key=lambda p: int(p.name[len(name) + 1 :])):
        node = Path("/dev") / part.name
        if not node.exists():
            major, minor = (part / "dev").read_text().strip().split(":")
            os.mknod(node, 0o600 | stat.S_IFBLK, os.makedev(int(major), int(minor)))
            _made_nodes.setdefault(device, []).append(node)
        nodes.append(str(node))
    return nodes


def require_loop_disks(tools: dict[str, str]) -> None:
    """Skip where loop disks cannot exist; fail, naming the package, where a tool is missing.

    tools maps each program a test module runs to the Debian package that provides it.
    """
    import pytest

    if os.geteuid() != 0:
        pytest.skip("loop disks need root")
    if shutil.which("losetup") is None:
        pytest.skip("losetup is not installed")
    missing = missing_tools(*tools)
    if missing:
        packages = sorted({tools[t] for t in missing})
        pytest.fail(f"missing {', '.join(missing)}: apt-get install {' '.join(packages)}")


def need(*tools: str, package: str) -> None:
    """Fail, naming the package, when a test's extra tool is missing."""
    import pytest

    missing = missing_tools(*tools)
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: apt-get install {package}")


def missing_tools(*tools: str) -> list[str]:
    """The tools of this list that are not on PATH."""
    return [t for t in tools if shutil.which(t) is None]
