"""Disk mapping: the rules on constructed disks, then the safety refusals on real loop disks.

The unit tests hand map_disks a SystemState, so every rule is covered without devices. The loop
tests read the state of this machine for real: a mounted file system, active swap, a backup
directory on a target, and the disk of the running / must each be refused. They need root and
detach every loop device and unmount everything they set up, which the tests check.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from loopdisks import LAYOUT_TOOLS, LINUX, SWAP, loop_devices_of, loop_disk, partition, sh

from rescue.errors import DiskMappingError
from rescue.layout import LayoutError
from rescue.layout.capture import capture
from rescue.layout.mapping import (
    describe_mapping,
    left_out_disks,
    map_disks,
    mirror_twins,
    read_mapping_file,
)
from rescue.layout.model import Disk, Filesystem, Layout, Partition, RaidArray
from rescue.layout.system_state import SystemState, read_in_use, read_system_state

GiB = 1024**3
MiB = 1024**2
SAFE = SystemState()


def disk(
    name: str,
    size: int,
    *,
    serial: str | None = None,
    wwn: str | None = None,
    by_id: tuple[str, ...] = (),
    blank: bool = False,
) -> Disk:
    """A disk as capture records it; with one partition unless blank."""
    parts = [] if blank else [Partition(1, f"/dev/{name}1", 2048, 4096, LINUX)]
    return Disk(
        name=name,
        path=f"/dev/{name}",
        size_bytes=size,
        serial=serial,
        wwn=wwn,
        by_id=list(by_id),
        table=None if blank else "gpt",
        partitions=parts,
    )


def layout(*disks: Disk) -> Layout:
    return Layout(disks=list(disks))


# --- the rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source_ids", "target_ids"),
    [
        ({"serial": "S1"}, {"serial": "S1"}),
        ({"wwn": "0x5000C500A1B2C3D4"}, {"wwn": "0x5000c500a1b2c3d4"}),
        ({"by_id": ("virtio-S1",)}, {"by_id": ("ata-X", "virtio-S1")}),
    ],
)
def test_the_same_disk_back_wins_over_size(source_ids: dict, target_ids: dict) -> None:
    source = layout(disk("vda", 20 * GiB, **source_ids))
    exact = disk("sdb", 20 * GiB)
    same = disk("sdc", 32 * GiB, **target_ids)
    assert map_disks(source, [exact, same], state=SAFE) == {"/dev/vda": "/dev/sdc"}


def test_empty_ids_never_match() -> None:
    source = layout(disk("vda", 20 * GiB, serial="", wwn="", by_id=("",)))
    exact = disk("sdb", 20 * GiB)
    other = disk("sdc", 32 * GiB, serial="", wwn="", by_id=("",))
    assert map_disks(source, [other, exact], state=SAFE) == {"/dev/vda": "/dev/sdb"}


def test_the_exact_size_is_preferred() -> None:
    source = layout(disk("vda", 20 * GiB))
    targets = [disk("sdb", 32 * GiB), disk("sdc", 20 * GiB), disk("sdd", 25 * GiB)]
    assert map_disks(source, targets, state=SAFE) == {"/dev/vda": "/dev/sdc"}


def test_the_smallest_disk_that_fits_is_chosen() -> None:
    source = layout(disk("vda", 20 * GiB))
    targets = [disk("sdb", 40 * GiB), disk("sdc", 25 * GiB), disk("sdd", 10 * GiB)]
    assert map_disks(source, targets, state=SAFE) == {"/dev/vda": "/dev/sdc"}


def test_two_equally_good_candidates_are_never_guessed_between() -> None:
    source = layout(disk("vda", 20 * GiB))
    targets = [disk("sdb", 32 * GiB), disk("sdc", 32 * GiB), disk("sdd", 64 * GiB)]
    with pytest.raises(DiskMappingError) as info:
        map_disks(source, targets, state=SAFE)
    message = str(info.value)
    assert "/dev/vda" in message
    assert (
        f"/dev/sdb (32.0 GiB, {32 * GiB} bytes), /dev/sdc (32.0 GiB, {32 * GiB} bytes)" in message
    )
    assert "/dev/sdd" not in message
    assert "mapping file" in message and "'/dev/vda /dev/sdb'" in message
    assert "\n" not in message
    assert info.value.exit_code == 61

    # Two of the exact size are just as ambiguous; so are two that differ by a few MiB.
    with pytest.raises(DiskMappingError, match="2 same-size target disks"):
        map_disks(source, [disk("sdb", 20 * GiB), disk("sdc", 20 * GiB)], state=SAFE)
    near = [disk("sdb", 32 * GiB), disk("sdc", 32 * GiB - 4 * MiB)]
    with pytest.raises(DiskMappingError, match=r"/dev/sdc .*/dev/sdb "):
        map_disks(source, near, state=SAFE)


def test_a_target_too_small_is_refused_with_both_sizes() -> None:
    source = layout(disk("vda", 20 * GiB))
    with pytest.raises(DiskMappingError) as info:
        map_disks(source, [disk("sdb", 10 * GiB)], state=SAFE)
    message = str(info.value)
    assert message.startswith(f"no safe target disk for /dev/vda (20.0 GiB, {20 * GiB} bytes)")
    assert (
        f"/dev/sdb is smaller than /dev/vda: 10.0 GiB ({10 * GiB} bytes)"
        f" < 20.0 GiB ({20 * GiB} bytes)"
    ) in message
    with pytest.raises(DiskMappingError, match=r"cannot map /dev/vda to /dev/sdb: .* smaller"):
        map_disks(source, [disk("sdb", 10 * GiB)], {"/dev/vda": "/dev/sdb"}, state=SAFE)
    # One byte short is short.
    with pytest.raises(DiskMappingError, match="smaller"):
        map_disks(source, [disk("sdb", 20 * GiB - 1)], state=SAFE)


def test_an_explicit_mapping_is_honoured() -> None:
    source = layout(disk("vda", 20 * GiB, serial="S1"), disk("vdb", 10 * GiB))
    targets = [disk("sdb", 20 * GiB, serial="S1"), disk("sdc", 32 * GiB), disk("sdd", 10 * GiB)]
    explicit = {"/dev/vda": "/dev/sdc"}
    # vda goes where it is told, although sdb is its own disk; vdb still maps by size.
    assert map_disks(source, targets, explicit, state=SAFE) == {
        "/dev/vda": "/dev/sdc",
        "/dev/vdb": "/dev/sdd",
    }
    # A target named by a by-id name of this machine, and a source by its kernel name.
    targets[1].by_id = ["ata-BIG_DISK_42"]
    by_name = {"vda": "/dev/disk/by-id/ata-BIG_DISK_42"}
    assert map_disks(source, targets, by_name, state=SAFE)["/dev/vda"] == "/dev/sdc"


def test_explicit_mappings_that_make_no_sense_are_refused() -> None:
    source = layout(disk("vda", 20 * GiB), disk("vdb", 20 * GiB))
    targets = [disk("sdb", 32 * GiB), disk("sdc", 32 * GiB)]
    with pytest.raises(DiskMappingError, match="names /dev/vdz, which is not a disk of the"):
        map_disks(source, targets, {"/dev/vdz": "/dev/sdb"}, state=SAFE)
    with pytest.raises(DiskMappingError, match=r"/dev/sdz: it is not one of the target disks"):
        map_disks(source, targets, {"/dev/vda": "/dev/sdz"}, state=SAFE)
    twice = {"/dev/vda": "/dev/sdb", "/dev/vdb": "/dev/sdb"}
    with pytest.raises(DiskMappingError, match="/dev/sdb: it is already mapped to /dev/vda"):
        map_disks(source, targets, twice, state=SAFE)


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (SystemState(mounted={"/dev/sdb": ["/mnt", "/srv"]}), "is mounted at /mnt, /srv"),
        (SystemState(mounted={"/dev/sdb": ["[SWAP]"]}), "is in use as swap"),
        (SystemState(running={"/dev/sdb": "/"}), r"holds the running system \(/\)"),
        (
            SystemState(running={"/dev/sdb": "the rescue media at /run/live/medium"}),
            r"holds the running system \(the rescue media at /run/live/medium\)",
        ),
        (SystemState(backup={"/dev/sdb": "/srv/backup"}), r"holds the backup \(/srv/backup\)"),
        (SystemState(in_use={"/dev/sdb": ["vg0-root"]}), "is in use by vg0-root"),
    ],
)
def test_an_unsafe_target_is_refused_and_never_picked(state: SystemState, reason: str) -> None:
    source = layout(disk("vda", 20 * GiB))
    unsafe = disk("sdb", 20 * GiB)
    with pytest.raises(
        DiskMappingError, match=f"cannot map /dev/vda to /dev/sdb: /dev/sdb {reason}"
    ):
        map_disks(source, [unsafe], {"/dev/vda": "/dev/sdb"}, state=state)
    with pytest.raises(DiskMappingError, match=f"no safe target disk for /dev/vda .*{reason}"):
        map_disks(source, [unsafe], state=state)
    # Not picked, even though it is the exact size and the safe one is twice as large.
    safe = disk("sdc", 40 * GiB)
    assert map_disks(source, [unsafe, safe], state=state) == {"/dev/vda": "/dev/sdc"}


def test_no_safe_candidate_lists_why_each_was_refused() -> None:
    source = layout(disk("vda", 20 * GiB))
    targets = [
        disk("sda", 20 * GiB),
        disk("sdb", 20 * GiB),
        disk("sdc", 20 * GiB),
        disk("sdd", 10 * GiB),
    ]
    state = SystemState(
        running={"/dev/sda": "/"}, mounted={"/dev/sdb": ["/mnt"]}, backup={"/dev/sdc": "/bk"}
    )
    with pytest.raises(DiskMappingError) as info:
        map_disks(source, targets, state=state)
    message = str(info.value)
    assert "/dev/sda holds the running system (/)" in message
    assert "/dev/sdb is mounted at /mnt" in message
    assert "/dev/sdc holds the backup (/bk)" in message
    assert "/dev/sdd is smaller than /dev/vda" in message
    assert "\n" not in message
    with pytest.raises(DiskMappingError, match="this machine has no target disks"):
        map_disks(source, [], state=SAFE)


def test_the_same_disk_back_but_unsafe_is_not_swapped_for_another() -> None:
    """Its own disk is there but mounted: writing to some other disk instead would surprise."""
    source = layout(disk("vda", 20 * GiB, serial="S1"))
    targets = [disk("sdb", 20 * GiB, serial="S1"), disk("sdc", 20 * GiB)]
    state = SystemState(mounted={"/dev/sdb": ["/mnt"]})
    with pytest.raises(
        DiskMappingError, match=r"/dev/vda is back as /dev/sdb \(serial S1\), but /dev/sdb is mou"
    ):
        map_disks(source, targets, state=state)
    assert map_disks(source, targets, {"/dev/vda": "/dev/sdc"}, state=state) == {
        "/dev/vda": "/dev/sdc"
    }


def test_each_target_is_used_at_most_once() -> None:
    source = layout(disk("vda", 20 * GiB), disk("vdb", 10 * GiB), disk("vdc", 5 * GiB))
    targets = [disk("sdb", 30 * GiB), disk("sdc", 20 * GiB), disk("sdd", 12 * GiB)]
    mapping = map_disks(source, targets, state=SAFE)
    assert mapping == {"/dev/vda": "/dev/sdc", "/dev/vdb": "/dev/sdd", "/dev/vdc": "/dev/sdb"}
    # Two sources, one disk: the second is refused and told where the disk went.
    two = layout(disk("vda", 20 * GiB), disk("vdb", 20 * GiB))
    with pytest.raises(DiskMappingError, match="/dev/sdc is already mapped to /dev/vda"):
        map_disks(two, [disk("sdc", 20 * GiB)], state=SAFE)
    # The same disk back is not handed out twice either.
    same = layout(disk("vda", 20 * GiB, serial="S1"), disk("vdb", 20 * GiB))
    targets = [disk("sdb", 20 * GiB, serial="S1"), disk("sdc", 20 * GiB)]
    assert map_disks(same, targets, state=SAFE) == {"/dev/vda": "/dev/sdb", "/dev/vdb": "/dev/sdc"}


def test_larger_sources_choose_first() -> None:
    """vdb (10G) gets the 12G disk that fits it tightly, and vda (5G) what is left."""
    source = layout(disk("vda", 5 * GiB), disk("vdb", 10 * GiB))
    targets = [disk("sdb", 30 * GiB), disk("sdc", 12 * GiB)]
    assert map_disks(source, targets, state=SAFE) == {
        "/dev/vda": "/dev/sdb",
        "/dev/vdb": "/dev/sdc",
    }
    # Order never strands a source that some assignment could serve.
    source = layout(disk("vda", 10 * GiB), disk("vdb", 20 * GiB), disk("vdc", 15 * GiB))
    targets = [disk("sdb", 16 * GiB), disk("sdc", 25 * GiB), disk("sdd", 11 * GiB)]
    assert map_disks(source, targets, state=SAFE) == {
        "/dev/vda": "/dev/sdd",
        "/dev/vdb": "/dev/sdc",
        "/dev/vdc": "/dev/sdb",
    }


def test_blank_source_disks_are_skipped() -> None:
    whole_fs = disk("vdc", 5 * GiB, blank=True)
    whole_fs.filesystem = Filesystem("xfs", "/dev/vdc")
    source = layout(disk("vda", 20 * GiB), disk("vdb", 50 * GiB, blank=True), whole_fs)
    targets = [disk("sdb", 20 * GiB), disk("sdc", 5 * GiB)]
    assert map_disks(source, targets, state=SAFE) == {
        "/dev/vda": "/dev/sdb",
        "/dev/vdc": "/dev/sdc",
    }
    assert map_disks(layout(disk("vdb", 50 * GiB, blank=True)), [], state=SAFE) == {}


def _mounted_at(name: str, size: int, *points: str) -> Disk:
    """A source disk with one partition per mount point, each an ext4 mounted there."""
    src = disk(name, size)
    src.partitions = [
        Partition(
            n, f"/dev/{name}{n}", 2048 * n, 2048, LINUX,
            filesystem=Filesystem("ext4", f"/dev/{name}{n}", mountpoint=point),
        )
        for n, point in enumerate(points, start=1)
    ]  # fmt: skip
    return src


def test_a_disk_holding_only_excluded_file_systems_is_left_out() -> None:
    """The disk of a file destination (/backup, excluded) is not the restored system's: mapping
    it would erase the backup. The scenario: one target for the system disk, and the backup
    disk, same serial, back as well."""
    system = _mounted_at("vda", 4 * GiB, "/boot", "/")
    backups = _mounted_at("vdb", 2 * GiB, "/backup")
    backups.serial = "BACKUPS"
    source = layout(system, backups)
    targets = [disk("sda", 6 * GiB), disk("sdb", 2 * GiB, serial="BACKUPS")]
    excluded = ["/proc", "/backup", "/mnt"]
    assert map_disks(source, targets, state=SAFE, excluded=excluded) == {"/dev/vda": "/dev/sda"}
    assert describe_mapping(source, targets, {"/dev/vda": "/dev/sda"}, excluded)[1] == (
        "/dev/vdb (2.0 GiB, serial BACKUPS): holds only excluded file systems (/backup), "
        "nothing is written for it"
    )
    # Without the exclusion, it is the restored system's disk and comes back on its own disk.
    assert map_disks(source, targets, state=SAFE) == {
        "/dev/vda": "/dev/sda",
        "/dev/vdb": "/dev/sdb",
    }
    # An explicit mapping still takes it.
    explicit = {"/dev/vdb": "/dev/sdb"}
    assert map_disks(source, targets, explicit, state=SAFE, excluded=excluded) == {
        "/dev/vda": "/dev/sda",
        "/dev/vdb": "/dev/sdb",
    }


@pytest.mark.parametrize(
    "points",
    [("/backup", "/srv"), ("/backup", None), ("/backupx",)],
    ids=["an included mount", "an unmounted file system", "a mere prefix"],
)
def test_a_disk_with_anything_else_on_it_stays_in(points: tuple[str | None, ...]) -> None:
    src = _mounted_at("vdb", 2 * GiB, *(p or "/x" for p in points))
    for part, point in zip(src.partitions, points, strict=True):
        assert part.filesystem is not None
        part.filesystem.mountpoint = point
    source = layout(src)
    assert left_out_disks(source, ["/backup"]) == {}
    assert map_disks(source, [disk("sdb", 2 * GiB)], state=SAFE, excluded=["/backup"]) == {
        "/dev/vdb": "/dev/sdb"
    }


def test_a_swap_or_member_partition_keeps_a_disk_in() -> None:
    src = _mounted_at("vdb", 2 * GiB, "/backup")
    src.partitions.append(Partition(2, "/dev/vdb2", 8192, 2048, SWAP))
    assert left_out_disks(layout(src), ["/backup"]) == {}
    assert left_out_disks(
        layout(_mounted_at("vdc", GiB, "/backup/a", "/backup")), ["/backup/"]
    ) == {"/dev/vdc": ["/backup", "/backup/a"]}


def test_protected_paths_are_added_to_a_given_state() -> None:
    """A given state still learns the disks of the protected paths (here: the disk of /)."""
    root = root_disk()
    if root is None:
        pytest.skip("/ is on no block device here (overlay, tmpfs or nfs)")
    source = layout(disk("vda", 20 * MiB))
    with pytest.raises(DiskMappingError, match=rf"{root.path} holds the backup \(/\)"):
        map_disks(source, [root], protected=["file:///"], state=SAFE)


def test_describe_mapping() -> None:
    source = layout(
        disk("vda", 20 * GiB, serial="X"),
        disk("vdb", 10 * GiB, wwn="0x5000"),
        disk("vdc", 5 * GiB),
        disk("vdd", 1 * GiB, blank=True),
    )
    targets = [
        disk("sdb", 32 * GiB),
        disk("sdc", 10 * GiB, wwn="0x5000"),
        disk("sdd", 5 * GiB),
    ]
    targets[2].logical_sector_size = 4096
    mapping = {"/dev/vda": "/dev/sdb", "/dev/vdb": "/dev/sdc", "/dev/vdc": "/dev/sdd"}
    assert describe_mapping(source, targets, mapping) == [
        "/dev/vda (20.0 GiB, serial X) -> /dev/sdb (32.0 GiB): larger by 12.0 GiB",
        "/dev/vdb (10.0 GiB, WWN 0x5000) -> /dev/sdc (10.0 GiB): the same disk (WWN 0x5000)",
        "/dev/vdc (5.0 GiB) -> /dev/sdd (5.0 GiB): same size; logical sectors 512 -> 4096 bytes",
        "/dev/vdd (1.0 GiB): blank in the backup, nothing is written for it",
    ]


# --- mirror twins ---------------------------------------------------------------------------

RAID = "A19D880F-05FC-4D3B-A006-743F0F84911E"
BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
TWINS = "mirror twins: any order is the same"


def member(name: str, number: int, start: int, size: int = 2048, kind: str = RAID) -> Partition:
    """A partition holding an MD member, with a partition UUID of its own (twins differ there)."""
    path = f"/dev/{name}{number}"
    fs = Filesystem("linux_raid_member", path, uuid="md-uuid", uuid_sub=f"{name}-{number}")
    return Partition(number, path, start, size, kind, uuid=f"{name}-part{number}", filesystem=fs)


def mirror(*names: str, size: int = 20 * GiB, arrays: int = 2) -> Layout:
    """The Debian installer's RAID1: disks partitioned alike, partition n of each a member of
    md{n-1}."""
    disks = [
        Disk(
            name=name,
            path=f"/dev/{name}",
            size_bytes=size,
            table="gpt",
            partitions=[member(name, n, 2048 * n) for n in range(1, arrays + 1)],
        )
        for name in names
    ]
    raids = [
        RaidArray(f"md{n}", f"/dev/md{n}", "raid1", uuid=f"u:{n}", devices=[])
        for n in range(arrays)
    ]
    for d in disks:
        for part in d.partitions:
            raids[part.number - 1].devices.append(part.path)
    return Layout(disks=disks, raids=raids)


def test_mirror_twins_take_equal_targets_in_order(caplog: pytest.LogCaptureFixture) -> None:
    """Two halves of the same mirrors on two new disks of one size: any order gives the same
    machine, so the twins take the targets in path order instead of stopping the recovery."""
    source = mirror("vdb", "vda")
    assert mirror_twins(source) == {
        "/dev/vda": ["/dev/vda", "/dev/vdb"],
        "/dev/vdb": ["/dev/vda", "/dev/vdb"],
    }
    caplog.set_level("INFO", logger="rescue.layout")
    exact = [disk("sdc", 20 * GiB), disk("sdb", 20 * GiB)]
    assert map_disks(source, exact, state=SAFE) == {"/dev/vdb": "/dev/sdc", "/dev/vda": "/dev/sdb"}
    assert f"/dev/vda -> /dev/sdb ({TWINS})" in caplog.text
    assert f"/dev/vdb -> /dev/sdc ({TWINS})" in caplog.text
    # The smallest that fit, a few MiB apart, are just as interchangeable; the bigger one is
    # not a candidate and is left alone.
    fits = [disk("sde", 64 * GiB), disk("sdd", 32 * GiB - 4 * MiB), disk("sdc", 32 * GiB)]
    assert map_disks(source, fits, state=SAFE) == {"/dev/vdb": "/dev/sdd", "/dev/vda": "/dev/sdc"}
    # A three-way mirror on three equal disks.
    three = mirror("vda", "vdb", "vdc", arrays=1)
    targets = [disk("sdb", 20 * GiB), disk("sdc", 20 * GiB), disk("sdd", 20 * GiB)]
    assert map_disks(three, targets, state=SAFE) == {
        "/dev/vda": "/dev/sdb",
        "/dev/vdb": "/dev/sdc",
        "/dev/vdc": "/dev/sdd",
    }


def test_whole_disk_members_and_empty_partitions_make_twins() -> None:
    """Disks without a table that are members of one array are twins; so are disks whose
    partitions are members or hold nothing at all (the BIOS boot partition of GPT RAID1)."""
    whole = [
        Disk(
            name=n,
            path=f"/dev/{n}",
            size_bytes=20 * GiB,
            filesystem=Filesystem("linux_raid_member", f"/dev/{n}", uuid="md-uuid"),
        )
        for n in ("vda", "vdb")
    ]
    raid = RaidArray("md0", "/dev/md0", "raid1", uuid="u:0", devices=["/dev/vda", "/dev/vdb"])
    whole_layout = Layout(disks=whole, raids=[raid])
    targets = [disk("sdb", 20 * GiB), disk("sdc", 20 * GiB)]
    assert map_disks(whole_layout, targets, state=SAFE) == {
        "/dev/vda": "/dev/sdb",
        "/dev/vdb": "/dev/sdc",
    }
    boot = mirror("vda", "vdb", arrays=1)
    for d in boot.disks:
        bios = Partition(1, f"/dev/{d.name}1", 34, 2014, BIOS_BOOT, uuid=f"{d.name}-bios")
        d.partitions = [bios, member(d.name, 2, 4096)]
    boot.raids[0].devices = ["/dev/vda2", "/dev/vdb2"]
    assert mirror_twins(boot)["/dev/vda"] == ["/dev/vda", "/dev/vdb"]
    assert map_disks(boot, targets, state=SAFE) == {"/dev/vda": "/dev/sdb", "/dev/vdb": "/dev/sdc"}
    # A spare of the same array counts as a member.
    boot.raids[0].devices, boot.raids[0].spares = ["/dev/vda2"], ["/dev/vdb2"]
    assert mirror_twins(boot)["/dev/vdb"] == ["/dev/vda", "/dev/vdb"]


def _other_size(src: Layout) -> None:
    src.disks[1].size_bytes -= MiB


def _other_sectors(src: Layout) -> None:
    src.disks[1].logical_sector_size = 4096


def _other_table(src: Layout) -> None:
    src.disks[1].table = "dos"


def _other_start(src: Layout) -> None:
    src.disks[1].partitions[1].start_sector += 2048


def _other_type(src: Layout) -> None:
    src.disks[1].partitions[1].type = LINUX


def _other_array(src: Layout) -> None:
    """vdb2 is in an array of its own (md2), not in vda2's md1."""
    src.raids[1].devices.remove("/dev/vdb2")
    src.raids.append(RaidArray("md2", "/dev/md2", "raid1", uuid="u:2", devices=["/dev/vdb2"]))


