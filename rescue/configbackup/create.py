"""Make an archive: read the chosen modules from a root, redact for a bug report, write, store.

Why dependencies are added at creation: an archive of `ssh` without `users` could never be
restored without --ignore-dependencies, so the modules a selection needs are taken along, and
the output says which were added.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import platform
import shutil
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rescue import __version__
from rescue.config import Settings
from rescue.configbackup import archive, crypt, remote
from rescue.configbackup.collect import Entry, Reader, on_root
from rescue.configbackup.modules import (
    Module,
    dependency_order,
    graph,
    load_modules,
    missing_dependencies,
)
from rescue.configbackup.redact import Redactor
from rescue.configbackup.store import Store, Stored
from rescue.errors import RemoteCopyError, RescueError, UsageError
from rescue.process import execute

log = logging.getLogger("rescue.configbackup")

ArchiveType = Literal["configuration", "full", "bug-report", "pre-restore"]
TYPES: tuple[ArchiveType, ...] = ("configuration", "full", "bug-report")
LOG_LINES = 300
SCAN_LIMIT = 4 << 20  # configuration files are small; a data file this big is not scanned
SHOWN_SECRET_FILES = 5


@dataclass
class Created:
    stored: Stored
    manifest: dict[str, Any]
    added: list[str] = field(default_factory=list)  # dependencies taken along


def modules_dir(settings: Settings | None) -> Path:
    return Path(Store(settings).options.modules_dir)


def choose(modules: dict[str, Module], requested: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the modules to archive in dependency order, the dependencies added to the request)."""
    unknown = [m for m in requested if m not in modules]
    if unknown:
        raise UsageError(
            f"unknown module(s) {', '.join(unknown)}; known: {', '.join(modules)} "
            "(see rescue config-backup modules)"
        )
    deps = graph(modules.values())
    wanted = list(requested) or list(modules)
    added = missing_dependencies(deps, wanted)
    chosen = [m for m in modules if m in wanted or m in added]  # the catalogue's order
    return dependency_order(deps, chosen), added


def host_name(root: Path) -> str:
    try:
        name = on_root(root, "/etc/hostname").read_text().strip()
    except OSError:
        name = ""
    return name or socket.gethostname()


def create(
    settings: Settings | None,
    root: Path,
    kind: ArchiveType,
    requested: Sequence[str] = (),
    name: str | None = None,
    *,
    config_path: Path | None = None,
    log_path: Path | None = None,
    modules: dict[str, Module] | None = None,
    absent: dict[str, list[str]] | None = None,
    allow_unencrypted: bool = False,
    say: Callable[[str], None] = lambda _line: None,
    warn: Callable[[str], None] = lambda _line: None,
) -> Created:
    """Build one archive of kind from root and put it in the store (and the destination).

    An archive that is not encrypted is scanned with the bug report's rules: the files that
    hold secrets are named in its manifest and in a warning, and it is not copied to the
    destination unless allow_unencrypted (a pre-restore archive then stays local)."""
    store = Store(settings)
    modules = modules if modules is not None else load_modules(modules_dir(settings))
    chosen, added = choose(modules, requested)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    host = host_name(root)
    name = name or store.free_name(f"{host}-{kind}-{now.strftime('%Y%m%d-%H%M%S')}")
    store.check_new_name(name)
    encrypted = crypt.encrypts(settings) and kind != "bug-report"
    compression = store.options.compression
    reader = Reader(root)
    redactor = _redactor(settings, root, modules) if kind == "bug-report" else None
    scanner = None if encrypted or redactor else _redactor(settings, root, modules)
    records: list[dict[str, Any]] = []
    warnings: list[str] = []
    with store.work_dir() as work:
        writer = archive.Writer(work, compression)
        for module_name in chosen:
            module = modules[module_name]
            say(f"reading {module_name}")
            found = reader.collect(module, with_data=kind == "full")
            warnings += found.warnings
            for entry in found.entries:
                if entry.kind == "file":
                    _add_file(writer, root, module_name, entry, redactor)
                    if scanner is not None and entry.size <= SCAN_LIMIT:
                        _scan(scanner, root, module_name, entry)
            for state_name, data in found.state.items():
                if redactor is not None:
                    data = redactor.redact(module_name, f"state:{state_name}", data)
                writer.add_bytes(archive.state_member(module_name, state_name), data)
            records.append(
                {
                    "name": module_name,
                    "description": module.description,
                    "depends": list(module.depends),
                    "definition": module.model_dump(by_alias=True),
                    "entries": [e.record() for e in found.entries],
                    "state": sorted(found.state),
                    "missing": found.missing,
                    "skipped": found.skipped,
                    "absent": sorted((absent or {}).get(module_name, [])),
                }
            )
        diagnostics = []
        if redactor is not None:
            say("collecting diagnostics")
            diagnostics = _diagnostics(writer, redactor, settings, root, config_path, log_path)
        secret_files = list(dict.fromkeys(d["path"] for d in (scanner.done if scanner else [])))
        manifest = {
            "type": kind,
            "name": name,
            "host": host,
            "created": now.isoformat(),
            "tool": "rescue",
            "version": __version__,
            "root": str(root),
            "compression": compression,
            "encrypted": encrypted,
            "modules": records,
            "added_dependencies": added,
            "warnings": warnings,
            "redactions": redactor.done if redactor else [],
            "secret_files": secret_files,
            "diagnostics": diagnostics,
        }
        say("writing the archive")
        built = work / store.file_name(name, compression, encrypted)
        writer.finish(manifest, built, settings)
        stored = store.add(built, manifest, name)
    if secret_files and kind != "pre-restore":
        warn(unencrypted_warning(name, secret_files))
    if settings is not None and store.options.copy_to_destination:
        refusal = remote.unencrypted_refusal(stored, allow_unencrypted)
        if refusal and kind == "pre-restore":
            return Created(stored, manifest, added)  # kept local; the restore goes on
        if refusal:
            raise RemoteCopyError(
                f"{name} is in the store, not copied to the destination: {refusal}; copy it "
                f"with: rescue config-backup push {name} --allow-unencrypted"
            )
        say("copying to the backup destination")
        try:
            stored.index["remote"] = remote.upload(settings, stored.path)
        except RescueError as exc:
            exc.message = (
                f"{name} is in the store, but its copy to the destination failed: {exc.message}; "
                f"copy it later with: rescue config-backup push {name}"
            )
            raise
        store.write_index(stored)
    return Created(stored, manifest, added)


