"""Fetch a plan over sftp: `rescue.plan=sftp://USER@HOST[:PORT]/PATH?fingerprint=SHA256:...`.

The host key must be pinned in the URL (a plan leads to a backup's passphrase: it must never come
from a server that merely claims the name), and is checked the same way as a backup
destination's (rescue.backup.destinations.check_host_key). Authentication is by `key=PATH` (a
private key file in the rescue system) or by a password typed at the console. The URL's query is
parsed by hand: base64 fingerprints hold '+', which form decoding would turn into a blank.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Self
from urllib.parse import unquote, urlparse

from rescue.backup.destinations import check_host_key, ssh_fingerprint
from rescue.errors import AuthenticationError, PlanError, UnreachableError
from rescue.process.execute import register_secret

if TYPE_CHECKING:
    import paramiko

MAX_BYTES = 1 << 20
QUERY_KEYS = ("fingerprint", "key")


def parse_query(query: str) -> dict[str, str]:
    """key=value pairs, percent-decoded but with '+' kept."""
    found = {}
    for part in filter(None, query.split("&")):
        key, _, value = part.partition("=")
        if key not in QUERY_KEYS:
            raise PlanError(f"sftp plan URL: unknown parameter {key!r} (known: fingerprint, key)")
        found[key] = unquote(value)
    return found


class SftpFetcher:
    """One authenticated SFTP session to the plan's server, for the plan and its settings."""

    def __init__(self, url: str, ask_password: Callable[[str], str]) -> None:
        parsed = urlparse(url)
        self.query = parse_query(parsed.query)
        if "fingerprint" not in self.query:
            raise PlanError(
                "sftp plan URL: add ?fingerprint=SHA256:... (the server's host key, as "
                "`ssh-keygen -lf` prints it): a plan must come from the server you trust"
            )
        if not parsed.hostname:
            raise PlanError("sftp plan URL: no host, as in sftp://root@192.0.2.5/plans/web1.toml")
        self.host, self.port = parsed.hostname, parsed.port or 22
        self.user = unquote(parsed.username or "root")
        self.ask_password = ask_password
        self.transport: paramiko.Transport | None = None
        self.sftp: paramiko.SFTPClient | None = None

    def __enter__(self) -> Self:
        import paramiko

        pinned = check_host_key(self.host, self.port, self.query["fingerprint"])
        try:
            transport = paramiko.Transport((self.host, self.port))
            self.transport = transport
            transport.start_client(timeout=30)
        except (paramiko.SSHException, OSError) as exc:
            raise UnreachableError(f"cannot reach {self.host}:{self.port}: {exc}") from None
        offered = transport.get_remote_server_key()
        if ssh_fingerprint(offered) != ssh_fingerprint(pinned):
            raise PlanError(f"the host key of {self.host}:{self.port} changed between connections")
        try:
            if "key" in self.query:
                transport.auth_publickey(self.user, paramiko.PKey.from_path(self.query["key"]))
            else:
                prompt = f"Password of {self.user}@{self.host} (for the plan): "
                password = self.ask_password(prompt)
                register_secret(password)
                transport.auth_password(self.user, password)
        except FileNotFoundError:
            raise PlanError(f"sftp plan URL: no key file {self.query['key']}") from None
        except paramiko.AuthenticationException:
            raise AuthenticationError(
                f"{self.host}:{self.port} refused {self.user} for the plan"
            ) from None
        except paramiko.SSHException as exc:
            raise PlanError(f"sftp plan URL: {exc}") from None
        self.sftp = paramiko.SFTPClient.from_transport(transport)
        return self

    def get(self, url: str) -> bytes:
        """The bytes of the file that url names on this server."""
        assert self.sftp is not None
        path = posixpath.normpath(unquote(urlparse(url).path)) or "/"
        try:
            with self.sftp.open(path, "rb") as remote:
                data = remote.read(MAX_BYTES + 1)
        except OSError as exc:
            raise PlanError(f"cannot read {path} on {self.host}: {exc.strerror or exc}") from None
        if len(data) > MAX_BYTES:
            raise PlanError(f"{path} on {self.host} is larger than {MAX_BYTES} bytes: not a plan")
        return data

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.sftp is not None:
            self.sftp.close()
        if self.transport is not None:
            self.transport.close()