def _crossed_arrays(src: Layout) -> None:
    """vdb1 is in md1 and vdb2 in md0: the same arrays, but not partition by partition."""
    src.raids[0].devices = ["/dev/vda1", "/dev/vdb2"]
    src.raids[1].devices = ["/dev/vda2", "/dev/vdb1"]


def _a_file_system_outside(src: Layout) -> None:
    """An ESP on each disk, outside any array: which of them /boot/efi was matters."""
    for d in src.disks:
        fs = Filesystem("vfat", f"/dev/{d.name}3", mountpoint="/boot/efi")
        d.partitions.append(Partition(3, f"/dev/{d.name}3", 8192, 2048, LINUX, filesystem=fs))


def _no_arrays(src: Layout) -> None:
    """Two disks alike, each partition its own file system: not a mirror at all."""
    src.raids = []
    for d in src.disks:
        for part in d.partitions:
            part.filesystem = Filesystem("ext4", part.path)


def _other_boot_flag(src: Layout) -> None:
    src.disks[0].partitions[0].bootable = True


@pytest.mark.parametrize(
    "change",
    [
        _other_size,
        _other_sectors,
        _other_table,
        _other_start,
        _other_type,
        _other_array,
        _crossed_arrays,
        _a_file_system_outside,
        _no_arrays,
        _other_boot_flag,
    ],
    ids=lambda f: f.__name__.strip("_").replace("_", " "),
)
def test_disks_that_are_not_twins_are_still_never_guessed(
    change: Callable[[Layout], None],
) -> None:
    source = mirror("vda", "vdb")
    change(source)
    assert mirror_twins(source) == {}
    targets = [disk("sdb", 32 * GiB), disk("sdc", 32 * GiB)]
    with pytest.raises(DiskMappingError, match="rescue does not guess") as info:
        map_disks(source, targets, state=SAFE)
    assert info.value.exit_code == 61


