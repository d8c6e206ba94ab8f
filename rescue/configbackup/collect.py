"""Read a module from a system's root: its files with owners and modes, and its state exports.

Why a root rather than /: the same code reads the running system, a mounted one (recovery's
--root) and the tests' fake host. Owner names come from that root's own passwd and group, so an
archive made from a mounted system names its users, not the rescue system's.
"""

from __future__ import annotations

import glob
import os
import shlex
import stat
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rescue.configbackup.modules import Module, StateCommand
from rescue.process import execute

Kind = Literal["file", "dir", "symlink"]


@dataclass
class Entry:
    """One file, directory or symlink of a module, as the manifest records it."""

    path: str  # absolute, as on the system: /etc/hosts
    kind: Kind
    mode: int
    uid: int
    gid: int
    user: str
    group: str
    mtime: int
    size: int = 0
    sha256: str = ""
    target: str = ""  # a symlink's target, as it is (never followed)

    def record(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ("", None)}

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Entry:
        return cls(**data)


@dataclass
class Collected:
    """What one module holds on a system: entries, state outputs and what was not there."""

    module: Module
    entries: list[Entry] = field(default_factory=list)
    state: dict[str, bytes] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # sockets, devices: not configuration
    warnings: list[str] = field(default_factory=list)


def file_kind(mode: int) -> Kind | None:
    """What a module can hold: a file, a directory or a symlink (None: a socket, a device)."""
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    return "file" if stat.S_ISREG(mode) else None


def on_root(root: Path, path: str) -> Path:
    """The system path `path` under root (both absolute)."""
    return root / path.lstrip("/")


def id_names(root: Path, table: str) -> dict[int, str]:
    """id -> name from root's etc/passwd or etc/group (an absent or odd file: no names)."""
    names: dict[int, str] = {}
    try:
        lines = (
            on_root(root, f"/etc/{table}")
            .read_text(encoding="utf-8", errors="replace")
            .splitlines()
        )
    except OSError:
        return names
    for line in lines:
        parts = line.split(":")
        if len(parts) >= 3 and parts[2].isdigit():
            names.setdefault(int(parts[2]), parts[0])
    return names


class Reader:
    """Reads modules from one root, with that root's user and group names."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.users = id_names(root, "passwd")
        self.groups = id_names(root, "group")

    def collect(self, module: Module, *, with_data: bool = False) -> Collected:
        found = Collected(module)
        seen: set[str] = set()
        for pattern in [*module.paths, *(module.data_dirs if with_data else [])]:
            matches = sorted(glob.glob(glob.escape(str(self.root).rstrip("/")) + pattern))
            matches = [m for m in matches if os.path.lexists(m)]
            if not matches:
                found.missing.append(pattern)
            for match in matches:
                self._walk(Path(match), found, seen)
        for command in module.state:
            self._export(command, found)
        return found

    def _system_path(self, path: Path) -> str:
        return "/" + str(path.relative_to(self.root)) if path != self.root else "/"

    def _walk(self, path: Path, found: Collected, seen: set[str]) -> None:
        self._add(path, found, seen)
        if path.is_symlink() or not path.is_dir():
            return
        for top, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                self._add(Path(top) / name, found, seen)

    def _add(self, path: Path, found: Collected, seen: set[str]) -> None:
        system_path = self._system_path(path)
        if system_path in seen:
            return
        seen.add(system_path)
        st = path.lstat()
        kind = file_kind(st.st_mode)
        if kind is None:
            found.skipped.append(system_path)
            return
        found.entries.append(
            Entry(
                path=system_path,
                kind=kind,
                mode=stat.S_IMODE(st.st_mode),
                uid=st.st_uid,
                gid=st.st_gid,
                user=self.users.get(st.st_uid, ""),
                group=self.groups.get(st.st_gid, ""),
                mtime=int(st.st_mtime),
                size=st.st_size if kind == "file" else 0,
                target=os.readlink(path) if kind == "symlink" else "",
            )
        )

    def _export(self, command: StateCommand, found: Collected) -> None:
        if command.when and not os.path.lexists(on_root(self.root, command.when)):
            return
        with tempfile.NamedTemporaryFile(prefix="rescue-state-") as out:
            shell = fill(command.export, self.root, Path(out.name))
            result = execute.run(["sh", "-c", f"( {shell} ) > {shlex.quote(out.name)}"])
            printed = result.output.strip() or Path(out.name).stat().st_size
            if result.returncode and (result.returncode != command.empty_exit or printed):
                last = result.last_line("no message")
                found.warnings.append(
                    f"{found.module.name}: the export of {command.name} failed "
                    f"(exit {result.returncode}): {last}"
                )
                return
            found.state[command.name] = Path(out.name).read_bytes()


def fill(command: str, root: Path, state: Path) -> str:
    """A module command with {root} and {state} filled in, each quoted for the shell."""
    return command.replace("{root}", shlex.quote(str(root))).replace(
        "{state}", shlex.quote(str(state))
    )
