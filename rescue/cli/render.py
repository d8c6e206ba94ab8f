"""How commands print: tables and progress for people, JSON for scripts.

Progress goes to stderr and only when stderr is a terminal, so pipes and `--json` stay clean.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from rescue.backup.results import Progress, ProgressCallback
from rescue.units import human_size

REFRESH_SECONDS = 0.25


def _literal_console(**options: Any) -> Console:
    """What rescue prints is data (paths, MAC addresses, names): never rich markup or emoji
    codes, so a MAC such as 72:0b:06:cd:c5:9d stays itself (":cd:" is the emoji of a disc)."""
    return Console(highlight=False, markup=False, emoji=False, **options)


stdout = _literal_console(soft_wrap=True)
stderr = _literal_console(stderr=True)


def human_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f}s"
    minutes, seconds = divmod(int(s), 60)
    hours, minutes = divmod(minutes, 60)
    if hours >= 48:
        days, hours = divmod(hours, 24)
        return f"{days}d{hours:02d}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def emit_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


UNWRAPPED = 100_000  # the width a table gets without a terminal: wider than any row


def table(title: str | None, columns: list[str], rows: list[list[str]]) -> None:
    """A table fitted to the terminal; without one (a pipe, a file), each row whole on one
    line: no terminal width applies there, and a row folded over two lines (a date split in
    half) breaks `grep` and `head` and every script that reads a row per line."""
    t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for column in columns:
        t.add_column(column, overflow="fold")
    for row in rows:
        t.add_row(*(Text(cell) for cell in row))  # literal: no markup, no emoji codes
    if stdout.is_terminal:
        stdout.print(t)
        return
    text = io.StringIO()
    _literal_console(file=text, width=UNWRAPPED, color_system=None).print(t)
    for line in text.getvalue().splitlines():
        click.echo(line.rstrip())


def _line(p: Progress) -> Text:
    elapsed = time.monotonic() - p.started
    parts = [f"{p.phase}: {p.files} files", human_size(p.bytes) if p.bytes else ""]
    if elapsed > 0 and p.bytes:
        parts.append(f"{human_size(p.bytes / elapsed)}/s")
    if p.fraction:
        parts.append(f"{p.fraction * 100:.0f}%")
        if p.fraction < 1:
            parts.append(f"ETA {human_seconds(elapsed / p.fraction - elapsed)}")
    parts.append(human_seconds(elapsed))
    current = p.current if len(p.current) < 50 else "…" + p.current[-49:]
    return Text(
        "  ".join(x for x in parts if x) + f"  {current}", no_wrap=True, overflow="ellipsis"
    )


_live: Live | None = None  # the status line being drawn, so a question can pause it


@contextmanager
def progress(enabled: bool) -> Iterator[ProgressCallback | None]:
    """A progress callback that redraws one status line, or None when nobody watches."""
    global _live
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    # Redrawn only when there is news, at most REFRESH_SECONDS apart: a line redrawn on a
    # timer floods a serial console with copies of a line that no longer changes.
    with Live(Text(""), console=stderr, auto_refresh=False, transient=True) as live:
        _live = live
        last = 0.0

        def show(p: Progress | None) -> None:
            nonlocal last
            now = time.monotonic()
            if p is None:
                live.update(Text(""), refresh=True)
            elif now - last >= REFRESH_SECONDS:
                live.update(_line(p), refresh=True)
            else:
                return
            last = now

        try:
            yield show
        finally:
            _live = None


@contextmanager
def paused() -> Iterator[None]:
    """No status line while a question is on the screen: its redraw (a carriage return and
    erase-line, four times a second) would wipe the prompt the admin must answer."""
    live = _live
    if live is None:
        yield
        return
    live.stop()
    try:
        yield
    finally:
        live.start()
