"""The settings model: one TOML file, validated up front, with errors that name the key and line.

Why so strict: a backup that was misconfigured is found out on the day of the restore, which is
the worst possible day. So unknown keys are errors (a typo must not silently fall back to a
default), every error names `file:line: section.key`, and secrets are only ever read at the
moment they are needed, never printed, and refused when the file holding them is readable by
others. The model is also the single source of truth for `rescue config init`: each field carries
its description and an example, and `sample_settings()` writes the commented sample from them.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import os
import re
import stat
import textwrap
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from rescue import execute
from rescue.errors import ConfigError, GpgKeyError, InsecureConfigError

DEFAULT_CONFIG_PATH = Path("/etc/rescue/rescue.toml")

Method = Literal["file", "ftp", "ftps", "sftp", "scp"]
EncryptionMode = Literal["none", "symmetric", "gpg"]
FullEvery = Literal["daily", "weekly", "monthly"]
IncrementalEvery = Literal["hourly", "daily", "weekly"]
DrillEvery = Literal["off", "daily", "weekly", "monthly"]

REMOTE_METHODS = ("ftp", "ftps", "sftp", "scp")
SSH_METHODS = ("sftp", "scp")
# How long each schedule interval is, in hours: only the order matters.
_INTERVAL_HOURS = {"hourly": 1, "daily": 24, "weekly": 24 * 7, "monthly": 24 * 30}

_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
_GPG_KEY = re.compile(r"[0-9A-F]{8}|[0-9A-F]{16}|[0-9A-F]{40}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_START_TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")

Loc = tuple[str | int, ...]
ModelT = TypeVar("ModelT", bound=BaseModel)


class _Problems(ValueError):
    """Several cross-field problems of one section, each with the key it is about.

    pydantic reports a model validator's error at the section; carrying the keys lets the error
    name `destination.host` and its line instead of just `destination`.
    """

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems))
        self.problems = problems


def _absolute(value: str) -> str:
    """An absolute POSIX path, normalised; `..` is refused so that 'inside root' means inside."""
    if not value.startswith("/"):
        raise ValueError(f"must be an absolute path (starting with /), not {value!r}")
    path = PurePosixPath(value)
    if ".." in path.parts:
        raise ValueError(f"must not contain '..': {value!r}")
    return str(path)


AbsPath = Annotated[str, AfterValidator(_absolute)]


def _inside(path: str, root: str) -> bool:
    p, r = PurePosixPath(path), PurePosixPath(root)
    return p == r or r in p.parents


# -- where each key is in the file ------------------------------------------------------------

_HEADER = re.compile(r"\s*\[\s*([A-Za-z0-9_-]+(?:\s*\.\s*[A-Za-z0-9_-]+)*)\s*\]\s*(?:#.*)?")
_KEY = re.compile(r"\s*([A-Za-z0-9_-]+(?:\s*\.\s*[A-Za-z0-9_-]+)*)\s*=")


class _Locator:
    """Line numbers of `[section]` headers and `key =` lines; tomllib keeps no positions.

    A plain line scanner is enough for what the settings use: bare keys, dotted keys and
    headers. A line inside a multi-line string that looks like a key only matters when it also
    names a real key, and then the first occurrence wins.
    """

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[str, ...], int] = {}
        section: tuple[str, ...] = ()
        for number, line in enumerate(text.splitlines(), start=1):
            if header := _HEADER.fullmatch(line):
                section = _split(header.group(1))
                self.lines.setdefault(section, number)
            elif key := _KEY.match(line):
                names = (*section, *_split(key.group(1)))
                for end in range(len(section) + 1, len(names) + 1):  # a.b = 1 also defines a
                    self.lines.setdefault(names[:end], number)

    def line(self, loc: Loc) -> int:
        """The line of the key; else of its nearest enclosing section; else 1."""
        names = tuple(part for part in loc if isinstance(part, str))
        for end in range(len(names), 0, -1):
            if names[:end] in self.lines:
                return self.lines[names[:end]]
        return 1


def _split(dotted: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in dotted.split("."))


class _Section(BaseModel):
    """Shared model settings: unknown keys are errors and TOML's types are taken as they are."""

    model_config = ConfigDict(extra="forbid", strict=True)
    help: ClassVar[str] = ""