def test_mirror_twins_get_no_more_than_the_strict_rules_allow() -> None:
    source = mirror("vda", "vdb")
    equal = [disk("sdb", 20 * GiB), disk("sdc", 20 * GiB), disk("sdd", 20 * GiB)]
    # More equal candidates than twins: which disk is spared would be a guess.
    with pytest.raises(DiskMappingError, match=r"3 same-size target disks.*does not guess"):
        map_disks(source, equal, state=SAFE)
    # One twin placed explicitly: the other still has two candidates to choose between.
    with pytest.raises(DiskMappingError, match=r"^/dev/vdb .*2 same-size target disks"):
        map_disks(source, equal, {"/dev/vda": "/dev/sdb"}, state=SAFE)
    # An explicit mapping is honoured as it is, in any order.
    explicit = {"/dev/vda": "/dev/sdc", "/dev/vdb": "/dev/sdb"}
    assert map_disks(source, equal[:2], explicit, state=SAFE) == explicit
    # An unsafe disk is no candidate: the two safe ones are taken, the mounted one left alone.
    mounted = SystemState(mounted={"/dev/sdc": ["/srv"]})
    assert map_disks(source, equal, state=mounted) == {
        "/dev/vda": "/dev/sdb",
        "/dev/vdb": "/dev/sdd",
    }
    # With one safe disk for two twins, the second twin has no target, and is told why.
    with pytest.raises(DiskMappingError, match=r"no safe target disk for /dev/vdb.*mounted at"):
        map_disks(source, equal[:2], state=mounted)
    # A twin back by serial keeps its own disk; the other takes the one left.
    source.disks[1].serial = "S1"
    equal[2].serial = "S1"
    assert map_disks(source, equal[1:], state=SAFE) == {
        "/dev/vda": "/dev/sdc",
        "/dev/vdb": "/dev/sdd",
    }


