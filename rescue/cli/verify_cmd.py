"""`rescue verify`: is this tree what the backup holds?"""

from __future__ import annotations

import os
from pathlib import Path

import click

from rescue.backup.engine import Engine
from rescue.backup.listing import relative_path
from rescue.backup.timespec import iso, parse_time
from rescue.cli.main import App
from rescue.cli.render import emit_json
from rescue.cli.status_cmd import TIME_OPTION
from rescue.config import Settings
from rescue.errors import TreeDiffersError, UsageError
from rescue.exact.verify import verify_tree


@click.command()
@click.argument("path")
@click.option(
    "--restored",
    "local",
    type=click.Path(path_type=Path, exists=True),
    default=None,
    help="Where a restored copy of PATH lies (the --to of the restore) [default: PATH itself].",
)
@TIME_OPTION
@click.option(
    "--deep",
    is_flag=True,
    help="Also compare numeric owners, xattrs, ACLs, capabilities, sparse extents, exact "
    "mtimes and hard links with the backup's records.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def verify(
    app: App, path: str, local: Path | None, when: str | None, deep: bool, as_json: bool
) -> None:
    """Compare PATH (or its restored copy) with the backup, and print every difference.

    PATH is read as `rescue restore` reads it: a path of the backed-up host (/etc) or one
    relative to the backup root (etc), so without --restored the live PATH under the backup
    root is compared, wherever the command runs. Nothing is ever created or changed.

    Without --deep it is duplicity's verify with content: type, owner, permissions, whole-second
    mtimes, symlink targets and the bytes of every file. --deep adds what duplicity drops and
    rescue records at each backup; the top directory of PATH has its exact mtime (and mode,
    where recorded) compared with its record (a restore puts them back even where the backup
    holds a later second). Exit 0 when nothing differs, 43 when something does.

    \b
    Examples:
      rescue verify /etc                          the live /etc against the newest backup
      rescue restore /srv --to /mnt/srv -t 2D
      rescue verify --deep /srv --restored /mnt/srv -t 2D
    """
    settings = app.settings()
    target = local if local is not None else _live(path, settings)
    result = verify_tree(Engine(settings), path, target, parse_time(when) if when else None, deep)
    if as_json:
        emit_json(
            {
                "date": iso(result.set_time),
                "compared": result.compared,
                "checked": result.deep.checked if result.deep else None,
                "differences": result.differences,
                "notes": result.notes,
            }
        )
    else:
        for line in result.differences:
            click.echo(f"DIFFERENCE: {line}")
        for note in result.notes:
            click.echo(f"note: {note}")
        deep_part = (
            f", {result.deep.checked} entries checked against {result.deep.recorded} records"
            if result.deep
            else ""
        )
        click.echo(
            f"{target} against the set of {iso(result.set_time)}: {result.compared} files "
            f"compared{deep_part}, {len(result.differences)} difference(s)"
        )
    if result.differences:
        raise TreeDiffersError(
            f"{target} differs from the backup in {len(result.differences)} place(s)"
        )


def _live(path: str, settings: Settings) -> Path:
    """The live copy of PATH under the backup root; it must exist (duplicity would make it)."""
    rel = relative_path(path, settings)
    live = Path(str(settings.selection.root)) / rel
    if not os.path.lexists(live):
        raise UsageError(
            f"{live} does not exist here: nothing to compare (give --restored DIR to compare a "
            "restored copy)"
        )
    return live
