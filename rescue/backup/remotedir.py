"""A directory at the backup destination, for the few small files rescue keeps beside
duplicity's volumes: the configuration archives, the destination lock and the host record.
(S3's is rescue.backup.s3.S3Dir: a key prefix, whose objects appear whole by themselves.)

Why not through duplicity: it only moves its own volumes. The same settings and the same safety
apply: an SSH host must match its pinned key (checked on the very connection that is used),
FTPS verifies its certificate, passwords come from the settings' secret sources. A file is
written under a temporary name and renamed, so the destination never holds half of one under
its real name; `make_dir` is the one atomic "create if absent" every protocol has (mkdir fails
when the name exists, on a local disk, over SFTP and over FTP alike), which the lock builds on.
"""

from __future__ import annotations

import ftplib
import io
import os
import secrets
import shutil
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol

from rescue.backup import s3
from rescue.backup.destinations import (
    CONNECT_TIMEOUT,
    DEFAULT_PORTS,
    SSH_METHODS,
    check_host_key,
    ssh_fingerprint,
)
from rescue.config import Settings
from rescue.errors import (
    AuthenticationError,
    ChangedHostKeyError,
    UnreachableError,
    UntrustedCertificateError,
)

if TYPE_CHECKING:
    import paramiko


class RemoteDir(Protocol):
    """Names are plain file names in the directory (no slashes)."""

    def read(self, name: str) -> bytes | None: ...  # None: no such file
    def write(self, name: str, data: bytes) -> None: ...  # temporary name, then renamed
    def put(self, local: Path, name: str) -> None: ...  # the same, from a local file
    def get(self, name: str, local: Path) -> None: ...
    def delete(self, name: str) -> None: ...  # absent is fine
    def listing(self) -> dict[str, int]: ...  # name -> size; {} when the directory is absent
    def make_dir(self, name: str) -> bool: ...  # False when it exists already
    def remove_dir(self, name: str) -> None: ...  # an empty one; absent is fine


def _temporary(name: str) -> str:
    return f".{name}.{secrets.token_hex(4)}.part"


@contextmanager
def opened(settings: Settings, sub: str = "", make: bool = True) -> Iterator[RemoteDir]:
    """The destination's directory (or its sub directory), connected for the block: one
    connection for everything the block does. What is missing of it is made; without make,
    a missing directory is FileNotFoundError instead (reading must not create anything)."""
    dest = settings.destination
    path = PurePosixPath(dest.path) / sub if sub else PurePosixPath(dest.path)
    if dest.method == "s3":
        folder = s3.S3Dir(s3.client(settings), s3.place(settings), sub)
        if not make and not folder.exists():
            raise FileNotFoundError(f"s3://{folder.bucket}/{folder.prefix}/")
        yield folder
    elif dest.method == "file":
        if not make and not Path(path).is_dir():
            raise FileNotFoundError(str(path))
        yield _LocalDir(Path(path))
    elif dest.method in SSH_METHODS:
        with _sftp(settings) as sftp:
            if make:
                _sftp_makedirs(sftp, str(path))
            else:
                sftp.stat(str(path))  # FileNotFoundError when missing
            yield _SftpDir(sftp, str(path))
    else:
        with _ftp(settings) as ftp:
            _ftp_cwd(ftp, list(path.parts), make)
            yield _FtpDir(ftp)


class _LocalDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True, mode=0o700)  # opened checked make

    def read(self, name: str) -> bytes | None:
        try:
            return (self.path / name).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        part = self.path / _temporary(name)
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        part.replace(self.path / name)

    def put(self, local: Path, name: str) -> None:
        part = self.path / _temporary(name)
        shutil.copyfile(local, part)
        part.chmod(0o600)
        part.replace(self.path / name)

    def get(self, name: str, local: Path) -> None:
        shutil.copyfile(self.path / name, local)

    def delete(self, name: str) -> None:
        (self.path / name).unlink(missing_ok=True)

    def listing(self) -> dict[str, int]:
        return {p.name: p.stat().st_size for p in self.path.iterdir() if p.is_file()}

    def make_dir(self, name: str) -> bool:
        try:
            (self.path / name).mkdir(mode=0o700)
        except FileExistsError:
            return False
        return True

    def remove_dir(self, name: str) -> None:
        with suppress(FileNotFoundError):
            (self.path / name).rmdir()


