"""btrfs subvolumes: read from a mounted btrfs file system into its `Filesystem`.

Why: an Ubuntu-style root lives in subvolumes (`subvol=@` for /, `subvol=@home` for /home), and
a file system recreated flat leaves such an fstab nothing to mount. The kernel answers only
through a mount, so a btrfs file system that is not mounted at capture time has its subvolumes
left unrecorded (logged).

What is read, and why each (btrfs-progs 6.2, Debian 12):
- `btrfs subvolume list -q MOUNT`: every subvolume's id, the id of the subvolume it sits in
  ("top level") and its parent UUID ("-" unless it is a snapshot). Its path column is not used:
  it is relative to the top level or to the mounted subvolume depending on where each one sits.
- `btrfs subvolume list -r MOUNT`: the ids of the read-only ones (the ro flag of the root item).
- `btrfs inspect-internal subvolid-resolve ID MOUNT`: each path from the top level, the whole
  output being the path, so a name with spaces or a newline arrives whole.
- `btrfs subvolume get-default MOUNT`: the default subvolume's id (5: the top level).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil

from rescue.errors import CommandNotFoundError
from rescue.layout import LayoutError
from rescue.layout.model import BtrfsSubvolume, Filesystem, Layout
from rescue.layout.tools import run_probe_ok

log = logging.getLogger("rescue.layout")

TOP_LEVEL_ID = 5  # BTRFS_FS_TREE_OBJECTID: the top level, which is no subvolume of its own

# One record of `btrfs subvolume list -q`; a name with a newline continues on the next lines,
# so records are found by their start, never by splitting lines.
_RECORD = re.compile(
    r"^ID (\d+) gen \d+ (?:cgen \d+ )?top level (\d+) parent_uuid (\S+)", re.MULTILINE
)
_LISTED_ID = re.compile(r"^ID (\d+) gen \d+ ", re.MULTILINE)
_DEFAULT = re.compile(r"^ID (\d+)\b")


def parse_subvolume_list(text: str) -> list[tuple[int, int, bool]]:
    """(id, parent id, is a snapshot) for each record of `btrfs subvolume list -q`."""
    return [(int(m[1]), int(m[2]), m[3] != "-") for m in _RECORD.finditer(text)]


def parse_listed_ids(text: str) -> set[int]:
    """The ids of `btrfs subvolume list` (e.g. with -r: the read-only ones)."""
    return {int(m[1]) for m in _LISTED_ID.finditer(text)}


def parse_default(text: str) -> int:
    """The id `btrfs subvolume get-default` prints: "ID 5 (FS_TREE)" or "ID 256 gen ..."."""
    m = _DEFAULT.match(text.strip())
    if not m:
        raise LayoutError(f"btrfs subvolume get-default printed {text.strip()!r}")
    return int(m[1])


def read_subvolumes(mount: str) -> tuple[list[BtrfsSubvolume], str | None]:
    """The subvolumes of the btrfs file system mounted at mount (any of its subvolumes) in id
    order, and the path of the default one (None: the top level)."""
    records = parse_subvolume_list(run_probe_ok(["btrfs", "subvolume", "list", "-q", mount]))
    readonly = parse_listed_ids(run_probe_ok(["btrfs", "subvolume", "list", "-r", mount]))
    subvolumes = []
    for subvol_id, parent_id, snapshot in sorted(records):
        path = run_probe_ok(
            ["btrfs", "inspect-internal", "subvolid-resolve", str(subvol_id), mount]
        )
        if not path:
            raise LayoutError(f"btrfs resolved subvolume {subvol_id} on {mount} to no path")
        if "\ufffd" in path:
            log.warning(
                "btrfs subvolume %d on %s: its name is not UTF-8 (%r)", subvol_id, mount, path
            )
        subvolumes.append(
            BtrfsSubvolume(path, subvol_id, parent_id, subvol_id in readonly, snapshot)
        )
    default_id = parse_default(run_probe_ok(["btrfs", "subvolume", "get-default", mount]))
    if default_id == TOP_LEVEL_ID:
        return subvolumes, None
    by_id = {s.id: s.path for s in subvolumes}
    if default_id not in by_id:
        raise LayoutError(f"the default subvolume {default_id} on {mount} is not listed")
    return subvolumes, by_id[default_id]


def capture_subvolumes(layout: Layout) -> None:
    """Record the subvolumes of every btrfs file system of layout that is mounted, on each of
    its devices (a btrfs on several devices has one Filesystem per device, one mount)."""
    groups: dict[str, list[Filesystem]] = {}
    for fs in layout.all_filesystems():
        if fs.type == "btrfs":
            groups.setdefault(fs.uuid or fs.device, []).append(fs)
    for members in groups.values():
        mount = next((fs.mountpoint for fs in members if fs.mountpoint), None)
        if mount is None:
            devices = ", ".join(fs.device for fs in members)
            log.info("btrfs on %s is not mounted: its subvolumes are not recorded", devices)
            continue
        if shutil.which("btrfs") is None:
            raise CommandNotFoundError(
                f"btrfs (btrfs-progs) is not installed, but btrfs is mounted on {mount}"
            )
        subvolumes, default = read_subvolumes(mount)
        for fs in members:
            fs.subvolumes = [dataclasses.replace(s) for s in subvolumes]
            fs.default_subvolume = default
