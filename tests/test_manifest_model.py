"""The manifest is a typed, versioned contract: what rescue wrote before the model loads and
writes back byte for byte, an older manifest loads with defaults, and a newer one stops the
recovery with one line and the manifest error's exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from clirun import rescue, write_settings
from loopdisks import loop_disk
from manifests import GOLDEN, current_shape, first_shape

from rescue.errors import ManifestError
from rescue.layout.model import layout_to_dict
from rescue.recovery import manifest
from rescue.recovery.manifest_model import ExcludedAbsent, ExcludedEntry

DUPLICITY = str(Path(sys.executable).parent / "duplicity")


def test_a_manifest_written_before_the_model_loads_and_writes_back_byte_for_byte() -> None:
    loaded = manifest.load(GOLDEN)
    assert loaded.to_json() == GOLDEN.read_text()
    assert loaded.format_version == manifest.FORMAT_VERSION == 1
    assert loaded.layout is not None
    assert layout_to_dict(loaded.layout) == current_shape()["layout"]
    kinds = {fs.device: fs.type for fs in loaded.layout.all_filesystems()}
    assert kinds == {
        "/dev/vda2": "vfat",
        "/dev/vda3": "linux_raid_member",
        "/dev/vda4": "btrfs",
        "/dev/md0": "LVM2_member",
        "/dev/mapper/vg0-root": "ext4",
        "/dev/mapper/vg0-crypt": "crypto_LUKS",
        "/dev/mapper/vg0-swap": "swap",
        "/dev/mapper/secret": "xfs",
    }
    assert [luks.mapping_path for luks in loaded.layout.luks] == ["/dev/mapper/secret"]
    assert (loaded.bootloader.kind, loaded.bootloader.disk) == ("grub-efi", "/dev/vda")
    assert loaded.host.boot_mode == "uefi" and loaded.users["alice"] == 1001
    assert [(e.path, e.mode) for e in loaded.excluded_dirs()] == [
        ("/tmp", "1777"),
        ("/proc", "0555"),
        ("/mnt", "0750"),
    ]
    assert isinstance(loaded.excluded[-1], ExcludedAbsent)
    assert loaded.excluded_paths() == ["tmp", "proc", "mnt", "dev"]
    assert loaded.metadata is not None and loaded.metadata.records == 16
    assert manifest.excluded_mount_paths(loaded)[0] == loaded.root + "/tmp"


def test_a_first_version_manifest_loads_with_the_later_fields_defaulted(tmp_path: Path) -> None:
    old = tmp_path / "manifest.json"
    old.write_text(json.dumps(first_shape()))
    loaded = manifest.load(old)
    assert loaded.metadata is None
    assert (loaded.host.kernel, loaded.host.kernels) == ("5.10.0-9", [])
    tmp = loaded.excluded[0]
    assert isinstance(tmp, ExcludedEntry) and (tmp.mtime_ns, tmp.atime_ns) == (None, None)
    # what it had is read as it was
    assert loaded.model_dump(exclude={"metadata", "host", "excluded"}) == manifest.load(
        GOLDEN
    ).model_dump(exclude={"metadata", "host", "excluded"})


def _newer_version(data: dict[str, Any]) -> None:
    data["format_version"] = 2


def _newer_top_key(data: dict[str, Any]) -> None:
    data["secure_boot"] = {"shim": True}


def _newer_nested_key(data: dict[str, Any]) -> None:
    data["layout"]["disks"][0]["partitions"][3]["filesystem"]["quota_groups"] = ["0/5"]


NEWER = {
    "format_version 2": (_newer_version, "written by a newer rescue (manifest format 2)"),
    "a new top-level key": (
        _newer_top_key,
        "unknown key(s) manifest.secure_boot, from a newer rescue? (manifest format 1)",
    ),
    "a new key in the layout": (
        _newer_nested_key,
        "unknown key(s) manifest.layout.disks[0].partitions[3].filesystem.quota_groups",
    ),
}


@pytest.mark.parametrize("change", NEWER, ids=list(NEWER))
def test_a_newer_manifest_is_refused_in_one_line(tmp_path: Path, change: str) -> None:
    alter, expected = NEWER[change]
    data = current_shape()
    alter(data)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError) as err:
        manifest.load(path)
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"{path}: ")
    assert expected in text
    assert "this rescue (0.1.0) reads manifest format 1" in text
    assert err.value.exit_code == 6


def test_a_damaged_manifest_names_the_place(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    data = current_shape()
    data["users"]["alice"] = "1001"
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"manifest.users.alice must be an integer, not '1001'"):
        manifest.load(path)
    data = current_shape()
    del data["host"]["hostname"]
    path.write_text(json.dumps(data))
    with pytest.raises(
        ManifestError, match=r"is not a valid manifest: manifest.host has no hostname"
    ):
        manifest.load(path)
    data = current_shape()
    data["layout"]["disks"][0]["size_bytes"] = True
    path.write_text(json.dumps(data))
    with pytest.raises(
        ManifestError, match=r"manifest.layout.disks\[0\].size_bytes must be an int"
    ):
        manifest.load(path)


def _backup_holding(tmp_path: Path, text: str) -> Path:
    """A backup, made with the real duplicity, of a root whose manifest is text: what a newer
    rescue's backup holds (this rescue would write its own manifest, so duplicity stands in for
    the newer rescue's backup run; the restore and the recovery are this rescue's own)."""
    source = tmp_path / "source"
    (source / "var/lib/rescue").mkdir(parents=True)
    (source / manifest.MANIFEST_REL).write_text(text)
    (source / "etc").mkdir()
    (source / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (source / "etc/group").write_text("root:x:0:\n")
    subprocess.run(
        [DUPLICITY, "full", "--no-encryption", "--archive-dir", str(tmp_path / "made"),
         str(source), f"file://{tmp_path / 'dest'}"],
        check=True, capture_output=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return write_settings(
        tmp_path / "rescue.toml",
        {
            "destination": {"method": "file", "path": str(tmp_path / "dest")},
            "encryption": {"mode": "none"},
            "selection": {"root": str(source)},
            "duplicity": {"archive_dir": str(tmp_path / "cache")},
        },
    )


def test_a_newer_manifest_stops_the_recovery_with_the_manifest_exit_code(tmp_path: Path) -> None:
    data = current_shape()
    data["format_version"] = 2
    config = _backup_holding(tmp_path, json.dumps(data, indent=2))

    shown = rescue(config, "manifest", "show", "--from-backup")
    assert shown.code == ManifestError.exit_code == 6, shown.err
    line, *rest = shown.err.strip().splitlines()
    assert line == (
        f"rescue: error: {manifest.MANIFEST_REL} in the backup: written by a newer rescue "
        "(manifest format 2); this rescue (0.1.0) reads manifest format 1: recover with the "
        "rescue that wrote it or a newer one"
    )
    assert [r.strip()[:5] for r in rest] == ["(log:"]  # where the log is, as every error says
    assert shown.out == ""

    (tmp_path / "plan.toml").write_text(
        f'settings = "rescue.toml"\n[disks]\ntargets = ["file:{tmp_path / "target.img"}"]\n'
    )
    work = tmp_path / "work"
    with loop_disk(tmp_path / "target.img", "64M"):
        run = rescue(
            None, "recover", "--plan", str(tmp_path / "plan.toml"), "--work-dir", str(work),
            "--target-root", str(tmp_path / "target"),
        )  # fmt: skip
    assert run.code == 6, run.out + run.err
    errors = [line for line in run.err.splitlines() if "manifest format" in line]
    assert len(errors) == 1, run.err
    assert f"{work / 'manifest.json'}: written by a newer rescue (manifest format 2)" in errors[0]
    steps = {s["id"]: s for s in json.loads((work / "state.json").read_text())["steps"]}
    assert steps["load_manifest"]["outcome"] == "failed"
    assert steps["load_manifest"]["error"] == errors[0].removeprefix("rescue: error: ")
    assert steps.get("map_disks", {}).get("outcome") != "done"  # stopped before any disk