def test_twins_are_placed_before_a_disk_that_can_go_elsewhere() -> None:
    """A plain disk of the twins' size, listed first, does not take one of the two equal
    disks the twins need: it goes to the next that fits, whatever the order of the disks."""
    twins = mirror("vdb", "vdc")
    plain = disk("vda", 20 * GiB)
    targets = [disk("sdb", 20 * GiB), disk("sdc", 20 * GiB), disk("sdd", 32 * GiB)]
    expected = {"/dev/vda": "/dev/sdd", "/dev/vdb": "/dev/sdb", "/dev/vdc": "/dev/sdc"}
    for disks in ([plain, *twins.disks], [*twins.disks, plain]):
        source = Layout(disks=disks, raids=twins.raids)
        assert map_disks(source, targets, state=SAFE) == expected
    # The same in the smallest-fit pass.
    bigger = [disk("sdb", 32 * GiB), disk("sdc", 32 * GiB), disk("sdd", 64 * GiB)]
    source = Layout(disks=[plain, *twins.disks], raids=twins.raids)
    assert map_disks(source, bigger, state=SAFE) == {
        "/dev/vda": "/dev/sdd",
        "/dev/vdb": "/dev/sdb",
        "/dev/vdc": "/dev/sdc",
    }


def test_describe_mapping_says_why_twins_need_no_choice() -> None:
    source = mirror("vda", "vdb")
    targets = [disk("sdb", 20 * GiB), disk("sdc", 20 * GiB)]
    mapping = map_disks(source, targets, state=SAFE)
    assert describe_mapping(source, targets, mapping) == [
        f"/dev/vda (20.0 GiB) -> /dev/sdb (20.0 GiB): same size; {TWINS}",
        f"/dev/vdb (20.0 GiB) -> /dev/sdc (20.0 GiB): same size; {TWINS}",
    ]
    # Not on targets that are not alike (one is much larger).
    other = [disk("sdb", 20 * GiB), disk("sdc", 64 * GiB)]
    mapping = {"/dev/vda": "/dev/sdb", "/dev/vdb": "/dev/sdc"}
    assert not any(TWINS in line for line in describe_mapping(source, other, mapping))


