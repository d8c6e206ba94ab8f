"""[destination]: where the backups go and how rescue logs in there.

Why the cross-checks: a key that the method does not use (a password for a local directory, a
host key for FTP) is a misunderstanding, so it is an error that names the key, not ignored.

For s3, `path` is not given: the bucket and the prefix (its `{hostname}` placed) name the
backups, and the model sets `path` to the expanded prefix, the directory every other module
reads as the place of the backups (rescue's own small files go under it too).
"""

from __future__ import annotations

import re
import socket
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
# S3's rules for a bucket name (lower case, digits, dots and hyphens, 3 to 63 characters).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_PART = re.compile(r"[A-Za-z0-9._+@=-]+|\{hostname\}")
# The keys only method s3 reads, and the ones it does not.
S3_KEYS = (
    "endpoint_url",
    "bucket",
    "prefix",
    "region",
    "create_bucket",
    "access_key_id",
    "secret_access_key",
    "secret_access_key_file",
    "secret_access_key_env",
)
LOGIN_KEYS = (
    "host",
    "port",
    "user",
    "password",
    "password_file",
    "password_env",
    "ssh_key_file",
    "host_key_fingerprint",
)


class Destination(Section):
    """[destination]: where the backups go and how to log in there."""

    help: ClassVar[str] = (
        "Where the backups go. Required. Credentials can be inline (password), in a file "
        "(password_file) or in the environment (password_env); prefer the file or the "
        "environment."
    )

    method: Method = Field(
        description="How the backups travel: file (a local or mounted directory), ftp, ftps, "
        "sftp, scp, or s3 (S3-compatible object storage: AWS, Ceph RGW, MinIO, Garage and the "
        "others).",
        examples=["file", "sftp", "s3"],
    )
    path: str = Field(
        default="",
        json_schema_extra={"in_sample": True},  # required but for s3: the sample writes it
        description="The directory that holds the backups. Required, except for s3 (bucket "
        "and prefix instead). For method file an absolute local directory; for the others "
        "the directory on the server (FTP: relative to the login directory unless absolute).",
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
        description="ftps and s3 (https) only: a PEM file of the certificate authority (or the "
        "server's own self-signed certificate) to verify the server with. Default: the "
        "system's CAs. The certificate is always verified.",
        examples=["/etc/rescue/ftps-ca.pem"],
    )
    endpoint_url: str | None = Field(
        default=None,
        description="s3 only: the storage's S3 endpoint, http:// or https:// (a Ceph RGW, "
        "MinIO or Garage server, or a provider's). Default: AWS S3 itself.",
        examples=["https://s3.example.org", "http://127.0.0.1:7480"],
    )
    bucket: str | None = Field(
        default=None,
        description="s3 only, required: the bucket (3-63 characters: a-z, 0-9, dots, hyphens). "
        "Many hosts can share one, each under its own prefix (`rescue fleet status` shows "
        "them all). rescue does not create it unless create_bucket is true or `rescue config "
        "check --create-bucket` is run.",
        examples=["backups"],
    )
    prefix: str = Field(
        default="{hostname}",
        description="s3 only: where in the bucket this host's backups go, like a directory. "
        "{hostname} is replaced by this machine's host name, so one settings file serves a "
        "fleet. On the rescue ISO, give the dead host's prefix itself (its name, not "
        "{hostname}, which is the rescue system's there).",
        examples=["{hostname}", "servers/web1"],
    )
    region: str | None = Field(
        default=None,
        description="s3 only: the region to sign requests for. Default: us-east-1, which "
        "Ceph RGW, MinIO and Garage accept.",
        examples=["eu-central-1"],
    )
    create_bucket: bool = Field(
        default=False,
        description="s3 only: make the bucket at the first backup when it does not exist. "
        "Off by default: a misspelt bucket name should be an error, not a new bucket.",
        examples=[True],
    )
    access_key_id: str | None = Field(
        default=None,
        description="s3 only: the access key ID. Default: the environment's AWS_ACCESS_KEY_ID.",
        examples=["AKIAIOSFODNN7EXAMPLE"],
    )
    secret_access_key: SecretStr | None = Field(
        default=None,
        description="s3 only: the secret access key, inline. This file must then be mode "
        "0600. At most one of secret_access_key, secret_access_key_file and "
        "secret_access_key_env; with none, the environment's AWS_SECRET_ACCESS_KEY.",
        examples=["change-me"],
    )
    secret_access_key_file: AbsPath | None = Field(
        default=None,
        description="s3 only: a file (mode 0600) whose content is the secret access key.",
        examples=["/etc/rescue/s3.secret"],
    )
    secret_access_key_env: EnvName | None = Field(
        default=None,
        description="s3 only: the name of an environment variable that holds the secret "
        "access key.",
        examples=["RESCUE_S3_SECRET"],
    )

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str | None) -> str | None:
        if value is not None and (not _BUCKET.fullmatch(value) or ".." in value):
            raise ValueError(
                "must be an S3 bucket name: 3 to 63 characters of a-z, 0-9, dots and hyphens"
            )
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        parts = [p for p in value.strip("/").split("/")]
        if not all(_PREFIX_PART.fullmatch(p) and p not in (".", "..") for p in parts):
            raise ValueError(
                "must be names (letters, digits, . _ + @ = -) or {hostname} between slashes, "
                f"not {value!r}"
            )
        return "/".join(parts)

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^/\s@]+/?", value):
            raise ValueError(
                "must be http:// or https:// and a host, with an optional port and nothing "
                "else (the bucket is a key of its own)"
            )
        return value.rstrip("/") if value else value

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
        if self.secret_access_key is not None:
            execute.register_secret(self.secret_access_key.get_secret_value())
        execute.register_secret_variable(self.secret_access_key_env)
        problems: list[tuple[Loc, str]] = []
        if self.method != "s3":
            problems += [
                ((key,), "only for method s3") for key in S3_KEYS if key in self.model_fields_set
            ]
            if "path" in self.model_fields_set and not self.path:
                problems.append((("path",), "must not be empty"))
            elif not self.path:
                problems.append((("path",), "missing (the directory that holds the backups)"))
        if self.method == "s3":
            problems += self._s3_problems()
        elif self.method == "file":
            try:
                self.path = absolute_path(self.path) if self.path else ""
            except ValueError as exc:
                problems.append((("path",), f"{exc} (method file needs a local directory)"))
            for key in (*LOGIN_KEYS, "tls_ca_file"):
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
                problems.append((("tls_ca_file",), "only for methods ftps and s3"))
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

    def _s3_problems(self) -> list[tuple[Loc, str]]:
        """Check method s3's keys and set path to the prefix with {hostname} in place."""
        problems: list[tuple[Loc, str]] = [
            ((key,), "not used by method s3 (endpoint_url, bucket and the access keys)")
            for key in ("path", *LOGIN_KEYS)
            if key in self.model_fields_set
        ]
        if self.bucket is None:
            problems.append((("bucket",), "missing (required for method s3)"))
        sources = [
            k
            for k in ("secret_access_key", "secret_access_key_file", "secret_access_key_env")
            if is_set(self, k)
        ]
        for extra in sources[1:]:
            problems.append(((extra,), f"give only one of the three (already has {sources[0]})"))
        if self.tls_ca_file is not None and not (self.endpoint_url or "").startswith("https:"):
            problems.append((("tls_ca_file",), "only for an https:// endpoint_url"))
        self.path = self.prefix.replace("{hostname}", socket.gethostname())
        return problems
