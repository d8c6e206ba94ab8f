"""Read the disk layout of this host into the model (rescue.layout.model).

Sources, and why each:
- `lsblk --json --bytes` lists the disks (and sizes, sector sizes, model/serial/WWN if udev
  knows them). Without udev lsblk knows no file systems, so it is used for the tree only.
- `sfdisk --json DISK` is the partition table exactly as sfdisk will need it back at recovery.
- `blkid -p -o export` (the low-level probe) reads the signatures from the device itself, so it
  works without udev, in a rescue system or a container. A partition whose kernel node is missing
  or stale is probed through the disk at its offset (`-O`/`-S`).
- pyudev (optional: may be absent or have no udev database), then sysfs, fill in WWN, serial and
  model; /dev/disk/by-id gives the by-id names when udev made them.
- /proc/self/mountinfo (the richer form of /proc/mounts) and /proc/swaps say what is mounted.
  Mounts are matched by device number, which survives /dev/root and /dev/mapper vs /dev/dm-N.
- The fstab gives the options for each file system it names (UUID=, LABEL=, PARTUUID=,
  PARTLABEL=, /dev/disk/by-*/ or a device path).
- LVM (`pvs`/`vgs`/`lvs --reportformat json --units b`) only when blkid found a PV
  (LVM2_member) on a recorded device, and MD (`/proc/mdstat`, `mdadm --detail --export`) only
  when the kernel lists an array built from one. LUKS containers are recorded as present (blkid
  crypto_LUKS), and an open one's mapping is found through sysfs holders.

What is proven where: the disks, partition tables, file systems, mounts and fstab matching are
tested on loop disks on the build host. The LVM report parsing is tested on real lvm2 output from
that host, including a live capture of a VG whose metadata was written without device-mapper
(LVs inactive). The host kernel has no device-mapper and no md, so the file system of an active
LV, MD arrays (`parse_mdstat`, `parse_mdadm_export`, only tested on text in the documented
formats) and open LUKS mappings are proven only in a QEMU guest (vm-tests), later.

All processes are started through rescue.execute.run. A missing tool raises
CommandNotFoundError, a failing probe LayoutError: a layout that was only partly read must never
pass for a whole one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rescue.errors import CommandNotFoundError
from rescue.execute import Completed, run
from rescue.layout import LayoutError
from rescue.layout.model import (
    MBR_EXTENDED_TYPES,
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
    partition_type_name,
)
from rescue.units import human_size

log = logging.getLogger("rescue.layout")

PROC_MOUNTINFO = Path("/proc/self/mountinfo")
PROC_SWAPS = Path("/proc/swaps")
PROC_MDSTAT = Path("/proc/mdstat")
SYS_CLASS_BLOCK = Path("/sys/class/block")
SYS_DEV_BLOCK = Path("/sys/dev/block")
DEV_BY_ID = Path("/dev/disk/by-id")

LSBLK_COLUMNS = "NAME,KNAME,PATH,MAJ:MIN,TYPE,SIZE,LOG-SEC,PHY-SEC,MODEL,SERIAL,WWN,RM,RO,PKNAME"
# Kernel names of block devices that are never a server's disk, even when lsblk calls them "disk".
VIRTUAL_DISK_PREFIXES = ("ram", "zram", "sr", "fd")
# Messages from lvm go into the JSON "log" section, not between the report's lines on stderr.
# A reporting command also (re)writes /etc/lvm/backup and /etc/lvm/archive when it finds them
# missing or old; a capture must not change the host, so that is switched off.
LVM_ARGS = ["--reportformat", "json", "--units", "b", "--nosuffix"]
LVM_ARGS += ["--config", "log/report_command_log=1 backup/backup=0 backup/archive=0"]
LVM_ENV = {"LVM_SUPPRESS_FD_WARNINGS": "1"}
PV_FIELDS = "pv_name,vg_name,pv_uuid,pv_size,dev_size,pe_start"
VG_FIELDS = "vg_name,vg_uuid,vg_extent_size,vg_size,vg_free"
LV_FIELDS = "lv_name,vg_name,lv_uuid,lv_size,lv_path,lv_dm_path,segtype,stripes,lv_attr"


# --- running the tools ----------------------------------------------------------------------


def _tail(output: str, lines: int = 3) -> str:
    """The last few lines of a tool's output, on one line, for an error message."""
    kept = [ln.strip() for ln in output.strip().splitlines() if ln.strip()][-lines:]
    return " / ".join(kept) or "no output"


