"""btrfs subvolumes: captured from a real btrfs on a loop disk, kept through the model's JSON,
and made again by the recreate script on a blank loop disk, then captured back.

The source is an Ubuntu-style root: `@` (the default) for /, `@home` for /home, `@snapshots`
with a read-only snapshot of `@` in it, a nested plain subvolume `@/var/lib/machines`, a
read-only plain subvolume, an oddly named one inside a plain directory of `@home`, and two
deleted ones (ids the recreated file system must skip too, for `subvolid=`). The loop-disk
tests need root and losetup; every loop device and mount is undone in a finally. The planning
rules that a loop disk cannot show cheaply (a default that is a snapshot, a subvolume moved
below a newer one, btrfs on two devices) are tested on the script's text.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from loopdisks import BIOS_BOOT, LAYOUT_TOOLS, LINUX, loop_devices_of, loop_disk, partition, sh
from test_layout_recreate import sfdisk_lines
from test_layout_recreate_lint import shellcheck

from rescue.errors import LayoutApplyError
from rescue.layout import LayoutError
from rescue.layout.btrfs import parse_default, parse_subvolume_list
from rescue.layout.capture import capture
from rescue.layout.model import (
    BtrfsSubvolume,
    Disk,
    Filesystem,
    Layout,
    Partition,
    layout_from_dict,
    layout_to_dict,
)
from rescue.layout.recreate import OUTPUT_NAME, apply_script, build_script
from rescue.layout.recreate.subvolumes import plan_subvolumes
from rescue.layout.summary import layout_summary

# The tools the loop-disk tests run, and the Debian package of each.
TOOLS = {
    **LAYOUT_TOOLS,
    "wipefs": "util-linux",
    "mkfs.btrfs": "btrfs-progs",
    "btrfs": "btrfs-progs",
}

FS_UUID = "5b7e2c1d-3f4a-4b5c-8d6e-7f8091a2b3c4"
ODD = "@home/a dir/odd 'sub' $x `y`\nline 2"
# (path, id, parent id, read-only, snapshot), in the order the source fixture makes them; ids
# 261 and 262 are deleted again.
SUBVOLUMES = [
    ("@", 256, 5, False, False),
    ("@home", 257, 5, False, False),
    ("@snapshots", 258, 5, False, False),
    ("@snapshots/1", 259, 258, True, True),
    ("@/var/lib/machines", 260, 256, False, False),
    (ODD, 263, 257, False, False),
    ("@ro", 264, 5, True, False),
]
PLAIN = [s for s in SUBVOLUMES if not s[4]]
TABLE = sfdisk_lines(
    "gpt",
    "3C1F6F3C-8C43-4E4B-9E0E-2C1E5A7B9D01",
    [f"start=2048, size=2048, type={BIOS_BOOT}", f"start=4096, type={LINUX}"],
)
SIZE = "200M"


def recorded(fs: Filesystem | None) -> list[tuple[str, int, int, bool, bool]]:
    assert fs is not None and fs.type == "btrfs"
    return [(s.path, s.id, s.parent_id, s.readonly, s.snapshot) for s in fs.subvolumes]


@contextlib.contextmanager
def mounted(device: str, where: Path, *options: str) -> Iterator[Path]:
    """device mounted on where (made if missing), unmounted however the body ends."""
    where.mkdir(parents=True, exist_ok=True)
    sh("mount", "-t", "btrfs", *(["-o", ",".join(options)] if options else []), device, str(where))
    try:
        yield where
    finally:
        sh("umount", str(where))


def make_source_subvolumes(top: Path) -> None:
    """The Ubuntu-style subvolumes of the module docstring, on a top level mounted at top."""

    def btrfs(*argv: str) -> None:
        sh("btrfs", *argv)

    btrfs("subvolume", "create", str(top / "@"))
    (top / "@" / "home").mkdir()
    (top / "@" / "etc").mkdir()
    (top / "@" / "etc" / "hostname").write_text("source\n")
    btrfs("subvolume", "create", str(top / "@home"))
    btrfs("subvolume", "create", str(top / "@snapshots"))
    btrfs("subvolume", "snapshot", "-r", str(top / "@"), str(top / "@snapshots" / "1"))
    (top / "@" / "var" / "lib").mkdir(parents=True)
    btrfs("subvolume", "create", str(top / "@" / "var" / "lib" / "machines"))
    btrfs("subvolume", "create", str(top / "gone-1"))
    btrfs("subvolume", "create", str(top / "gone-2"))
    btrfs("subvolume", "delete", str(top / "gone-1"), str(top / "gone-2"))
    (top / "@home" / "a dir").mkdir()
    btrfs("subvolume", "create", str(top / ODD))
    btrfs("subvolume", "create", str(top / "@ro"))
    btrfs("property", "set", "-ts", str(top / "@ro"), "ro", "true")
    btrfs("subvolume", "set-default", str(top / "@"))


@dataclass
class Source:
    """The source disk captured while @ and @home were mounted, and again unmounted."""

    layout: Layout
    unmounted: Layout
    root: Path
    log: str


@pytest.fixture(scope="module")
def source(loops: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    directory = tmp_path_factory.mktemp("btrfs-source")
    fstab = directory / "fstab"
    fstab.write_text(
        f"UUID={FS_UUID} / btrfs defaults,subvol=@ 0 0\n"
        f"UUID={FS_UUID} /home btrfs defaults,subvol=@home 0 0\n"
    )
    root = directory / "root"
    with loop_disk(directory / "source.img", SIZE) as device:
        parts = partition(device, TABLE)
        sh("mkfs.btrfs", "-q", "-f", "-U", FS_UUID, "-L", "root", parts[1])
        with mounted(parts[1], directory / "top", "subvolid=5") as top:
            make_source_subvolumes(top)
        with (
            mounted(parts[1], root, "subvol=@"),
            mounted(parts[1], root / "home", "subvol=@home"),
        ):
            layout = capture([device], fstab=fstab)
        handler = _Collect()
        logger = logging.getLogger("rescue.layout")
        logger.addHandler(handler)
        old_level = logger.level
        logger.setLevel(logging.INFO)
        try:
            unmounted = capture([device], fstab=fstab)
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old_level)
    assert loop_devices_of(directory) == []
    yield Source(layout, unmounted, root, "\n".join(handler.messages))


class _Collect(logging.Handler):
    """The messages of a logger while a module-scoped fixture runs (caplog is per test)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def btrfs_of(layout: Layout) -> Filesystem:
    fs = layout.disks[0].partitions[1].filesystem
    assert fs is not None
    return fs


