"""The plan file of an unattended recovery (`rescue recover --plan plan.toml`).

A plan says everything a guided recovery would ask: the settings, the restore point, which disks
may be erased (by a stable id, never by a kernel name such as /dev/sdb, which changes between
boots), an optional explicit mapping, and the answers to the questions by ID. Unknown keys are
errors, as in the settings, because a misspelt key would otherwise be a silent default.

    settings = "/etc/rescue/rescue.toml"   # default: the --config file
    time = "now"                           # or 3D, 2026-11-01, ...
    target_root = "/mnt/rescue-target"
    grow = true                            # a larger disk: the last partition takes the rest
    grow_lv = "none"                       # which LV takes its VG's free space: none, last
                                           # (each VG's last non-swap LV) or "VG/LV"
    after = "reboot"                       # reboot, poweroff, shell or none
    initramfs = "auto"                     # or "always": rebuild it even when it still fits
    verify = "sample"                      # or "records" (no backup read) or "full" (every byte)
    luks_passphrase_file = "luks.pass"     # the new LUKS passphrase: a file only root can read;
                                           # the whole file, less one trailing newline
    luks_new_uuid = false                  # true: new LUKS UUIDs, crypttab is rewritten to them

    [disks]
    targets = ["serial:QM00001"]           # the only disks that may be erased
    map = { "/dev/vda" = "serial:QM00001" } # optional: source disk -> target, by stable id

    [mounts]                               # file systems to mount (read-only) first,
    "/backup" = "label:BACKUPS"            # e.g. a disk holding a file destination

    [answers]
    "recover.erase" = "yes"
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rescue.config import read_secret_file
from rescue.config.toml_file import read_toml, unknown_key
from rescue.errors import ConfigError, InsecureConfigError, PlanError, RescueError
from rescue.layout.recreate.plan import grow_lv_problem
from rescue.recovery.initramfs import CHOICES as INITRAMFS_CHOICES

AFTER_CHOICES = ("reboot", "poweroff", "shell", "none")
VERIFY_CHOICES = ("records", "sample", "full")
CHOICE_KEYS = {"after": AFTER_CHOICES, "initramfs": INITRAMFS_CHOICES, "verify": VERIFY_CHOICES}
TOP_KEYS = {"settings", "time", "target_root", "grow", "grow_lv", "disks", "mounts", "answers"}
TOP_KEYS |= {"luks_passphrase_file", "luks_new_uuid", *CHOICE_KEYS}
DISK_KEYS = {"targets", "map"}


@dataclass
class RecoveryPlan:
    """A parsed plan; relative paths are taken relative to the plan file."""

    path: Path
    settings: Path | None = None
    time: str | None = None
    target_root: Path | None = None
    grow: bool | None = None
    grow_lv: str | None = None
    after: str | None = None
    initramfs: str | None = None
    verify: str | None = None
    luks_passphrase_file: Path | None = None
    luks_new_uuid: bool | None = None
    targets: list[str] = field(default_factory=list)
    map: dict[str, str] = field(default_factory=dict)
    mounts: dict[str, str] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)


def _expect(value: Any, kind: type | tuple[type, ...], where: str, what: str) -> Any:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise PlanError(f"{where}: must be {what}, not {value!r}")
    return value


def read_luks_passphrase(path: Path, key: str, error: type[RescueError]) -> str:
    """The new LUKS passphrase in path, by the settings' rules for secret files: a regular,
    non-empty file that only its owner can read; the whole file is the passphrase, less one
    trailing newline (so `echo secret > file` works: the passphrase typed at boot has none).
    Every problem is one `error` line that starts with key; the secret is never in it."""
    try:
        return read_secret_file(path, key)
    except InsecureConfigError:
        mode = stat.S_IMODE(path.stat().st_mode)
        raise error(
            f"{key}: {path} is readable by group or others (mode {mode:04o}) and holds a LUKS "
            f"passphrase; run: chmod 600 {path}"
        ) from None
    except ConfigError as exc:
        raise error(str(exc)) from None


def load_plan(path: Path, *, check_secret_file: bool = True) -> RecoveryPlan:
    """Read and check a plan; every problem is one PlanError line, `file:line: key: message`,
    read through the same TOML layer as the settings. check_secret_file=False (a resumed run)
    leaves luks_passphrase_file unchecked: the admin may have removed it once the layout was
    made, and the step that needs it reads it again anyway."""
    if not path.exists():
        raise PlanError(f"no plan file at {path}")
    toml = read_toml(path, PlanError)
    data, at = toml.data, toml.where  # at(key...): `file:line: key`
    unknown = sorted(set(data) - TOP_KEYS, key=lambda k: toml.locator.line((k,)))
    if unknown:  # the first in the file
        raise PlanError(f"{at(unknown[0])}: {unknown_key(unknown[0], sorted(TOP_KEYS))}")
    plan = RecoveryPlan(path=path)
    base = path.parent

    if "settings" in data:
        plan.settings = base / _expect(data["settings"], str, at("settings"), "a path")
    if "time" in data:
        plan.time = _expect(data["time"], str, at("time"), 'a time such as "now" or "3D"')
    if "target_root" in data:
        root = _expect(data["target_root"], str, at("target_root"), "an absolute path")
        if not root.startswith("/"):
            raise PlanError(f"{at('target_root')}: must be an absolute path, not {root!r}")
        plan.target_root = Path(root)
    if "grow" in data:
        plan.grow = _expect(data["grow"], bool, at("grow"), "true or false")
    if "grow_lv" in data:
        problem = grow_lv_problem(data["grow_lv"])
        if problem:
            raise PlanError(f"{at('grow_lv')}: {problem}")
        plan.grow_lv = data["grow_lv"]
    if "luks_passphrase_file" in data:
        where = at("luks_passphrase_file")
        secret = base / _expect(data["luks_passphrase_file"], str, where, "a path")
        if check_secret_file:  # checked now, read when it is used
            read_luks_passphrase(secret, where, PlanError)
        plan.luks_passphrase_file = secret
    if "luks_new_uuid" in data:
        new_uuid = _expect(data["luks_new_uuid"], bool, at("luks_new_uuid"), "true or false")
        plan.luks_new_uuid = new_uuid
    for key, choices in CHOICE_KEYS.items():
        if key in data:
            value = _expect(data[key], str, at(key), "a string")
            if value not in choices:
                raise PlanError(f"{at(key)}: must be one of {', '.join(choices)}")
            setattr(plan, key, value)
    disks = _expect(data.get("disks", {}), dict, at("disks"), "a table")
    unknown = sorted(set(disks) - DISK_KEYS)
    if unknown:
        raise PlanError(f"{at('disks', unknown[0])}: {unknown_key(unknown[0], sorted(DISK_KEYS))}")
    targets = _expect(disks.get("targets", []), list, at("disks", "targets"), "a list")
    plan.targets = [_expect(t, str, at("disks", "targets"), "a stable disk id") for t in targets]
    mapping = _expect(disks.get("map", {}), dict, at("disks", "map"), "a table")
    for source, target in mapping.items():
        plan.map[source] = _expect(target, str, at("disks", "map", source), "a stable disk id")
    mounts = _expect(data.get("mounts", {}), dict, at("mounts"), "a table")
    for point, spec in mounts.items():
        _expect(spec, str, at("mounts", point), "label:NAME or uuid:UUID")
        if not point.startswith("/") or not spec.startswith(("label:", "uuid:")):
            raise PlanError(
                f"{at('mounts', point)}: must map an absolute path to label:NAME or "
                f"uuid:UUID, not {point!r} = {spec!r}"
            )
        plan.mounts[point] = spec
    plan.answers = dict(_expect(data.get("answers", {}), dict, at("answers"), "a table"))
    return plan
