"""LVM on GPT and MD RAID1: capture, recreate on blank disks of the same size and larger, and
capture again, inside a QEMU guest, because this host's kernel has no device-mapper and no md.

The guest side is tests/guest/layout_stacked.py; testsupport/vm.py builds (and caches) the guest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from vm import run_guest

pytestmark = pytest.mark.slow

DISKS = [("vdb", "256M"), ("vdc", "256M"), ("vdd", "384M")]
DISKS += [("vde", "128M"), ("vdf", "128M"), ("vdg", "128M"), ("vdh", "128M")]
DISKS += [("vdi", "192M"), ("vdj", "192M")]


def test_lvm_and_raid_round_trips_in_a_guest(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("qemu-system-x86_64") is None:
        pytest.skip("needs root and qemu-system-x86 (scripts/setup --with-test-tools)")
    images = []
    for name, size in DISKS:
        image = tmp_path / f"{name}.img"
        subprocess.run(["truncate", "-s", size, str(image)], check=True)
        images.append(image)
    log = tmp_path / "console.log"
    run = run_guest("layout_stacked", images, log)
    results = run.results()
    assert results == {
        "lvm-source": "PASS",
        "lvm-same-size": "PASS",
        "lvm-larger": "PASS",
        "lvm-larger-grow-root": "PASS",
        "raid1-source": "PASS",
        "raid1-same-size": "PASS",
        "raid1-larger": "PASS",
    }, f"{results}; console log: {log}\n" + "\n".join(run.console.splitlines()[-60:])
    assert run.exit_code == 0
