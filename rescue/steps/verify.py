"""Step 16: check the recovered system against the backup's own records.

- the ids: every user and group of the manifest has the same number in the restored
  etc/passwd and etc/group (owners were restored by name, so these decide every file's owner);
- the hard links: each recorded group is one inode again;
- the excluded directories: there, with the recorded owner and mode;
- everything the metadata records hold (rescue.exact.deep), on the whole tree: numeric owners,
  xattrs, ACLs, capabilities, sparse extents and exact mtimes; what recovery itself rewrites is
  left out (boot/, the initramfs record, the recovery log, the excluded directories, the files
  fix_fstab changed) and the directories above them are not compared by mtime;
- content, as the run's `verify` option says (`rescue recover --verify`, or the plan's
  `verify =`):
  - `records`: none; nothing is read from the backup again;
  - `sample` (the default): `duplicity verify --compare-data` of etc/, one duplicity run that
    reads only the volumes holding etc/ (each duplicity start costs a minute under emulation,
    and the data was just restored from those same volumes);
  - `full`: `duplicity verify --compare-data` of the whole backup, every byte read again.
  What recovery itself rewrote or made (boot/, the files fix_fstab changed and their
  .before-rescue copies, the excluded directories, the recovery log) is left out.
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
SAMPLE = "etc"
# What the bootloader and finish steps write into the target after the replay, and the
# directory update-initramfs makes its scratch files in (their mtimes only).
REGENERATED = ("boot", "var/lib/initramfs-tools", "var/log/rescue")
SCRATCH = ("var/tmp",)


CONTENT = {
    "records": "no content compared: nothing is read from the backup again (verify = records)",
    "sample": f"duplicity verify --compare-data of {SAMPLE}/ (verify = sample)",
    "full": "duplicity verify --compare-data of the whole backup, every byte (verify = full)",
}


def plan(ctx: Context) -> list[str]:
    return [
        "compare the user and group ids with the manifest, numerically",
        "check the hard-link groups and the excluded directories",
        "compare owners, xattrs, ACLs, capabilities, holes and exact mtimes with the records",
        CONTENT[ctx.options.verify],
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


def _rewritten(ctx: Context) -> set[str]:
    """What recovery rewrote or made on purpose (relative to the root): not the backup's."""
    return {*REGENERATED, *ctx.manifest().excluded_paths(), *ctx.facts.changed}


def _times_ignored(rewritten: set[str]) -> set[str]:
    """The directories whose mtime recovery changes: those above what it rewrote ("" for the
    root), and where update-initramfs makes its scratch files."""
    parents = {str(parent) for rel in rewritten for parent in PurePosixPath(rel).parents}
    return {"" if p == "." else p for p in parents} | set(SCRATCH)


def _shown(rel: str, below: str) -> str | None:
    """rel as duplicity names it when comparing the directory below ("." for below itself),
    or None if rel is not there."""
    if rel == below:
        return "."
    if not below:
        return rel
    return rel.removeprefix(below + "/") if rel.startswith(below + "/") else None


def _expected(difference: str, rewritten: set[str], times: set[str], below: str) -> bool:
    """Whether a duplicity difference line is one recovery caused on purpose: about a path it
    rewrote or made (or one under it), or the mtime of a directory in times."""
    for rel in rewritten:
        shown = _shown(rel, below)
        if shown and re.search(rf"(?:^|\s){re.escape(shown)}(?:/\S*)?(?:\s|$)", difference):
            return True
    return any(
        difference.startswith(f"File {shown} has mtime ")
        for rel in times
        if (shown := _shown(rel, below))
    )


def _deep(ctx: Context, rewritten: set[str]) -> tuple[list[str], str]:
    """The records against the whole target, leaving out what recovery rewrites on purpose."""
    if not ctx.facts.metadata_file:
        return [], "no metadata records to compare with"
    times = _times_ignored(rewritten)
    found = compare(ctx.records(), "", ctx.target_root, (), rewritten, times)
    return found.differences, (
        f"{found.checked} entries compared with {found.recorded} metadata records: "
        f"{len(found.differences)} differences"
    )


def run(ctx: Context) -> list[str]:
    problems = _ids(ctx) + _links(ctx) + _excluded(ctx)
    done = [f"ids, hard links and excluded directories checked: {len(problems)} differences"]
    rewritten = _rewritten(ctx)
    deep, line = _deep(ctx, rewritten)
    problems += deep
    done.append(line)
    mode = ctx.options.verify
    rel = {"sample": SAMPLE, "full": ""}.get(mode)
    if rel is None:
        done.append(CONTENT["records"])
    elif rel and not ctx.target(rel).is_dir():
        done.append(f"no {rel}/ in the recovered system: no content compared")
    else:
        local = ctx.target(rel) if rel else ctx.target_root
        compared, found = ctx.engine().verify(rel or "/", local, ctx.restore_time())
        times = _times_ignored(rewritten)
        differences = [d for d in found if not _expected(d, rewritten, times, rel)]
        problems += [f"{rel or '/'}: {d}" for d in differences]
        done.append(
            f"{rel or 'the whole backup'}: {compared} files compared with the backup "
            f"(verify = {mode}), {len(differences)} differ"
        )
    if problems:
        for problem in problems:
            ctx.echo(f"      DIFFERENCE: {problem}")
        raise VerifyError(
            f"the recovered system differs from the backup in {len(problems)} place(s): "
            f"{problems[0]}"
        )
    return done