def _run(argv: Sequence[str], env: dict[str, str] | None = None) -> Completed:
    """Run a probe through rescue.execute and get its output unmasked.

    execute.run masks every registered secret in a child's output; a passphrase that happens to
    equal part of a label or a name must not change the recorded layout ("swapper" would become
    "swa***er"), so probes ask for the exact output. The log stays masked.
    """
    return run(argv, env=env, mask_output=False)


def _run_ok(argv: Sequence[str], env: dict[str, str] | None = None) -> str:
    """Run a probe and return its output; LayoutError if it fails."""
    result = _run(argv, env=env)
    if result.returncode != 0:
        raise LayoutError(f"{argv[0]} failed (exit {result.returncode}): {_tail(result.output)}")
    return result.output


def parse_json_output(output: str) -> Any:
    """The JSON document in a tool's output, which run() merges with its stderr.

    Why lenient: lvm writes its warnings to stderr while it prints the report, so they can land
    between the report's lines, and its error reports end an array with a trailing comma. Lines
    that cannot be part of a pretty-printed JSON document are dropped before a second try.
    """
    text = output.strip()
    start = text.find("{")
    if start < 0:
        raise LayoutError(f"expected JSON, got: {_tail(output)}")
    try:
        return json.JSONDecoder().raw_decode(text[start:])[0]
    except json.JSONDecodeError:
        pass
    kept = [ln for ln in text[start:].splitlines() if re.match(r'\s*[\[\]{}",]', ln)]
    cleaned = re.sub(r",(\s*[\]}])", r"\1", "\n".join(kept))
    try:
        return json.JSONDecoder().raw_decode(cleaned)[0]
    except json.JSONDecodeError as exc:
        raise LayoutError(f"cannot parse the JSON output ({exc}): {_tail(output)}") from exc


def _int(value: Any) -> int | None:
    """lsblk and lvm print numbers as numbers or as strings depending on their version."""
    if value is None or value == "":
        return None
    return int(value)


def _str(value: Any) -> str | None:
    """A tool's text field, trimmed, with empty meaning absent."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


# --- blkid ----------------------------------------------------------------------------------


def _unescape_blkid(value: str) -> str:
    r"""blkid -o export escapes shell-special characters with a backslash (`EFI\ system`)."""
    return re.sub(r"\\(.)", r"\1", value)


def parse_blkid_export(output: str) -> dict[str, str]:
    """KEY=value lines of `blkid -o export` (or `mdadm --export`); other lines are ignored."""
    pairs: dict[str, str] = {}
    for line in output.splitlines():
        m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if m:
            pairs[m.group(1)] = _unescape_blkid(m.group(2))
    return pairs


def probe(device: str, offset: int | None = None, size: int | None = None) -> dict[str, str]:
    """blkid's low-level probe of a device (or of a byte range of it): {} if nothing is there."""
    argv = ["blkid", "-p", "-o", "export"]
    where = device
    if offset is not None:
        argv += ["-O", str(offset)]
        where = f"{device} at byte {offset}"
        if size is not None:
            argv += ["-S", str(size)]
    argv.append(device)
    result = _run(argv)
    if result.returncode == 2 and not result.output.strip():  # nothing found
        return {}
    # blkid also exits 2 when it cannot open the device ("blkid: error: ...: Operation not
    # permitted"): that must fail, or an unreadable disk would be recorded as a blank one.
    if result.returncode == 8:
        raise LayoutError(
            f"{where} carries more than one signature (blkid: ambivalent result); "
            "remove the stale one with wipefs before a backup can record this disk"
        )
    if result.returncode != 0:
        raise LayoutError(f"blkid cannot probe {where}: {_tail(result.output)}")
    return parse_blkid_export(result.output)


def filesystem_from_probe(values: dict[str, str], device: str) -> Filesystem | None:
    """The Filesystem that blkid's KEY=value pairs describe, or None if there is no TYPE."""
    fs_type = values.get("TYPE")
    if not fs_type:
        return None
    uuid = values.get("UUID") or None
    block_size = values.get("BLOCK_SIZE")
    return Filesystem(
        type=fs_type,
        device=device,
        uuid=uuid,
        uuid_sub=values.get("UUID_SUB") or None,
        label=values.get("LABEL") or None,
        version=values.get("VERSION") or None,
        block_size=int(block_size) if block_size and block_size.isdigit() else None,
        volume_id=uuid.replace("-", "").upper() if fs_type == "vfat" and uuid else None,
    )


