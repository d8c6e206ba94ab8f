"""The plan file of an unattended recovery (`rescue recover --plan plan.toml`).

A plan says everything a guided recovery would ask: the settings, the restore point, which disks
may be erased (by a stable id, never by a kernel name such as /dev/sdb, which changes between
boots), an optional explicit mapping, and the answers to the questions by ID. Unknown keys are
errors, as in the settings, because a misspelt key would otherwise be a silent default.

    settings = "/etc/rescue/rescue.toml"   # default: the --config file
    time = "now"                           # or 3D, 2026-11-01, ...
    target_root = "/mnt/rescue-target"
    grow = true                            # a larger disk: the last partition takes the rest
    after = "reboot"                       # reboot, poweroff, shell or none

    [disks]
    targets = ["serial:QM00001"]           # the only disks that may be erased
    map = { "/dev/vda" = "serial:QM00001" } # optional: source disk -> target, by stable id

    [mounts]                               # file systems to mount (read-only) first,
    "/backup" = "label:BACKUPS"            # e.g. a disk holding a file destination

    [answers]
    "recover.erase" = "yes"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rescue.errors import PlanError

AFTER_CHOICES = ("reboot", "poweroff", "shell", "none")
TOP_KEYS = {"settings", "time", "target_root", "grow", "after", "disks", "mounts", "answers"}
DISK_KEYS = {"targets", "map"}


@dataclass
class RecoveryPlan:
    """A parsed plan; relative paths are taken relative to the plan file."""

    path: Path
    settings: Path | None = None
    time: str | None = None
    target_root: Path | None = None
    grow: bool | None = None
    after: str | None = None
    targets: list[str] = field(default_factory=list)
    map: dict[str, str] = field(default_factory=dict)
    mounts: dict[str, str] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)


def _expect(value: Any, kind: type | tuple[type, ...], where: str, what: str) -> Any:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise PlanError(f"{where}: must be {what}, not {value!r}")
    return value


def load_plan(path: Path) -> RecoveryPlan:
    """Read and check a plan; every problem is one PlanError line naming the file and key."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise PlanError(f"no plan file at {path}") from None
    except OSError as exc:
        raise PlanError(f"cannot read the plan {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PlanError(f"{path}: invalid TOML: {exc}") from None
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise PlanError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {sorted(TOP_KEYS)}")
    plan = RecoveryPlan(path=path)
    base = path.parent

    def where(key: str) -> str:
        return f"{path}: {key}"

    if "settings" in data:
        plan.settings = base / _expect(data["settings"], str, where("settings"), "a path")
    if "time" in data:
        plan.time = _expect(data["time"], str, where("time"), 'a time such as "now" or "3D"')
    if "target_root" in data:
        root = _expect(data["target_root"], str, where("target_root"), "an absolute path")
        if not root.startswith("/"):
            raise PlanError(f"{where('target_root')}: must be an absolute path, not {root!r}")
        plan.target_root = Path(root)
    if "grow" in data:
        plan.grow = _expect(data["grow"], bool, where("grow"), "true or false")
    if "after" in data:
        after = _expect(data["after"], str, where("after"), "a string")
        if after not in AFTER_CHOICES:
            raise PlanError(f"{where('after')}: must be one of {', '.join(AFTER_CHOICES)}")
        plan.after = after
    disks = _expect(data.get("disks", {}), dict, where("disks"), "a table")
    unknown = sorted(set(disks) - DISK_KEYS)
    if unknown:
        raise PlanError(f"{where('disks')}: unknown key(s) {', '.join(unknown)}")
    targets = _expect(disks.get("targets", []), list, where("disks.targets"), "a list")
    plan.targets = [_expect(t, str, where("disks.targets"), "a stable disk id") for t in targets]
    mapping = _expect(disks.get("map", {}), dict, where("disks.map"), "a table")
    for source, target in mapping.items():
        plan.map[source] = _expect(target, str, where(f"disks.map.{source}"), "a stable disk id")
    mounts = _expect(data.get("mounts", {}), dict, where("mounts"), "a table")
    for point, spec in mounts.items():
        _expect(spec, str, where(f"mounts.{point}"), "label:NAME or uuid:UUID")
        if not point.startswith("/") or not spec.startswith(("label:", "uuid:")):
            raise PlanError(
                f"{where(f'mounts.{point}')}: must map an absolute path to label:NAME or "
                f"uuid:UUID, not {point!r} = {spec!r}"
            )
        plan.mounts[point] = spec
    plan.answers = dict(_expect(data.get("answers", {}), dict, where("answers"), "a table"))
    return plan
