"""`rescue net show | up | check`: the rescue system's network, by hand.

The same code the recovery runs (rescue.netconfig), so an admin at the console can repeat a
failed step, fix the cause and try again before touching any disk.
"""

from __future__ import annotations

from dataclasses import asdict

import click

from rescue.backup import s3
from rescue.backup.destinations import DEFAULT_PORTS
from rescue.cli.main import App
from rescue.cli.render import emit_json, table
from rescue.errors import UsageError
from rescue.netconfig.ipcmd import global_addresses
from rescue.netconfig.nics import detect_nics
from rescue.netconfig.reach import check_reachable
from rescue.netconfig.setup import bring_up
from rescue.netconfig.spec import EXAMPLE, parse_net_spec


@click.group("net")
def net_group() -> None:
    """The rescue system's network: cards, DHCP or a static address, and a reachability check.

    \b
      rescue net show                        the cards: MAC, link, state, addresses
      rescue net up dhcp                     DHCP on the first card with a link
      rescue net up eth0:192.0.2.10/24,192.0.2.1,192.0.2.53
      rescue net check                       can the configured backup host be reached?
    """


@net_group.command()
@click.option("--all", "include_virtual", is_flag=True, help="Also virtual devices (not lo).")
@click.option("--json", "as_json", is_flag=True, help="Print the cards as data.")
def show(include_virtual: bool, as_json: bool) -> None:
    """Show the network cards: name, MAC, link (carrier), state, driver and addresses.

    Virtual devices (bridges, tunnels, dummy, ifb) are left out unless --all, except veth.
    """
    nics = detect_nics(include_virtual=include_virtual)
    addrs = global_addresses()
    if as_json:
        emit_json([{**asdict(n), "addresses": addrs.get(n.name, [])} for n in nics])
        return
    if not nics:
        click.echo("no network card found (is its driver loaded?)")
        return
    rows = [
        [
            n.name,
            n.mac,
            "yes" if n.carrier else "no",
            n.operstate,
            n.driver or "?",
            ", ".join(addrs.get(n.name, [])) or "-",
        ]
        for n in nics
    ]
    table(None, ["card", "MAC", "link", "state", "driver", "addresses"], rows)


@net_group.command()
@click.argument("spec")
@click.option("--wait-link", default=10.0, show_default=True, help="Seconds to wait for a link.")
@click.option("--dhcp-timeout", default=60.0, show_default=True, help="Seconds to get a lease.")
def up(spec: str, wait_link: float, dhcp_timeout: float) -> None:
    """Bring the network up as SPEC says; running it again is safe.

    \b
    SPEC is one of:
      dhcp                           DHCP (IPv4) on the first card that has a link
      IFACE:ADDR/PREFIX[,GW[,DNS]]   a static address, default gateway and one DNS server
    \b
    For example:
      rescue net up dhcp
      rescue net up {example}
      rescue net up eth0:10.0.0.5/24,10.0.0.1        (no DNS: /etc/resolv.conf is kept)
      rescue net up eth0:2001:db8::5/64,2001:db8::1
    \b
    The same form is the kernel parameter rescue.net= on the rescue ISO.
    """
    for line in bring_up(parse_net_spec(spec), wait_link=wait_link, dhcp_timeout=dhcp_timeout):
        click.echo(line)


up.help = (up.help or "").replace("{example}", EXAMPLE)


@net_group.command()
@click.argument("host", required=False)
@click.argument("port", required=False, type=click.IntRange(1, 65535))
@click.option("--timeout", default=10.0, show_default=True, help="Seconds for DNS and TCP.")
@click.pass_obj
def check(app: App, host: str | None, port: int | None, timeout: float) -> None:
    """Check that HOST PORT (default: the configured destination) can be reached.

    Checks in turn the link, an address, DNS, the route and a TCP connection, and on failure
    names the one that failed (exit 20), e.g. "network: DNS: backup.example cannot be resolved".
    """
    if host is None:
        dest = app.settings().destination
        if dest.method == "s3":
            host, port = s3.endpoint_address(app.settings())
        elif dest.method == "file" or not dest.host:
            raise UsageError("the destination is a local directory; give HOST PORT to check")
        else:
            host, port = dest.host, dest.port or DEFAULT_PORTS[dest.method]
    elif port is None:
        raise UsageError("give both HOST and PORT, or neither (the configured destination)")
    check_reachable(host, port, timeout, echo=click.echo)
