"""The root `rescue` group: global options, logging, and the one error handler.

Every expected failure is a RescueError and ends as one line, `rescue: error: ...`, the path of
the log, and the error's exit code (the table is in README.md). Anything else is a bug: its
traceback goes to the log only, and the user sees one line that says so.
"""

from __future__ import annotations

import importlib
import logging
import logging.handlers
import os
import select
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from rescue import __version__
from rescue.config import DEFAULT_CONFIG_PATH, Settings, load_settings
from rescue.errors import EXIT_CODES, RescueError
from rescue.process import execute, lifetime

DEFAULT_LOG = Path("/var/log/rescue/rescue.log")
LOG_BYTES = 10 * 1024 * 1024  # then rescue.log.1 ... rescue.log.5: at most 60 MiB in all
LOG_KEPT = 5

log = logging.getLogger("rescue")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class App:
    """What every command gets: where the settings are, how to print, where the log is."""

    config_path: Path
    json: bool = False
    log_path: Path | None = None
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings


def root_option(help_text: str) -> Callable[[F], F]:
    """--root DIR: the system a command reads or writes, / or a mounted one."""
    return click.option(
        "--root",
        type=click.Path(path_type=Path, file_okay=False, exists=True),
        default=Path("/"),
        show_default=True,
        help=help_text,
    )


def dir_option(name: str, help_text: str, default: Path | None = None) -> Callable[[F], F]:
    """A directory option (it need not exist yet); a default is shown in --help."""
    shown: dict[str, Any] = {"default": default, "show_default": True} if default else {}
    return click.option(
        name, type=click.Path(path_type=Path, file_okay=False), help=help_text, **shown
    )


def _setup_logging(path: Path | None, verbose: bool) -> Path | None:
    """Log everything to a file (secrets masked); the terminal gets only what commands print."""
    root = logging.getLogger("rescue")
    root.setLevel(logging.DEBUG)
    root.handlers[:] = [logging.NullHandler()]  # no log file anywhere: still nothing on stderr
    candidates = [path] if path else [DEFAULT_LOG, Path.home() / ".cache/rescue/rescue.log"]
    chosen = None
    for candidate in candidates:
        try:
            candidate.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            handler: logging.Handler = logging.handlers.RotatingFileHandler(
                candidate, maxBytes=LOG_BYTES, backupCount=LOG_KEPT, encoding="utf-8"
            )
            os.chmod(candidate, 0o600)
        except OSError:
            continue
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
        )
        handler.addFilter(execute.SecretFilter())
        root.addHandler(handler)
        # paramiko's own complaints (a connection cut by a stop) belong in the log too: with
        # no handler, Python would print them on the terminal, under the one line that counts
        library = logging.getLogger("paramiko")
        library.handlers.clear()
        library.addHandler(handler)
        library.propagate = False
        chosen = candidate
        break
    if verbose:
        stream = logging.StreamHandler(sys.stderr)
        stream.setLevel(logging.INFO)
        stream.addFilter(execute.SecretFilter())
        stream.setFormatter(logging.Formatter("rescue: %(message)s"))
        root.addHandler(stream)
    return chosen


def _closed_outputs() -> list[int]:
    """Which of stdout and stderr have lost their reader (a pipe whose reader is gone polls
    as an error): what tells `rescue files | head -1` from a connection that broke."""
    closed = []
    for fd in (1, 2):
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        try:
            events = poller.poll(0)
        except OSError:
            continue
        if any(event & select.POLLERR for _, event in events):
            closed.append(fd)
    return closed


# Commands that only read and print: when their reader has what it wanted, they are done.
_READ_ONLY = frozenset({"files", "versions", "status", "completion", "manifest"})
EXIT_READER_GONE = 141  # 128 + SIGPIPE, what a shell reports for `yes | head -1`


@contextmanager
def _quiet_when_reader_leaves(command: str | None = None) -> Iterator[None]:
    """A reader that stops reading (`rescue files | head -1`) ends the command quietly, with
    no traceback, as `cat` and `grep` end when `head` has its lines. Whatever the command had
    started is stopped first, as the exception unwinds. A command that only prints (or one
    whose work was done) ends with 0; one whose work was cut short (`rescue backup | head`)
    must not look successful, so it ends with 141 and says so on stderr if it still can."""
    try:
        yield
    except BrokenPipeError as exc:
        closed = _closed_outputs()
        if not closed:  # not our reader: a connection or a child's pipe broke
            raise RuntimeError(f"a pipe broke: {exc}") from exc
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in closed:  # what is still buffered for it goes nowhere, without an error
            os.dup2(devnull, fd)
        os.close(devnull)
        log.info("the reader of fds %s stopped reading: ending quietly", closed)
        if command is None or command in _READ_ONLY:
            raise click.exceptions.Exit(0) from None
        if 2 not in closed:
            print(
                f"rescue: {command} stopped: the reader of its output went away "
                f"(exit {EXIT_READER_GONE})",
                file=sys.stderr,
            )
        raise click.exceptions.Exit(EXIT_READER_GONE) from None


