"""Layout recreation: the generated script, applied to real loop disks and captured back.

Every loop-disk test builds a source disk, captures it, builds the script for a blank target,
applies it, captures the target and compares the two. They need root and losetup, make sparse
images (64-400 MiB; mkfs.xfs refuses a file system under 300 MiB) and detach every loop device
they attach. What this host's kernel cannot do (no md, no device-mapper: no LV can be activated
and no LUKS container opened) is tested on the generated text only; a VG without LVs and a
closed LUKS container need neither, so those are recreated for real.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import stat
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from loopdisks import (
    BIOS_BOOT,
    ESP,
    LAYOUT_TOOLS,
    LINUX,
    LINUX_LVM,
    SWAP,
    loop_devices_of,
    loop_disk,
    need,
    partition,
    sh,
)

from rescue.errors import DiskMappingError, LayoutApplyError, UsageError
from rescue.layout import LayoutError
from rescue.layout.capture import capture
from rescue.layout.model import (
    Disk,
    Filesystem,
    Layout,
    LogicalVolume,
    LuksContainer,
    LvmLayout,
    Partition,
    PhysicalVolume,
    RaidArray,
    VolumeGroup,
)
from rescue.layout.recreate import SCRIPT_NAME, apply_script, build_script

# The tools the loop-disk tests run, and the Debian package of each.
TOOLS = {
    **LAYOUT_TOOLS,
    "wipefs": "util-linux",
    "mkfs.vfat": "dosfstools",
    "mkfs.xfs": "xfsprogs",
}
GRAIN = 2048  # sfdisk aligns a partition that takes the rest of the disk to 1 MiB

LINUX_LUKS = "CA7D7CCB-63ED-4C53-861C-1742536059CC"


def sfdisk_lines(label: str, table_id: str, parts: Iterable[str], first_lba: int = 0) -> str:
    head = [f"label: {label}", f"label-id: {table_id}", "unit: sectors"]
    head += [f"first-lba: {first_lba}"] if first_lba else []
    return "\n".join([*head, "", *parts]) + "\n"


# --- the source disks -------------------------------------------------------------------------

GPT_ID = "7A1F6F3C-8C43-4E4B-9E0E-2C1E5A7B9D01"
# The root partition's name and the file systems' labels hold what a shell or sfdisk would trip on.
ROOT_NAME = 'root "fs", $HOME `x` \\x41 é'
GPT_TABLE = sfdisk_lines(
    "gpt",
    GPT_ID,
    [
        f"start=2048, size=2048, type={BIOS_BOOT}, uuid=2A2B3C4D-0001-4000-8000-000000000001,"
        ' name="BIOS boot"',
        f"start=4096, size=131072, type={ESP}, uuid=2A2B3C4D-0002-4000-8000-000000000002,"
        ' name="EFI System Partition", attrs="RequiredPartition LegacyBIOSBootable"',
        f"start=135168, size=204800, type={LINUX}, uuid=2A2B3C4D-0003-4000-8000-000000000003,"
        ' name="root \\x22fs\\x22, $HOME `x` \\x5cx41 é", attrs="GUID:63"',
        f"start=339968, size=65536, type={SWAP}, uuid=2A2B3C4D-0004-4000-8000-000000000004,"
        ' name="swap"',
    ],
    first_lba=2048,
)
ROOT_UUID = "4d6b1c52-7f41-4c8e-9a1b-5e2f0c7d9a01"
ROOT_LABEL = "it's $(root)"
SWAP_UUID = "4d6b1c52-7f41-4c8e-9a1b-5e2f0c7d9a02"
SWAP_LABEL = "sw ap;`x`"
ESP_VOLUME_ID = "DEADBEEF"

MBR_ID = "0x6b3e1c2b"
# A bootable ext4 root, an xfs /home, and an extended partition holding a logical swap; the last
# 4 MiB of the 384 MiB disk are free.
MBR_TABLE = sfdisk_lines(
    "dos",
    MBR_ID,
    [
        "start=2048, size=131072, type=83, bootable",
        "start=133120, size=614400, type=83",
        "start=747520, size=34816, type=5",
        "start=749568, size=32768, type=82",
    ],
)
MBR_ROOT_UUID = "9c0e4f2a-1b3d-4e5f-8a9b-0c1d2e3f4a01"
MBR_HOME_UUID = "9c0e4f2a-1b3d-4e5f-8a9b-0c1d2e3f4a02"
MBR_SWAP_UUID = "9c0e4f2a-1b3d-4e5f-8a9b-0c1d2e3f4a05"


@dataclass
class Source:
    """A captured source disk (its loop device is gone again) and the size to give its image."""

    disk: Disk
    layout: Layout
    size: str


def captured_source(
    directory: Path, size: str, table: str, make_filesystems: Callable[[list[str]], None]
) -> Source:
    """A loop disk of size, partitioned from the sfdisk table, its file systems made by
    make_filesystems(partitions), captured and detached again."""
    with loop_disk(directory / "source.img", size) as device:
        make_filesystems(partition(device, table))
        layout = capture([device], fstab=directory / "no-fstab")
    assert loop_devices_of(directory) == []
    (disk,) = layout.disks
    return Source(disk, layout, size)


@pytest.fixture(scope="module")
def gpt_source(loops: None, tmp_path_factory: pytest.TempPathFactory) -> Source:
    """200 MiB GPT: BIOS boot, an ESP (vfat, volume id), a root ext4 and swap, all with ids."""

    def filesystems(parts: list[str]) -> None:
        sh("mkfs.vfat", "-F", "32", "-i", ESP_VOLUME_ID, "-n", "ESP", parts[1])
        sh("mkfs.ext4", "-q", "-F", "-U", ROOT_UUID, "-L", ROOT_LABEL, parts[2])
        sh("mkswap", "-U", SWAP_UUID, "-L", SWAP_LABEL, parts[3])

    source = captured_source(tmp_path_factory.mktemp("gpt-source"), "200M", GPT_TABLE, filesystems)
    # the odd name survived the fixture's own sfdisk
    assert source.disk.partitions[2].name == ROOT_NAME
    return source


@pytest.fixture(scope="module")
def mbr_source(loops: None, tmp_path_factory: pytest.TempPathFactory) -> Source:
    """384 MiB MBR: a bootable ext4 root, an xfs /home, and swap in a logical partition."""

    def filesystems(parts: list[str]) -> None:
        sh("mkfs.ext4", "-q", "-F", "-U", MBR_ROOT_UUID, "-L", "mbrroot", parts[0])
        sh("mkfs.xfs", "-q", "-f", "-m", f"uuid={MBR_HOME_UUID}", "-L", "home", parts[1])
        sh("mkswap", "-U", MBR_SWAP_UUID, "-L", "mbrswap", parts[3])

    source = captured_source(tmp_path_factory.mktemp("mbr-source"), "384M", MBR_TABLE, filesystems)
    assert [p.number for p in source.disk.partitions] == [1, 2, 3, 5]
    return source


@contextlib.contextmanager
def target_disk(directory: Path, size: str) -> Iterator[str]:
    """A blank target loop disk; detached again however the test ends."""
    with loop_disk(directory / "target.img", size) as device:
        yield device
    assert loop_devices_of(directory) == []


def recreate(source: Source, target: str, log_dir: Path, **kwargs: bool) -> tuple[str, Disk]:
    """Build and apply the script for one source disk on target; return it and the result."""
    script = build_script(source.layout, {source.disk.path: target}, **kwargs)
    apply_script(script, log_dir)
    return script, captured(target, log_dir)


def captured(device: str, log_dir: Path) -> Disk:
    (disk,) = capture([device], fstab=log_dir / "no-fstab").disks
    return disk


def fs_identity(fs: Filesystem | None) -> tuple[str | None, ...] | None:
    if fs is None:
        return None
    return (fs.type, fs.uuid, fs.label, fs.volume_id, fs.version)


def gpt_last_usable(disk: Disk) -> int:
    return disk.size_bytes // disk.logical_sector_size - 34


def assert_recreated(source: Disk, target: Disk, grown: Iterable[int] = ()) -> None:
    """Same table, ids, partitions and file systems; `grown` partitions reach the disk's end."""
    grown = set(grown)
    assert (target.table, target.table_id) == (source.table, source.table_id)
    assert target.first_lba == source.first_lba
    assert [p.number for p in target.partitions] == [p.number for p in source.partitions]
    if target.table == "gpt":
        assert target.last_lba == gpt_last_usable(target)  # the backup header has its room
        last_usable = gpt_last_usable(target)
    else:
        last_usable = target.size_bytes // target.logical_sector_size - 1
    for want, got in zip(source.partitions, target.partitions, strict=True):
        assert (got.start_sector, got.type, got.uuid) == (
            want.start_sector, want.type, want.uuid
        )  # fmt: skip
        assert (got.name, got.attrs, got.bootable) == (want.name, want.attrs, want.bootable)
        end = got.start_sector + got.size_sectors - 1
        if got.number in grown:
            assert got.size_sectors > want.size_sectors
            assert 0 <= last_usable - end < GRAIN, f"partition {got.number} ends at {end}"
        else:
            assert got.size_sectors == want.size_sectors, f"partition {got.number}"
        assert fs_identity(got.filesystem) == fs_identity(want.filesystem)


