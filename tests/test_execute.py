"""execute.run: secrets stay out of argv and out of the log; log-fd lines arrive as written."""

from __future__ import annotations

import logging
import sys

import pytest

from rescue import execute
from rescue.errors import CommandNotFoundError, RescueError


def test_secret_env_reaches_the_child_and_is_masked_in_output() -> None:
    result = execute.run(
        ["sh", "-c", 'echo "value=$RESCUE_T_SECRET"'],
        secret_env={"RESCUE_T_SECRET": "hunter2-very-secret"},
    )
    assert result.returncode == 0
    assert result.output == "value=***"


def test_a_secret_in_argv_is_refused() -> None:
    execute.register_secret("argv-secret-123")
    with pytest.raises(RescueError, match="secret in its arguments"):
        execute.run(["echo", "x=argv-secret-123"])


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
    with caplog.at_level(logging.DEBUG, logger="rescue.execute"):
        # the secret must not be in argv either, so the child assembles the label
        result = execute.run(["printf", "LABEL=swa%ser", "pp"], mask_output=False)
    assert result.output == "LABEL=swapper"
    assert "swapper" not in caplog.text and "LABEL=***er" in caplog.text
