"""An MD RAID1 root across two disks (BIOS, MBR, metadata 1.2, GRUB on both), as the Debian
installer makes it: backed up, wiped and recovered onto two blank disks inside a QEMU guest
(vm-tests/stacked_scenario.py), compared path by path, then booted from each disk alone (the
other removed), because a mirror whose second disk cannot boot protects nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stacked_scenario import assert_boots, assert_same_system, run_cycle

pytestmark = pytest.mark.slow


def test_raid1_root_recovered_boots_from_either_disk_alone(tmp_path: Path) -> None:
    cycle = run_cycle("raid1", tmp_path, (1280, 1280))
    assert_same_system(cycle, "raid1")
    facts = json.loads((tmp_path / "target-facts.json").read_text())
    assert "level=raid1" in facts["md"] and "num-devices=2" in facts["md"], facts["md"]
    boot = next(s for s in cycle.report["steps"] if s["id"] == "bootloader")  # type: ignore[union-attr]
    installs = [line for line in boot["done"] if line.startswith("grub-install")]
    assert len(installs) == 2, boot["done"]
    for number, disk in enumerate(cycle.targets, 1):
        assert_boots(cycle, [disk], f"disk{number}-alone.console.log")
    print("\n".join(["stacked_raid1:", *cycle.lines()]))
