"""build_script: the whole script, from the check in step 1 to the file systems."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from rescue.errors import DiskMappingError, UsageError
from rescue.layout import LayoutError
from rescue.layout.model import Disk, Layout, LuksContainer, RaidArray, VolumeGroup
from rescue.layout.recreate.filesystems import make_filesystems
from rescue.layout.recreate.md_luks_lvm import (
    check_grow_lv,
    make_luks,
    make_orphan_pv,
    make_raid,
    make_vg,
)
from rescue.layout.recreate.partitions import partition_disk
from rescue.layout.recreate.plan import (
    GROW_LV_LAST,
    GROW_LV_NONE,
    DiskPlan,
    plan_disk,
    probe_target,
)
from rescue.layout.recreate.script import (
    LUKS_PASSPHRASE_VAR,
    Script,
    helper_lines,
    write_header,
)
from rescue.layout.recreate.stack_order import order_stacks

# Check, release and wipe come before the steps that depend on the layout.
FIXED_STEPS = 3


def build_script(
    layout: Layout,
    mapping: Mapping[str, str],
    *,
    grow: bool = True,
    grow_lv: str = GROW_LV_NONE,
    luks_new_uuid: bool = False,
    targets: Iterable[Disk] | None = None,
) -> str:
    """The shell script that recreates the mapped disks of layout on their targets.

    mapping is {source disk path: target disk path}; disks not in it are left alone. targets
    describes the target disks (size, sector size), e.g. as captured by the mapping step; a
    target not in it is read from sysfs. With grow=True the last partition of a disk grows when
    its target is larger. grow_lv ("none", "last" or "VG/LV") says which LV of a VG takes the
    VG's free space (see md_luks_lvm); UsageError if it names an LV that is not recreated or
    cannot grow. luks_new_uuid: LUKS containers get new UUIDs instead of the recorded ones.
    Nothing is run here: see apply_script.
    """
    check_grow_lv(layout, grow_lv)
    sources: dict[str, Disk] = {}
    for disk in layout.disks:
        if disk.path in sources:
            raise LayoutError(f"layout data: two disks are both {disk.path}")
        sources[disk.path] = disk
    unknown = sorted(set(mapping) - set(sources))
    if unknown:
        raise DiskMappingError(f"the layout has no disk {', '.join(unknown)} to recreate")
    seen: dict[str, str] = {}
    for source, target in mapping.items():
        if target in seen:
            raise DiskMappingError(f"target {target} is given for both {seen[target]} and {source}")
        seen[target] = source
    described = {disk.path: disk for disk in targets or ()}
    plans: list[DiskPlan] = []
    for disk in layout.disks:
        if disk.path not in mapping:
            continue
        target_path = mapping[disk.path]
        target_disk = described.get(target_path) or probe_target(target_path)
        plans.append(plan_disk(f"D{len(plans) + 1}", disk, target_disk, grow))
    if not plans:
        raise DiskMappingError("no disk of the layout is mapped to a target")

    # The steps after check, release and wipe are built first: they add to the check.
    body = Script(layout, plans, first_step=FIXED_STEPS + 1)
    for plan in plans:
        partition_disk(body, plan)
    for stack in order_stacks(body):
        if isinstance(stack.obj, RaidArray):
            make_raid(body, stack.obj)
        elif isinstance(stack.obj, LuksContainer):
            make_luks(body, stack.obj, new_uuid=luks_new_uuid)
        elif isinstance(stack.obj, VolumeGroup):
            make_vg(body, stack.obj, grow_lv)
        else:
            make_orphan_pv(body, stack.obj)
    if grow_lv not in (GROW_LV_NONE, GROW_LV_LAST) and f"/dev/{grow_lv}" not in body.devices:
        raise UsageError(f"grow_lv: {grow_lv} is not recreated: its disks have no target")
    make_filesystems(body)
    if body.notes:
        body.section("what is not recreated")
        body.emit(*body.notes)

    script = Script(layout, plans)
    write_header(script, grow)
    script.emit("", "# --- helpers: read these once, the steps below only call them ---")
    script.emit(*helper_lines())
    disks = " ".join(f'"${p.var}"' for p in plans)
    script.section("check the targets; nothing is changed before this step passes")
    script.emit(
        f"for rescue_tool in {' '.join(sorted(body.tools))}; do",
        '    if ! command -v "$rescue_tool" >/dev/null 2>&1; then',
        '        rescue_die "$rescue_tool is not installed (nothing was changed)"',
        "    fi",
        "done",
        f"for rescue_disk in {disks}; do",
        '    rescue_check_unused "$rescue_disk"',
        "done",
        "# Every device on the targets (for telling a leftover of an earlier run from a stranger).",
        "RESCUE_TREE=",
        f"for rescue_disk in {disks}; do",
        '    rescue_disk_name=$(rescue_name "$rescue_disk")',
        '    for rescue_device in $(rescue_tree "$rescue_disk_name"); do',
        '        RESCUE_TREE="$RESCUE_TREE $rescue_device"',
        "    done",
        "done",
    )
    if body.luks_made:
        script.emit(
            f'if [ ! -r "${{{LUKS_PASSPHRASE_VAR}:-}}" ]; then',
            f'    rescue_die "set {LUKS_PASSPHRASE_VAR} to a file holding the new LUKS passphrase'
            ' (nothing was changed)"',
            "fi",
        )
    script.emit(*body.checks)
    script.section("release what an earlier run left on the targets")
    script.emit(
        "# The top first: LUKS mappings and LVs, arrays; then the volume groups themselves.",
        f"for rescue_disk in {disks}; do",
        '    rescue_release "$rescue_disk"',
        "done",
        *body.releases,
    )
    script.section("wipe the old signatures (partitions first, then the disk)")
    script.emit(
        f"for rescue_disk in {disks}; do",
        '    rescue_wipe "$rescue_disk"',
        "done",
    )
    assert script.step == FIXED_STEPS
    script.emit(*body.lines)
    script.emit("", "echo 'rescue: the disk layout is recreated'")
    return "\n".join(script.lines) + "\n"
