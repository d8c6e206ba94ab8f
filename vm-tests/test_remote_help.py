"""Remote help: `rescue.ssh=1` starts sshd in the rescue system with a one-time root password.

The ISO boots with `rescue.ssh=1`; the console shows the password and the host key fingerprints.
A colleague (paramiko here, through a QEMU host forward to 127.0.0.1) logs in with exactly that
password, checks the host key against the printed fingerprint, and runs rescue there. A wrong
password is refused. The password is not in the rescue system's logs.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import paramiko
import pytest
from machine import Machine
from servers import free_port

from rescue.live.console import READY_MARKER

pytestmark = pytest.mark.slow
APPEND = "boot=live components console=tty1 console=ttyS0,115200n8 rescue.ssh=1"


def _connect(port: int, password: str) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(
        "127.0.0.1", port, "root", password, timeout=30, allow_agent=False, look_for_keys=False
    )
    return client


def test_remote_help(iso: Path, iso_kernel: tuple[Path, Path], accel: str, tmp_path: Path) -> None:
    port = free_port()
    with Machine(
        "rescue-iso",
        tmp_path,
        cdrom=iso,
        kernel=(*iso_kernel, APPEND),
        host_forwards={port: 22},
        accel=accel,
    ) as vm:
        vm.wait_for(READY_MARKER, 600)
        found = vm.wait_for(r"one-time password ([a-z2-9]{4}(?:-[a-z2-9]{4}){3})", 300)
        password = found[1]
        printed = re.findall(r"host key \d+ (SHA256:\S+)", vm.console())
        assert printed, vm.console()[-2000:]
        with pytest.raises(paramiko.AuthenticationException):
            _connect(port, "not-the-password")
        client = _connect(port, password)
        try:
            key = client.get_transport().get_remote_server_key()  # type: ignore[union-attr]
            digest = hashlib.sha256(key.asbytes()).digest()
            assert "SHA256:" + base64.b64encode(digest).decode().rstrip("=") in printed
            command = f"rescue live show; grep -rl -- {password} /var/log /run/rescue/*.json"
            _, out, _ = client.exec_command(command + " || true")
            text = out.read().decode()
        finally:
            client.close()
        assert "ssh:     yes" in text, text
        assert "/var/log" not in text and "/run/rescue" not in text, f"password in a log: {text}"
