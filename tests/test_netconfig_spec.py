"""The network spec (rescue.net=, `rescue net up`): every good form parses, every bad one is one
line that names the bad part and shows the expected form, and the CLI exits 2 on it."""

from __future__ import annotations

import ipaddress

import pytest
from clirun import rescue

from rescue.errors import UsageError
from rescue.netconfig.spec import FORM, NetSpec, parse_net_spec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dhcp", NetSpec("dhcp")),
        (" DHCP ", NetSpec("dhcp")),
        (
            "eth0:192.0.2.10/24,192.0.2.1,192.0.2.53",
            NetSpec(
                "static",
                "eth0",
                ipaddress.ip_interface("192.0.2.10/24"),
                ipaddress.ip_address("192.0.2.1"),
                ipaddress.ip_address("192.0.2.53"),
            ),
        ),
        ("ens3:10.0.0.5/8", NetSpec("static", "ens3", ipaddress.ip_interface("10.0.0.5/8"))),
        (
            "eth0:10.0.0.5/24,,10.0.0.53",
            NetSpec(
                "static",
                "eth0",
                ipaddress.ip_interface("10.0.0.5/24"),
                None,
                ipaddress.ip_address("10.0.0.53"),
            ),
        ),
        (
            "enp1s0:2001:db8::5/64,fe80::1",
            NetSpec(
                "static",
                "enp1s0",
                ipaddress.ip_interface("2001:db8::5/64"),
                ipaddress.ip_address("fe80::1"),
            ),
        ),
    ],
)
def test_good_specs_parse(text: str, expected: NetSpec) -> None:
    spec = parse_net_spec(text)
    assert spec == expected
    assert parse_net_spec(str(spec)) == spec  # str() is the same form again


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("dhcpp", "not dhcp and no IFACE:ADDR/PREFIX"),
        ("", "not dhcp"),
        ("eth0:", "not dhcp"),
        (":10.0.0.5/24", "'' is not a network card name"),
        ("a/b:10.0.0.5/24", "'a/b' is not a network card name"),
        ("averyveryverylongname:10.0.0.5/24", "is not a network card name"),
        ("eth0:10.0.0.5", "address 10.0.0.5 needs its prefix length, as in 10.0.0.5/24"),
        ("eth0:10.0.0.500/24", "'10.0.0.500/24' is not an IP address"),
        ("eth0:10.0.0.5/33", "'10.0.0.5/33' is not an IP address"),
        ("eth0:10.0.0.5/24,gw", "gateway 'gw' is not an IP address"),
        ("eth0:10.0.0.5/24,10.0.0.1,dns.example", "DNS server 'dns.example' is not an IP"),
        ("eth0:10.0.0.5/24,2001:db8::1", "gateway 2001:db8::1 is not IPv4 like the address"),
        ("eth0:10.0.0.5/24,10.0.0.1,10.0.0.53,10.0.0.54", "too many parts"),
    ],
)
def test_bad_specs_are_one_line_naming_the_part_and_the_form(text: str, names: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_net_spec(text)
    message = str(caught.value)
    assert "\n" not in message
    assert names in message
    assert f"expected {FORM}" in message
    assert caught.value.exit_code == 2


def test_cli_refuses_a_bad_spec_before_touching_anything() -> None:
    run = rescue(None, "net", "up", "eth0:192.0.2.10")
    assert run.code == 2, run.err
    errors = [ln for ln in run.err.splitlines() if ln.startswith("rescue: error: ")]
    assert errors == [
        "rescue: error: network spec 'eth0:192.0.2.10': address 192.0.2.10 needs its prefix "
        "length, as in 192.0.2.10/24; expected dhcp or IFACE:ADDR/PREFIX[,GW[,DNS]], "
        "e.g. eth0:192.0.2.10/24,192.0.2.1,192.0.2.53"
    ], run.err
    assert "Traceback" not in run.err


def test_cli_help_teaches_the_spec_with_examples() -> None:
    run = rescue(None, "net", "up", "--help")
    assert run.code == 0
    assert "IFACE:ADDR/PREFIX[,GW[,DNS]]" in run.out
    assert "rescue net up eth0:192.0.2.10/24,192.0.2.1,192.0.2.53" in run.out
    assert "rescue.net=" in run.out


def test_cli_check_needs_both_host_and_port() -> None:
    run = rescue(None, "net", "check", "backup.example")
    assert run.code == 2
    assert "give both HOST and PORT, or neither" in run.err