# --- capture --------------------------------------------------------------------------------


def test_the_subvolumes_and_the_default_are_captured(source: Source) -> None:
    fs = btrfs_of(source.layout)
    assert (fs.uuid, fs.label, fs.mountpoint) == (FS_UUID, "root", str(source.root))
    assert recorded(fs) == SUBVOLUMES
    assert fs.default_subvolume == "@"
    # the fstab names the file system twice; the first entry's options are the file system's
    assert fs.fstab_options == "defaults,subvol=@"
    assert [(e.mountpoint, e.options) for e in source.layout.fstab] == [
        ("/", "defaults,subvol=@"),
        ("/home", "defaults,subvol=@home"),
    ]


def test_an_unmounted_btrfs_records_no_subvolumes_and_says_why(source: Source) -> None:
    fs = btrfs_of(source.unmounted)
    assert (fs.uuid, fs.mountpoint, fs.subvolumes, fs.default_subvolume) == (
        FS_UUID, None, [], None
    )  # fmt: skip
    assert re.search(r"btrfs on /dev/loop\d+p2 is not mounted: its subvolumes are not", source.log)


def test_the_summary_lists_the_subvolumes_under_the_file_system(source: Source) -> None:
    lines = layout_summary(source.layout)
    device = btrfs_of(source.layout).device
    assert lines[1:] == [
        f"  btrfs subvolumes on {device}: @ (default), @home, @snapshots, @/var/lib/machines,"
        f" {ODD}, @ro (ro); 1 snapshot"
    ]
    assert len(layout_summary(source.unmounted)) == 1