# --- mapping files --------------------------------------------------------------------------


def test_a_mapping_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "disks.map"
    path.write_text(
        "# source   target\n"
        "\n"
        "/dev/vda /dev/sdb\n"
        "   /dev/vdb\t/dev/disk/by-id/ata-BIG_DISK_42   # the big one\n"
    )
    assert read_mapping_file(path) == {
        "/dev/vda": "/dev/sdb",
        "/dev/vdb": "/dev/disk/by-id/ata-BIG_DISK_42",
    }


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("/dev/vda /dev/sdb\n\n/dev/vdb\n", r"line 3: expected 'SOURCE TARGET'.*got '/dev/vdb'"),
        ("# x\n/dev/vda /dev/sdb /dev/sdc\n", "line 2: expected 'SOURCE TARGET'"),
        ("/dev/vda -> /dev/sdb\n", "line 1: expected"),
        ("vda sdb\n", "line 1: expected"),
        ("/dev/vda /dev/sdb\n/dev/vda /dev/sdc\n", "line 2: /dev/vda is mapped a second time"),
        (
            "/dev/vda /dev/sdb\n/dev/vdb /dev/sdb\n",
            "line 2: /dev/sdb is already the target on line 1",
        ),
    ],
)
def test_a_malformed_mapping_file_names_the_line(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "disks.map"
    path.write_text(text)
    with pytest.raises(DiskMappingError, match=match):
        read_mapping_file(path)


def test_a_missing_mapping_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DiskMappingError, match=r"cannot read the disk mapping file .*nothing"):
        read_mapping_file(tmp_path / "nothing")