# --- lsblk and sfdisk -----------------------------------------------------------------------


def lsblk(paths: Sequence[str] = ()) -> list[dict[str, Any]]:
    """lsblk's device tree: all devices, or just the given ones."""
    output = _run_ok(["lsblk", "--json", "--bytes", "--output", LSBLK_COLUMNS, *paths])
    return list(parse_json_output(output).get("blockdevices") or [])


@dataclass
class PartitionTable:
    """What `sfdisk --json` says about one disk."""

    label: str
    id: str | None
    sector_size: int | None
    first_lba: int | None
    last_lba: int | None
    partitions: list[dict[str, Any]]


def parse_sfdisk(data: dict[str, Any]) -> PartitionTable:
    """The partitiontable object of `sfdisk --json`."""
    table = data.get("partitiontable")
    if not isinstance(table, dict) or "label" not in table:
        raise LayoutError("sfdisk printed no partition table")
    return PartitionTable(
        label=table["label"],
        id=_str(table.get("id")),
        sector_size=_int(table.get("sectorsize")),
        first_lba=_int(table.get("firstlba")),
        last_lba=_int(table.get("lastlba")),
        partitions=list(table.get("partitions") or []),
    )


def _partition_number(node: str) -> int:
    """sfdisk names partitions disk + [p] + number, so the number is the trailing digits."""
    m = re.search(r"(\d+)$", node)
    if not m:
        raise LayoutError(f"cannot tell the partition number of {node}")
    return int(m.group(1))


def _sys_block(path: str) -> Path | None:
    """The sysfs directory of a block device node, or None if it is not one."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        return None
    sys_dir = SYS_DEV_BLOCK / f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return sys_dir.resolve() if sys_dir.exists() else None


def _read_sys(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _node_matches(node: str, start: int, size: int, sector_size: int) -> bool:
    """Whether the kernel's partition node covers exactly this table entry (not a stale one)."""
    sys_dir = _sys_block(node)
    if sys_dir is None or not (sys_dir / "partition").exists():
        return False
    k_start = _read_sys(sys_dir / "start")
    k_size = _read_sys(sys_dir / "size")
    scale = sector_size // 512  # the kernel counts 512-byte sectors
    return k_start == str(start * scale) and k_size == str(size * scale)


def _partitions(disk: Disk, table: PartitionTable) -> list[Partition]:
    parts = []
    for entry in table.partitions:
        node = entry.get("node") or ""
        number = _partition_number(node)
        start, size = int(entry["start"]), int(entry["size"])
        ptype = str(entry.get("type") or "")
        uuid = _str(entry.get("uuid"))
        if uuid is None and table.label == "dos" and table.id:
            uuid = f"{int(table.id, 16):08x}-{number:02x}"  # the kernel's PARTUUID for MBR
        part = Partition(
            number=number,
            path=node,
            start_sector=start,
            size_sectors=size,
            type=ptype,
            uuid=uuid,
            name=_str(entry.get("name")),
            attrs=_str(entry.get("attrs")),
            bootable=bool(entry.get("bootable", False)),
        )
        if not (table.label == "dos" and ptype.lower() in MBR_EXTENDED_TYPES):
            sector = disk.logical_sector_size
            if _node_matches(node, start, size, sector):
                values = probe(node)
            else:
                log.info("%s: no current kernel node; probing %s at its offset", node, disk.path)
                values = probe(disk.path, offset=start * sector, size=size * sector)
            part.filesystem = filesystem_from_probe(values, node)
        parts.append(part)
    return parts


# --- disk identity --------------------------------------------------------------------------


def _udev_identity(path: str) -> dict[str, Any]:
    """WWN, serial, model and by-id links from the udev database, if pyudev and udev are here."""
    try:
        import pyudev

        device = pyudev.Devices.from_device_file(pyudev.Context(), path)
        props = device.properties
        return {
            "wwn": props.get("ID_WWN_WITH_EXTENSION") or props.get("ID_WWN"),
            "serial": props.get("ID_SERIAL_SHORT") or props.get("ID_SERIAL"),
            "model": props.get("ID_MODEL"),
            "by_id": [
                os.path.basename(link)
                for link in device.device_links
                if link.startswith(str(DEV_BY_ID) + "/")
            ],
        }
    except (ImportError, OSError, LookupError, ValueError) as exc:
        log.debug("pyudev knows nothing of %s: %s", path, exc)
        return {}


