"""Layout capture on real loop disks, the model's JSON round trip, and the LVM/MD parsers.

The loop-disk tests need root and losetup; they make sparse images (64-400 MiB; mkfs.xfs refuses
a file system under 300 MiB) and detach every loop device they attach, which the tests check.
LVM is captured live from a VG whose metadata is written with vgcfgrestore (no device-mapper is
needed for that; the LVs stay inactive). MD cannot run on this kernel: its parsers are tested on
text in the formats the kernel's md.c and mdadm's Detail.c print.
"""
# Recorded tool output below is kept verbatim, long lines and all:
# ruff: noqa: E501

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
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

from rescue.errors import CommandNotFoundError
from rescue.layout import LayoutError
from rescue.layout.blkid import parse_blkid_export
from rescue.layout.capture import capture
from rescue.layout.fstab import apply_fstab, parse_fstab
from rescue.layout.kernel import disks_holding, parse_mountinfo
from rescue.layout.lvm import parse_lvm_report, parse_lvs, parse_pvs, parse_vgs
from rescue.layout.md import parse_mdadm_export, parse_mdstat
from rescue.layout.model import (
    Disk,
    Filesystem,
    FstabEntry,
    Layout,
    LogicalVolume,
    LuksContainer,
    LvmLayout,
    Partition,
    PhysicalVolume,
    RaidArray,
    VolumeGroup,
    layout_from_dict,
    layout_to_dict,
)
from rescue.layout.summary import layout_summary
from rescue.layout.tools import parse_json_output, run_probe_ok
from rescue.process import execute
from rescue.units import human_size

# --- loop disks -----------------------------------------------------------------------------

# The tools the loop-disk tests run, and the Debian package of each.
TOOLS = {**LAYOUT_TOOLS, "mkfs.vfat": "dosfstools", "mkfs.xfs": "xfsprogs"}

GPT_ID = "6E1F6F3C-8C43-4E4B-9E0E-2C1E5A7B9D01"
GPT_PARTS = [
    # number, start, size, type, partition GUID, name, attrs
    (1, 2048, 2048, BIOS_BOOT, "1A2B3C4D-0001-4000-8000-000000000001", "BIOS boot", None),
    (2, 4096, 131072, ESP, "1A2B3C4D-0002-4000-8000-000000000002", "EFI System Partition", "RequiredPartition"),
    (3, 135168, 204800, LINUX, "1A2B3C4D-0003-4000-8000-000000000003", "root", "GUID:63"),
    (4, 339968, 65536, SWAP, "1A2B3C4D-0004-4000-8000-000000000004", "swap", None),
]  # fmt: skip
GPT_ROOT_UUID = "3d6b1c52-7f41-4c8e-9a1b-5e2f0c7d9a01"
GPT_SWAP_UUID = "3d6b1c52-7f41-4c8e-9a1b-5e2f0c7d9a02"
ESP_VOLUME_ID = "DEADBEEF"


def gpt_script() -> str:
    lines = ["label: gpt", f"label-id: {GPT_ID}", "unit: sectors", "first-lba: 2048", ""]
    for _, start, size, ptype, uuid, name, attrs in GPT_PARTS:
        line = f'start={start}, size={size}, type={ptype}, uuid={uuid}, name="{name}"'
        lines.append(line + (f', attrs="{attrs}"' if attrs else ""))
    return "\n".join(lines) + "\n"


MBR_ID = "0x5a3e1c2b"
MBR_PARTS = [
    # number, start, size, type, bootable
    (1, 2048, 131072, "83", True),
    (2, 133120, 614400, "83", False),
    (3, 747520, 69632, "5", False),
    (5, 749568, 65536, "82", False),
]
MBR_ROOT_UUID = "8c0e4f2a-1b3d-4e5f-8a9b-0c1d2e3f4a01"
MBR_HOME_UUID = "8c0e4f2a-1b3d-4e5f-8a9b-0c1d2e3f4a02"
MBR_SWAP_UUID = "8c0e4f2a-1b3d-4e5f-8a9b-0c1d2e3f4a05"


def mbr_script() -> str:
    lines = ["label: dos", f"label-id: {MBR_ID}", "unit: sectors", ""]
    for _, start, size, ptype, bootable in MBR_PARTS:
        lines.append(
            f"start={start}, size={size}, type={ptype}" + (", bootable" if bootable else "")
        )
    return "\n".join(lines) + "\n"


@dataclass
class LoopDisk:
    device: str
    parts: list[str]


@pytest.fixture(scope="module")
def gpt_disk(loops: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopDisk]:
    """200 MiB GPT: BIOS boot, an ESP with vfat, a root ext4 and swap, all with fixed ids."""
    directory = tmp_path_factory.mktemp("gpt")
    with loop_disk(directory / "gpt.img", "200M") as device:
        parts = partition(device, gpt_script())
        sh("mkfs.vfat", "-F", "32", "-i", ESP_VOLUME_ID, "-n", "ESP", parts[1])
        sh("mkfs.ext4", "-q", "-F", "-U", GPT_ROOT_UUID, "-L", "rootfs", parts[2])
        sh("mkswap", "-U", GPT_SWAP_UUID, "-L", "swapper", parts[3])
        yield LoopDisk(device, parts)
    assert loop_devices_of(directory) == []


