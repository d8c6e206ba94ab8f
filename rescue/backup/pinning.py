"""Write a host key fingerprint into the settings file, leaving the rest of it as it was.

Why edit the text rather than re-render the TOML: the file is the admin's, with their comments
and their order, and `rescue config trust-host` must change one value only. The new text is
parsed again before it replaces the file, and it replaces it whole (a temporary file of mode
0600 in the same directory, renamed over it), so a failure leaves the old file untouched.
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from pathlib import Path

from rescue.errors import ConfigError

KEY = "host_key_fingerprint"
_SECTION = re.compile(r"^\s*\[\s*destination\s*\]\s*(#.*)?$")
_ANY_SECTION = re.compile(r"^\s*\[")
_PINNED = re.compile(rf"^(\s*{KEY}\s*=\s*)(\"[^\"]*\"|'[^']*')(.*)$")


def with_fingerprint(text: str, fingerprint: str) -> str:
    """text with [destination] host_key_fingerprint set to fingerprint: the value replaced in
    place when the key is there, else a line added after the section's last key."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _SECTION.match(line)), None)
    if start is None:
        raise ConfigError(f"no [destination] section line to add {KEY} to; add it by hand")
    end = next(
        (i for i in range(start + 1, len(lines)) if _ANY_SECTION.match(lines[i])), len(lines)
    )
    value = f'"{fingerprint}"'
    for i in range(start + 1, end):
        found = _PINNED.match(lines[i].rstrip("\r\n"))
        if found:
            newline = lines[i][len(lines[i].rstrip("\r\n")) :] or "\n"
            lines[i] = f"{found.group(1)}{value}{found.group(3)}{newline}"
            return "".join(lines)
    last = start
    for i in range(start + 1, end):
        stripped = lines[i].strip()
        if stripped and not stripped.startswith("#"):
            last = i
    if not lines[last].endswith("\n"):
        lines[last] += "\n"
    lines.insert(last + 1, f"{KEY} = {value}\n")
    return "".join(lines)


def pin(path: Path, fingerprint: str) -> None:
    """Set the fingerprint in the settings file at path; mode 0600, owner kept."""
    path = path.resolve()  # a symlinked settings file: its target is edited, the link stays
    text = path.read_text(encoding="utf-8")
    new = with_fingerprint(text, fingerprint)
    try:
        written = tomllib.loads(new).get("destination", {}).get(KEY)
    except tomllib.TOMLDecodeError:
        written = None
    if written != fingerprint:
        raise ConfigError(f"{path}: could not set {KEY} in [destination]; add it by hand")
    st = path.stat()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(new)
            out.flush()
            os.fchown(out.fileno(), st.st_uid, st.st_gid)
            os.fchmod(out.fileno(), 0o600)
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
