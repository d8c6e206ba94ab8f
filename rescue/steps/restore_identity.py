"""Step 8: make the backup's users and groups known by name on the rescue system.

duplicity restores owners by name, looked up on the system that runs the restore: without this
step a file of "www-data" (33 on the server) would get whatever "www-data" is on the rescue
system, or nobody's id. So the backup's etc/passwd and etc/group are restored first and put in
place on the rescue system. They are merged with the rescue system's own (the backup's entries
win; the rescue system keeps the names only it has, so its sshd and tools go on working), and
the rescue system's own files are saved in the work directory and put back at the end, or on
any failure. Redone on resume: after a reboot the rescue system has its own files again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rescue.errors import RecoveryStepError
from rescue.steps.context import Context
from rescue.steps.load_manifest import identity_dir

ID = "restore_identity"
TITLE = "restore etc/passwd and etc/group first, so owners map to the right ids"
READ_ONLY = False
REDO_ON_RESUME = True
CLEANUP = "put back the rescue system's passwd and group"
FILES = ("passwd", "group")
SYSTEM_ETC = Path("/etc")


def plan(ctx: Context) -> list[str]:
    return [
        "take the backup's etc/passwd and etc/group (restored with the manifest)",
        f"save {SYSTEM_ETC}/passwd and group, and merge the backup's entries into them",
    ]


def merge(backup: str, rescue: str) -> tuple[str, int]:
    """The backup's entries, then the rescue system's whose names the backup lacks."""
    names = {line.split(":", 1)[0] for line in backup.splitlines() if ":" in line}
    kept = [
        line
        for line in rescue.splitlines()
        if ":" in line and not line.startswith("#") and line.split(":", 1)[0] not in names
    ]
    lines = [line for line in backup.splitlines() if line.strip()]
    return "\n".join([*lines, *kept]) + "\n", len(kept)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.rescue-tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _saved(ctx: Context, name: str) -> Path:
    return ctx.work_dir / "identity" / f"rescue-{name}"


def put_back(ctx: Context) -> list[str]:
    """Give the rescue system its own passwd and group again (idempotent)."""
    done = []
    for name in FILES:
        saved = _saved(ctx, name)
        if saved.exists():
            shutil.copy2(saved, SYSTEM_ETC / f".{name}.rescue-tmp")
            os.replace(SYSTEM_ETC / f".{name}.rescue-tmp", SYSTEM_ETC / name)
            saved.unlink()
            done.append(f"{SYSTEM_ETC / name} is the rescue system's own again")
    ctx.facts.identity_saved = False
    return done


def run(ctx: Context) -> list[str]:
    (ctx.work_dir / "identity").mkdir(parents=True, exist_ok=True, mode=0o700)
    folder = identity_dir(ctx) / "etc"  # restored with the manifest, in load_manifest
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        found = ctx.engine().restore_files(
            [f"etc/{name}" for name in missing], identity_dir(ctx), ctx.restore_time()
        )
        if len(found) != len(missing):
            raise RecoveryStepError(
                "the backup holds no etc/passwd or etc/group: owners cannot be mapped by name"
            )
    ctx.drop_cleanup(CLEANUP)
    ctx.add_cleanup(CLEANUP, lambda: put_back(ctx))
    done = []
    for name in FILES:
        saved = _saved(ctx, name)
        if not saved.exists():  # a resumed run keeps the first saved copy, the real one
            shutil.copy2(SYSTEM_ETC / name, saved)
        merged, kept = merge((folder / name).read_text(), saved.read_text())
        _write(SYSTEM_ETC / name, merged)
        count = len((folder / name).read_text().splitlines())
        done.append(f"{name}: {count} entries from the backup, {kept} of the rescue system's kept")
    ctx.facts.identity_saved = True
    return done