@pytest.fixture(scope="module")
def mbr_disk(loops: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopDisk]:
    """400 MiB MBR: a bootable ext4 root, an xfs /home, and swap in a logical partition."""
    directory = tmp_path_factory.mktemp("mbr")
    with loop_disk(directory / "mbr.img", "400M") as device:
        parts = partition(device, mbr_script())
        assert [p.rsplit("p", 1)[1] for p in parts] == ["1", "2", "3", "5"]
        sh("mkfs.ext4", "-q", "-F", "-U", MBR_ROOT_UUID, "-L", "mbrroot", parts[0])
        sh("mkfs.xfs", "-q", "-f", "-m", f"uuid={MBR_HOME_UUID}", "-L", "home", parts[1])
        sh("mkswap", "-U", MBR_SWAP_UUID, "-L", "mbrswap", parts[3])
        yield LoopDisk(device, parts)
    assert loop_devices_of(directory) == []


def only_disk(layout: Layout) -> Disk:
    assert len(layout.disks) == 1
    return layout.disks[0]


def test_gpt_disk_is_captured_exactly(gpt_disk: LoopDisk, tmp_path: Path) -> None:
    layout = capture([gpt_disk.device], fstab=tmp_path / "no-fstab")
    disk = only_disk(layout)
    name = os.path.basename(gpt_disk.device)
    assert (disk.name, disk.path) == (name, gpt_disk.device)
    assert disk.size_bytes == 200 * 1024 * 1024
    assert disk.logical_sector_size == 512
    assert (disk.table, disk.table_id) == ("gpt", GPT_ID)
    assert disk.first_lba == 2048
    assert disk.filesystem is None
    assert len(disk.partitions) == len(GPT_PARTS)
    for part, (number, start, size, ptype, uuid, pname, attrs) in zip(
        disk.partitions, GPT_PARTS, strict=True
    ):
        assert part.number == number
        assert part.path == f"{gpt_disk.device}p{number}"
        assert (part.start_sector, part.size_sectors) == (start, size)
        assert (part.type, part.uuid, part.name, part.attrs) == (ptype, uuid, pname, attrs)
        assert part.bootable is False

    bios, esp, root, swap = disk.partitions
    assert bios.filesystem is None
    assert esp.filesystem is not None
    assert (esp.filesystem.type, esp.filesystem.label) == ("vfat", "ESP")
    assert (esp.filesystem.uuid, esp.filesystem.volume_id) == ("DEAD-BEEF", ESP_VOLUME_ID)
    assert esp.filesystem.version == "FAT32"
    assert root.filesystem is not None
    assert root.filesystem.block_size in (1024, 4096)  # mke2fs.conf decides
    assert root.filesystem == Filesystem(
        type="ext4",
        device=root.path,
        uuid=GPT_ROOT_UUID,
        label="rootfs",
        version="1.0",
        block_size=root.filesystem.block_size,
    )
    assert swap.filesystem is not None
    assert (swap.filesystem.type, swap.filesystem.uuid) == ("swap", GPT_SWAP_UUID)
    assert swap.filesystem.label == "swapper"
    assert layout.lvm is None and layout.raids == [] and layout.luks == []
    assert layout.filesystems == [] and layout.fstab == []


def test_mbr_disk_is_captured_exactly(mbr_disk: LoopDisk, tmp_path: Path) -> None:
    layout = capture([mbr_disk.device], fstab=tmp_path / "no-fstab")
    disk = only_disk(layout)
    assert (disk.table, disk.table_id) == ("dos", MBR_ID)
    assert disk.size_bytes == 400 * 1024 * 1024
    assert [p.number for p in disk.partitions] == [1, 2, 3, 5]
    for part, (number, start, size, ptype, bootable) in zip(
        disk.partitions, MBR_PARTS, strict=True
    ):
        assert (part.start_sector, part.size_sectors, part.type) == (start, size, ptype)
        assert part.bootable is bootable
        assert part.uuid == f"5a3e1c2b-{number:02x}"  # the PARTUUID the kernel shows
        assert part.name is None and part.attrs is None

    root, home, extended, swap = disk.partitions
    assert root.filesystem is not None and home.filesystem is not None
    assert (root.filesystem.type, root.filesystem.uuid) == ("ext4", MBR_ROOT_UUID)
    assert root.filesystem.label == "mbrroot"
    assert (home.filesystem.type, home.filesystem.uuid) == ("xfs", MBR_HOME_UUID)
    assert home.filesystem.label == "home"
    assert extended.filesystem is None  # a container of logical partitions, never probed
    assert swap.filesystem is not None
    assert (swap.filesystem.type, swap.filesystem.uuid) == ("swap", MBR_SWAP_UUID)
    assert swap.filesystem.label == "mbrswap"


