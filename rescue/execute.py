"""The one way rescue starts a process.

Why one place: secrets must travel in the environment and never in argv, every line a child
prints must reach the log with secrets masked, and a child must never wait on a prompt (stdin is
always closed). duplicity's machine-readable `--log-fd` stream is read here too, on an extra pipe,
so the engine sees structured records while the child's own text goes to the log.
"""

from __future__ import annotations

import logging
import os
import selectors
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rescue import lifetime
from rescue.errors import CommandNotFoundError, RescueError, StalledError

log = logging.getLogger("rescue.execute")

MASK = "***"

# Put this in argv where the child should be told its log descriptor; run() fills in the number.
LOG_FD_ARG = "--log-fd=@"

# Every secret this process has handed to a child. The log filter below masks them anywhere.
_secrets: set[str] = set()

# The variables duplicity reads its secrets from: a child gets one only through secret_env.
DUPLICITY_SECRET_VARIABLES = frozenset({"PASSPHRASE", "SIGN_PASSPHRASE", "FTP_PASSWORD"})
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


@dataclass
class Completed:
    """What a finished child left: its exit code and its output (masked)."""

    argv: list[str]
    returncode: int
    output: str
    seconds: float


def _check_argv(argv: Sequence[str]) -> None:
    for arg in argv:
        for secret in _secrets:
            if secret in arg:
                # A programming error, and one that must never reach a process list.
                raise RescueError("refusing to start a process with a secret in its arguments")


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
) -> Completed:
    """Run argv to completion and return its exit code and masked output.

    The child's environment is child_env(): rescue's own without any secret, env's plain
    variables, and secret_env's, whose values are secrets (registered, so they are masked
    everywhere): the only secrets the child gets. stdin_secret is written, with a newline, to
    the child's stdin, which is then closed: for programs that read a passphrase from a
    descriptor (gpg's --passphrase-fd 0). With on_logfd, the child gets a pipe and LOG_FD_ARG
    in argv becomes `--log-fd=N`; every line it writes there is passed on as it arrives. log_output
    False keeps the child's lines out of the log (a file listing is output, not a log; their
    count is logged). The child dies with rescue (see rescue.lifetime); with a watchdog, a
    child that stops moving is stopped too, and StalledError says why.
    """
    argv = [str(a) for a in argv]
    if shutil.which(argv[0]) is None:
        raise CommandNotFoundError(f"{argv[0]} is not installed or not on PATH")
    for value in (secret_env or {}).values():
        register_secret(value)
    register_secret(stdin_secret)
    _check_argv(argv)

    log.info("run: %s", " ".join(argv))
    start = time.monotonic()
    pass_fds: tuple[int, ...] = ()
    read_fd = write_fd = -1
    if on_logfd is not None:
        read_fd, write_fd = os.pipe()
        pass_fds = (write_fd,)
        argv = [f"--log-fd={write_fd}" if a == LOG_FD_ARG else a for a in argv]
    try:
        proc = subprocess.Popen(
            lifetime.wrap(argv),
            stdin=subprocess.DEVNULL if stdin_secret is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=child_env(env, secret_env),
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
        if proc.stdin is not None:
            try:  # a line fits the pipe's buffer, so this cannot block on an unread pipe
                proc.stdin.write(f"{stdin_secret}\n".encode())
                proc.stdin.close()
            except BrokenPipeError:
                pass  # the child exited first; its exit code tells why
        output = _pump(proc, read_fd, on_output, on_logfd, mask_output, log_output, watchdog)
        returncode = lifetime.finished(proc)
    except BaseException:  # a signal, Ctrl-C or a failure here: the child goes first
        lifetime.stop(proc)
        raise
    finally:
        if read_fd >= 0:
            os.close(read_fd)
    seconds = time.monotonic() - start
    log.info("exit %d after %.1fs: %s", returncode, seconds, argv[0])
    return Completed(argv, returncode, output, seconds)


def run_checked(
    argv: Sequence[str], what: str, error: type[RescueError] = RescueError
) -> Completed:
    """run(), where a failure is one line: what was being done and the command's last words."""
    result = run(argv, mask_output=False)
    if result.returncode:
        last = result.output.strip().splitlines()[-1:] or ["no message"]
        raise error(f"{what} failed: {last[0]}")
    return result


def _pump(
    proc: subprocess.Popen[bytes],
    logfd: int,
    on_output: Callable[[str], None] | None,
    on_logfd: Callable[[str], None] | None,
    mask_output: bool = True,
    log_output: bool = True,
    watchdog: lifetime.Watchdog | None = None,
) -> str:
    """Read the child's output and its log-fd line by line until both are closed."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    buffers: dict[int, bytes] = {proc.stdout.fileno(): b""}
    sel.register(proc.stdout.fileno(), selectors.EVENT_READ, "out")
    if logfd >= 0:
        buffers[logfd] = b""
        sel.register(logfd, selectors.EVENT_READ, "logfd")
    lines: list[str] = []

    def deliver(kind: str, raw: bytes) -> None:
        exact = raw.decode("utf-8", "replace")
        text = mask(exact)
        if kind == "out":
            lines.append(text if mask_output else exact)
            if log_output:
                log.debug("| %s", text)
            if on_output:
                on_output(text)
        elif on_logfd:
            on_logfd(text)

    while sel.get_map():
        ready = sel.select(timeout=1.0 if watchdog else None)
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
    return "\n".join(lines)
