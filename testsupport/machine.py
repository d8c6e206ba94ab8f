"""The one QEMU launcher of the tests: a machine, its serial console, and commands run through it.

Every QEMU the tests start is a `Machine`: the ISO boots and VM scenarios (vm-tests/, tests/
test_iso.py), the source and recovered disks booted to their marker (bootdisk.boot_disk) and the
debootstrap guest that runs a script (vm.run_guest). In the spirit of the NixOS test driver,
kept small:
- `Machine(...)` describes disks (with virtio serial numbers, the stable ids recovery plans use),
  an optional CD-ROM, an optional direct kernel boot, BIOS or UEFI (OVMF) firmware, and QEMU user
  networking with `restrict=on` (or none): the guest reaches nothing but the guestfwd relays
  (relay.py here, one process per connection, to a server on 127.0.0.1); 9p shares of host
  directories.
- The serial console goes to a Unix socket, which a thread reads into `console.log`, the one
  place every wait reads; it survives the test and QEMU. Not QEMU's own chardev logfile: under
  load (the socket full) it was seen to drop and repeat bytes the guest sent only once.
- `wait_for(pattern)` reads the console until the pattern shows, failing fast on words that mean
  the boot failed, on QEMU's exit, and on the timeout, naming the log with its last lines.
- `execute(command)` runs a command in the guest's root shell on the console (the source VM's
  vmtest-shell unit, or the rescue ISO's shell) with a marker protocol: the command goes in
  base64; its exit code comes back after a random nonce, then its output in base64 with a
  sha256, so neither the terminal's echo nor a garbled character can fake a result.
- The machine is killed on leaving the `with` block, whatever happened; the logs stay in logdir
  (the console log where the caller names it), the serial socket lives in a short private
  directory (a Unix socket path may not exceed 107 bytes, a pytest tmp_path can).

The accelerator is KVM only if a short boot under KVM shows the kernel's first words (KVM hangs
on this host): probed once per host boot and remembered in /run.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

RELAY = Path(__file__).resolve().parent / "relay.py"
ACCEL_FILE = Path("/run/rescue-vm-tests/accel")
OUTPUT_TRIES = 5
GUEST_SERVER = "10.0.2.100"  # where the guest finds the relayed servers
# Words on the console that mean the boot failed: wait_for fails at once instead of at its timeout.
FATAL = (
    "Kernel panic",
    "Dropping to a shell",
    "Gave up waiting for root",
    "error: no such device",
    "grub rescue>",
    "No bootable device",
    "You are in emergency mode",
    "Cannot open access to console",
)
ISO_FATAL = ("Unable to find a medium containing a live file system",)
# OVMF's words for a disk it cannot boot. The disk is its first boot option (bootindex=0), so the
# first "failed to load" is this disk's; OVMF then falls back to its UEFI shell and waits there
# for ever. OVMF builds without a shell print the last one instead.
UEFI_FATAL = (
    "BdsDxe: failed to load Boot",
    "UEFI Interactive Shell",
    "No bootable option or device was found",
)
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


@dataclass
class Disk:
    path: Path
    serial: str | None = None
    snapshot: bool = False  # writes go to a throw-away overlay
    bootindex: int | None = None


@dataclass
class Share:
    """A host directory the guest mounts over 9p (`mount -t 9p -o trans=virtio TAG ...`)."""

    path: Path
    tag: str
    readonly: bool = False


@dataclass
class Forward:
    """A guestfwd: guest_port on GUEST_SERVER reaches 127.0.0.1:host_port."""

    guest_port: int
    host_port: int


def accelerator(kernel: Path) -> str:
    """ "kvm" if a guest kernel gets going under KVM within 30 s, else "tcg"; probed once."""
    if ACCEL_FILE.exists():
        return ACCEL_FILE.read_text().strip()
    choice = "tcg"
    if Path("/dev/kvm").exists():
        argv = ["qemu-system-x86_64", "-accel", "kvm", "-m", "256", "-display", "none",
                "-no-reboot", "-nic", "none", "-serial", "stdio", "-kernel", str(kernel),
                "-append", "console=ttyS0 panic=-1"]  # fmt: skip
        try:
            out = subprocess.run(argv, capture_output=True, timeout=30).stdout
            if b"Linux version" in out:
                choice = "kvm"
        except subprocess.TimeoutExpired:
            pass
    ACCEL_FILE.parent.mkdir(parents=True, exist_ok=True)
    ACCEL_FILE.write_text(choice + "\n")
    return choice


class Machine:
    """One QEMU VM; use it as a context manager."""

    def __init__(
        self,
        name: str,
        logdir: Path,
        *,
        disks: list[Disk] | None = None,
        cdrom: Path | None = None,
        kernel: tuple[Path, Path, str] | None = None,
        firmware: str = "bios",
        forwards: list[Forward] | None = None,
        host_forwards: dict[int, int] | None = None,
        network: bool = True,
        shares: list[Share] | None = None,
        memory_mib: int = 2048,
        accel: str = "tcg",
        fatal: tuple[str, ...] | None = None,
        console_log: Path | None = None,
    ) -> None:
        """fatal replaces the words that fail a wait (FATAL, ISO_FATAL and, for UEFI,
        UEFI_FATAL); console_log replaces logdir/NAME.console.log."""
        self.name = name
        self.logdir = logdir
        self.disks = disks or []
        self.cdrom = cdrom
        self.kernel = kernel
        self.firmware = firmware
        self.forwards = forwards or []
        self.host_forwards = host_forwards or {}  # 127.0.0.1:host port -> guest port
        self.network = network
        self.shares = shares or []
        self.memory_mib = memory_mib
        self.accel = accel
        self.console_log = console_log or logdir / f"{name}.console.log"
        self.qemu_log = logdir / f"{name}.qemu.log"
        self.socket_dir: Path | None = None
        default_fatal = FATAL + ISO_FATAL + (UEFI_FATAL if firmware == "uefi" else ())
        self.fatal = default_fatal if fatal is None else fatal
        self.proc: subprocess.Popen[bytes] | None = None
        self.serial: socket.socket | None = None
        self._drainer: threading.Thread | None = None
        self.started = 0.0
        self._seen = 0  # console offset already searched by wait_for

    @property
    def socket_path(self) -> Path:
        """The serial console's Unix socket (in a private directory made by start())."""
        assert self.socket_dir is not None, "the machine is not started"
        return self.socket_dir / "serial.sock"

    def argv(self) -> list[str]:
        """The QEMU command line."""
        argv = ["qemu-system-x86_64", "-accel", self.accel, "-m", str(self.memory_mib),
                "-smp", "2", "-display", "none", "-monitor", "none", "-no-reboot",
                # wait=on: the guest starts once the driver is connected, so nothing is lost.
                "-chardev", f"socket,id=serial0,path={self.socket_path},server=on,wait=on",
                "-serial", "chardev:serial0"]  # fmt: skip
        if self.firmware == "uefi":
            missing = [str(path) for path in (OVMF_CODE, OVMF_VARS) if not path.exists()]
            if missing:
                raise RuntimeError(
                    f"a UEFI boot needs OVMF, but {', '.join(missing)} is missing: "
                    "apt-get install ovmf"
                )
            variables = self.logdir / f"{self.name}.OVMF_VARS.fd"
            if not variables.exists():
                shutil.copyfile(OVMF_VARS, variables)
            argv += ["-drive", f"if=pflash,format=raw,file={OVMF_CODE},readonly=on",
                     "-drive", f"if=pflash,format=raw,file={_option(variables)}"]  # fmt: skip
        for number, disk in enumerate(self.disks):
            drive = f"file={_option(disk.path)},if=none,id=disk{number},format=raw"
            device = f"virtio-blk-pci,drive=disk{number}"
            drive += ",snapshot=on" if disk.snapshot else ""
            device += f",serial={disk.serial}" if disk.serial else ""
            device += f",bootindex={disk.bootindex}" if disk.bootindex is not None else ""
            argv += ["-drive", drive, "-device", device]
        if self.cdrom is not None:
            # First in the boot order, unless the kernel is given (it boots first then).
            boot = "" if self.kernel is not None else ",bootindex=0"
            argv += ["-drive", f"file={_option(self.cdrom)},if=none,id=cd0,media=cdrom,readonly=on"]
            if self.firmware == "uefi":
                # On SATA (AHCI): booted with -kernel under OVMF, the guest kernel found no
                # drive on the legacy IDE controller, so live-boot found no medium.
                argv += [
                    "-device",
                    "ahci,id=ahci0",
                    "-device",
                    f"ide-cd,drive=cd0,bus=ahci0.0{boot}",
                ]
            else:
                argv += ["-device", f"ide-cd,drive=cd0{boot}"]
        if self.kernel is not None:
            vmlinuz, initrd, append = self.kernel
            argv += ["-kernel", str(vmlinuz), "-initrd", str(initrd), "-append", append]
        if self.network:
            netdev = "user,id=net0,restrict=on"
            for forward in self.forwards:
                netdev += (
                    f",guestfwd=tcp:{GUEST_SERVER}:{forward.guest_port}-cmd:"
                    f"/usr/bin/python3 {RELAY} 127.0.0.1 {forward.host_port}"
                )
            for host_port, guest_port in self.host_forwards.items():
                netdev += f",hostfwd=tcp:127.0.0.1:{host_port}-:{guest_port}"
            argv += ["-netdev", netdev, "-device", "virtio-net-pci,netdev=net0"]
        else:
            argv += ["-nic", "none"]
        for share in self.shares:
            virtfs = f"local,path={_option(share.path)},mount_tag={share.tag},security_model=none"
            argv += ["-virtfs", virtfs + (",readonly=on" if share.readonly else "")]
        return argv

    def start(self) -> None:
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        self.console_log.write_bytes(b"")
        self._seen = 0
        self.socket_dir = Path(tempfile.mkdtemp(prefix="rescue-qemu-"))
        with self.qemu_log.open("ab") as qemu_log:
            qemu_log.write(("$ " + " ".join(self.argv()) + "\n").encode())
            qemu_log.flush()
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=qemu_log, stderr=qemu_log
            )
        self.started = time.monotonic()
        deadline = self.started + 30
        while self.serial is None:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(str(self.socket_path))
                self.serial = sock
            except OSError:
                sock.close()
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(self._failure("QEMU did not start")) from None
                time.sleep(0.2)
        # Unread, the socket fills and stalls the guest: a thread reads it into the log.
        self._drainer = threading.Thread(target=self._drain, args=(self.serial,), daemon=True)
        self._drainer.start()

    def _drain(self, sock: socket.socket) -> None:
        """Append what the console sends to the console log, until the socket closes."""
        with self.console_log.open("ab") as log:
            try:
                while chunk := sock.recv(65536):
                    log.write(chunk)
                    log.flush()
            except OSError:
                pass

    def _drained(self) -> None:
        """Once QEMU has exited: wait until the console log holds all the guest sent."""
        if self._drainer is not None:
            self._drainer.join(timeout=10)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def console(self) -> str:
        return self.console_log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float, *, fresh: bool = True) -> re.Match[str]:
        """The first match of pattern (a regex) in console output not yet searched (fresh) or in
        the whole console; fails on a fatal boot message, QEMU's exit or the timeout."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            exited = self.proc is None or self.proc.poll() is not None
            if exited:
                self._drained()
            text = self.console()
            found = regex.search(text, self._seen if fresh else 0)
            if found:
                self._seen = found.end()
                return found
            fatal = next((word for word in self.fatal if word in text), None)
            if fatal:
                raise RuntimeError(self._failure(f"the console shows {fatal!r}"))
            if exited:
                raise RuntimeError(self._failure(f"QEMU exited while waiting for {pattern!r}"))
            if time.monotonic() > deadline:
                raise TimeoutError(self._failure(f"no {pattern!r} after {timeout:.0f} s"))
            time.sleep(0.5)

    def send(self, text: str) -> None:
        """Type text on the serial console."""
        assert self.serial is not None, "the machine is not running"
        self.serial.sendall(text.encode())

    def sync_shell(self, timeout: float = 180) -> None:
        """Return once the guest's shell runs what is typed. A line typed while bash is still
        setting up the tty is lost even after its prompt shows (seen under OVMF), so a harmless
        printf is typed until its output comes back; the echo of the line cannot match, as it
        holds %s where the output holds the nonce."""
        deadline = time.monotonic() + timeout
        while True:
            nonce = secrets.token_hex(6)
            self.send(f"printf 'VMT-%s-SYNC\\n' {nonce}\n")
            try:
                self.wait_for(rf"VMT-{nonce}-SYNC", 10)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    def execute(self, command: str, timeout: float = 600) -> tuple[int, str]:
        """Run command in the guest's shell on the console; its exit code and output.

        The output comes back with its sha256: an emulated UART under a loaded host has been
        seen to garble a character now and then, so a result that does not match is fetched
        again (the file, not the command: that runs once)."""
        nonce = secrets.token_hex(6)
        encoded = base64.b64encode(command.encode()).decode()
        self.send(
            f'{{ eval "$(printf %s {encoded} | base64 -d)"; }} 2>&1 | tee /tmp/vmt.out; '
            f"rc=${{PIPESTATUS[0]}}; printf '\\nVMT-%s-END %s\\n' {nonce} \"$rc\"\n"
        )
        code = int(self.wait_for(rf"VMT-{nonce}-END (\d+)\r?\n", timeout)[1])
        for _ in range(OUTPUT_TRIES):
            nonce = secrets.token_hex(6)
            self.send(
                f"printf '\\nVMT-%s-OUT %s %s\\n' {nonce} "
                f'"$(sha256sum </tmp/vmt.out | cut -c1-64)" "$(base64 -w0 /tmp/vmt.out)"\n'
            )
            found = self.wait_for(rf"VMT-{nonce}-OUT (\S+) (\S*)\r?\n", 120)
            try:
                output = base64.b64decode(found[2], validate=True)
            except ValueError:
                continue
            if hashlib.sha256(output).hexdigest() == found[1]:
                return code, output.decode(errors="replace")
        raise RuntimeError(self._failure(f"the output of `{command}` came back garbled"))

    def succeed(self, command: str, timeout: float = 600) -> str:
        """execute(), which must exit 0."""
        code, output = self.execute(command, timeout)
        if code != 0:
            raise AssertionError(
                f"{self.name}: `{command}` exited {code}:\n{output[-3000:]}\n"
                f"(console log {self.console_log})"
            )
        return output

    def wait_for_shutdown(self, timeout: float) -> int:
        """QEMU's exit code once the guest powered off (-no-reboot: a reboot exits too)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            text = self.console()
            fatal = next((word for word in self.fatal if word in text), None)
            if fatal:
                raise RuntimeError(self._failure(f"the console shows {fatal!r}"))
            if time.monotonic() > deadline:
                raise TimeoutError(self._failure(f"still running after {timeout:.0f} s"))
            time.sleep(1)
        self._drained()
        return self.proc.returncode

    def kill(self) -> None:
        if self.serial is not None:
            self.serial.close()
            self.serial = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.socket_dir = None

    def _failure(self, reason: str) -> str:
        tail = "\n".join(self.console().splitlines()[-25:])
        return (
            f"{self.name}: {reason} ({self.elapsed():.0f} s in); console log {self.console_log}, "
            f"QEMU log {self.qemu_log}; last lines:\n{tail}"
        )

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.kill()  # a QEMU that never connected its console is killed too
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()


def _option(path: Path) -> str:
    """A path as the value of a QEMU option, where a comma would start the next key."""
    return str(path).replace(",", ",,")
