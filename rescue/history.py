"""A local record of the backups this host made: what duplicity cannot say about a set.

duplicity's collection status gives each set's type, time and volume count, but not its size.
rescue notes the bytes each run wrote, keyed by the set's time, in a JSON-lines file beside
duplicity's cache. Losing it loses only the sizes in `rescue status`.
"""

from __future__ import annotations

import json
from pathlib import Path

HISTORY_FILE = "rescue-history.jsonl"


def record_backup(archive_dir: Path, set_time: int, kind: str, bytes_written: int) -> None:
    archive_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    line = json.dumps({"time": set_time, "kind": kind, "bytes": bytes_written})
    with open(archive_dir / HISTORY_FILE, "a", encoding="utf-8") as out:
        out.write(line + "\n")


def set_sizes(archive_dir: Path) -> dict[int, int]:
    """Bytes written per set time, for the sets this host made."""
    sizes: dict[int, int] = {}
    try:
        lines = (archive_dir / HISTORY_FILE).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return sizes
    for line in lines:
        try:
            entry = json.loads(line)
            sizes[int(entry["time"])] = int(entry["bytes"])
        except (ValueError, KeyError, TypeError):
            continue
    return sizes
