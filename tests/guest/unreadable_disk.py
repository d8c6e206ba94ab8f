"""Runs INSIDE the QEMU test guest (tests/test_unreadable_disk.py starts it): dry-run
recoveries, unattended and guided, where one of the two candidate disks fails its reads for real.

The failing disk: a device-mapper device "dying" on vdb whose first MiB maps linearly onto vdb
(readable, marked with a pattern) and whose every later sector is the `error` target (EIO),
as on a disk that is going. A loop device on top of it makes it a disk that rescue lists (its
list is lsblk's disks plus attached loop devices); its stable id is file:/dev/mapper/dying.
vdc is a good blank disk of the same size with the virtio serial the plan names. With both
usable, the mapping would be ambiguous (two equal disks are never guessed between), so a
mapping onto vdc shows that the failing disk was left out, not picked or guessed at.

The host shares its work directory at the same path (settings, plan, file destination) and the
project with its virtualenv, so the real `rescue` runs here as on a rescue system. Each run's
output is kept in the work directory for the host. Prints `RESULT name PASS` or
`RESULT name FAIL: reason` for setup, unattended, guided and untouched.
"""

from __future__ import annotations

import errno
import os
import site
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

# The kernel command line (rescuework=, rescuesrc=) sets these, lower case.
WORK = Path(os.environ["rescuework"]) / "recover"  # noqa: SIM112
VENV = Path(os.environ["rescuesrc"]) / ".venv"  # noqa: SIM112
RESCUE = str(VENV / "bin/rescue")
DYING = "/dev/mapper/dying"
GOOD = "/dev/vdc"
PATTERN = b"\xab" * (1 << 20)
READABLE_SECTORS = 2048  # the first MiB reads; every later sector fails
TIMEOUT = 1200  # seconds per run: Python and gpg under TCG are slow


def sh(*argv: str, stdin: str | None = None) -> str:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(argv)}: exit {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def make_dying_disk() -> str:
    """The failing device under a loop device; returns the loop device's path."""
    with open("/dev/vdb", "r+b") as disk:
        disk.write(PATTERN)
    sectors = int(sh("blockdev", "--getsz", "/dev/vdb"))
    table = (
        f"0 {READABLE_SECTORS} linear /dev/vdb 0\n"
        f"{READABLE_SECTORS} {sectors - READABLE_SECTORS} error\n"
    )
    sh("dmsetup", "create", "dying", "--noudevsync", stdin=table)
    sh("dmsetup", "mknodes", "dying")  # no udev runs here to make /dev/mapper/dying
    loop = sh("losetup", "--find", "--show", DYING).strip()
    with open(GOOD, "r+b") as disk:
        disk.write(PATTERN)
    return loop


def check_it_fails(loop: str) -> None:
    """The first MiB reads back; a read past it fails with EIO, as rescue's reads will."""
    fd = os.open(loop, os.O_RDONLY)
    try:
        assert os.pread(fd, len(PATTERN), 0) == PATTERN, "the first MiB does not read back"
        try:
            os.pread(fd, 4096, len(PATTERN))
        except OSError as exc:
            assert exc.errno == errno.EIO, f"expected EIO, got {exc!r}"
        else:
            raise AssertionError(f"{loop} read past its first MiB without an error")
    finally:
        os.close(fd)
    # For the record: blkid 2.38 takes EIO for "nothing here" (exit 2, no output).
    probe = subprocess.run(["blkid", "-p", loop], capture_output=True, text=True)
    print(f"blkid -p {loop}: exit {probe.returncode}: {probe.stdout + probe.stderr!r}", flush=True)


def check_output(screen: str, loop: str) -> None:
    """The failing disk is named unusable with the reason, and the recovery maps onto vdc."""
    start = f"WARNING: {loop} cannot be read"
    warnings = [start + ln.split(start, 1)[1].rstrip() for ln in screen.splitlines() if start in ln]
    assert warnings, f"no '{start}' line"
    assert "left out of the mapping" in warnings[0], warnings[0]
    assert f"ERASE {GOOD} (for " in screen, f"no 'ERASE {GOOD} (for ' line"
    assert f"ERASE {loop}" not in screen, f"the failing {loop} would be erased"
    assert "FAILS NOW" not in screen, "a step would fail"
    print(f"seen: {warnings[0]}", flush=True)


def unattended(loop: str) -> None:
    argv = [
        RESCUE,
        "--config", str(WORK / "rescue.toml"),
        "--log-file", str(WORK / "unattended.log"),
        "recover",
        "--plan", str(WORK / "plan.toml"),
        "--dry-run",
        "--work-dir", str(WORK / "work-unattended"),
    ]  # fmt: skip
    result = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT
    )
    (WORK / "unattended.out").write_text(result.stdout)
    (WORK / "unattended.err").write_text(result.stderr)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr.strip()[-300:]}"
    check_output(result.stdout, loop)