# --- round trips ------------------------------------------------------------------------------


def test_gpt_on_a_disk_of_the_same_size(gpt_source: Source, tmp_path: Path) -> None:
    with target_disk(tmp_path, gpt_source.size) as target:
        script, disk = recreate(gpt_source, target, tmp_path / "log")
    assert_recreated(gpt_source.disk, disk)
    esp = disk.partitions[1].filesystem
    assert esp is not None and (esp.volume_id, esp.version) == (ESP_VOLUME_ID, "FAT32")
    root = disk.partitions[2].filesystem
    assert root is not None and (root.uuid, root.label) == (ROOT_UUID, ROOT_LABEL)
    assert disk.partitions[0].filesystem is None  # BIOS boot: nothing there
    assert "last-lba:" in script  # the same size: the table is copied whole
    log = tmp_path / "log" / SCRIPT_NAME
    assert log.read_text() == script
    assert stat.S_IMODE(log.stat().st_mode) == 0o700


def test_gpt_on_a_larger_disk_grows_the_last_partition(gpt_source: Source, tmp_path: Path) -> None:
    with target_disk(tmp_path, "300M") as target:
        script, disk = recreate(gpt_source, target, tmp_path / "log")
    assert disk.size_bytes == 300 * 1024**2
    assert_recreated(gpt_source.disk, disk, grown={4})
    assert "last-lba:" not in script
    assert "partition 4 grows to the end of the disk" in script


def test_grow_false_keeps_every_size(gpt_source: Source, tmp_path: Path) -> None:
    with target_disk(tmp_path, "300M") as target:
        _, disk = recreate(gpt_source, target, tmp_path / "log", grow=False)
    assert_recreated(gpt_source.disk, disk)


def test_mbr_with_logical_partitions_on_a_disk_of_the_same_size(
    mbr_source: Source, tmp_path: Path
) -> None:
    with target_disk(tmp_path, mbr_source.size) as target:
        _, disk = recreate(mbr_source, target, tmp_path / "log")
    assert_recreated(mbr_source.disk, disk)
    assert disk.partitions[0].bootable and disk.partitions[0].uuid == "6b3e1c2b-01"
    assert disk.partitions[2].filesystem is None  # the extended container


def test_mbr_on_a_larger_disk_grows_the_logical_partition_and_its_container(
    mbr_source: Source, tmp_path: Path
) -> None:
    with target_disk(tmp_path, "400M") as target:
        _, disk = recreate(mbr_source, target, tmp_path / "log")
    assert_recreated(mbr_source.disk, disk, grown={3, 5})