def test_fstab_options_are_matched_by_uuid_label_partuuid_and_path(
    gpt_disk: LoopDisk, mbr_disk: LoopDisk, tmp_path: Path
) -> None:
    fstab = tmp_path / "fstab"
    fstab.write_text(
        "# <file system> <mount point> <type> <options> <dump> <pass>\n"
        f"UUID={GPT_ROOT_UUID.upper()} / ext4 errors=remount-ro,noatime 0 1\n"
        "LABEL=ESP /boot/efi vfat umask=0077 0 1\n"
        f"/dev/disk/by-uuid/{GPT_SWAP_UUID} none swap sw 0 0\n"
        'LABEL="mbrroot" /srv/old\\040root ext4 ro\n'
        "PARTUUID=5a3e1c2b-02 /home xfs nodev,nosuid 0 2\n"
        f"{mbr_disk.parts[3]} none swap sw,pri=5 0 0\n"
        "tmpfs /tmp tmpfs nosuid,nodev 0 0\n"
        "\n"
    )
    layout = capture([gpt_disk.device, mbr_disk.device], fstab=fstab)
    assert [d.path for d in layout.disks] == [gpt_disk.device, mbr_disk.device]
    options = {fs.device: fs.fstab_options for fs in layout.all_filesystems()}
    assert options == {
        gpt_disk.parts[1]: "umask=0077",
        gpt_disk.parts[2]: "errors=remount-ro,noatime",
        gpt_disk.parts[3]: "sw",
        mbr_disk.parts[0]: "ro",
        mbr_disk.parts[1]: "nodev,nosuid",
        mbr_disk.parts[3]: "sw,pri=5",
    }
    assert len(layout.fstab) == 7
    assert layout.fstab[3] == FstabEntry('LABEL="mbrroot"', "/srv/old root", "ext4", "ro", 0, 0)
    assert layout.fstab[6] == FstabEntry("tmpfs", "/tmp", "tmpfs", "nosuid,nodev", 0, 0)


def test_a_mounted_file_system_reports_its_mount_point(gpt_disk: LoopDisk, tmp_path: Path) -> None:
    target = tmp_path / "mnt point"  # a space, which mountinfo writes as \040
    target.mkdir()
    sh("mount", "-t", "ext4", gpt_disk.parts[2], str(target))
    try:
        layout = capture([gpt_disk.device], fstab=tmp_path / "no-fstab")
        holding = disks_holding(target)
    finally:
        sh("umount", str(target))
    root = only_disk(layout).partitions[2].filesystem
    assert root is not None and root.mountpoint == str(target)
    others = [p.filesystem for p in only_disk(layout).partitions if p.number != 3]
    assert all(fs is None or fs.mountpoint is None for fs in others)
    assert holding == [gpt_disk.device]
    assert any(f"ext4 {target} (LABEL rootfs" in line for line in layout_summary(layout))
    # and once unmounted, no mount point is recorded
    again = capture([gpt_disk.device], fstab=tmp_path / "no-fstab")
    fs = only_disk(again).partitions[2].filesystem
    assert fs is not None and fs.mountpoint is None


def test_captured_layouts_round_trip_through_json(
    gpt_disk: LoopDisk, mbr_disk: LoopDisk, tmp_path: Path
) -> None:
    fstab = tmp_path / "fstab"
    fstab.write_text(
        f"UUID={GPT_ROOT_UUID} / ext4 defaults 0 1\nLABEL=home /home xfs defaults 0 2\n"
    )
    for devices in ([gpt_disk.device], [mbr_disk.device], [gpt_disk.device, mbr_disk.device]):
        layout = capture(devices, fstab=fstab)
        data = layout_to_dict(layout)
        text = json.dumps(data, sort_keys=True)
        assert json.loads(text) == data
        again = layout_from_dict(json.loads(text))
        assert again == layout
        assert layout_to_dict(again) == data


def test_summary_lines(gpt_disk: LoopDisk, mbr_disk: LoopDisk, tmp_path: Path) -> None:
    layout = capture([gpt_disk.device, mbr_disk.device], fstab=tmp_path / "no-fstab")
    gpt_name, mbr_name = (os.path.basename(d) for d in (gpt_disk.device, mbr_disk.device))
    assert layout_summary(layout) == [
        f"{gpt_name} 200 MiB gpt: 1 1 MiB BIOS boot, "
        "2 64 MiB EFI System vfat (LABEL ESP, UUID DEAD-BEEF), "
        f"3 100 MiB ext4 (LABEL rootfs, UUID {GPT_ROOT_UUID}), "
        f"4 32 MiB swap (LABEL swapper, UUID {GPT_SWAP_UUID})",
        f"{mbr_name} 400 MiB dos: 1 64 MiB bootable ext4 (LABEL mbrroot, UUID {MBR_ROOT_UUID}), "
        f"2 300 MiB xfs (LABEL home, UUID {MBR_HOME_UUID}), 3 34 MiB Extended, "
        f"5 32 MiB swap (LABEL mbrswap, UUID {MBR_SWAP_UUID})",
    ]


def test_a_secret_inside_a_label_does_not_change_the_layout(gpt_disk: LoopDisk) -> None:
    """A passphrase that equals part of a label must not turn "swapper" into "swa***er"."""
    execute.register_secret("swapp")
    layout = capture([gpt_disk.device])
    labels = {fs.label for fs in layout.all_filesystems()}
    assert "swapper" in labels


def test_partitions_without_kernel_nodes_are_probed_through_the_disk(
    loops: None, tmp_path: Path
) -> None:
    """After `partx -d` the kernel knows no partitions; the table and file systems still read."""
    with loop_disk(tmp_path / "nonodes.img", "64M") as device:
        parts = partition(device, "label: gpt\nsize=32MiB, type=linux, name=data\n")
        sh("mkfs.ext4", "-q", "-F", "-U", GPT_ROOT_UUID, "-L", "data", parts[0])
        sh("partx", "-d", device)
        assert not Path(parts[0]).exists()
        layout = capture([device], fstab=tmp_path / "no-fstab")
    (part,) = only_disk(layout).partitions
    assert part.path == f"{device}p1" and part.name == "data"
    assert part.filesystem is not None
    assert (part.filesystem.type, part.filesystem.uuid) == ("ext4", GPT_ROOT_UUID)
    assert loop_devices_of(tmp_path) == []


