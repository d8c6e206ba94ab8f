"""The test servers really work: the integration tests stand on these fixtures."""

from __future__ import annotations

import base64
import ftplib
import hashlib
import io
import os
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import paramiko
import psutil
import pytest
import servers
from servers import (
    FTP_PASSWORD_ENV,
    HOST,
    FtpServer,
    GpgHome,
    SshServer,
    VsftpdServer,
    free_port,
    serving,
    wait_for_port,
)

# gpg reads the passphrase from its stdin, never from argv.
LOOPBACK = ("gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0")


def _fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's "SHA256:<base64 without padding>" form of a server key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _connect(server: SshServer) -> paramiko.Transport:
    """Open a transport, check the host key *before* authenticating, then log in with the key."""
    transport = paramiko.Transport(("127.0.0.1", server.port))
    try:
        transport.start_client(timeout=10)
        assert _fingerprint(transport.get_remote_server_key()) == server.host_key_fingerprint
        key = paramiko.Ed25519Key.from_private_key_file(str(server.client_key))
        transport.auth_publickey(server.user, key)
        assert transport.is_authenticated()
    except BaseException:
        transport.close()
        raise
    return transport


def _server_fingerprint(port: int) -> str:
    transport = paramiko.Transport(("127.0.0.1", port))
    try:
        transport.start_client(timeout=10)
        return _fingerprint(transport.get_remote_server_key())
    finally:
        transport.close()


# --- sshd ---


def test_sshd_key_login_and_sftp_round_trip(sshd: SshServer, tmp_path: Path) -> None:
    payload = os.urandom(300_000)
    local = tmp_path / "up.bin"
    local.write_bytes(payload)
    remote = tmp_path / "remote dir" / "on the server.bin"
    remote.parent.mkdir()
    back = tmp_path / "down.bin"

    transport = _connect(sshd)
    try:
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        sftp.put(str(local), str(remote))
        assert remote.read_bytes() == payload
        sftp.get(str(remote), str(back))
        assert back.read_bytes() == payload
        sftp.close()
    finally:
        transport.close()
    assert "Accepted publickey for root" in sshd.log_text()


def test_sshd_refuses_passwords(sshd: SshServer) -> None:
    transport = paramiko.Transport(("127.0.0.1", sshd.port))
    try:
        transport.start_client(timeout=10)
        with pytest.raises(paramiko.BadAuthenticationType) as err:
            transport.auth_password("root", "anything")
        assert err.value.allowed_types == ["publickey"]
    finally:
        transport.close()


def test_sshd_listens_on_loopback_only(sshd: SshServer) -> None:
    assert f"ListenAddress 127.0.0.1\nPort {sshd.port}\n" in sshd.config_path.read_text()
    assert f"Server listening on 127.0.0.1 port {sshd.port}." in sshd.log_text()


def test_changed_host_key_after_restart(tmp_path: Path) -> None:
    """On a private server: the session one must keep its key for the other tests."""
    with serving(SshServer(tmp_path / "sshd")) as server:
        port, old = server.port, server.host_key_fingerprint
        assert _server_fingerprint(port) == old
        server.regenerate_host_key()
        server.restart()
        assert server.port == port
        new = server.host_key_fingerprint
        assert new != old
        assert _server_fingerprint(port) == new
        _connect(server).close()  # the client key still works
    assert not server.running


def test_stopped_server_frees_its_port(tmp_path: Path) -> None:
    """After the server stops, no process of it listens on its port. (Not "nothing answers on
    the port": another test process's server may take it at once, and CI runs two.)"""
    with serving(SshServer(tmp_path / "sshd")) as server:
        port = server.port
        assert _listening(server.config_path, port), "the check below would see nothing"
    assert _listening(server.config_path, port) == []


