"""`rescue restore`: bring back a file or directory as of a time."""

from __future__ import annotations

import shlex

import click

from rescue.backup.engine import Engine
from rescue.backup.timespec import iso, parse_time
from rescue.cli.completion_cmd import complete_path
from rescue.cli.main import App
from rescue.cli.render import emit_json, human_seconds, progress
from rescue.cli.status_cmd import TIME_OPTION
from rescue.errors import IncompleteRestoreError
from rescue.exact.restore import restore_exact
from rescue.placement.guard import check
from rescue.placement.undo import register
from rescue.units import human_size


@click.command()
@click.argument("path")
@click.option(
    "--to",
    "dest",
    required=True,
    shell_complete=complete_path,
    help="Where the restored file or directory goes (the new name, not its parent).",
)
@TIME_OPTION
@click.option(
    "--force",
    is_flag=True,
    help="Merge into an existing DEST: replace only what the backup holds, keeping every "
    "replaced entry in an undo directory beside DEST.",
)
@click.option(
    "--numeric-owner",
    is_flag=True,
    help="Keep the backup's numeric uids and gids instead of mapping owners by name here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@click.pass_obj
def restore(
    app: App,
    path: str,
    dest: str,
    when: str | None,
    force: bool,
    numeric_owner: bool,
    as_json: bool,
) -> None:
    """Restore PATH from the backup into DEST, as of a time.

    PATH is a path on the backed-up host (/etc/hosts) or relative to the backup root; "/" is
    everything. Owners and modes are kept when run as root. DEST is the new name of PATH,
    resolved through symlinks. It is never / (that is `rescue recover`), the archive dir or
    the backup destination, and an existing DEST is never touched without --force.

    With --force the restore is merged into DEST: only the entries the backup holds are
    replaced, directories are merged, and everything else at DEST stays. Each replaced entry
    is moved (renamed, never copied) into an undo directory beside DEST, and the command that
    puts them all back is printed: `rescue undo apply DIR`. A non-empty directory is never
    removed to make room for a file: the restore stops before touching anything. A tree with
    another file system mounted inside is refused: restore into each file system by itself.
    A forced restore that was killed is finished by running the same command again.

    What duplicity drops is put back from the records every backup carries: xattrs, POSIX
    ACLs, file capabilities, the holes of sparse files (punched while duplicity writes), hard
    links and exact mtimes. What DEST's file system cannot take is reported, one line per
    kind, and the exit code is 42.

    \b
    Examples:
      rescue restore /etc/hosts --to /tmp/hosts
      rescue restore /home/alice --to /srv/alice-old -t 2W
      rescue restore / --to /mnt/everything -t 2026-11-01
      rescue restore /etc/nginx --to /etc/nginx --force -t 1D
      rescue undo apply /etc/.rescue-replaced-nginx-20261201-101500-x1y2   (put it back)
    """
    at = parse_time(when) if when else None
    with progress(not as_json) as callback:
        engine = Engine(app.settings(), progress=callback)
        target = check(dest, force, engine.protected())  # before any work
        done = restore_exact(engine, path, target, at, numeric_owner)
    summary = done.summary
    placed = summary.placed
    if placed.undo is not None:
        register(placed.undo)
    if as_json:
        emit_json(
            {
                **summary.as_dict(),
                "metadata": {**done.replayed.applied, "freed_bytes": done.replayed.freed},
                "hard_links": done.linked,
                "warnings": done.warnings,
            }
        )
    else:
        click.echo(
            f"restored {summary.path} as of {iso(summary.time)} to {summary.destination}: "
            f"{summary.files} files, {human_size(summary.bytes)} "
            f"in {human_seconds(summary.seconds)}"
        )
        click.echo(f"{done.replayed.summary()}, {done.linked} hard links made again")
        if placed.resumed:
            click.echo(f"finished an interrupted forced restore into {placed.path}")
        if placed.undo is not None:
            click.echo(
                f"merged into {placed.path}: {placed.replaced} entries replaced, "
                f"{placed.added} added, {placed.merged} directories merged; what was replaced "
                f"is kept in {placed.undo}"
            )
            click.echo(f"to put it back: rescue undo apply {shlex.quote(str(placed.undo))}")
        for warning in done.warnings:
            click.echo(f"WARNING: {warning}", err=True)
    if done.warnings:
        raise IncompleteRestoreError(
            f"{summary.destination} is restored, but {len(done.warnings)} kind(s) of "
            "metadata could not be put back (see the warnings)"
        )