def test_a_disk_without_a_table_and_a_blank_disk(loops: None, tmp_path: Path) -> None:
    with (
        loop_disk(tmp_path / "bare.img", "64M") as bare,
        loop_disk(tmp_path / "blank.img", "64M") as blank,
    ):
        sh("mkfs.ext4", "-q", "-F", "-U", GPT_ROOT_UUID, "-L", "whole", bare)
        layout = capture([bare, blank], fstab=tmp_path / "no-fstab")
    whole, empty = layout.disks
    assert whole.table is None and whole.partitions == []
    assert whole.filesystem is not None and whole.filesystem.uuid == GPT_ROOT_UUID
    assert empty.table is None and empty.filesystem is None
    assert layout_summary(layout)[1] == f"{empty.name} 64 MiB blank"


def test_luks_container_is_recorded_as_present(loops: None, tmp_path: Path) -> None:
    need("cryptsetup", package="cryptsetup-bin")
    uuid = "0b5f3c2e-4444-4a2b-9c3d-000000000004"
    with loop_disk(tmp_path / "luks.img", "64M") as device:
        parts = partition(device, "label: gpt\nsize=40MiB, type=linux\n")
        sh(
            "cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
            "--pbkdf-force-iterations", "1000", "--uuid", uuid, "--key-file", "-", parts[0],
            input="not a real secret",
        )  # fmt: skip
        layout = capture([device], fstab=tmp_path / "no-fstab")
    assert layout.luks == [LuksContainer(device=parts[0], uuid=uuid, version="2", mapping=None)]
    fs = only_disk(layout).partitions[0].filesystem
    assert fs is not None and fs.type == "crypto_LUKS"
    assert f"LUKS2 on {parts[0]} (UUID {uuid})" in layout_summary(layout)


def logical_volumes_text(*lvs: tuple[str, str, int, int]) -> str:
    """A VG metadata `logical_volumes` section as vgcfgbackup writes it: each LV given as
    (name, id, first extent on pv0, extent count) is one linear segment."""
    sections = [
        f"""\t\t{name} {{
\t\t\tid = "{lv_id}"
\t\t\tstatus = ["READ", "WRITE", "VISIBLE"]
\t\t\tflags = []
\t\t\tsegment_count = 1
\t\t\tsegment1 {{
\t\t\t\tstart_extent = 0
\t\t\t\textent_count = {count}
\t\t\t\ttype = "striped"
\t\t\t\tstripe_count = 1
\t\t\t\tstripes = ["pv0", {first}]
\t\t\t}}
\t\t}}
"""
        for name, lv_id, first, count in lvs
    ]
    return "\n\tlogical_volumes {\n" + "".join(sections) + "\t}\n"


def test_lvm_on_a_partition_is_captured(loops: None, tmp_path: Path) -> None:
    """A real VG on a loop partition. lvcreate needs device-mapper, which this kernel lacks, so
    the LVs are written into the VG metadata with vgcfgrestore; they exist, inactive."""
    need("pvcreate", "vgcreate", "vgcfgbackup", "vgcfgrestore", package="lvm2")
    vg = f"rescuet{os.getpid()}"
    root_id, swap_id = (
        "r00tLV-aaaa-bbbb-cccc-dddd-eeee-ffffff",
        "swapLV-aaaa-bbbb-cccc-dddd-eeee-ffffff",
    )
    # Keep LVM's metadata backups and archives in tmp_path, not in the host's /etc/lvm.
    keep = f'backup {{ backup_dir="{tmp_path}/backup" archive_dir="{tmp_path}/archive" }}'
    env = {**os.environ, "LVM_SUPPRESS_FD_WARNINGS": "1"}

    def lvm(command: str, *argv: str) -> None:
        subprocess.run(
            [command, "--config", keep, *argv],
            env=env,
            check=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )

    with loop_disk(tmp_path / "lvm.img", "128M") as device:
        parts = partition(device, f"label: gpt\nsize=100MiB, type={LINUX_LVM}\n")
        lvm("pvcreate", "-y", parts[0])
        lvm("vgcreate", "-s", "4M", vg, parts[0])
        config = tmp_path / "vg.cfg"
        lvm("vgcfgbackup", "-f", str(config), vg)
        text = config.read_text()
        cut = text.rindex("}")
        text = (
            text[:cut]
            + logical_volumes_text(("root", root_id, 0, 10), ("swap", swap_id, 10, 4))
            + text[cut:]
        )
        config.write_text(text.replace("seqno = 1", "seqno = 2"))
        lvm("vgcfgrestore", "-f", str(config), vg)
        layout = capture([device], fstab=tmp_path / "no-fstab")
    assert loop_devices_of(tmp_path) == []

    pv_fs = only_disk(layout).partitions[0].filesystem
    assert pv_fs is not None and pv_fs.type == "LVM2_member"
    assert layout.lvm is not None
    (pv,) = layout.lvm.pvs
    assert (pv.device, pv.vg, pv.uuid) == (parts[0], vg, pv_fs.uuid)
    (group,) = layout.lvm.vgs
    assert (group.name, group.extent_size_bytes) == (vg, 4 * 1024 * 1024)
    assert [(lv.name, lv.vg, lv.uuid, lv.size_bytes) for lv in layout.lvm.lvs] == [
        ("root", vg, root_id, 40 * 1024 * 1024),
        ("swap", vg, swap_id, 16 * 1024 * 1024),
    ]
    assert layout.lvm.lvs[0].path == f"/dev/{vg}/root"
    assert layout.lvm.lvs[0].segtype == "linear"
    assert all(lv.filesystem is None for lv in layout.lvm.lvs)  # inactive: nothing to probe
    # lvm's reporting commands would write /etc/lvm/backup/VG when it is missing; not in a capture
    assert not Path(f"/etc/lvm/backup/{vg}").exists()
    assert layout_from_dict(json.loads(json.dumps(layout_to_dict(layout)))) == layout
    assert f"VG {vg} 96 MiB on {parts[0]} (extent 4 MiB): root 40 MiB, swap 16 MiB" in (
        layout_summary(layout)
    )


