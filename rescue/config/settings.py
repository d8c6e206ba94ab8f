"""The whole settings file, and its secrets, which are read only at the moment they are needed.

Why secrets are methods, not fields: a password file or variable is read when a run needs it,
registered with the process gate's mask at once, and never printed; a secret file readable by
others is refused (exit code of InsecureConfigError) rather than used.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError

from rescue.config.destination import S3_KEYS, Destination
from rescue.config.encryption import Encryption
from rescue.config.sections import ConfigBackup, Duplicity, Monitoring, Schedule, Selection
from rescue.config.toml_file import Locator, config_error
from rescue.errors import ConfigError, InsecureConfigError
from rescue.process import execute


class Settings(BaseModel):
    """The whole settings file. Build it with load_settings(), or model_validate() in code."""

    model_config = ConfigDict(extra="forbid", strict=True)

    destination: Destination = Field(description="Where the backups go.")
    encryption: Encryption = Field(default_factory=Encryption, description="Encryption.")
    schedule: Schedule = Field(default_factory=Schedule, description="When backups run.")
    selection: Selection = Field(default_factory=Selection, description="What is backed up.")
    duplicity: Duplicity = Field(default_factory=Duplicity, description="duplicity's knobs.")
    config_backup: ConfigBackup = Field(
        default_factory=ConfigBackup, description="Configuration backups."
    )
    monitoring: Monitoring = Field(default_factory=Monitoring, description="Metrics and pings.")

    # where it came from, for `file:line:` in secret errors (not the text: it may hold one)
    _path: Path | None = PrivateAttr(default=None)
    _locator: Locator | None = PrivateAttr(default=None)

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Settings:
        """Like BaseModel.model_validate, but invalid settings raise one ConfigError."""
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as exc:
            raise config_error(exc, None, None, Settings) from None

    @property
    def path(self) -> Path | None:
        """The file these settings came from (None when built in code)."""
        return self._path

    def _where(self, section: str, key: str) -> str:
        if self._locator is None:
            return ""
        return f"{self._path}:{self._locator.line((section, key))}: "

    def destination_password(self) -> str | None:
        """The login password, from wherever the settings say; None when there is none."""
        dest = self.destination
        if dest.password is not None:
            return remember(dest.password.get_secret_value())
        return self._secret("destination", "password", dest.password_file, dest.password_env)

    def s3_credentials(self) -> tuple[str, str]:
        """The access key ID and secret access key of method s3: the settings' own, else the
        environment's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (boto's names)."""
        dest = self.destination
        key_id = dest.access_key_id or os.environ.get("AWS_ACCESS_KEY_ID")
        if dest.secret_access_key is not None:
            secret: str | None = remember(dest.secret_access_key.get_secret_value())
        else:
            secret = self._secret(
                "destination",
                "secret_access_key",
                dest.secret_access_key_file,
                dest.secret_access_key_env,
            ) or os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not key_id or not secret:
            missing = "access_key_id" if not key_id else "secret_access_key"
            raise ConfigError(
                f"{self._where('destination', 'method')}destination.{missing}: not set, and "
                f"AWS_{missing.upper()} is not in the environment (method s3 needs both keys)"
            )
        return key_id, remember(secret)

    def passphrase(self) -> str | None:
        """The encryption passphrase (symmetric, or the gpg secret key's); None when unset."""
        enc = self.encryption
        if enc.mode == "none":
            return None
        return self._secret("encryption", "passphrase", enc.passphrase_file, enc.passphrase_env)

    def _secret(self, section: str, stem: str, file: str | None, env: str | None) -> str | None:
        """Read a secret at the moment it is needed; errors name the key, never the value."""
        if file is not None:
            key = f"{stem}_file"
            return remember(
                read_secret_file(Path(file), f"{section}.{key}", self._where(section, key))
            )
        if env is not None:
            key = f"{stem}_env"
            value = os.environ.get(env)
            if not value:
                state = "is empty" if value == "" else "is not set"
                raise ConfigError(
                    f"{self._where(section, key)}{section}.{key}: the environment variable "
                    f"{env} {state}"
                )
            return remember(value)
        return None

    def redacted(self) -> dict[str, Any]:
        """Everything as plain data, inline secrets as "***" (file and variable names stay)."""
        data = _plain(self.model_dump())
        dest = data["destination"]
        if self.destination.method == "s3":  # the prefix expanded: not a key to write back
            del dest["path"]
        else:  # defaults of keys only s3 reads: not keys to write back
            for key in S3_KEYS:
                if key not in self.destination.model_fields_set:
                    dest.pop(key, None)
        return data


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return execute.MASK
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def remember(secret: str) -> str:
    """Every secret that leaves this module is registered, so logs and errors mask it."""
    execute.register_secret(secret)
    return secret


def read_secret_file(path: Path, key: str, where: str = "") -> str:
    """A secret file's content minus one trailing newline; refused when others can read it."""
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{where}{key}: {path} is not a regular file")
        if mode & 0o077:
            raise InsecureConfigError(
                f"{path} is readable by group or others (mode {stat.S_IMODE(mode):04o}) and "
                f"holds the secret of {key}; run: chmod 600 {path}"
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}{key}: {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{where}{key}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}{key}: {path} is not UTF-8 text") from None
    secret = text.removesuffix("\r\n") if text.endswith("\r\n") else text.removesuffix("\n")
    if not secret:
        raise ConfigError(f"{where}{key}: {path} is empty")
    return secret


def missing_env(settings: Settings) -> list[tuple[str, str]]:
    """(key, variable) for each secret variable the settings name that this shell lacks."""
    pairs: Sequence[tuple[str, str | None]] = (
        ("destination.password_env", settings.destination.password_env),
        ("destination.secret_access_key_env", settings.destination.secret_access_key_env),
        (
            "encryption.passphrase_env",
            settings.encryption.passphrase_env if settings.encryption.mode != "none" else None,
        ),
    )
    return [(key, var) for key, var in pairs if var is not None and not os.environ.get(var)]
