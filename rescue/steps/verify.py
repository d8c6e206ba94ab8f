"""Step 16: check the recovered system against the backup's own records.

- the ids: every user and group of the manifest has the same number in the restored
  etc/passwd and etc/group (owners were restored by name, so these decide every file's owner);
- the hard links: each recorded group is one inode again;
- the excluded directories: there, with the recorded owner and mode;
- everything the metadata records hold (rescue.exact.deep), on the whole tree: numeric owners,
  xattrs, ACLs, capabilities, sparse extents and exact mtimes; what recovery itself rewrites is
  left out (boot/, the initramfs record, the recovery log, the excluded directories, the files
  fix_fstab changed) and the directories above them are not compared by mtime;
- a sample of content: `duplicity verify --compare-data` of etc/, home/, root/ and usr/local/
  against the set (not boot/: the bootloader step has just regenerated it); the files that
  fix_fstab rewrote on purpose are left out.
Any difference fails the step with the list (and the report keeps it).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import PurePosixPath

from rescue.errors import VerifyError
from rescue.exact.deep import compare
from rescue.recovery.manifest import read_ids
from rescue.steps.context import Context

ID = "verify"
TITLE = "compare the recovered system with the backup"
READ_ONLY = False
REDO_ON_RESUME = False
SAMPLE = ("etc", "home", "root", "usr/local")
# What the bootloader and finish steps write into the target after the replay, and the
# directory update-initramfs makes its scratch files in (their mtimes only).
REGENERATED = ("boot", "var/lib/initramfs-tools", "var/log/rescue")
SCRATCH = ("var/tmp",)


def plan(ctx: Context) -> list[str]:
    return [
        "compare the user and group ids with the manifest, numerically",
        "check the hard-link groups and the excluded directories",
        "compare owners, xattrs, ACLs, capabilities, holes and exact mtimes with the records",
        f"duplicity verify --compare-data of {', '.join(SAMPLE)}",
    ]


def _ids(ctx: Context) -> list[str]:
    problems = []
    data = ctx.manifest()
    for kind, rel in (("users", "etc/passwd"), ("groups", "etc/group")):
        restored = read_ids(ctx.target(rel))
        recorded = data.users if kind == "users" else data.groups
        for name, number in sorted(recorded.items()):
            if restored.get(name) != number:
                problems.append(f"{kind[:-1]} {name} is {restored.get(name)}, recorded {number}")
    return problems


def _links(ctx: Context) -> list[str]:
    problems = []
    for group in ctx.manifest().hardlinks:
        inodes = set()
        for rel in group:
            try:
                st = ctx.target(rel).lstat()
            except OSError:
                continue
            inodes.add((st.st_dev, st.st_ino))
        if len(inodes) > 1:
            problems.append(f"hard links {', '.join(group)} are {len(inodes)} separate files")
    return problems


def _excluded(ctx: Context) -> list[str]:
    problems = []
    for e in ctx.manifest().excluded_dirs():
        try:
            st = os.lstat(ctx.target(e.path))
        except OSError:
            problems.append(f"{e.path} is missing")
            continue
        got = (f"{stat.S_IMODE(st.st_mode):04o}", st.st_uid, st.st_gid)
        if got != (e.mode, e.uid, e.gid):
            problems.append(f"{e.path} is {got}, recorded {(e.mode, e.uid, e.gid)}")
    return problems


def _rewritten(ctx: Context, sample: str, difference: str) -> bool:
    """Whether a duplicity difference line is about a file recovery rewrote on purpose."""
    return any(
        re.search(rf"\b{re.escape(os.path.relpath(rel, sample))}\b", difference)
        for rel in ctx.facts.changed
        if rel.startswith(sample + "/")
    )


def _deep(ctx: Context) -> tuple[list[str], str]:
    """The records against the whole target, leaving out what recovery rewrites on purpose."""
    if not ctx.facts.metadata_file:
        return [], "no metadata records to compare with"
    skip = {
        *REGENERATED,
        *ctx.manifest().excluded_paths(),
        *ctx.facts.changed,
    }
    ignore_times = {str(parent) for rel in skip for parent in PurePosixPath(rel).parents}
    ignore_times = {"" if p == "." else p for p in ignore_times} | set(SCRATCH)
    found = compare(ctx.records(), "", ctx.target_root, (), skip, ignore_times)
    return found.differences, (
        f"{found.checked} entries compared with {found.recorded} metadata records: "
        f"{len(found.differences)} differences"
    )


def run(ctx: Context) -> list[str]:
    problems = _ids(ctx) + _links(ctx) + _excluded(ctx)
    done = [f"ids, hard links and excluded directories checked: {len(problems)} differences"]
    deep, line = _deep(ctx)
    problems += deep
    done.append(line)
    engine = ctx.engine()
    for rel in SAMPLE:
        local = ctx.target(rel)
        if not local.is_dir():
            continue
        compared, found = engine.verify(rel, local, ctx.restore_time())
        differences = [d for d in found if not _rewritten(ctx, rel, d)]
        problems += [f"{rel}: {d}" for d in differences]
        done.append(f"{rel}: {compared} files compared with the backup, {len(differences)} differ")
    if problems:
        for problem in problems:
            ctx.echo(f"      DIFFERENCE: {problem}")
        raise VerifyError(
            f"the recovered system differs from the backup in {len(problems)} place(s): "
            f"{problems[0]}"
        )
    return done
