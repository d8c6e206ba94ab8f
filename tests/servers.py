"""Real servers for the tests: OpenSSH sshd, a pyftpdlib FTP server and a throwaway GnuPG home.

The project tests against real parts, never mocks, so these helpers start the real daemons on
127.0.0.1 only (never another address), each in its own work directory with its own log file,
and stop exactly the processes they started. Nothing here imports pytest: bench/ and ad-hoc
scripts can use the same servers.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Self, TypeVar

import psutil

HOST = "127.0.0.1"
SSHD = "/usr/sbin/sshd"  # sshd refuses to re-exec itself unless started by absolute path
FTPD_SCRIPT = Path(__file__).with_name("ftpd.py")
FTP_PASSWORD_ENV = "RESCUE_TEST_FTP_PASSWORD"


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def free_port_range(count: int) -> range:
    """`count` consecutive ports that are all free now, for an FTP server's passive range."""
    for _ in range(200):
        start = secrets.randbelow(60000 - 20000 - count) + 20000
        ports = range(start, start + count)
        if all(_port_is_free(p) for p in ports):
            return ports
    raise RuntimeError(f"no {count} consecutive free ports found on {HOST}")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


class PortTaken(RuntimeError):
    """The server died before listening, and its port is taken by another process: a port
    picked by free_port() can be taken by anyone before the server binds it (CI runs two
    test processes), so ServerProcess.start() picks another one."""


def wait_for_port(
    port: int,
    timeout: float = 10,
    *,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Block until something accepts TCP connections on 127.0.0.1:`port`.

    Given the `process`, wait until that process (or one of its children) listens there: not
    merely anything, because another process may hold the port and answer for it. Fail at once
    when it dies instead of waiting out the timeout (PortTaken if the port is held by another),
    with the tail of `log` in the error so a failing fixture says why.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            error = PortTaken if not _port_is_free(port) else RuntimeError
            raise error(
                f"server exited with status {process.returncode} before listening on "
                f"{HOST}:{port}{_log_tail(log)}"
            )
        if process is not None and _listens(process.pid, port):
            return
        if process is None:
            try:
                with socket.create_connection((HOST, port), timeout=1):
                    return
            except OSError:
                pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {HOST}:{port} after {timeout}s{_log_tail(log)}")
        time.sleep(0.05)


def _listens(pid: int, port: int) -> bool:
    """Whether process pid, or one of its children, has a listening socket on port."""
    try:
        parent = psutil.Process(pid)
        family = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return False
    for proc in family:
        try:
            connections = proc.net_connections("tcp")
        except psutil.NoSuchProcess:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections):
            return True
    return False


def _log_tail(log: Path | None, lines: int = 20) -> str:
    if log is None or not log.exists():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- " + str(log) + " ---\n" + "\n".join(tail)