def _by_id_links(path: str) -> list[str]:
    """Names under /dev/disk/by-id that point at path (udev makes them; none without udev)."""
    try:
        entries = sorted(DEV_BY_ID.iterdir())
    except OSError:
        return []
    real = os.path.realpath(path)
    return [e.name for e in entries if os.path.realpath(e) == real]


def _identify(disk: Disk) -> None:
    """Fill model, serial, WWN and by-id from udev, then from sysfs where lsblk had nothing."""
    udev = _udev_identity(disk.path)
    disk.model = disk.model or _str(udev.get("model"))
    disk.serial = disk.serial or _str(udev.get("serial"))
    disk.wwn = disk.wwn or _str(udev.get("wwn"))
    sys_dir = SYS_CLASS_BLOCK / disk.name
    disk.model = disk.model or _read_sys(sys_dir / "device/model")
    for rel in ("serial", "device/serial"):  # virtio; nvme
        disk.serial = disk.serial or _read_sys(sys_dir / rel)
    for rel in ("wwid", "device/wwid"):  # nvme; scsi
        disk.wwn = disk.wwn or _read_sys(sys_dir / rel)
    disk.by_id = sorted(set(udev.get("by_id", [])) | set(_by_id_links(disk.path)))


# --- mounts and fstab ---------------------------------------------------------------------


def _unescape_octal(text: str) -> str:
    r"""The kernel and fstab escape space, tab, newline and backslash as \040, \011, ..."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


@dataclass
class Mount:
    """One line of /proc/self/mountinfo."""

    major: int
    minor: int
    root: str
    mountpoint: str
    fstype: str
    source: str


def parse_mountinfo(text: str) -> list[Mount]:
    """/proc/self/mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - TYPE SOURCE."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        dash = fields.index("-", 6)
        major, _, minor = fields[2].partition(":")
        mounts.append(
            Mount(
                major=int(major),
                minor=int(minor),
                root=_unescape_octal(fields[3]),
                mountpoint=_unescape_octal(fields[4]),
                fstype=fields[dash + 1],
                source=_unescape_octal(fields[dash + 2]) if len(fields) > dash + 2 else "",
            )
        )
    return mounts


def _rdev(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        return None
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def _mount_device(mount: Mount) -> tuple[int, int] | None:
    """The block device of a mount; btrfs shows an anonymous 0:N, so its source path is used."""
    if mount.major != 0:
        return mount.major, mount.minor
    return _rdev(mount.source) if mount.source.startswith("/dev/") else None


class MountTable:
    """Where each block device is mounted now, by device number."""

    def __init__(self, mountinfo: str, swaps: str) -> None:
        self.by_dev: dict[tuple[int, int], list[str]] = {}
        # A mount of the file system's own root first (a btrfs subvolume or bind mount later).
        for mount in sorted(parse_mountinfo(mountinfo), key=lambda m: m.root != "/"):
            dev = _mount_device(mount)
            if dev:
                self.by_dev.setdefault(dev, []).append(mount.mountpoint)
        for line in swaps.splitlines()[1:]:
            fields = line.split()
            if fields and fields[1:2] == ["partition"]:
                dev = _rdev(_unescape_octal(fields[0]))
                if dev:
                    self.by_dev.setdefault(dev, []).append("[SWAP]")

    @classmethod
    def read(cls) -> MountTable:
        return cls(_read_text(PROC_MOUNTINFO), _read_text(PROC_SWAPS))

    def mountpoint(self, device: str) -> str | None:
        dev = _rdev(device)
        points = self.by_dev.get(dev, []) if dev else []
        return points[0] if points else None


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def parse_fstab(text: str) -> list[FstabEntry]:
    """fstab(5): spec, mount point, type, options, dump, pass; the last four may be missing."""
    entries = []
    for line in text.splitlines():
        fields = [] if line.lstrip().startswith("#") else line.split()
        if len(fields) < 2:
            continue
        entries.append(
            FstabEntry(
                spec=_unescape_octal(fields[0]),
                mountpoint=_unescape_octal(fields[1]),
                type=fields[2] if len(fields) > 2 else "auto",
                options=fields[3] if len(fields) > 3 else "defaults",
                dump=int(fields[4]) if len(fields) > 4 and fields[4].isdigit() else 0,
                passno=int(fields[5]) if len(fields) > 5 and fields[5].isdigit() else 0,
            )
        )
    return entries


_BY_DIRS = {
    "/dev/disk/by-uuid/": "UUID",
    "/dev/disk/by-label/": "LABEL",
    "/dev/disk/by-partuuid/": "PARTUUID",
    "/dev/disk/by-partlabel/": "PARTLABEL",
}


def _spec_key(spec: str) -> tuple[str, str]:
    """An fstab spec as (kind, value): UUID, LABEL, PARTUUID, PARTLABEL or PATH."""
    kind, sep, value = spec.partition("=")
    if sep and kind in ("UUID", "LABEL", "PARTUUID", "PARTLABEL"):
        return kind, value.strip('"').strip("'")
    for prefix, by_kind in _BY_DIRS.items():
        if spec.startswith(prefix):
            # udev escapes unsafe characters in these names as \xHH.
            name = re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), spec)
            return by_kind, name[len(prefix) :]
    return "PATH", spec


