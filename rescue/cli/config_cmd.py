"""`rescue config init|check|show|trust-host`: write the commented sample, validate a file,
show it, pin the SSH host key in it.

Thin on purpose: the sample, the validation and the redaction all live in rescue.config, so what
`init` writes, what `check` accepts and what a backup reads can never drift apart. Errors are
RescueErrors and are left to the root group's handler (one line and the exit code).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import click

from rescue.backup import s3
from rescue.backup.cadence import window_of
from rescue.backup.destinations import (
    DEFAULT_PORTS,
    SSH_METHODS,
    display_url,
    fetch_host_key,
    ssh_fingerprint,
)
from rescue.backup.pinning import pin
from rescue.config import (
    DEFAULT_CONFIG_PATH,
    Settings,
    check_gpg_key,
    load_settings,
    missing_env,
    render_toml,
    sample_settings,
)
from rescue.errors import ChangedHostKeyError, ConfigError, UnknownHostKeyError
from rescue.placement.fsops import rename_noreplace


def _global_config_path() -> Path:
    """The root group's --config, or the default when the group runs on its own (tests)."""
    obj = click.get_current_context().find_root().obj
    path = getattr(obj, "config_path", None)
    return Path(path) if path is not None else DEFAULT_CONFIG_PATH


def _hint(path: Path, command: str = "check") -> str:
    """`rescue [--config PATH] config COMMAND`, the way to reach this very file."""
    if path == DEFAULT_CONFIG_PATH:
        return f"rescue config {command}"
    return f"rescue --config {path} config {command}"


def _make_parent(path: Path) -> None:
    """Create the missing directories above path, each mode 0700 (they will hold secrets)."""
    missing = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=0o700)
        os.chmod(directory, 0o700)  # mkdir's mode is reduced by the umask


