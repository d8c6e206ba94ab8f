"""The one way rescue starts a process.

Why one place: secrets must travel in the environment and never in argv, every line a child
prints must reach the log with secrets masked, a child must never wait on a prompt (stdin is
always closed), and every child dies with rescue (rescue.process.lifetime). duplicity's
machine-readable `--log-fd` stream is read here too, on an extra pipe, so the engine sees structured
records while the child's own text goes to the log. A program that owns the terminal (a shell,
`rescue recover` under the console) runs here too, interactive, so that it is stopped with rescue as
well.

The one other place that starts a process is rescue.process.guardian, the gate's own machinery: the
guardian must outlive rescue (it unmounts after a kill -9), so it cannot go through a gate that
makes every child die with rescue. rescue.process.lifetime starts nothing: it tracks and stops the
children started here.
"""

from __future__ import annotations

import logging
import os
import re
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from rescue.errors import CommandNotFoundError, RescueError, StalledError, TimedOutError
from rescue.process import lifetime

log = logging.getLogger("rescue.process.execute")

MASK = "***"

# Put this in argv where the child should be told its log descriptor; run() fills in the number.
LOG_FD_ARG = "--log-fd=@"

# Every secret this process has handed to a child. The log filter below masks them anywhere.
_secrets: set[str] = set()

# The variables duplicity reads its secrets from: a child gets one only through secret_env.
DUPLICITY_SECRET_VARIABLES = frozenset(
    {
        "PASSPHRASE",
        "SIGN_PASSPHRASE",
        "FTP_PASSWORD",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    }
)
# Variables the settings name as holding a secret (password_env, passphrase_env).
_secret_variables: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret so that no log line, error or report can ever show it."""
    if value:
        _secrets.add(value)


def register_secret_variable(name: str | None) -> None:
    """Remember that the environment variable name holds a secret: no child inherits it."""
    if name:
        _secret_variables.add(name)


def child_env(
    env: Mapping[str, str] | None = None, secret_env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a child: rescue's own, less every secret in it, plus env and then
    exactly the secrets in secret_env. Why: a child gets only the secrets it uses (duplicity
    its PASSPHRASE and FTP_PASSWORD, gpg or a hook none), so a secret cannot leak through a
    program that has no business with it (its crash report, its own children, /proc)."""
    secret_names = DUPLICITY_SECRET_VARIABLES | _secret_variables
    result = {
        name: value
        for name, value in os.environ.items()
        if name not in secret_names and value not in _secrets
    }
    result.update(env or {})
    result.update(secret_env or {})
    return result


def mask(text: str) -> str:
    """Replace every registered secret in text; the longest first, so overlaps mask whole."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class SecretFilter(logging.Filter):
    """A logging filter that masks registered secrets in every record, arguments included."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            record.msg = mask(record.getMessage())
            record.args = None
        return True


def last_line(text: str, default: str = "") -> str:
    """The last line of a program's text that is not blank, stripped: the one line of an error
    that explains it (the line a tool prints just before it gives up)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else default


@dataclass
class Completed:
    """What a finished child left: its exit code, its output and, when run() was asked to keep
    them apart, its stderr (both masked unless mask_output was False)."""

    argv: list[str]
    returncode: int
    output: str
    seconds: float
    stderr: str = ""

    def last_line(self, default: str = "") -> str:
        """The child's last words, masked: stderr's last line, else its output's."""
        return mask(last_line(self.stderr) or last_line(self.output, default))

    def check(self, error: type[RescueError] = RescueError, what: str = "") -> Completed:
        """self when the child succeeded; else error, one line: `WHAT failed: LAST LINE` (or the
        last line alone without what), and the exit code when the child said nothing."""
        if self.returncode == 0:
            return self
        said = self.last_line(f"exit {self.returncode}")
        name = os.path.basename(self.argv[0]) if self.argv else "the program"
        raise error(f"{what or name} failed: {said}")


# A secret shorter than this is looked for as a whole value in argv, not as any substring.
SHORT_SECRET = 8
_VALUE_SEPARATORS = re.compile(r"[=:@,\s]")


def _check_argv(argv: Sequence[str]) -> None:
    for arg in argv:
        for secret in _secrets:
            if _holds(arg, secret):
                # A programming error, and one that must never reach a process list.
                raise RescueError("refusing to start a process with a secret in its arguments")


