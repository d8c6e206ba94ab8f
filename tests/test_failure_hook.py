"""A failed backup calls the [schedule] on_failure hook with a summary and no secret, and every
run, failed or not, lands in the history. Real duplicity, a real file destination."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from clirun import rescue, write_settings

from rescue.backup import failure_hook
from rescue.backup.failure_hook import call_failure_hook
from rescue.backup.history import runs
from rescue.config import Settings

pytestmark = pytest.mark.slow

PASSPHRASE_ENV = "RESCUE_TEST_PASSPHRASE"
RIGHT = "the right passphrase 3141"
WRONG = "a wrong passphrase 2718"
HOOK = """#!/bin/sh
cat > "{out}/stdin"
env > "{out}/env"
{tail}
"""


def _config(tmp_path: Path, tree: Path, hook: Path) -> Path:
    return write_settings(
        tmp_path / "rescue.toml",
        {
            "destination": {"method": "file", "path": str(tmp_path / "dest")},
            "encryption": {"mode": "symmetric", "passphrase_env": PASSPHRASE_ENV},
            "schedule": {"on_failure": f"{hook} --from-rescue"},
            "selection": {"root": str(tree), "include": [str(tree)]},
            "duplicity": {"archive_dir": str(tmp_path / "cache"), "retries": 1},
        },
    )


def _hook(tmp_path: Path, tail: str = "") -> tuple[Path, Path]:
    out = tmp_path / "hook-out"
    out.mkdir(exist_ok=True)
    hook = tmp_path / "hook.sh"
    hook.write_text(HOOK.format(out=out, tail=tail))
    hook.chmod(0o755)
    return hook, out


def test_a_failed_run_calls_the_hook_without_secrets(tmp_path: Path, sample_tree: Path) -> None:
    hook, out = _hook(tmp_path)
    config = _config(tmp_path, sample_tree, hook)
    assert rescue(config, "backup", env={PASSPHRASE_ENV: RIGHT}).code == 0
    assert not (out / "stdin").exists(), "the hook ran for a successful backup"

    r = rescue(config, "backup", "--incremental", env={PASSPHRASE_ENV: WRONG})
    assert r.code != 0
    summary = (out / "stdin").read_text()
    env = (out / "env").read_text()
    lines = summary.splitlines()
    assert lines[0].startswith("rescue backup FAILED on ")
    assert "mode: incremental" in lines
    assert f"exit code: {r.code}" in lines
    assert f"destination: file://{tmp_path / 'dest'}" in lines
    error = next(line for line in lines if line.startswith("error: "))
    assert error in {f"error: {line}" for line in r.err.splitlines()} or error[7:] in r.err
    assert "RESCUE_EVENT=backup-failed" in env.splitlines()
    for secret in (RIGHT, WRONG):
        assert secret not in summary and secret not in env
    assert PASSPHRASE_ENV not in env

    history = runs(tmp_path / "cache")
    assert [(h.mode, h.outcome) for h in history] == [
        ("auto", "success"),
        ("incremental", "failure"),
    ]
    assert history[0].kind == "full" and history[0].bytes and history[0].set_time
    assert history[1].error and WRONG not in history[1].error
    assert history[1].end >= history[1].start


def test_a_failing_hook_is_a_warning_and_keeps_the_exit_code(
    tmp_path: Path, sample_tree: Path
) -> None:
    hook, out = _hook(tmp_path, tail="echo 'smtp: connection refused' >&2; exit 3")
    config = _config(tmp_path, sample_tree, hook)
    r = rescue(config, "backup")  # the passphrase variable is not set: a config error
    assert r.code == 3, r.err
    assert "rescue: warning: the on_failure hook" in r.err
    assert "exited with 3: smtp: connection refused" in r.err
    assert "passphrase_env" in (out / "stdin").read_text()


def _settings(tmp_path: Path, command: str) -> Settings:
    return Settings.model_validate(
        {
            "destination": {"method": "file", "path": str(tmp_path / "dest")},
            "encryption": {"mode": "none"},
            "schedule": {"on_failure": command},
        }
    )


def test_a_hook_that_cannot_run_or_hangs_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "not-executable.sh"
    plain.write_text("#!/bin/sh\nexit 0\n")
    plain.chmod(0o644)
    problem = call_failure_hook(_settings(tmp_path, str(plain)), "summary\n")
    assert problem == f"the on_failure hook {plain} is not executable"
    missing = tmp_path / "no-such-hook"
    problem = call_failure_hook(_settings(tmp_path, str(missing)), "summary\n")
    assert problem == f"the on_failure hook {missing} is not installed"
    # a hung hook is stopped at the timeout, with what it started (a shorter one, for the test)
    monkeypatch.setattr(failure_hook, "HOOK_TIMEOUT", 1)
    pidfile = tmp_path / "sleeper"
    hung, _ = _hook(tmp_path, tail=f"sleep 30 & echo $! > {pidfile}; wait")
    start = time.monotonic()
    problem = call_failure_hook(_settings(tmp_path, str(hung)), "summary\n")
    assert time.monotonic() - start < 5
    assert problem == f"the on_failure hook {hung} did not finish in 1 s"
    sleeper = int(pidfile.read_text())
    deadline = time.monotonic() + 3
    while Path(f"/proc/{sleeper}").exists():  # stopped with its group, then reaped by init
        assert time.monotonic() < deadline, "the hook's sleep outlived the timeout"
        time.sleep(0.05)