def unencrypted_warning(name: str, secret_files: list[str]) -> str:
    shown = ", ".join(secret_files[:SHOWN_SECRET_FILES])
    more = len(secret_files) - SHOWN_SECRET_FILES
    return (
        f"{name} is not encrypted and holds secrets in {len(secret_files)} file(s): {shown}"
        + (f" and {more} more (see info {name})" if more > 0 else "")
        + '; to encrypt archives, set [encryption] mode = "symmetric" (with a passphrase) or '
        '"gpg" in the settings'
    )


def _scan(scanner: Redactor, root: Path, module: str, entry: Entry) -> None:
    """Note (in scanner.done) whether the file holds a secret, by the bug report's rules."""
    with contextlib.suppress(OSError):  # gone since it was archived: nothing to say
        scanner.redact(module, entry.path, on_root(root, entry.path).read_bytes())


def _add_file(
    writer: archive.Writer, root: Path, module: str, entry: Entry, redactor: Redactor | None
) -> None:
    member = archive.file_member(module, entry.path)
    source = on_root(root, entry.path)
    if redactor is None:
        entry.sha256, entry.size = writer.add_file(member, source)
        return
    data = redactor.redact(module, entry.path, source.read_bytes())
    entry.sha256, entry.size = writer.add_bytes(member, data), len(data)


def _redactor(settings: Settings | None, root: Path, modules: dict[str, Module]) -> Redactor:
    redactor = Redactor()
    if settings is not None:
        for read in (settings.passphrase, settings.destination_password):
            try:
                value = read()
            except RescueError:  # an unset variable or unreadable file: nothing to look for
                continue
            if value:
                redactor.secret_values.append(value)
        for url in (settings.monitoring.ping_url, settings.monitoring.drill_ping_url):
            if url is not None:  # a ping URL holds its check's secret
                redactor.secret_values.append(url.get_secret_value())
        dest, enc = settings.destination, settings.encryption
        for path in (dest.password_file, dest.ssh_key_file, enc.passphrase_file):
            if path:
                redactor.secret_files.add(path)
    rescue_module = modules.get("rescue")
    if rescue_module is not None:
        found = Reader(root).collect(rescue_module.model_copy(update={"state": []}))
        redactor.learn_settings(root, [e.path for e in found.entries if e.kind == "file"])
    return redactor


def _diagnostics(
    writer: archive.Writer,
    redactor: Redactor,
    settings: Settings | None,
    root: Path,
    config_path: Path | None,
    log_path: Path | None,
) -> list[str]:
    """versions, status, recent log lines and the disk layout, each redacted like the files."""
    texts: dict[str, bytes] = {"versions.txt": _versions(root).encode()}
    if settings is not None and config_path is not None:
        status = execute.run(
            [sys.executable, "-m", "rescue", "--config", str(config_path), "status", "--json"]
        )
        texts["status.json"] = status.output.encode()
    if log_path is not None and log_path.is_file():
        lines = log_path.read_bytes().splitlines()[-LOG_LINES:]
        texts["rescue.log"] = execute.mask(b"\n".join(lines).decode("utf-8", "replace")).encode()
    if str(root) == "/":
        texts["layout.json"] = _layout()
    for text_name, data in texts.items():
        data = redactor.redact("diagnostics", f"diagnostics:{text_name}", data)
        writer.add_bytes(f"diagnostics/{text_name}", data)
    return sorted(texts)


def _versions(root: Path) -> str:
    duplicity = execute.run(["duplicity", "--version"]) if shutil.which("duplicity") else None
    try:
        os_release = on_root(root, "/etc/os-release").read_text()
    except OSError:
        os_release = "(no /etc/os-release)\n"
    return (
        f"rescue {__version__}\n"
        f"duplicity: {duplicity.output.strip() if duplicity else 'not installed'}\n"
        f"python {platform.python_version()}\n"
        f"kernel: {' '.join(platform.uname())}\n\n{os_release}"
    )


def _layout() -> bytes:
    from rescue.layout.capture import capture
    from rescue.layout.model import layout_to_dict

    try:
        return json.dumps(layout_to_dict(capture(None)), indent=1).encode()
    except RescueError as exc:
        return f"layout not captured: {exc}\n".encode()