def test_list_parsing_keeps_a_name_with_a_newline_whole() -> None:
    # `btrfs subvolume list -q` as btrfs-progs 6.2 prints it, a name with a newline included:
    # the line after the newline must not read as a record.
    text = "\n".join(
        [
            "ID 256 gen 7 top level 5 parent_uuid -                                    path @",
            "ID 259 gen 7 top level 258 parent_uuid 388bc426-de04-ad4e-ad0c-0e27f2b41c51 path s/1",
            "ID 261 gen 8 top level 5 parent_uuid -                                    path @odd",
            "with nl ID 7 gen 1 top level 5 parent_uuid - path x",
            "ID 262 gen 8 top level 5 parent_uuid -                                    path @ro",
        ]
    )
    assert parse_subvolume_list(text) == [
        (256, 5, False), (259, 258, True), (261, 5, False), (262, 5, False)
    ]  # fmt: skip
    assert parse_default("ID 5 (FS_TREE)\n") == 5
    assert parse_default("ID 256 gen 7 top level 5 path @\n") == 256
    with pytest.raises(LayoutError, match="get-default printed"):
        parse_default("ERROR: not a btrfs filesystem")


# --- the model ------------------------------------------------------------------------------


def text_layout(
    *subvolumes: BtrfsSubvolume, default: str | None = None, devices: int = 1
) -> Layout:
    """One GPT disk /dev/vda with a btrfs on its first `devices` partitions."""
    parts = [
        Partition(
            n, f"/dev/vda{n}", 2048 + (n - 1) * 1048576, 1048576, LINUX,
            filesystem=Filesystem(
                "btrfs", f"/dev/vda{n}", uuid="b1", uuid_sub=f"s{n}", label="data",
                subvolumes=list(subvolumes), default_subvolume=default,
            ),
        )
        for n in range(1, devices + 1)
    ]  # fmt: skip
    return Layout(disks=[Disk("vda", "/dev/vda", 8 * 1024**3, table="gpt", partitions=parts)])


def ubuntu_layout() -> Layout:
    """The source fixture's layout, as text."""
    return text_layout(*(BtrfsSubvolume(*s) for s in SUBVOLUMES), default="@")


def test_subvolumes_round_trip_and_old_layouts_still_load() -> None:
    layout = ubuntu_layout()
    data = layout_to_dict(layout)
    assert layout_from_dict(json.loads(json.dumps(data))) == layout
    fs_data = data["disks"][0]["partitions"][0]["filesystem"]
    assert fs_data["default_subvolume"] == "@"
    assert fs_data["subvolumes"][3] == {
        "path": "@snapshots/1", "id": 259, "parent_id": 258, "readonly": True, "snapshot": True
    }  # fmt: skip
    # a file system without them writes no such keys: what a manifest held before they existed
    flat = layout_to_dict(text_layout())["disks"][0]["partitions"][0]["filesystem"]
    assert "subvolumes" not in flat and "default_subvolume" not in flat
    # a layout written before subvolumes were recorded: no such keys, a flat btrfs
    old = json.loads(json.dumps(data))
    for key in ("subvolumes", "default_subvolume"):
        del old["disks"][0]["partitions"][0]["filesystem"][key]
    fs = layout_from_dict(old).disks[0].partitions[0].filesystem
    assert fs is not None and (fs.uuid, fs.subvolumes, fs.default_subvolume) == ("b1", [], None)
    # strict, like the rest of the model
    bad = json.loads(json.dumps(data))
    bad["disks"][0]["partitions"][0]["filesystem"]["subvolumes"][0]["id"] = "256"
    with pytest.raises(LayoutError, match=r"subvolumes\[0\]\.id must be an integer"):
        layout_from_dict(bad)
    bad = json.loads(json.dumps(data))
    del bad["disks"][0]["partitions"][0]["filesystem"]["subvolumes"][0]["path"]
    with pytest.raises(LayoutError, match=r"subvolumes\[0\] has no path"):
        layout_from_dict(bad)


def test_a_captured_layout_round_trips(source: Source) -> None:
    data = json.loads(json.dumps(layout_to_dict(source.layout)))
    assert layout_from_dict(data) == source.layout


# --- recreate -------------------------------------------------------------------------------


def traced_top(log_dir: Path) -> Path:
    """The temporary mount point of the top level, as sh -x traced its mktemp."""
    found = re.search(r"^\+ rescue_btrfs_top=(\S+)$", (log_dir / OUTPUT_NAME).read_text(), re.M)
    assert found is not None
    return Path(found[1])