def _run(
    argv: list[str], *, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a setup tool (stdin closed unless `input` is given); fail loudly with its output."""
    result = subprocess.run(
        argv,
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{argv[0]} failed with status {result.returncode}: {result.stderr or result.stdout}"
        )
    return result


class _Closable:
    """What a test must release: close() in a finally, or use `with`; one place for the protocol."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _ThrowawayUser:
    """A system user made for one server's password login, with a random name and password.

    Its home is /var/tmp/<name> (mode 0755: the user must reach it, and pytest's tmp dirs are
    root-only). The password goes through chpasswd's stdin, never argv. delete() removes the
    user and the home, and only what make() created.
    """

    def __init__(self, prefix: str) -> None:
        self.name = prefix + secrets.token_hex(3)
        self.password = secrets.token_urlsafe(16)
        self.home = Path("/var/tmp") / self.name
        self._home_made = False
        self._user_made = False

    def make(self) -> None:
        """Create the home, the user and its password; a second call does nothing."""
        if self._user_made:
            return
        if not self._home_made:
            # No exist_ok: never chown a directory that someone else made.
            self.home.mkdir(mode=0o755)
            self._home_made = True
            self.home.chmod(0o755)
        _run(["useradd", "-M", "-d", str(self.home), "-s", "/bin/sh", self.name])
        self._user_made = True
        _run(["chpasswd"], input=f"{self.name}:{self.password}\n")
        shutil.chown(self.home, self.name, self.name)

    def delete(self) -> None:
        """Delete the user and its home; safe to call twice or before make()."""
        if self._user_made:
            subprocess.run(["userdel", self.name], check=False, capture_output=True)
            self._user_made = False
        if self._home_made:
            shutil.rmtree(self.home, ignore_errors=True)
            self._home_made = False


class ServerProcess(_Closable):
    """Start/stop/restart of one child process, killed by its own pid only; close() stops it."""

    log_path: Path
    _port: int | None = None
    _process: subprocess.Popen[bytes] | None = None
    _log_file: IO[bytes] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} has no port before start()")
        return self._port

    def start(self) -> None:
        """Start the server unless it runs. A port it picks now (the first start) is picked
        again should another process take it first; a restart keeps its port or fails."""
        if self.running:
            return
        picked = self._port is None
        for attempt in range(3):
            try:
                self._start()
                return
            except PortTaken:
                if not picked or attempt == 2:
                    raise
                self._port = None

    def _start(self) -> None:
        """Pick the port if there is none yet, write the configuration, and _launch()."""
        raise NotImplementedError

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()

    def _launch(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Spawn the daemon and wait until it listens; stop it again if it never does."""
        self._spawn(argv, env=env)
        try:
            wait_for_port(self.port, process=self._process, log=self.log_path)
        except BaseException:
            self.stop()
            raise

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self._log_file = self.log_path.open("ab")
        self._process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=self._log_file, env=env
        )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        """Terminate the server and wait for it; safe to call twice or before start()."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def close(self) -> None:
        self.stop()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


Server = TypeVar("Server", bound=ServerProcess)


@contextlib.contextmanager
def serving(server: Server) -> Iterator[Server]:
    """The server started, and closed again when the block ends, however it ends."""
    with server:
        server.start()
        yield server


class SshServer(ServerProcess):
    """OpenSSH sshd on 127.0.0.1 with key-only login as root, and SFTP.

    Keys are made once per work directory; the port is picked at the first start() and kept,
    so restart() (for instance after regenerate_host_key()) is seen by clients as the same host.

    With password_login, sshd also lets one throwaway system user (rescue-ssh-<random>) log in
    with a random password (set through chpasswd's stdin, never argv); its home, under /var/tmp,
    is where its backups go. close() stops sshd and deletes that user and its home; root still
    logs in by key only.
    """

    user = "root"

    def __init__(self, workdir: Path, *, password_login: bool = False) -> None:
        self.workdir = workdir
        self.host_key = workdir / "ssh_host_ed25519_key"
        self.client_key = workdir / "client_ed25519"
        self.authorized_keys = workdir / "authorized_keys"
        self.config_path = workdir / "sshd_config"
        self.log_path = workdir / "sshd.log"
        self.password_login = password_login
        self._account = _ThrowawayUser("rescue-ssh-")
        self.password_user = self._account.name
        self.password = self._account.password
        self.password_home = self._account.home

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.password_login:
            self._account.make()
        if not self.host_key.exists():
            self._keygen(self.host_key, "rescue-test-host")
        if not self.client_key.exists():
            self._keygen(self.client_key, "rescue-test-client")
        self.authorized_keys.write_text(self.client_key.with_suffix(".pub").read_text())
        if self._port is None:
            self._port = free_port()
        self.config_path.write_text(self._config())
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        self._launch([SSHD, "-D", "-e", "-f", str(self.config_path)])

    def close(self) -> None:
        """Stop sshd, delete the password user and its home (when there is one)."""
        super().close()
        self._account.delete()

    def password_destination(self, sub: str, method: str = "sftp") -> dict[str, object]:
        """[destination] settings for the password user, to HOME/sub, pinned, with no key and
        no password source (the test adds the one it exercises)."""
        return {
            "method": method,
            "host": HOST,
            "port": self.port,
            "user": self.password_user,
            "host_key_fingerprint": self.host_key_fingerprint,
            "path": str(self.password_home / sub),
        }

    def regenerate_host_key(self) -> None:
        """Replace the host key, as after a reinstall of the backup host; restart() to apply."""
        self.host_key.unlink(missing_ok=True)
        self.host_key.with_suffix(".pub").unlink(missing_ok=True)
        self._keygen(self.host_key, "rescue-test-host")

    @property
    def host_key_fingerprint(self) -> str:
        """The "SHA256:..." form that ssh and rescue's host-key pinning show."""
        out = _run(["ssh-keygen", "-lf", str(self.host_key.with_suffix(".pub"))]).stdout
        return out.split()[1]

    @property
    def host_public_key(self) -> str:
        """ "ssh-ed25519 AAAA..." without the comment."""
        return " ".join(self.host_key.with_suffix(".pub").read_text().split()[:2])

    def destination(self, path: Path, method: str = "sftp") -> dict[str, object]:
        """The [destination] settings of a backup to path on this server, key login, pinned."""
        return {
            "method": method,
            "host": HOST,
            "port": self.port,
            "user": self.user,
            "ssh_key_file": str(self.client_key),
            "host_key_fingerprint": self.host_key_fingerprint,
            "path": str(path),
        }

    def known_hosts_line(self) -> str:
        """A known_hosts line for this server, for clients that pin by key (OpenSSH, paramiko)."""
        return f"[{HOST}]:{self.port} {self.host_public_key}\n"

    def _keygen(self, path: Path, comment: str) -> None:
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])

    def _config(self) -> str:
        return "\n".join(
            [
                f"ListenAddress {HOST}",
                f"Port {self.port}",
                f"HostKey {self.host_key}",
                f"AuthorizedKeysFile {self.authorized_keys}",
                "PubkeyAuthentication yes",
                f"PasswordAuthentication {'yes' if self.password_login else 'no'}",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "StrictModes no",
                "UsePAM no",
                f"PidFile {self.workdir / 'sshd.pid'}",
                "Subsystem sftp internal-sftp",
                "LogLevel VERBOSE",
                # duplicity and the tests open many connections in a row; the default (10:30:100)
                # drops some of them at random.
                "MaxStartups 64",
                "X11Forwarding no",
                "PrintMotd no",
                "",
            ]
        )


