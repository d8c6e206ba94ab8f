"""Bring the rescue system's network up from a spec: DHCP, or one static address.

Every change is idempotent (`ip addr replace`, `ip route replace`, a dhclient that replaces its
predecessor), so a retry after a failure, or a second `rescue net up`, never fails because the
first one got half-way. Each failure names the card and the step that failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from rescue.errors import PlanError, RescueError, UnreachableError, UsageError
from rescue.netconfig import dhcp
from rescue.netconfig.ipcmd import change, default_routes, global_addresses
from rescue.netconfig.nics import Nic, describe, detect_nics
from rescue.netconfig.spec import NetSpec, parse_net_spec
from rescue.prompts import Answers, Question

log = logging.getLogger("rescue.netconfig")

RESOLV_CONF = Path("/etc/resolv.conf")
QUESTION = Question(
    "net.config",
    "text",
    'Network: "dhcp", or a static address as IFACE:ADDR/PREFIX,GW,DNS '
    "(e.g. eth0:192.0.2.10/24,192.0.2.1,192.0.2.53):",
    default="dhcp",
)


def wait_for_carrier(names: list[str], seconds: float) -> list[Nic]:
    """The named cards that have a link, waiting up to seconds for the first one."""
    deadline = time.monotonic() + seconds
    while True:
        linked = [n for n in detect_nics(include_virtual=True) if n.name in names and n.carrier]
        if linked or time.monotonic() >= deadline:
            return linked
        time.sleep(0.2)


def bring_up(spec: NetSpec, *, wait_link: float = 10, dhcp_timeout: float = 60) -> list[str]:
    """Set the network up as spec says; what was done, as lines for a person."""
    if spec.mode == "dhcp":
        return _bring_up_dhcp(wait_link, dhcp_timeout)
    return _bring_up_static(spec, wait_link)


def _bring_up_dhcp(wait_link: float, dhcp_timeout: float) -> list[str]:
    nics = detect_nics()
    if not nics:
        raise UnreachableError("network: link: no network card found (is its driver loaded?)")
    for nic in nics:
        change("link", nic.name, "link", "set", "dev", nic.name, "up")
    names = [n.name for n in nics]
    linked = wait_for_carrier(names, wait_link)
    if not linked:
        raise UnreachableError(
            f"network: link: no network card has a link after {wait_link:g} s "
            f"(checked {describe(nics)}; is a cable plugged in?)"
        )
    nic = min(linked, key=lambda n: names.index(n.name))
    dhcp.obtain_lease(nic.name, dhcp_timeout)
    return [f"link: {nic.name} up ({nic.mac})", *_report(nic.name, "DHCP")]


def _bring_up_static(spec: NetSpec, wait_link: float) -> list[str]:
    iface, address = str(spec.iface), spec.address
    assert address is not None
    family = f"-{address.version}"
    known = detect_nics(include_virtual=True)
    if iface not in {n.name for n in known}:
        raise UnreachableError(
            f"network: {iface}: no such network card (there are: {describe(known)})"
        )
    change("link", iface, "link", "set", "dev", iface, "up")
    if not wait_for_carrier([iface], wait_link):
        raise UnreachableError(
            f"network: {iface}: link: no link after {wait_link:g} s (is a cable plugged in?)"
        )
    dhcp.stop(iface)  # else it would put its own address back at the next renewal
    change("address", iface, family, "addr", "flush", "dev", iface, "scope", "global")
    change("address", iface, "addr", "replace", str(address), "dev", iface)
    if spec.gateway is not None:
        near = spec.gateway in address.network or spec.gateway.is_link_local
        onlink = [] if near else ["onlink"]
        change(
            "route", iface, family, "route", "replace", "default", "via", str(spec.gateway),
            "dev", iface, *onlink,
        )  # fmt: skip
    if spec.dns is not None:
        write_resolv_conf([str(spec.dns)])
    return [f"link: {iface} up", *_report(iface, "static")]


def write_resolv_conf(nameservers: list[str], path: Path = RESOLV_CONF) -> None:
    """Write in place (not a rename): /etc/resolv.conf may be a bind mount or a symlink."""
    text = "# written by rescue (rescue net up)\n" + "".join(
        f"nameserver {n}\n" for n in nameservers
    )
    try:
        with open(path, "w") as out:
            out.write(text)
    except OSError as exc:
        raise UnreachableError(f"network: DNS: cannot write {path}: {exc.strerror}") from None


def nameservers(path: Path = RESOLV_CONF) -> list[str]:
    """The nameservers the resolver will ask, as /etc/resolv.conf names them."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    return [ln.split()[1] for ln in lines if ln.startswith("nameserver") and len(ln.split()) > 1]


def _report(iface: str, how: str) -> list[str]:
    """What the card ended up with: addresses, default route, nameservers."""
    addrs = global_addresses(iface).get(iface, [])
    lines = [f"address: {', '.join(addrs) or 'none'} on {iface} ({how})"]
    lines += [
        f"route: default via {r['gateway']} dev {r['dev']}"
        for r in default_routes()
        if r.get("dev") == iface and "gateway" in r
    ]
    lines.append(f"DNS: {', '.join(nameservers()) or 'no nameserver in /etc/resolv.conf'}")
    return lines


def ask_and_bring_up(
    answers: Answers, *, echo: Callable[[str], None] = print, **kw: float
) -> list[str]:
    """Ask for a spec (net.config) and bring it up. A typed answer that is malformed or fails
    is asked again; a planned one fails at once, since asking again would get the same."""
    while True:
        text = str(answers.ask(QUESTION))
        try:
            return bring_up(parse_net_spec(text), **kw)
        except UsageError as exc:
            if answers.has(QUESTION.id):
                raise PlanError(f"the plan's answer to net.config: {exc}") from None
            echo(str(exc))
        except RescueError as exc:
            if answers.has(QUESTION.id):
                raise
            echo(f"{exc} - try again, or another spec")
        log.info("net.config asked again")


def has_address() -> bool:
    """True if a card with a link has a global address (nothing to ask then)."""
    linked = {n.name for n in detect_nics() if n.carrier}
    return any(name in linked for name in global_addresses())
