"""Shared fixtures: real servers on 127.0.0.1, a throwaway GnuPG home and the sample tree.

The servers are session-scoped because starting sshd or pyftpdlib costs a moment and tests only
add files under their own tmp_path. A test that must disturb a server (new host key, restart)
builds its own from tests/servers.py instead of touching these. Every fixture stops what it
started in a `finally`, so a failing test leaves no daemon behind.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import FtpServer, GpgHome, SshServer, VsftpdServer

from rescue.backup.sampletree import make_sample_tree
from rescue.process import execute


@pytest.fixture(autouse=True)
def isolated_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no registered secrets: one test's passphrase must not mask (or, in
    argv, refuse) another test's data."""
    monkeypatch.setattr(execute, "_secrets", set())
    monkeypatch.setattr(execute, "_secret_variables", set())


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """OpenSSH sshd: key-only root login with `sshd.client_key`, SFTP enabled."""
    server = SshServer(tmp_path_factory.mktemp("sshd"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ftpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    """pyftpdlib FTP server: user "rescue" with a random password, files under `ftpd.root`."""
    server = FtpServer(
        tmp_path_factory.mktemp("ftpd"), user="rescue", password=secrets.token_urlsafe(16)
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ftpsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VsftpdServer]:
    """vsftpd with explicit FTPS required; `ftpsd.certfile` is its self-signed certificate."""
    server = VsftpdServer(tmp_path_factory.mktemp("ftpsd"))
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def gpg_home() -> Iterator[GpgHome]:
    """A fresh GNUPGHOME with one key pair (no passphrase); `gpg_home.fingerprint` names it."""
    home = GpgHome()
    try:
        yield home
    finally:
        home.close()


@pytest.fixture
def sample_tree(tmp_path: Path) -> Path:
    """tmp_path / "src" filled by rescue.backup.sampletree.make_sample_tree (seed 0)."""
    root = tmp_path / "src"
    make_sample_tree(root)
    return root


@pytest.fixture
def host_identity() -> Iterator[None]:
    """The recovery puts merged passwd/group files on this machine for a while: check that it
    gives the originals back, and restore them here whatever happens."""
    saved = {name: Path(f"/etc/{name}").read_bytes() for name in ("passwd", "group")}
    try:
        yield
        for name, data in saved.items():
            assert Path(f"/etc/{name}").read_bytes() == data, f"/etc/{name} was not put back"
    finally:
        for name, data in saved.items():
            if Path(f"/etc/{name}").read_bytes() != data:
                Path(f"/etc/{name}").write_bytes(data)