def _aliases(path: str | None) -> set[str]:
    if not path:
        return set()
    return {path, os.path.realpath(path)}


def fstab_target(layout: Layout, spec: str) -> Filesystem | None:
    """The recorded file system an fstab spec names, if any."""
    kind, value = _spec_key(spec)
    if kind in ("PARTUUID", "PARTLABEL"):
        for disk in layout.disks:
            for part in disk.partitions:
                if kind == "PARTUUID" and (part.uuid or "").lower() == value.lower():
                    return part.filesystem
                if kind == "PARTLABEL" and part.name == value:
                    return part.filesystem
        return None
    candidates: list[tuple[Filesystem, set[str]]] = []
    for fs in layout.all_filesystems():
        candidates.append((fs, _aliases(fs.device)))
    if layout.lvm:
        for lv in layout.lvm.lvs:
            if lv.filesystem:
                candidates.append((lv.filesystem, _aliases(lv.path) | _aliases(lv.dm_path)))
    for raid in layout.raids:
        if raid.filesystem and raid.devname:
            candidates.append((raid.filesystem, _aliases(f"/dev/md/{raid.devname}")))
    for fs, aliases in candidates:
        if kind == "UUID" and (fs.uuid or "").lower() == value.lower():
            return fs
        if kind == "LABEL" and fs.label == value:
            return fs
        if kind == "PATH" and (value in aliases or os.path.realpath(value) in aliases):
            return fs
    return None


def apply_fstab(layout: Layout, entries: list[FstabEntry]) -> None:
    """Record the fstab and give each file system it names that entry's options (first wins)."""
    layout.fstab = entries
    for entry in entries:
        fs = fstab_target(layout, entry.spec)
        if fs is not None and fs.fstab_options is None:
            fs.fstab_options = entry.options


# --- LVM ------------------------------------------------------------------------------------


def parse_lvm_report(output: str, kind: str) -> list[dict[str, str]]:
    """The rows of one `pvs`/`vgs`/`lvs --reportformat json` report (kind: pv, vg or lv)."""
    data = parse_json_output(output)
    rows: list[dict[str, str]] = []
    for report in data.get("report") or []:
        rows.extend(report.get(kind) or [])
    return rows


def _lvm_log_errors(output: str) -> str:
    try:
        entries = parse_json_output(output).get("log") or []
    except LayoutError:
        return _tail(output)
    errors = [e.get("log_message", "") for e in entries if e.get("log_type") == "error"]
    return " / ".join(errors) or _tail(output)


def _lvm_report(command: str, fields: str, kind: str) -> list[dict[str, str]]:
    result = _run([command, *LVM_ARGS, "-o", fields], env=LVM_ENV)
    if result.returncode != 0:
        detail = _lvm_log_errors(result.output)
        raise LayoutError(f"{command} failed (exit {result.returncode}): {detail}")
    return parse_lvm_report(result.output, kind)


def parse_pvs(rows: Iterable[dict[str, str]]) -> list[PhysicalVolume]:
    return [
        PhysicalVolume(
            device=r["pv_name"],
            uuid=r["pv_uuid"],
            vg=_str(r.get("vg_name")),
            size_bytes=_int(r.get("pv_size")),
            dev_size_bytes=_int(r.get("dev_size")),
            pe_start_bytes=_int(r.get("pe_start")),
        )
        for r in rows
    ]


def parse_vgs(rows: Iterable[dict[str, str]]) -> list[VolumeGroup]:
    return [
        VolumeGroup(
            name=r["vg_name"],
            uuid=r["vg_uuid"],
            extent_size_bytes=int(r["vg_extent_size"]),
            size_bytes=_int(r.get("vg_size")),
            free_bytes=_int(r.get("vg_free")),
        )
        for r in rows
    ]