class RescueGroup(click.Group):
    """A click group whose invocation maps every exception to one line and an exit code, and
    whose commands are imported when first asked for (`lazy`: name -> (module, attribute))."""

    lazy: dict[str, tuple[str, str]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, attribute = self.lazy[cmd_name]
            command = getattr(importlib.import_module(f"rescue.cli.{module}"), attribute)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        with _quiet_when_reader_leaves():  # `rescue --help | head -1` prints here
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        with _quiet_when_reader_leaves(ctx.invoked_subcommand):
            result = super().invoke(ctx)
        with _quiet_when_reader_leaves():  # the work is done: only the output is cut short
            sys.stdout.flush()  # now, so a closed pipe is seen here and not at Python's exit
        return result

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("standalone_mode", True)
        try:
            with lifetime.signals_stop_children():
                return super().main(*args, **{**kwargs, "standalone_mode": False})
        except lifetime.Terminated as exc:
            log.error("stopped by %s", exc)
            click.echo(
                f"rescue: stopped by {exc}: every process it had started was stopped first",
                err=True,
            )
            sys.exit(exc.exit_code)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("rescue: aborted", err=True)
            sys.exit(130)
        except RescueError as exc:
            log.error("%s: %s", type(exc).__name__, exc)
            _fail(execute.mask(str(exc)), exc.exit_code)
        except KeyboardInterrupt:
            click.echo("rescue: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # a bug: one line for the user, the traceback for the log
            log.exception("internal error")
            _fail(f"internal error: {type(exc).__name__}: {execute.mask(str(exc))}", 1)


def _fail(message: str, code: int) -> None:
    lines = message.splitlines() or [""]
    click.echo(f"rescue: error: {lines[0]}", err=True)
    for extra in lines[1:]:
        click.echo(f"  {extra}", err=True)
    handler = next(
        (h for h in logging.getLogger("rescue").handlers if isinstance(h, logging.FileHandler)),
        None,
    )
    if handler is not None:
        click.echo(f"  (log: {handler.baseFilename})", err=True)
    sys.exit(code)


EPILOG = "Exit codes:\n\n\b\n" + "\n".join(
    f"  {code:>3}  {meaning}" for code, meaning in sorted(EXIT_CODES.items())
)


@click.group(cls=RescueGroup, epilog=EPILOG, context_settings={"max_content_width": 100})
@click.option(
    "--config",
    "config_path",
    # not click's own checks (its exit 2 and "Usage:"): load_settings says what is wrong with
    # the file in rescue's one line, with the settings error's exit code
    type=click.Path(path_type=Path),
    default=DEFAULT_CONFIG_PATH,
    show_default=True,
    envvar="RESCUE_CONFIG",
    help="Settings file (TOML). Also from $RESCUE_CONFIG. A missing or unreadable file is "
    "one line and exit 3.",
)
@click.option(
    "--log-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help=f"Where the full log goes [default: {DEFAULT_LOG}, else ~/.cache/rescue/].",
)
@click.option("-v", "--verbose", is_flag=True, help="Also show the log on stderr.")
@click.version_option(__version__, prog_name="rescue")
@click.pass_context
def cli(ctx: click.Context, config_path: Path, log_file: Path | None, verbose: bool) -> None:
    """rescue: back up a Linux server with duplicity and bring it back.

    \b
    Start here:
      rescue drill                  prove backup and restore work (no settings needed)
      rescue config init            write a commented settings file to fill in
      rescue config check           validate it
      rescue config trust-host      sftp/scp: show the server's host key, pin it on a yes
      rescue backup                 full or incremental, whichever is due
      rescue schedule install       run it by itself at the [schedule] times
      rescue status                 every backup set, its type, date and size
      rescue files /etc -t 3D       what the backup held three days ago
      rescue versions /etc/hosts    the dates a file can be restored to
      rescue restore /etc/hosts --to /tmp/hosts -t 2W
      rescue verify --deep /srv     /srv against the backup, xattrs, ACLs and holes too
      rescue config-backup create   an archive of the configuration, by module
    """
    log_path = _setup_logging(log_file, verbose)
    ctx.obj = App(config_path=config_path, log_path=log_path)
    log.info("rescue %s: %s", __version__, " ".join(sys.argv[1:]))
