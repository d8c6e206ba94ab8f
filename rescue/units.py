"""Sizes for people: one formatting for tables, reports, layouts and error messages."""

from __future__ import annotations

UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]


def human_size(size: float | None) -> str:
    """1 MiB, 512 MiB, 1.5 MiB, 18.5 GiB, 20.0 GiB: whole B/KiB/MiB without a fraction, others
    with one; "-" for an unknown size."""
    if size is None:
        return "-"
    value = float(size)
    unit = 0
    while abs(value) >= 1024 and unit < len(UNITS) - 1:
        value /= 1024
        unit += 1
    if unit < 3 and value == int(value):
        return f"{int(value)} {UNITS[unit]}"
    return f"{value:.1f} {UNITS[unit]}"
