"""LVM capture: the PVs on the recorded devices, their VGs and the VGs' LVs, from
`pvs`/`vgs`/`lvs --reportformat json --units b`.

Why a module of its own: lvm's reports need their own care (warnings between the report's lines,
errors in the JSON log section, no writes to /etc/lvm), and capture only asks for them when
blkid found a PV (LVM2_member) on a recorded device.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from rescue.layout import LayoutError
from rescue.layout.blkid import filesystem_from_probe, probe
from rescue.layout.kernel import MountTable, rdev
from rescue.layout.model import LogicalVolume, LvmLayout, PhysicalVolume, VolumeGroup
from rescue.layout.tools import int_field, parse_json_output, run_probe, text_field
from rescue.process.execute import Completed

# Messages from lvm go into the JSON "log" section, not between the report's lines on stderr.
# A reporting command also (re)writes /etc/lvm/backup and /etc/lvm/archive when it finds them
# missing or old; a capture must not change the host, so that is switched off.
LVM_ARGS = ["--reportformat", "json", "--units", "b", "--nosuffix"]
LVM_ARGS += ["--config", "log/report_command_log=1 backup/backup=0 backup/archive=0"]
LVM_ENV = {"LVM_SUPPRESS_FD_WARNINGS": "1"}
PV_FIELDS = "pv_name,vg_name,pv_uuid,pv_size,dev_size,pe_start"
VG_FIELDS = "vg_name,vg_uuid,vg_extent_size,vg_size,vg_free"
LV_FIELDS = "lv_name,vg_name,lv_uuid,lv_size,lv_path,lv_dm_path,segtype,stripes,lv_attr"


# --- LVM ------------------------------------------------------------------------------------


def parse_lvm_report(output: str, kind: str) -> list[dict[str, str]]:
    """The rows of one `pvs`/`vgs`/`lvs --reportformat json` report (kind: pv, vg or lv)."""
    data = parse_json_output(output, "lvm")
    rows: list[dict[str, str]] = []
    for report in data.get("report") or []:
        rows.extend(report.get(kind) or [])
    return rows


def _lvm_log_errors(result: Completed) -> str:
    """The error messages of lvm's command log (report_command_log puts them in its JSON),
    else its last words on stderr."""
    try:
        entries = parse_json_output(result.output, "lvm").get("log") or []
    except LayoutError:
        entries = []
    errors = [e.get("log_message", "") for e in entries if e.get("log_type") == "error"]
    return " / ".join(errors) or result.last_line(f"exit {result.returncode}")


def _lvm_report(command: str, fields: str, kind: str) -> list[dict[str, str]]:
    result = run_probe([command, *LVM_ARGS, "-o", fields], env=LVM_ENV)
    if result.returncode != 0:
        raise LayoutError(f"{command} failed (exit {result.returncode}): {_lvm_log_errors(result)}")
    return parse_lvm_report(result.output, kind)


def parse_pvs(rows: Iterable[dict[str, str]]) -> list[PhysicalVolume]:
    return [
        PhysicalVolume(
            device=r["pv_name"],
            uuid=r["pv_uuid"],
            vg=text_field(r.get("vg_name")),
            size_bytes=int_field(r.get("pv_size")),
            dev_size_bytes=int_field(r.get("dev_size")),
            pe_start_bytes=int_field(r.get("pe_start")),
        )
        for r in rows
    ]


def parse_vgs(rows: Iterable[dict[str, str]]) -> list[VolumeGroup]:
    return [
        VolumeGroup(
            name=r["vg_name"],
            uuid=r["vg_uuid"],
            extent_size_bytes=int(r["vg_extent_size"]),
            size_bytes=int_field(r.get("vg_size")),
            free_bytes=int_field(r.get("vg_free")),
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
            path=text_field(r.get("lv_path")),
            dm_path=text_field(r.get("lv_dm_path")),
            segtype=text_field(r.get("segtype")),
            stripes=int_field(r.get("stripes")),
            attr=text_field(r.get("lv_attr")),
        )
        for r in rows
    ]


def capture_lvm(ours: set[str], mounts: MountTable) -> LvmLayout | None:
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
        active = next((p for p in (lv.dm_path, lv.path) if p and rdev(p)), None)
        if active:  # an inactive LV has no device to probe; its file system stays unknown
            lv.filesystem = filesystem_from_probe(probe(active), active)
            if lv.filesystem:
                lv.filesystem.mountpoint = mounts.mountpoint(active)
    return LvmLayout(pvs=chosen_pvs, vgs=vgs, lvs=lvs)
