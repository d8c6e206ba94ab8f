"""The `ip` command (iproute2), JSON in and one clear line out.

Why `ip` and not netlink from Python: it is on every rescue system, it is what an admin would
type to check by hand (the log shows the exact commands), and `-j` gives stable JSON.
"""

from __future__ import annotations

import json
from typing import Any

from rescue.errors import UnreachableError
from rescue.process import execute


class IpError(Exception):
    """`ip` refused; the text is its own message, e.g. "Network is unreachable"."""


def ip(*args: str) -> str:
    """Run `ip ARGS`; its output, or IpError with its last line."""
    done = execute.run(["ip", *args])
    if done.returncode != 0:
        last = done.last_line(f"exit {done.returncode}")
        raise IpError(last.removeprefix("RTNETLINK answers: ").removeprefix("Error: "))
    return done.output


def ip_json(*args: str) -> list[dict[str, Any]]:
    """`ip -j ARGS` as data."""
    out = ip("-j", *args).strip()
    return json.loads(out) if out else []


def change(step: str, iface: str, *args: str) -> None:
    """Run a change for iface; a refusal is an UnreachableError naming the card and the step."""
    try:
        ip(*args)
    except IpError as exc:
        raise UnreachableError(f"network: {iface}: {step}: `ip {' '.join(args)}`: {exc}") from None


def global_addresses(iface: str | None = None) -> dict[str, list[str]]:
    """Every card's global-scope addresses as ADDR/PREFIX (link-local ones cannot reach a
    backup server, so they do not count as "configured")."""
    where = ["dev", iface] if iface else []
    found: dict[str, list[str]] = {}
    for link in ip_json("addr", "show", *where):
        addrs = [
            f"{a['local']}/{a['prefixlen']}"
            for a in link.get("addr_info", [])
            if a.get("scope") == "global" and "local" in a
        ]
        if addrs:
            found[link["ifname"]] = addrs
    return found


def default_routes() -> list[dict[str, Any]]:
    """The default routes of both families."""
    return ip_json("-4", "route", "show", "default") + ip_json("-6", "route", "show", "default")


def route_get(address: str) -> dict[str, Any]:
    """The route the kernel would take to address; IpError if it has none."""
    routes = ip_json("route", "get", address)
    if not routes:
        raise IpError("no route")
    return routes[0]
