"""Step 2: make sure the backup destination answers before any disk is touched.

The rescue system brings the network up (rescue.net=, or DHCP); this step proves the result: a
file destination must be a readable directory; for a server, rescue.netconfig checks the link,
the address, DNS, the route and a TCP connection in turn, and an SSH server must then offer the
pinned host key. Each failure is one line saying which of these failed. In guided mode, a
rescue system with no address yet is asked for one first (question net.config). That changes
only the rescue system's own network, never the machine being recovered, so the step stays
READ_ONLY: a dry run needs the backup too.
"""

from __future__ import annotations

import os
from pathlib import Path

from rescue.backup import s3
from rescue.backup.destinations import DEFAULT_PORTS, display_url, prepare
from rescue.errors import UnreachableError
from rescue.netconfig.reach import check_reachable, is_loopback
from rescue.netconfig.setup import QUESTION, ask_and_bring_up, has_address
from rescue.recovery.mounts import filesystem_device, mount
from rescue.steps.context import Context

ID = "network"
TITLE = "check that the backup destination can be reached"
READ_ONLY = True
REDO_ON_RESUME = True  # the plan's [mounts] and the network do not survive a reboot


def plan(ctx: Context) -> list[str]:
    return [
        "check link, address, DNS and route to the backup host (ask for a network spec if no "
        "address is set and someone can answer)",
        "connect to the backup destination (TCP, and the pinned SSH host key for sftp/scp)",
    ]


def run(ctx: Context) -> list[str]:
    settings = ctx.settings()
    dest = settings.destination
    mounted = _mount_sources(ctx)
    if dest.method == "file":
        if not os.path.isdir(dest.path):
            raise UnreachableError(
                f"the backup directory {dest.path} does not exist here (is its disk mounted?)"
            )
        if not os.access(dest.path, os.R_OK | os.X_OK):
            raise UnreachableError(f"the backup directory {dest.path} cannot be read")
        return [*mounted, f"{display_url(settings)} is a readable directory"]
    host, port = (
        s3.endpoint_address(settings)
        if dest.method == "s3"
        else (str(dest.host), dest.port or DEFAULT_PORTS[dest.method])
    )
    lines: list[str] = []
    can_ask = ctx.answers.has(QUESTION.id) or ctx.answers.interactive
    if can_ask and not is_loopback(host) and not has_address():
        with ctx.quiet():
            lines += ask_and_bring_up(ctx.answers, echo=ctx.echo)
    lines += check_reachable(host, port)
    with prepare(settings) as target:
        return [*mounted, *lines, f"reached {target.display}"]


def _mount_sources(ctx: Context) -> list[str]:
    """The plan's [mounts] (a disk holding a file destination, say), read-only: recovery reads
    the backup and must never write to it. Done again on resume, as mounts do not survive."""
    done = []
    for point, spec in ctx.options.source_mounts.items():
        device = filesystem_device(spec)
        if device is None:
            raise UnreachableError(f"no file system {spec} for {point} (is its disk attached?)")
        mount(device, Path(point), options="ro")
        done.append(f"mounted {device} ({spec}) read-only at {point}")
    return done
