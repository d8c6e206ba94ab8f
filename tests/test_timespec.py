"""The -t grammar is duplicity's; rescue resolves it once, before any work."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rescue.backup.timespec import duplicity_time, from_duplicity_time, parse_time
from rescue.errors import UsageError

NOW = 1_800_000_000


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("now", NOW),
        ("3D", NOW - 3 * 86400),
        ("2W", NOW - 14 * 86400),
        ("1h30m", NOW - 5400),
        ("90s", NOW - 90),
        ("1Y", NOW - 365 * 86400),
        ("1700000000", 1_700_000_000),
        ("2026-01-25T07:00:00Z", int(datetime(2026, 1, 25, 7, tzinfo=UTC).timestamp())),
        ("2026-01-25", int(datetime(2026, 1, 25).timestamp())),
        ("2026/01/25", int(datetime(2026, 1, 25).timestamp())),
        ("01/25/2026", int(datetime(2026, 1, 25).timestamp())),
    ],
)
def test_accepted(spec: str, expected: int) -> None:
    assert parse_time(spec, now=NOW) == expected


@pytest.mark.parametrize("spec", ["yesterday", "3d", "3 D", "", "2026-13-01", "D3"])
def test_rejected_with_the_grammar(spec: str) -> None:
    with pytest.raises(UsageError, match="use now, 3D"):
        parse_time(spec, now=NOW)


def test_duplicity_timestamps_round_trip() -> None:
    assert duplicity_time(1_795_681_568) == "20261126T082608Z"
    assert from_duplicity_time("20261126T082608Z") == 1_795_681_568
