"""Every question rescue asks, each with a stable ID that a plan file can answer (ReaR's
UserInput IDs).

Why IDs: an unattended recovery must never hang on a prompt nobody sees. A plan answers
questions by ID under [answers]; a question the plan does not answer is asked on the terminal
when there is one, and otherwise fails at once, naming its ID, so the plan can be completed.
Answers from a plan are checked like typed ones (a choice must be one of the choices).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rescue.errors import PlanError, UnansweredQuestionError
from rescue.process import execute

log = logging.getLogger("rescue.prompts")

Kind = Literal["confirm", "select", "text", "password", "typed-yes"]


@dataclass(frozen=True)
class Choice:
    """One option of a select question: what is shown, and the value a plan gives for it."""

    title: str
    value: str


@dataclass(frozen=True)
class Question:
    """A question: its stable ID, its kind, and how it is put."""

    id: str
    kind: Kind
    message: str
    choices: Sequence[Choice] = field(default_factory=tuple)
    default: Any = None


# The catalogue: every ID rescue uses, with what it asks. README and --help list these.
QUESTIONS: dict[str, str] = {
    "recover.settings_file": "path of a settings file (e.g. on a USB stick), or empty to type them",
    "destination.method": "file, ftp, ftps, sftp, scp or s3",
    "destination.host": "the backup host",
    "destination.port": "its port (empty: the method's default)",
    "destination.user": "the login user",
    "destination.path": "the directory of the backups",
    "destination.password": "the login password (empty: none, or an ssh key)",
    "destination.host_key": "trust the SSH host key shown (yes/no)",
    "destination.endpoint_url": "s3: the endpoint URL (empty: AWS S3)",
    "destination.bucket": "s3: the bucket",
    "destination.prefix": "s3: the lost host's prefix in the bucket",
    "destination.access_key_id": "s3: the access key ID",
    "destination.secret_access_key": "s3: the secret access key",
    "encryption.mode": "none or symmetric (a GPG-key backup needs a settings file)",
    "encryption.passphrase": "the backup's passphrase",
    "net.config": "no address yet: dhcp, or static IFACE:ADDR/PREFIX,GW,DNS",
    "recover.restore_point": "which backup set to restore (a time such as 'now', '3D', a date)",
    "recover.confirm_mapping": "use the disk mapping shown (yes/no)",
    "recover.target_disk": "the target disk for a source disk (asked per disk)",
    "recover.erase": 'type "yes" to erase the target disks and recreate the layout',
    "recover.luks_passphrase": "the passphrase for the recreated LUKS containers",
    "recover.step": "run the next step (step-by-step mode)",
    "recover.after": "after recovery: reboot, poweroff, shell or none",
    "config_backup.add_dependencies": "restore the modules the selection depends on too (yes/no)",
    "config_backup.confirm": "replace the configuration as the diff shows (yes/no)",
}


class Answers:
    """Answers a question from the plan, or from the user at a terminal, or fails."""

    def __init__(self, planned: Mapping[str, Any] | None = None, interactive: bool | None = None):
        self.planned = dict(planned or {})
        unknown = sorted(k for k in self.planned if k not in QUESTIONS)
        if unknown:
            raise PlanError(
                f"the plan answers unknown question(s) {', '.join(unknown)}; "
                f"known: {', '.join(QUESTIONS)}"
            )
        self.interactive = sys.stdin.isatty() if interactive is None else interactive

    def has(self, qid: str) -> bool:
        return qid in self.planned

    def ask(self, question: Question) -> Any:
        """The answer, from the plan if it has one, else typed; never waits without a terminal."""
        if question.id not in QUESTIONS:
            raise AssertionError(f"question {question.id} is not in the catalogue")
        if question.id in self.planned:
            answer = _check(question, self.planned[question.id])
            log.info("question %s answered by the plan", question.id)
            return answer
        if not self.interactive:
            raise UnansweredQuestionError(
                f"question {question.id} is not answered by the plan and there is no terminal "
                f"to ask on ({question.message.rstrip('?: ')}); add it under [answers]"
            )
        answer = _ask_terminal(question)
        log.info("question %s answered at the terminal", question.id)
        return answer


def _check(question: Question, value: Any) -> Any:
    """A plan's answer, checked as strictly as a typed one."""
    where = f"the plan's answer to {question.id}"
    if question.kind == "confirm":
        if not isinstance(value, bool):
            raise PlanError(f"{where} must be true or false, not {value!r}")
        return value
    if question.kind == "typed-yes":
        if value is not True and value != "yes":
            raise PlanError(f'{where} must be "yes" to go on, not {value!r}')
        return True
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise PlanError(f"{where} must be a string, not {value!r}")
    value = str(value)
    if question.kind == "select" and question.choices:
        values = [c.value for c in question.choices]
        if value not in values:
            raise PlanError(f"{where} is {value!r}; choose one of {', '.join(values)}")
    return value


def _ask_terminal(question: Question) -> Any:
    """Ask with questionary. Ctrl-C offers a shell (then the same question again) or stopping;
    an empty stdin aborts the recovery, never guesses."""
    while True:
        try:
            answer = _prompt(question).unsafe_ask()
            break
        except KeyboardInterrupt:
            if not _interrupted(question):
                raise
    if question.kind == "typed-yes":
        return answer.strip() == "yes"
    return answer


INTERRUPTED = """
Stopped at question {id}.
  s      a shell; `exit` comes back to this question
  q      stop the recovery (what is done is kept: `rescue recover --resume` continues it)
  Enter  ask again
"""


def _interrupted(question: Question) -> bool:
    """After Ctrl-C at a prompt: True to ask again (after a shell, maybe), False to stop."""
    while True:
        print(INTERRUPTED.format(id=question.id), flush=True)
        try:
            choice = input("> ").strip().lower()
        except (EOFError, KeyboardInterrupt):
            return False
        if choice == "q":
            return False
        if choice == "s":
            # through the gate: it dies with rescue, and gets none of its secrets
            execute.run([os.environ.get("SHELL") or "/bin/bash"], interactive=True)
        return True


def _prompt(question: Question) -> Any:
    import questionary  # only when someone is there to answer

    if question.kind == "confirm":
        return questionary.confirm(question.message, default=bool(question.default))
    if question.kind == "select":
        choices = [questionary.Choice(c.title, value=c.value) for c in question.choices]
        return questionary.select(question.message, choices=choices, default=question.default)
    if question.kind == "password":
        return questionary.password(question.message)
    if question.kind == "typed-yes":
        return questionary.text(question.message + ' Type "yes" to go on:')
    return questionary.text(question.message, default=str(question.default or ""))
