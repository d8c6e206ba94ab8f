"""Loading the settings file: the one entry point, load_settings().

Why a file check before the TOML: "no settings file" and "that is a directory" deserve their own
hint (`rescue config init`), and an inline password in a file others can read is refused before
anything else is done with it.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rescue.config.settings import Settings
from rescue.config.toml_file import read_toml
from rescue.errors import ConfigError, InsecureConfigError

DEFAULT_CONFIG_PATH = Path("/etc/rescue/rescue.toml")


def load_settings(path: Path | str) -> Settings:
    """Read and validate the settings file; every problem is one ConfigError line."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"no settings file at {path}; create one with: rescue config init")
    if path.is_dir():
        raise ConfigError(f"{path} is a directory, not a settings file; give the file's path")
    toml = read_toml(path)
    _refuse_readable_secret(path, toml.data)
    settings = toml.validate(Settings)
    settings._path, settings._locator = path, toml.locator
    return settings


def _refuse_readable_secret(path: Path, data: Mapping[str, Any]) -> None:
    """An inline password in a file that group or others can read is a leak already."""
    dest = data.get("destination")
    if not isinstance(dest, Mapping):
        return
    for key in ("password", "secret_access_key"):
        if key not in dest:
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise InsecureConfigError(
                f"{path} is readable by group or others (mode {mode:04o}) and holds "
                f"destination.{key}; run: chmod 600 {path}"
            )
