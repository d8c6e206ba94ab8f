"""Run the real `rescue` command as a user would, and write settings files for it.

Each call is a separate process with stdin closed, so a stray prompt fails instead of hanging,
and its exit code and stderr are exactly what an admin would see.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESCUE = [sys.executable, "-m", "rescue"]


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def rescue(
    config: Path | None,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    cwd: Path | None = None,
) -> Run:
    """`rescue [--config CONFIG] ARGS...`, logging next to the config file."""
    argv = [*RESCUE]
    if config is not None:
        argv += ["--config", str(config), "--log-file", str(config.parent / "rescue.log")]
    proc = subprocess.run(
        [*argv, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        cwd=cwd,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def toml_text(sections: dict[str, dict[str, object]], top: dict[str, object] | None = None) -> str:
    """TOML of {key: value} (top, before any table) and {section: {key: value}}; keys are
    written as given (quote one that is not a bare key)."""
    lines = [f"{key} = {toml_value(value)}" for key, value in (top or {}).items()]
    for section, keys in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in keys.items()]
        lines.append("")
    return "\n".join(lines)


def write_settings(path: Path, sections: dict[str, dict[str, object]]) -> Path:
    """A settings file of mode 0600 from {section: {key: value}}."""
    path.write_text(toml_text(sections))
    path.chmod(0o600)
    return path


def local_settings(
    folder: Path, selection: dict[str, object], **sections: dict[str, object]
) -> Path:
    """folder/rescue.toml backing up `selection` to folder/dest, duplicity's cache in
    folder/cache; other sections are added (or replace these) by name."""
    return write_settings(
        folder / "rescue.toml",
        {
            "destination": {"method": "file", "path": str(folder / "dest")},
            "selection": selection,
            "duplicity": {"archive_dir": str(folder / "cache")},
            **sections,
        },
    )


def symmetric_settings(
    folder: Path,
    source: Path,
    destination: dict[str, object],
    passphrase: str,
    **duplicity: object,
) -> Path:
    """folder/rescue.toml backing up source to destination, encrypted with passphrase (kept in
    folder/passphrase, mode 0600), duplicity's cache in folder/cache; duplicity adds keys."""
    secret = folder / "passphrase"
    secret.write_text(passphrase)
    secret.chmod(0o600)
    return write_settings(
        folder / "rescue.toml",
        {
            "destination": destination,
            "encryption": {"mode": "symmetric", "passphrase_file": str(secret)},
            "selection": {"root": str(source), "include": [str(source)]},
            "duplicity": {"archive_dir": str(folder / "cache"), **duplicity},
        },
    )
