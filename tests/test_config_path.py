"""A --config that is missing or is not a readable file: rescue's own line and exit code.

click's own path checks would answer with "Usage: ..." and exit 2, as for a typo on the command
line; a settings file that cannot be read is a settings error (ConfigError, exit 3), for every
command that reads the settings, the same way.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from clirun import rescue

from rescue.errors import ConfigError

# every command that reads the settings, with the arguments it needs to get that far
COMMANDS = [
    ["backup"],
    ["status"],
    ["files", "/"],
    ["versions", "/etc/hosts"],
    ["restore", "/etc/hosts", "--to", "/nonexistent-rescue-target/hosts"],
    ["verify", "/etc"],
    ["unlock"],
    ["config", "check"],
    ["config", "show"],
    ["config", "trust-host", "--yes"],
    ["config-backup", "list"],
    ["manifest", "show"],
]


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if not line.startswith("  (log:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_config_is_rescues_own_error(kind: str, tmp_path: Path) -> None:
    config = tmp_path / ("absent.toml" if kind == "missing" else "a-directory")
    if kind == "directory":
        config.mkdir()
    for command in COMMANDS:
        r = rescue(config, *command)
        assert r.code == ConfigError.exit_code, (command, r.err)
        line = _one_line(r.err)
        assert line.startswith("rescue: error: "), (command, r.err)
        assert str(config) in line, (command, line)
        assert "Usage:" not in r.err
    if kind == "directory":
        assert list(config.iterdir()) == []


def test_config_check_path_argument_directory(tmp_path: Path) -> None:
    r = rescue(None, "--log-file", str(tmp_path / "log"), "config", "check", str(tmp_path))
    assert r.code == ConfigError.exit_code, r.err
    assert "is a directory" in _one_line(r.err)


def test_config_init_refuses_a_directory(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    r = rescue(tmp_path / "d", "config", "init", "--force")
    assert r.code == ConfigError.exit_code, r.err
    assert "is a directory" in _one_line(r.err)
    assert (tmp_path / "d").is_dir() and list((tmp_path / "d").iterdir()) == []
