"""Ctrl-C at any prompt of a guided recovery: a shell, then the same question again; or stop.

Driven through a real terminal (pexpect), as an admin at the rescue console types."""

from __future__ import annotations

import sys
from pathlib import Path

import pexpect

SCRIPT = """
from rescue.prompts import Answers, Question
question = Question("destination.path", "text", "Directory of the backups:")
answer = Answers(interactive=True).ask(question)
print("ANSWER=" + answer)
"""


def _interrupted(tmp_path: Path) -> pexpect.spawn:
    """The script in a terminal, stopped by Ctrl-C at its question (the log in tmp_path)."""
    child = pexpect.spawn(
        sys.executable,
        ["-c", SCRIPT],
        env={"TERM": "vt100", "SHELL": "/bin/sh", "PATH": "/usr/bin:/bin", "PS1": "test-shell$ "},
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 120),
    )
    child.logfile_read = (tmp_path / "terminal.log").open("w")
    child.expect("Directory of the backups")
    child.sendintr()
    return child


def _exit_status(child: pexpect.spawn) -> int | None:
    """Wait for the script to end; its exit status (None when a signal ended it)."""
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


def test_ctrl_c_opens_a_shell_then_asks_the_same_question_again(tmp_path: Path) -> None:
    child = _interrupted(tmp_path)
    child.expect("Stopped at question destination.path")
    child.sendline("s")
    child.expect_exact("test-shell$ ")
    child.sendline("echo inside-the-$((40 + 2))-shell; exit")
    child.expect("inside-the-42-shell")
    child.expect("Directory of the backups")  # the same question, asked again
    child.sendline("/backup/rescue")
    child.expect("ANSWER=/backup/rescue")
    assert _exit_status(child) == 0


def test_ctrl_c_then_q_stops(tmp_path: Path) -> None:
    child = _interrupted(tmp_path)
    child.expect("rescue recover --resume")
    child.sendline("q")
    assert _exit_status(child) != 0
    assert "ANSWER=" not in (tmp_path / "terminal.log").read_text()
