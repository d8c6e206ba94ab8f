"""`rescue unlock`: remove the destination lock a dead backup left, or claim the destination."""

from __future__ import annotations

import click

from rescue.backup.destlock import unlock as unlock_destination
from rescue.cli.main import App


@click.command()
@click.option(
    "--claim",
    is_flag=True,
    help="Also make this machine the host the destination's backups belong to (once, after "
    "a reinstall gave it a new machine id).",
)
@click.pass_obj
def unlock(app: App, claim: bool) -> None:
    """Remove the lock at the backup destination that a dead backup left.

    Every backup holds a lock at the destination itself (rescue.lock/ and rescue.lock.json,
    naming the host, machine id, pid and lease), so two hosts or two caches never write one
    chain at once. A lock whose lease ran out, or whose run on this machine is gone, is taken
    over by the next backup without help; this is for the rest, say a host that died mid-backup
    whose lease has not run out yet. A lock of a backup still running here is never removed.

    \b
    Examples:
      rescue unlock
      rescue unlock --claim     this machine was reinstalled: its backups are its own again
    """
    for line in unlock_destination(app.settings(), claim):
        click.echo(line)