def test_stacked_holders_mark_a_disk_in_use(tmp_path: Path) -> None:
    """read_in_use on a sysfs-shaped tree: a holder on the disk or on one of its partitions."""
    for rel in ("sda/holders/md0", "sda/sda1/holders", "sdb/sdb2/holders/dm-7", "sdc/holders"):
        (tmp_path / rel).mkdir(parents=True)
    (tmp_path / "sdb/sdb2/partition").write_text("2\n")
    (tmp_path / "sda/sda1/partition").write_text("1\n")
    in_use = read_in_use(tmp_path)
    assert in_use == {"/dev/sda": ["md0"], "/dev/sdb": ["dm-7"]}


# --- real loop disks ------------------------------------------------------------------------

TOOLS = {**LAYOUT_TOOLS, "swapon": "util-linux", "mount": "mount"}


@dataclass
class Source:
    device: str
    layout: Layout


@pytest.fixture(scope="module")
def source(loops: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    """A 64 MiB GPT disk with an ext4 root and swap, captured as a backup would record it."""
    directory = tmp_path_factory.mktemp("source")
    fstab = directory / "no-fstab"
    with loop_disk(directory / "source.img", "64M") as device:
        parts = partition(
            device, f"label: gpt\nsize=40MiB, type={LINUX}, name=root\ntype={SWAP}, name=swap\n"
        )
        sh("mkfs.ext4", "-q", "-F", "-L", "srcroot", parts[0])
        sh("mkswap", "-L", "srcswap", parts[1])
        yield Source(device, capture([device], fstab=fstab))
    assert loop_devices_of(directory) == []


def captured(device: str, tmp_path: Path) -> Disk:
    (target,) = capture([device], fstab=tmp_path / "no-fstab").disks
    return target


def mounts_under(directory: Path) -> list[str]:
    text = Path("/proc/self/mountinfo").read_text()
    return [line for line in text.splitlines() if str(directory) in line]


@contextlib.contextmanager
def ext4_target(tmp_path: Path) -> Iterator[tuple[str, Disk, str]]:
    """A 96 MiB loop disk with one 40 MiB ext4 partition: (device, its capture, the partition)."""
    with loop_disk(tmp_path / "target.img", "96M") as device:
        parts = partition(device, f"label: gpt\nsize=40MiB, type={LINUX}\n")
        sh("mkfs.ext4", "-q", "-F", parts[0])
        yield device, captured(device, tmp_path), parts[0]


@contextlib.contextmanager
def mounted(part: str, mnt: Path) -> Iterator[Path]:
    """part mounted at mnt (made here) while the body runs, unmounted however it ends."""
    mnt.mkdir()
    sh("mount", part, str(mnt))
    try:
        yield mnt
    finally:
        sh("umount", str(mnt))


def test_real_disks_map_by_size_and_a_smaller_one_is_refused(
    source: Source, tmp_path: Path
) -> None:
    (src,) = source.layout.disks
    assert src.size_bytes == 64 * MiB and len(src.partitions) == 2
    with (
        loop_disk(tmp_path / "same.img", "64M") as same_dev,
        loop_disk(tmp_path / "larger.img", "96M") as larger_dev,
        loop_disk(tmp_path / "smaller.img", "48M") as smaller_dev,
    ):
        same, larger, smaller = (captured(d, tmp_path) for d in (same_dev, larger_dev, smaller_dev))
        assert same.table is None and same.partitions == []  # blank, as a new disk is

        assert map_disks(source.layout, [smaller, larger, same]) == {source.device: same_dev}
        assert map_disks(source.layout, [smaller, larger]) == {source.device: larger_dev}
        with pytest.raises(DiskMappingError) as info:
            map_disks(source.layout, [smaller])
        assert (
            f"{smaller_dev} is smaller than {source.device}: "
            f"48 MiB ({48 * MiB} bytes) < 64 MiB ({64 * MiB} bytes)"
        ) in str(info.value)
        with pytest.raises(DiskMappingError, match=f"cannot map {source.device} to {smaller_dev}"):
            map_disks(source.layout, [smaller, larger], {source.device: smaller_dev})

        mapping = map_disks(source.layout, [larger, same], {source.device: larger_dev})
        assert describe_mapping(source.layout, [larger, same], mapping) == [
            f"{source.device} (64 MiB) -> {larger_dev} (96 MiB): larger by 32 MiB"
        ]
    assert loop_devices_of(tmp_path) == []


def root_disk() -> Disk | None:
    """The whole disk under /, found from st_dev and sysfs, not through the module under test.

    capture() is tried first; this sandbox refuses to open its own root disk (EPERM), so the Disk
    is then built from sysfs. None when / is on no block device (overlay, tmpfs, nfs).
    """
    dev = os.stat("/").st_dev
    if os.major(dev) == 0:
        return None
    sys_dir = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}").resolve()
    slaves = sorted((sys_dir / "slaves").glob("*"))
    if slaves:  # / on LVM or MD: the first disk under it will do
        sys_dir = Path("/sys/class/block", slaves[0].name).resolve()
    if (sys_dir / "partition").exists():
        sys_dir = sys_dir.parent
    path = f"/dev/{sys_dir.name}"
    if not stat.S_ISBLK(os.stat(path).st_mode):
        return None
    try:
        (found,) = capture([path], fstab=Path("/nonexistent/fstab")).disks
        return found
    except LayoutError:
        size = int((sys_dir / "size").read_text()) * 512
        return Disk(name=sys_dir.name, path=path, size_bytes=size)


