"""The partition step: sfdisk writes the recorded table sector for sector, then the script waits
for the kernel's node of every partition and names it in a variable."""

from __future__ import annotations

import re

from rescue.layout import LayoutError
from rescue.layout.model import partition_type_name
from rescue.layout.recreate.plan import DiskPlan, is_extended
from rescue.layout.recreate.script import Script, comment_text, disk_words
from rescue.units import human_size

# Ends the sfdisk here-documents; no line of a partition script can equal it (see _sfdisk_script).
HEREDOC_END = "RESCUE_SFDISK_END"
_HEX_ID = re.compile(r"(0x)?[0-9A-Fa-f][0-9A-Fa-f-]*")


def _sfdisk_string(value: str) -> str:
    """A quoted sfdisk script value. sfdisk decodes \\xNN in a value and knows no other escape,
    so the quote, the backslash and control characters are written that way (a name can hold
    anything); this also keeps every value on its line of the here-document."""
    out: list[str] = []
    for ch in value:
        if ch in '"\\' or not ch.isprintable():
            out.extend(f"\\x{b:02x}" for b in ch.encode())
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _checked_id(value: str, what: str) -> str:
    """A type code, GUID or disk id as written into the sfdisk script: hex digits and dashes only.

    Why: these are written unquoted into a here-document; a damaged manifest must fail here,
    not turn into a different partition table.
    """
    if not _HEX_ID.fullmatch(value):
        raise LayoutError(f"layout data: {what} {value!r} is not a valid identifier")
    return value


def _sfdisk_script(plan: DiskPlan) -> list[str]:
    """The sfdisk input that writes the source's table onto the target, sector for sector."""
    source, target = plan.source, plan.target
    lines = [f"label: {source.table}"]
    if source.table_id:
        lines.append(f"label-id: {_checked_id(source.table_id, 'disk id')}")
    lines.append("unit: sectors")
    if source.table == "gpt":
        if source.first_lba is not None:
            lines.append(f"first-lba: {int(source.first_lba)}")
        if source.last_lba is not None and target.size_bytes == source.size_bytes:
            lines.append(f"last-lba: {int(source.last_lba)}")
    if source.logical_sector_size != 512:
        lines.append(f"sector-size: {int(source.logical_sector_size)}")
    lines.append("")
    # sfdisk takes the partition number from the name in front (for gaps and logical
    # partitions); a target path it could misread is left out, the bare number is enough.
    prefix = target.path if re.fullmatch(r"/dev/[A-Za-z0-9_./+-]+", target.path) else ""
    prefix += "p" if prefix[-1:].isdigit() else ""
    for part in sorted(source.partitions, key=lambda p: p.number):
        fields = [f"start={int(part.start_sector)}"]
        if part.number not in plan.grown:
            fields.append(f"size={int(part.size_sectors)}")
        fields.append(f"type={_checked_id(part.type, 'partition type')}")
        if source.table == "gpt":
            if part.uuid:
                fields.append(f"uuid={_checked_id(part.uuid, 'partition GUID')}")
            if part.name is not None:
                fields.append(f"name={_sfdisk_string(part.name)}")
            if part.attrs:
                fields.append(f"attrs={_sfdisk_string(part.attrs)}")
        elif part.bootable:
            fields.append("bootable")
        lines.append(f"{prefix}{int(part.number)} : {', '.join(fields)}")
    return lines


def partition_disk(script: Script, plan: DiskPlan) -> None:
    source = plan.source
    disk = f'"${plan.var}"'
    script.section(f"partition {plan.target.path} like {disk_words(plan)}")
    if source.table is None:
        script.emit("# No partition table was recorded: the disk stays as step 3 left it.")
        script.devices[source.path] = disk
        return
    for part in source.partitions:
        words = [f"# {part.number}: {part.start_sector}+{part.size_sectors} sectors"]
        words.append(f"({human_size(source.partition_bytes(part))})")
        words.append(partition_type_name(source.table, part.type))
        if part.number in plan.grown:
            words.append("-> grows to the end of the disk")
        script.emit(comment_text(" ".join(words)))
    script.emit(
        f"sfdisk --wipe always --wipe-partitions always --no-reread --no-tell-kernel {disk}"
        f" <<'{HEREDOC_END}'",
        *_sfdisk_script(plan),
        HEREDOC_END,
    )
    if source.partitions:
        # partx -u alone misses a partition numbered above the count (MBR's 5 after 1-3).
        last = max(p.number for p in source.partitions)
        script.emit(
            "# Tell the kernel (sfdisk was told not to, so this works alike on every kind of",
            "# disk); partx -u also copes when udev made the kernel reread the table already.",
            "rescue_settle",
            f"partx -u --nr 1:{int(last)} {disk}",
            "rescue_settle",
        )
    script.devices[source.path] = disk
    for part in source.partitions:
        if is_extended(source, part):
            continue  # a container of logical partitions: nothing is made on it
        var = plan.part_var(part)
        script.emit(f'{var}=$(rescue_part "${plan.var}" {int(part.number)})')
        script.devices[part.path] = f'"${var}"'
