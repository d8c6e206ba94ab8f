"""Step 4: restore the manifest alone from the chosen point: it says what the machine was
(layout, boot mode, ids, excluded directories, hard links), so the rescue system stays generic.
A wrong passphrase fails here, before any disk is touched."""

from __future__ import annotations

from rescue import manifest
from rescue.layout.capture import human_size
from rescue.steps.context import Context

ID = "load_manifest"
TITLE = "restore the host manifest from the backup"
READ_ONLY = True
REDO_ON_RESUME = False


def plan(ctx: Context) -> list[str]:
    return [f"restore {manifest.MANIFEST_REL} into {ctx.work_dir}"]


def run(ctx: Context) -> list[str]:
    path = ctx.work_dir / "manifest.json"
    ctx.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ctx.engine().restore(manifest.MANIFEST_REL, path, ctx.restore_time(), force=True)
    ctx.facts.manifest_file = str(path)
    data = ctx.manifest()
    host = data.get("host", {})
    ctx.facts.host = host.get("hostname")
    boot = data.get("bootloader", {})
    disks = (data.get("layout") or {}).get("disks", [])
    lines = [
        f"host {host.get('hostname')}: {host.get('os', {}).get('PRETTY_NAME', '?')}, "
        f"{host.get('boot_mode')} boot, bootloader {boot.get('kind')} on {boot.get('disk')}",
        f"backed up from {data.get('root')} on {data.get('created')}",
    ]
    lines += [f"disk {d['path']} {human_size(d['size_bytes'])}" for d in disks]
    if not disks:
        lines.append(f"no disk layout recorded: {data.get('layout_error') or 'unknown reason'}")
    return lines
