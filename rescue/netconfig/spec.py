"""The network spec: `dhcp`, or `IFACE:ADDR/PREFIX[,GW[,DNS]]` for a static address.

One form for the kernel parameter rescue.net=, for `rescue net up` and for the guided question,
so an admin learns it once. It is parsed completely before anything is changed, and a mistake
is one line naming the bad part and showing the expected form.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from rescue.errors import UsageError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

FORM = "dhcp or IFACE:ADDR/PREFIX[,GW[,DNS]]"
EXAMPLE = "eth0:192.0.2.10/24,192.0.2.1,192.0.2.53"


@dataclass(frozen=True)
class NetSpec:
    """What to set up: DHCP on the first card with a link, or one static address."""

    mode: Literal["dhcp", "static"]
    iface: str | None = None
    address: IPInterface | None = None
    gateway: IPAddress | None = None
    dns: IPAddress | None = None

    def __str__(self) -> str:
        if self.mode == "dhcp":
            return "dhcp"
        parts = [f"{self.iface}:{self.address}", str(self.gateway or ""), str(self.dns or "")]
        return ",".join(parts).rstrip(",")


def _bad(text: str, what: str) -> UsageError:
    return UsageError(f"network spec {text!r}: {what}; expected {FORM}, e.g. {EXAMPLE}")


def _valid_iface(name: str) -> bool:
    """The kernel's own rule (dev_valid_name): 1-15 bytes, no '/', ':' or blank, not . or .."""
    return (
        0 < len(name.encode()) < 16
        and name not in (".", "..")
        and not any(c in "/:" or c.isspace() for c in name)
    )


def parse_net_spec(text: str) -> NetSpec:
    """The spec in text, or UsageError naming the part that is wrong."""
    text = text.strip()
    if text.lower() == "dhcp":
        return NetSpec("dhcp")
    iface, colon, rest = text.partition(":")  # a card name never holds ':', IPv6 may follow
    if not colon or not rest:
        raise _bad(text, "not dhcp and no IFACE:ADDR/PREFIX")
    if not _valid_iface(iface):
        raise _bad(text, f"{iface!r} is not a network card name")
    parts = rest.split(",")
    if len(parts) > 3:
        raise _bad(text, "too many parts (one gateway and one DNS server at most)")
    addr_text, gw_text, dns_text = [*parts, "", ""][:3]
    try:
        address = ipaddress.ip_interface(addr_text)
    except ValueError:
        raise _bad(text, f"{addr_text!r} is not an IP address with a prefix length") from None
    if "/" not in addr_text:
        raise _bad(text, f"address {addr_text} needs its prefix length, as in {addr_text}/24")
    gateway = _optional_ip(text, gw_text, "gateway", address)
    dns = _optional_ip(text, dns_text, "DNS server", None)
    return NetSpec("static", iface, address, gateway, dns)


def _optional_ip(
    text: str, part: str, what: str, same_family: IPInterface | None
) -> IPAddress | None:
    if not part:
        return None
    try:
        value = ipaddress.ip_address(part)
    except ValueError:
        raise _bad(text, f"{what} {part!r} is not an IP address") from None
    if same_family is not None and value.version != same_family.version:
        raise _bad(text, f"{what} {part} is not IPv{same_family.version} like the address")
    return value
