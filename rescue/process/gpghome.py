"""A throwaway GnuPG home for gpg runs that need no keyring, and its gpg-agent ended with it.

Why: gpg starts a gpg-agent in its home even for a symmetric passphrase, and the agent outlives
the gpg that started it. In root's own home that is a daemon left behind by every backup,
restore and drill; in a deleted temporary home it lingers until it notices. rescue leaves no
process behind, so the agent is ended (`gpgconf --kill all` for that home) before the home is
removed. gpg mode keeps the configured keyring, which holds its secret key and is the admin's.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rescue.placement.scratch import private_dir
from rescue.process import execute

log = logging.getLogger("rescue.process.gpghome")


# How long an agent asked to end may take before it is killed.
_AGENT_GRACE_SECONDS = 5.0


@contextmanager
def throwaway_home(prefix: str = "rescue-gnupg-") -> Iterator[Path]:
    """A new private GnuPG home for the block; whatever agent gpg started there ends with it,
    and is gone before the block ends (gpgconf only asks it to end)."""
    with private_dir(prefix) as home:
        try:
            yield home
        finally:
            try:
                execute.run(["gpgconf", "--kill", "all"], env={"GNUPGHOME": str(home)})
            except OSError as exc:  # no gpgconf: no gpg either, so no agent was started
                log.warning("cannot end the gpg-agent of %s: %s", home, exc)
            _wait_for_agents(home)


def _wait_for_agents(home: Path) -> None:
    """Wait until the agents of home have exited; kill one that is still there after the
    grace time, so none outlives the run."""
    import psutil  # as rescue.process.lifetime does: only where processes are looked for

    agents = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        argv = proc.info["cmdline"] or []
        if proc.info["status"] == psutil.STATUS_ZOMBIE or not argv:
            continue
        if os.path.basename(argv[0]) == "gpg-agent" and str(home) in " ".join(argv):
            agents.append(proc)
    _, alive = psutil.wait_procs(agents, timeout=_AGENT_GRACE_SECONDS)
    for proc in alive:
        log.warning("the gpg-agent %d of %s did not end: killing it", proc.pid, home)
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
