"""The settings, asked for in a guided recovery that has no settings file (a new machine with
nothing but the ISO): where the backup is, how to log in, how it is encrypted.

Secrets stay in memory: the password goes into the settings object, the passphrase into this
process's environment (masked in every log), never into a file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rescue.backup.destinations import DEFAULT_PORTS, fetch_host_key, ssh_fingerprint
from rescue.config import Settings, load_settings
from rescue.errors import UsageError
from rescue.prompts import Choice, Question

PASSPHRASE_ENV = "RESCUE_RECOVER_PASSPHRASE"
METHODS = ("file", "sftp", "scp", "ftps", "ftp", "s3")

# How a question is put: Context.ask in a recovery. Taking the function, not the Context,
# keeps this module below rescue.steps.context, which imports it.
Ask = Callable[[Question], Any]


def _text(ask: Ask, qid: str, message: str, default: str = "") -> str:
    return str(ask(Question(qid, "text", message, default=default))).strip()


def ask_settings(ask: Ask) -> tuple[Settings, str]:
    """The settings, and the settings file they came from ("" when they were typed in): the
    caller records the file so that a resumed recovery reads it again without asking."""
    path = _text(ask, "recover.settings_file", "Settings file (empty: type the settings):")
    if path:
        return load_settings(Path(path)), path
    method = ask(
        Question(
            "destination.method",
            "select",
            "Where is the backup?",
            [Choice(m, m) for m in METHODS],
            default="sftp",
        )
    )
    dest: dict[str, Any] = {"method": method}
    if method == "s3":
        dest.update(_s3(ask))
    elif method != "file":
        dest["host"] = _text(ask, "destination.host", "Backup host:")
        port = _text(ask, "destination.port", "Port:", str(DEFAULT_PORTS[method]))
        if not port.isdigit():
            raise UsageError(f"the port must be a number, not {port!r}")
        dest["port"] = int(port)
        dest["user"] = _text(ask, "destination.user", "User:", "backup") or None
        password = ask(Question("destination.password", "password", "Password (empty: none):"))
        if password:
            dest["password"] = password
    if method != "s3":
        dest["path"] = _text(ask, "destination.path", "Directory of the backups:")
    if method in ("sftp", "scp"):
        key = fetch_host_key(dest["host"], dest["port"])
        fingerprint = ssh_fingerprint(key)
        trusted = ask(
            Question(
                "destination.host_key",
                "confirm",
                f"{dest['host']} offers {key.get_name()} {fingerprint}. Trust it?",
                default=False,
            )
        )
        if not trusted:
            raise UsageError("the host key was not trusted; nothing was done")
        dest["host_key_fingerprint"] = fingerprint
    mode = ask(
        Question(
            "encryption.mode",
            "select",
            "How is the backup encrypted? (a GPG-key backup needs a settings file and keyring)",
            [Choice(m, m) for m in ("symmetric", "none")],
            default="symmetric",
        )
    )
    encryption: dict[str, Any] = {"mode": mode}
    if mode != "none":
        os.environ[PASSPHRASE_ENV] = ask(
            Question("encryption.passphrase", "password", "Passphrase of the backup:")
        )
        encryption["passphrase_env"] = PASSPHRASE_ENV
    return Settings.model_validate({"destination": dest, "encryption": encryption}), ""


def _s3(ask: Ask) -> dict[str, Any]:
    """An S3 destination: the endpoint, the bucket, the dead host's own prefix, and the keys
    (the secret stays in the settings object, in memory)."""
    dest: dict[str, Any] = {}
    endpoint = _text(ask, "destination.endpoint_url", "S3 endpoint URL (empty: AWS S3):")
    if endpoint:
        dest["endpoint_url"] = endpoint
    dest["bucket"] = _text(ask, "destination.bucket", "Bucket:")
    dest["prefix"] = _text(ask, "destination.prefix", "Prefix of the lost host's backups:")
    dest["access_key_id"] = _text(ask, "destination.access_key_id", "Access key ID:")
    dest["secret_access_key"] = ask(
        Question("destination.secret_access_key", "password", "Secret access key:")
    )
    return dest