def test_the_script_makes_the_subvolumes_again(source: Source, tmp_path: Path) -> None:
    """A broken copy of the script first (it fails with the top level mounted: the trap must
    unmount it, or the real run is refused as a mounted target); then the real one."""
    with loop_disk(tmp_path / "target.img", SIZE) as target:
        script = build_script(source.layout, {source.layout.disks[0].path: target})
        lines = script.splitlines()
        first = next(i for i, ln in enumerate(lines) if ln.startswith("btrfs subvolume create"))
        broken = "\n".join([*lines[: first + 1], "false", *lines[first + 1 :]]) + "\n"
        with pytest.raises(LayoutApplyError):
            apply_script(broken, tmp_path / "broken")
        top = traced_top(tmp_path / "broken")
        assert not top.exists() and str(top) not in Path("/proc/self/mountinfo").read_text()

        apply_script(script, tmp_path / "log")
        top = traced_top(tmp_path / "log")
        assert not top.exists() and str(top) not in Path("/proc/self/mountinfo").read_text()
        part = f"{target}p2"
        # mounted without options: the default subvolume, @
        with mounted(part, tmp_path / "mnt") as mnt:
            assert sh("btrfs", "inspect-internal", "rootid", str(mnt)).strip() == "256"
            assert (mnt / "var" / "lib" / "machines").is_dir()
            assert not (mnt / "etc").exists()  # the files come with the restore, not here
            result = capture([target], fstab=tmp_path / "no-fstab")
        with mounted(part, tmp_path / "top", "subvolid=5") as top_level:
            assert (top_level / "@snapshots").is_dir()
            assert not (top_level / "@snapshots" / "1").exists()
            assert not list(top_level.glob(".rescue-id-*"))
    assert loop_devices_of(tmp_path) == []
    fs = btrfs_of(result)
    assert (fs.uuid, fs.label) == (FS_UUID, "root")
    assert recorded(fs) == PLAIN  # the same paths, ids, parents and read-only flags
    assert fs.default_subvolume == "@"
    assert "\n# not made: @snapshots/1 (a snapshot)\n" in script


# --- the script's text ----------------------------------------------------------------------


def text_script(layout: Layout) -> str:
    targets = [Disk("sdb", "/dev/sdb", 8 * 1024**3)]
    return build_script(layout, {"/dev/vda": "/dev/sdb"}, targets=targets)