def test_gaps_odd_names_btrfs_and_an_early_first_lba(loops: None, tmp_path: Path) -> None:
    """Partitions 2 and 5 only (sfdisk must keep the numbers), starting at sector 34, with a
    name of quotes, a backslash and a newline, and btrfs and ext2 with odd labels."""
    need("mkfs.btrfs", package="btrfs-progs")
    name = 'a "quoted"\\ name\nsecond line'
    table = sfdisk_lines(
        "gpt",
        "0B1F6F3C-8C43-4E4B-9E0E-2C1E5A7B9D01",
        [
            f'2 : start=34, size=280000, type={LINUX}, name="a \\x22quoted\\x22\\x5c name\\x0a'
            'second line"',
            f"5 : start=282624, size=65536, type={LINUX}",
        ],
        first_lba=34,
    )
    with loop_disk(tmp_path / "src.img", "200M") as device:
        parts = partition(device, table)
        sh("mkfs.btrfs", "-q", "-f", "-L", "bt $x 'y'", parts[0])
        sh("mkfs.ext2", "-q", "-F", "-L", "-L x", parts[1])
        layout = capture([device], fstab=tmp_path / "no-fstab")
    (source,) = layout.disks
    assert source.partitions[0].name == name
    with target_disk(tmp_path, "200M") as target:
        script = build_script(layout, {source.path: target})
        apply_script(script, tmp_path / "log")
        disk = captured(target, tmp_path)
    assert_recreated(source, disk)
    assert "first-lba: 34" in script
    fs = disk.partitions[0].filesystem
    assert fs is not None and fs.label == "bt $x 'y'" and fs.type == "btrfs"


def test_a_file_system_on_the_whole_disk_replaces_an_old_table(loops: None, tmp_path: Path) -> None:
    uuid = "5e6b1c52-7f41-4c8e-9a1b-5e2f0c7d9a01"
    with loop_disk(tmp_path / "src.img", "64M") as device:
        sh("mkfs.ext4", "-q", "-F", "-U", uuid, "-L", "whole", device)
        layout = capture([device], fstab=tmp_path / "no-fstab")
    with target_disk(tmp_path, "64M") as target:
        parts = partition(target, "label: dos\nsize=16MiB, type=83\ntype=83\n")
        sh("mkfs.ext4", "-q", "-F", parts[1])
        apply_script(build_script(layout, {layout.disks[0].path: target}), tmp_path / "log")
        disk = captured(target, tmp_path)
        name = os.path.basename(target)
        assert not list(Path("/sys/block", name).glob(f"{name}p*"))  # old partitions forgotten
    assert (disk.table, disk.partitions) == (None, [])
    assert fs_identity(disk.filesystem) == fs_identity(layout.disks[0].filesystem)


def test_two_disks_at_once(gpt_source: Source, mbr_source: Source, tmp_path: Path) -> None:
    # Both sources were captured as the same (since reused) loop device: call one /dev/vdb.
    mbr = copy.deepcopy(mbr_source.disk)
    mbr.name, mbr.path = "vdb", "/dev/vdb"
    for part in mbr.partitions:
        part.path = f"/dev/vdb{part.number}"
    with pytest.raises(LayoutError, match="two disks are both"):
        build_script(Layout(disks=[gpt_source.disk, gpt_source.disk]), {})
    layout = Layout(disks=[gpt_source.disk, mbr])
    with (
        loop_disk(tmp_path / "a" / "gpt.img", "300M") as gpt_target,
        loop_disk(tmp_path / "b" / "mbr.img", mbr_source.size) as mbr_target,
    ):
        mapping = {gpt_source.disk.path: gpt_target, mbr.path: mbr_target}
        script = build_script(layout, mapping)
        apply_script(script, tmp_path / "log")
        result = capture([gpt_target, mbr_target], fstab=tmp_path / "no-fstab")
    assert loop_devices_of(tmp_path) == []
    assert_recreated(gpt_source.disk, result.disks[0], grown={4})
    assert_recreated(mbr_source.disk, result.disks[1])
    assert 'D1P3=$(rescue_part "$D1" 3)' in script and 'D2P5=$(rescue_part "$D2" 5)' in script


def test_an_empty_partition_table(loops: None, tmp_path: Path) -> None:
    with loop_disk(tmp_path / "src.img", "64M") as device:
        sh("sfdisk", "--quiet", device, input=sfdisk_lines("gpt", GPT_ID, []))
        layout = capture([device], fstab=tmp_path / "no-fstab")
    assert layout.disks[0].table == "gpt" and layout.disks[0].partitions == []
    with target_disk(tmp_path, "64M") as target:
        partition(target, "label: dos\nsize=16MiB, type=83\n")
        apply_script(build_script(layout, {layout.disks[0].path: target}), tmp_path / "log")
        disk = captured(target, tmp_path)
        name = os.path.basename(target)
        assert not list(Path("/sys/block", name).glob(f"{name}p*"))
    assert_recreated(layout.disks[0], disk)


# --- running it again, and refusing -----------------------------------------------------------


def test_the_script_runs_again_on_a_half_made_disk(gpt_source: Source, tmp_path: Path) -> None:
    """A first run that stopped after the partitions and the first file system, then two full
    runs: each must end with the same disk."""
    with target_disk(tmp_path, "300M") as target:
        script = build_script(gpt_source.layout, {gpt_source.disk.path: target})
        lines = script.splitlines()
        fs_step = next(i for i, ln in enumerate(lines) if re.match(r"# Step \d+: file sys", ln))
        first_mkfs = next(i for i in range(fs_step, len(lines)) if lines[i].startswith("mkfs"))
        apply_script("\n".join(lines[: first_mkfs + 1]) + "\n", tmp_path / "partial")
        half = captured(target, tmp_path)
        assert half.partitions[1].filesystem is not None  # the ESP was made...
        assert half.partitions[2].filesystem is None  # ...and the root was not
        apply_script(script, tmp_path / "log")
        assert_recreated(gpt_source.disk, captured(target, tmp_path), grown={4})
        apply_script(script, tmp_path / "log")
        assert_recreated(gpt_source.disk, captured(target, tmp_path), grown={4})