class _SftpDir:
    def __init__(self, sftp: paramiko.SFTPClient, path: str) -> None:
        self.sftp, self.path = sftp, path

    def _at(self, name: str) -> str:
        return f"{self.path}/{name}"

    def read(self, name: str) -> bytes | None:
        try:
            with self.sftp.open(self._at(name), "rb") as f:
                return bytes(f.read())
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        part = self._at(_temporary(name))
        self.sftp.putfo(io.BytesIO(data), part)
        self.sftp.chmod(part, 0o600)
        self.sftp.posix_rename(part, self._at(name))

    def put(self, local: Path, name: str) -> None:
        part = self._at(_temporary(name))
        self.sftp.put(str(local), part)
        self.sftp.chmod(part, 0o600)
        self.sftp.posix_rename(part, self._at(name))

    def get(self, name: str, local: Path) -> None:
        self.sftp.get(self._at(name), str(local))

    def delete(self, name: str) -> None:
        with suppress(FileNotFoundError):
            self.sftp.remove(self._at(name))

    def listing(self) -> dict[str, int]:
        try:
            found = self.sftp.listdir_attr(self.path)
        except FileNotFoundError:
            return {}
        return {a.filename: int(a.st_size or 0) for a in found if not _is_dir(a.st_mode)}

    def make_dir(self, name: str) -> bool:
        try:
            self.sftp.mkdir(self._at(name), 0o700)
        except OSError:  # SFTP says only "failure"; the name exists, or cannot be made
            if not self._exists(name):
                raise
            return False
        return True

    def remove_dir(self, name: str) -> None:
        with suppress(FileNotFoundError):
            self.sftp.rmdir(self._at(name))

    def _exists(self, name: str) -> bool:
        try:
            self.sftp.stat(self._at(name))
        except FileNotFoundError:
            return False
        return True


def _is_dir(mode: int | None) -> bool:
    return mode is not None and (mode & 0o170000) == 0o040000


class _FtpDir:
    def __init__(self, ftp: ftplib.FTP) -> None:
        self.ftp = ftp

    def read(self, name: str) -> bytes | None:
        sink = io.BytesIO()
        try:
            self.ftp.retrbinary(f"RETR {name}", sink.write)
        except ftplib.error_perm:
            return None
        return sink.getvalue()

    def write(self, name: str, data: bytes) -> None:
        part = _temporary(name)
        self.ftp.storbinary(f"STOR {part}", io.BytesIO(data))
        self.ftp.rename(part, name)

    def put(self, local: Path, name: str) -> None:
        part = _temporary(name)
        with local.open("rb") as f:
            self.ftp.storbinary(f"STOR {part}", f)
        self.ftp.rename(part, name)

    def get(self, name: str, local: Path) -> None:
        with local.open("wb") as sink:
            self.ftp.retrbinary(f"RETR {name}", sink.write)

    def delete(self, name: str) -> None:
        with suppress(ftplib.error_perm):
            self.ftp.delete(name)

    def listing(self) -> dict[str, int]:
        names = [n for n in self.ftp.nlst() if n not in (".", "..")]
        self.ftp.voidcmd("TYPE I")  # after NLST, which switches to ASCII: SIZE needs binary
        found = {}
        for name in names:
            with suppress(ftplib.error_perm):  # a directory has no size
                found[name] = self.ftp.size(name) or 0
        return found

    def make_dir(self, name: str) -> bool:
        try:
            self.ftp.mkd(name)
        except ftplib.error_perm:
            return False
        return True

    def remove_dir(self, name: str) -> None:
        with suppress(ftplib.error_perm):
            self.ftp.rmd(name)