def test_a_port_taken_before_the_server_binds_it_is_picked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race CI met: free_port() gave a port that another process then took. Here the test
    itself is that other process (it listens on the port first, and free_port is made to hand it
    out once: a fake of the kernel's choice, which these helpers do not own). The server must
    notice that it is not the one listening, and start on another port."""
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    offered = iter([taken])
    real = servers.free_port
    monkeypatch.setattr(servers, "free_port", lambda: next(offered, None) or real())
    try:
        with serving(SshServer(tmp_path / "sshd")) as server:
            assert server.port != taken
            assert _listening(server.config_path, server.port)
            assert "Address already in use" in server.log_text()
    finally:
        squatter.close()


def _listening(config: Path, port: int) -> list[int]:
    """The pids of the processes run with this server's config that listen on port."""
    mine = {
        proc.info["pid"]
        for proc in psutil.process_iter(["pid", "cmdline"])
        if str(config) in " ".join(proc.info["cmdline"] or [])
    }
    return sorted(
        c.pid for c in psutil.net_connections("tcp")
        if c.pid in mine and c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
    )  # fmt: skip


# --- ftpd ---


@pytest.fixture
def ftp(ftpd: FtpServer) -> Iterator[ftplib.FTP]:
    client = ftplib.FTP()
    client.connect("127.0.0.1", ftpd.port, timeout=10)
    try:
        client.login(ftpd.user, ftpd.password)
        yield client
    finally:
        client.close()


def test_ftp_store_and_retrieve(ftpd: FtpServer, ftp: ftplib.FTP, tmp_path: Path) -> None:
    payload = os.urandom(200_000)
    name = f"{tmp_path.name}.bin"
    ftp.storbinary(f"STOR {name}", io.BytesIO(payload))
    assert (ftpd.root / name).read_bytes() == payload
    received = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", received.write)
    assert received.getvalue() == payload
    assert name in ftp.nlst()
    ftp.delete(name)
    assert not (ftpd.root / name).exists()


def test_ftp_wrong_password_is_refused(ftpd: FtpServer) -> None:
    client = ftplib.FTP()
    client.connect("127.0.0.1", ftpd.port, timeout=10)
    try:
        with pytest.raises(ftplib.error_perm, match=r"^530"):
            client.login(ftpd.user, ftpd.password + "x")
    finally:
        client.close()


def test_ftp_password_is_not_in_argv_nor_log(ftpd: FtpServer, ftp: ftplib.FTP) -> None:
    assert ftpd.pid is not None
    cmdline = Path(f"/proc/{ftpd.pid}/cmdline").read_bytes()
    environ = Path(f"/proc/{ftpd.pid}/environ").read_bytes()
    assert ftpd.password.encode() not in cmdline
    assert f"{FTP_PASSWORD_ENV}={ftpd.password}".encode() in environ.split(b"\0")
    ftp.voidcmd("NOOP")
    assert ftpd.password not in ftpd.log_text()


def test_ftp_restart_keeps_port(tmp_path: Path) -> None:
    with serving(FtpServer(tmp_path / "ftpd", password="a secret")) as server:
        port = server.port
        server.restart()
        assert server.port == port
        client = ftplib.FTP()
        client.connect("127.0.0.1", port, timeout=10)
        client.login("rescue", "a secret")
        client.quit()


def test_vsftpd_ftps_requires_tls_and_keeps_whole_uploads(tmp_path: Path) -> None:
    with serving(VsftpdServer(tmp_path / "vsftpd")) as server:
        plain = ftplib.FTP()
        plain.connect(HOST, server.port, timeout=10)
        with pytest.raises(ftplib.error_perm, match="530"):
            plain.login(server.user, server.password)  # no AUTH TLS: refused
        plain.close()
        context = ssl.create_default_context(cafile=str(server.certfile))
        client = ftplib.FTP_TLS(context=context)
        client.connect(HOST, server.port, timeout=10)
        client.login(server.user, server.password)
        client.prot_p()
        client.mkd("d")
        payload = os.urandom(1_100_000)
        client.storbinary("STOR d/blob", io.BytesIO(payload))
        client.quit()
        assert (server.root / "d/blob").read_bytes() == payload
    assert not server.root.exists()
    assert subprocess.run(["id", server.user], capture_output=True).returncode != 0


# --- gpg ---


def test_gpg_home_lists_its_key(gpg_home: GpgHome) -> None:
    assert len(gpg_home.fingerprint) == 40
    assert int(gpg_home.fingerprint, 16) >= 0
    assert gpg_home.home.stat().st_mode & 0o777 == 0o700
    out = subprocess.run(
        ["gpg", "--batch", "--with-colons", "--list-keys"],
        env={**os.environ, "GNUPGHOME": str(gpg_home.home)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"fpr:::::::::{gpg_home.fingerprint}:" in out
    assert "rescue test <test@example.invalid>" in out


def test_gpg_key_encrypts_and_decrypts_without_passphrase(gpg_home: GpgHome) -> None:
    encrypted = gpg_home.gpg("--armor", "--encrypt", "-r", gpg_home.fingerprint, input="hello")
    decrypted = gpg_home.gpg("--decrypt", input=encrypted.stdout)
    assert decrypted.stdout == "hello"


def test_gpg_passphrase_protected_key() -> None:
    secret = "correct horse battery staple"
    with GpgHome(passphrase=secret) as home:
        listed = home.gpg("--list-secret-keys", "--with-colons").stdout
        assert home.fingerprint in listed

        def sign(passphrase: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*LOOPBACK, "--sign", "--armor", "-u", home.fingerprint],
                env=home.env,
                input=passphrase + "\ndata",
                capture_output=True,
                text=True,
                check=False,
            )

        assert sign("wrong").returncode != 0
        assert sign(secret).returncode == 0
        assert sign("wrong").returncode != 0, "the agent must not cache the passphrase"
    assert not home.home.exists()


# --- helpers ---


def test_wait_for_port_times_out_and_spots_a_dead_server(tmp_path: Path) -> None:
    port = free_port()
    with pytest.raises(TimeoutError):
        wait_for_port(port, timeout=0.3)
    dead = subprocess.Popen(["true"], stdin=subprocess.DEVNULL)
    dead.wait()
    log = tmp_path / "log"
    log.write_text("boom: cannot bind\n")
    with pytest.raises(RuntimeError, match="boom: cannot bind"):
        wait_for_port(port, timeout=5, process=dead, log=log)
