"""The local directory of archives: names, the index beside each archive, export and import.

Why an index file beside each archive (NAME.json): `list` must show the type, date and modules
of encrypted archives without a passphrase, and at once. The index holds no secret (names and
dates only); the archive's own manifest stays the authority, and import rebuilds the index
from a verified archive.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rescue.config import ConfigBackup, Settings
from rescue.configbackup import archive, crypt
from rescue.errors import ConfigArchiveNotFoundError, RestoreTargetExistsError, UsageError
from rescue.placement.scratch import private_dir

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
INDEX_KEYS = (
    "name", "type", "created", "host", "modules", "encrypted", "size", "file", "remote",
    "secret_files",
)  # fmt: skip


@dataclass
class Stored:
    """One archive in the store, as its index describes it."""

    path: Path
    index: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.index["name"])


class Store:
    def __init__(self, settings: Settings | None) -> None:
        self.settings = settings
        self.options = settings.config_backup if settings else ConfigBackup()
        self.directory = Path(self.options.directory)

    def ensure(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory.chmod(0o700)
        return self.directory

    @contextmanager
    def work_dir(self) -> Iterator[Path]:
        """A private scratch directory inside the store (same file system: renames are atomic)."""
        with private_dir(".work-", self.ensure()) as tmp:
            yield tmp

    def file_name(self, name: str, compression: str, encrypted: bool) -> str:
        return name + archive.SUFFIXES[compression] + (crypt.SUFFIX if encrypted else "")

    def check_new_name(self, name: str) -> None:
        if not NAME.fullmatch(name):
            raise UsageError(
                f"archive name {name!r}: use letters, digits, '.', '_' or '-' (up to 100), "
                "starting with a letter or digit"
            )
        if self._find(name) is not None:
            raise UsageError(f"an archive named {name} exists; delete it or choose another name")

    def free_name(self, base: str) -> str:
        """base, or base-2, base-3, ...: the first name not taken. Why: the default name has a
        one-second stamp, and two archives in one second (a pre-restore archive right after a
        create, a script) must not make the second run fail."""
        taken = {s.name for s in self.all()}
        return next(n for n in (base, *(f"{base}-{i}" for i in range(2, 1000))) if n not in taken)

    def all(self) -> list[Stored]:
        if not self.directory.is_dir():
            return []
        found = []
        for index_path in sorted(self.directory.glob("*.json")):
            try:
                index = json.loads(index_path.read_text())
            except (OSError, ValueError):
                continue
            path = self.directory / str(index.get("file", ""))
            if path.is_file():
                found.append(Stored(path, index))
        return sorted(found, key=lambda s: (str(s.index.get("created", "")), s.name))

    def _find(self, name: str) -> Stored | None:
        return next((s for s in self.all() if s.name == name), None)

    def get(self, name: str) -> Stored:
        found = self._find(name)
        if found is None:
            known = ", ".join(s.name for s in self.all()[-5:]) or "none yet"
            raise ConfigArchiveNotFoundError(
                f"no configuration archive named {name} in {self.directory} (newest: {known}; "
                "see rescue config-backup list)"
            )
        return found

    def resolve(self, name_or_path: str) -> Path:
        """An archive by its name in the store, or a file given by path."""
        found = self._find(name_or_path)
        if found is not None:
            return found.path
        path = Path(name_or_path)
        if "/" in name_or_path and path.is_file():
            return path
        return self.get(name_or_path).path  # raises, naming the store

    def add(self, built: Path, manifest: dict[str, Any], name: str) -> Stored:
        """Move a finished archive file into the store and write its index."""
        self.ensure()
        encrypted = built.name.endswith(crypt.SUFFIX)
        compression = str(manifest.get("compression", "gzip"))
        path = self.directory / self.file_name(name, compression, encrypted)
        built.replace(path)
        index = {
            "name": name,
            "type": manifest["type"],
            "created": manifest["created"],
            "host": manifest["host"],
            "modules": [m["name"] for m in manifest["modules"]],
            "encrypted": encrypted,
            "size": path.stat().st_size,
            "file": path.name,
        }
        if "secret_files" in manifest:  # paths only: the index never holds a secret
            index["secret_files"] = list(manifest["secret_files"])
        self.write_index(Stored(path, index))
        return Stored(path, index)

    def write_index(self, stored: Stored) -> None:
        index_path = self.directory / f"{stored.name}.json"
        tmp = index_path.with_name(f".{index_path.name}.part")
        tmp.write_text(json.dumps(stored.index, indent=1, sort_keys=True) + "\n")
        tmp.chmod(0o600)
        tmp.replace(index_path)

    def delete(self, stored: Stored) -> None:
        stored.path.unlink()
        (self.directory / f"{stored.name}.json").unlink(missing_ok=True)

    def export(self, stored: Stored, out: Path, force: bool) -> Path:
        """Copy the archive out as it is (encrypted stays encrypted); a file is never
        overwritten without force. A directory gets the archive's own file name."""
        target = out / stored.path.name if out.is_dir() else out
        if target.exists() and not force:
            raise RestoreTargetExistsError(f"{target} exists; add --force to overwrite it")
        archive.copy_file(stored.path, target)
        return target
