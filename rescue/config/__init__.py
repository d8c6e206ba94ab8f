"""The settings: one TOML file, validated up front, with errors that name the key and line.

Why so strict: a backup that was misconfigured is found out on the day of the restore, which is
the worst possible day. So unknown keys are errors (a typo must not silently fall back to a
default), every error names `file:line: section.key`, and secrets are only ever read at the
moment they are needed, never printed, and refused when the file holding them is readable by
others. The model is also the single source of truth for `rescue config init`: each field carries
its description and an example, and `sample_settings()` writes the commented sample from them.

The modules: `fields` (shared types, the strict section base), `destination`, `encryption` and
`sections` (the sections' models), `settings` (the whole file and its secrets), `toml_file` (the
one TOML layer, also used by modules.d and the recovery plan), `loader` (load_settings), `gpg`
(key checks), `sample` (the commented sample and the TOML view).
"""

from rescue.config.destination import Destination
from rescue.config.encryption import Encryption
from rescue.config.fields import (
    REMOTE_METHODS,
    SSH_METHODS,
    AbsPath,
    DrillEvery,
    EncryptionMode,
    FullEvery,
    IncrementalEvery,
    Method,
)
from rescue.config.gpg import check_gpg_key, has_secret_key
from rescue.config.loader import DEFAULT_CONFIG_PATH, load_settings
from rescue.config.sample import SECTIONS, render_toml, sample_settings, toml_value
from rescue.config.sections import (
    DEFAULT_EXCLUDES,
    Compression,
    ConfigBackup,
    Duplicity,
    Monitoring,
    Schedule,
    Selection,
)
from rescue.config.settings import Settings, missing_env, read_secret_file
from rescue.config.toml_file import TomlFile, read_toml

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_EXCLUDES",
    "REMOTE_METHODS",
    "SECTIONS",
    "SSH_METHODS",
    "AbsPath",
    "Compression",
    "ConfigBackup",
    "Destination",
    "DrillEvery",
    "Duplicity",
    "Encryption",
    "EncryptionMode",
    "FullEvery",
    "IncrementalEvery",
    "Method",
    "Monitoring",
    "Schedule",
    "Selection",
    "Settings",
    "TomlFile",
    "check_gpg_key",
    "has_secret_key",
    "load_settings",
    "missing_env",
    "read_secret_file",
    "read_toml",
    "render_toml",
    "sample_settings",
    "toml_value",
]