def test_loop_disk_detaches_and_removes_nodes_even_when_the_body_fails(
    loops: None, tmp_path: Path
) -> None:
    before = loop_devices_of(tmp_path)
    nodes: list[str] = []
    with (
        pytest.raises(RuntimeError, match="the test body failed"),
        loop_disk(tmp_path / "leak.img", "64M") as device,
    ):
        nodes = partition(device, "label: dos\nsize=16MiB, type=83\ntype=83\n")
        assert len(nodes) == 2 and all(Path(n).exists() for n in nodes)
        assert len(loop_devices_of(tmp_path)) == 1
        raise RuntimeError("the test body failed")
    assert before == [] and loop_devices_of(tmp_path) == []
    assert not any(Path(n).exists() for n in nodes)


def test_wrong_devices_are_refused(gpt_disk: LoopDisk, tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="not a whole disk"):
        capture([gpt_disk.parts[2]])
    (tmp_path / "file").write_text("x")
    with pytest.raises(LayoutError, match="not a block device"):
        capture([str(tmp_path / "file")])
    with pytest.raises(LayoutError, match="No such file"):
        capture([str(tmp_path / "nothing")])
    assert capture([], fstab=tmp_path / "no-fstab") == Layout()


def test_all_disks_skips_loop_devices_that_were_not_named(gpt_disk: LoopDisk) -> None:
    try:
        layout = capture()
    except LayoutError as exc:
        # This machine's sandbox refuses to open its own root disk (EPERM): that must be a
        # clear error, never a disk recorded as blank.
        assert "cannot probe" in str(exc)
        return
    assert gpt_disk.device not in [d.path for d in layout.disks]
    assert all(not d.name.startswith(("loop", "zram", "ram", "sr")) for d in layout.disks)


# --- the model ------------------------------------------------------------------------------


def sample_layout() -> Layout:
    """Every class of the model, LVM and MD included, as a QEMU guest would record them."""
    root_fs = Filesystem("ext4", "/dev/mapper/vg0-root", uuid="u-root", mountpoint="/")
    return Layout(
        disks=[
            Disk(
                name="vda",
                path="/dev/vda",
                size_bytes=20 * 1024**3,
                model="QEMU HARDDISK",
                serial="S1",
                wwn="0x5000c500a1b2c3d4",
                by_id=["virtio-S1"],
                table="gpt",
                table_id=GPT_ID,
                first_lba=2048,
                last_lba=41943006,
                partitions=[
                    Partition(1, "/dev/vda1", 2048, 2048, BIOS_BOOT, "g1", "BIOS boot"),
                    Partition(
                        2, "/dev/vda2", 4096, 1048576, ESP, "g2", "EFI", "RequiredPartition",
                        filesystem=Filesystem("vfat", "/dev/vda2", uuid="DEAD-BEEF", volume_id="DEADBEEF"),
                    ),
                    Partition(
                        3, "/dev/vda3", 1052672, 40000000, "A19D880F-05FC-4D3B-A006-743F0F84911E",
                        filesystem=Filesystem("linux_raid_member", "/dev/vda3", uuid="m", uuid_sub="s"),
                    ),
                ],
            )
        ],
        raids=[
            RaidArray(
                "md0", "/dev/md0", "raid1", "3f1c9a2b:5d6e7f80:91a2b3c4:d5e6f708", "1.2",
                "debian:0", "0", 2, ["/dev/vda3", "/dev/vdb3"], [], 20 * 1024**3,
                Filesystem("LVM2_member", "/dev/md0", uuid="pv-uuid"),
            )
        ],
        lvm=LvmLayout(
            pvs=[PhysicalVolume("/dev/md0", "pv-uuid", "vg0", 20 * 1024**3, 20 * 1024**3, 1048576)],
            vgs=[VolumeGroup("vg0", "vg-uuid", 4 * 1024**2, 20 * 1024**3, 1024**3)],
            lvs=[
                LogicalVolume(
                    "root", "vg0", "lv-uuid", 8 * 1024**3, "/dev/vg0/root",
                    "/dev/mapper/vg0-root", "linear", 1, "-wi-ao----", root_fs,
                ),
                LogicalVolume("crypt", "vg0", "lv2", 1024**3, "/dev/vg0/crypt", "/dev/mapper/vg0-crypt",
                              filesystem=Filesystem("crypto_LUKS", "/dev/mapper/vg0-crypt", uuid="l1", version="2")),
            ],
        ),
        luks=[LuksContainer("/dev/mapper/vg0-crypt", "l1", "2", "secret")],
        filesystems=[Filesystem("xfs", "/dev/mapper/secret", uuid="x1", mountpoint="/srv")],
        fstab=[FstabEntry("/dev/vg0/root", "/", "ext4", "errors=remount-ro", 0, 1)],
    )  # fmt: skip


