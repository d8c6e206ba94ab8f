"""The sidecar format: gzip-compressed JSON lines, one header line, then one line per path.

A line exists only for a path that needs one, so plain files cost nothing:
  p  the path, relative to the backed-up root ("" is the root itself)
  t  the type: f file, d directory, l symlink, o other
  o  [uid, gid], only where they differ from the parent directory's (and at each walk's top)
  M  the permission bits (an int), at each walk's top only: the replay sets them, with o, on the
     directory a restore merges into (an optional key that a reader of version 1 ignores)
  m  mtime and a atime, in nanoseconds: on every line (duplicity keeps whole seconds only, no
     symlink mtimes, and directory mtimes change as entries are restored into them)
  x  {name: base64 value}: every xattr, ACLs and capabilities included
  s  [size, [[offset, length], ...]]: the data extents of a sparse file
It is written and read as a stream, so a million files never need to be in memory at once.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from rescue.errors import ManifestError

__all__ = ["SIDECAR_REL", "Record", "Writer", "read", "type_code", "under"]

# Where the records travel in every backup: rescue's own directory, beside the manifest.
SIDECAR_REL = "var/lib/rescue/metadata.jsonl.gz"

FORMAT = "rescue-metadata"
VERSION = 1

Record = dict[str, Any]


def type_code(mode: int) -> str:
    """The t of a line: f file, d directory, l symlink, o other."""
    if stat.S_ISREG(mode):
        return "f"
    if stat.S_ISDIR(mode):
        return "d"
    return "l" if stat.S_ISLNK(mode) else "o"


def encode_xattrs(values: dict[str, bytes]) -> dict[str, str]:
    return {name: base64.b64encode(value).decode() for name, value in values.items()}


def decode_xattrs(record: Record) -> dict[str, bytes]:
    return {name: base64.b64decode(value) for name, value in record.get("x", {}).items()}


class Writer:
    """Appends records to a new sidecar (written to a temporary name, renamed by close)."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        # a name of this run's own: two runs with one selection root never share it
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        self._tmp = Path(tmp)
        self._raw: BinaryIO = os.fdopen(fd, "wb")  # mode 0600; closed by close/abort
        self._gz = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=6, mtime=0)
        self.count = 0
        self._line({"format": FORMAT, "version": VERSION, **header})

    def _line(self, data: dict[str, Any]) -> None:
        self._gz.write(json.dumps(data, separators=(",", ":")).encode() + b"\n")

    def add(self, record: Record) -> None:
        self._line(record)
        self.count += 1

    def close(self) -> None:
        self._gz.close()
        self._raw.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._gz.close()
        self._raw.close()
        self._tmp.unlink(missing_ok=True)


def read(path: Path) -> tuple[dict[str, Any], Iterator[Record]]:
    """The header and a stream of the records; ManifestError for a file this version cannot
    read."""
    try:
        stream = gzip.open(path, "rt", encoding="utf-8")  # noqa: SIM115 (records() closes it)
        first = stream.readline()
        header = json.loads(first) if first else {}
    except (OSError, ValueError, EOFError) as exc:
        raise ManifestError(f"cannot read the metadata records {path}: {exc}") from None
    if header.get("format") != FORMAT:
        stream.close()
        raise ManifestError(f"{path} is not a rescue metadata file")
    version = header.get("version")
    if not isinstance(version, int) or version > VERSION:
        stream.close()
        raise ManifestError(
            f"{path} has metadata format {version!r}; this rescue reads up to {VERSION}"
        )

    def records() -> Iterator[Record]:
        with stream:
            try:
                for line in stream:
                    yield json.loads(line)
            except (OSError, ValueError, EOFError) as exc:
                raise ManifestError(f"the metadata records {path} are damaged: {exc}") from None

    return header, records()


def under(rel: str, prefix: str) -> bool:
    """Whether the backup path rel lies at or below prefix ("" is everything)."""
    return not prefix or rel == prefix or rel.startswith(prefix + "/")


def relative(rel: str, prefix: str) -> str | None:
    """The backup path rel relative to prefix ("" for prefix itself), None when outside it:
    where rel lies in a restore of prefix."""
    if not prefix:
        return rel
    if rel == prefix:
        return ""
    return rel[len(prefix) + 1 :] if rel.startswith(prefix + "/") else None