def _holds(arg: str, secret: str) -> bool:
    """Whether arg carries secret. A long one anywhere; a short one (a passphrase "pw", a
    password "backup") only as a whole value (the argument, `--opt=pw`, `user:pw@host`): as a
    substring it turns up by chance in paths and temporary names, and every run was refused."""
    if len(secret) >= SHORT_SECRET:
        return secret in arg
    return secret == arg or secret in _VALUE_SEPARATORS.split(arg)


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    secret_env: Mapping[str, str] | None = None,
    on_output: Callable[[str], None] | None = None,
    on_logfd: Callable[[str], None] | None = None,
    cwd: str | None = None,
    mask_output: bool = True,
    stdin_secret: str | None = None,
    log_output: bool = True,
    watchdog: lifetime.Watchdog | None = None,
    stdin_text: str | None = None,
    separate_stderr: bool = False,
    timeout: float | None = None,
    clean_env: bool = False,
    interactive: bool = False,
) -> Completed:
    """Run argv to completion and return its exit code and masked output.

    The child's environment is child_env(): rescue's own without any secret, env's plain
    variables, and secret_env's, whose values are secrets (registered, so they are masked
    everywhere): the only secrets the child gets. stdin_secret is written, with a newline, to
    the child's stdin, which is then closed: for programs that read a passphrase from a
    descriptor (gpg's --passphrase-fd 0). With on_logfd, the child gets a pipe and LOG_FD_ARG
    in argv becomes `--log-fd=N`; every line it writes there is passed on as it arrives. log_output
    False keeps the child's lines out of the log (a file listing is output, not a log; their
    count is logged). The child dies with rescue (see rescue.process.lifetime); with a watchdog, a
    child that stops moving is stopped too, and StalledError says why.

    stdin_text is written to stdin as it is (not a secret: a report for a hook). separate_stderr
    keeps stderr out of output, in Completed.stderr (both are logged). timeout stops the child
    and its process group after that many seconds: TimedOutError. clean_env gives the child
    nothing of rescue's environment, only env and secret_env. interactive: for a program that
    owns the terminal (a shell): it inherits stdin, stdout and stderr, its process group gets
    the terminal while it runs, nothing is captured; it still dies with rescue.
    """
    argv = [str(a) for a in argv]
    if interactive and (on_output or on_logfd or stdin_secret or stdin_text or separate_stderr):
        raise ValueError("an interactive child owns the terminal: nothing can be piped")
    if stdin_secret is not None and stdin_text is not None:
        raise ValueError("stdin takes a secret or a text, not both")
    for value in (secret_env or {}).values():
        register_secret(value)
    register_secret(stdin_secret)
    _check_argv(argv)
    environment = {**(env or {}), **(secret_env or {})} if clean_env else child_env(env, secret_env)
    # looked up as the child will be: on its own PATH
    if shutil.which(argv[0], path=environment.get("PATH")) is None:
        raise CommandNotFoundError(f"{argv[0]} is not installed or not on PATH")

    log.info("run: %s", " ".join(argv))
    start = time.monotonic()
    deadline = None if timeout is None else _Deadline(argv[0], timeout, start + timeout)
    if interactive:
        returncode = _run_interactive(argv, environment, cwd, deadline)
        seconds = time.monotonic() - start
        log.info("exit %d after %.1fs: %s", returncode, seconds, argv[0])
        return Completed(argv, returncode, "", seconds)
    stdin_data = None
    if stdin_secret is not None:
        stdin_data = f"{stdin_secret}\n".encode()
    elif stdin_text is not None:
        stdin_data = stdin_text.encode()
    pass_fds: tuple[int, ...] = ()
    read_fd = write_fd = -1
    if on_logfd is not None:
        read_fd, write_fd = os.pipe()
        pass_fds = (write_fd,)
        argv = [f"--log-fd={write_fd}" if a == LOG_FD_ARG else a for a in argv]
    try:
        proc = subprocess.Popen(
            lifetime.wrap(argv),
            stdin=subprocess.DEVNULL if stdin_data is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if separate_stderr else subprocess.STDOUT,
            env=environment,
            cwd=cwd,
            pass_fds=pass_fds,
            process_group=0,  # its own group: stopped whole, and Ctrl-C reaches rescue only
        )
    except BaseException:
        if read_fd >= 0:
            os.close(read_fd)
        raise
    finally:
        if write_fd >= 0:
            os.close(write_fd)
    lifetime.started(proc)
    try:
        if proc.stdin is not None and stdin_data is not None:
            # from a thread: a text longer than the pipe's buffer must not block the reading
            threading.Thread(target=_feed, args=(proc.stdin, stdin_data), daemon=True).start()
        output, errors = _pump(
            proc, read_fd, on_output, on_logfd, mask_output, log_output, watchdog, deadline
        )
        returncode = _wait(proc, deadline)
    except BaseException:  # a signal, Ctrl-C or a failure here: the child goes first
        lifetime.stop(proc)
        raise
    finally:
        if read_fd >= 0:
            os.close(read_fd)
    seconds = time.monotonic() - start
    log.info("exit %d after %.1fs: %s", returncode, seconds, argv[0])
    return Completed(argv, returncode, output, seconds, errors)


def run_checked(
    argv: Sequence[str], what: str, error: type[RescueError] = RescueError
) -> Completed:
    """run(), where a failure is one line: what was being done and the command's last words."""
    return run(argv, mask_output=False).check(error, what)


def _feed(pipe: IO[bytes], data: bytes) -> None:
    try:
        pipe.write(data)
        pipe.close()
    except (BrokenPipeError, ValueError):
        pass  # the child exited (or was stopped) first; its exit code tells why


