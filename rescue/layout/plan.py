"""The layout-planning service: a recorded layout, this machine's target disks, the mapping
between them, the script that recreates it, and running that script after an explicit yes.

Why one module: `rescue layout plan|apply` and the recovery steps (detect_disks, map_disks,
recreate_layout) must find the same disks, refuse the same ones, map them the same way, show the
same script and ask the same question (`recover.erase`, which `--yes` or a plan answers by ID).
The callers only parse their options, talk to the admin and keep their state.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rescue.config import Settings
from rescue.errors import DiskMappingError, ManifestError, UsageError
from rescue.layout import LayoutError
from rescue.layout.capture import capture, identify_disks, lsblk
from rescue.layout.mapping import describe_mapping, map_disks, unsafe_reason
from rescue.layout.model import Disk, Layout
from rescue.layout.recreate import LUKS_PASSPHRASE_VAR, apply_script, build_script
from rescue.layout.recreate.plan import GROW_LV_NONE
from rescue.layout.stable_ids import resolve_stable_id
from rescue.layout.system_state import SystemState, read_system_state
from rescue.process import execute
from rescue.prompts import Question
from rescue.recovery import manifest
from rescue.recovery.manifest_model import Manifest

Ask = Callable[[Question], Any]
Warn = Callable[[str], None]

# -- the source layout -----------------------------------------------------------------------


def read_manifest(path: Path) -> Manifest:
    """The manifest file at path: the one place the layout service reads one."""
    return manifest.load(path)


@dataclass
class Source:
    """A recorded layout, and the excluded mount paths whose disks the mapping leaves out."""

    layout: Layout
    excluded: list[str]


def source_of(data: Manifest, advice: str = "") -> Source:
    """The layout a manifest recorded; ManifestError (with advice, if given) when it has none."""
    if data.layout is None:
        reason = data.layout_error or "not recorded"
        tail = f"; {advice}" if advice else ""
        raise ManifestError(f"the backup's manifest holds no disk layout ({reason}){tail}")
    return Source(data.layout, manifest.excluded_mount_paths(data))


def live_layout(devices: Sequence[str] = ()) -> Layout:
    """This machine's layout: every real disk, or exactly the given ones."""
    return capture(list(devices) or None)


# -- the target disks ------------------------------------------------------------------------


def protected_paths(settings: Settings | None, *dirs: Path | str) -> list[str]:
    """Paths whose disks must never be written: dirs (rescue's own), a file destination."""
    paths = [str(d) for d in dirs]
    if settings is not None and settings.destination.method == "file":
        paths.append(settings.destination.path)
    return paths


def target_state(settings: Settings | None, *dirs: Path | str) -> SystemState:
    """What must not be overwritten here: mounts, swap, the running system, the backup."""
    return read_system_state(protected_paths(settings, *dirs))


def all_disks() -> list[Disk]:
    """The real disks, plus attached loop devices (images an admin attached on purpose)."""
    disks = identify_disks(None)
    loops = [
        str(n.get("path"))
        for n in lsblk()
        if n.get("type") == "loop" and int(n.get("size") or 0) > 0 and n.get("path")
    ]
    return disks + (identify_disks(loops) if loops else [])


def resolve_disk(ident: str, disks: Sequence[Disk]) -> Disk:
    """The disk a stable id (serial:, wwn:, by-id:, file:) or a device path names."""
    if ident.startswith("/"):
        real = os.path.realpath(ident)
        for disk in disks:
            if os.path.realpath(disk.path) == real:
                return disk
        raise DiskMappingError(f"{ident} is not a disk of this machine")
    return resolve_stable_id(ident, disks)


def find_targets(idents: Sequence[str], state: SystemState, warn: Warn) -> list[Disk]:
    """The candidate targets, read: the named disks (among all_disks()), or every real disk.

    A disk already ruled out (it holds the backup, the rescue media or a mount) is not read at
    all, only kept so that refusals can name it; one that cannot be read (a dying disk) is
    named through warn with the reason and left out: the mapping goes on without it.
    """
    if idents:
        known = all_disks()
        candidates = [resolve_disk(i, known) for i in dict.fromkeys(idents)]
    else:
        candidates = identify_disks(None)  # the real disks, as capture(None) would read them
    found = []
    for disk in candidates:
        if unsafe_reason(disk, state) is not None:
            found.append(disk)
            continue
        try:
            _read_samples(disk)
            found += capture([disk.path]).disks
        except LayoutError as exc:
            warn(f"{disk.path} cannot be read ({exc}): left out of the mapping")
    return found


# Bytes read at the start, the middle and the end of a candidate disk.
SAMPLE = 4096


