"""Step 4: restore the manifest alone from the chosen point: it says what the machine was
(layout, boot mode, ids, excluded directories, hard links), so the rescue system stays generic.
A wrong passphrase fails here, before any disk is touched. The copies of etc/passwd and etc/group
that the backup keeps beside the manifest (manifest.copy_identity) come in the same run, for the
restore_identity step; a backup made by an older rescue has none, and that step fetches etc/."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from rescue.errors import ManifestError
from rescue.exact.fetch import NO_RECORDS, OWN_DIR, restore_own
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
        f"restore {OWN_DIR} (the manifest, the metadata records and copies of etc/passwd and "
        f"etc/group) into {ctx.work_dir}: one duplicity run, which reads only the volume that "
        "holds it"
    ]


def identity_dir(ctx: Context) -> Path:
    """Where the backup's etc/passwd and etc/group wait for the restore_identity step."""
    return ctx.work_dir / "from-backup"


def run(ctx: Context) -> list[str]:
    ctx.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder = identity_dir(ctx)
    remove_own(folder)  # what an earlier attempt fetched: rescue's own work files
    folder.mkdir(mode=0o700)
    # only the volume that holds rescue's directory is read: a selection by pattern would read
    # them all (minutes under emulation)
    into = folder / "rescue"
    own = restore_own(ctx.engine(), ctx.restore_time(), into) or into  # None: it stays empty
    ctx.facts.manifest_file = _take(own, manifest.MANIFEST_REL, ctx.work_dir)
    if ctx.facts.manifest_file is None:
        raise ManifestError(
            "the backup holds no manifest (was it made by rescue?); recreate the disks by "
            "hand, mount them at the target root and resume with --from restore_identity"
        )
    ctx.facts.metadata_file = _take(own, SIDECAR_REL, ctx.work_dir)
    ctx.facts.sizes_file = _take(own, SIZES_REL, ctx.work_dir)
    # A backup made by an older rescue has no copies: restore_identity fetches etc/ then.
    copies = own / PurePosixPath(manifest.IDENTITY_REL).name
    if all((copies / name).is_file() for name in manifest.IDENTITY_NAMES):
        os.rename(copies, folder / "etc")
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


def _take(own: Path, rel: str, work: Path) -> str | None:
    """Move rescue's file `rel` (fetched into own) to the work directory; its path, or None
    when the set holds none."""
    fetched = own / PurePosixPath(rel).name
    if not fetched.is_file():
        return None
    kept = work / fetched.name
    os.replace(fetched, kept)
    return str(kept)
