"""The steps that make MD arrays, LUKS containers and LVM (PVs with their UUIDs, VGs, LVs), each
over whatever an earlier run left, and the checks they add to step 1."""

from __future__ import annotations

from rescue.layout import LayoutError
from rescue.layout.model import (
    LogicalVolume,
    LuksContainer,
    PhysicalVolume,
    RaidArray,
    VolumeGroup,
)
from rescue.layout.recreate.script import LUKS_PASSPHRASE_VAR, Script, comment_text, shell_word
from rescue.layout.recreate.stack_order import lv_paths, raid_path
from rescue.units import human_size

LVM_TOOLS = ("pvcreate", "vgcreate", "lvcreate", "lvchange", "vgs", "vgremove")
# LV segment types lvcreate can make from the recorded size alone.
LV_SIMPLE_SEGTYPES = frozenset({"linear", "striped"})
LV_RAID_SEGTYPES = frozenset({"raid0", "raid1", "raid4", "raid5", "raid6", "raid10", "mirror"})


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


def make_luks(script: Script, luks: LuksContainer) -> None:
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
    if luks.uuid:
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


def make_vg(script: Script, vg: VolumeGroup) -> None:
    assert script.layout.lvm is not None
    pvs = [pv for pv in script.layout.lvm.pvs if pv.vg == vg.name]
    lvs = [lv for lv in script.layout.lvm.lvs if lv.vg == vg.name]
    script.tools.update(LVM_TOOLS)
    title = f"LVM volume group {vg.name}"
    script.section(
        f"{title} on {', '.join(pv.device for pv in pvs)}"
        f" (extent {human_size(vg.extent_size_bytes)})"
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


def _pvcreate(script: Script, pv: PhysicalVolume) -> str:
    script.stacked.add(pv.device)
    device = script.devices[pv.device]
    return f"pvcreate -ff -y --uuid {shell_word(pv.uuid)} --norestorefile {device}"


def make_orphan_pv(script: Script, pv: PhysicalVolume) -> None:
    script.tools.add("pvcreate")
    script.section(f"LVM physical volume {pv.device} (in no volume group)")
    script.emit(_pvcreate(script, pv))
