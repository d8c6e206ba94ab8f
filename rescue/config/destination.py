"""[destination]: where the backups go and how rescue logs in there.

Why the cross-checks: a key that the method does not use (a password for a local directory, a
host key for FTP) is a misunderstanding, so it is an error that names the key, not ignored.
"""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator, model_validator

from rescue.config.fields import (
    SSH_METHODS,
    AbsPath,
    EnvName,
    Method,
    Section,
    absolute_path,
    is_set,
)
from rescue.config.toml_file import Loc, Problems
from rescue.process import execute

_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")


class Destination(Section):
    """[destination]: where the backups go and how to log in there."""

    help: ClassVar[str] = (
        "Where the backups go. Required. Credentials can be inline (password), in a file "
        "(password_file) or in the environment (password_env); prefer the file or the "
        "environment."
    )

    method: Method = Field(
        description="How the backups travel: file (a local or mounted directory), ftp, ftps, "
        "sftp or scp. s3 is reserved for S3-compatible storage and not supported yet.",
        examples=["file", "sftp"],
    )
    path: str = Field(
        min_length=1,
        description="The directory that holds the backups. For method file an absolute local "
        "directory; for the others the directory on the server (FTP: relative to the login "
        "directory unless absolute).",
        examples=["/var/backups/rescue", "/srv/backups/web1"],
    )
    host: str | None = Field(
        default=None,
        min_length=1,
        description="The backup server's host name or address. Required for ftp, ftps, sftp "
        "and scp; not used by file.",
        examples=["backup.example.org"],
    )
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="The server's port, 1 to 65535. Default: 21 for ftp/ftps, 22 for sftp/scp.",
        examples=[22],
    )
    user: str | None = Field(
        default=None,
        min_length=1,
        description="The login name on the server. Not used by file.",
        examples=["backup"],
    )
    password: SecretStr | None = Field(
        default=None,
        description="The login password, inline. This file must then be mode 0600. At most "
        "one of password, password_file and password_env.",
        examples=["change-me"],
    )
    password_file: AbsPath | None = Field(
        default=None,
        description="A file (mode 0600) whose content is the login password.",
        examples=["/etc/rescue/destination.password"],
    )
    password_env: EnvName | None = Field(
        default=None,
        description="The name of an environment variable that holds the login password.",
        examples=["RESCUE_DESTINATION_PASSWORD"],
    )
    ssh_key_file: AbsPath | None = Field(
        default=None,
        description="The private SSH key to log in with (sftp and scp only).",
        examples=["/etc/rescue/id_ed25519"],
    )
    host_key_fingerprint: str | None = Field(
        default=None,
        description="The server's SSH host key fingerprint as `ssh-keygen -lf` prints it "
        "(sftp and scp only). rescue refuses any other key; without it, the first connection "
        "fails and shows the fingerprint to check and pin. `rescue config trust-host` shows "
        "the server's key and writes it here on a yes.",
        examples=["SHA256:" + "x" * 43],
    )
    tls_ca_file: AbsPath | None = Field(
        default=None,
        description="ftps only: a PEM file of the certificate authority (or the server's own "
        "self-signed certificate) to verify the server with. Default: the system's CAs. "
        "The certificate is always verified.",
        examples=["/etc/rescue/ftps-ca.pem"],
    )

    @field_validator("method", mode="before")
    @classmethod
    def _reserved(cls, value: object) -> object:
        if value == "s3":
            raise ValueError("method s3 (S3-compatible storage) is not supported yet")
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is not None and (set(value) & set("/@ \t") or "://" in value):
            raise ValueError(
                "must be a host name or address only (user and path are keys of their own)"
            )
        return value

    @field_validator("host_key_fingerprint")
    @classmethod
    def _fingerprint(cls, value: str | None) -> str | None:
        if value is not None and not _FINGERPRINT.fullmatch(value):
            raise ValueError(
                "must look like SHA256:<43 base64 characters>, as `ssh-keygen -lf` prints it"
            )
        return value

    @model_validator(mode="after")
    def _by_method(self) -> Destination:
        if self.password is not None:  # masked in every log line from now on, just in case
            execute.register_secret(self.password.get_secret_value())
        execute.register_secret_variable(self.password_env)  # no child inherits it
        problems: list[tuple[Loc, str]] = []
        if self.method == "file":
            try:
                self.path = absolute_path(self.path)
            except ValueError as exc:
                problems.append((("path",), f"{exc} (method file needs a local directory)"))
            for key in (
                "host",
                "port",
                "user",
                "password",
                "password_file",
                "password_env",
                "ssh_key_file",
                "host_key_fingerprint",
                "tls_ca_file",
            ):
                if getattr(self, key) is not None:
                    problems.append(((key,), "not used by method file (a local directory)"))
        else:
            if self.host is None:
                problems.append((("host",), f"missing (required for method {self.method})"))
            if self.method not in SSH_METHODS:
                for key in ("ssh_key_file", "host_key_fingerprint"):
                    if getattr(self, key) is not None:
                        problems.append(((key,), "only for method sftp or scp"))
            if self.method != "ftps" and self.tls_ca_file is not None:
                problems.append((("tls_ca_file",), "only for method ftps"))
            sources = [k for k in ("password", "password_file", "password_env") if is_set(self, k)]
            for extra in sources[1:]:
                problems.append(
                    (
                        (extra,),
                        f"give only one of password, password_file, password_env "
                        f"(already has {sources[0]})",
                    )
                )
        if problems:
            raise Problems(problems)
        return self
