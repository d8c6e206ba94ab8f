"""Can the backup host be reached? Checked layer by layer, so a failure says which layer broke.

The order is the order in which each layer depends on the one before: a link (carrier), an
address on a card with a link, the name resolved (DNS), a route to the resolved address, and a
TCP connection to the port. The first that fails raises UnreachableError with one line that
starts with the layer ("network: DNS: ..."), because "cannot connect" alone sends an admin
looking at the server when the cable is out. A loopback host (127.0.0.0/8, ::1, localhost)
needs neither a link nor an address, so those two checks are skipped for it.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

from rescue.errors import UnreachableError
from rescue.netconfig.ipcmd import IpError, global_addresses, route_get
from rescue.netconfig.nics import describe, detect_nics
from rescue.netconfig.setup import nameservers

HINT_ADDRESS = "run `rescue net up dhcp` or `rescue net up IFACE:ADDR/PREFIX,GW,DNS`"


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _fail(layer: str, text: str) -> UnreachableError:
    return UnreachableError(f"network: {layer}: {text}")


def check_link() -> list[str]:
    """The cards with a carrier."""
    nics = detect_nics()
    linked = [n for n in nics if n.carrier]
    if not linked:
        if not nics:
            raise _fail("link", "no network card found (is its driver loaded?)")
        raise _fail("link", f"no network card has a link (checked {describe(nics)})")
    return [f"link: {n.name} up" for n in linked]


def check_address() -> list[str]:
    """Global addresses on cards with a link."""
    linked = [n.name for n in detect_nics() if n.carrier]
    addrs = global_addresses()
    found = [f"address: {', '.join(addrs[name])} on {name}" for name in linked if name in addrs]
    if not found:
        raise _fail("address", f"no address on {', '.join(linked)} ({HINT_ADDRESS})")
    return found


def resolve(host: str, port: int, timeout: float) -> tuple[list[str], str]:
    """The host's addresses and a line; a literal address needs no DNS."""
    try:
        return [str(ipaddress.ip_address(host))], f"DNS: not needed ({host} is an address)"
    except ValueError:
        pass
    result: list[Sequence[tuple[Any, ...]] | OSError] = []

    def lookup() -> None:
        try:
            result.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            result.append(exc)

    worker = threading.Thread(target=lookup, daemon=True)  # getaddrinfo has no timeout of its own
    worker.start()
    worker.join(timeout)
    servers = ", ".join(nameservers()) or "none in /etc/resolv.conf"
    if not result:
        raise _fail("DNS", f"{host}: no answer within {timeout:g} s (nameservers: {servers})")
    if isinstance(result[0], OSError):
        reason = result[0].strerror or str(result[0])
        raise _fail("DNS", f"{host} cannot be resolved: {reason} (nameservers: {servers})")
    addrs = list(dict.fromkeys(str(info[4][0]) for info in result[0]))
    return addrs, f"DNS: {host} is {', '.join(addrs)}"


def check_route(addrs: list[str]) -> tuple[list[str], str]:
    """The addresses the kernel has a route to (in order) and a line for the first."""
    routable: list[str] = []
    refusals: list[str] = []
    line = ""
    for addr in addrs:
        try:
            route = route_get(addr)
        except IpError as exc:
            refusals.append(f"{addr}: {exc}")
            continue
        if not routable:
            via = f"via {route['gateway']} " if "gateway" in route else ""
            kind = " (this machine)" if route.get("type") == "local" else ""
            kind = kind or ("" if via else " (same network)")
            line = f"route: {via}dev {route.get('dev', '?')}{kind}"
        routable.append(addr)
    if not routable:
        raise _fail("route", f"no route to {'; '.join(refusals)} (is a gateway set?)")
    return routable, line


def _endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def check_tcp(addrs: list[str], port: int, timeout: float) -> str:
    """A line for the first address that accepts a connection."""
    problems = []
    for addr in addrs:
        try:
            socket.create_connection((addr, port), timeout=timeout).close()
            return f"TCP: {_endpoint(addr, port)} accepts connections"
        except ConnectionRefusedError:
            problems.append(f"{_endpoint(addr, port)} refused the connection")
        except TimeoutError:
            problems.append(f"{_endpoint(addr, port)} did not answer within {timeout:g} s")
        except OSError as exc:
            problems.append(f"{_endpoint(addr, port)}: {exc.strerror or exc}")
    raise _fail("TCP", "; ".join(problems))


def check_reachable(
    host: str, port: int, timeout: float = 10, *, echo: Callable[[str], None] | None = None
) -> list[str]:
    """Every layer from the link to a TCP connection; lines for a person, or UnreachableError
    naming the first layer that failed. echo sees each line as soon as its layer passed."""
    lines: list[str] = []

    def passed(*new: str) -> None:
        lines.extend(new)
        for line in new:
            if echo:
                echo(line)

    if is_loopback(host):
        passed(f"link, address: not needed ({host} is this machine)")
    else:
        passed(*check_link())
        passed(*check_address())
    addrs, dns_line = resolve(host, port, timeout)
    passed(dns_line)
    addrs, route_line = check_route(addrs)
    passed(route_line)
    passed(check_tcp(addrs, port, timeout))
    return lines
