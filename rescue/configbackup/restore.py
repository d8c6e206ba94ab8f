"""Put modules back from a verified archive: in dependency order, after a diff and a yes, undoably.

Why this order of work: every byte of the archive is checked before anything is planned; the
plan (what is new, what changes, what a pre-restore archive would remove) is shown and
confirmed; then the current state of the touched modules is saved as a pre-restore archive, so
any restore can be undone by restoring that one. Each file is written beside its target and
renamed over it, so a file is always either the old one or the new one, never a mix; a module's
new files all reach the disk (one sync) before the first of them replaces an old one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rescue.config import Settings
from rescue.configbackup.archive import Opened, file_member, state_member
from rescue.configbackup.collect import Entry, file_kind, fill, id_names, on_root
from rescue.configbackup.modules import Module, dependency_order, missing_dependencies
from rescue.errors import ConfigRestoreRefused, UsageError
from rescue.process import execute
from rescue.prompts import Answers, Question
from rescue.recovery.mounts import mount_points

Say = Callable[[str], None]


@dataclass
class Change:
    module: str
    path: str
    action: str  # new | change | remove
    detail: str = ""


@dataclass
class Import:
    module: str
    name: str
    command: str


@dataclass
class Plan:
    opened: Opened
    root: Path
    order: list[str]
    changes: list[Change] = field(default_factory=list)
    unchanged: dict[str, int] = field(default_factory=dict)
    same: list[Change] = field(default_factory=list)  # what matches already (a dry run lists it)
    imports: list[Import] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def records(self) -> dict[str, dict[str, Any]]:
        return {m["name"]: m for m in self.opened.manifest["modules"]}


@dataclass
class Applied:
    pre_restore: str | None
    written: int = 0
    removed: int = 0
    import_problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def plan(
    opened: Opened,
    root: Path,
    requested: Sequence[str],
    ignore_dependencies: bool,
    answers: Answers,
    *,
    dry_run: bool = False,
) -> Plan:
    """What a restore of the requested modules would do; refuses what it must not do.

    A dry run asks nothing and refuses nothing about dependencies: it plans the modules that
    a restore would need (those the archive holds) and says what a restore would ask for."""
    manifest = opened.manifest
    name = manifest.get("name", opened.path.name)
    if manifest.get("type") == "bug-report":
        raise ConfigRestoreRefused(
            f"{name} is a bug report: its secrets are replaced by markers, so it can never be "
            "restored (restore a configuration archive instead)"
        )
    records = {m["name"]: m for m in manifest["modules"]}
    unknown = [m for m in requested if m not in records]
    if unknown:
        raise UsageError(
            f"{name} holds no module {', '.join(unknown)}; it holds {', '.join(records)}"
        )
    selected = list(dict.fromkeys(requested)) or list(records)
    deps = {n: list(m.get("depends", [])) for n, m in records.items()}
    warnings: list[str] = []
    missing = missing_dependencies(deps, selected)
    if missing and ignore_dependencies:
        warnings.append(
            f"restoring without {', '.join(missing)}, which {', '.join(selected)} depend(s) on "
            "(--ignore-dependencies)"
        )
    elif missing and dry_run:
        selected = _dry_run_dependencies(selected, missing, records, warnings)
    elif missing:
        selected = _add_dependencies(name, selected, missing, records, answers)
    result = Plan(opened, root, dependency_order(deps, selected), warnings=warnings)
    for module in result.order:
        _plan_module(result, records[module])
    return result


def _dry_run_dependencies(
    selected: list[str], missing: list[str], records: dict[str, Any], warnings: list[str]
) -> list[str]:
    held = [m for m in missing if m in records]
    absent = [m for m in missing if m not in records]
    needs = f"{', '.join(selected)} depend(s) on"
    if held:
        options = " ".join(f"--module {m}" for m in held)
        warnings.append(
            f"{needs} {', '.join(held)}: shown with them; a restore needs {options} (or a yes "
            "at a terminal), or --ignore-dependencies to leave them out"
        )
    if absent:
        warnings.append(
            f"{needs} {', '.join(absent)}, which the archive does not hold: a restore needs "
            "--ignore-dependencies"
        )
    return [*held, *selected]


def _add_dependencies(
    name: str,
    selected: list[str],
    missing: list[str],
    records: dict[str, Any],
    answers: Answers,
) -> list[str]:
    needs = f"{', '.join(selected)} depend(s) on {', '.join(missing)}, which is not selected"
    absent = [m for m in missing if m not in records]
    if absent:
        raise ConfigRestoreRefused(
            f"{needs}, and {name} does not hold {', '.join(absent)}: restore with "
            "--ignore-dependencies if the system already has them"
        )
    question = Question(
        "config_backup.add_dependencies",
        "confirm",
        f"{needs}. Restore {', '.join(missing)} too?",
        default=True,
    )
    if (answers.interactive or answers.has(question.id)) and answers.ask(question):
        return [*missing, *selected]
    options = " ".join(f"--module {m}" for m in missing)
    raise ConfigRestoreRefused(
        f"{needs}: add {options}, or give --ignore-dependencies to restore without it"
    )


def _inside(root: Path, path: str) -> Path:
    """The target path under root; its parent must resolve inside root (no symlink escape)."""
    target = on_root(root, path)
    real_root = os.path.realpath(root)
    real_parent = os.path.realpath(target.parent)
    if real_parent != real_root and not real_parent.startswith(real_root.rstrip("/") + "/"):
        raise ConfigRestoreRefused(
            f"{path}: its directory resolves to {real_parent}, outside {root}; nothing was written"
        )
    return target


def _plan_module(result: Plan, record: dict[str, Any]) -> None:
    module = record["name"]
    root = result.root
    users, groups = _ids(root, "passwd"), _ids(root, "group")
    mounted = mount_points()
    unchanged = 0
    for raw in record["entries"]:
        entry = Entry.from_record(raw)
        target = _inside(root, entry.path)
        try:
            st = target.lstat()
        except FileNotFoundError:
            result.changes.append(Change(module, entry.path, "new", entry.kind))
            continue
        if entry.kind != "dir" and _real(target) in mounted:
            raise ConfigRestoreRefused(
                f"{entry.path} is a mount point on the system (a file bound over it): a "
                "restore replaces a file by rename on its own file system; unmount it first "
                "(nothing was written)"
            )
        current = file_kind(st.st_mode)
        if (current == "dir") != (entry.kind == "dir"):
            raise ConfigRestoreRefused(
                f"{entry.path} is a {current or 'special file'} on the system but a {entry.kind} "
                "in the archive; move it away first (nothing was written)"
            )
        details = []
        if entry.kind == "file" and (current != "file" or _sha256(target) != entry.sha256):
            details.append("content")
        if entry.kind == "symlink" and (
            current != "symlink" or os.readlink(target) != entry.target
        ):
            details.append(f"link -> {entry.target}")
        if entry.kind != "symlink" and stat.S_IMODE(st.st_mode) != entry.mode:
            details.append(f"mode {stat.S_IMODE(st.st_mode):04o} -> {entry.mode:04o}")
        uid, gid = _owner(entry, users, groups)
        if (st.st_uid, st.st_gid) != (uid, gid):
            details.append(f"owner {st.st_uid}:{st.st_gid} -> {uid}:{gid}")
        if details:
            result.changes.append(Change(module, entry.path, "change", ", ".join(details)))
        else:
            unchanged += 1
            result.same.append(Change(module, entry.path, "same", entry.kind))
    for path in record.get("absent", []):
        if os.path.lexists(_inside(root, path)):
            result.changes.append(Change(module, path, "remove", "not there before the restore"))
    result.unchanged[module] = unchanged
    commands = {s["name"]: s.get("import", "") for s in record["definition"].get("state", [])}
    for state_name in record.get("state", []):
        if commands.get(state_name):
            result.imports.append(Import(module, state_name, commands[state_name]))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _ids(root: Path, table: str) -> dict[str, int]:
    """name -> id in root's own passwd or group: owners are restored by name, like duplicity."""
    return {name: number for number, name in id_names(root, table).items()}


