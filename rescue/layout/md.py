"""MD RAID capture: the arrays built (directly or through another array) from the recorded
disks, from /proc/mdstat and `mdadm --detail --export`.

Why a module of its own: the two formats are parsed here from their documented shapes (kernel
md.c, mdadm Detail.c); the host kernel has no md, so only a QEMU guest proves them live.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rescue.errors import CommandNotFoundError
from rescue.layout.blkid import filesystem_from_probe, parse_blkid_export, probe
from rescue.layout.kernel import MountTable, rdev
from rescue.layout.model import RaidArray
from rescue.layout.tools import int_field, run_probe_ok

PROC_MDSTAT = Path("/proc/mdstat")

# --- MD RAID --------------------------------------------------------------------------------


@dataclass
class MdstatMember:
    name: str  # kernel name, e.g. sda1
    index: int  # the descriptor number in brackets
    flags: str = ""  # S spare, F faulty, W write-mostly, J journal, R replacement


@dataclass
class MdstatArray:
    name: str
    active: bool
    level: str | None
    members: list[MdstatMember] = field(default_factory=list)
    blocks: int | None = None  # 1 KiB blocks
    metadata: str | None = None  # "1.2", or None for 0.90 arrays (mdstat prints no "super")
    raid_devices: int | None = None


def parse_mdstat(text: str) -> list[MdstatArray]:
    """/proc/mdstat (kernel md.c, md_seq_show):

    md0 : active raid1 sdb1[1] sda1[0](F)
          1046528 blocks super 1.2 [2/1] [U_]
    md1 : inactive sdc1[0](S)
          1046528 blocks super 1.2
    """
    arrays: list[MdstatArray] = []
    current: MdstatArray | None = None
    for line in text.splitlines():
        m = re.match(r"(md\S*)\s*:\s*(active|inactive)\s*(.*)$", line)
        if m:
            words = m.group(3).split()
            while words and words[0].startswith("("):  # (auto-read-only), (read-only)
                words.pop(0)
            level = None
            if m.group(2) == "active" and words and "[" not in words[0]:
                level = words.pop(0)
            members = []
            for word in words:
                mm = re.match(r"(.+?)\[(\d+)\]((?:\([A-Z]\))*)$", word)
                if mm:
                    flags = "".join(re.findall(r"\(([A-Z])\)", mm.group(3)))
                    members.append(MdstatMember(mm.group(1), int(mm.group(2)), flags))
            current = MdstatArray(m.group(1), m.group(2) == "active", level, members)
            arrays.append(current)
            continue
        if current is not None and current.blocks is None:
            b = re.match(r"\s+(\d+) blocks(?: super (\S+))?(?:.*\[(\d+)/\d+\])?", line)
            if b:
                current.blocks = int(b.group(1))
                current.metadata = b.group(2)
                current.raid_devices = int(b.group(3)) if b.group(3) else None
        if not line.strip():
            current = None
    return arrays


def parse_mdadm_export(text: str) -> dict[str, Any]:
    """`mdadm --detail --export /dev/mdX` (mdadm Detail.c): MD_LEVEL, MD_DEVICES, MD_METADATA,
    MD_UUID, MD_DEVNAME, MD_NAME, and MD_DEVICE_<dev>_ROLE / MD_DEVICE_<dev>_DEV per member.

    Returns the plain keys, plus "members": [(role, path)] in role order and "spares": [path].
    """
    values = parse_blkid_export(text)  # the same KEY=value shape, same escaping
    roles: dict[str, str] = {}
    paths: dict[str, str] = {}
    for key, value in values.items():
        m = re.match(r"MD_DEVICE_(.+)_(ROLE|DEV)$", key)
        if m:
            (roles if m.group(2) == "ROLE" else paths)[m.group(1)] = value
    members = sorted(
        (int(role), paths.get(dev, f"/dev/{dev}")) for dev, role in roles.items() if role.isdigit()
    )
    spares = sorted(paths.get(dev, f"/dev/{dev}") for dev, role in roles.items() if role == "spare")
    result: dict[str, Any] = {k: v for k, v in values.items() if not k.startswith("MD_DEVICE_")}
    result["members"] = members
    result["spares"] = spares
    return result


def capture_raids(member_names: set[str], mounts: MountTable) -> list[RaidArray]:
    """The MD arrays built (directly or through another array) from our disks."""
    try:
        arrays = parse_mdstat(PROC_MDSTAT.read_text())
    except FileNotFoundError:
        return []  # no md in this kernel
    chosen: list[MdstatArray] = []
    names = set(member_names)
    grew = True
    while grew:  # an array on arrays: follow until nothing new joins
        grew = False
        for array in arrays:
            if array not in chosen and names & {m.name for m in array.members}:
                chosen.append(array)
                names.add(array.name)
                grew = True
    raids = []
    for array in chosen:
        path = f"/dev/{array.name}"
        if shutil.which("mdadm") is None:
            raise CommandNotFoundError(
                f"mdadm is not installed, but {path} is an MD array on a disk being recorded"
            )
        detail = parse_mdadm_export(run_probe_ok(["mdadm", "--detail", "--export", path]))
        if detail["members"] or detail["spares"]:
            devices = [p for _, p in detail["members"]]
            spares = detail["spares"]
        else:
            ordered = sorted(array.members, key=lambda m: m.index)
            devices = [f"/dev/{m.name}" for m in ordered if not set(m.flags) & {"S", "F"}]
            spares = [f"/dev/{m.name}" for m in ordered if "S" in m.flags]
        raid = RaidArray(
            name=array.name,
            path=path,
            level=detail.get("MD_LEVEL") or array.level,
            uuid=detail.get("MD_UUID"),
            metadata=detail.get("MD_METADATA") or array.metadata,
            md_name=detail.get("MD_NAME"),
            devname=detail.get("MD_DEVNAME"),
            raid_devices=int_field(detail.get("MD_DEVICES")) or array.raid_devices,
            devices=devices,
            spares=spares,
            size_bytes=array.blocks * 1024 if array.blocks is not None else None,
        )
        if array.active and rdev(path):
            raid.filesystem = filesystem_from_probe(probe(path), path)
            if raid.filesystem:
                raid.filesystem.mountpoint = mounts.mountpoint(path)
        raids.append(raid)
    return raids
