"""btrfs with subvolumes, Ubuntu's and openSUSE's shape: @ as / (the default subvolume), @home
as /home and @snapshots as /.snapshots, which holds a read-only snapshot of @ and is excluded
from the backup. Backed up, wiped and recovered inside a QEMU guest (vm-tests/
stacked_scenario.py): the subvolumes are recreated, each restored into its place (fstab mounts
them), the snapshot is not made again, and the system boots.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stacked import HOME_MARKER
from stacked_scenario import assert_boots, assert_same_system, run_cycle

pytestmark = pytest.mark.slow


def test_btrfs_subvolumes_recreated_restored_in_place_and_booted(tmp_path: Path) -> None:
    cycle = run_cycle("btrfs", tmp_path, (1536,))
    assert_same_system(cycle, "btrfs")
    source = json.loads((tmp_path / "source-facts.json").read_text())
    target = json.loads((tmp_path / "target-facts.json").read_text())
    assert "<FS_TREE>/@snapshots/1" in source["subvolumes"], source
    assert target["subvolumes"] == ["<FS_TREE>/@", "<FS_TREE>/@home", "<FS_TREE>/@snapshots"]
    assert target["default_subvolume"].endswith(" path @"), target["default_subvolume"]
    listed = json.loads((tmp_path / "target-list.json").read_text())
    assert HOME_MARKER in listed  # restored into @home, mounted at /home
    assert_boots(cycle, cycle.targets, "recovered.console.log")
    print("\n".join(["stacked_btrfs:", *cycle.lines()]))