def test_the_ubuntu_layout_as_text(tmp_path: Path) -> None:
    script = text_script(ubuntu_layout())
    top = '"$rescue_btrfs_top"'
    odd = "'@home/a dir/odd '\"'\"'sub'\"'\"' $x `y`\nline 2'"
    expected = [
        'mkfs.btrfs -f -U b1 -L data "$D1P1"',
        "# a snapshot is not made: its files are a copy of another subvolume's, or excluded",
        "# not made: @snapshots/1 (a snapshot)",
        "# its subvolumes, parents first, in id order (the same ids, for subvolid=)",
        "rescue_btrfs_top=$(mktemp -d)",
        f"trap 'umount {top} 2>/dev/null || :; rmdir {top} || :' EXIT",
        "trap 'exit 1' HUP INT TERM",
        f'mount -t btrfs -o subvolid=5 "$D1P1" {top}',
        f"btrfs subvolume create {top}/@",
        f"btrfs subvolume create {top}/@home",
        f"btrfs subvolume create {top}/@snapshots",
        "# ids 259-259 are not made: stand-ins keep the ids that follow",
        f"btrfs subvolume create {top}/.rescue-id-259 >/dev/null",
        f"mkdir -p {top}/@/var/lib",
        f"btrfs subvolume create {top}/@/var/lib/machines",
        "# ids 261-262 are not made: stand-ins keep the ids that follow",
        "rescue_id=261",
        'while [ "$rescue_id" -le 262 ]; do',
        '    btrfs subvolume create "$rescue_btrfs_top/.rescue-id-$rescue_id" >/dev/null',
        "    rescue_id=$((rescue_id + 1))",
        "done",
        f"mkdir -p {top}/'@home/a dir'",
        f"btrfs subvolume create {top}/{odd}",
        f"btrfs subvolume create {top}/@ro",
        f"btrfs subvolume delete {top}/.rescue-id-* >/dev/null",
        f"btrfs subvolume set-default {top}/@",
        f"btrfs property set -ts {top}/@ro ro true",
        f"umount {top}",
        f"rmdir {top}",
        "trap - EXIT HUP INT TERM",
        "",
        "echo 'rescue: the disk layout is recreated'",
        "",
    ]
    assert script[script.index("\nmkfs.btrfs ") + 1 :] == "\n".join(expected)
    tools = re.search(r"^for rescue_tool in (.*); do$", script, re.M)
    assert tools is not None and {"btrfs", "mktemp", "mount", "umount"} <= set(tools[1].split())
    path = tmp_path / "layout-recreate.sh"
    path.write_text(script)
    result = shellcheck(path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_a_btrfs_without_recorded_subvolumes_is_made_flat_as_before() -> None:
    script = text_script(text_layout())
    assert "mkfs.btrfs -f -U b1 -L data" in script
    assert "subvolume" not in script and "mktemp" not in script
    tools = re.search(r"^for rescue_tool in (.*); do$", script, re.M)
    assert tools is not None and "btrfs" not in tools[1].split()


def test_a_default_snapshot_is_made_plain_and_what_is_inside_a_snapshot_is_not() -> None:
    """openSUSE after a rollback: the default is a snapshot. And a subvolume moved below one
    made later (a lower id than its parent) comes after it, with a new id."""
    subvolumes = [
        BtrfsSubvolume("@", 256),
        BtrfsSubvolume("@/.snapshots", 257, 256),
        BtrfsSubvolume("@/.snapshots/1/snapshot", 258, 257, readonly=True, snapshot=True),
        BtrfsSubvolume("@/.snapshots/2/snapshot", 259, 257, snapshot=True),
        BtrfsSubvolume("@/.snapshots/1/snapshot/inner", 260, 258),
        BtrfsSubvolume("@/.snapshots/2/snapshot/var", 261, 259),
        BtrfsSubvolume("moved", 262, 5),
        BtrfsSubvolume("moved/home", 263, 262),
        BtrfsSubvolume("moved/home/old", 200, 263),
    ]
    layout = text_layout(*subvolumes, default="@/.snapshots/2/snapshot")
    fs = layout.disks[0].partitions[0].filesystem
    assert fs is not None
    plan = plan_subvolumes(fs)
    assert [s.path for s in plan.made] == [
        "@", "@/.snapshots", "@/.snapshots/2/snapshot", "@/.snapshots/2/snapshot/var",
        "moved", "moved/home", "moved/home/old",
    ]  # fmt: skip
    assert [(s.path, why) for s, why in plan.skipped] == [
        ("@/.snapshots/1/snapshot", "a snapshot"),
        ("@/.snapshots/1/snapshot/inner", "inside @/.snapshots/1/snapshot, which is not made"),
    ]
    assert plan.gaps == {2: (258, 258), 3: (260, 260)}
    script = text_script(layout)
    for line in [
        "# @/.snapshots/2/snapshot is a snapshot, but the default subvolume: made as a plain one",
        "# moved/home/old gets a new id instead of 200 (made after its parent)",
        "# not made: @/.snapshots/1/snapshot/inner (inside @/.snapshots/1/snapshot, which is"
        " not made)",
        'btrfs subvolume set-default "$rescue_btrfs_top"/@/.snapshots/2/snapshot',
        'mkdir -p "$rescue_btrfs_top"/@/.snapshots/2',
    ]:
        assert line in script.splitlines()
    assert "ro true" not in script  # the read-only one is a snapshot, and not made


def test_only_snapshots_or_a_lost_default_make_no_mount() -> None:
    snap = BtrfsSubvolume("snap", 256, snapshot=True)
    inner = BtrfsSubvolume("snap/inner", 257, 256)
    script = text_script(text_layout(snap, inner, default="snap/inner"))
    lines = script.splitlines()
    assert "# not made: snap (a snapshot)" in lines
    assert "# not made: snap/inner (inside snap, which is not made)" in lines
    assert (
        "# the default subvolume snap/inner is not made: the default stays the top level" in lines
    )
    assert "mktemp" not in script and "set-default" not in script


def test_btrfs_on_two_devices_scans_them_before_the_mount() -> None:
    layout = text_layout(BtrfsSubvolume("@", 256), default="@", devices=2)
    script = text_script(layout)
    assert script.count("btrfs subvolume create") == 1
    assert 'btrfs device scan "$D1P1" "$D1P2"\nmount -t btrfs -o subvolid=5 "$D1P1" ' in script
    # the summary names the subvolumes once, not once per device
    assert layout_summary(layout)[1:] == ["  btrfs subvolumes on /dev/vda1: @ (default)"]
