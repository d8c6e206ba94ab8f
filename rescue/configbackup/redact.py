"""Make a bug-report archive safe to send: every secret replaced by a marker, and listed.

Why rules and not a list of files: secrets hide in many shapes. Password hashes sit in the
second field of shadow and gshadow, keys are PEM or OpenSSH blocks wherever they are, and
`password = ...` style lines appear in any config file. The settings' own secret values are
also replaced wherever they occur, and so are files that the settings name as secret files.
Each replacement is recorded (module, path, what, never the value) for the manifest.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

MARKER = b"[REDACTED by rescue]"

_NOT_HASHES = {b"", b"*", b"!", b"!!", b"!*", b"x"}
_PRIVATE_KEY = re.compile(
    rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?-----END [A-Z0-9 ]*PRIVATE KEY-----", re.S
)
_KEY_WORDS = rb"password|passphrase|passwd|secret|token|psk|api[_-]?key|private[_-]?key"
# key = value, key: value, key="value" (ini, TOML, YAML, shell, NetworkManager, wpa_supplicant)
_KEY_VALUE = re.compile(
    rb"^(?P<head>[ \t]*[\"']?(?P<key>[\w.-]*(?:" + _KEY_WORDS + rb")[\w.-]*)[\"']?[ \t]*[=:][ \t]*)"
    rb"(?P<value>[^\r\n]*?)[ \t]*$",
    re.I | re.M,
)
# keys that say where a secret is, not what it is (passphrase_file = "/etc/rescue/passphrase")
_REFERENCE_KEYS = (b"_file", b"_env", b"_path", b"_dir")
# rescue's settings name their secret files by keys that end in _file
_SECRET_FILE_NAME = re.compile(r"(passphrase|password|secret|token|id_[a-z0-9]+$|key$)", re.I)


@dataclass
class Redactor:
    """Redacts one archive's contents; `done` lists what was replaced."""

    secret_values: list[str] = field(default_factory=list)
    secret_files: set[str] = field(default_factory=set)  # system paths, whole file replaced
    done: list[dict[str, str]] = field(default_factory=list)

    def note(self, module: str, path: str, what: str) -> None:
        self.done.append({"module": module, "path": path, "what": what})

    def learn_settings(self, root: Path, settings_files: Iterable[str]) -> None:
        """Secret files the settings under root name (`*_file` keys), by their system path."""
        for system_path in settings_files:
            if not system_path.endswith(".toml"):
                continue
            try:
                data = tomllib.loads((root / system_path.lstrip("/")).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            for section in data.values():
                if isinstance(section, dict):
                    for key, value in section.items():
                        if (
                            key.endswith("_file")
                            and isinstance(value, str)
                            and key != "tls_ca_file"
                        ):
                            self.secret_files.add(value)

    def redact(self, module: str, path: str, data: bytes) -> bytes:
        """data with every secret replaced; each replacement noted."""
        name = PurePosixPath(path).name
        if path in self.secret_files or (
            module == "rescue"
            and not name.endswith((".toml", ".pub"))
            and _SECRET_FILE_NAME.search(name)
        ):
            self.note(module, path, "a secret file (whole content)")
            return MARKER + b"\n"
        if name in ("shadow", "gshadow", "shadow-", "gshadow-"):
            data = self._hashes(module, path, data)
        if _PRIVATE_KEY.search(data):
            count = len(_PRIVATE_KEY.findall(data))
            data = _PRIVATE_KEY.sub(MARKER, data)
            self.note(module, path, f"{count} private key(s)")
        is_host_key = name.startswith("ssh_host_") and name.endswith("_key")
        if is_host_key and data.strip() != MARKER:
            data = MARKER + b"\n"
            self.note(module, path, "an SSH host private key")
        data = self._key_values(module, path, data)
        return self.values(module, path, data)

    def values(self, module: str, path: str, data: bytes) -> bytes:
        """Replace the settings' own secret values wherever they appear."""
        for secret in sorted(self.secret_values, key=len, reverse=True):
            raw = secret.encode()
            if raw and raw in data:
                data = data.replace(raw, MARKER)
                self.note(module, path, "a secret of the settings (by value)")
        return data

    def _hashes(self, module: str, path: str, data: bytes) -> bytes:
        lines = data.split(b"\n")
        users = []
        for number, line in enumerate(lines):
            parts = line.split(b":")
            if len(parts) > 2 and parts[1] not in _NOT_HASHES:
                parts[1] = MARKER
                lines[number] = b":".join(parts)
                users.append(parts[0].decode("utf-8", "replace"))
        if users:
            self.note(module, path, "password hashes of " + ", ".join(users))
        return b"\n".join(lines)

    def _key_values(self, module: str, path: str, data: bytes) -> bytes:
        keys: list[str] = []

        def replace(match: re.Match[bytes]) -> bytes:
            value = match.group("value")
            key = match.group("key").lower()
            if not value.strip(b"\"'") or value == MARKER or key.endswith(_REFERENCE_KEYS):
                return match.group(0)
            keys.append(match.group("key").decode("utf-8", "replace"))
            quote = value[:1] if value[:1] in (b'"', b"'") and value[-1:] == value[:1] else b""
            return match.group("head") + quote + MARKER + quote

        data = _KEY_VALUE.sub(replace, data)
        if keys:
            self.note(module, path, "values of " + ", ".join(dict.fromkeys(keys)))
        return data
