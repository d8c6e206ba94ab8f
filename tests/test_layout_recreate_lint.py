"""The recreate script as text: shellcheck finds nothing in helpers.sh or in generated scripts,
every script carries helpers.sh byte for byte, and the script for the stacked layout is exactly
the reviewed one in tests/golden/ (the split of recreate.py into a package left it unchanged),
which holds all of it but the helpers.sh text.

No disk is touched: the targets are described, not probed.
"""

from __future__ import annotations

import subprocess
from importlib.resources import files
from pathlib import Path

import pytest
from loopdisks import need
from test_layout_recreate import LARGER, MAPPING, TARGETS, debian_lvm_layout, stacked_layout

from rescue.layout.model import Disk, Filesystem, Layout, Partition
from rescue.layout.recreate import build_script

HELPERS = Path(str(files("rescue.layout.recreate") / "helpers.sh"))
GOLDEN = Path(__file__).parent / "golden" / "layout-recreate-stacked.sh"
# The line after which every script carries helpers.sh.
HELPERS_RULE = "# --- helpers: read these once, the steps below only call them ---\n"

SHELLCHECK = [
    "shellcheck",
    # The script runs as `sh -x`: dash on Debian and on the rescue ISO, which knows `local`.
    "--shell=dash",
    "--severity=warning",
    # Intended in generated scripts: every step loops over the target disks, even when there is
    # one ("the loop will only run once", SC2066); every partition gets a variable (D1P1, ...)
    # for an admin who edits the script, even when no later step uses it (SC2034).
    "--exclude=SC2066,SC2034",
    "--format=gcc",
]


def shellcheck(path: Path) -> subprocess.CompletedProcess[str]:
    need("shellcheck", package="shellcheck")
    return subprocess.run([*SHELLCHECK, str(path)], capture_output=True, text=True)


def mbr_layout() -> Layout:
    """One MBR disk: a bootable ext4 root, a logical swap and a whole-table growth."""
    return Layout(
        disks=[
            Disk(
                "vda", "/dev/vda", 1024**3, table="dos", table_id="0x12345678",
                partitions=[
                    Partition(1, "/dev/vda1", 2048, 4096, "83", bootable=True,
                              filesystem=Filesystem("ext4", "/dev/vda1", uuid="u-1", label="/")),
                    Partition(2, "/dev/vda2", 8192, 8192, "5"),
                    Partition(5, "/dev/vda5", 10240, 4096, "82",
                              filesystem=Filesystem("swap", "/dev/vda5", uuid="s-1")),
                ],
            )
        ]
    )  # fmt: skip


def test_helpers_sh_passes_shellcheck() -> None:
    result = shellcheck(HELPERS)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize(
    ("layout", "mapping", "grow_lv", "targets"),
    [
        # GPT on two disks, MD, LVM with LVs, LUKS in an LV
        (stacked_layout(), MAPPING, "none", TARGETS),
        (mbr_layout(), {"/dev/vda": "/dev/sdb"}, "none", TARGETS),
        # LVM on a larger disk: the new room left free, and given to the root LV
        (debian_lvm_layout(), {"/dev/vda": "/dev/sdb"}, "none", LARGER),
        (debian_lvm_layout(), {"/dev/vda": "/dev/sdb"}, "last", LARGER),
    ],
    ids=["gpt-md-lvm-luks", "mbr-logical", "lvm-larger-room-free", "lvm-larger-grow-root"],
)
def test_a_generated_script_passes_shellcheck(
    layout: Layout, mapping: dict[str, str], grow_lv: str, targets: list[Disk], tmp_path: Path
) -> None:
    script = tmp_path / "layout-recreate.sh"
    script.write_text(build_script(layout, mapping, grow_lv=grow_lv, targets=targets))
    result = shellcheck(script)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    # The same flags do report a finding: a variable that is never set (SC2154).
    script.write_text(script.read_text() + 'echo "$rescue_never_set"\n')
    result = shellcheck(script)
    assert result.returncode == 1 and "[SC2154]" in result.stdout, result.stdout


def test_every_script_carries_helpers_sh_byte_for_byte() -> None:
    lines = build_script(mbr_layout(), {"/dev/vda": "/dev/sdb"}, targets=TARGETS).splitlines()
    start = lines.index(HELPERS_RULE.rstrip("\n"))
    end = lines.index("# Step 1: check the targets; nothing is changed before this step passes")
    # Two lines before step 1: the empty line and the section's rule.
    assert "\n".join(lines[start + 1 : end - 2]) + "\n" == HELPERS.read_text()


def test_the_stacked_layout_gives_the_reviewed_script() -> None:
    """A change to the generated text must be deliberate: if it is, review the difference and
    write the new script, without the helpers.sh text after its helpers rule, over
    tests/golden/layout-recreate-stacked.sh (helpers.sh is pinned by itself, not copied)."""
    script = build_script(stacked_layout(), MAPPING, targets=TARGETS)
    helpers = HELPERS.read_text()
    start = script.index(HELPERS_RULE) + len(HELPERS_RULE)
    assert script[start : start + len(helpers)] == helpers
    assert script[:start] + script[start + len(helpers) :] == GOLDEN.read_text()