def _owner(entry: Entry, users: dict[str, int], groups: dict[str, int]) -> tuple[int, int]:
    return users.get(entry.user, entry.uid), groups.get(entry.group, entry.gid)


def module_definitions(
    records: dict[str, dict[str, Any]], names: Sequence[str]
) -> dict[str, Module]:
    """The archive's own definitions of names, with dependencies cut to those names: what the
    pre-restore archive is made of (the system's modules may have changed since)."""
    found = {}
    for name in names:
        definition = dict(records[name]["definition"])
        definition["depends"] = [d for d in definition.get("depends", []) if d in names]
        found[name] = Module.model_validate(definition)
    return found


def apply(
    result: Plan,
    settings: Settings | None,
    *,
    run_imports: bool,
    save_pre_restore: Callable[[dict[str, Module], dict[str, list[str]]], str],
    say: Say,
) -> Applied:
    """Save the pre-restore archive, write every change, then run the state imports."""
    absent: dict[str, list[str]] = {}
    for change in result.changes:
        if change.action == "new":
            absent.setdefault(change.module, []).append(change.path)
    definitions = module_definitions(result.records(), result.order)
    pre_restore = save_pre_restore(definitions, absent)
    say(f"saved the current state as {pre_restore} (restore it to undo)")
    done = Applied(pre_restore)
    records = result.records()
    for module in result.order:
        say(f"restoring {module}")
        users, groups = _ids(result.root, "passwd"), _ids(result.root, "group")
        due = {c.path for c in result.changes if c.module == module and c.action != "remove"}
        pending: list[tuple[Path, Path]] = []  # (written beside, target)
        try:
            for raw in records[module]["entries"]:
                entry = Entry.from_record(raw)
                if entry.path in due:  # unchanged paths are left alone, mtimes and all
                    placed = _prepare(result, module, entry, users, groups)
                    pending += [placed] if placed else []
                    done.written += 1
            os.sync()  # once per module, not per file: every new file is on disk before...
        except BaseException:
            for tmp, _target in pending:
                tmp.unlink(missing_ok=True)
            raise
        for tmp, target in pending:  # ...any of them replaces an old one
            os.replace(tmp, target)
        for path in sorted(records[module].get("absent", []), key=len, reverse=True):
            done.removed += _remove(result.root, path, done.warnings)
    if result.imports and run_imports:
        for item in result.imports:
            say(f"importing {item.module}: {item.name}")
            problem = _import(result, item)
            if problem:
                done.import_problems.append(problem)
    return done