def test_the_whole_model_round_trips() -> None:
    layout = sample_layout()
    data = layout_to_dict(layout)
    assert layout_from_dict(json.loads(json.dumps(data))) == layout
    assert data["raids"][0]["filesystem"]["type"] == "LVM2_member"
    assert data["lvm"]["lvs"][0]["filesystem"]["mountpoint"] == "/"
    assert [fs.device for fs in layout.all_filesystems()] == [
        "/dev/vda2", "/dev/vda3", "/dev/md0", "/dev/mapper/vg0-root",
        "/dev/mapper/vg0-crypt", "/dev/mapper/secret",
    ]  # fmt: skip


def test_fstab_matches_an_lv_by_either_of_its_paths() -> None:
    layout = sample_layout()
    apply_fstab(layout, parse_fstab("/dev/vg0/root / ext4 errors=remount-ro 0 1\n"))
    assert layout.lvm is not None and layout.lvm.lvs[0].filesystem is not None
    assert layout.lvm.lvs[0].filesystem.fstab_options == "errors=remount-ro"
    layout = sample_layout()
    apply_fstab(layout, parse_fstab("/dev/mapper/vg0-root / ext4 noatime 0 1\n"))
    assert layout.lvm is not None and layout.lvm.lvs[0].filesystem is not None
    assert layout.lvm.lvs[0].filesystem.fstab_options == "noatime"


def test_malformed_layout_data_is_refused_clearly() -> None:
    data = layout_to_dict(sample_layout())
    bad = json.loads(json.dumps(data))
    bad["disks"][0]["partitions"][0]["colour"] = "red"
    with pytest.raises(
        LayoutError, match=r"unknown key\(s\) colour in Layout.disks\[0\].partitions\[0\]"
    ):
        layout_from_dict(bad)
    bad = json.loads(json.dumps(data))
    bad["disks"][0]["size_bytes"] = "20G"
    with pytest.raises(LayoutError, match=r"Layout.disks\[0\].size_bytes must be an integer"):
        layout_from_dict(bad)
    bad = json.loads(json.dumps(data))
    del bad["disks"][0]["path"]
    with pytest.raises(LayoutError, match=r"Layout.disks\[0\] has no path"):
        layout_from_dict(bad)
    bad = json.loads(json.dumps(data))
    bad["disks"][0]["partitions"][0]["bootable"] = 1
    with pytest.raises(LayoutError, match="must be a bool"):
        layout_from_dict(bad)
    with pytest.raises(LayoutError, match="must be an object"):
        layout_from_dict([])


def test_human_sizes() -> None:
    assert human_size(1024**2) == "1 MiB"
    assert human_size(512 * 1024**2) == "512 MiB"
    assert human_size(int(18.5 * 1024**3)) == "18.5 GiB"
    assert human_size(20 * 1024**3) == "20.0 GiB"
    assert human_size(100000 * 512) == "48.8 MiB"
    assert human_size(0) == "0 B"


# --- parsers on recorded output -------------------------------------------------------------

# Recorded on this host (lvm2 2.03.16) through rescue.process.execute.run, which merges stderr, with the
# exact arguments capture uses, from a VG made as in test_lvm_on_a_partition_is_captured.
PVS_OUTPUT = """\
  {
      "report": [
          {
              "pv": [
                  {"pv_name":"/dev/loop1", "vg_name":"rescuevg", "pv_uuid":"xiqpUd-gg7H-wsfu-Fa82-dKOF-HMjS-jIhvfq", "pv_size":"130023424", "dev_size":"134217728", "pe_start":"1048576"}
              ]
          }
      ]
      ,
      "log": [
      ]
  }"""
VGS_OUTPUT = """\
  {
      "report": [
          {
              "vg": [
                  {"vg_name":"rescuevg", "vg_uuid":"2dLXcv-O8LE-mT7K-NDg3-ebRT-N3rO-99GQuK", "vg_extent_size":"4194304", "vg_size":"130023424", "vg_free":"71303168"}
              ]
          }
      ]
      ,
      "log": [
      ]
  }"""
# lvs without device-mapper logs errors into the report, and ends the log array with a comma.
LVS_OUTPUT = """\
  {
      "report": [
          {
              "lv": [
                  {"lv_name":"root", "vg_name":"rescuevg", "lv_uuid":"r00tLV-aaaa-bbbb-cccc-dddd-eeee-ffffff", "lv_size":"41943040", "lv_path":"/dev/rescuevg/root", "lv_dm_path":"/dev/mapper/rescuevg-root", "segtype":"linear", "stripes":"1", "lv_attr":"-wi-XX----"},
                  {"lv_name":"swap", "vg_name":"rescuevg", "lv_uuid":"swapLV-aaaa-bbbb-cccc-dddd-eeee-ffffff", "lv_size":"16777216", "lv_path":"/dev/rescuevg/swap", "lv_dm_path":"/dev/mapper/rescuevg-swap", "segtype":"linear", "stripes":"1", "lv_attr":"-wi-XX----"}
              ]
          }
      ]
      ,
      "log": [
          {"log_seq_num":"1", "log_type":"error", "log_context":"processing", "log_object_type":"lv", "log_object_name":"root", "log_object_id":"r00tLV-aaaa-bbbb-cccc-dddd-eeee-ffffff", "log_object_group":"rescuevg", "log_object_group_id":"2dLXcv-O8LE-mT7K-NDg3-ebRT-N3rO-99GQuK", "log_message":"/dev/mapper/control: open failed: No such device", "log_errno":"-1", "log_ret_code":"0"},
      ]
  }"""
