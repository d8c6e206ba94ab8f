"""The smaller sections: [schedule], [selection], [duplicity], [monitoring], [config_backup].

Each is a model whose fields carry their description and an example, so the commented sample
(rescue.config.sample) and the error wording come from the same place as the rules.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from rescue.config.fields import (
    AbsPath,
    DrillEvery,
    FullEvery,
    IncrementalEvery,
    Section,
    inside,
)
from rescue.config.toml_file import Loc, Problems
from rescue.process import execute

# How long each schedule interval is, in hours: only the order matters.
_INTERVAL_HOURS = {"hourly": 1, "daily": 24, "weekly": 24 * 7, "monthly": 24 * 30}
_START_TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


class Schedule(Section):
    """[schedule]: the timer `rescue schedule install` makes, the auto full/incremental rule
    (rescue.backup.cadence), retention, and the failure hook."""

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
            raise Problems(
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
        return dt.time.fromisoformat(self.start_time)

    @property
    def drill_start(self) -> dt.time:
        """drill_time as a time of day."""
        return dt.time.fromisoformat(self.drill_time)


DEFAULT_EXCLUDES = ("/mnt", "/dev", "/media", "/sys", "/proc", "/run", "/tmp")


class Selection(Section):
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
            if not inside(path, self.root)
        ]
        if problems:
            raise Problems(problems)
        return self


class Duplicity(Section):
    """[duplicity]: knobs passed to duplicity itself."""

    help: ClassVar[str] = "How duplicity itself runs."

    archive_dir: AbsPath = Field(
        default="/var/cache/rescue/duplicity",
        description="duplicity's local cache of manifests and signatures (rebuilt from the "
        "destination when lost).",
        examples=["/var/cache/rescue/duplicity"],
    )
    volsize: int = Field(
        default=25,
        ge=1,
        le=10000,
        description="The size of each backup volume in MB, 1 to 10000. A restore of one file "
        "or directory reads only the volumes that hold it: 25 MB made a one-file restore "
        "2.1x as fast as duplicity's 200, for a full backup 1.09x as long "
        "(bench/one_file_restore.py).",
        examples=[25],
    )
    compress_level: int | None = Field(
        default=None,
        ge=0,
        le=9,
        description="gpg's compression level for encrypted volumes, 0 (none: for data that is "
        "compressed already) to 9; unset, gpg's own default (6). Level 1 made a full backup "
        "faster for a little more room at the destination (bench/compress_level.py). A "
        "restore reads any level.",
        examples=[1],
    )
    shards: Literal["auto"] | Annotated[int, Field(ge=1, le=64)] = Field(
        default="auto",
        description="How many duplicity chains a full backup is split into, each backing up "
        "a size-balanced part of the selection at the same time (file systems first, then "
        "subtrees; its incrementals keep that split), 1 to 64. Every command still sees one "
        'backup. "auto": one per core, and no more than one per 256 MB of the selection, '
        "so that a small backup stays one chain, nor more than 8. 2 made a full backup "
        "0.60x as long and a restore 0.70x on 2 cores (bench/shards.py); more than the "
        "cores gains nothing. A change takes effect at the next full.",
        examples=["auto", 2],
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


class Monitoring(Section):
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


class ConfigBackup(Section):
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
