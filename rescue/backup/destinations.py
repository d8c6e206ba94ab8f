"""From the [destination] settings to what duplicity needs: a URL, options and an environment.

Why a module of its own: credentials must reach duplicity through the environment (FTP_PASSWORD)
and never through its URL or argv, and an SSH host must be checked against the pinned fingerprint
before duplicity connects. duplicity's paramiko backend would otherwise prompt on an unknown key.
rescue connects first, compares the fingerprint, and hands duplicity a known_hosts file that holds
exactly the pinned key, so duplicity's own check then refuses any other key.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from rescue.backup import s3
from rescue.config import Settings
from rescue.errors import (
    AuthenticationError,
    ChangedHostKeyError,
    UnknownHostKeyError,
    UnreachableError,
)
from rescue.placement.scratch import private_dir

if TYPE_CHECKING:
    import paramiko

log = logging.getLogger("rescue.backup.destinations")

DEFAULT_PORTS = {"ftp": 21, "ftps": 21, "sftp": 22, "scp": 22}
# ftps is FTP with explicit TLS (AUTH TLS on port 21, what vsftpd and most servers speak), which
# duplicity calls ftpes://; its own ftps:// is the legacy implicit TLS of port 990.
DUPLICITY_SCHEMES = {"ftps": "ftpes"}
SSH_METHODS = ("sftp", "scp")
CONNECT_TIMEOUT = 15.0


@dataclass
class Target:
    """Everything duplicity needs to reach one destination."""

    url: str
    display: str
    options: list[str] = field(default_factory=list)
    secret_env: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # plain variables (S3: the CA bundle)


def display_url(settings: Settings) -> str:
    """The destination as a person reads it: no password, ever."""
    dest = settings.destination
    if dest.method == "file":
        return f"file://{dest.path}"
    if dest.method == "s3":
        return s3.place(settings).display
    user = f"{dest.user}@" if dest.user else ""
    port = f":{dest.port}" if dest.port else ""
    return f"{dest.method}://{user}{dest.host}{port}{_url_path(dest.path)}"


def _url_path(path: str) -> str:
    """duplicity reads proto://host//abs as absolute and proto://host/rel as relative to the
    login directory, for its SSH and FTP backends alike."""
    return "/" + quote(path)


def ssh_fingerprint(key: paramiko.PKey) -> str:
    """The SHA256 fingerprint exactly as `ssh-keygen -lf` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def fetch_host_key(host: str, port: int, timeout: float = CONNECT_TIMEOUT) -> paramiko.PKey:
    """Connect and read the server's host key, without authenticating."""
    import paramiko  # here, not at the top: it costs 0.1 s at every start of rescue

    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise UnreachableError(f"cannot reach {host}:{port}: {exc.strerror or exc}") from None
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise UnreachableError(f"{host}:{port} does not speak SSH: {exc}") from None
    finally:
        transport.close()
    return key


def check_host_key(host: str, port: int, pinned: str | None) -> paramiko.PKey:
    """Return the server's key if it matches the pinned fingerprint, else raise with the fix."""
    key = fetch_host_key(host, port)
    offered = ssh_fingerprint(key)
    how = (
        f"compare it with `ssh-keygen -lf /etc/ssh/ssh_host_{_short(key)}_key.pub` on {host}, "
        f'then set host_key_fingerprint = "{offered}" in [destination]'
    )
    if pinned is None:
        raise UnknownHostKeyError(
            f"the host key of {host}:{port} is not pinned; it offers {key.get_name()} {offered}: "
            + how
            + " (rescue config trust-host does both)"
        )
    if pinned != offered:
        raise ChangedHostKeyError(
            f"the host key of {host}:{port} has CHANGED: pinned {pinned}, offered "
            f"{key.get_name()} {offered}. This may be an attack; if the server was reinstalled, "
            + how
        )
    return key


def _short(key: paramiko.PKey) -> str:
    name = key.get_name()
    if "ed25519" in name:
        return "ed25519"
    if "ecdsa" in name:
        return "ecdsa"
    return "rsa"


def duplicity_url(settings: Settings) -> str:
    """The destination as duplicity's URL (no password: that goes in the environment); it also
    names duplicity's cache of the destination, so the cache can be read offline."""
    dest = settings.destination
    if dest.method == "file":
        return f"file://{quote(dest.path)}"
    if dest.method == "s3":
        return s3.duplicity_url(settings)
    port = dest.port or DEFAULT_PORTS[dest.method]
    user = f"{quote(dest.user, safe='')}@" if dest.user else ""
    scheme = DUPLICITY_SCHEMES.get(dest.method, dest.method)
    return f"{scheme}://{user}{dest.host}:{port}{_url_path(dest.path)}"


@contextmanager
def prepare(settings: Settings, *, check_host: bool = True) -> Iterator[Target]:
    """Yield the Target for settings; temporary files (known_hosts) live as long as the block."""
    dest = settings.destination
    url = duplicity_url(settings)
    if dest.method == "s3":
        s3.check(settings)  # one line for a missing bucket, wrong keys, a refused prefix
        yield Target(
            url=url,
            display=display_url(settings),
            options=s3.duplicity_options(settings),
            secret_env=s3.secret_env(settings),
            env=s3.duplicity_env(settings),
        )
        return
    password = settings.destination_password()
    secret_env = {"FTP_PASSWORD": password} if password else {}
    if dest.method == "file":
        Path(dest.path).mkdir(parents=True, exist_ok=True)
        yield Target(url=url, display=display_url(settings))
        return

    assert dest.host is not None  # the settings model requires it for every network method
    port = dest.port or DEFAULT_PORTS[dest.method]
    if dest.method not in SSH_METHODS:
        _check_reachable(dest.host, port)
        options = [f"--ssl-cacert-file={dest.tls_ca_file}"] if dest.tls_ca_file else []
        yield Target(url=url, display=display_url(settings), options=options, secret_env=secret_env)
        return

    with private_dir("rescue-ssh-") as tmp:
        known_hosts = tmp / "known_hosts"
        ssh_options = [f"-oUserKnownHostsFile={known_hosts}"]
        if check_host:
            key = check_host_key(dest.host, port, dest.host_key_fingerprint)
            host_id = dest.host if port == 22 else f"[{dest.host}]:{port}"
            known_hosts.write_text(f"{host_id} {key.get_name()} {key.get_base64()}\n")
        if dest.ssh_key_file:
            _check_key_readable(Path(dest.ssh_key_file))
            ssh_options.append(f"-oIdentityFile={dest.ssh_key_file}")
        yield Target(
            url=url,
            display=display_url(settings),
            # one argv item, `--opt=VALUE`: duplicity's parser takes a separate value that starts
            # with a dash for an option of its own (and fails with exit 23)
            options=[f"--ssh-options={' '.join(ssh_options)}"],
            secret_env=secret_env,
        )


def _check_reachable(host: str, port: int) -> None:
    """Fail in seconds with one line, rather than after lftp's minutes of retries."""
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise UnreachableError(f"cannot reach {host}:{port}: {exc.strerror or exc}") from None


def _check_key_readable(path: Path) -> None:
    try:
        path.read_bytes()
    except OSError as exc:
        raise AuthenticationError(f"cannot read ssh_key_file {path}: {exc.strerror}") from None
