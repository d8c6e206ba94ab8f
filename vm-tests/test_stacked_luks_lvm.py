"""The Debian installer's "encrypted LVM" (BIOS, MBR): /boot (ext2) on p1, a LUKS2 container on
p5 (vdb5_crypt in crypttab, by UUID) holding the PV of root and swap_1. Backed up, wiped and
recovered inside a QEMU guest (vm-tests/stacked_scenario.py) with the passphrase from a file the
plan names: the container comes back with its UUID, so crypttab still matches; the initramfs is
rebuilt with cryptsetup; the recovered machine asks for the passphrase at boot (typed on the
serial console here) and comes up. With `luks_new_uuid = true` the container gets a new UUID,
which crypttab then names (the only change to the system), and it boots the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stacked import LUKS_PASSPHRASE
from stacked_scenario import assert_boots, assert_same_system, run_cycle

pytestmark = pytest.mark.slow


def test_luks_under_lvm_recovered_asks_its_passphrase_at_boot(tmp_path: Path) -> None:
    secret = tmp_path / "luks-passphrase"
    secret.write_text(LUKS_PASSPHRASE + "\n")
    secret.chmod(0o600)
    cycle = run_cycle("luks-lvm", tmp_path, (1536,), plan={"luks_passphrase_file": str(secret)})
    assert_same_system(cycle, "luks-lvm")
    target = json.loads((tmp_path / "target-facts.json").read_text())
    assert "crypt" in target["lsblk"], target["lsblk"]
    boot = next(s for s in cycle.report["steps"] if s["id"] == "bootloader")  # type: ignore[union-attr]
    rebuilt = [line for line in boot["done"] if line.startswith("initramfs rebuilt")]
    assert rebuilt and "LUKS" in rebuilt[0], boot["done"]
    text = json.dumps(cycle.report) + (tmp_path / "recover/rescue.log").read_text()
    assert LUKS_PASSPHRASE not in text
    assert_boots(cycle, cycle.targets, "recovered.console.log", passphrase=LUKS_PASSPHRASE)
    print("\n".join(["stacked_luks_lvm:", *cycle.lines()]))


def test_luks_with_a_new_uuid_crypttab_follows_and_it_boots(tmp_path: Path) -> None:
    secret = tmp_path / "luks-passphrase"
    secret.write_text(LUKS_PASSPHRASE)
    secret.chmod(0o600)
    plan = {"luks_passphrase_file": str(secret), "luks_new_uuid": True}
    cycle = run_cycle("luks-lvm", tmp_path, (1536,), plan=plan)
    found = assert_same_system(cycle, "luks-lvm", rewritten=("etc/crypttab",))
    assert "etc/crypttab: content" in "\n".join(found), found
    source = json.loads((tmp_path / "source-facts.json").read_text())
    target = json.loads((tmp_path / "target-facts.json").read_text())
    (old,), (new,) = source["luks_uuids"], target["luks_uuids"]
    assert old != new
    assert f"UUID={new}" in target["crypttab"] and old not in target["crypttab"], target
    assert_boots(cycle, cycle.targets, "recovered.console.log", passphrase=LUKS_PASSPHRASE)
    print("\n".join(["stacked_luks_lvm (new UUID):", *cycle.lines()]))
