"""`rescue undo`: put back what a forced restore replaced, list and prune the undo directories."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from rescue.backup.timespec import parse_time
from rescue.cli.render import emit_json, table
from rescue.placement.undo import apply_undo, created_at, listed, prune, register
from rescue.units import human_size


@click.group("undo")
def undo_group() -> None:
    """Put back what a forced restore replaced, and tidy the undo directories.

    `rescue restore --force` moves every entry it replaces into an undo directory beside the
    destination (.rescue-replaced-NAME-TIME-XXXX), by rename on the same file system, and
    prints the command that puts them back. Nothing here needs the settings file.
    """


@undo_group.command("apply")
@click.argument("directory", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def apply_cmd(directory: Path, as_json: bool) -> None:
    """Put the entries kept in DIRECTORY back where the restore replaced them.

    What stands there now (the restored entries, and anything made there since) is not
    deleted: it moves into a new undo directory, so this can be undone in turn (applying the
    new directory redoes the restore). Directories the restore merged into get their old
    owner, mode and times back. Run again after an interruption, it finishes the job.

    \b
    Example:
      rescue undo apply /srv/.rescue-replaced-www-20261201-101500-x1y2
    """
    done = apply_undo(directory)
    register(done.redo)
    if as_json:
        emit_json(
            {
                "dest": str(done.dest),
                "put_back": done.put_back,
                "moved_out": done.moved_out,
                "directories": done.directories,
                "redo_dir": str(done.redo),
                "removed": done.removed_old,
            }
        )
        return
    click.echo(
        f"{done.dest}: {done.put_back} entries put back, {done.directories} directories given "
        f"their old owner, mode and times; the {done.moved_out} restored entries are kept in "
        f"{done.redo}"
    )
    click.echo(f"to redo the restore: rescue undo apply {shlex.quote(str(done.redo))}")
    if not done.removed_old:
        click.echo(f"{directory} still holds entries that could not go back; see them there")


@undo_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def list_cmd(as_json: bool) -> None:
    """Every undo directory forced restores made on this machine that still exists."""
    items = listed()
    if as_json:
        emit_json([item.as_dict() for item in items])
        return
    if not items:
        click.echo("no undo directories")
        return
    rows = [
        [
            item.created,
            item.dest,
            str(item.replaced),
            human_size(item.bytes),
            "" if item.finished else "interrupted",
            str(item.path),
        ]
        for item in items
    ]
    table(None, ["created", "restored into", "kept", "size", "state", "undo directory"], rows)


@undo_group.command("prune")
@click.option(
    "--older-than",
    "age",
    default="30D",
    show_default=True,
    help="Only undo directories made before this time (3D, 2W, a date).",
)
@click.option("--yes", is_flag=True, help="Remove them; without it, only list what would go.")
def prune_cmd(age: str, yes: bool) -> None:
    """Remove old undo directories for good (the replaced entries in them are lost).

    Without --yes it only lists what it would remove.
    """
    cutoff = parse_time(age)
    old = [item for item in listed() if created_at(item) < cutoff]
    for item in old:
        verb = "removing" if yes else "would remove"
        click.echo(f"{verb} {item.path} ({human_size(item.bytes)})")
    if not old:
        click.echo(f"no undo directory older than {age}")
    elif yes:
        prune(old)
    else:
        click.echo("add --yes to remove them")
