"""What every settings section shares: the choice types, paths, and the strict section base.

Why one place: the same rules (absolute paths without `..`, unknown keys refused, TOML's types
taken as they are) hold for every section.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict

Method = Literal["file", "ftp", "ftps", "sftp", "scp", "s3"]
EncryptionMode = Literal["none", "symmetric", "gpg"]
FullEvery = Literal["daily", "weekly", "monthly"]
IncrementalEvery = Literal["hourly", "daily", "weekly"]
DrillEvery = Literal["off", "daily", "weekly", "monthly"]

REMOTE_METHODS = ("ftp", "ftps", "sftp", "scp", "s3")
SSH_METHODS = ("sftp", "scp")

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def absolute_path(value: str) -> str:
    """An absolute POSIX path, normalised; `..` is refused so that 'inside root' means inside."""
    if not value.startswith("/"):
        raise ValueError(f"must be an absolute path (starting with /), not {value!r}")
    path = PurePosixPath(value)
    if ".." in path.parts:
        raise ValueError(f"must not contain '..': {value!r}")
    return str(path)


AbsPath = Annotated[str, AfterValidator(absolute_path)]


def full_match(pattern: re.Pattern[str], message: str) -> Callable[[str], str]:
    """The validator of a string that pattern must match as a whole; message is the error."""

    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(message)
        return value

    return check


# The name of an environment variable that holds a secret (the *_env keys).
EnvName = Annotated[
    str,
    AfterValidator(
        full_match(ENV_NAME, "must be the name of an environment variable (letters, digits, _)")
    ),
]


def inside(path: str, root: str) -> bool:
    """Whether path is root or below it (both already normalised by absolute_path)."""
    p, r = PurePosixPath(path), PurePosixPath(root)
    return p == r or r in p.parents


class Section(BaseModel):
    """Shared model settings: unknown keys are errors and TOML's types are taken as they are."""

    model_config = ConfigDict(extra="forbid", strict=True)
    help: ClassVar[str] = ""


def is_set(model: BaseModel, key: str) -> bool:
    """Whether the key was given a value (None means not set)."""
    return getattr(model, key) is not None