def test_a_target_with_a_mounted_partition_is_refused_and_left_alone(
    gpt_source: Source, tmp_path: Path
) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with target_disk(tmp_path, "200M") as target:
        parts = partition(target, "label: dos\nsize=100MiB, type=83\ntype=83\n")
        sh("mkfs.ext4", "-q", "-F", "-L", "keep", parts[0])
        before = (sh("sfdisk", "--dump", target), sh("blkid", "-p", "-o", "export", parts[0]))
        sh("mount", parts[0], str(mnt))
        try:
            (mnt / "precious").write_text("still here")
            script = build_script(gpt_source.layout, {gpt_source.disk.path: target})
            with pytest.raises(LayoutApplyError) as caught:
                apply_script(script, tmp_path / "log")
        finally:
            sh("umount", str(mnt))
        message = str(caught.value)
        assert f"{parts[0]} is mounted on {mnt}" in message
        assert "nothing was changed" in message
        assert str(tmp_path / "log" / SCRIPT_NAME) in message and "\n" not in message
        assert caught.value.exit_code == 62
        after = (sh("sfdisk", "--dump", target), sh("blkid", "-p", "-o", "export", parts[0]))
        assert after == before
        sh("mount", "-o", "ro", parts[0], str(mnt))
        try:
            assert (mnt / "precious").read_text() == "still here"
        finally:
            sh("umount", str(mnt))


def test_a_target_with_active_swap_is_refused(gpt_source: Source, tmp_path: Path) -> None:
    with target_disk(tmp_path, "200M") as target:
        parts = partition(target, "label: gpt\nsize=8MiB\n")
        sh("mkswap", parts[0])
        sh("swapon", parts[0])
        try:
            script = build_script(gpt_source.layout, {gpt_source.disk.path: target})
            with pytest.raises(LayoutApplyError, match=f"{parts[0]} is active swap"):
                apply_script(script, tmp_path / "log")
        finally:
            sh("swapoff", parts[0])
        assert len(captured(target, tmp_path).partitions) == 1


def test_a_failing_command_gives_its_last_line(tmp_path: Path) -> None:
    with pytest.raises(LayoutApplyError, match=r"\(exit 3\): no such thing \(script "):
        apply_script("#!/bin/sh\nset -eu\necho 'no such thing' >&2\nexit 3\n", tmp_path)


# --- LVM and LUKS that need no device-mapper, for real ---------------------------------------


