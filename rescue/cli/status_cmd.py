"""`rescue status`, `rescue files` and `rescue versions`: what the backup holds."""

from __future__ import annotations

import click

from rescue.cli.main import App
from rescue.cli.render import emit_json, table
from rescue.engine import Engine
from rescue.timespec import EXAMPLES, iso, parse_time
from rescue.units import human_size

TIME_HELP = f"As of this time: {EXAMPLES}. Default: the newest set."


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the same as data.")
@click.pass_obj
def status(app: App, as_json: bool) -> None:
    """Show every backup set: chain, type, date, volumes and size.

    A chain is a full backup and the incrementals that depend on it; restoring any set needs
    its whole chain. Sizes are known for the sets this host wrote.
    """
    result = Engine(app.settings()).status()
    if as_json:
        emit_json(result.as_dict())
        return
    if result.damaged:
        click.echo(
            f"warning: {result.damaged} chain(s) at {result.destination} have lost their "
            "volumes and cannot be restored; run a full backup now",
            err=True,
        )
    if not result.sets:
        click.echo(f"no backup sets at {result.destination}")
        return
    rows = [
        [str(s.chain), s.kind, iso(s.time), str(s.volumes), human_size(s.bytes)]
        for s in result.sets
    ]
    table(
        f"{result.destination}: {len(result.sets)} sets in {len(result.chains)} chain(s)",
        ["chain", "type", "date", "volumes", "size"],
        rows,
    )
    if result.orphaned or result.incomplete:
        click.echo(
            f"warning: {result.orphaned} orphaned and {result.incomplete} incomplete set(s); "
            "an interrupted backup leaves these, the next run cleans them up"
        )


@click.command()
@click.argument("path", required=False, default="/")
@click.option("-t", "--time", "when", default=None, help=TIME_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the list as data.")
@click.pass_obj
def files(app: App, path: str, when: str | None, as_json: bool) -> None:
    """List what the backup holds under PATH as of a time.

    PATH is a path on the backed-up host (/etc) or relative to the backup root (etc).
    """
    at = parse_time(when) if when else None
    entries = Engine(app.settings()).list_files(at, path)
    if as_json:
        emit_json([{"path": e.path, "mtime": iso(e.mtime), "type": e.type} for e in entries])
        return
    for e in entries:
        click.echo(f"{iso(e.mtime)}  {e.type:4}  {e.path or '.'}")


@click.command()
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print the versions as data.")
@click.pass_obj
def versions(app: App, path: str, as_json: bool) -> None:
    """List the dates PATH can be restored to, and whether it changed in each set.

    Use a date from this list with `rescue restore PATH --to DEST -t DATE`.
    """
    found = Engine(app.settings()).versions(path)
    if as_json:
        emit_json([v.as_dict() for v in found])
        return
    table(
        f"{path}: restorable from {len(found)} set(s)",
        ["set date", "set type", "changed", "file mtime", "type"],
        [
            [
                iso(v.set.time),
                v.set.kind,
                "yes" if v.changed else "no",
                iso(v.mtime) if v.mtime else "-",
                v.type or "-",
            ]
            for v in found
        ],
    )