def guided(loop: str) -> None:
    # pexpect is a test tool in the project's virtualenv, not a package of the guest.
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site.addsitedir(str(VENV / "lib" / version / "site-packages"))
    import pexpect

    argv = [
        "--config", str(WORK / "rescue.toml"),
        "--log-file", str(WORK / "guided.log"),
        "recover",
        "--dry-run",
        "--work-dir", str(WORK / "work-guided"),
        "--target", f"file:{DYING}",
        "--target", "serial:RESCUE-GOOD",
        "--target-root", "/mnt/target",
    ]  # fmt: skip
    child = pexpect.spawn(
        RESCUE, argv, env={**os.environ, "TERM": "xterm"}, dimensions=(50, 200),
        encoding="utf-8", codec_errors="replace", timeout=TIMEOUT,
    )  # fmt: skip
    with (WORK / "guided.terminal").open("w") as terminal:
        child.logfile_read = terminal
        child.expect("Restore which backup set")
        child.send("\r")  # the default: the newest
        # A list of targets instead means no mapping was found: the failing disk is offered.
        if child.expect(["Use this mapping", "Target disk for"]) == 1:
            child.terminate(force=True)
            raise AssertionError("no mapping proposed; the failing disk is offered as a target")
        child.send("y")
        child.expect(pexpect.EOF)
        child.close()
    screen = (WORK / "guided.terminal").read_text()
    assert child.exitstatus == 0, f"exit {child.exitstatus} (signal {child.signalstatus})"
    check_output(screen, loop)


def untouched(loop: str) -> None:
    """A dry run writes nothing: the pattern is still on both disks."""
    for device in (loop, GOOD):
        with open(device, "rb") as disk:
            assert disk.read(len(PATTERN)) == PATTERN, f"{device}: the first MiB changed"


def run(name: str, test: Callable[[], None]) -> bool:
    start = time.monotonic()
    try:
        test()
    except Exception as exc:  # report every failure and go on with the next check
        traceback.print_exc()
        print(f"RESULT {name} FAIL: {type(exc).__name__}: {str(exc)[:400]}", flush=True)
        return False
    print(f"took {time.monotonic() - start:.0f}s: {name}", flush=True)
    print(f"RESULT {name} PASS", flush=True)
    return True


def main() -> int:
    # The kernel logs every failed read; on the serial console it would split RESULT lines.
    sh("dmesg", "--console-level", "emerg")
    holder: list[str] = []

    def setup() -> None:
        holder.append(make_dying_disk())
        check_it_fails(holder[0])

    results = [run("setup", setup)]
    if results[0]:
        loop = holder[0]
        results.append(run("unattended", lambda: unattended(loop)))
        results.append(run("guided", lambda: guided(loop)))
        results.append(run("untouched", lambda: untouched(loop)))
    (WORK / "dmesg.txt").write_text(sh("dmesg"))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
