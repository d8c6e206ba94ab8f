"""The settings, asked for in a guided recovery that has no settings file (a new machine with
nothing but the ISO): where the backup is, how to log in, how it is encrypted.

Secrets stay in memory: the password goes into the settings object, the passphrase into this
process's environment (masked in every log), never into a file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rescue.config import Settings, load_settings
from rescue.destinations import DEFAULT_PORTS, fetch_host_key, ssh_fingerprint
from rescue.errors import UsageError
from rescue.prompts import Choice, Question
from rescue.steps.context import Context

PASSPHRASE_ENV = "RESCUE_RECOVER_PASSPHRASE"
METHODS = ("file", "sftp", "scp", "ftps", "ftp")


def _text(ctx: Context, qid: str, message: str, default: str = "") -> str:
    return str(ctx.ask(Question(qid, "text", message, default=default))).strip()


def ask_settings(ctx: Context) -> Settings:
    path = _text(ctx, "recover.settings_file", "Settings file (empty: type the settings):")
    if path:
        ctx.options.settings_file = path
        return load_settings(Path(path))
    method = ctx.ask(
        Question(
            "destination.method",
            "select",
            "Where is the backup?",
            [Choice(m, m) for m in METHODS],
            default="sftp",
        )
    )
    dest: dict[str, Any] = {"method": method}
    if method != "file":
        dest["host"] = _text(ctx, "destination.host", "Backup host:")
        port = _text(ctx, "destination.port", "Port:", str(DEFAULT_PORTS[method]))
        if not port.isdigit():
            raise UsageError(f"the port must be a number, not {port!r}")
        dest["port"] = int(port)
        dest["user"] = _text(ctx, "destination.user", "User:", "backup") or None
        password = ctx.ask(Question("destination.password", "password", "Password (empty: none):"))
        if password:
            dest["password"] = password
    dest["path"] = _text(ctx, "destination.path", "Directory of the backups:")
    if method in ("sftp", "scp"):
        key = fetch_host_key(dest["host"], dest["port"])
        fingerprint = ssh_fingerprint(key)
        trusted = ctx.ask(
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
    mode = ctx.ask(
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
        os.environ[PASSPHRASE_ENV] = ctx.ask(
            Question("encryption.passphrase", "password", "Passphrase of the backup:")
        )
        encryption["passphrase_env"] = PASSPHRASE_ENV
    return Settings.model_validate({"destination": dest, "encryption": encryption})
