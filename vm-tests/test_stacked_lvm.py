"""The Debian installer's "use entire disk and set up LVM" (BIOS, MBR): /boot (ext2) on p1,
an extended p2, the PV on p5, root and swap_1 as LVs. Backed up, wiped and recovered inside a
QEMU guest onto a larger disk (vm-tests/stacked_scenario.py) with `grow_lv = "last"`: the
partitions grow, root (the last LV that is not swap) takes the new room and its file system
fills it, swap keeps its size. Compared path by path with the source, then booted to its marker.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stacked_scenario import assert_boots, assert_same_system, run_cycle

pytestmark = pytest.mark.slow

ROOT_LV, SWAP_LV = "rescue-src-vg/root", "rescue-src-vg/swap_1"
GROWN = 512 << 20  # the target is 2048 MiB, the source 1536 MiB


def test_lvm_root_recovered_onto_a_larger_disk_grows_root_and_boots(tmp_path: Path) -> None:
    cycle = run_cycle("lvm", tmp_path, (2048,), plan={"grow_lv": "last"})
    assert_same_system(cycle, "lvm")
    source = json.loads((tmp_path / "source-facts.json").read_text())
    target = json.loads((tmp_path / "target-facts.json").read_text())
    assert target["lvs"][SWAP_LV] == source["lvs"][SWAP_LV]
    gained = target["lvs"][ROOT_LV] - source["lvs"][ROOT_LV]
    assert GROWN - (8 << 20) <= gained <= GROWN, (source["lvs"], target["lvs"])
    assert target["vg_free"]["rescue-src-vg"] == 0
    # ext4 is made after lvextend, so it fills the grown LV (less its own metadata).
    assert target["fs_bytes"]["/"] > source["fs_bytes"]["/"] + GROWN * 0.9, target["fs_bytes"]
    assert target["fs_bytes"]["/boot"] == source["fs_bytes"]["/boot"]
    assert_boots(cycle, cycle.targets, "recovered.console.log")
    print("\n".join(["stacked_lvm:", *cycle.lines()]))
