"""The steps that make MD arrays, LUKS containers and LVM (PVs with their UUIDs, VGs, LVs), each
over whatever an earlier run left, and the checks they add to step 1.

A PV on a partition that grows into a larger disk is larger too, so its VG has more free extents
than it had. The grow_lv setting says where they go: "none" leaves them free (every LV keeps its
recorded size), "last" gives them to the last LV of each VG in the recorded order whose file
system is not swap, "VG/LV" to that LV. The LV grows with `lvextend -l +100%FREE` right after the
VG's LVs are made, before any file system (or LUKS container) is made on it, so that is made at
the full size. It takes every free extent, the recorded free space included. Only linear and
striped LVs grow: one of another kind named as VG/LV is refused before anything is written, and
with "last" that VG's space stays free (the script says so).
"""

from __future__ import annotations

import textwrap

from rescue.errors import UsageError
from rescue.layout import LayoutError
from rescue.layout.model import (
    Layout,
    LogicalVolume,
    LuksContainer,
    PhysicalVolume,
    RaidArray,
    VolumeGroup,
)
from rescue.layout.recreate.plan import GROW_LV_LAST, GROW_LV_NONE
from rescue.layout.recreate.script import LUKS_PASSPHRASE_VAR, Script, comment_text, shell_word
from rescue.layout.recreate.stack_order import lv_paths, raid_path
from rescue.units import human_size

LVM_TOOLS = ("pvcreate", "vgcreate", "lvcreate", "lvchange", "vgs", "vgremove")
# LV segment types lvcreate can make from the recorded size alone.
LV_SIMPLE_SEGTYPES = frozenset({"linear", "striped"})
LV_RAID_SEGTYPES = frozenset({"raid0", "raid1", "raid4", "raid5", "raid6", "raid10", "mirror"})
# MD levels whose array is as large as its smallest member.
MD_MIRROR_LEVELS = frozenset({"raid1", "1", "mirror"})


def make_raid(script: Script, raid: RaidArray) -> None:
    if not raid.level:
        raise LayoutError(f"MD array {raid.path} was inactive at backup: its level is unknown")
    path = raid_path(raid)
    script.tools.add("mdadm")
    script.section(f"MD array {path} ({raid.level}) on {', '.join(raid.devices)}")
    script.checks.append(f"if mdadm --detail {shell_word(path)} >/dev/null 2>&1; then")
    script.checks.append(f"    rescue_check_free {shell_word(path)}")
    script.checks.append("fi")
    count = raid.raid_devices or len(raid.devices)
    members = [script.devices[d] for d in raid.devices]
    members += ["missing"] * max(0, count - len(members))
    argv = ["mdadm", "--create", shell_word(path), "--run", f"--level={shell_word(raid.level)}"]
    argv.append(f"--raid-devices={int(count)}")
    if raid.metadata:
        argv.append(f"--metadata={shell_word(raid.metadata)}")
    if raid.uuid:
        argv.append(f"--uuid={shell_word(raid.uuid)}")
    if raid.md_name:
        argv.append(f"--name={shell_word(raid.md_name)}")
    if raid.spares:
        argv.append(f"--spare-devices={len(raid.spares)}")
    argv += members + [script.devices[d] for d in raid.spares]
    script.emit(
        "# An array of this name left by an earlier run is stopped first.",
        f"if mdadm --detail {shell_word(path)} >/dev/null 2>&1; then",
        f"    mdadm --stop {shell_word(path)}",
        "fi",
        " ".join(argv),
    )
    for device in [raid.path, path]:
        script.devices[device] = shell_word(path)
    script.stacked |= set(raid.devices) | set(raid.spares)


def make_luks(script: Script, luks: LuksContainer, *, new_uuid: bool = False) -> None:
    """luksFormat (with the recorded UUID, so crypttab's UUID= still matches; new_uuid: with
    one cryptsetup makes, which recovery's fix_fstab then writes into crypttab), then open it
    under the recorded mapping name."""
    device = script.devices[luks.device]
    key = f'"${LUKS_PASSPHRASE_VAR}"'
    script.tools.add("cryptsetup")
    script.section(f"LUKS container on {luks.device}")
    kind = "luks1" if luks.version == "1" else "luks2"
    script.emit(
        "# The passphrase is not in the backup: recreating the container needs a new one.",
        "# Put it in a file (the whole file is the passphrase: write it with printf '%s', no",
        f"# newline) and set {LUKS_PASSPHRASE_VAR} to that file's path; step 1 checks it.",
    )
    argv = ["cryptsetup", "luksFormat", "--batch-mode", "--type", kind]
    if new_uuid:
        was = f" (it was {luks.uuid})" if luks.uuid else ""
        script.emit(comment_text(f"# A new UUID, as asked (luks_new_uuid){was}."))
    elif luks.uuid:
        argv += ["--uuid", shell_word(luks.uuid)]
    argv += ["--key-file", key, device]
    if luks.mapping:
        mapping = shell_word(luks.mapping)
        script.checks.append(f"rescue_check_free {shell_word(luks.mapping_path or '')}")
        script.emit(
            f"if [ -e {shell_word(luks.mapping_path or '')} ]; then",
            f"    cryptsetup close {mapping}",
            "fi",
            " ".join(argv),
            f"cryptsetup open --key-file {key} {device} {mapping}",
        )
        script.devices[luks.mapping_path or ""] = shell_word(luks.mapping_path or "")
    else:
        script.emit(
            " ".join(argv),
            "# It was not open at backup time, so nothing inside it is known or made.",
        )
    script.stacked.add(luks.device)
    script.luks_made.append(luks)


