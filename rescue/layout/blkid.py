"""blkid's low-level probe: what signature (file system, partition table, PV, LUKS, md member)
a device or a byte range of it carries.

Why a module of its own: the disks, their partitions, LVs, MD arrays and open LUKS mappings are
all probed this way, and `mdadm --export` prints the same KEY=value shape.
"""

from __future__ import annotations

import re

from rescue.layout import LayoutError
from rescue.layout.model import Filesystem
from rescue.layout.tools import run_probe

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
    result = run_probe(argv)
    if result.returncode == 2 and not (result.output.strip() or result.stderr.strip()):  # nothing
        return {}
    # blkid also exits 2 when it cannot open the device ("blkid: error: ...: Operation not
    # permitted"): that must fail, or an unreadable disk would be recorded as a blank one.
    if result.returncode == 8:
        raise LayoutError(
            f"{where} carries more than one signature (blkid: ambivalent result); "
            "remove the stale one with wipefs before a backup can record this disk"
        )
    if result.returncode != 0:
        raise LayoutError(f"blkid cannot probe {where}: {result.last_line('no output')}")
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
