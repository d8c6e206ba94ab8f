"""MD arrays, LUKS containers and LVM in the order they stack: each after what it is built
from; one on disks without a target is skipped, one half on them is refused up front."""

from __future__ import annotations

from dataclasses import dataclass

from rescue.errors import DiskMappingError
from rescue.layout import LayoutError
from rescue.layout.model import (
    Layout,
    LogicalVolume,
    LuksContainer,
    PhysicalVolume,
    RaidArray,
    VolumeGroup,
)
from rescue.layout.recreate.script import Script


@dataclass
class Stack:
    """One stacked object: what it is built from and which device paths it provides."""

    obj: RaidArray | LuksContainer | VolumeGroup | PhysicalVolume
    needs: list[str]
    provides: list[str]


def raid_path(raid: RaidArray) -> str:
    """Where the array is created: its /dev/md/ name if it had one, else its kernel name."""
    return f"/dev/md/{raid.devname}" if raid.devname else raid.path


def lv_paths(lv: LogicalVolume) -> list[str]:
    dm_name = f"{lv.vg.replace('-', '--')}-{lv.name.replace('-', '--')}"
    paths = [f"/dev/{lv.vg}/{lv.name}", f"/dev/mapper/{dm_name}", lv.path, lv.dm_path]
    return [p for p in dict.fromkeys(paths) if p]


def _stacks(layout: Layout) -> list[Stack]:
    stacks = []
    for raid in layout.raids:
        provides = [raid.path, raid_path(raid)]
        stacks.append(Stack(raid, [*raid.devices, *raid.spares], provides))
    for luks in layout.luks:
        provides = [luks.mapping_path] if luks.mapping_path else []
        stacks.append(Stack(luks, [luks.device], provides))
    if layout.lvm:
        for vg in layout.lvm.vgs:
            pvs = [pv.device for pv in layout.lvm.pvs if pv.vg == vg.name]
            lvs = [p for lv in layout.lvm.lvs if lv.vg == vg.name for p in lv_paths(lv)]
            stacks.append(Stack(vg, pvs, lvs))
        for pv in layout.lvm.pvs:
            if pv.vg is None:
                stacks.append(Stack(pv, [pv.device], []))
    return stacks


def _stack_name(stack: Stack) -> str:
    obj = stack.obj
    if isinstance(obj, RaidArray):
        return f"MD array {obj.path}"
    if isinstance(obj, LuksContainer):
        return f"the LUKS container on {obj.device}"
    if isinstance(obj, VolumeGroup):
        return f"volume group {obj.name}"
    return f"the LVM PV {obj.device}"


def order_stacks(script: Script) -> list[Stack]:
    """The stacked objects in an order where each comes after what it is built from.

    An object wholly on disks that are not recreated is skipped; one partly on them, or on a
    device the layout does not describe, cannot be made and is an error now, not halfway
    through the script.
    """
    for disk in script.layout.disks:
        if disk.path not in script.devices:
            script.skipped |= {disk.path, *(p.path for p in disk.partitions)}
    known = set(script.devices)
    pending = _stacks(script.layout)
    ordered: list[Stack] = []
    while pending:
        progress = False
        for stack in list(pending):
            if all(n in known for n in stack.needs):
                ordered.append(stack)
                known |= set(stack.provides)
            elif stack.needs and all(n in script.skipped for n in stack.needs):
                script.skipped |= set(stack.provides)
                script.notes.append(
                    f"# {_stack_name(stack)} is not recreated: its disks have no target."
                )
            else:
                continue
            pending.remove(stack)
            progress = True
        if not progress:
            stack = pending[0]
            missing = [n for n in stack.needs if n not in known]
            if any(n in script.skipped for n in missing):
                raise DiskMappingError(
                    f"{_stack_name(stack)} is built from {', '.join(stack.needs)}, but "
                    f"{', '.join(n for n in missing if n in script.skipped)} is on a disk that "
                    "has no target; map that disk too"
                )
            raise LayoutError(
                f"{_stack_name(stack)} is built from {', '.join(missing) or 'nothing'}, which "
                "the layout does not describe"
            )
    return ordered
