"""Step 14: make fstab, crypttab and the boot configuration name the recreated devices.

The layout is recreated with the recorded UUIDs, so most entries are right already. What
changes: a file system that could not keep its UUID (it gets the new one), a LUKS container
made with a new UUID (luks_new_uuid: crypttab's UUID=, and cryptdevice= or rd.luks.uuid= in
/etc/default/grub, name the new one), and entries that name a kernel device path (/dev/sda2),
which may be another disk on the new machine: those become UUID= entries. The UUIDs are probed
on the recreated devices. Each changed file keeps its original as FILE.before-rescue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from rescue.layout.blkid import probe
from rescue.layout.devices import NOT_ON_DISK, recreated_path, target_device
from rescue.layout.model import Disk, Layout
from rescue.steps.context import Context

ID = "fix_fstab"
TITLE = "rewrite fstab, crypttab and boot settings for the new devices"
READ_ONLY = False
REDO_ON_RESUME = False
# file (relative to the target root) -> which field holds the device (None: rewrite anywhere)
FILES: dict[str, int | None] = {
    "etc/fstab": 0,
    "etc/crypttab": 1,
    "etc/default/grub": None,
    "etc/initramfs-tools/conf.d/resume": None,
}
BY_UUID = "/dev/disk/by-uuid"


@dataclass
class Renames:
    """What to write instead: old UUID -> new UUID, kernel device path -> UUID=new."""

    uuids: dict[str, str] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    present: set[str] = field(default_factory=set)  # every UUID on the recreated devices

    def spec(self, spec: str) -> str:
        if spec in self.paths:
            return self.paths[spec]
        kind, sep, value = spec.partition("=")
        if sep and kind == "UUID" and value.lower() in self.uuids:
            return f"UUID={self.uuids[value.lower()]}"
        link, _, value = spec.rpartition("/")
        if link == BY_UUID and value.lower() in self.uuids:  # crypttab's other usual form
            return f"{BY_UUID}/{self.uuids[value.lower()]}"
        return spec

    def text(self, text: str) -> str:
        for old, new in self.uuids.items():
            text = re.sub(re.escape(old), new, text, flags=re.IGNORECASE)
        for old, new in self.paths.items():
            text = re.sub(rf"(?<![\w/]){re.escape(old)}(?![\w/])", new, text)
        return text


def _kernel_path(layout: Layout, device: str) -> bool:
    """Whether device is a disk or partition path (which can change), not an LV or mapping."""
    disks: list[Disk] = layout.disks
    return any(device == d.path or device in {p.path for p in d.partitions} for d in disks)


def renames(layout: Layout, mapping: dict[str, str]) -> Renames:
    """What changed, probed on the recreated devices: every recorded file system, and every
    LUKS container (capture records one as a crypto_LUKS file system of its device too; one
    recorded only as a container is probed by its device's path)."""
    result = Renames()
    found: list[tuple[str, str | None, str | None]] = []  # source device, UUID, recreated device
    for fs in layout.all_filesystems():
        found.append((fs.device, fs.uuid, target_device(layout, mapping, fs)))
    probed = {device for device, _, _ in found}
    for luks in layout.luks:
        if luks.device not in probed:
            found.append((luks.device, luks.uuid, recreated_path(layout, mapping, luks.device)))
    for source, old, device in found:
        new = probe(device).get("UUID") if device else None
        if not new:
            continue
        result.present.add(new.lower())
        if old and old.lower() != new.lower():
            result.uuids[old.lower()] = new
        if _kernel_path(layout, source):
            result.paths[source] = f"UUID={new}"
    return result


def rewrite(text: str, column: int | None, names: Renames) -> str:
    """text with device names replaced: in one whitespace-separated column of each line
    (fstab, crypttab), or anywhere (a shell-variable file such as /etc/default/grub)."""
    if column is None:
        return names.text(text)
    out = []
    for line in text.splitlines(keepends=True):
        fields = line.split()
        if not fields or fields[0].startswith("#") or len(fields) <= column:
            out.append(line)
            continue
        old = fields[column]
        new = names.spec(old)
        if new != old:
            # Replace that field only, keeping the line's own spacing.
            parts = re.split(r"(\s+)", line)
            index = [i for i, p in enumerate(parts) if p and not p.isspace()][column]
            parts[index] = new
            line = "".join(parts)
        out.append(line)
    return "".join(out)


def plan(ctx: Context) -> list[str]:
    return [f"rewrite device names in {', '.join(FILES)} where a UUID or a device changed"]


def _unresolved(names: Renames, text: str) -> list[str]:
    problems = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[0].startswith("#") or fields[2] in NOT_ON_DISK:
            continue
        kind, sep, value = fields[0].partition("=")
        if sep and kind == "UUID" and value.lower() not in names.present:
            problems.append(f"fstab names {fields[0]} ({fields[1]}), on no recreated device")
    return problems


def run(ctx: Context) -> list[str]:
    layout = ctx.layout()
    names = renames(layout, ctx.facts.mapping)
    done = []
    for rel, column in FILES.items():
        path: Path = ctx.target(rel)
        if not path.is_file():
            continue
        text = path.read_text()
        new = rewrite(text, column, names)
        if new != text:
            path.with_name(path.name + ".before-rescue").write_text(text)
            path.write_text(new)
            ctx.facts.changed += [rel, f"{rel}.before-rescue"]
            changed = sum(a != b for a, b in zip(text.splitlines(), new.splitlines(), strict=False))
            done.append(f"{rel}: {changed} line(s) rewritten (original kept as .before-rescue)")
        else:
            done.append(f"{rel}: already names the recreated devices")
        if rel == "etc/fstab":
            for problem in _unresolved(names, new):
                ctx.warn(problem)
    return done