# Without log/report_command_log=1, lvm's stderr lands between the lines of the report.
LVS_INTERLEAVED = """\
  {
      "report": [
  /dev/mapper/control: open failed: No such device
  Failure to communicate with kernel device-mapper driver.
  Check that device-mapper is available in the kernel.
  Incompatible libdevmapper 1.02.185 (2022-05-18) and kernel driver (unknown version).
          {
              "lv": [
                  {"lv_name":"root", "vg_name":"rescuevg", "lv_attr":"-wi-XX----", "lv_size":"41943040", "pool_lv":"", "origin":"", "data_percent":"", "metadata_percent":"", "move_pv":"", "mirror_log":"", "copy_percent":"", "convert_lv":""},
                  {"lv_name":"swap", "vg_name":"rescuevg", "lv_attr":"-wi-XX----", "lv_size":"16777216", "pool_lv":"", "origin":"", "data_percent":"", "metadata_percent":"", "move_pv":"", "mirror_log":"", "copy_percent":"", "convert_lv":""}
              ]
          }
      ]
  }"""
PVS_EMPTY = """\
  {
      "report": [
          {
              "pv": [
              ]
          }
      ]
      ,
      "log": [
      ]
  }"""


def test_lvm_reports_from_this_host_parse() -> None:
    (pv,) = parse_pvs(parse_lvm_report(PVS_OUTPUT, "pv"))
    assert (pv.device, pv.vg, pv.uuid) == (
        "/dev/loop1", "rescuevg", "xiqpUd-gg7H-wsfu-Fa82-dKOF-HMjS-jIhvfq",
    )  # fmt: skip
    assert (pv.size_bytes, pv.dev_size_bytes, pv.pe_start_bytes) == (130023424, 134217728, 1048576)
    (vg,) = parse_vgs(parse_lvm_report(VGS_OUTPUT, "vg"))
    assert (vg.name, vg.extent_size_bytes, vg.size_bytes, vg.free_bytes) == (
        "rescuevg", 4194304, 130023424, 71303168,
    )  # fmt: skip
    lvs = parse_lvs(parse_lvm_report(LVS_OUTPUT, "lv"))
    assert [(lv.name, lv.size_bytes, lv.stripes, lv.attr) for lv in lvs] == [
        ("root", 41943040, 1, "-wi-XX----"),
        ("swap", 16777216, 1, "-wi-XX----"),
    ]
    assert lvs[1].dm_path == "/dev/mapper/rescuevg-swap"
    assert parse_lvm_report(PVS_EMPTY, "pv") == []
    # stderr is kept apart (run_probe), so lvm's warnings never reach the report: a report
    # with them inside is refused, never half read
    with pytest.raises(LayoutError, match="lvm printed no JSON"):
        parse_lvm_report(LVS_INTERLEAVED, "lv")


def test_a_probe_keeps_its_warnings_out_of_its_json(tmp_path: Path) -> None:
    """A real child that warns on stderr while it prints JSON: the JSON is read whole, and a
    failing probe's error is its last words on stderr."""
    script = "echo 'sfdisk: warning: GPT PMBR size mismatch' >&2; echo '{\"a\": 1}'"
    assert parse_json_output(run_probe_ok(["sh", "-c", script]), "sh") == {"a": 1}
    failing = "echo '{\"a\":'; echo 'lsblk: /dev/x: not a block device' >&2; exit 32"
    with pytest.raises(LayoutError, match=r"^sh failed: lsblk: /dev/x: not a block device$"):
        run_probe_ok(["sh", "-c", failing])
    with pytest.raises(LayoutError, match="lsblk printed no JSON"):
        parse_json_output("lsblk: /dev/x: not a block device", "lsblk")


# /proc/mdstat as the kernel's md.c (md_seq_show) prints it: an active RAID1 with a failed
# member and a spare, a read-only one, a RAID0 on whole disks, an inactive array and a 0.90 one.
MDSTAT = """\
Personalities : [raid1] [raid0] [raid6] [raid5] [raid4] [linear] [multipath] [raid10]
md1 : active raid1 vdb2[1] vda2[0](F) vdc2[2](S)
      19904512 blocks super 1.2 [2/1] [_U]
      bitmap: 1/1 pages [4KB], 65536KB chunk

md0 : active (auto-read-only) raid1 vdb1[1] vda1[0]
      523264 blocks super 1.2 [2/2] [UU]

md2 : active raid0 vdd[1] vde[0]
      2093056 blocks super 1.2 512k chunks

md3 : inactive vdf1[0](S)
      1046528 blocks super 1.2

md4 : active raid1 sdb1[1] sda1[0]
      1048512 blocks [2/2] [UU]

unused devices: <none>
"""