def _lvcreate(script: Script, vg_title: str, lv: LogicalVolume) -> list[str]:
    """The lvcreate line for one LV; for a kind rescue cannot make from the record (thin pools,
    caches, snapshots) a commented template here and a stop in step 1, so the admin edits the
    script before anything is destroyed, not halfway through it."""
    segtype = lv.segtype or "linear"
    name = f"{lv.vg}/{lv.name}"
    argv = ["lvcreate", "-y", "-W", "y", "-Z", "y", "-n", shell_word(lv.name)]
    argv += ["-L", f"{int(lv.size_bytes)}b"]
    if segtype == "striped" and (lv.stripes or 1) > 1:
        argv += ["-i", str(int(lv.stripes or 1))]
    elif segtype in LV_RAID_SEGTYPES:
        argv += ["--type", segtype]  # images and stripes: lvcreate's defaults for the type
    elif segtype not in LV_SIMPLE_SEGTYPES:
        why = (
            f"{name} is a {segtype} LV, which rescue cannot recreate: make it in the step"
            f" '{vg_title}' and delete this check"
        )
        script.checks += [
            f"# {comment_text(why)}",
            f"rescue_die {shell_word(why + ' (nothing was changed)')}",
        ]
        return [
            comment_text(
                f"# {name} is a {segtype} LV: make it here by hand (step 1 stops until then),"
            ),
            comment_text(
                f"# e.g. lvcreate --type {segtype} -L {int(lv.size_bytes)}b -n {lv.name} {lv.vg}"
            ),
        ]
    argv.append(shell_word(lv.vg))
    return [" ".join(argv), f"lvchange -ay {shell_word(name)}"]


def make_vg(script: Script, vg: VolumeGroup, grow_lv: str = GROW_LV_NONE) -> None:
    assert script.layout.lvm is not None
    pvs = [pv for pv in script.layout.lvm.pvs if pv.vg == vg.name]
    lvs = [lv for lv in script.layout.lvm.lvs if lv.vg == vg.name]
    script.tools.update(LVM_TOOLS)
    title = f"LVM volume group {vg.name}"
    growths = [device_growth(script, pv.device) for pv in pvs]
    gained = None if None in growths else sum(g or 0 for g in growths)
    grown, words = _lv_to_grow(lvs, grow_lv)
    script.section(
        f"{title} on {', '.join(pv.device for pv in pvs)}"
        f" (extent {human_size(vg.extent_size_bytes)}){_growth_title(vg, grown, gained)}"
    )
    script.checks.append(f"rescue_check_vg {shell_word(vg.name)}")
    script.releases.append(f"rescue_remove_vg {shell_word(vg.name)}")
    script.emit(
        "# The PV UUIDs are the recorded ones; vgcreate and lvcreate cannot set a VG or LV UUID,",
        "# so those are new (nothing refers to them: fstab and GRUB use file system UUIDs).",
    )
    for pv in pvs:
        script.emit(_pvcreate(script, pv))
    extent_kib = vg.extent_size_bytes // 1024
    devices = " ".join(script.devices[pv.device] for pv in pvs)
    script.emit(f"vgcreate -y -s {int(extent_kib)}k {shell_word(vg.name)} {devices}")
    for lv in lvs:
        script.emit(*_lvcreate(script, title, lv))
        for path in lv_paths(lv):
            script.devices[path] = shell_word(f"/dev/{lv.vg}/{lv.name}")
    if grown is not None:
        script.tools.add("lvextend")
        script.emit(
            *_comment(
                f'grow_lv = "{grow_lv}": {words} takes every free extent of the VG (if there'
                " are any) now, before its file system or LUKS container is made in a later"
                " step, which is then made at the full size."
            ),
            f'if [ "$(vgs --noheadings -o vg_free_count {shell_word(vg.name)}'
            " | awk '{print $1}')\" -gt 0 ]; then",
            f"    lvextend -l +100%FREE {shell_word(f'{grown.vg}/{grown.name}')}",
            "fi",
        )
    elif gained != 0:
        script.emit(
            *_comment(
                f'grow_lv = "{grow_lv}"{f" ({words})" if words else ""}: every LV keeps its'
                " recorded size, and what the PVs gained stays free in the VG. To give it to"
                f" an LV and its file system later: lvextend -r -l +100%FREE {vg.name}/LV"
            )
        )