@contextmanager
def _sftp(settings: Settings) -> Iterator[paramiko.SFTPClient]:
    import paramiko

    dest = settings.destination
    assert dest.host is not None
    port = dest.port or DEFAULT_PORTS[dest.method]
    check_host_key(dest.host, port, dest.host_key_fingerprint)  # one line for unknown/changed
    try:
        sock = socket.create_connection((dest.host, port), timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        raise UnreachableError(f"cannot reach {dest.host}:{port}: {exc.strerror or exc}") from None
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=CONNECT_TIMEOUT)
        offered = ssh_fingerprint(transport.get_remote_server_key())
        if offered != dest.host_key_fingerprint:
            raise ChangedHostKeyError(f"the host key of {dest.host}:{port} changed mid-session")
        user = dest.user or "root"
        try:
            if dest.ssh_key_file:
                transport.auth_publickey(user, paramiko.PKey.from_path(dest.ssh_key_file))
            else:
                transport.auth_password(user, settings.destination_password() or "")
        except (paramiko.AuthenticationException, paramiko.SSHException, OSError) as exc:
            raise AuthenticationError(
                f"{dest.host}:{port} refused the login (user, password or key) of {user}: {exc}"
            ) from None
        client = paramiko.SFTPClient.from_transport(transport)
        assert client is not None
        with client:
            yield client
    finally:
        transport.close()


def _sftp_makedirs(sftp: paramiko.SFTPClient, directory: str) -> None:
    path = PurePosixPath(directory)
    for parent in [*reversed(path.parents), path]:
        try:
            sftp.stat(str(parent))
        except FileNotFoundError:
            sftp.mkdir(str(parent), 0o700)


@contextmanager
def _ftp(settings: Settings) -> Iterator[ftplib.FTP]:
    dest = settings.destination
    assert dest.host is not None
    port = dest.port or DEFAULT_PORTS[dest.method]
    ftp: ftplib.FTP
    if dest.method == "ftps":
        context = ssl.create_default_context(cafile=dest.tls_ca_file)
        ftp = ftplib.FTP_TLS(context=context, timeout=CONNECT_TIMEOUT)
    else:
        ftp = ftplib.FTP(timeout=CONNECT_TIMEOUT)
    try:
        ftp.connect(dest.host, port)
    except OSError as exc:
        raise UnreachableError(f"cannot reach {dest.host}:{port}: {exc.strerror or exc}") from None
    try:
        if isinstance(ftp, ftplib.FTP_TLS):
            try:
                ftp.auth()
            except ssl.SSLCertVerificationError as exc:
                raise UntrustedCertificateError(
                    f"the TLS certificate of {dest.host}:{port} is not trusted "
                    f"({exc.verify_message}): set tls_ca_file in [destination] to a copy of it "
                    "(or of its CA)"
                ) from None
        try:
            ftp.login(dest.user or "anonymous", settings.destination_password() or "")
        except ftplib.error_perm as exc:
            raise AuthenticationError(
                f"{dest.host}:{port} refused the login (user, password or key) of "
                f"{dest.user}: {exc}"
            ) from None
        if isinstance(ftp, ftplib.FTP_TLS):
            ftp.prot_p()
        ftp.voidcmd("TYPE I")
        yield ftp
    finally:
        ftp.close()


def _ftp_cwd(ftp: ftplib.FTP, parts: list[str], make: bool) -> None:
    """Walk into the directory (paths are relative to the login dir), making what is missing,
    or FileNotFoundError without make."""
    if parts and parts[0] == "/":
        ftp.cwd("/")
        parts = parts[1:]
    for part in parts:
        try:
            ftp.cwd(part)
        except ftplib.error_perm:
            if not make:
                raise FileNotFoundError(part) from None
            with suppress(ftplib.error_perm):  # another run made it meanwhile (550 exists)
                ftp.mkd(part)
            ftp.cwd(part)