def test_a_volume_group_is_recreated_with_its_pv_uuid(loops: None, tmp_path: Path) -> None:
    """pvcreate and vgcreate need no device-mapper (lvcreate does), so a VG without LVs is made
    for real. LVM_SYSTEM_DIR keeps lvm's metadata backups out of the host's /etc/lvm."""
    need("pvcreate", "vgcreate", "vgs", "vgremove", "lvcreate", "lvchange", package="lvm2")
    vg = f"rescuer{os.getpid()}"
    lvm_dir = tmp_path / "lvm"
    lvm_dir.mkdir()
    env = {"LVM_SYSTEM_DIR": str(lvm_dir), "LVM_SUPPRESS_FD_WARNINGS": "1"}

    def lvm(*argv: str) -> None:
        subprocess.run(
            argv, env={**os.environ, **env}, check=True, capture_output=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    with target_disk(tmp_path / "t", "128M") as target:
        with loop_disk(tmp_path / "src.img", "128M") as device:
            parts = partition(device, f"label: gpt\nsize=100MiB, type={LINUX_LVM}\n")
            lvm("pvcreate", "-y", parts[0])
            lvm("vgcreate", "-s", "8M", vg, parts[0])
            layout = capture([device], fstab=tmp_path / "no-fstab")
            script = build_script(layout, {device: target})
            # The source's VG of the same name is still there: not on a target, so refused.
            with pytest.raises(LayoutApplyError, match=f"volume group {vg} already exists on"):
                apply_script(script, tmp_path / "log", env=env)
        assert layout.lvm is not None
        (pv,) = layout.lvm.pvs
        apply_script(script, tmp_path / "log", env=env)
        result = capture([target], fstab=tmp_path / "no-fstab")
        apply_script(script, tmp_path / "log", env=env)  # again, over the VG it made
        again = capture([target], fstab=tmp_path / "no-fstab")
    assert f"pvcreate -ff -y --uuid {pv.uuid} --norestorefile" in script
    for got in (result, again):
        assert got.lvm is not None
        (new_pv,) = got.lvm.pvs
        (group,) = got.lvm.vgs
        assert (new_pv.uuid, new_pv.vg) == (pv.uuid, vg)
        assert (group.name, group.extent_size_bytes) == (vg, 8 * 1024**2)
        assert_recreated(layout.disks[0], got.disks[0])


def test_a_closed_luks_container_is_recreated_with_its_uuid(loops: None, tmp_path: Path) -> None:
    """luksFormat needs no device-mapper (opening does); a container that was closed at backup
    is formatted with its UUID and the new passphrase, and refused without one."""
    need("cryptsetup", package="cryptsetup-bin")
    uuid = "0d9c2a5e-1111-4222-8333-944455556666"
    with loop_disk(tmp_path / "src.img", "64M") as device:
        parts = partition(device, f"label: gpt\nsize=32MiB, type={LINUX_LUKS}\n")
        subprocess.run(
            ["cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
             "--pbkdf-force-iterations", "1000", "--uuid", uuid, "--key-file", "-", parts[0]],
            input=b"old secret", check=True, capture_output=True,
        )  # fmt: skip
        layout = capture([device], fstab=tmp_path / "no-fstab")
    assert layout.luks == [LuksContainer(parts[0], uuid, "2", None)]
    key = tmp_path / "key"
    key.write_bytes(b"new secret")
    key.chmod(0o600)
    with target_disk(tmp_path, "64M") as target:
        script = build_script(layout, {layout.disks[0].path: target})
        with pytest.raises(LayoutApplyError, match="set RESCUE_LUKS_PASSPHRASE_FILE"):
            apply_script(script, tmp_path / "log")
        assert subprocess.run(["blkid", "-p", target]).returncode == 2  # still blank
        apply_script(script, tmp_path / "log", env={"RESCUE_LUKS_PASSPHRASE_FILE": str(key)})
        result = capture([target], fstab=tmp_path / "no-fstab")
        node = result.disks[0].partitions[0].path
        sh("cryptsetup", "open", "--test-passphrase", "--key-file", str(key), node)
    assert result.luks == [LuksContainer(node, uuid, "2", None)]
    assert_recreated(layout.disks[0], result.disks[0])


# --- MD, LVM with LVs, LUKS inside LVM: the generated text ------------------------------------


def stacked_layout() -> Layout:
    """RAID1 over two disks, a VG on it with an ext4 root LV and a LUKS LV holding xfs."""

    def disk(name: str, table_id: str) -> Disk:
        return Disk(
            name=name, path=f"/dev/{name}", size_bytes=20 * 1024**3, table="gpt",
            table_id=table_id,
            first_lba=2048, last_lba=41943006,
            partitions=[
                Partition(1, f"/dev/{name}1", 2048, 2048, BIOS_BOOT, None, "BIOS boot"),
                Partition(
                    2, f"/dev/{name}2", 4096, 40000000, "A19D880F-05FC-4D3B-A006-743F0F84911E",
                    filesystem=Filesystem("linux_raid_member", f"/dev/{name}2", uuid="m"),
                ),
            ],
        )  # fmt: skip

    return Layout(
        disks=[
            disk("vda", "6E1F6F3C-8C43-4E4B-9E0E-2C1E5A7B9D01"),
            disk("vdb", "6E1F6F3C-8C43-4E4B-9E0E-2C1E5A7B9D02"),
        ],
        raids=[
            RaidArray(
                "md127", "/dev/md127", "raid1", "3f1c9a2b:5d6e7f80:91a2b3c4:d5e6f708", "1.2",
                "debian:root", "root", 2, ["/dev/vda2", "/dev/vdb2"], [], 20 * 1024**3,
                Filesystem("LVM2_member", "/dev/md127", uuid="pv-uuid"),
            )
        ],
        lvm=LvmLayout(
            pvs=[PhysicalVolume("/dev/md127", "pvUUID-aaaa", "vg0")],
            vgs=[VolumeGroup("vg0", "vg-uuid", 4 * 1024**2)],
            lvs=[
                LogicalVolume(
                    "root", "vg0", "lv1", 8 * 1024**3, "/dev/vg0/root", "/dev/mapper/vg0-root",
                    "linear", 1, filesystem=Filesystem(
                        "ext4", "/dev/mapper/vg0-root", uuid="r00t", label="my root"
                    ),
                ),
                LogicalVolume(
                    "crypt", "vg0", "lv2", 1024**3, "/dev/vg0/crypt", "/dev/mapper/vg0-crypt",
                    "striped", 2, filesystem=Filesystem(
                        "crypto_LUKS", "/dev/mapper/vg0-crypt", uuid="l1", version="2"
                    ),
                ),
                LogicalVolume("pool", "vg0", "lv3", 1024**3, segtype="thin-pool"),
            ],
        ),
        luks=[LuksContainer("/dev/mapper/vg0-crypt", "l1", "2", "secret")],
        filesystems=[Filesystem("xfs", "/dev/mapper/secret", uuid="x1", label="srv")],
    )  # fmt: skip


TARGETS = [Disk("sdb", "/dev/sdb", 20 * 1024**3), Disk("nvme0n1", "/dev/nvme0n1", 30 * 1024**3)]
MAPPING = {"/dev/vda": "/dev/sdb", "/dev/vdb": "/dev/nvme0n1"}


def dash_parses(script: str, tmp_path: Path) -> None:
    path = tmp_path / "script.sh"
    path.write_text(script)
    result = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_md_lvm_and_luks_commands_in_stacking_order(tmp_path: Path) -> None:
    script = build_script(stacked_layout(), MAPPING, targets=TARGETS)
    dash_parses(script, tmp_path)
    lines = script.splitlines()
    wanted = [
        "D1=/dev/sdb  # was /dev/vda",
        "D2=/dev/nvme0n1  # was /dev/vdb",
        'if [ ! -r "${RESCUE_LUKS_PASSPHRASE_FILE:-}" ]; then',
        "if mdadm --detail /dev/md/root >/dev/null 2>&1; then",
        "rescue_check_vg vg0",
        "rescue_die 'vg0/pool is a thin-pool LV, which rescue cannot recreate: make it in the"
        " step '\"'\"'LVM volume group vg0'\"'\"' and delete this check (nothing was changed)'",
        "rescue_check_free /dev/mapper/secret",
        "rescue_remove_vg vg0",
        "/dev/sdb1 : start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649,"
        ' name="BIOS boot"',
        "/dev/nvme0n1p2 : start=4096, type=A19D880F-05FC-4D3B-A006-743F0F84911E",
        'D2P2=$(rescue_part "$D2" 2)',
        "    mdadm --stop /dev/md/root",
        "mdadm --create /dev/md/root --run --level=raid1 --raid-devices=2 --metadata=1.2"
        " --uuid=3f1c9a2b:5d6e7f80:91a2b3c4:d5e6f708 --name=debian:root"
        ' "$D1P2" "$D2P2"',
        "pvcreate -ff -y --uuid pvUUID-aaaa --norestorefile /dev/md/root",
        "vgcreate -y -s 4096k vg0 /dev/md/root",
        "lvcreate -y -W y -Z y -n root -L 8589934592b vg0",
        "lvchange -ay vg0/root",
        "lvcreate -y -W y -Z y -n crypt -L 1073741824b -i 2 vg0",
        "# e.g. lvcreate --type thin-pool -L 1073741824b -n pool vg0",
        "    cryptsetup close secret",
        "cryptsetup luksFormat --batch-mode --type luks2 --uuid l1"
        ' --key-file "$RESCUE_LUKS_PASSPHRASE_FILE" /dev/vg0/crypt',
        'cryptsetup open --key-file "$RESCUE_LUKS_PASSPHRASE_FILE" /dev/vg0/crypt secret',
        "mkfs.ext4 -F -U r00t -L 'my root' /dev/vg0/root",
        "mkfs.xfs -f -m uuid=x1 -L srv /dev/mapper/secret",
    ]
    positions = []
    for want in wanted:
        assert want in lines, want
        positions.append(lines.index(want))
    assert positions == sorted(positions), "steps out of order"
    # The nvme disk is larger: its RAID member grows; the sdb one is the same size and exact.
    assert "/dev/sdb2 : start=4096, size=40000000," in script
    assert "last-lba: 41943006" in script
    tools = next(ln for ln in lines if ln.startswith("for rescue_tool in"))
    for tool in ("mdadm", "pvcreate", "lvcreate", "cryptsetup", "mkfs.ext4", "mkfs.xfs"):
        assert f" {tool} " in tools
    # The stacking signatures are written by mdadm/pvcreate/luksFormat, never by a mkfs.
    assert not any(ln.startswith(("mkfs", "mkswap")) and "LVM2" in ln for ln in lines)


def test_an_array_on_an_unmapped_disk_is_skipped_but_half_mapped_fails() -> None:
    layout = stacked_layout()
    with pytest.raises(DiskMappingError, match=r"MD array /dev/md127 .* /dev/vdb2 is on a disk"):
        build_script(layout, {"/dev/vda": "/dev/sdb"}, targets=TARGETS)
    layout.disks[0].partitions[1].filesystem = None
    layout.raids[0].devices = ["/dev/vdb2"]
    script = build_script(layout, {"/dev/vda": "/dev/sdb"}, targets=TARGETS)
    assert "# MD array /dev/md127 is not recreated: its disks have no target." in script
    assert "# volume group vg0 is not recreated: its disks have no target." in script
    assert "mdadm --create" not in script and "pvcreate -ff" not in script
    assert "cryptsetup luksFormat" not in script


def test_mapping_and_target_errors_are_clear() -> None:
    layout = stacked_layout()
    small = [Disk("sdb", "/dev/sdb", 10 * 1024**3)]
    with pytest.raises(DiskMappingError, match="no disk /dev/vdz"):
        build_script(layout, {"/dev/vdz": "/dev/sdb"}, targets=TARGETS)
    with pytest.raises(DiskMappingError, match="target /dev/sdb is given for both"):
        build_script(layout, {"/dev/vda": "/dev/sdb", "/dev/vdb": "/dev/sdb"}, targets=TARGETS)
    with pytest.raises(DiskMappingError, match=r"/dev/sdb \(10.0 GiB\) is too small"):
        build_script(layout, {"/dev/vda": "/dev/sdb"}, targets=small)
    big_sectors = [Disk("sdb", "/dev/sdb", 20 * 1024**3, logical_sector_size=4096)]
    with pytest.raises(DiskMappingError, match="4096-byte sectors"):
        build_script(layout, {"/dev/vda": "/dev/sdb"}, targets=big_sectors)
    layout.disks[0].partitions[0].type = "21686148\nRESCUE_SFDISK_END\nreboot"
    with pytest.raises(LayoutError, match=r"partition type .* is not a valid identifier"):
        build_script(layout, MAPPING, targets=TARGETS)


def test_every_value_is_quoted_and_comments_cannot_be_broken(tmp_path: Path) -> None:
    label = "x'; reboot; echo '\n$(halt)"
    layout = Layout(
        disks=[
            Disk(
                "vda", "/dev/vda", 1024**3, table="dos", table_id="0x12345678",
                partitions=[
                    Partition(1, "/dev/vda1", 2048, 4096, "83", filesystem=Filesystem(
                        "ext4", "/dev/vda1\nreboot", uuid="u-1", label=label, mountpoint="/\nx"
                    )),
                    Partition(2, "/dev/vda2", 8192, 4096, "7", filesystem=Filesystem(
                        "ntfs", "/dev/vda2", uuid="n"
                    )),
                ],
            )
        ]
    )  # fmt: skip
    script = build_script(layout, {"/dev/vda": "/dev/sdb"}, targets=TARGETS)
    dash_parses(script, tmp_path)
    assert """mkfs.ext4 -F -U u-1 -L 'x'"'"'; reboot; echo '"'"'\n$(halt)' "$D1P1\"""" in script
    assert "\nreboot" not in script
    assert "# ext4 on /dev/vda1\\nreboot (mounted on /\\nx)" in script
    assert "# rescue has no recipe for ntfs: left blank; make it by hand." in script
    assert "\n/dev/sdb2 : start=8192, type=7\n" in script  # the last one grows


def test_btrfs_on_two_devices_an_orphan_pv_a_degraded_array_and_fat16(tmp_path: Path) -> None:
    raid_type = "A19D880F-05FC-4D3B-A006-743F0F84911E"
    layout = Layout(
        disks=[
            Disk(
                "vda", "/dev/vda", 1024**3, table="gpt", table_id=GPT_ID, first_lba=2048,
                partitions=[
                    Partition(1, "/dev/vda1", 2048, 65536, LINUX, filesystem=Filesystem(
                        "btrfs", "/dev/vda1", uuid="b1", uuid_sub="s1", label="data"
                    )),
                    Partition(2, "/dev/vda2", 67584, 65536, LINUX, filesystem=Filesystem(
                        "btrfs", "/dev/vda2", uuid="b1", uuid_sub="s2", label="data"
                    )),
                    Partition(3, "/dev/vda3", 133120, 65536, LINUX_LVM, filesystem=Filesystem(
                        "LVM2_member", "/dev/vda3", uuid="orphan-pv"
                    )),
                    Partition(4, "/dev/vda4", 198656, 65536, raid_type),
                    Partition(5, "/dev/vda5", 264192, 65536, raid_type),
                    Partition(6, "/dev/vda6", 329728, 65536, ESP, filesystem=Filesystem(
                        "vfat", "/dev/vda6", uuid="1234-ABCD", label="EFI", version="FAT16"
                    )),
                ],
            )
        ],
        raids=[
            RaidArray(
                "md0", "/dev/md0", "raid5", "a:b:c:d", "1.2", raid_devices=3,
                devices=["/dev/vda4"], spares=["/dev/vda5"],
                filesystem=Filesystem("swap", "/dev/md0", uuid="sw"),
            )
        ],
        lvm=LvmLayout(pvs=[PhysicalVolume("/dev/vda3", "orphan-pv")]),
    )  # fmt: skip
    script = build_script(layout, {"/dev/vda": "/dev/sdb"}, targets=TARGETS)
    dash_parses(script, tmp_path)
    lines = script.splitlines()
    assert 'mkfs.btrfs -f -U b1 -L data "$D1P1" "$D1P2"' in lines
    assert sum(ln.startswith("mkfs.btrfs") for ln in lines) == 1
    assert 'pvcreate -ff -y --uuid orphan-pv --norestorefile "$D1P3"' in lines
    assert "vgcreate" not in script
    assert (
        "mdadm --create /dev/md0 --run --level=raid5 --raid-devices=3 --metadata=1.2"
        ' --uuid=a:b:c:d --spare-devices=1 "$D1P4" missing missing "$D1P5"'
    ) in lines
    assert "mkswap -f -U sw /dev/md0" in lines
    assert 'mkfs.vfat -F 16 -i 1234ABCD -n EFI "$D1P6"' in lines


def test_a_target_path_sfdisk_could_misread_gets_bare_numbers() -> None:
    by_path = "/dev/disk/by-path/pci-0000:00:1f.2-ata-1"
    targets = [Disk("sdb", by_path, 20 * 1024**3), Disk("nvme0n1", "/dev/nvme0n1", 30 * 1024**3)]
    script = build_script(stacked_layout(), {**MAPPING, "/dev/vda": by_path}, targets=targets)
    assert "\n1 : start=2048, size=2048," in script
    assert "\n/dev/nvme0n1p1 : start=2048, size=2048," in script
    assert f"D1={by_path}  # was /dev/vda" in script


def test_probing_a_target_that_is_not_a_disk_fails_clearly(tmp_path: Path) -> None:
    layout = stacked_layout()
    with pytest.raises(DiskMappingError, match="is not a whole block device"):
        build_script(layout, {"/dev/vda": str(tmp_path / "nothing")})


# --- LVM on a larger disk: which LV takes the VG's new room (grow_lv) --------------------------


def debian_lvm_layout(*lvs: LogicalVolume) -> Layout:
    """The Debian installer's "entire disk with LVM" on a 256 MiB disk: BIOS boot, /boot, and a
    PV holding vg0 (8 MiB extents, 88 MiB free) with root and swap_1, or the LVs given."""
    root = LogicalVolume(
        "root", "vg0", "lv1", 96 * 2**20, segtype="linear",
        filesystem=Filesystem("ext4", "/dev/mapper/vg0-root", uuid="r00t"),
    )  # fmt: skip
    swap = LogicalVolume(
        "swap_1", "vg0", "lv2", 32 * 2**20, segtype="linear",
        filesystem=Filesystem("swap", "/dev/mapper/vg0-swap_1", uuid="sw4p"),
    )  # fmt: skip
    return Layout(
        disks=[
            Disk(
                "vda", "/dev/vda", 256 * 2**20, table="gpt", table_id=GPT_ID,
                first_lba=2048, last_lba=524254,
                partitions=[
                    Partition(1, "/dev/vda1", 2048, 2048, BIOS_BOOT),
                    Partition(2, "/dev/vda2", 4096, 65536, LINUX,
                              filesystem=Filesystem("ext4", "/dev/vda2", uuid="b00t")),
                    Partition(3, "/dev/vda3", 69632, 452608, LINUX_LVM,
                              filesystem=Filesystem("LVM2_member", "/dev/vda3", uuid="pv")),
                ],
            )
        ],
        lvm=LvmLayout(
            pvs=[PhysicalVolume("/dev/vda3", "pvUUID", "vg0")],
            vgs=[VolumeGroup("vg0", "vgUUID", 8 * 2**20, 216 * 2**20, 88 * 2**20)],
            lvs=list(lvs) or [root, swap],
        ),
    )  # fmt: skip


LARGER = [Disk("sdb", "/dev/sdb", 384 * 2**20)]
SAME_SIZE = [Disk("sdb", "/dev/sdb", 256 * 2**20)]


def lvm_script(grow_lv: str, targets: list[Disk] = LARGER, layout: Layout | None = None) -> str:
    layout = layout or debian_lvm_layout()
    return build_script(layout, {"/dev/vda": "/dev/sdb"}, grow_lv=grow_lv, targets=targets)


def lvextends(script: str) -> list[str]:
    return [ln.strip() for ln in script.splitlines() if ln.strip().startswith("lvextend")]


def vg_title(script: str) -> str:
    return next(ln for ln in script.splitlines() if re.match(r"# Step \d+: LVM volume group", ln))


def test_grow_lv_none_leaves_the_new_room_free_and_says_how_much(tmp_path: Path) -> None:
    script = lvm_script("none")
    dash_parses(script, tmp_path)
    tools = next(ln for ln in script.splitlines() if ln.startswith("for rescue_tool in"))
    assert lvextends(script) == [] and " lvextend " not in tools
    # 128 MiB more disk: the PV partition ends on sfdisk's 1 MiB grain on both disks.
    assert vg_title(script) == (
        "# Step 5: LVM volume group vg0 on /dev/vda3 (extent 8 MiB); LV sizes kept: the VG has"
        " about 128 MiB more free after recreation: lvextend by hand"
    )
    hint = "# VG. To give it to an LV and its file system later: lvextend -r -l +100%FREE vg0/LV"
    assert hint in script.splitlines()
    # On a disk of the same size nothing is gained, and nothing is said.
    same = lvm_script("none", SAME_SIZE)
    assert vg_title(same).endswith("(extent 8 MiB)") and "lvextend" not in same


def test_grow_lv_last_grows_the_last_lv_that_is_not_swap_before_its_mkfs(tmp_path: Path) -> None:
    script = lvm_script("last")
    dash_parses(script, tmp_path)
    lines = script.splitlines()
    assert lvextends(script) == ["lvextend -l +100%FREE vg0/root"]  # not swap_1, the last LV
    assert vg_title(script).endswith(
        "; vg0/root takes the VG's free space (about 216 MiB, 128 MiB of it new)"
    )
    guard = "if [ \"$(vgs --noheadings -o vg_free_count vg0 | awk '{print $1}')\" -gt 0 ]; then"
    order = [
        "lvcreate -y -W y -Z y -n root -L 100663296b vg0",
        "lvcreate -y -W y -Z y -n swap_1 -L 33554432b vg0",
        guard,
        "    lvextend -l +100%FREE vg0/root",
        "mkfs.ext4 -F -U r00t /dev/vg0/root",
        "mkswap -f -U sw4p /dev/vg0/swap_1",
    ]
    positions = [lines.index(line) for line in order]
    assert positions == sorted(positions)
    assert (
        lines.index("# Step 6: file systems, with their recorded UUIDs and labels") > positions[3]
    )
    tools = next(ln for ln in lines if ln.startswith("for rescue_tool in"))
    assert " lvextend " in tools
    # The same disk size: the LV still takes whatever the VG has free (the recorded 88 MiB).
    assert lvextends(lvm_script("last", SAME_SIZE)) == ["lvextend -l +100%FREE vg0/root"]
    assert vg_title(lvm_script("last", SAME_SIZE)).endswith("(about 88 MiB)")


def test_grow_lv_names_one_lv_and_only_that_one_grows() -> None:
    assert lvextends(lvm_script("vg0/swap_1")) == ["lvextend -l +100%FREE vg0/swap_1"]
    assert lvextends(lvm_script("vg0/root")) == ["lvextend -l +100%FREE vg0/root"]


def test_grow_lv_last_skips_swap_and_leaves_a_raid_lv_alone() -> None:
    def lv(name: str, segtype: str, fs: str | None = None) -> LogicalVolume:
        filesystem = Filesystem(fs, f"/dev/mapper/vg0-{name}", uuid=name) if fs else None
        return LogicalVolume(name, "vg0", name, 8 * 2**20, segtype=segtype, filesystem=filesystem)

    # No file system counts as "not swap": a bare LV at the end is the one that grows.
    layout = debian_lvm_layout(
        lv("a", "linear", "ext4"), lv("b", "striped"), lv("s", "linear", "swap")
    )
    assert lvextends(lvm_script("last", layout=layout)) == ["lvextend -l +100%FREE vg0/b"]
    # The last LV that is not swap is a raid1 LV: nothing grows, and the script says why.
    layout = debian_lvm_layout(
        lv("a", "linear", "ext4"), lv("m", "raid1", "xfs"), lv("s", "linear", "swap")
    )
    script = lvm_script("last", layout=layout)
    assert lvextends(script) == []
    assert "vg0/m, the last LV that is not swap, is a raid1 LV, which does not grow" in " ".join(
        ln.lstrip("# ") for ln in script.splitlines() if ln.startswith("# ")
    )
    assert "more free after recreation: lvextend by hand" in vg_title(script)
    # Only swap: nothing grows.
    assert lvextends(lvm_script("last", layout=debian_lvm_layout(lv("s", "linear", "swap")))) == []


@pytest.mark.parametrize(
    ("grow_lv", "message"),
    [
        ("vg0/nope", "grow_lv: the layout has no LV vg0/nope (its LVs: vg0/root, vg0/m, vg0/t)"),
        ("vg1/root", "grow_lv: the layout has no LV vg1/root"),
        (
            "vg0/m",
            "grow_lv: vg0/m is a raid1 LV, which cannot grow; only linear and striped LVs do",
        ),
        ("vg0/t", "grow_lv: vg0/t is a thin-pool LV, which cannot grow; only linear and striped"),
    ],
)
def test_grow_lv_naming_a_missing_raid_or_thin_lv_is_refused(grow_lv: str, message: str) -> None:
    layout = debian_lvm_layout(
        LogicalVolume("root", "vg0", "1", 2**20, segtype="linear"),
        LogicalVolume("m", "vg0", "2", 2**20, segtype="raid1"),
        LogicalVolume("t", "vg0", "3", 2**20, segtype="thin-pool"),
    )
    with pytest.raises(UsageError, match=re.escape(message)) as err:
        lvm_script(grow_lv, layout=layout)
    assert err.value.exit_code == 2 and "\n" not in str(err.value)


def test_grow_lv_naming_an_lv_whose_disk_has_no_target_is_refused() -> None:
    layout = stacked_layout()
    layout.disks[0].partitions[1].filesystem = None
    layout.raids[0].devices = ["/dev/vdb2"]  # vg0 is wholly on vdb, which is not mapped
    with pytest.raises(UsageError, match="grow_lv: vg0/root is not recreated: its disks have no"):
        build_script(layout, {"/dev/vda": "/dev/sdb"}, grow_lv="vg0/root", targets=TARGETS)


def test_the_new_room_of_a_vg_on_a_mirror_or_luks_is_what_its_devices_gain() -> None:
    # The stacked layout's RAID1 has one member on a larger disk: the array does not grow.
    script = build_script(stacked_layout(), MAPPING, targets=TARGETS)
    assert vg_title(script).endswith("(extent 4 MiB)")  # nothing gained, nothing said
    grown = build_script(stacked_layout(), MAPPING, grow_lv="vg0/root", targets=TARGETS)
    assert vg_title(grown).endswith("; vg0/root takes the VG's free space (none expected)")
    # Both members on larger disks: it grows by the smaller member's growth (the members end
    # 0.9 GiB before the end of their 20 GiB disks: the one on 25 GiB gains 5.9 GiB).
    both = [TARGETS[1], Disk("sdb", "/dev/sdb", 25 * 1024**3)]
    script = build_script(stacked_layout(), MAPPING, targets=both)
    assert "the VG has about 5.9 GiB more free after recreation" in vg_title(script)
    # A PV inside LUKS on the grown partition: the container grows with it.
    layout = debian_lvm_layout()
    assert layout.lvm is not None
    layout.luks = [LuksContainer("/dev/vda3", "l1", "2", "cr")]
    layout.lvm.pvs[0].device = "/dev/mapper/cr"
    script = lvm_script("none", layout=layout)
    assert "the VG has about 128 MiB more free after recreation" in vg_title(script)
