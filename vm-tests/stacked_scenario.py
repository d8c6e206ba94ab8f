"""The host side of the stacked-layout scenarios (LVM, LUKS under LVM, MD RAID1, btrfs
subvolumes): one guest boot backs the source up, wipes it and recovers it onto blank disks
(tests/guest/stacked_cycle.py); the host then compares the two listings path by path and boots
the recovered disks to their marker. Each phase's seconds and each recovery step's are kept in
`Cycle.figures` for the closing report and the benchmark.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from bootdisk import HOSTNAME, MARKER_SUM
from clirun import toml_text
from machine import Disk
from scenario import SOURCE_EXCLUDES, scenario_settings
from stacked import LAYOUTS, LUKS_PASSPHRASE, SOURCE_SERIALS, boot_to_marker, source_disks
from treelist import difference_path, differences
from vm import run_guest

TARGET_SERIALS = ("RESCUE-TGT-1", "RESCUE-TGT-2")
CYCLE_TIMEOUT = 3600
# What the recovery itself writes (the bootloader step, its log and report) and what each
# backup rewrites: nothing else may differ between the source and the recovered system.
REGENERATED = ("boot/grub/", "boot/initrd.img-", "var/lib/initramfs-tools/", "var/log/rescue/")


@dataclass
class Cycle:
    """One scenario's run: its folder, the recovered disks, the report and the figures."""

    folder: Path
    targets: list[Path]
    report: dict[str, object] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)
    layout_script: str = ""

    def lines(self) -> list[str]:
        """The figures as bench/vm_scenarios.py prints them (indented, below the name)."""
        out = [f"  {name}: {value:.1f} s" for name, value in self.figures.items()]
        return out + [f"    step {name}: {value:.1f} s" for name, value in self.steps.items()]


def run_cycle(
    name: str,
    folder: Path,
    target_mib: tuple[int, ...],
    *,
    plan: dict[str, object] | None = None,
    recover_env: dict[str, str] | None = None,
) -> Cycle:
    """Back up, wipe and recover the layout `name` in one guest boot (targets of target_mib
    each); fails with the phase that failed and the tail of its output."""
    layout = LAYOUTS[name]
    started = time.monotonic()
    sources = source_disks(name)
    cycle = Cycle(folder, [])
    cycle.figures["source image (cached after the first run)"] = time.monotonic() - started
    dest = {"method": "file", "path": str(folder / "dest")}
    excludes = (*SOURCE_EXCLUDES, *layout.excludes)
    settings = {}
    for role in ("backup", "recover"):
        (folder / role).mkdir()
        # Each side its own duplicity cache: the recovery must not find the backup's.
        settings[role] = scenario_settings(
            folder / role / "rescue.toml",
            dest,
            Path("/mnt/src"),
            Path(f"/var/tmp/cache-{role}"),
            extra_excludes=layout.excludes,
        )
    tables: dict[str, dict[str, object]] = {
        "disks": {"targets": [f"serial:{s}" for s in TARGET_SERIALS[: len(target_mib)]]},
        "answers": {'"recover.erase"': "yes"},
    }
    top = {"settings": str(settings["recover"]), "target_root": "/mnt/target", "after": "none"}
    (folder / "recover/plan.toml").write_text(toml_text(tables, {**top, **(plan or {})}))
    for number, mib in enumerate(target_mib, 1):
        image = folder / f"target{number}.img"
        with image.open("wb") as f:
            f.truncate(mib << 20)
        cycle.targets.append(image)
    task = {
        "source_serials": list(SOURCE_SERIALS[: len(sources)]),
        "root_spec": layout.root_spec,
        "root_options": layout.root_options,
        "luks_name": layout.luks_name,
        "passphrase": LUKS_PASSPHRASE,
        "skip_below": list(excludes),
        "backup_config": str(settings["backup"]),
        "recover_config": str(settings["recover"]),
        "plan": str(folder / "recover/plan.toml"),
        "recover_env": recover_env or {},
    }
    (folder / "cycle.json").write_text(json.dumps(task))
    disks = [
        *(Disk(p, serial=s, snapshot=True) for p, s in zip(sources, SOURCE_SERIALS, strict=False)),
        *(Disk(p, serial=s) for p, s in zip(cycle.targets, TARGET_SERIALS, strict=False)),
    ]
    log = folder / "cycle.console.log"
    run = run_guest("stacked_cycle", disks, log, CYCLE_TIMEOUT, work=folder, memory_mib=1536)
    results = run.results()
    for phase, outcome in results.items():
        if outcome.startswith("PASS "):
            cycle.figures[f"guest: {phase}"] = float(outcome.split()[1])
    failed = {p: o for p, o in results.items() if not o.startswith("PASS")}
    stderr = folder / "recover/recover.stderr"
    tail = stderr.read_text()[-3000:] if stderr.exists() else ""
    assert not failed and "close-target" in results, (
        f"{results}\n{tail}\nconsole {log}:\n" + "\n".join(run.console.splitlines()[-40:])
    )
    cycle.report = json.loads((folder / "recover/recover.stdout").read_text())
    cycle.steps = {s["id"]: s["seconds"] or 0.0 for s in cycle.report["steps"]}  # type: ignore[index, union-attr]
    assert cycle.report["outcome"] == "success", cycle.report
    return cycle


def _allowed(line: str, excludes: tuple[str, ...], rewritten: tuple[str, ...]) -> bool:
    path = difference_path(line)
    skipped = tuple(f"{e}/" for e in excludes)
    if path.startswith(skipped) or path.startswith(rewritten):
        return True
    return (path + "/").startswith(REGENERATED) or path.startswith(REGENERATED)


def assert_same_system(cycle: Cycle, name: str, rewritten: tuple[str, ...] = ()) -> list[str]:
    """The recovered system holds every path of the source with the same type, mode, owner,
    size, mtime, links and bytes; the differences allowed (REGENERATED, and the paths starting
    with one of rewritten: what the recovery was asked to change) are returned."""
    source = json.loads((cycle.folder / "source-list.json").read_text())
    target = json.loads((cycle.folder / "target-list.json").read_text())
    excludes = (*SOURCE_EXCLUDES, *LAYOUTS[name].excludes)
    found = differences(source, target)
    unexplained = [d for d in found if not _allowed(d, excludes, rewritten)]
    assert unexplained == [], "\n".join(unexplained[:60])
    assert len(source) > 5000, f"the source listing has only {len(source)} paths"
    return found


def assert_boots(
    cycle: Cycle, disks: list[Path], log_name: str, passphrase: str | None = None
) -> float:
    """The disks boot to the marker of the source system; the seconds it took."""
    line, seconds = boot_to_marker(disks, cycle.folder / log_name, passphrase=passphrase)
    assert f"host={HOSTNAME}" in line.split(), line
    assert f"sum={MARKER_SUM}" in line.split(), line
    cycle.figures[f"boot to marker ({log_name.removesuffix('.console.log')})"] = seconds
    return seconds
