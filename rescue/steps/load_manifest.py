"""Step 4: restore the manifest alone from the chosen point: it says what the machine was
(layout, boot mode, ids, excluded directories, hard links), so the rescue system stays generic.
A wrong passphrase fails here, before any disk is touched. The backup's etc/passwd and
etc/group come in the same run, for the restore_identity step."""

from __future__ import annotations

import os
from pathlib import Path

from rescue.errors import ManifestError
from rescue.exact.fetch import NO_RECORDS
from rescue.exact.records import SIDECAR_REL
from rescue.exact.sizes import SIZES_REL
from rescue.placement.fsops import remove_own
from rescue.recovery import manifest
from rescue.steps.context import Context
from rescue.units import human_size

ID = "load_manifest"
TITLE = "restore the host manifest from the backup"
READ_ONLY = True
REDO_ON_RESUME = False


def plan(ctx: Context) -> list[str]:
    return [
        f"restore {manifest.MANIFEST_REL}, its metadata records, etc/passwd and etc/group "
        f"into {ctx.work_dir} (one duplicity run)"
    ]


IDENTITY_FILES = ("etc/passwd", "etc/group")


def identity_dir(ctx: Context) -> Path:
    """Where the backup's etc/passwd and etc/group wait for the restore_identity step."""
    return ctx.work_dir / "from-backup"


def run(ctx: Context) -> list[str]:
    ctx.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder = identity_dir(ctx)
    remove_own(folder)  # what an earlier attempt fetched: rescue's own work files
    folder.mkdir(mode=0o700)
    # The identity files come in the same duplicity run: each run costs seconds (a minute
    # under emulation), and restore_identity needs them next.
    found = ctx.engine().restore_files(
        [manifest.MANIFEST_REL, SIDECAR_REL, SIZES_REL, *IDENTITY_FILES],
        folder,
        ctx.restore_time(),
    )
    if manifest.MANIFEST_REL not in found:
        raise ManifestError(
            "the backup holds no manifest (was it made by rescue?); recreate the disks by "
            "hand, mount them at the target root and resume with --from restore_identity"
        )
    path = ctx.work_dir / "manifest.json"
    os.replace(folder / manifest.MANIFEST_REL, path)
    ctx.facts.manifest_file = str(path)
    ctx.facts.metadata_file = None
    if SIDECAR_REL in found:
        records = ctx.work_dir / "metadata.jsonl.gz"
        os.replace(folder / SIDECAR_REL, records)
        ctx.facts.metadata_file = str(records)
    ctx.facts.sizes_file = None
    if SIZES_REL in found:
        sizes = ctx.work_dir / "sizes.json.gz"
        os.replace(folder / SIZES_REL, sizes)
        ctx.facts.sizes_file = str(sizes)
    data = ctx.manifest()
    host, boot = data.host, data.bootloader
    ctx.facts.host = host.hostname
    disks = data.layout.disks if data.layout else []
    lines = [
        f"host {host.hostname}: {host.os.get('PRETTY_NAME', '?')}, "
        f"{host.boot_mode} boot, bootloader {boot.kind} on {boot.disk}",
        f"backed up from {data.root} on {data.created} (manifest format "
        f"{data.format_version}, rescue {data.tool_version})",
    ]
    lines += [f"disk {d.path} {human_size(d.size_bytes)}" for d in disks]
    if not disks:
        lines.append(f"no disk layout recorded: {data.layout_error or 'unknown reason'}")
    if ctx.facts.metadata_file is None:
        ctx.warn(NO_RECORDS)
    elif data.metadata is None:
        lines.append("metadata records: counts not recorded")
    else:
        counts = data.metadata
        lines.append(
            f"metadata records: {counts.records} paths (xattrs on {counts.with_xattrs}, "
            f"ACLs on {counts.with_acls}, {counts.sparse_files} sparse files)"
        )
    return lines