def parse_lvs(rows: Iterable[dict[str, str]]) -> list[LogicalVolume]:
    return [
        LogicalVolume(
            name=r["lv_name"],
            vg=r["vg_name"],
            uuid=r["lv_uuid"],
            size_bytes=int(r["lv_size"]),
            path=_str(r.get("lv_path")),
            dm_path=_str(r.get("lv_dm_path")),
            segtype=_str(r.get("segtype")),
            stripes=_int(r.get("stripes")),
            attr=_str(r.get("lv_attr")),
        )
        for r in rows
    ]


def _capture_lvm(ours: set[str], mounts: MountTable) -> LvmLayout | None:
    """The PVs on our devices, their VGs (with every PV of those) and the VGs' LVs."""
    pvs = parse_pvs(_lvm_report("pvs", PV_FIELDS, "pv"))
    mine = [pv for pv in pvs if os.path.realpath(pv.device) in ours]
    if not mine:
        return None
    vg_names = {pv.vg for pv in mine if pv.vg}
    chosen_pvs = [pv for pv in pvs if pv in mine or pv.vg in vg_names]
    vgs = [vg for vg in parse_vgs(_lvm_report("vgs", VG_FIELDS, "vg")) if vg.name in vg_names]
    lvs = [lv for lv in parse_lvs(_lvm_report("lvs", LV_FIELDS, "lv")) if lv.vg in vg_names]
    for lv in lvs:
        active = next((p for p in (lv.dm_path, lv.path) if p and _rdev(p)), None)
        if active:  # an inactive LV has no device to probe; its file system stays unknown
            lv.filesystem = filesystem_from_probe(probe(active), active)
            if lv.filesystem:
                lv.filesystem.mountpoint = mounts.mountpoint(active)
    return LvmLayout(pvs=chosen_pvs, vgs=vgs, lvs=lvs)


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


def _capture_raids(member_names: set[str], mounts: MountTable) -> list[RaidArray]:
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
        detail = parse_mdadm_export(_run_ok(["mdadm", "--detail", "--export", path]))
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
            raid_devices=_int(detail.get("MD_DEVICES")) or array.raid_devices,
            devices=devices,
            spares=spares,
            size_bytes=array.blocks * 1024 if array.blocks is not None else None,
        )
        if array.active and _rdev(path):
            raid.filesystem = filesystem_from_probe(probe(path), path)
            if raid.filesystem:
                raid.filesystem.mountpoint = mounts.mountpoint(path)
        raids.append(raid)
    return raids


# --- LUKS -----------------------------------------------------------------------------------


def _crypt_mapping(device: str) -> str | None:
    """The device-mapper name a LUKS device is open as (a sysfs holder with a CRYPT- uuid)."""
    sys_dir = _sys_block(device)
    if sys_dir is None:
        return None
    try:
        holders = sorted((sys_dir / "holders").iterdir())
    except OSError:
        return None
    for holder in holders:
        dm = SYS_CLASS_BLOCK / holder.name / "dm"
        if (_read_sys(dm / "uuid") or "").startswith("CRYPT-"):
            return _read_sys(dm / "name")
    return None


def _capture_luks(layout: Layout, mounts: MountTable) -> None:
    """Record every crypto_LUKS signature, and what is inside the open ones."""
    recorded = {luks.device for luks in layout.luks}
    for fs in list(layout.all_filesystems()):
        if fs.type != "crypto_LUKS" or fs.device in recorded:
            continue
        mapping = _crypt_mapping(fs.device)
        layout.luks.append(LuksContainer(fs.device, fs.uuid, fs.version, mapping))
        if mapping:
            inner_path = layout.luks[-1].mapping_path
            inner = filesystem_from_probe(probe(inner_path), inner_path)
            if inner:
                inner.mountpoint = mounts.mountpoint(inner_path)
                layout.filesystems.append(inner)


# --- the disks ------------------------------------------------------------------------------


