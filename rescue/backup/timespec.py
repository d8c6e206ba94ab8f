"""Restore times in duplicity's `-t` grammar, parsed once so that errors come before any work.

Accepted, as duplicity documents them: `now`; seconds since the epoch; an interval before now
made of numbers with units s, m, h, D, W, M, Y (`3D`, `2W`, `1h30m`); a date or date-time
`2026-01-25`, `2026-01-25T07:00:00`, with an optional `Z` or `+02:00`; and `YYYY/MM/DD` or
`MM/DD/YYYY`. Dates without a zone are local time, as in duplicity. rescue hands duplicity the
resolved epoch seconds, so both agree on exactly which backup set a time selects.
"""

from __future__ import annotations

import re
import time
from datetime import datetime

from rescue.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "D": 86400, "W": 7 * 86400, "M": 30 * 86400, "Y": 365 * 86400}
_INTERVAL = re.compile(r"^(?:\d+[smhDWMY])+$")
_PART = re.compile(r"(\d+)([smhDWMY])")

EXAMPLES = "now, 3D, 2W, 1h30m, 2026-01-25, 2026-01-25T07:00:00, or seconds since the epoch"


def parse_time(spec: str, now: float | None = None) -> int:
    """Return the epoch seconds that spec names, or raise UsageError with the grammar."""
    now = time.time() if now is None else now
    text = spec.strip()
    if text == "now":
        return int(now)
    if text.isdigit():
        return int(text)
    if _INTERVAL.match(text):
        seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(text))
        return int(now - seconds)
    for fmt in ("%Y/%m/%d", "%m/%d/%Y"):
        try:
            return int(datetime.strptime(text, fmt).timestamp())
        except ValueError:
            pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"bad time {spec!r}: use {EXAMPLES}") from None
    return int(moment.timestamp())


def duplicity_time(timestamp: int) -> str:
    """The form duplicity prints and accepts in its file names: 20261126T082608Z."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(timestamp))


def from_duplicity_time(text: str) -> int:
    """Epoch seconds of duplicity's 20261126T082608Z."""
    return int(datetime.strptime(text, "%Y%m%dT%H%M%S%z").timestamp())


def iso(timestamp: float) -> str:
    """Local ISO date-time for people and JSON."""
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")
