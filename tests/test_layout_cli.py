"""`rescue layout plan | apply` end to end: a root on its own disk is backed up, and its layout
comes back from the backup's manifest onto blank loop disks, only after an explicit yes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import rescue, write_settings
from loopdisks import loop_disk, partition, sh
from manifests import with_layout
from test_layout_recreate import debian_lvm_layout

from rescue.layout.capture import capture

ROOT_UUID = "0d7c1f3e-1111-4222-8333-444455556666"
SWAP_UUID = "0d7c1f3e-7777-4888-9999-aaaabbbbcccc"
SCRIPT = (
    "label: gpt\n"
    "size=1MiB, type=21686148-6449-6E6F-744E-656564454649, name=bios\n"
    "size=80MiB, type=linux, name=root\n"
    "size=16MiB, type=swap, name=swap\n"
)

pytestmark = pytest.mark.slow


@pytest.fixture
def backed_up_host(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A host root on a GPT loop disk, backed up; yields the settings file and the disk."""
    if os.geteuid() != 0:
        pytest.skip("loop disks need root")
    with loop_disk(tmp_path / "source.img", "128M") as device:
        parts = partition(device, SCRIPT)
        sh("mkfs.ext4", "-q", "-F", "-U", ROOT_UUID, "-L", "hostroot", parts[1])
        sh("mkswap", "-U", SWAP_UUID, "-L", "hostswap", parts[2])
        root = tmp_path / "root"
        root.mkdir()
        sh("mount", parts[1], str(root))
        try:
            (root / "etc").mkdir()
            (root / "etc/hostname").write_text("lost-server\n")
            config = write_settings(
                tmp_path / "rescue.toml",
                {
                    "destination": {"method": "file", "path": str(tmp_path / "dest")},
                    "selection": {"root": str(root), "include": [str(root)]},
                    "duplicity": {"archive_dir": str(tmp_path / "cache")},
                },
            )
            r = rescue(config, "backup")
            assert r.code == 0, r.err
        finally:
            sh("umount", str(root))
        yield config, device


def filesystems(device: str) -> dict[str | None, tuple[str, str | None, str | None]]:
    layout = capture([device])
    return {
        p.name: (p.filesystem.type, p.filesystem.uuid, p.filesystem.label)
        for p in layout.disks[0].partitions
        if p.filesystem is not None
    }


def test_plan_apply_from_the_backup(tmp_path: Path, backed_up_host: tuple[Path, str]) -> None:
    config, source = backed_up_host
    with loop_disk(tmp_path / "target.img", "192M") as target:
        plan = rescue(config, "layout", "plan", "--from-backup", "--target", target)
        assert plan.code == 0, plan.err
        assert f"{source} " in plan.out and target in plan.out
        assert ROOT_UUID in plan.out and "sfdisk" in plan.out

        refused = rescue(config, "layout", "apply", "--from-backup", "--target", target)
        assert refused.code == 2 and "--yes" in refused.err
        assert capture([target]).disks[0].partitions == []  # untouched

        done = rescue(
            config, "layout", "apply", "--from-backup", "--target", target, "--yes",
            "--log-dir", str(tmp_path / "logs"),
        )  # fmt: skip
        assert done.code == 0, done.err
        assert filesystems(target) == {
            "root": ("ext4", ROOT_UUID, "hostroot"),
            "swap": ("swap", SWAP_UUID, "hostswap"),
        }
        (last,) = [p for p in capture([target]).disks[0].partitions if p.name == "swap"]
        assert last.size_sectors > 16 * 2048, "the last partition grows into the larger disk"


def test_a_too_small_target_is_refused(tmp_path: Path, backed_up_host: tuple[Path, str]) -> None:
    config, _ = backed_up_host
    with loop_disk(tmp_path / "small.img", "64M") as small:
        r = rescue(config, "layout", "apply", "--from-backup", "--target", small, "--yes")
        assert r.code == 61, r.err
        assert small in r.err and "smaller" in r.err
        assert capture([small]).disks[0].partitions == []


def test_grow_lv_is_checked_and_shown_in_the_plan(tmp_path: Path) -> None:
    """--grow-lv: a malformed value, or an LV the recorded layout does not have, is one line
    and exit 2 before anything is read or written; a good one puts its lvextend in the plan."""
    if os.geteuid() != 0:
        pytest.skip("loop disks need root")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(with_layout(debian_lvm_layout())))
    log = ["--log-file", str(tmp_path / "rescue.log")]
    bad = rescue(None, *log, "layout", "plan", "--manifest", str(manifest), "--grow-lv", "root")
    assert bad.code == 2 and bad.err.splitlines()[0].startswith(
        'rescue: error: --grow-lv: must be "none", "last" or VG/LV'
    ), bad.err
    with loop_disk(tmp_path / "target.img", "384M") as target:
        plan = ["layout", "plan", "--manifest", str(manifest), "--target", target, "--grow-lv"]
        missing = rescue(None, *log, *plan, "vg0/home")
        assert missing.code == 2, missing.err
        assert missing.err.splitlines()[0] == (
            "rescue: error: grow_lv: the layout has no LV vg0/home (its LVs: vg0/root, vg0/swap_1)"
        )
        last = rescue(None, *log, *plan, "last")
        assert last.code == 0, last.err
        assert "    lvextend -l +100%FREE vg0/root\n" in last.out
        assert capture([target]).disks[0].partitions == []  # a plan writes nothing
