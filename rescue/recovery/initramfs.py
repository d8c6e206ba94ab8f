"""Whether the restored initramfs still fits this machine, or must be rebuilt.

update-initramfs is most of the bootloader step: 20 s on a server, 7 to 9 minutes under
emulation. The restored initramfs was made for the same system, and the layout comes back with
the recorded UUIDs and names, so it usually still fits. It must be rebuilt when:
- a file system could not keep its UUID, or fix_fstab rewrote a file the initramfs copies
  (fstab, crypttab, the resume setting);
- the resume device is on no recreated device;
- the layout holds LUKS or MD RAID: their initramfs configuration is not yet checked here, so it
  is always rebuilt (the safe side);
- a kernel has no initramfs, or the driver of a target disk is neither built into that kernel
  nor inside its initramfs (new hardware: an NVMe or SCSI controller the old machine lacked);
- the admin asked for it (`initramfs = "always"`).
Each reason is said in the step's report; so is what was checked when it is kept.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rescue.layout.model import Layout

CHOICES = ("auto", "always")
SYS_BLOCK = Path("/sys/class/block")
RESUME_FILE = "etc/initramfs-tools/conf.d/resume"
# Files fix_fstab may rewrite that an initramfs holds a copy of, or was built from.
COPIED_FILES = ("etc/fstab", "etc/crypttab", RESUME_FILE)
DRIVER_MODULES = {"sd": "sd_mod", "sr": "sr_mod"}  # drivers whose module has another name
_KO = re.compile(r"\.ko(\.(xz|zst|gz))?$")


@dataclass
class Verdict:
    """rebuild with its reasons, or kept with what was checked."""

    reasons: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def rebuild(self) -> bool:
        return bool(self.reasons)

    @property
    def line(self) -> str:
        if self.rebuild:
            return f"initramfs rebuilt: {'; '.join(self.reasons)}"
        return f"initramfs kept: {'; '.join(self.checked)}"


def module_name(path: str) -> str | None:
    """The kernel module a file in an initramfs or in modules.builtin is, or None."""
    base = os.path.basename(path.strip())
    if not _KO.search(base):
        return None
    return _KO.sub("", base).replace("-", "_")


def storage_drivers(device: str, sys_block: Path = SYS_BLOCK) -> set[str]:
    """The drivers of device and of every bus above it, by module name (virtio_blk and
    virtio_pci; sd_mod and ahci; nvme). Empty for a virtual device (loop). The running kernel
    (the rescue system's) may have one built in that the restored kernel has as a module, so
    the driver's name counts, not only its module link."""
    name = os.path.basename(os.path.realpath(device))
    entry = Path(os.path.realpath(sys_block / name))
    if (entry / "partition").exists():
        entry = entry.parent
    node = entry / "device"
    if not node.exists():
        return set()
    found = set()
    here = Path(os.path.realpath(node))
    while here != here.parent and here.name != "devices":
        driver = here / "driver"
        if (driver / "module").exists():
            found.add(os.path.basename(os.path.realpath(driver / "module")))
        elif driver.exists():
            name = os.path.basename(os.path.realpath(driver)).replace("-", "_")
            found.add(DRIVER_MODULES.get(name, name))
        here = here.parent
    return found


def kernel_versions(root: Path) -> list[str]:
    """The kernels installed in the restored system: those with both modules and an image."""
    modules = root / "lib/modules"
    if not modules.is_dir():
        return []
    return sorted(
        v.name for v in modules.iterdir() if (root / "boot" / f"vmlinuz-{v.name}").exists()
    )


def kernel_modules(root: Path, version: str) -> set[str]:
    """Every module the restored kernel has as a file (modules.dep lists them): a driver it
    lacks is built in, or a bus driver that is never a module (pcieport), and no initramfs
    could add it."""
    path = root / "lib/modules" / version / "modules.dep"
    if not path.is_file():
        return set()
    return {m for line in path.read_text().splitlines() if (m := module_name(line.split(":")[0]))}


def resume_problem(root: Path, present_uuids: set[str]) -> str | None:
    """Why the restored resume setting names no recreated device, or None if it is fine."""
    path = root / RESUME_FILE
    if not path.is_file():
        return None  # initramfs-tools chose the swap at build time, by its (kept) UUID
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key != "RESUME":
            continue
        value = value.strip().strip("\"'")
        kind, sep, uuid = value.partition("=")
        if sep and kind == "UUID" and uuid.lower() not in present_uuids:
            return f"the resume device {value} is on no recreated device"
    return None


@dataclass
class Inputs:
    """What the decision reads: the recreated layout's facts and the restored system."""

    choice: str
    root: Path
    layout: Layout
    uuid_changes: dict[str, str]  # old UUID -> new, for file systems that could not keep it
    present_uuids: set[str]  # every UUID on the recreated devices (lower case)
    changed_files: Iterable[str]  # files recovery rewrote (relative to the root)
    target_disks: Iterable[str]
    list_initrd: Callable[[str], list[str]]  # initrd path inside root -> the paths it holds


def decide(inputs: Inputs) -> Verdict:
    verdict = Verdict()
    reasons, checked = verdict.reasons, verdict.checked
    if inputs.choice == "always":
        reasons.append('asked for (initramfs = "always")')
        return verdict
    for old, new in sorted(inputs.uuid_changes.items()):
        reasons.append(f"a file system's UUID changed ({old} is now {new})")
    rewritten = sorted(set(inputs.changed_files) & set(COPIED_FILES))
    if rewritten:
        reasons.append(f"fix_fstab rewrote {', '.join(rewritten)}")
    stack = [
        kind
        for kind, present in (("LUKS", inputs.layout.luks), ("MD RAID", inputs.layout.raids))
        if present
    ]
    if stack:
        reasons.append(f"the layout holds {' and '.join(stack)}: always rebuilt")
    if not inputs.uuid_changes:
        checked.append("file-system UUIDs as recorded")
    resume = resume_problem(inputs.root, inputs.present_uuids)
    if resume:
        reasons.append(resume)
    else:
        checked.append("resume device present")
    versions = kernel_versions(inputs.root)
    if not versions:
        reasons.append("no installed kernel found under lib/modules and boot/")
        return verdict
    drivers = set().union(*(storage_drivers(d) for d in inputs.target_disks))
    for version in versions:
        initrd = f"boot/initrd.img-{version}"
        if not (inputs.root / initrd).is_file():
            reasons.append(f"kernel {version} has no {initrd}")
            continue
        needed = drivers & kernel_modules(inputs.root, version)
        if not needed:
            checked.append(f"kernel {version} needs no module for the target disks")
            continue
        inside = {m for p in inputs.list_initrd("/" + initrd) if (m := module_name(p))}
        missing = sorted(needed - inside)
        if missing:
            reasons.append(f"{initrd} lacks the storage driver {', '.join(missing)}")
        else:
            checked.append(f"{initrd} has the storage drivers {', '.join(sorted(needed))}")
    return verdict