def _comment(text: str) -> list[str]:
    """text as # comment lines that fit the script's 96-column rules."""
    return textwrap.wrap(
        comment_text(text), width=96, initial_indent="# ", subsequent_indent="# ",
        break_long_words=False, break_on_hyphens=False,
    )  # fmt: skip


def _lv_to_grow(lvs: list[LogicalVolume], grow_lv: str) -> tuple[LogicalVolume | None, str]:
    """The LV of a VG (its LVs in the recorded order) that takes the VG's free space, if any,
    and what the script's comment says of it: which LV it is, or why none is."""
    if grow_lv == GROW_LV_NONE:
        return None, ""
    if grow_lv != GROW_LV_LAST:
        named = [lv for lv in lvs if f"{lv.vg}/{lv.name}" == grow_lv]
        return (named[0], grow_lv) if named else (None, "an LV of another VG")
    candidates = [lv for lv in lvs if not (lv.filesystem and lv.filesystem.type == "swap")]
    if not candidates:
        return None, "the VG has no LV that is not swap"
    last = candidates[-1]
    name = f"{last.vg}/{last.name}, the last LV that is not swap,"
    segtype = last.segtype or "linear"
    if segtype not in LV_SIMPLE_SEGTYPES:
        return None, f"{name} is a {segtype} LV, which does not grow"
    return last, name


def _growth_title(vg: VolumeGroup, grown: LogicalVolume | None, gained: int | None) -> str:
    """What the section title (and so the recovery's plan) says of the VG's free space."""
    if grown is not None:
        if gained is None:
            amount = "how much depends on the MD array"
        elif gained + (vg.free_bytes or 0) == 0:
            amount = "none expected"
        else:
            amount = f"about {human_size(gained + (vg.free_bytes or 0))}"
            amount += f", {human_size(gained)} of it new" if vg.free_bytes and gained else ""
        return f"; {grown.vg}/{grown.name} takes the VG's free space ({amount})"
    if gained == 0:
        return ""
    amount = "maybe" if gained is None else f"about {human_size(gained)}"
    return f"; LV sizes kept: the VG has {amount} more free after recreation: lvextend by hand"


def device_growth(script: Script, device: str) -> int | None:
    """About how many bytes a recreated device is larger than the recorded one: a partition
    that grows into a larger disk, a whole disk, and what is stacked on them (LUKS, an MD
    mirror, as large as its smallest member); None when rescue cannot tell (another MD level
    over a member that grows)."""
    for plan in script.plans:
        if plan.source.table is None and plan.source.path == device:
            return max(plan.target.size_bytes - plan.source.size_bytes, 0)
        for part in plan.source.partitions:
            if part.path == device:
                return plan.growth_bytes(part)
    for luks in script.layout.luks:
        if luks.mapping_path == device:
            return device_growth(script, luks.device)
    for raid in script.layout.raids:
        if device in (raid.path, raid_path(raid)):
            growths = [device_growth(script, member) for member in raid.devices]
            if all(g == 0 for g in growths):
                return 0
            known = [g for g in growths if g is not None]
            if raid.level in MD_MIRROR_LEVELS and len(known) == len(growths):
                return min(known)
            return None
    return 0


def check_grow_lv(layout: Layout, grow_lv: str) -> None:
    """UsageError before a line of the script is written if grow_lv names an LV the layout
    does not record, or one that cannot grow (only linear and striped LVs do)."""
    if grow_lv in (GROW_LV_NONE, GROW_LV_LAST):
        return
    lvs = layout.lvm.lvs if layout.lvm else []
    named = [lv for lv in lvs if f"{lv.vg}/{lv.name}" == grow_lv]
    if not named:
        known = ", ".join(f"{lv.vg}/{lv.name}" for lv in lvs) or "none"
        raise UsageError(f"grow_lv: the layout has no LV {grow_lv} (its LVs: {known})")
    segtype = named[0].segtype or "linear"
    if segtype not in LV_SIMPLE_SEGTYPES:
        raise UsageError(
            f"grow_lv: {grow_lv} is a {segtype} LV, which cannot grow; only linear and"
            " striped LVs do"
        )


def _pvcreate(script: Script, pv: PhysicalVolume) -> str:
    script.stacked.add(pv.device)
    device = script.devices[pv.device]
    return f"pvcreate -ff -y --uuid {shell_word(pv.uuid)} --norestorefile {device}"


def make_orphan_pv(script: Script, pv: PhysicalVolume) -> None:
    script.tools.add("pvcreate")
    script.section(f"LVM physical volume {pv.device} (in no volume group)")
    script.emit(_pvcreate(script, pv))