def test_a_mounted_target_is_refused(source: Source, tmp_path: Path) -> None:
    with ext4_target(tmp_path) as (device, target, part):
        with mounted(part, tmp_path / "mnt") as mnt:
            assert read_system_state().mounted[device] == [str(mnt)]
            with pytest.raises(DiskMappingError) as info:
                map_disks(source.layout, [target])
            assert str(info.value) == (
                f"no safe target disk for {source.device} (64 MiB, {64 * MiB} bytes):"
                f" {device} is mounted at {mnt}"
            )
            with pytest.raises(DiskMappingError) as info:
                map_disks(source.layout, [target], {source.device: device})
            assert str(info.value) == (
                f"cannot map {source.device} to {device}: {device} is mounted at {mnt}"
            )
        assert map_disks(source.layout, [target]) == {source.device: device}
    assert mounts_under(tmp_path) == []
    assert loop_devices_of(tmp_path) == []


def test_a_target_with_active_swap_is_refused(source: Source, tmp_path: Path) -> None:
    with loop_disk(tmp_path / "target.img", "96M") as device:
        parts = partition(device, f"label: gpt\nsize=8MiB, type={SWAP}\n")
        sh("mkswap", parts[0])
        target = captured(device, tmp_path)
        sh("swapon", parts[0])
        try:
            with pytest.raises(DiskMappingError, match=f"{device} is in use as swap"):
                map_disks(source.layout, [target])
        finally:
            sh("swapoff", parts[0])
        assert map_disks(source.layout, [target]) == {source.device: device}
    assert loop_devices_of(tmp_path) == []


