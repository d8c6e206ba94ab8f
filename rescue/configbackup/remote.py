"""Copy archives to the backup destination, in its config-backups/ directory, and delete them
(through rescue.backup.remotedir: pinned SSH keys, verified FTPS, a temporary name then a
rename)."""

from __future__ import annotations

import ftplib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rescue.backup.destinations import display_url
from rescue.backup.remotedir import opened
from rescue.config import Settings
from rescue.configbackup.store import Stored
from rescue.errors import ConfigArchiveNotFoundError, RemoteCopyError

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


def unencrypted_refusal(stored: Stored, allowed: bool) -> str:
    """Why stored must not leave this machine without --allow-unencrypted ("" if it may):
    an archive that is not encrypted and holds secrets (or may: an older index does not say)."""
    index = stored.index
    if allowed or index.get("encrypted") or index.get("type") == "bug-report":
        return ""
    if "secret_files" not in index:
        return "it is not encrypted and may hold secrets (it was made by an older rescue)"
    files = list(index["secret_files"])
    if not files:
        return ""
    more = f" and {len(files) - 3} more" if len(files) > 3 else ""
    return f"it is not encrypted and holds secrets ({', '.join(files[:3])}{more})"


def upload(settings: Settings, local: Path) -> str:
    """Copy local to the destination; returns where it went, as a person reads it."""
    with _transfer(settings, f"copying {local.name}"), opened(settings, SUBDIR) as folder:
        folder.put(local, local.name)
    return where(settings) + local.name


def listing(settings: Settings) -> dict[str, int]:
    """file name -> size of every archive at the destination (none yet: empty)."""
    with _transfer(settings, "listing the archives"):
        try:
            with opened(settings, SUBDIR, make=False) as folder:
                names = folder.listing()
        except FileNotFoundError:
            names = {}
        return {n: s for n, s in sorted(names.items()) if not n.startswith(".")}


def download(settings: Settings, file_name: str, out: Path) -> None:
    """Fetch one archive from the destination's config-backups/ to out."""
    with _transfer(settings, f"fetching {file_name}"):
        if file_name not in listing(settings):
            raise ConfigArchiveNotFoundError(
                f"{where(settings)} holds no {file_name} (see: rescue config-backup list --remote)"
            )
        with opened(settings, SUBDIR) as folder:
            folder.get(file_name, out)


def delete(settings: Settings, file_name: str) -> None:
    """Remove one archive from the destination's config-backups/ (absent is fine)."""
    with _transfer(settings, f"deleting {file_name}"), opened(settings, SUBDIR) as folder:
        folder.delete(file_name)