def _block_device(path: str) -> str:
    """The real /dev path of a block device given by any name; LayoutError if it is not one."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError as exc:
        raise LayoutError(f"{path}: {exc.strerror}") from exc
    if not stat.S_ISBLK(st.st_mode):
        raise LayoutError(f"{path} is not a block device")
    return real


def _is_real_disk(node: dict[str, Any]) -> bool:
    name = str(node.get("kname") or node.get("name") or "")
    return (
        node.get("type") == "disk"
        and not name.startswith(VIRTUAL_DISK_PREFIXES)
        and (_int(node.get("size")) or 0) > 0
    )


def select_disks(devices: Sequence[str] | None) -> list[dict[str, Any]]:
    """lsblk nodes of the disks to record: every real disk, or exactly the ones given."""
    if devices is None:
        return [n for n in lsblk() if _is_real_disk(n)]
    paths = list(dict.fromkeys(_block_device(d) for d in devices))
    if not paths:
        return []
    by_path = {os.path.realpath(n.get("path") or f"/dev/{n.get('kname')}"): n for n in lsblk(paths)}
    nodes = []
    for path in paths:
        node = by_path.get(path)
        if node is None:
            raise LayoutError(f"lsblk does not list {path}")
        if node.get("type") not in ("disk", "loop"):
            raise LayoutError(f"{path} is a {node.get('type')}, not a whole disk")
        if not _int(node.get("size")):
            raise LayoutError(f"{path} has size 0 (no medium, or a detached loop device)")
        nodes.append(node)
    return nodes


def _disk_from_node(node: dict[str, Any]) -> Disk:
    """A disk's identity and size from its lsblk node and udev/sysfs, without reading it."""
    name = str(node.get("kname") or node["name"])
    disk = Disk(
        name=name,
        path=str(node.get("path") or f"/dev/{name}"),
        size_bytes=int(node["size"]),
        logical_sector_size=_int(node.get("log-sec")) or 512,
        physical_sector_size=_int(node.get("phy-sec")) or 512,
        model=_str(node.get("model")),
        serial=_str(node.get("serial")),
        wwn=_str(node.get("wwn")),
    )
    _identify(disk)
    return disk


def identify_disks(devices: list[str] | None = None) -> list[Disk]:
    """Every real disk (or the given ones) with size, model and stable ids; nothing is opened,
    so this works where a disk cannot be read."""
    return [_disk_from_node(node) for node in select_disks(devices)]


def _capture_disk(node: dict[str, Any], mounts: MountTable) -> Disk:
    disk = _disk_from_node(node)
    values = probe(disk.path)
    if values.get("PTTYPE"):
        table = parse_sfdisk(parse_json_output(_run_ok(["sfdisk", "--json", disk.path])))
        disk.table = table.label
        disk.table_id = table.id
        disk.first_lba = table.first_lba
        disk.last_lba = table.last_lba
        if table.sector_size:
            disk.logical_sector_size = table.sector_size
        disk.partitions = _partitions(disk, table)
        for part in disk.partitions:
            if part.filesystem:
                part.filesystem.mountpoint = mounts.mountpoint(part.path)
    disk.filesystem = filesystem_from_probe(values, disk.path)
    if disk.filesystem:
        disk.filesystem.mountpoint = mounts.mountpoint(disk.path)
    return disk


def capture(devices: list[str] | None = None, fstab: Path = Path("/etc/fstab")) -> Layout:
    """The layout of every real disk (devices=None) or of exactly the given disks.

    devices=None skips RAM, zram, CD-ROM, empty and loop devices; a loop device is recorded only
    when it is named. LVM, MD and LUKS are followed from the recorded disks. A missing fstab
    counts as empty.
    """
    mounts = MountTable.read()
    layout = Layout(disks=[_capture_disk(node, mounts) for node in select_disks(devices)])

    # Every device path on the recorded disks, for following the stacks built on them.
    ours: set[str] = set()
    names: set[str] = set()
    for disk in layout.disks:
        for path in [disk.path, *(p.path for p in disk.partitions)]:
            ours |= _aliases(path)
            names.add(os.path.basename(os.path.realpath(path)))

    layout.raids = _capture_raids(names, mounts)
    ours |= {a for raid in layout.raids for a in _aliases(raid.path)}
    # LUKS on a disk, partition or array; then LVM on any of those or in an open mapping; then
    # LUKS in an LV.
    _capture_luks(layout, mounts)
    ours |= {a for luks in layout.luks if luks.mapping for a in _aliases(luks.mapping_path)}
    if any(fs.type == "LVM2_member" for fs in layout.all_filesystems()):
        if shutil.which("pvs") is None:
            raise CommandNotFoundError(
                "pvs (lvm2) is not installed, but a recorded disk holds a PV"
            )
        layout.lvm = _capture_lvm(ours, mounts)
    _capture_luks(layout, mounts)
    apply_fstab(layout, parse_fstab(_read_text(fstab)))
    return layout