# `mdadm --detail --export` as mdadm's Detail.c prints it (metadata 1.2 arrays).
MDADM_EXPORT = """\
MD_LEVEL=raid1
MD_DEVICES=2
MD_METADATA=1.2
MD_UUID=3f1c9a2b:5d6e7f80:91a2b3c4:d5e6f708
MD_DEVNAME=root
MD_RESHAPE_ACTIVE=False
MD_NAME=debian:root
MD_DEVICE_dev_vdb2_ROLE=1
MD_DEVICE_dev_vdb2_DEV=/dev/vdb2
MD_DEVICE_dev_vda2_ROLE=0
MD_DEVICE_dev_vda2_DEV=/dev/vda2
MD_DEVICE_dev_vdc2_ROLE=spare
MD_DEVICE_dev_vdc2_DEV=/dev/vdc2
"""


def test_mdstat_parses() -> None:
    md1, md0, md2, md3, md4 = parse_mdstat(MDSTAT)
    assert (md1.name, md1.active, md1.level, md1.metadata) == ("md1", True, "raid1", "1.2")
    assert [(m.name, m.index, m.flags) for m in md1.members] == [
        ("vdb2", 1, ""), ("vda2", 0, "F"), ("vdc2", 2, "S"),
    ]  # fmt: skip
    assert (md1.blocks, md1.raid_devices) == (19904512, 2)
    assert (md0.level, [m.name for m in md0.members]) == ("raid1", ["vdb1", "vda1"])
    assert (md2.level, md2.blocks, md2.raid_devices) == ("raid0", 2093056, None)
    assert (md3.active, md3.level, md3.members[0].flags) == (False, None, "S")
    assert (md4.metadata, md4.raid_devices) == (None, 2)


def test_mdadm_export_parses() -> None:
    detail = parse_mdadm_export(MDADM_EXPORT)
    assert detail["MD_LEVEL"] == "raid1" and detail["MD_METADATA"] == "1.2"
    assert detail["MD_UUID"] == "3f1c9a2b:5d6e7f80:91a2b3c4:d5e6f708"
    assert detail["members"] == [(0, "/dev/vda2"), (1, "/dev/vdb2")]
    assert detail["spares"] == ["/dev/vdc2"]


def test_md_arrays_are_followed_from_the_recorded_disks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wiring around mdstat and mdadm, with a stand-in mdadm (no md in this kernel)."""
    from rescue.layout import md
    from rescue.layout.kernel import MountTable

    mdstat = tmp_path / "mdstat"
    mdstat.write_text(MDSTAT)
    monkeypatch.setattr(md, "PROC_MDSTAT", mdstat)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no mdadm anywhere
    mounts = MountTable("", "")
    with pytest.raises(CommandNotFoundError, match="mdadm is not installed"):
        md.capture_raids({"vda2", "vdb2"}, mounts)
    assert md.capture_raids({"vdz1"}, mounts) == []

    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "mdadm"
    fake.write_text(f"#!/bin/sh\nprintf '%s' '{MDADM_EXPORT}'\n")  # a builtin: PATH is bare
    fake.chmod(0o755)
    (raid,) = md.capture_raids({"vda2", "vdb2"}, mounts)
    assert raid == RaidArray(
        name="md1",
        path="/dev/md1",
        level="raid1",
        uuid="3f1c9a2b:5d6e7f80:91a2b3c4:d5e6f708",
        metadata="1.2",
        md_name="debian:root",
        devname="root",
        raid_devices=2,
        devices=["/dev/vda2", "/dev/vdb2"],
        spares=["/dev/vdc2"],
        size_bytes=19904512 * 1024,
        filesystem=None,
    )


def test_blkid_export_unescapes() -> None:
    values = parse_blkid_export(
        "DEVNAME=/dev/loop0p2\nLABEL=my\\ disk\\$1\nTYPE=vfat\n"
        "PART_ENTRY_NAME=EFI\\ system\nblkid: warning: something\n"
    )
    assert values == {
        "DEVNAME": "/dev/loop0p2",
        "LABEL": "my disk$1",
        "TYPE": "vfat",
        "PART_ENTRY_NAME": "EFI system",
    }


def test_mountinfo_and_fstab_parse() -> None:
    mounts = parse_mountinfo(
        "24 1 254:0 / / rw,relatime shared:1 - ext4 /dev/root rw\n"
        "40 24 7:3 / /mnt/a\\040b rw master:2 - xfs /dev/loop3 rw\n"
        "41 24 0:45 /@home /home rw - btrfs /dev/vdb2 rw,subvol=/@home\n"
    )
    assert [(m.major, m.minor, m.root, m.mountpoint, m.fstype, m.source) for m in mounts] == [
        (254, 0, "/", "/", "ext4", "/dev/root"),
        (7, 3, "/", "/mnt/a b", "xfs", "/dev/loop3"),
        (0, 45, "/@home", "/home", "btrfs", "/dev/vdb2"),
    ]
    entries = parse_fstab(
        "# comment\n\n  # indented comment\n"
        "UUID=abc / ext4 defaults 0 1\n"
        "/dev/disk/by-label/my\\x20data /data xfs\n"
        "proc /proc proc\n"
    )
    assert entries == [
        FstabEntry("UUID=abc", "/", "ext4", "defaults", 0, 1),
        FstabEntry("/dev/disk/by-label/my\\x20data", "/data", "xfs", "defaults", 0, 0),
        FstabEntry("proc", "/proc", "proc", "defaults", 0, 0),
    ]
    layout = Layout(
        disks=[
            Disk("vdb", "/dev/vdb", 1, filesystem=Filesystem("xfs", "/dev/vdb", label="my data"))
        ]
    )
    apply_fstab(layout, entries)
    assert layout.disks[0].filesystem is not None
    assert layout.disks[0].filesystem.fstab_options == "defaults"