@dataclass
class _Deadline:
    """When a child with a timeout must have finished, and the error that says it did not."""

    program: str
    timeout: float
    at: float

    def left(self) -> float:
        """Seconds left; TimedOutError once none are (the caller's handler stops the child)."""
        remaining = self.at - time.monotonic()
        if remaining <= 0:
            raise TimedOutError(
                f"{self.program} did not finish in {self.timeout:g} s and was stopped"
            )
        return remaining


def _wait(proc: subprocess.Popen[bytes], deadline: _Deadline | None) -> int:
    """Reap the child (see lifetime.finished), within the deadline."""
    if deadline is not None:
        while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            time.sleep(min(0.05, deadline.left()))
    return lifetime.finished(proc)


def _terminal() -> int | None:
    """stdin, when it is the terminal and rescue's process group is in its foreground."""
    try:
        if os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp():
            return 0
    except OSError:
        pass
    return None


def _give_terminal(fd: int, pgid: int) -> None:
    """Make pgid the terminal's foreground group; SIGTTOU blocked, as the caller may be in the
    background by then (the child in its fork, rescue when it takes the terminal back)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU})
    try:
        os.tcsetpgrp(fd, pgid)
    except OSError:
        pass  # the group is gone already: nothing to hand over
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _run_interactive(
    argv: list[str],
    environment: dict[str, str],
    cwd: str | None,
    deadline: _Deadline | None,
) -> int:
    """Run a child that owns the terminal. It has a process group of its own like every child
    (so lifetime can stop it whole), and that group is made the terminal's foreground while it
    runs: Ctrl-C and the shell's job control reach it, not rescue. Both the child (before its
    exec) and rescue hand the terminal over, so the child cannot read it before it has it."""
    tty = _terminal()

    def take_terminal() -> None:  # in the child, between fork and exec
        if tty is not None:
            _give_terminal(tty, os.getpgrp())

    proc = subprocess.Popen(
        lifetime.wrap(argv),
        env=environment,
        cwd=cwd,
        process_group=0,
        preexec_fn=take_terminal if tty is not None else None,
    )
    lifetime.started(proc)
    try:
        if tty is not None:
            _give_terminal(tty, proc.pid)
        try:
            return _wait(proc, deadline)
        except BaseException:  # a signal, Ctrl-C or the deadline: the child goes first
            lifetime.stop(proc)
            raise
    finally:
        if tty is not None:
            _give_terminal(tty, os.getpgrp())


def _pump(
    proc: subprocess.Popen[bytes],
    logfd: int,
    on_output: Callable[[str], None] | None,
    on_logfd: Callable[[str], None] | None,
    mask_output: bool = True,
    log_output: bool = True,
    watchdog: lifetime.Watchdog | None = None,
    deadline: _Deadline | None = None,
) -> tuple[str, str]:
    """Read the child's output, its stderr (when apart) and its log-fd line by line until all
    are closed; the output and the stderr."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    buffers: dict[int, bytes] = {proc.stdout.fileno(): b""}
    sel.register(proc.stdout.fileno(), selectors.EVENT_READ, "out")
    if proc.stderr is not None:
        buffers[proc.stderr.fileno()] = b""
        sel.register(proc.stderr.fileno(), selectors.EVENT_READ, "err")
    if logfd >= 0:
        buffers[logfd] = b""
        sel.register(logfd, selectors.EVENT_READ, "logfd")
    lines: list[str] = []
    err_lines: list[str] = []

    def deliver(kind: str, raw: bytes) -> None:
        exact = raw.decode("utf-8", "replace")
        text = mask(exact)
        if kind == "out":
            lines.append(text if mask_output else exact)
            if log_output:
                log.debug("| %s", text)
            if on_output:
                on_output(text)
        elif kind == "err":
            err_lines.append(text if mask_output else exact)
            log.debug("|2 %s", text)
        elif on_logfd:
            on_logfd(text)

    while sel.get_map():
        wait = 1.0 if watchdog else None
        if deadline is not None:
            try:
                remaining = deadline.left()
            except TimedOutError:
                sel.close()
                raise
            wait = remaining if wait is None else min(wait, remaining)
        ready = sel.select(timeout=wait)
        if watchdog is not None:
            if ready:
                watchdog.output()
            reason = watchdog.stalled(proc.pid)
            if reason:
                sel.close()
                tail = [line for line in lines[-20:] if line.strip()]
                raise StalledError(reason, tail)
        for key, _ in ready:
            fd = key.fd
            chunk = os.read(fd, 65536)
            if not chunk:
                if buffers[fd]:
                    deliver(key.data, buffers[fd])
                sel.unregister(fd)
                continue
            data = buffers[fd] + chunk
            *complete, buffers[fd] = data.split(b"\n")
            for raw in complete:
                deliver(key.data, raw)
    sel.close()
    if not log_output:
        log.debug("| (%d lines of output, not logged)", len(lines))
    return "\n".join(lines), "\n".join(err_lines)