def write_private(path: Path, text: str) -> Path | None:
    """Write text to path at mode 0600 from the first byte. An existing file is not lost: it
    is renamed to PATH.replaced-TIME first, and that name is returned."""
    _make_parent(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    kept = None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if os.path.lexists(path):
            kept = path.with_name(f"{path.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
            rename_noreplace(path, kept)
        rename_noreplace(Path(tmp), path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # our own new file, never the old one
        raise
    return kept


def _summary(settings: Settings) -> str:
    """One line: how, where, encrypted how, kept how long."""
    dest = settings.destination
    if dest.method == "file":
        where = dest.path
    elif dest.method == "s3":
        where = display_url(settings)
    else:
        user = f"{dest.user}@" if dest.user else ""
        port = f":{dest.port}" if dest.port else ""
        where = f"{user}{dest.host}{port}:{dest.path}"
    enc = settings.encryption
    encryption = f"gpg key {enc.gpg_key}" if enc.mode == "gpg" else enc.mode
    return (
        f"method {dest.method}, destination {where}, encryption {encryption}, "
        f"keep {settings.schedule.keep_full} full chains"
    )


@click.group()
def config() -> None:
    """Write, validate and show the settings file; pin an sftp/scp server's host key."""


@config.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option(
    "--force", is_flag=True, help="Replace an existing file (kept as PATH.replaced-TIME)."
)
def init(path: Path | None, force: bool) -> None:
    """Write a commented sample settings file to PATH (default: the --config path).

    Every key is listed with its description; the sample backs up / to the local directory
    /var/backups/rescue without encryption until you edit it.
    """
    path = path or _global_config_path()
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; give the settings file's own path")
    if (path.exists() or path.is_symlink()) and not force:
        raise ConfigError(f"{path} exists; add --force to overwrite it")
    kept = write_private(path, sample_settings())
    click.echo(f"wrote {path} (mode 0600); edit it, then run: {_hint(path)}")
    if kept is not None:
        click.echo(f"the file it replaced is kept as {kept} (mv it back to undo)")


@config.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option(
    "--create-bucket",
    is_flag=True,
    help="s3: connect, and make the bucket if it does not exist (rescue never makes one "
    "otherwise, unless create_bucket = true).",
)
def check(path: Path | None, create_bucket: bool) -> None:
    """Validate the settings file (default: the --config path) and the GPG key it names.

    An sftp or scp destination must have host_key_fingerprint (exit 22 without it, as the
    backup would): `rescue config trust-host` shows the server's key and pins it.

    An s3 destination is checked offline, like the others; with --create-bucket, rescue also
    connects with the keys, makes the bucket if it is missing, and checks that the prefix can
    be listed (wrong keys: exit 21; access denied: 27; unreachable: 20).

    Secret files are read (and refused if others can read them); a secret environment variable
    that this shell lacks is only noted, as the backup may run with another environment.
    """
    path = path or _global_config_path()
    settings = load_settings(path)
    dest = settings.destination
    if dest.method in SSH_METHODS and dest.host_key_fingerprint is None:
        raise UnknownHostKeyError(
            f"{path}: destination.host_key_fingerprint is missing, and a {dest.method} backup "
            f"refuses a host whose key is not pinned; run: {_hint(path, 'trust-host')}"
        )
    if create_bucket and dest.method != "s3":
        raise ConfigError(f"{path}: --create-bucket is for method s3, not {dest.method}")
    check_gpg_key(settings)
    if settings.destination.password_file is not None:
        settings.destination_password()
    if dest.method == "s3" and dest.secret_access_key_file is not None:
        settings.s3_credentials()
    if settings.encryption.mode != "none" and settings.encryption.passphrase_file is not None:
        settings.passphrase()
    if create_bucket:
        made = s3.check(settings, create=True)
        click.echo(f"bucket {dest.bucket}: {'created' if made else 'exists'}, and answers")
    click.echo(f"{path}: OK")
    click.echo(_summary(settings))
    click.echo(window_of(settings.schedule))
    for key, variable in missing_env(settings):
        click.echo(f"note: {key}: {variable} is not set in this environment", err=True)


@config.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML.")
def show(path: Path | None, as_json: bool) -> None:
    """Print the settings with every default filled in and inline secrets as ***."""
    path = path or _global_config_path()
    data = load_settings(path).redacted()
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(f"# {path}, with defaults filled in; inline secrets shown as ***")
        click.echo(render_toml(data).rstrip("\n"))


@config.command("trust-host")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--yes", is_flag=True, help="Trust the key shown without asking (for scripts).")
def trust_host(path: Path | None, yes: bool) -> None:
    """Pin the sftp/scp server's host key: connect, show its type and SHA256 fingerprint, ask,
    then write host_key_fingerprint into the settings file (default: the --config path).

    Only that one value changes: comments and order stay, and the file is mode 0600. Compare
    the fingerprint with `ssh-keygen -lf /etc/ssh/ssh_host_<type>_key.pub` on the server
    before you answer yes. Any answer but yes (or no terminal and no --yes) changes nothing,
    and exits 22 (23 when a different key was pinned).
    """
    path = path or _global_config_path()
    settings = load_settings(path)
    dest = settings.destination
    if dest.method not in SSH_METHODS or dest.host is None:
        raise ConfigError(
            f"{path}: destination.method is {dest.method}; trust-host is for sftp and scp"
        )
    port = dest.port or DEFAULT_PORTS[dest.method]
    key = fetch_host_key(dest.host, port)
    offered = ssh_fingerprint(key)
    click.echo(f"{dest.host}:{port} offers the host key {key.get_name()} {offered}")
    pinned = dest.host_key_fingerprint
    if pinned == offered:
        click.echo(f"{path}: this key is pinned already; nothing changed")
        return
    refused: type[UnknownHostKeyError] | type[ChangedHostKeyError] = UnknownHostKeyError
    if pinned is not None:
        refused = ChangedHostKeyError
        click.echo(
            f"WARNING: {path} pins a DIFFERENT key, {pinned}: trust the new one only if the "
            "server was reinstalled or its key replaced",
            err=True,
        )
    if not yes:
        try:
            yes = click.confirm(f"trust it and write it to {path}?", default=False, err=True)
        except click.Abort:  # no terminal, stdin closed: that is not a yes
            yes = False
    if not yes:
        raise refused(f"the key was not trusted; {path} is unchanged")
    pin(path, offered)
    click.echo(f'{path}: host_key_fingerprint = "{offered}"')
