"""The one typed context the recovery steps share (no globals), and what it persists.

`Options` is what the admin asked for (the command line and the plan); `Facts` is what the steps
found and decided (the restore point, the disk mapping, the mounts). Both go into the state file
after every step, so a resumed run continues with the same restore point and the same disks.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rescue.backup.engine import Engine
from rescue.backup.results import ProgressCallback
from rescue.config import Settings, load_settings
from rescue.errors import RecoveryStateError
from rescue.exact.records import Record
from rescue.exact.records import read as read_records
from rescue.layout import plan as layout_plan
from rescue.layout.devices import MountEntry, mount_entries
from rescue.layout.model import Layout
from rescue.prompts import Answers, Question
from rescue.recovery.manifest_model import Manifest
from rescue.steps.guided_settings import ask_settings

log = logging.getLogger("rescue.recover")

DEFAULT_WORK_DIR = Path("/var/lib/rescue/recover")
DEFAULT_TARGET_ROOT = Path("/mnt/rescue-target")
STATE_FILE = "state.json"
REPORT_FILE = "report.json"


@dataclass
class Options:
    """What the admin asked for; saved, so --resume needs no arguments."""

    work_dir: str = str(DEFAULT_WORK_DIR)
    target_root: str = str(DEFAULT_TARGET_ROOT)
    settings_file: str | None = None
    plan_file: str | None = None
    time: str | None = None
    grow: bool = True
    grow_lv: str = "none"  # which LV takes its VG's free space: none, last or VG/LV
    after: str | None = None
    initramfs: str = "auto"  # auto: rebuilt only when it no longer fits (rescue.recovery.initramfs)
    verify: str = "sample"  # records, sample or full: how much content the verify step reads
    # The new LUKS passphrase's file (the path only: it is read when the layout is recreated,
    # so the secret is never in the state file); None: $RESCUE_LUKS_PASSPHRASE_FILE or asked.
    luks_passphrase_file: str | None = None
    luks_new_uuid: bool = False  # True: luksFormat makes new UUIDs, fix_fstab names them
    unattended: bool = False
    assume_yes: bool = False
    target_ids: list[str] = field(default_factory=list)
    map_ids: dict[str, str] = field(default_factory=dict)
    source_mounts: dict[str, str] = field(default_factory=dict)  # plan [mounts]: path -> fs id
    log_file: str | None = None


@dataclass
class Facts:
    """What the steps found and decided, in plain JSON types."""

    disks: list[dict[str, Any]] = field(default_factory=list)
    restore_set: dict[str, Any] | None = None
    host: str | None = None
    manifest_file: str | None = None
    mapping: dict[str, str] = field(default_factory=dict)
    mapping_lines: list[str] = field(default_factory=list)
    erase_confirmed: bool = False
    mounts: list[dict[str, str]] = field(default_factory=list)
    identity_saved: bool = False
    restored_files: int = 0
    restored_bytes: int = 0
    warnings: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # restored files recovery rewrote (rel)
    metadata_file: str | None = None  # the backup's rescue.exact records, fetched with the manifest
    sizes_file: str | None = None  # the room each part of the backup takes, fetched with it too
    # restore_full's finished file systems (backup path -> what it restored), so a resumed
    # run does not restore them again (nor need twice their room)
    restored_systems: dict[str, dict[str, Any]] = field(default_factory=dict)
    punched: list[str] = field(default_factory=list)  # files the hole puncher changed (rel)
    metadata_warnings: list[str] = field(default_factory=list)  # what replay could not put back


class Context:
    """Everything a step may use: options, facts, the settings, questions, cleanups."""

    def __init__(
        self,
        options: Options,
        answers: Answers,
        *,
        echo: Callable[[str], None] = print,
        progress: ProgressCallback | None = None,
        settings: Settings | None = None,
        quiet: Callable[[], AbstractContextManager[None]] = nullcontext,
    ) -> None:
        self.options = options
        self.quiet = quiet  # pauses the progress display while a question is asked
        self.answers = answers
        self.facts = Facts()
        self._echo = echo
        self.progress = progress
        self._settings = settings
        self._manifest: Manifest | None = None
        self._cleanups: list[tuple[str, Callable[[], object]]] = []  # results are not used
        self.checkpoint: Callable[[], None] = lambda: None  # the runner saves the state

    # -- paths -------------------------------------------------------------------------------

    @property
    def work_dir(self) -> Path:
        return Path(self.options.work_dir)

    @property
    def state_path(self) -> Path:
        return self.work_dir / STATE_FILE

    @property
    def target_root(self) -> Path:
        return Path(self.options.target_root)

    def target(self, path: str) -> Path:
        """A path of the restored system (/etc/fstab) under the target root."""
        return self.target_root / path.lstrip("/")

    # -- talking -----------------------------------------------------------------------------

    def echo(self, text: str) -> None:
        self._echo(text)

    def ask(self, question: Question) -> Any:
        with self.quiet():
            return self.answers.ask(question)

    def warn(self, text: str) -> None:
        """A problem that does not stop the recovery, but must reach the report."""
        log.warning("%s", text)
        self.facts.warnings.append(text)
        self.echo(f"      WARNING: {text}")

    # -- the backup --------------------------------------------------------------------------

    def settings(self) -> Settings:
        if self._settings is None:
            if self.options.settings_file:
                self._settings = load_settings(self.options.settings_file)
            else:
                self._settings, path = ask_settings(self.ask)
                if path:
                    self.options.settings_file = path
        return self._settings

    def engine(self) -> Engine:
        return Engine(self.settings(), self.progress)

    def restore_time(self) -> int:
        if not self.facts.restore_set:
            raise RecoveryStateError("no restore point chosen yet: run the step choose_backup")
        return int(self.facts.restore_set["time"])

    def manifest(self) -> Manifest:
        if self._manifest is None:
            if not self.facts.manifest_file:
                raise RecoveryStateError("no manifest loaded yet: run the step load_manifest")
            self._manifest = layout_plan.read_manifest(Path(self.facts.manifest_file))
        return self._manifest

    def plan_from_manifest(self, before: str, lines: Callable[[Manifest], list[str]]) -> list[str]:
        """A step's plan read off the manifest, or the one line `before` says while no manifest
        is loaded yet (a dry run, or the plan shown before the step load_manifest has run)."""
        if not self.facts.manifest_file:
            return [before]
        return lines(self.manifest())

    def records(self) -> Iterator[Record]:
        """The backup's metadata records (rescue.exact), streamed; none for an older backup."""
        if not self.facts.metadata_file:
            return iter(())
        return read_records(Path(self.facts.metadata_file))[1]

    def source(self) -> layout_plan.Source:
        """The backup's recorded layout, and the excluded paths the mapping leaves out."""
        return layout_plan.source_of(
            self.manifest(),
            advice="recreate the disks by hand, mount them at the target root, and resume "
            "with --from mount_target",
        )

    def layout(self) -> Layout:
        return self.source().layout

    def mount_entries(self) -> tuple[list[MountEntry], list[str]]:
        """What the restored system mounts, on the mapped target devices (see layout.devices)."""
        root = self.manifest().root
        return mount_entries(self.layout(), self.facts.mapping, root)

    # -- cleanups ----------------------------------------------------------------------------

    def add_cleanup(self, label: str, action: Callable[[], object]) -> None:
        self._cleanups.append((label, action))

    def drop_cleanup(self, label: str) -> None:
        self._cleanups = [(lbl, a) for lbl, a in self._cleanups if lbl != label]

    def run_cleanups(self) -> None:
        """Undo in reverse order; a failing cleanup is logged and the others still run."""
        while self._cleanups:
            label, action = self._cleanups.pop()
            try:
                log.info("cleanup: %s", label)
                action()
            except Exception as exc:  # a cleanup must never hide the original failure
                log.error("cleanup %s failed: %s", label, exc)
                self.echo(f"      cleanup {label} failed: {exc}")

    # -- persistence ---------------------------------------------------------------------------

    def facts_dict(self) -> dict[str, Any]:
        return asdict(self.facts)

    def load_facts(self, data: dict[str, Any]) -> None:
        known = {f.name for f in fields(Facts)}
        self.facts = Facts(**{k: v for k, v in data.items() if k in known})
        self._manifest = None


def write_json(path: Path, data: Any) -> None:
    """A JSON file only root can read (reports name hosts and disks)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2, sort_keys=True)
        out.write("\n")
