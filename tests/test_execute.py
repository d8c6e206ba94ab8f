"""execute.run: secrets stay out of argv and out of the log; log-fd lines arrive as written;
stderr apart, timeouts, a clean environment, check() and interactive children, all with real
processes."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rescue.errors import CommandNotFoundError, RecoveryStepError, RescueError, TimedOutError
from rescue.process import execute, lifetime


def test_secret_env_reaches_the_child_and_is_masked_in_output() -> None:
    result = execute.run(
        ["sh", "-c", 'echo "value=$RESCUE_T_SECRET"'],
        secret_env={"RESCUE_T_SECRET": "hunter2-very-secret"},
    )
    assert result.returncode == 0
    assert result.output == "value=***"


@pytest.fixture(autouse=True)
def _own_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The secrets a test registers are forgotten after it: "pw" or "backup" would be masked
    in every later test's output of this process."""
    monkeypatch.setattr(execute, "_secrets", set(execute._secrets))


def test_a_secret_in_argv_is_refused() -> None:
    execute.register_secret("argv-secret-123")
    with pytest.raises(RescueError, match="secret in its arguments"):
        execute.run(["echo", "x=argv-secret-123"])
    with pytest.raises(RescueError, match="secret in its arguments"):
        execute.run(["echo", "--with-argv-secret-123-inside"])


@pytest.mark.parametrize("arg", ["pw", "--passphrase=pw", "sftp://root:pw@host/x", "a,pw"])
def test_a_short_secret_is_refused_as_a_value(arg: str) -> None:
    execute.register_secret("pw")
    with pytest.raises(RescueError, match="secret in its arguments"):
        execute.run(["echo", arg])


def test_a_short_secret_in_a_path_or_a_temporary_name_is_not_a_leak() -> None:
    """A passphrase "pw" or "backup" occurs by chance in paths: that is no reason to refuse
    (CI once failed on a random temporary name holding "pw")."""
    execute.register_secret("pw")
    execute.register_secret("backup")
    result = execute.run(["echo", "/tmp/rescue-pwx1/srv/backup", "--archive-dir=/var/backups"])
    assert result.returncode == 0


def test_log_records_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    execute.register_secret("masked-in-log-456")
    logger = logging.getLogger("rescue.test")
    logger.addFilter(execute.SecretFilter())
    with caplog.at_level(logging.INFO, logger="rescue.test"):
        logger.info("password is %s", "masked-in-log-456")
    assert "masked-in-log-456" not in caplog.text
    assert "password is ***" in caplog.text


CHILD = """
import os, sys
fd = int(sys.argv[1].split("=")[1])
os.write(fd, b"NOTICE 1\\n. hi\\n")
print("stdin closed" if sys.stdin.read() == "" else "stdin open")
"""


def test_log_fd_lines_are_delivered_and_stdin_is_closed() -> None:
    lines: list[str] = []
    result = execute.run(
        [sys.executable, "-c", CHILD, execute.LOG_FD_ARG],
        on_logfd=lines.append,
    )
    assert result.returncode == 0
    assert lines == ["NOTICE 1", ". hi"]
    assert "stdin closed" in result.output


def test_missing_program() -> None:
    with pytest.raises(CommandNotFoundError, match="not installed"):
        execute.run(["no-such-program-rescue"])


def test_unmasked_output_for_parsing_keeps_the_log_masked(caplog: pytest.LogCaptureFixture) -> None:
    execute.register_secret("swapp")
    with caplog.at_level(logging.DEBUG, logger="rescue.process.execute"):
        # the secret must not be in argv either, so the child assembles the label
        result = execute.run(["printf", "LABEL=swa%ser", "pp"], mask_output=False)
    assert result.output == "LABEL=swapper"
    assert "swapper" not in caplog.text and "LABEL=***er" in caplog.text


def test_stderr_apart_from_stdout_and_together_by_default() -> None:
    argv = ["sh", "-c", "echo to-out; echo to-err >&2; echo more-out"]
    apart = execute.run(argv, separate_stderr=True)
    assert (apart.output, apart.stderr) == ("to-out\nmore-out", "to-err")
    together = execute.run(argv)
    assert sorted(together.output.splitlines()) == ["more-out", "to-err", "to-out"]
    assert together.stderr == ""