class FtpServer(ServerProcess):
    """pyftpdlib on 127.0.0.1 (tests/ftpd.py as a child process), one user with a password.

    The password reaches the child through the RESCUE_TEST_FTP_PASSWORD environment variable,
    never its argv, just as rescue itself must pass secrets. FTPS is tested with vsftpd instead
    (VsftpdServer): pyftpdlib's TLS data channel cut uploads short after a prior command in the
    same session (a 1.1 MB volume stored as 112 KiB), which vsftpd does not.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        user: str = "rescue",
        password: str | None = None,
        root: Path | None = None,
    ) -> None:
        self.workdir = workdir
        self.user = user
        self.password = password if password is not None else secrets.token_urlsafe(16)
        self.root = root if root is not None else workdir / "root"
        self.log_path = workdir / "ftpd.log"
        self._passive: range | None = None

    @property
    def passive_ports(self) -> range:
        if self._passive is None:
            raise RuntimeError("FtpServer has no passive ports before start()")
        return self._passive

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        if self._port is None:
            self._port = free_port()
            self._passive = free_port_range(16)
        argv = [
            sys.executable,
            str(FTPD_SCRIPT),
            "--root",
            str(self.root),
            "--port",
            str(self.port),
            "--user",
            self.user,
            "--passive-ports",
            f"{self.passive_ports.start}-{self.passive_ports.stop - 1}",
            "--log",
            str(self.log_path),
        ]
        self._launch(argv, env={**os.environ, FTP_PASSWORD_ENV: self.password})


class VsftpdServer(ServerProcess):
    """vsftpd on 127.0.0.1 speaking explicit FTPS (AUTH TLS required on control and data).

    vsftpd logs in system users only, so this makes a throwaway user (rescue-ftps-<random>) with a
    random password (set through chpasswd's stdin) whose home is the FTP root, and deletes it on
    close(). The certificate is self-signed for 127.0.0.1; `certfile` is what a client pins.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._account = _ThrowawayUser("rescue-ftps-")
        self.user = self._account.name
        self.password = self._account.password
        self.root = self._account.home
        self.log_path = workdir / "vsftpd.log"
        self.certfile = workdir / "cert.pem"
        self.keyfile = workdir / "key.pem"

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._account.make()
        if not self.certfile.exists():
            _make_certificate(self.certfile, self.keyfile)
        if self._port is None:
            self._port = free_port()
        passive = free_port_range(16)
        Path("/var/run/vsftpd/empty").mkdir(parents=True, exist_ok=True)
        config = self.workdir / "vsftpd.conf"
        config.write_text(
            "\n".join(
                [
                    "listen=YES",
                    "listen_ipv6=NO",
                    f"listen_address={HOST}",
                    f"listen_port={self.port}",
                    "background=NO",
                    "anonymous_enable=NO",
                    "local_enable=YES",
                    "write_enable=YES",
                    "local_umask=022",
                    "ssl_enable=YES",
                    f"rsa_cert_file={self.certfile}",
                    f"rsa_private_key_file={self.keyfile}",
                    "force_local_logins_ssl=YES",
                    "force_local_data_ssl=YES",
                    "require_ssl_reuse=NO",
                    "pasv_enable=YES",
                    f"pasv_min_port={passive.start}",
                    f"pasv_max_port={passive.stop - 1}",
                    f"pasv_address={HOST}",
                    "secure_chroot_dir=/var/run/vsftpd/empty",
                    "pam_service_name=vsftpd",
                    "seccomp_sandbox=NO",
                    "xferlog_enable=YES",
                    f"vsftpd_log_file={self.log_path}",
                    "",
                ]
            )
        )
        self._launch(["vsftpd", str(config)])

    def close(self) -> None:
        """Stop the server, delete its user and its FTP root."""
        super().close()
        self._account.delete()


def _make_certificate(certfile: Path, keyfile: Path) -> None:
    """A self-signed certificate for 127.0.0.1, valid for two days."""
    _run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={HOST}",
            "-addext",
            f"subjectAltName=IP:{HOST}",
            "-days",
            "2",
            "-keyout",
            str(keyfile),
            "-out",
            str(certfile),
        ]
    )