def disks_holding(root: Path) -> list[str]:
    """The whole disks under the file systems mounted at or below root (for a partial backup).

    Follows partitions to their disk and device-mapper/MD devices to their slaves through sysfs.
    A root on tmpfs, overlay or a network file system holds no disk: the list is then empty.
    """
    real = os.path.realpath(root)
    mounts = parse_mountinfo(_read_text(PROC_MOUNTINFO))

    def under(path: str, top: str) -> bool:
        return path == top or path.startswith(top.rstrip("/") + "/")

    # The last of equally long mount points is the one on top (mounted over the others).
    containing = max(
        reversed([m for m in mounts if under(real, m.mountpoint)]),
        key=lambda m: len(m.mountpoint),
        default=None,
    )
    chosen = [
        m for m in mounts if m is containing or (m.mountpoint != real and under(m.mountpoint, real))
    ]
    disks: list[str] = []
    for mount in chosen:
        dev = _mount_device(mount)
        if dev:
            for name in _whole_disks(SYS_DEV_BLOCK / f"{dev[0]}:{dev[1]}"):
                if f"/dev/{name}" not in disks:
                    disks.append(f"/dev/{name}")
    return disks


def _whole_disks(sys_path: Path) -> list[str]:
    """Kernel names of the whole disks under a sysfs block device."""
    try:
        sys_dir = sys_path.resolve(strict=True)
    except OSError:
        return []
    slaves = sorted((sys_dir / "slaves").glob("*"))
    if slaves:
        return [d for s in slaves for d in _whole_disks(SYS_CLASS_BLOCK / s.name)]
    if (sys_dir / "partition").exists():
        return [sys_dir.parent.name]
    return [sys_dir.name]


# --- summary --------------------------------------------------------------------------------


# Partition types that say no more than the file system on them does (Linux data, Linux swap).
_PLAIN_TYPES = {
    "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
    "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
    "83",
    "82",
}


def _fs_words(fs: Filesystem | None) -> list[str]:
    if fs is None:
        return []
    words = [fs.type]
    if fs.mountpoint:
        words.append(fs.mountpoint)
    ids = []
    if fs.label:
        ids.append(f"LABEL {fs.label}")
    if fs.uuid:
        ids.append(f"UUID {fs.uuid}")
    if ids:
        words.append(f"({', '.join(ids)})")
    return words


def layout_summary(layout: Layout) -> list[str]:
    """Human lines, one per disk, VG, array, LUKS container and stacked file system."""
    lines = []
    for disk in layout.disks:
        head = f"{disk.name} {human_size(disk.size_bytes)}"
        if disk.table:
            parts = []
            for part in disk.partitions:
                words = [str(part.number), human_size(disk.partition_bytes(part))]
                if part.filesystem is None or part.type.upper() not in _PLAIN_TYPES:
                    words.append(partition_type_name(disk.table, part.type))
                if part.bootable:
                    words.append("bootable")
                words += _fs_words(part.filesystem)
                parts.append(" ".join(words))
            lines.append(f"{head} {disk.table}: {', '.join(parts) or 'no partitions'}")
        elif disk.filesystem:
            lines.append(f"{head} no partition table: {' '.join(_fs_words(disk.filesystem))}")
        else:
            lines.append(f"{head} blank")
    for raid in layout.raids:
        words = [raid.name, raid.level or "inactive", f"metadata {raid.metadata}"]
        words.append(f"on {', '.join(raid.devices) or '?'}")
        if raid.spares:
            words.append(f"spares {', '.join(raid.spares)}")
        lines.append(" ".join(words + _fs_words(raid.filesystem)))
    if layout.lvm:
        for vg in layout.lvm.vgs:
            pvs = [pv.device for pv in layout.lvm.pvs if pv.vg == vg.name]
            lvs = [
                " ".join([lv.name, human_size(lv.size_bytes), *_fs_words(lv.filesystem)])
                for lv in layout.lvm.lvs
                if lv.vg == vg.name
            ]
            size = f" {human_size(vg.size_bytes)}" if vg.size_bytes is not None else ""
            lines.append(
                f"VG {vg.name}{size} on {', '.join(pvs)}"
                f" (extent {human_size(vg.extent_size_bytes)}): {', '.join(lvs) or 'no LVs'}"
            )
    for luks in layout.luks:
        opened = f", open as {luks.mapping}" if luks.mapping else ""
        lines.append(f"LUKS{luks.version or ''} on {luks.device} (UUID {luks.uuid}){opened}")
    for fs in layout.filesystems:
        lines.append(f"{fs.device}: {' '.join(_fs_words(fs))}")
    return lines
