"""Copy archives to the backup destination, in its config-backups/ directory, and delete them.

Why not through duplicity: an archive is one finished file, and duplicity only moves its own
volumes. The same settings and the same safety apply: an SSH host must match its pinned key
(checked on the very connection that uploads), FTPS verifies its certificate, passwords come
from the settings' secret sources, and a copy is written under a temporary name and renamed, so
the destination never holds half an archive under a real name.
"""

from __future__ import annotations

import ftplib
import shutil
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from rescue.config import Settings
from rescue.destinations import (
    CONNECT_TIMEOUT,
    DEFAULT_PORTS,
    SSH_METHODS,
    check_host_key,
    display_url,
    ssh_fingerprint,
)
from rescue.errors import (
    AuthenticationError,
    ChangedHostKeyError,
    ConfigArchiveNotFoundError,
    RemoteCopyError,
    UnreachableError,
    UntrustedCertificateError,
)

if TYPE_CHECKING:
    import paramiko

SUBDIR = "config-backups"


@contextmanager
def _transfer(settings: Settings, what: str) -> Iterator[None]:
    """A failure mid-transfer (a full disk, a permission, a dropped link) as one line."""
    import paramiko

    try:
        yield
    except (OSError, EOFError, paramiko.SSHException, *ftplib.all_errors) as exc:
        raise RemoteCopyError(f"{what} at {where(settings)} failed: {exc}") from None


def where(settings: Settings) -> str:
    return f"{display_url(settings).rstrip('/')}/{SUBDIR}/"


def upload(settings: Settings, local: Path) -> str:
    """Copy local to the destination; returns where it went, as a person reads it."""
    with _transfer(settings, f"copying {local.name}"):
        dest = settings.destination
        if dest.method == "file":
            directory = Path(dest.path) / SUBDIR
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            part = directory / f".{local.name}.part"
            shutil.copyfile(local, part)
            part.chmod(0o600)
            part.replace(directory / local.name)
        elif dest.method in SSH_METHODS:
            with _sftp(settings) as sftp:
                directory = str(PurePosixPath(dest.path) / SUBDIR)
                _sftp_makedirs(sftp, directory)
                part = f"{directory}/.{local.name}.part"
                sftp.put(str(local), part)
                sftp.chmod(part, 0o600)
                sftp.posix_rename(part, f"{directory}/{local.name}")
        else:
            with _ftp(settings) as ftp:
                _ftp_cwd(ftp, [*PurePosixPath(dest.path).parts, SUBDIR])
                part = f".{local.name}.part"
                with local.open("rb") as f:
                    ftp.storbinary(f"STOR {part}", f)
                ftp.rename(part, local.name)
        return where(settings) + local.name


def listing(settings: Settings) -> dict[str, int]:
    """file name -> size of every archive at the destination (none yet: empty)."""
    with _transfer(settings, "listing the archives"):
        dest = settings.destination
        names: dict[str, int] = {}
        if dest.method == "file":
            directory = Path(dest.path) / SUBDIR
            if directory.is_dir():
                names = {p.name: p.stat().st_size for p in directory.iterdir() if p.is_file()}
        elif dest.method in SSH_METHODS:
            with _sftp(settings) as sftp:
                try:
                    found = sftp.listdir_attr(str(PurePosixPath(dest.path) / SUBDIR))
                except FileNotFoundError:
                    found = []
                names = {a.filename: int(a.st_size or 0) for a in found}
        else:
            with _ftp(settings) as ftp:
                if _ftp_cwd(ftp, [*PurePosixPath(dest.path).parts, SUBDIR], make=False):
                    found_names = [n for n in ftp.nlst() if not n.startswith(".")]
                    ftp.voidcmd("TYPE I")  # after NLST, which switches to ASCII: SIZE needs binary
                    names = {n: ftp.size(n) or 0 for n in found_names}
        return {n: s for n, s in sorted(names.items()) if not n.startswith(".")}


def download(settings: Settings, file_name: str, out: Path) -> None:
    """Fetch one archive from the destination's config-backups/ to out."""
    with _transfer(settings, f"fetching {file_name}"):
        if file_name not in listing(settings):
            raise ConfigArchiveNotFoundError(
                f"{where(settings)} holds no {file_name} (see: rescue config-backup list --remote)"
            )
        dest = settings.destination
        if dest.method == "file":
            shutil.copyfile(Path(dest.path) / SUBDIR / file_name, out)
        elif dest.method in SSH_METHODS:
            with _sftp(settings) as sftp:
                sftp.get(str(PurePosixPath(dest.path) / SUBDIR / file_name), str(out))
        else:
            with _ftp(settings) as ftp, out.open("wb") as sink:
                _ftp_cwd(ftp, [*PurePosixPath(dest.path).parts, SUBDIR])
                ftp.retrbinary(f"RETR {file_name}", sink.write)


def delete(settings: Settings, file_name: str) -> None:
    """Remove one archive from the destination's config-backups/ (absent is fine)."""
    with _transfer(settings, f"deleting {file_name}"):
        dest = settings.destination
        if dest.method == "file":
            (Path(dest.path) / SUBDIR / file_name).unlink(missing_ok=True)
        elif dest.method in SSH_METHODS:
            with _sftp(settings) as sftp, suppress(FileNotFoundError):
                sftp.remove(str(PurePosixPath(dest.path) / SUBDIR / file_name))
        else:
            with _ftp(settings) as ftp:
                _ftp_cwd(ftp, [*PurePosixPath(dest.path).parts, SUBDIR])
                with suppress(ftplib.error_perm):
                    ftp.delete(file_name)


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
            raise AuthenticationError(f"{dest.host}:{port} refused {user}: {exc}") from None
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
                    f"the TLS certificate of {dest.host}:{port} is not trusted: "
                    f"{exc.verify_message}"
                ) from None
        try:
            ftp.login(dest.user or "anonymous", settings.destination_password() or "")
        except ftplib.error_perm as exc:
            raise AuthenticationError(f"{dest.host}:{port} refused {dest.user}: {exc}") from None
        if isinstance(ftp, ftplib.FTP_TLS):
            ftp.prot_p()
        yield ftp
    finally:
        ftp.close()


def _ftp_cwd(ftp: ftplib.FTP, parts: list[str], make: bool = True) -> bool:
    """Walk into the directory, making what is missing (paths are relative to the login dir);
    without make, False when it does not exist."""
    if parts and parts[0] == "/":
        ftp.cwd("/")
        parts = parts[1:]
    for part in parts:
        try:
            ftp.cwd(part)
        except ftplib.error_perm:
            if not make:
                return False
            ftp.mkd(part)
            ftp.cwd(part)
    return True