def test_a_target_holding_the_backup_is_refused(source: Source, tmp_path: Path) -> None:
    with (
        ext4_target(tmp_path) as (device, target, part),
        mounted(part, tmp_path / "mnt") as mnt,
    ):
        backup = mnt / "backup"
        backup.mkdir()
        for protected in (backup, f"file://{backup}"):
            with pytest.raises(DiskMappingError) as info:
                map_disks(source.layout, [target], protected=[protected])
            assert f"{device} holds the backup ({backup})" in str(info.value)
            with pytest.raises(DiskMappingError) as info:
                map_disks(source.layout, [target], {source.device: device}, protected=[protected])
            assert str(info.value) == (
                f"cannot map {source.device} to {device}: {device} holds the backup ({backup})"
            )
    assert mounts_under(tmp_path) == []
    assert loop_devices_of(tmp_path) == []


def test_the_disk_of_the_running_root_is_refused(source: Source, tmp_path: Path) -> None:
    root = root_disk()
    if root is None:
        pytest.skip("/ is on no block device here (overlay, tmpfs or nfs)")
    assert read_system_state().running.get(root.path) == "/"
    # As large as the source exactly, so the size rule alone would choose it.
    (src,) = source.layout.disks
    root = dataclasses.replace(root, size_bytes=src.size_bytes)
    refused = rf"{root.path} holds the running system \(/\)"
    with pytest.raises(
        DiskMappingError, match=f"no safe target disk for {source.device} .*{refused}"
    ):
        map_disks(source.layout, [root])
    with pytest.raises(
        DiskMappingError, match=f"cannot map {source.device} to {root.path}: {refused}"
    ):
        map_disks(source.layout, [root], {source.device: root.path})
    with loop_disk(tmp_path / "larger.img", "96M") as device:
        larger = captured(device, tmp_path)
        assert map_disks(source.layout, [root, larger]) == {source.device: device}
    assert loop_devices_of(tmp_path) == []
