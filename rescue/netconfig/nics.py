"""The network cards of this machine: name, MAC, link (carrier) and state, found with pyudev.

Which devices count as a card: every net device that sits on a bus (it has a parent device, so
it is not under /sys/devices/virtual), plus veth. Loopback, bridges, tunnels, ifb and dummy
devices are left out: none of them is a way out of the machine. veth is the exception because
it is exactly that in a container or a network namespace (it is how the tests wire a rescue
system to a DHCP server); a live ISO booted on hardware or in a VM never has one.
`include_virtual=True` lists every device except loopback.
"""

from __future__ import annotations

import array
import fcntl
import socket
import struct
from dataclasses import dataclass

import pyudev

SIOCETHTOOL = 0x8946
ETHTOOL_GDRVINFO = 0x00000003
VIRTUAL_CARDS = ("veth",)


@dataclass(frozen=True)
class Nic:
    """One network card as the kernel sees it now."""

    name: str
    mac: str
    carrier: bool
    operstate: str
    driver: str | None
    ifindex: int = 0
    virtual: bool = False


def _attr(device: pyudev.Device, name: str) -> str:
    """A sysfs attribute as text; "" when the kernel will not say (carrier of a down link)."""
    try:
        value = device.attributes.get(name)
    except (OSError, KeyError):
        return ""
    return value.decode(errors="replace").strip() if value else ""


def ethtool_driver(name: str) -> str | None:
    """The driver name the kernel reports (ETHTOOL_GDRVINFO: "virtio_net", "e1000e", "veth"):
    the same for physical and virtual devices, and no udev database needed."""
    buf = array.array("B", struct.pack("I", ETHTOOL_GDRVINFO) + bytes(192))
    ifreq = struct.pack("16sP", name.encode()[:15], buf.buffer_info()[0])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
    except OSError:
        return None
    return buf[4:36].tobytes().split(b"\0")[0].decode(errors="replace") or None


def detect_nics(*, include_virtual: bool = False) -> list[Nic]:
    """The cards in the kernel's order (ifindex), so "the first" is the one probed first."""
    nics = []
    for device in pyudev.Context().list_devices(subsystem="net"):
        name = device.sys_name
        if _attr(device, "type") == "772":  # ARPHRD_LOOPBACK
            continue
        virtual = device.sys_path.startswith("/sys/devices/virtual/")
        driver = ethtool_driver(name)
        if virtual and not include_virtual and driver not in VIRTUAL_CARDS:
            continue
        index = _attr(device, "ifindex")
        nics.append(
            Nic(
                name=name,
                mac=_attr(device, "address"),
                carrier=_attr(device, "carrier") == "1",
                operstate=_attr(device, "operstate") or "unknown",
                driver=driver,
                ifindex=int(index) if index.isdigit() else 0,
                virtual=virtual,
            )
        )
    return sorted(nics, key=lambda n: (n.ifindex, n.name))


def describe(nics: list[Nic]) -> str:
    """The names as "eth0, ens3" for messages, or a note that there is none."""
    return ", ".join(n.name for n in nics) or "no network card found"
