"""Step 2: make sure the backup destination answers before any disk is touched.

The rescue system brings the network up (rescue.net=, or DHCP); this step proves the result: a
file destination must be a readable directory, a server must accept a TCP connection, and an SSH
server must offer the pinned host key. Each failure is one line saying which of these failed.
"""

from __future__ import annotations

import os

from rescue.destinations import display_url, prepare
from rescue.errors import UnreachableError
from rescue.steps.context import Context

ID = "network"
TITLE = "check that the backup destination can be reached"
READ_ONLY = True
REDO_ON_RESUME = False


def plan(ctx: Context) -> list[str]:
    return ["connect to the backup destination (TCP, and the pinned SSH host key for sftp/scp)"]


def run(ctx: Context) -> list[str]:
    settings = ctx.settings()
    dest = settings.destination
    if dest.method == "file":
        if not os.path.isdir(dest.path):
            raise UnreachableError(
                f"the backup directory {dest.path} does not exist here (is its disk mounted?)"
            )
        if not os.access(dest.path, os.R_OK | os.X_OK):
            raise UnreachableError(f"the backup directory {dest.path} cannot be read")
        return [f"{display_url(settings)} is a readable directory"]
    with prepare(settings) as target:
        return [f"reached {target.display}"]
