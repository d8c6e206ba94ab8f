"""[encryption]: how duplicity encrypts the volumes (none, a passphrase, or a gpg key).

Why checked here: a symmetric backup without a passphrase source, or a gpg one without a key,
would only fail in duplicity, after the volumes were being written.
"""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from rescue.config.fields import AbsPath, EncryptionMode, EnvName, Section, is_set
from rescue.config.toml_file import Loc, Problems
from rescue.process import execute

_GPG_KEY = re.compile(r"[0-9A-F]{8}|[0-9A-F]{16}|[0-9A-F]{40}")


class Encryption(Section):
    """[encryption]: how duplicity encrypts the volumes."""

    help: ClassVar[str] = (
        "How the backup volumes are encrypted. symmetric needs a passphrase (from a file or the "
        "environment); gpg encrypts to a public key, and restoring needs its secret key."
    )

    mode: EncryptionMode = Field(
        default="none",
        description="none, symmetric (a passphrase) or gpg (a public key).",
        examples=["symmetric"],
    )
    passphrase_file: AbsPath | None = Field(
        default=None,
        description="A file (mode 0600) holding the passphrase. symmetric needs exactly one of "
        "passphrase_file and passphrase_env; for gpg it is the secret key's passphrase "
        "(optional, needed to restore).",
        examples=["/etc/rescue/passphrase"],
    )
    passphrase_env: EnvName | None = Field(
        default=None,
        description="The name of an environment variable holding the passphrase (instead of "
        "passphrase_file).",
        examples=["RESCUE_PASSPHRASE"],
    )
    gpg_key: str | None = Field(
        default=None,
        description="gpg only, required: the key to encrypt to, as a key id or fingerprint of "
        "8, 16 or 40 hex digits.",
        examples=["0123456789ABCDEF0123456789ABCDEF01234567"],
    )
    gnupg_home: AbsPath | None = Field(
        default=None,
        description="gpg only: the GnuPG home that holds the key. Default: $GNUPGHOME or ~/.gnupg.",
        examples=["/root/.gnupg"],
    )

    @field_validator("gpg_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        key = value.replace(" ", "").upper().removeprefix("0X")
        if not _GPG_KEY.fullmatch(key):
            raise ValueError("must be a key id or fingerprint of 8, 16 or 40 hex digits")
        return key

    @model_validator(mode="after")
    def _by_mode(self) -> Encryption:
        execute.register_secret_variable(self.passphrase_env)  # no child inherits it
        problems: list[tuple[Loc, str]] = []
        both = self.passphrase_file is not None and self.passphrase_env is not None
        if both and self.mode != "none":
            problems.append(
                (("passphrase_env",), "give only one of passphrase_file, passphrase_env")
            )
        if self.mode == "none":
            for key in ("passphrase_file", "passphrase_env", "gpg_key", "gnupg_home"):
                if is_set(self, key):
                    problems.append(((key,), 'not used when mode is "none" (no encryption)'))
        elif self.mode == "symmetric":
            if self.passphrase_file is None and self.passphrase_env is None:
                problems.append(
                    (
                        ("passphrase_file",),
                        "missing: mode symmetric needs passphrase_file or passphrase_env",
                    )
                )
            for key in ("gpg_key", "gnupg_home"):
                if is_set(self, key):
                    problems.append(((key,), 'only for mode "gpg"'))
        elif self.gpg_key is None:
            problems.append(
                (("gpg_key",), "missing (mode gpg needs the key id or fingerprint to encrypt to)")
            )
        if problems:
            raise Problems(problems)
        return self
