"""DHCP with Debian's dhclient (isc-dhcp-client, on the ISO), one instance per card.

Why its own pid, lease and config files under /run: the rescue system must not depend on
ifupdown or NetworkManager, a second `rescue net up dhcp` must replace the first instance
rather than race it, and the timeout must be ours (dhclient.conf `timeout`), so a network
without a DHCP server fails in bounded time instead of retrying for ever. After the lease
dhclient stays in the background and renews it, as a long restore needs.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

from rescue.errors import UnreachableError
from rescue.process import execute

log = logging.getLogger("rescue.netconfig")

RUN_DIR = Path("/run/rescue/net")

# No host-name: the rescue system keeps its own name. initial-interval 1: retry quickly.
CONFIG = """\
option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
request subnet-mask, broadcast-address, time-offset, routers, domain-name,
        domain-name-servers, domain-search, interface-mtu, rfc3442-classless-static-routes;
timeout {timeout};
initial-interval 1;
"""


def _files(iface: str) -> tuple[Path, Path, Path]:
    return (
        RUN_DIR / f"dhclient.{iface}.conf",
        RUN_DIR / f"dhclient.{iface}.pid",
        RUN_DIR / f"dhclient.{iface}.leases",
    )


def stop(iface: str) -> bool:
    """End the dhclient rescue started for iface, if one runs; True if there was one.

    SIGTERM, not `dhclient -r`: the address stays until the new instance replaces it."""
    pidfile = _files(iface)[1]
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    pidfile.unlink(missing_ok=True)
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() != "dhclient":
            return False  # a stale file whose pid now belongs to someone else
        os.kill(pid, signal.SIGTERM)
    except (OSError, ProcessLookupError):
        return False
    for _ in range(50):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    log.info("stopped dhclient %d on %s", pid, iface)
    return True


def obtain_lease(iface: str, timeout: float) -> None:
    """One DHCPv4 lease on iface within timeout seconds; dhclient then renews it."""
    conf, pidfile, leases = _files(iface)
    RUN_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    conf.write_text(CONFIG.format(timeout=max(1, round(timeout))))
    stop(iface)
    argv = ["dhclient", "-1", "-4", "-v", "-cf", str(conf), "-pf", str(pidfile)]
    done = execute.run([*argv, "-lf", str(leases), iface])
    if done.returncode != 0:
        last = done.last_line()
        hint = "is there a DHCP server on that network?"
        raise UnreachableError(
            f"network: {iface}: DHCP: no lease within {timeout:g} s ({hint})"
            + (f"; dhclient: {last}" if last else "")
        )