class GpgHome(_Closable):
    """A throwaway GNUPGHOME (mode 0700) holding one fresh RSA key pair.

    Without `passphrase` the secret key is unprotected, which is what backups encrypted to a
    key need in tests. With it the key is protected, for tests of secret-key passphrases; the
    passphrase goes to gpg on a file descriptor, never in argv. The directory lives under /tmp
    by default because gpg-agent's socket path must stay short. Call close() (or use `with`).
    """

    uid = "rescue test <test@example.invalid>"

    def __init__(self, *, passphrase: str | None = None, parent: Path | None = None) -> None:
        self.passphrase = passphrase
        self.home = Path(tempfile.mkdtemp(prefix="rescue-gpg-", dir=parent))
        os.chmod(self.home, 0o700)
        try:
            self._generate()
            self.fingerprint = self._secret_fingerprint()
        except BaseException:
            self.close()
            raise

    @property
    def env(self) -> dict[str, str]:
        """os.environ plus GNUPGHOME, for gpg and duplicity child processes."""
        return {**os.environ, "GNUPGHOME": str(self.home)}

    def gpg(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run gpg in batch mode in this home; raises on failure with gpg's stderr."""
        return _run(["gpg", "--batch", "--no-tty", *args], env=self.env, input=input)

    def _generate(self) -> None:
        # No passphrase caching: a test that gives a wrong passphrase after a right one must fail.
        (self.home / "gpg-agent.conf").write_text("default-cache-ttl 0\nmax-cache-ttl 0\n")
        self._with_passphrase("--quick-gen-key", self.uid, "rsa2048", "default", "never")
        fingerprint = self._secret_fingerprint()
        # rsa2048 "default" yields a sign+certify primary key only; add an encryption subkey,
        # the shape real keys have, so duplicity can encrypt to the key.
        self._with_passphrase("--quick-add-key", fingerprint, "rsa2048", "encr", "never")

    def _with_passphrase(self, *args: str) -> None:
        """Run gpg with this home's passphrase on stdin (an empty one when there is none)."""
        secret = self.passphrase if self.passphrase is not None else ""
        self.gpg("--pinentry-mode", "loopback", "--passphrase-fd", "0", *args, input=secret + "\n")

    def _secret_fingerprint(self) -> str:
        out = self.gpg("--with-colons", "--list-secret-keys").stdout
        lines = out.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("sec:"):
                fpr = next(x for x in lines[i + 1 :] if x.startswith("fpr:"))
                return fpr.split(":")[9]
        raise RuntimeError(f"gpg generated no secret key in {self.home}")

    def close(self) -> None:
        """Stop this home's agent (it would outlive the test) and delete the directory."""
        if self.home.exists():
            subprocess.run(
                ["gpgconf", "--kill", "all"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                check=False,
            )
            shutil.rmtree(self.home, ignore_errors=True)
