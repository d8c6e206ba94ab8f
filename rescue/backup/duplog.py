"""Parse duplicity's machine-readable `--log-fd` stream.

Why: duplicity's text output changes between versions and 3.x even prints stray DEBUG lines, but
the log-fd format is a documented contract for frontends. Each record is a control line
`LEVEL CODE [EXTRA]`, possibly continued on following lines that do not start with ". ", then the
human text with every line prefixed by ". ", then an empty line.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

# duplicity's log.ErrorCode values that rescue maps to its own errors.
GPG_FAILED = 31
NO_MANIFESTS = 4
RESTORE_PATH_EXISTS = 11
RESTORE_PATH_NOT_FOUND = 19
NO_RESTORE_FILES = 20
MISMATCHED_HASH = 21
CONNECTION_FAILED = 38
BACKEND_ERROR = 50
BACKEND_PERMISSION_DENIED = 51
BACKEND_NOT_FOUND = 52
SOURCE_PATH_MISMATCH = 42

# InfoCode values
INFO_PROGRESS = 2
INFO_COLLECTION_STATUS = 3
INFO_DIFF_NEW = 4
INFO_DIFF_CHANGED = 5
INFO_DIFF_DELETED = 6
INFO_PATCH_FILE_WRITING = 7
INFO_FILE_LIST = 10
INFO_UPLOAD_PROGRESS = 16

_CONTROL = re.compile(r"^(?P<level>[A-Z]+) (?P<code>\d+)(?: (?P<extra>.*))?$")


@dataclass
class Record:
    """One log-fd message."""

    level: str
    code: int
    extra: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        return "\n".join(self.text)


class LogParser:
    """Feed it lines as they arrive; it calls on_record for each complete record."""

    def __init__(self, on_record: Callable[[Record], None] | None = None) -> None:
        self.records: list[Record] = []
        self._current: Record | None = None
        self._on_record = on_record

    def feed(self, line: str) -> None:
        if self._current is None:
            match = _CONTROL.match(line)
            if match:
                extra = match.group("extra")
                self._current = Record(
                    match.group("level"), int(match.group("code")), [extra] if extra else []
                )
            return
        if line == "":
            self._finish()
        elif line.startswith(". ") or line == ".":
            self._current.text.append(line[2:])
        else:
            self._current.extra.append(line)

    def close(self) -> None:
        if self._current is not None:
            self._finish()

    def _finish(self) -> None:
        assert self._current is not None
        record, self._current = self._current, None
        self.records.append(record)
        if self._on_record:
            self._on_record(record)

    def errors(self) -> list[Record]:
        return [r for r in self.records if r.level == "ERROR"]


def unescape_path(quoted: str) -> str:
    """Undo duplicity's util.escape: a quoted, unicode-escaped path back to the real name."""
    inner = quoted[1:-1] if len(quoted) >= 2 and quoted[0] == quoted[-1] == "'" else quoted
    text = codecs.decode(inner.encode("ascii", "backslashreplace"), "unicode-escape")
    # Undecodable bytes travel as surrogates; fsencode/fsdecode puts them back as they were.
    return os.fsdecode(os.fsencode(text))


_STAT_LINE = re.compile(r"^(?P<key>[A-Za-z]+) (?P<value>-?\d+(?:\.\d+)?)")


def parse_statistics(record: Record) -> dict[str, float]:
    """The numbers of a "Backup Statistics" notice, keyed by duplicity's names."""
    stats: dict[str, float] = {}
    for line in record.text:
        match = _STAT_LINE.match(line)
        if match:
            stats[match.group("key")] = float(match.group("value"))
    return stats


def is_statistics(record: Record) -> bool:
    return bool(record.text) and "Backup Statistics" in record.text[0]