class Destination(_Section):
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
    password_env: str | None = Field(
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

    @field_validator("password_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError("must be the name of an environment variable (letters, digits, _)")
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
                self.path = _absolute(self.path)
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
            sources = [k for k in ("password", "password_file", "password_env") if _set(self, k)]
            for extra in sources[1:]:
                problems.append(
                    (
                        (extra,),
                        f"give only one of password, password_file, password_env "
                        f"(already has {sources[0]})",
                    )
                )
        if problems:
            raise _Problems(problems)
        return self


def _set(model: BaseModel, key: str) -> bool:
    return getattr(model, key) is not None


class Encryption(_Section):
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
    passphrase_env: str | None = Field(
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

    @field_validator("passphrase_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError("must be the name of an environment variable (letters, digits, _)")
        return value

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
                if _set(self, key):
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
                if _set(self, key):
                    problems.append(((key,), 'only for mode "gpg"'))
        elif self.gpg_key is None:
            problems.append(
                (("gpg_key",), "missing (mode gpg needs the key id or fingerprint to encrypt to)")
            )
        if problems:
            raise _Problems(problems)
        return self


class Schedule(_Section):
    """[schedule]: the timer `rescue schedule install` makes, the auto full/incremental rule
    (rescue.cadence), retention, and the failure hook."""

    help: ClassVar[str] = (
        "When backups run: a full every full_every, incrementals in between, and the last "
        "keep_full full chains are kept."
    )

    full_every: FullEvery = Field(
        default="weekly",
        description="How often a full backup is taken: daily, weekly or monthly.",
        examples=["weekly"],
    )
    keep_full: int = Field(
        default=4,
        ge=1,
        description="How many full chains (a full and its incrementals) to keep; older ones "
        "are deleted after a backup.",
        examples=[4],
    )
    incremental_every: IncrementalEvery = Field(
        default="daily",
        description="How often an incremental runs between fulls: hourly, daily or weekly, and "
        "more often than full_every.",
        examples=["daily"],
    )
    start_time: str = Field(
        default="02:30",
        description="The time of day the backups start, HH:MM (24-hour).",
        examples=["02:30"],
    )

    random_delay_minutes: int = Field(
        default=15,
        ge=0,
        le=720,
        description="Each run starts up to this many minutes after start_time, at random, so "
        "many hosts do not hit one backup server at once (systemd timers only).",
        examples=[15],
    )
    on_failure: str | None = Field(
        default=None,
        description="A command run when a backup fails (a mail or webhook script). It gets a "
        "summary of the failure on stdin, never a secret, and no secret in its environment.",
        examples=["/usr/local/bin/mail-admin"],
    )

    drill_every: DrillEvery = Field(
        default="off",
        description="How often `rescue schedule install` also runs `rescue drill` (restore "
        "the backup to scratch and compare it with the live files): off, daily, weekly "
        "(Sundays) or monthly (each 1st), at drill_time.",
        examples=["weekly"],
    )
    drill_time: str = Field(
        default="05:30",
        description="The time of day the scheduled drill starts, HH:MM (24-hour). Pick one "
        "when no backup runs: a drill and a backup cannot use duplicity's cache at once.",
        examples=["05:30"],
    )

    @field_validator("start_time", "drill_time", mode="before")
    @classmethod
    def _time(cls, value: object) -> object:
        if isinstance(value, dt.time) and not value.second and not value.microsecond:
            value = value.strftime("%H:%M")  # an unquoted TOML time, 02:30:00
        if isinstance(value, str) and not _START_TIME.fullmatch(value):
            raise ValueError("must be a time of day as HH:MM (24-hour), e.g. 02:30")
        return value

    @model_validator(mode="after")
    def _order(self) -> Schedule:
        if _INTERVAL_HOURS[self.incremental_every] >= _INTERVAL_HOURS[self.full_every]:
            raise _Problems(
                [
                    (
                        ("incremental_every",),
                        f"must be more frequent than full_every ({self.incremental_every} is "
                        f"not shorter than {self.full_every}): incrementals run between fulls",
                    )
                ]
            )
        return self

    @property
    def start(self) -> dt.time:
        """start_time as a time of day."""
        hours, minutes = self.start_time.split(":")
        return dt.time(int(hours), int(minutes))

    @property
    def drill_start(self) -> dt.time:
        """drill_time as a time of day."""
        hours, minutes = self.drill_time.split(":")
        return dt.time(int(hours), int(minutes))


DEFAULT_EXCLUDES = ("/mnt", "/dev", "/media", "/sys", "/proc", "/run", "/tmp")


class Selection(_Section):
    """[selection]: what is backed up."""

    help: ClassVar[str] = (
        "What is backed up. Excludes win over includes; excludes outside root are ignored, so "
        "the defaults also suit a root other than /."
    )

    root: AbsPath = Field(
        default="/",
        description="The directory the backup is taken from; paths in the backup are relative "
        "to it.",
        examples=["/"],
    )
    include: list[AbsPath] = Field(
        default_factory=lambda: ["/"],
        min_length=1,
        description="Absolute paths to back up, each inside root. Default: [root].",
        examples=[["/"]],
    )
    exclude: list[AbsPath] = Field(
        default_factory=lambda: list(DEFAULT_EXCLUDES),
        description="Absolute paths to leave out. Their mount points are recreated empty on "
        "recovery.",
        examples=[list(DEFAULT_EXCLUDES)],
    )
    exclude_globs: list[str] = Field(
        default_factory=list,
        description="Shell patterns to leave out; one without a leading / matches at any depth.",
        examples=[["*.avi", "/home/*/.cache"]],
    )

    @field_validator("exclude_globs")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        if any(not v.strip() for v in value):
            raise ValueError("must not hold empty patterns")
        return value

    @model_validator(mode="after")
    def _within_root(self) -> Selection:
        if "include" not in self.model_fields_set:
            self.include = [self.root]
        problems: list[tuple[Loc, str]] = [
            (("include", i), f"{path} is not inside root {self.root}")
            for i, path in enumerate(self.include)
            if not _inside(path, self.root)
        ]
        if problems:
            raise _Problems(problems)
        return self


class Duplicity(_Section):
    """[duplicity]: knobs passed to duplicity itself."""

    help: ClassVar[str] = "How duplicity itself runs."

    archive_dir: AbsPath = Field(
        default="/var/cache/rescue/duplicity",
        description="duplicity's local cache of manifests and signatures (rebuilt from the "
        "destination when lost).",
        examples=["/var/cache/rescue/duplicity"],
    )
    volsize: int = Field(
        default=200,
        ge=1,
        le=10000,
        description="The size of each backup volume in MB, 1 to 10000.",
        examples=[200],
    )
    retries: int = Field(
        default=3,
        ge=0,
        le=100,
        description="How often duplicity retries a failed transfer before giving up, 0 to 100 "
        "(a file destination is tried once: a full local disk does not get better by waiting).",
        examples=[3],
    )
    stall_seconds: int = Field(
        default=600,
        ge=10,
        le=86400,
        description="duplicity is stopped, with an error, when it and its gpg write nothing and "
        "do no I/O for this long (10 to 86400); once it has reported an error it gets 10 "
        "seconds to exit.",
        examples=[600],
    )


_PING_URL = re.compile(r"https?://[^/\s@]+(/\S*)?")


class Monitoring(_Section):
    """[monitoring]: what node_exporter and a ping service (healthchecks.io) learn of each run."""

    help: ClassVar[str] = (
        "Monitoring: a Prometheus node_exporter textfile rewritten after every backup and "
        "drill, and healthchecks.io-style pings at the start, success and failure of each "
        "backup. A failing ping or textfile is a warning; it never fails the backup."
    )

    textfile: AbsPath | None = Field(
        default=None,
        description="A .prom file for node_exporter's textfile collector (its "
        "--collector.textfile.directory), replaced atomically after every backup and drill: "
        "the last success and outcome, duration, bytes, sets, the oldest restorable time and "
        "the last drill.",
        examples=["/var/lib/prometheus/node-exporter/rescue.prom"],
    )
    ping_url: SecretStr | None = Field(
        default=None,
        description="A ping URL (http or https) in healthchecks.io's style, for the backups: "
        "URL/start when a backup starts, URL when it succeeded, URL/fail (the error line in "
        "the body) when it failed. Treated as a secret: never logged or shown.",
        examples=["https://hc-ping.com/your-check-uuid"],
    )
    drill_ping_url: SecretStr | None = Field(
        default=None,
        description="The same pings for `rescue drill` (a second check: drills run on their "
        "own schedule); a drill that finds differences pings URL/fail.",
        examples=["https://hc-ping.com/your-drill-check-uuid"],
    )
    ping_timeout_seconds: int = Field(
        default=10,
        ge=1,
        le=120,
        description="How long one ping may take, 1 to 120 seconds, before it is given up with "
        "a warning.",
        examples=[10],
    )

    @field_validator("ping_url", "drill_ping_url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        url = value.get_secret_value()
        execute.register_secret(url)
        if not _PING_URL.fullmatch(url):
            raise ValueError("must be an http:// or https:// URL without spaces or a user name")
        return value


Compression = Literal["gzip", "zstd"]


class ConfigBackup(_Section):
    """[config_backup]: where `rescue config-backup` keeps its archives and how it writes them."""

    help: ClassVar[str] = (
        "Configuration backups (`rescue config-backup`): small archives of /etc and friends, "
        "per module. They are encrypted like the backups when [encryption] mode is not none "
        "(bug reports never are: they are redacted to be sent)."
    )

    directory: AbsPath = Field(
        default="/var/lib/rescue/config-backups",
        description="The local directory of the archives (made mode 0700).",
        examples=["/var/lib/rescue/config-backups"],
    )
    compression: Compression = Field(
        default="gzip",
        description="gzip (readable anywhere) or zstd (smaller and faster; needs zstd).",
        examples=["gzip"],
    )
    copy_to_destination: bool = Field(
        default=False,
        description="Also copy each new archive to the backup destination, in its "
        "config-backups/ directory (delete --remote removes the copy).",
        examples=[True],
    )
    modules_dir: AbsPath = Field(
        default="/etc/rescue/modules.d",
        description="The directory of the admin's own modules, one TOML file each.",
        examples=["/etc/rescue/modules.d"],
    )


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

    _path: Path | None = PrivateAttr(default=None)
    _locator: _Locator | None = PrivateAttr(default=None)

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Settings:  # type: ignore[override]
        """Like BaseModel.model_validate, but invalid settings raise one ConfigError."""
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as exc:
            raise _config_error(exc, None, None) from None

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
            return _remember(dest.password.get_secret_value())
        return self._secret("destination", "password", dest.password_file, dest.password_env)

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
            return _remember(
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
            return _remember(value)
        return None

    def redacted(self) -> dict[str, Any]:
        """Everything as plain data, inline secrets as "***" (file and variable names stay)."""
        return _plain(self.model_dump())


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return execute.MASK
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _remember(secret: str) -> str:
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


# -- turning pydantic's errors into ours ------------------------------------------------------


def _field(
    loc: Loc, root: type[BaseModel] | None = None
) -> tuple[type[BaseModel] | None, FieldInfo | None]:
    """The model that holds the last key of loc, and that key's FieldInfo (None if unknown)."""
    model: type[BaseModel] | None = root or Settings
    holder: type[BaseModel] | None = None
    info: FieldInfo | None = None
    for part in loc:
        if not isinstance(part, str):
            continue
        if model is None or part not in model.model_fields:
            return model, None
        holder, info = model, model.model_fields[part]
        annotation = info.annotation
        is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        model = annotation if is_model else None
    return holder, info


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _short(info: FieldInfo | None) -> str:
    """The first sentence of a description, lower-cased: `missing (the directory ...)`."""
    if info is None or not info.description:
        return ""
    first = info.description.split(". ")[0].rstrip(".")
    return first[:1].lower() + first[1:]


def _bounds(info: FieldInfo | None) -> tuple[Any, Any]:
    low = high = None
    for meta in info.metadata if info else ():
        low = getattr(meta, "ge", low)
        high = getattr(meta, "le", high)
    return low, high


def _choices(info: FieldInfo | None) -> list[str]:
    if info is None:
        return []
    args = [a for a in get_args(info.annotation) if a is not type(None)]
    literal = next((a for a in args if get_args(a)), info.annotation)
    return [str(c) for c in get_args(literal) if isinstance(c, str)]


def _message(error: Mapping[str, Any], root: type[BaseModel] | None = None) -> str:
    """One friendly line for one pydantic error; never shows the value (it may be a secret)."""
    kind, loc = error["type"], tuple(error["loc"])
    holder, info = _field(loc, root)
    if kind == "missing":
        short = _short(info)
        return f"missing ({short})" if short else "missing"
    if kind == "extra_forbidden":
        known = list(holder.model_fields) if holder is not None else []
        top = len(loc) == 1 and (root is None or root is Settings)
        what = "unknown section" if top else "unknown key"
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        return (
            f"{what} (did you mean {close[0]}?)" if close else f"{what} (known: {', '.join(known)})"
        )
    if kind == "literal_error":
        return "must be one of: " + ", ".join(_choices(info))
    if kind in ("greater_than_equal", "less_than_equal"):
        low, high = _bounds(info)
        if low is not None and high is not None:
            return f"must be between {low} and {high}"
        return f"must be at least {low}" if low is not None else f"must be at most {high}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "must be a whole number"
    if kind == "string_type":
        return "must be a string (in quotes)"
    if kind == "list_type":
        return 'must be a list, e.g. ["/etc", "/home"]'
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"must be a table ([{loc[0]}])" if len(loc) == 1 else "must be a table"
    if kind in ("string_too_short", "too_short"):
        return "must not be empty"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    return str(error["msg"])[:1].lower() + str(error["msg"])[1:]


def _problems(exc: ValidationError, root: type[BaseModel] | None = None) -> list[tuple[Loc, str]]:
    found: list[tuple[Loc, str]] = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, _Problems):
            found += [((*loc, *sub), msg) for sub, msg in cause.problems]
        else:
            found.append((loc, _message(error, root)))
    return found


def _config_error(
    exc: ValidationError,
    path: Path | None,
    locator: _Locator | None,
    root: type[BaseModel] | None = None,
) -> ConfigError:
    """All problems as one ConfigError, a line each, in file order when there is a file."""
    problems = _problems(exc, root)
    if path is None or locator is None:
        return ConfigError("\n".join(f"{_dotted(loc)}: {msg}" for loc, msg in problems))
    located = sorted(((locator.line(loc), loc, msg) for loc, msg in problems), key=lambda x: x[0])
    return ConfigError(
        "\n".join(f"{path}:{line}: {_dotted(loc)}: {msg}" for line, loc, msg in located)
    )


def read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    """A TOML file's text and data; a missing, unreadable or malformed file is one ConfigError
    line that names the file (and the line, for bad TOML)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = re.search(r"at line (\d+)", str(exc))
        line = where.group(1) if where else len(text.splitlines()) or 1  # "at end of document"
        raise ConfigError(f"{path}:{line}: invalid TOML: {exc}") from None
    return text, data


def validate_toml_file(model: type[ModelT], path: Path, text: str, data: Any) -> ModelT:
    """Validate data read from path against model; each problem is a `file:line: key:` line,
    worded like the settings' own (the modules.d drop-ins use this too)."""
    try:
        return model.__pydantic_validator__.validate_python(data)
    except ValidationError as exc:
        raise _config_error(exc, path, _Locator(text), model) from None


def load_settings(path: Path | str) -> Settings:
    """Read and validate the settings file; every problem is one ConfigError line."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"no settings file at {path}; create one with: rescue config init")
    if path.is_dir():
        raise ConfigError(f"{path} is a directory, not a settings file; give the file's path")
    text, data = read_toml(path)
    _refuse_readable_secret(path, data)
    settings = validate_toml_file(Settings, path, text, data)
    settings._path = path
    settings._locator = _Locator(text)
    return settings


def _refuse_readable_secret(path: Path, data: Mapping[str, Any]) -> None:
    """An inline password in a file that group or others can read is a leak already."""
    dest = data.get("destination")
    if not isinstance(dest, Mapping) or "password" not in dest:
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InsecureConfigError(
            f"{path} is readable by group or others (mode {mode:04o}) and holds "
            f"destination.password; run: chmod 600 {path}"
        )


# -- GnuPG --------------------------------------------------------------------------------------


def _gnupg_home(settings: Settings) -> str:
    home = settings.encryption.gnupg_home or os.environ.get("GNUPGHOME") or "~/.gnupg"
    return str(Path(home).expanduser())


def _list_keys(settings: Settings, secret: bool) -> list[dict[str, Any]]:
    import gnupg  # only gpg mode needs it; importing it is cheap but spawns nothing

    home = _gnupg_home(settings)
    if not Path(home).is_dir():
        raise GpgKeyError(f"the GnuPG home {home} does not exist (encryption.gnupg_home)")
    try:
        gpg = gnupg.GPG(gnupghome=home)
    except (OSError, ValueError) as exc:
        raise GpgKeyError(f"cannot run gpg with the keyring {home}: {exc}") from None
    return list(gpg.list_keys(secret=secret))


def _matches(key: Mapping[str, Any], wanted: str) -> bool:
    ids = [key.get("fingerprint") or "", key.get("keyid") or ""]
    for sub in key.get("subkeys") or []:
        ids += [str(x) for x in sub[:3:2] if x]
    return any(i.upper().endswith(wanted) for i in ids if i)


def check_gpg_key(settings: Settings) -> None:
    """In gpg mode, fail before duplicity does when the key is not in the keyring."""
    enc = settings.encryption
    if enc.mode != "gpg" or enc.gpg_key is None:
        return
    wanted = enc.gpg_key.upper()
    home = _gnupg_home(settings)
    matching = [k for k in _list_keys(settings, secret=False) if _matches(k, wanted)]
    if not matching:
        raise GpgKeyError(f"GPG key {enc.gpg_key} is not in the keyring {home}")
    if all(k.get("trust") in ("r", "e") for k in matching):
        raise GpgKeyError(f"GPG key {enc.gpg_key} in the keyring {home} is revoked or expired")


def has_secret_key(settings: Settings) -> bool:
    """Whether the keyring can decrypt (restore needs the secret key; backup does not)."""
    enc = settings.encryption
    if enc.mode != "gpg" or enc.gpg_key is None:
        return False
    wanted = enc.gpg_key.upper()
    return any(_matches(k, wanted) for k in _list_keys(settings, secret=True))


# -- the commented sample and the TOML-like view ----------------------------------------------


def toml_value(value: Any) -> str:
    """A TOML literal for the plain values settings hold (strings, ints, bools, lists)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _comment(text: str, width: int = 98) -> list[str]:
    return textwrap.wrap(text, width=width, initial_indent="# ", subsequent_indent="# ")


SECTIONS: tuple[tuple[str, type[_Section]], ...] = (
    ("destination", Destination),
    ("encryption", Encryption),
    ("schedule", Schedule),
    ("selection", Selection),
    ("duplicity", Duplicity),
    ("config_backup", ConfigBackup),
    ("monitoring", Monitoring),
)


def sample_settings() -> str:
    """The commented sample `rescue config init` writes, generated from the model.

    Required keys are written with their first example (a local directory: it loads as is);
    optional keys are commented out with their default, or an example when there is none.
    """
    out = [
        "# rescue settings. Check with: rescue config check",
        "# Keep this file mode 0600 when it holds a password. Unknown keys are errors.",
        "",
    ]
    for name, model in SECTIONS:
        out += _comment(model.help)
        out.append(f"[{name}]")
        for key, info in model.model_fields.items():
            example = (info.examples or [""])[0]
            if info.is_required():
                out += _comment(f"{info.description} Required.")
                out.append(f"{key} = {toml_value(example)}")
                continue
            out += _comment(info.description or "")
            default = info.get_default(call_default_factory=True)
            shown = example if default is None or default == [] else default
            out.append(f"# {key} = {toml_value(shown)}")
        out.append("")
    return "\n".join(out)


def render_toml(data: Mapping[str, Any]) -> str:
    """Plain settings data (as redacted() gives) as TOML; unset keys are left out."""
    out: list[str] = []
    for section, keys in data.items():
        if not isinstance(keys, Mapping):
            continue
        out.append(f"[{section}]")
        out += [f"{k} = {toml_value(v)}" for k, v in keys.items() if v is not None]
        out.append("")
    return "\n".join(out)


def missing_env(settings: Settings) -> list[tuple[str, str]]:
    """(key, variable) for each secret variable the settings name that this shell lacks."""
    pairs: Sequence[tuple[str, str | None]] = (
        ("destination.password_env", settings.destination.password_env),
        (
            "encryption.passphrase_env",
            settings.encryption.passphrase_env if settings.encryption.mode != "none" else None,
        ),
    )
    return [(key, var) for key, var in pairs if var is not None and not os.environ.get(var)]
