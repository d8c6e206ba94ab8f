"""`rescue fleet status`: every host's backups in one S3 bucket, in one table."""

from __future__ import annotations

import time

import click

from rescue.backup import fleet
from rescue.backup.timespec import iso
from rescue.cli.main import App
from rescue.cli.render import emit_json, human_seconds, table
from rescue.errors import StaleHostsError

COLUMNS = ["prefix", "host", "last full", "last incremental", "chains", "restore window",
           "last drill", "age", "state"]  # fmt: skip


@click.group("fleet")
def fleet_group() -> None:
    """Many hosts' backups in one S3 bucket, each under its own prefix."""


@fleet_group.command()
@click.option(
    "--under",
    default="",
    metavar="PREFIX",
    help="Look for hosts only below this prefix of the bucket. Default: the whole bucket.",
)
@click.option(
    "--stale-after",
    type=click.FloatRange(min=0.1),
    default=48.0,
    show_default=True,
    metavar="HOURS",
    help="A host whose newest set is older than this is marked STALE.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the hosts as data.")
@click.pass_obj
def status(app: App, under: str, stale_after: float, as_json: bool) -> None:
    """List every host that backs up into the configured bucket: its last full and
    incremental, chains, restore window, last drill and the age of its newest set.

    \b
    The settings name the bucket (method s3) with keys that may read every host's prefix;
    their own prefix is not used. Each host's backups keep a small record beside them
    (rescue-summary.json, rescue-drill.json), so this reads two small objects per host and
    never asks duplicity: a hundred hosts take seconds. A host that has not backed up
    since this rescue writes the records shows once its next backup has run.

    Exits 35 when a host is stale, so that a monitoring check can run it as it is.
    """
    now = time.time()
    after = stale_after * 3600
    found = fleet.hosts(app.settings(), under)
    stale = [h.prefix for h in found if h.stale(now, after)]
    if as_json:
        emit_json([h.as_dict(now, after) for h in found])
    else:
        table(
            f"{len(found)} host(s), {len(stale)} stale (newest set older than {stale_after:g}h)",
            COLUMNS,
            [_row(h, now, after) for h in found],
        )
    if stale:
        raise StaleHostsError(f"{len(stale)} stale host(s): {', '.join(stale)}")


def _row(host: fleet.HostView, now: float, after: float) -> list[str]:
    summary = host.summary or {}

    def when(key: str) -> str:
        value = summary.get(key)
        return iso(value) if isinstance(value, int | float) else "-"

    drill = host.drill or {}
    last_drill = (
        f"{drill.get('outcome')} {iso(drill['time'])}"
        if isinstance(drill.get("time"), int)
        else "-"
    )
    age = host.age(now)
    return [
        host.prefix,
        str(summary.get("hostname", "-")),
        when("last_full"),
        when("last_incremental"),
        str(summary.get("chains", "-")),
        f"{when('oldest')} .. {when('newest')}",
        last_drill,
        human_seconds(age) if age is not None else "-",
        "STALE" if host.stale(now, after) else "ok",
    ]