def _read_samples(disk: Disk) -> None:
    """LayoutError if a block at the start, the middle or the end of the disk cannot be read.

    Why: blkid (and wipefs) find "nothing" on a disk whose reads fail with EIO, exactly as on a
    blank one, so a dying disk would be offered as a target. The start and the end are where
    the new partition table goes (GPT keeps a copy at the end); the middle samples the rest.
    """
    last = max(disk.size_bytes - SAMPLE, 0) // SAMPLE * SAMPLE
    try:
        fd = os.open(disk.path, os.O_RDONLY)
    except OSError as exc:
        raise LayoutError(f"cannot open it: {exc.strerror}") from exc
    try:
        for offset in sorted({0, last // 2 // SAMPLE * SAMPLE, last}):
            try:
                os.pread(fd, SAMPLE, offset)
            except OSError as exc:
                raise LayoutError(f"a read at byte {offset} fails: {exc.strerror}") from exc
    finally:
        os.close(fd)


# -- the mapping and the script ---------------------------------------------------------------


def map_layout(
    source: Source,
    targets: list[Disk],
    state: SystemState,
    explicit: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """{source disk: target disk} by rescue.layout.mapping's rules; DiskMappingError if none."""
    return map_disks(
        source.layout, targets, dict(explicit or {}) or None, state=state, excluded=source.excluded
    )


def mapping_lines(source: Source, targets: list[Disk], mapping: Mapping[str, str]) -> list[str]:
    """The mapping as the admin reads it, one line per source disk."""
    return describe_mapping(source.layout, targets, dict(mapping), source.excluded)


def script_for(
    layout: Layout,
    mapping: Mapping[str, str],
    *,
    grow: bool = True,
    grow_lv: str = GROW_LV_NONE,
    luks_new_uuid: bool = False,
) -> str:
    """The script that recreates layout on the mapped targets (read from sysfs, so a resumed
    recovery that kept only the mapping builds the same script). grow: the last partition
    takes a larger disk's rest; grow_lv: which LV takes its VG's free space ("none", "last" or
    "VG/LV"; UsageError if the layout has no such LV to grow); luks_new_uuid: LUKS containers
    get new UUIDs, not the recorded ones."""
    return build_script(layout, mapping, grow=grow, grow_lv=grow_lv, luks_new_uuid=luks_new_uuid)


@dataclass
class LayoutPlan:
    """A source layout fitted to this machine: what `rescue layout plan` prints."""

    source: Source
    targets: list[Disk]
    mapping: dict[str, str]
    grow: bool = True
    grow_lv: str = GROW_LV_NONE

    def lines(self) -> list[str]:
        return mapping_lines(self.source, self.targets, self.mapping)

    def script(self) -> str:
        return script_for(self.source.layout, self.mapping, grow=self.grow, grow_lv=self.grow_lv)


def plan_layout(
    source: Source,
    idents: Sequence[str],
    state: SystemState,
    *,
    warn: Warn,
    explicit: Mapping[str, str] | None = None,
    grow: bool = True,
    grow_lv: str = GROW_LV_NONE,
) -> LayoutPlan:
    """The unattended plan: find the targets (idents, or every real disk), map, keep grow and
    grow_lv."""
    targets = find_targets(idents, state, warn)
    mapping = map_layout(source, targets, state, explicit)
    return LayoutPlan(source, targets, mapping, grow, grow_lv)


# -- applying it -----------------------------------------------------------------------------


def confirm_erase(
    ask: Ask, targets: Iterable[str], script_path: Path, *, assume_yes: bool = False
) -> None:
    """The explicit yes before anything is erased: --yes, or `recover.erase` typed or answered
    by a plan; UsageError (nothing written) otherwise."""
    if assume_yes:
        return
    question = Question(
        "recover.erase",
        "typed-yes",
        f"ERASE {', '.join(targets)} and recreate the layout (script: {script_path})?",
    )
    if not ask(question):
        raise UsageError("the layout was not confirmed; nothing was written to the disks")


def makes_luks(script: str) -> bool:
    """Whether the script formats LUKS containers (its step 1 then insists on a passphrase)."""
    return f'"${{{LUKS_PASSPHRASE_VAR}:-}}"' in script


def apply_layout(
    script: str, log_dir: Path, ask: Ask, secret_dir: Path, *, passphrase: str | None = None
) -> None:
    """Run the script (kept in log_dir with its output). A script that makes LUKS containers
    gets their passphrase through a new file in secret_dir (mode 0600, removed afterwards):
    passphrase when the caller has it (a recovery plan's luks_passphrase_file), else asked as
    `recover.luks_passphrase` unless RESCUE_LUKS_PASSPHRASE_FILE already names a file."""
    env: dict[str, str] = {}
    secret_file = None
    if makes_luks(script) and (passphrase is not None or not os.environ.get(LUKS_PASSPHRASE_VAR)):
        secret = passphrase
        if secret is None:
            secret = ask(
                Question(
                    "recover.luks_passphrase", "password", "Passphrase for the new LUKS volumes:"
                )
            )
        execute.register_secret(secret)  # masked, should a tool ever print it
        secret_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # A new file of its own (mkstemp: O_EXCL, 0600), so no file already in secret_dir (for
        # `layout apply`, the user's --log-dir) is ever overwritten or removed.
        fd, name = tempfile.mkstemp(prefix="luks-passphrase-", dir=secret_dir)
        secret_file = Path(name)
        with os.fdopen(fd, "w") as out:
            out.write(secret)
        env[LUKS_PASSPHRASE_VAR] = str(secret_file)
    try:
        apply_script(script, log_dir, env=env)
    finally:
        if secret_file is not None:
            secret_file.unlink(missing_ok=True)
