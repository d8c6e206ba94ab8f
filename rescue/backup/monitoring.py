"""What monitoring learns of each run: a node_exporter textfile and healthchecks.io-style pings.

Why both: a ping service notices the run that never happened (the timer was removed, the host
is down), which no exit code can; Prometheus keeps the numbers (how long, how big, how far back
a restore reaches, when a drill last proved the backup) for graphs and alerts. Neither may ever
cost a backup: a ping that fails or hangs (a short timeout) and a textfile that cannot be
written are one warning line each, and the run's own outcome stands.

The textfile is rebuilt from this host's records only (the history file and duplicity's cache),
so it needs no connection, and it is replaced atomically: node_exporter reads the old file or
the new one, never half of one. The ping URL holds the check's secret (anyone with it can send
pings): it is registered as a secret and shown as scheme://host/… only.
"""

from __future__ import annotations

import http.client
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from rescue import __version__
from rescue.backup import history
from rescue.config import Settings
from rescue.placement.fsops import write_atomic
from rescue.process import execute

Kind = Literal["backup", "drill"]
Warn = Callable[[str], None]

log = logging.getLogger("rescue.backup.monitoring")


# -- pings --------------------------------------------------------------------------------------


def shown(url: str) -> str:
    """The URL as it may be printed: scheme and host, never the path that holds the check id."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…"


def ping(url: str, suffix: str, timeout: float, body: str | None = None) -> str | None:
    """One ping to url + suffix (a POST with body when given); None when it arrived, else the
    warning line, which never holds the URL's path."""
    data = body.encode("utf-8") if body is not None else None
    request = urllib.request.Request(
        url.rstrip("/") + suffix,
        data=data,
        method="POST" if data is not None else "GET",
        headers={"User-Agent": f"rescue/{__version__}", "Content-Type": "text/plain"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(4096)
        return None
    except urllib.error.HTTPError as exc:
        why = f"HTTP {exc.code}"
    except urllib.error.URLError as exc:
        why = str(exc.reason)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        why = str(exc) or type(exc).__name__
    what = f"/{suffix.lstrip('/')}" if suffix else ""
    return execute.mask(f"the {what or 'success'} ping to {shown(url)} failed: {why}")


def _ping_url(settings: Settings, kind: Kind) -> str | None:
    secret = (
        settings.monitoring.ping_url if kind == "backup" else settings.monitoring.drill_ping_url
    )
    return secret.get_secret_value() if secret is not None else None


@contextmanager
def monitored(settings: Settings, kind: Kind, warn: Warn) -> Iterator[None]:
    """Around one backup or drill: the start ping, then the success ping or the failure ping
    with the error line as its body; the textfile afterwards, whatever happened. Problems with
    any of them go to warn (and the log), never into the run's outcome."""
    url = _ping_url(settings, kind)
    timeout = settings.monitoring.ping_timeout_seconds

    def send(suffix: str, body: str | None = None) -> None:
        if url is None:
            return
        problem = ping(url, suffix, timeout, body)
        if problem:
            log.warning("%s", problem)
            warn(problem)

    send("/start")
    try:
        yield
    except BaseException as exc:
        send("/fail", history.error_line(exc) + "\n")
        raise
    else:
        send("")
    finally:
        problem = write_textfile(settings)
        if problem:
            log.warning("%s", problem)
            warn(problem)


# -- the textfile ---------------------------------------------------------------------------------


class _Families:
    """Metric families in Prometheus' text exposition format (0.0.4): HELP and TYPE once per
    family, then its samples; a family without samples is left out."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def gauge(self, name: str, help_text: str, samples: list[tuple[str, float | None]]) -> None:
        known = [(labels, value) for labels, value in samples if value is not None]
        if not known:
            return
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for labels, value in known:
            shown_value = repr(float(value)) if isinstance(value, float) else str(value)
            self.lines.append(f"{name}{labels} {shown_value}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _kind(kind: Kind) -> str:
    return f'{{kind="{kind}"}}'


def metrics_text(settings: Settings) -> str:
    """The textfile's content, from this host's history and duplicity's cache (no connection)."""
    from rescue.backup.engine import Engine  # the engine is heavy; only the textfile needs it

    archive = Path(settings.duplicity.archive_dir)
    runs = history.runs(archive)
    drills = [d for d in history.drills(archive) if d.outcome != "interrupted"]
    last_run = runs[-1] if runs else None
    last_ok = next((r for r in reversed(runs) if r.outcome == "success"), None)
    last_drill = drills[-1] if drills else None
    last_good_drill = next((d for d in reversed(drills) if d.outcome == "identical"), None)
    status = Engine(settings).local_status()
    sets = status.sets
    ok = {
        "backup": last_run is not None and last_run.outcome == "success",
        "drill": last_drill is not None and last_drill.outcome == "identical",
    }

    out = _Families()
    out.gauge(
        "rescue_last_run_timestamp_seconds",
        "When the last run ended, in seconds since the epoch.",
        [
            (_kind("backup"), last_run.end if last_run else None),
            (_kind("drill"), last_drill.end if last_drill else None),
        ],
    )
    out.gauge(
        "rescue_last_run_success",
        "1 when the last run succeeded (a drill: the restore was identical), else 0.",
        [
            (_kind("backup"), int(ok["backup"]) if last_run else None),
            (_kind("drill"), int(ok["drill"]) if last_drill else None),
        ],
    )
    out.gauge(
        "rescue_last_run_duration_seconds",
        "How long the last run took.",
        [
            (_kind("backup"), round(last_run.seconds, 3) if last_run else None),
            (_kind("drill"), round(last_drill.seconds, 3) if last_drill else None),
        ],
    )
    out.gauge(
        "rescue_last_success_timestamp_seconds",
        "When the last successful run ended (a drill: the last identical one).",
        [
            (_kind("backup"), last_ok.end if last_ok else None),
            (_kind("drill"), last_good_drill.end if last_good_drill else None),
        ],
    )
    out.gauge(
        "rescue_last_backup_bytes_written",
        "Bytes the last successful backup wrote to the destination.",
        [("", last_ok.bytes if last_ok else None)],
    )
    out.gauge(
        "rescue_backup_sets",
        "Backup sets (fulls and incrementals) at the destination, as this host's cache knows.",
        [("", len(sets))],
    )
    out.gauge(
        "rescue_backup_chains",
        "Backup chains (a full and its incrementals) at the destination.",
        [("", len(status.chains))],
    )
    out.gauge(
        "rescue_oldest_restorable_timestamp_seconds",
        "The oldest time a restore can go back to (the oldest kept set).",
        [("", sets[0].time if sets else None)],
    )
    out.gauge(
        "rescue_newest_restorable_timestamp_seconds",
        "The newest backup set's time.",
        [("", sets[-1].time if sets else None)],
    )
    out.gauge(
        "rescue_last_drill_identical",
        "1 when the last drill restored everything identical, 0 when it found differences "
        "or failed.",
        [("", int(ok["drill"]) if last_drill else None)],
    )
    out.gauge(
        "rescue_last_drill_restore_seconds",
        "How long the last drill's restore took.",
        [("", last_drill.restore_seconds if last_drill else None)],
    )
    out.gauge(
        "rescue_last_drill_compared_bytes",
        "Bytes the last drill compared, restored against live files.",
        [("", last_drill.compared_bytes if last_drill else None)],
    )
    return out.text()


def write_textfile(settings: Settings) -> str | None:
    """Rewrite the textfile when one is set; None when done, else the warning line."""
    target = settings.monitoring.textfile
    if target is None:
        return None
    if not Path(target).parent.is_dir():  # made by node_exporter's package, not by rescue
        return f"cannot write the metrics textfile {target}: its directory does not exist"
    try:
        write_atomic(Path(target), metrics_text(settings), 0o644)
        return None
    except Exception as exc:  # monitoring never fails the run: any problem is a warning
        return execute.mask(f"cannot write the metrics textfile {target}: {exc}")