def _gone(pid: int, within: float = 3.0) -> bool:
    """True once no process (or group, with a negative pid) has that id; a zombie counts."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_timeout_stops_the_child_and_its_group() -> None:
    pids: list[str] = []
    start = time.monotonic()
    with pytest.raises(TimedOutError) as caught:
        # sh prints its pid (its group's id) and that of a sleep it started, then waits
        execute.run(["sh", "-c", "sleep 30 & echo $$ $!; wait"], on_output=pids.append, timeout=1)
    seconds = time.monotonic() - start
    assert 0.9 < seconds < 4, seconds
    assert str(caught.value) == "sh did not finish in 1 s and was stopped"
    assert caught.value.exit_code == 53
    group, sleeper = (int(p) for p in pids[0].split())
    assert _gone(-group) and _gone(sleeper)
    assert lifetime.live_children() == []


def test_timeout_stops_an_interactive_child_too() -> None:
    start = time.monotonic()
    with pytest.raises(TimedOutError, match=r"^sleep did not finish in 0.5 s and was stopped$"):
        execute.run(["sleep", "30"], interactive=True, timeout=0.5)
    assert time.monotonic() - start < 4
    assert lifetime.live_children() == []


def test_clean_env_inherits_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESCUE_T_INHERITED", "from-rescue")
    plain = execute.run(["env"], env={"RESCUE_T_GIVEN": "1"})
    assert "RESCUE_T_INHERITED=from-rescue" in plain.output.splitlines()
    clean = execute.run(["env"], env={"RESCUE_T_GIVEN": "1"}, clean_env=True)
    assert clean.output.splitlines() == ["RESCUE_T_GIVEN=1"]


def test_check_raises_the_callers_error_with_the_last_line() -> None:
    script = "echo progress; echo 'first problem' >&2; echo 'disk full' >&2; echo >&2; exit 3"
    apart = execute.run(["sh", "-c", script], separate_stderr=True)
    with pytest.raises(RecoveryStepError) as caught:
        apart.check(RecoveryStepError, "copying the state")
    assert str(caught.value) == "copying the state failed: disk full"
    assert caught.value.exit_code == RecoveryStepError.exit_code
    # together: the last line of the output; no words at all: the exit code; no what: the name
    with pytest.raises(RescueError, match=r"^sh failed: disk full$"):
        execute.run(["sh", "-c", script]).check()
    with pytest.raises(RescueError, match=r"^sh failed: exit 4$"):
        execute.run(["sh", "-c", "exit 4"]).check()
    done = execute.run(["true"])
    assert done.check(RecoveryStepError) is done


def test_check_masks_a_secret_in_the_last_line() -> None:
    execute.register_secret("check-secret-789")
    # not in argv either: the child assembles it
    result = execute.run(
        ["sh", "-c", 'printf "bad %s%s\\n" check-secret- 789 >&2; exit 1'], mask_output=False
    )
    with pytest.raises(RescueError, match=r"^sh failed: bad \*\*\*$"):
        result.check()


def test_last_line_skips_blank_lines() -> None:
    assert execute.last_line("one\n  two  \n\n \n") == "two"
    assert execute.last_line("\n\n", "none") == "none"


INTERACTIVE = """
import sys
from rescue.process import execute, lifetime
with lifetime.signals_stop_children():
    try:
        execute.run(["sh", "-c", "echo $$ > {pidfile}; echo child-owns-stdout; exec sleep 30"],
                    interactive=True)
    except lifetime.Terminated as exc:
        print("terminated, live:", lifetime.live_children(), flush=True)
        sys.exit(exc.exit_code)
"""


def test_an_interactive_child_dies_when_rescue_is_stopped(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    rescue = subprocess.Popen(
        [sys.executable, "-c", INTERACTIVE.format(pidfile=pidfile)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not pidfile.exists() or not pidfile.read_text().strip():
            assert time.monotonic() < deadline and rescue.poll() is None
            time.sleep(0.05)
        child = int(pidfile.read_text())
        os.kill(child, 0)  # alive, with rescue waiting on it
        rescue.send_signal(signal.SIGTERM)
        out, _ = rescue.communicate(timeout=20)
    finally:
        if rescue.poll() is None:
            rescue.kill()
            rescue.wait()
    assert rescue.returncode == 143
    # the child wrote to the terminal's (here: the test's) stdout, not to a pipe of rescue's
    assert out.splitlines() == ["child-owns-stdout", "terminated, live: []"]
    assert _gone(child) and _gone(-child)
