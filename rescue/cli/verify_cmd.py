"""`rescue verify`: is this tree what the backup holds?"""

from __future__ import annotations

from pathlib import Path

import click

from rescue.cli.main import App
from rescue.cli.render import emit_json
from rescue.cli.status_cmd import TIME_HELP
from rescue.engine import Engine
from rescue.errors import TreeDiffersError
from rescue.exact.verify import verify_tree
from rescue.timespec import iso, parse_time


@click.command()
@click.argument("path")
@click.option(
    "--restored",
    "local",
    type=click.Path(path_type=Path, exists=True),
    default=None,
    help="Where a restored copy of PATH lies (the --to of the restore) [default: PATH itself].",
)
@click.option("-t", "--time", "when", default=None, help=TIME_HELP)
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

    Without --deep it is duplicity's verify with content: type, owner, permissions, whole-second
    mtimes, symlink targets and the bytes of every file. --deep adds what duplicity drops and
    rescue records at each backup. Exit 0 when nothing differs, 43 when something does.

    \b
    Examples:
      rescue verify /etc                          the live /etc against the newest backup
      rescue restore /srv --to /mnt/srv -t 2D
      rescue verify --deep /srv --restored /mnt/srv -t 2D
    """
    settings = app.settings()
    target = local if local is not None else Path(path)
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