def _prepare(
    result: Plan, module: str, entry: Entry, users: dict[str, int], groups: dict[str, int]
) -> tuple[Path, Path] | None:
    """Make a directory in place, or write a file or link beside its target: (beside, target)."""
    target = _inside(result.root, entry.path)
    uid, gid = _owner(entry, users, groups)
    if entry.kind == "dir":
        target.mkdir(parents=True, exist_ok=True)
        os.chown(target, uid, gid)
        target.chmod(entry.mode)
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.rescue-new")
    if os.path.lexists(tmp):
        tmp.unlink()
    if entry.kind == "symlink":
        os.symlink(entry.target, tmp)
        os.lchown(tmp, uid, gid)
    else:
        staged = result.opened.staged[file_member(module, entry.path)]
        with staged.open("rb") as source, open(tmp, "xb") as sink:
            while chunk := source.read(1 << 20):
                sink.write(chunk)
        os.chown(tmp, uid, gid)
        tmp.chmod(entry.mode)
        os.utime(tmp, (entry.mtime, entry.mtime))
    return tmp, target


def _real(target: Path) -> str:
    """target with its directory resolved, the last name kept (a link is itself replaced)."""
    return os.path.join(os.path.realpath(target.parent), target.name)


def _remove(root: Path, path: str, warnings: list[str]) -> int:
    """Remove what was not there when the archive was made: a file or link, or an empty
    directory, never a mount point (the pre-restore archive holds it, for the undo)."""
    target = _inside(root, path)
    if not os.path.lexists(target):
        return 0
    if _real(target) in mount_points():
        warnings.append(f"kept {path}: it is a mount point")
        return 0
    if target.is_dir() and not target.is_symlink():
        try:
            target.rmdir()
        except OSError:
            warnings.append(f"kept {path}: the directory is not empty")
            return 0
    else:
        target.unlink()
    return 1


def _import(result: Plan, item: Import) -> str:
    """Run one state import; a failure is returned as a line, not raised (files are in place)."""
    data = result.opened.staged[state_member(item.module, item.name)].read_bytes()
    with tempfile.NamedTemporaryFile(prefix=f"rescue-{item.name}-") as state:
        state.write(data)
        state.flush()
        command = fill(item.command, result.root, Path(state.name))
        outcome = execute.run(["sh", "-c", command])
    for line in outcome.output.splitlines():
        if line.strip():
            result.warnings.append(f"{item.module}/{item.name}: {line.strip()}")
    if outcome.returncode:
        last = outcome.last_line("no message")
        return f"{item.module}: import of {item.name} failed (exit {outcome.returncode}): {last}"
    return ""


def pre_restore_name(host: str) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-%f")
    return f"pre-restore-{host}-{stamp}"
