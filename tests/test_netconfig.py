"""Network in the rescue system, on real network namespaces wired by a veth pair.

"rescue" runs in namespace A (its card is one end of the veth); namespace B holds the other
end with 10.79.0.1/24 and, where a test needs them, a real dnsmasq (DHCP and DNS) and a real
listening socket. The code under test runs in A through `ip netns exec`, which also bind-mounts
/etc/netns/A/resolv.conf over /etc/resolv.conf, so the host's own resolver file is never
touched (each test that writes one checks that). Names are unique per run, and everything is
removed in a `finally`.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pexpect
import pytest
from clirun import Run, write_settings
from servers import SshServer, wait_for_port

from rescue.netconfig.dhcp import RUN_DIR
from rescue.prompts import Answers
from rescue.steps import network
from rescue.steps.context import Context, Options

SERVER = "10.79.0.1"
NET = "10.79.0"
HOST_RESOLV = Path("/etc/resolv.conf")


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def resolv_digest() -> str:
    return hashlib.sha256(HOST_RESOLV.read_bytes()).hexdigest()


@dataclass
class Pair:
    """Two namespaces joined by a veth pair: A (rescue) and B (the servers)."""

    tmp: Path
    ns_a: str
    ns_b: str
    a_if: str
    b_if: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def resolv_a(self) -> Path:
        return Path("/etc/netns") / self.ns_a / "resolv.conf"

    def rescue(self, *args: str, timeout: float = 120) -> Run:
        """`rescue ARGS` run inside namespace A, stdin closed."""
        argv = ["ip", "netns", "exec", self.ns_a, sys.executable, "-m", "rescue"]
        argv += ["--log-file", str(self.tmp / "rescue.log"), *args]
        proc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def python_a(self, code: str) -> Run:
        """A Python snippet inside namespace A (Python 3.11 has no os.setns)."""
        argv = ["ip", "netns", "exec", self.ns_a, sys.executable, "-c", textwrap.dedent(code)]
        proc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def ip_a(self, *args: str) -> Any:
        return json.loads(sh("ip", "-n", self.ns_a, "-j", *args) or "[]")

    def global_addresses_a(self) -> list[str]:
        (link,) = self.ip_a("addr", "show", "dev", self.a_if)
        return [
            f"{a['local']}/{a['prefixlen']}"
            for a in link["addr_info"]
            if a["scope"] == "global"
        ]  # fmt: skip

    def link(self, ns: str, iface: str, state: str) -> None:
        sh("ip", "-n", ns, "link", "set", iface, state)

    def static_a(self, address: str, gateway: str | None = None) -> None:
        """Give A an address (and a default route) directly, as a test's starting point."""
        self.link(self.ns_a, self.a_if, "up")
        sh("ip", "-n", self.ns_a, "addr", "add", address, "dev", self.a_if)
        if gateway:
            sh("ip", "-n", self.ns_a, "route", "add", "default", "via", gateway)
        wait_for_carrier(self, True)

    def spawn_b(self, *argv: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"b-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns_b, *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def dnsmasq_b(self) -> None:
        """DHCP for 10.79.0.50-99 (router and DNS 10.79.0.1) and DNS for backup.test only."""
        self.spawn_b(
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
            "--no-hosts", "--bind-interfaces", f"--interface={self.b_if}",
            "--except-interface=lo", "--user=root", f"--pid-file={self.tmp}/dnsmasq.pid",
            f"--dhcp-range={NET}.50,{NET}.99,255.255.255.0,1h",
            f"--dhcp-option=option:router,{SERVER}", f"--dhcp-option=option:dns-server,{SERVER}",
            f"--dhcp-leasefile={self.tmp}/dnsmasq.leases", f"--address=/backup.test/{SERVER}",
            "--log-dhcp", "--log-facility=-",
        )  # fmt: skip
        wait_until(lambda: f"{SERVER}:53" in sh("ip", "netns", "exec", self.ns_b, "ss", "-lnu"))

    def listen_b(self, port: int) -> None:
        """A TCP socket that accepts connections on 10.79.0.1:port."""
        code = (
            "import socket,time\n"
            f"s=socket.create_server(('{SERVER}',{port}))\n"
            "while True: s.accept()[0].close()\n"
        )
        self.spawn_b(sys.executable, "-c", code)
        wait_until(lambda: f"{SERVER}:{port}" in sh("ip", "netns", "exec", self.ns_b, "ss", "-lnt"))

    def dhclient_pids(self) -> list[int]:
        """dhclient processes running for A's card (by the pid file rescue gives it)."""
        needle = f"dhclient.{self.a_if}.pid"
        pids = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if needle in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                continue
        return pids

    def close(self) -> None:
        for pid in self.dhclient_pids():
            os.kill(pid, signal.SIGTERM)
        for proc in self.procs:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for ns in (self.ns_a, self.ns_b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self.resolv_a.parent, ignore_errors=True)
        for leftover in RUN_DIR.glob(f"dhclient.{self.a_if}.*"):
            leftover.unlink()
        if RUN_DIR.is_dir() and not any(RUN_DIR.iterdir()):
            RUN_DIR.rmdir()


def wait_until(check: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {check}")
        time.sleep(0.1)


def wait_for_carrier(pair: Pair, wanted: bool) -> None:
    def carrier() -> bool:
        (link,) = pair.ip_a("link", "show", "dev", pair.a_if)
        return ("LOWER_UP" in link["flags"]) == wanted

    wait_until(carrier)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    tag = secrets.token_hex(3)
    p = Pair(tmp_path, f"rnetA{tag}", f"rnetB{tag}", f"ra{tag}", f"rb{tag}")
    try:
        p.resolv_a.parent.mkdir(parents=True)
        p.resolv_a.write_text(f"nameserver {SERVER}\noptions timeout:1 attempts:1\n")
        sh("ip", "netns", "add", p.ns_a)
        sh("ip", "netns", "add", p.ns_b)
        sh("ip", "link", "add", p.a_if, "netns", p.ns_a, "type", "veth", "peer", "name", p.b_if,
           "netns", p.ns_b)  # fmt: skip
        for ns in (p.ns_a, p.ns_b):
            p.link(ns, "lo", "up")
        sh("ip", "-n", p.ns_b, "addr", "add", f"{SERVER}/24", "dev", p.b_if)
        p.link(p.ns_b, p.b_if, "up")
        yield p
    finally:
        p.close()
        if Path("/etc/netns").exists() and not any(Path("/etc/netns").iterdir()):
            Path("/etc/netns").rmdir()


def one_error(run: Run, code: int) -> str:
    """The failure contract: the exit code and exactly one `rescue: error:` line, no traceback."""
    assert run.code == code, (run.code, run.out, run.err)
    assert "Traceback" not in run.err
    errors = [ln for ln in run.err.splitlines() if ln.startswith("rescue: error: ")]
    assert len(errors) == 1, run.err
    return errors[0].removeprefix("rescue: error: ")


# -- the cards ----------------------------------------------------------------------------------


def test_nic_detection_sees_the_veth_its_mac_and_its_carrier(pair: Pair) -> None:
    (link,) = pair.ip_a("link", "show", "dev", pair.a_if)
    pair.link(pair.ns_a, pair.a_if, "up")
    wait_for_carrier(pair, True)
    run = pair.rescue("net", "show", "--json")
    assert run.code == 0, run.err
    (card,) = run.json()  # lo is not a card
    assert card["name"] == pair.a_if
    assert card["mac"] == link["address"]
    assert card["carrier"] is True and card["operstate"] == "up"
    assert card["driver"] == "veth" and card["addresses"] == []

    pair.link(pair.ns_b, pair.b_if, "down")  # the far end unplugged
    wait_for_carrier(pair, False)
    (card,) = pair.rescue("net", "show", "--json").json()
    assert card["carrier"] is False and card["operstate"] in ("down", "lowerlayerdown")

    table = pair.rescue("net", "show")
    assert table.code == 0
    row = next(ln for ln in table.out.splitlines() if pair.a_if in ln)
    assert link["address"] in row and " no " in row


# -- bringing it up -----------------------------------------------------------------------------


def test_dhcp_gets_an_address_from_dnsmasq_and_a_second_run_replaces_the_first(
    pair: Pair,
) -> None:
    before = resolv_digest()
    pair.dnsmasq_b()
    run = pair.rescue("net", "up", "dhcp", "--dhcp-timeout", "30")
    assert run.code == 0, run.err
    (address,) = pair.global_addresses_a()
    host, prefix = address.split("/")
    assert host.startswith(f"{NET}.") and 50 <= int(host.rsplit(".", 1)[1]) <= 99
    assert prefix == "24"
    assert run.out.splitlines()[1:] == [
        f"address: {address} on {pair.a_if} (DHCP)",
        f"route: default via {SERVER} dev {pair.a_if}",
        f"DNS: {SERVER}",
    ]
    assert run.out.startswith(f"link: {pair.a_if} up (")
    assert pair.ip_a("route", "show", "default")[0]["gateway"] == SERVER
    assert f"nameserver {SERVER}" in pair.resolv_a.read_text()
    assert len(pair.dhclient_pids()) == 1  # it stays to renew the lease

    again = pair.rescue("net", "up", "dhcp", "--dhcp-timeout", "30")
    assert again.code == 0, again.err
    assert pair.global_addresses_a() == [address]
    assert len(pair.dhclient_pids()) == 1  # the first one was replaced, not doubled
    assert resolv_digest() == before

    # The whole way to a server, by name, through dnsmasq's DNS.
    pair.listen_b(2222)
    check = pair.rescue("net", "check", "backup.test", "2222")
    assert check.code == 0, check.err
    assert check.out.splitlines() == [
        f"link: {pair.a_if} up",
        f"address: {address} on {pair.a_if}",
        f"DNS: backup.test is {SERVER}",
        f"route: dev {pair.a_if} (same network)",
        f"TCP: {SERVER}:2222 accepts connections",
    ]
    # A name dnsmasq does not know: the DNS layer says so, with the nameserver it asked.
    unknown = one_error(pair.rescue("net", "check", "nothere.test", "2222"), 20)
    assert unknown.startswith("network: DNS: nothere.test cannot be resolved")
    assert f"(nameservers: {SERVER})" in unknown


def test_dhcp_without_a_server_fails_naming_the_card_and_dhcp(pair: Pair) -> None:
    started = time.monotonic()
    line = one_error(pair.rescue("net", "up", "dhcp", "--dhcp-timeout", "3"), 20)
    assert line.startswith(f"network: {pair.a_if}: DHCP: no lease within 3 s"), line
    assert time.monotonic() - started < 20
    assert pair.global_addresses_a() == []
    assert pair.dhclient_pids() == []


def test_dhcp_with_no_link_fails_at_the_link(pair: Pair) -> None:
    pair.link(pair.ns_b, pair.b_if, "down")
    line = one_error(pair.rescue("net", "up", "dhcp", "--wait-link", "1"), 20)
    assert line == (
        f"network: link: no network card has a link after 1 s (checked {pair.a_if}; "
        "is a cable plugged in?)"
    )


def test_static_sets_address_route_and_dns_and_can_run_again(pair: Pair) -> None:
    before = resolv_digest()
    spec = f"{pair.a_if}:{NET}.2/24,{SERVER},{NET}.53"
    for _ in range(2):
        run = pair.rescue("net", "up", spec)
        assert run.code == 0, run.err
        assert run.out.splitlines() == [
            f"link: {pair.a_if} up",
            f"address: {NET}.2/24 on {pair.a_if} (static)",
            f"route: default via {SERVER} dev {pair.a_if}",
            f"DNS: {NET}.53",
        ]
        assert pair.global_addresses_a() == [f"{NET}.2/24"]
        (default,) = pair.ip_a("route", "show", "default")
        assert (default["gateway"], default["dev"]) == (SERVER, pair.a_if)
        assert pair.resolv_a.read_text().splitlines()[1:] == [f"nameserver {NET}.53"]
    assert resolv_digest() == before

    # Another static address replaces the first; without DNS the resolver file is kept.
    run = pair.rescue("net", "up", f"{pair.a_if}:{NET}.3/24")
    assert run.code == 0, run.err
    assert pair.global_addresses_a() == [f"{NET}.3/24"]
    assert pair.resolv_a.read_text().splitlines()[1:] == [f"nameserver {NET}.53"]


def test_static_ipv6_with_a_gateway_outside_the_prefix(pair: Pair) -> None:
    run = pair.rescue("net", "up", f"{pair.a_if}:fd79::2/128,fd79::1")
    assert run.code == 0, run.err
    assert pair.global_addresses_a() == ["fd79::2/128"]
    (default,) = json.loads(sh("ip", "-n", pair.ns_a, "-j", "-6", "route", "show", "default"))
    assert default["gateway"] == "fd79::1" and "onlink" in default["flags"]


def test_static_on_an_unknown_card_names_the_cards_there_are(pair: Pair) -> None:
    line = one_error(pair.rescue("net", "up", "nosuch0:10.79.0.2/24"), 20)
    assert line == f"network: nosuch0: no such network card (there are: {pair.a_if})"


# -- reachability, layer by layer -----------------------------------------------------------------


def test_check_reports_link_when_the_far_end_is_down(pair: Pair) -> None:
    pair.static_a(f"{NET}.2/24")
    pair.link(pair.ns_b, pair.b_if, "down")
    wait_for_carrier(pair, False)
    line = one_error(pair.rescue("net", "check", SERVER, "22"), 20)
    assert line == f"network: link: no network card has a link (checked {pair.a_if})"


def test_check_reports_address_when_the_card_has_none(pair: Pair) -> None:
    pair.link(pair.ns_a, pair.a_if, "up")
    wait_for_carrier(pair, True)
    line = one_error(pair.rescue("net", "check", SERVER, "22"), 20)
    assert line.startswith(f"network: address: no address on {pair.a_if} (run `rescue net up")


def test_check_reports_dns_when_no_nameserver_answers(pair: Pair) -> None:
    pair.static_a(f"{NET}.2/24", SERVER)  # the nameserver 10.79.0.1 has nothing on port 53
    run = pair.rescue("net", "check", "backup.test", "22", "--timeout", "5")
    line = one_error(run, 20)
    assert line.startswith("network: DNS: backup.test cannot be resolved"), line
    assert line.endswith(f"(nameservers: {SERVER})")
    assert run.out.splitlines() == [
        f"link: {pair.a_if} up",
        f"address: {NET}.2/24 on {pair.a_if}",
    ]  # the layers that passed, then the one that failed


def test_check_reports_route_when_there_is_no_gateway(pair: Pair) -> None:
    pair.static_a(f"{NET}.2/24")
    line = one_error(pair.rescue("net", "check", "10.80.0.1", "22"), 20)
    assert line == (
        "network: route: no route to 10.80.0.1: Network is unreachable (is a gateway set?)"
    )


def test_check_reports_tcp_refused_then_success_when_a_server_listens(pair: Pair) -> None:
    pair.static_a(f"{NET}.2/24", SERVER)
    line = one_error(pair.rescue("net", "check", SERVER, "2222"), 20)
    assert line == f"network: TCP: {SERVER}:2222 refused the connection"
    pair.listen_b(2222)
    run = pair.rescue("net", "check", SERVER, "2222")
    assert run.code == 0, run.err
    assert run.out.splitlines() == [
        f"link: {pair.a_if} up",
        f"address: {NET}.2/24 on {pair.a_if}",
        f"DNS: not needed ({SERVER} is an address)",
        f"route: dev {pair.a_if} (same network)",
        f"TCP: {SERVER}:2222 accepts connections",
    ]
    # Through the gateway to another network: the route names it.
    sh("ip", "-n", pair.ns_b, "addr", "add", "10.80.0.1/32", "dev", "lo")
    pair.rescue("net", "up", f"{pair.a_if}:{NET}.2/24,{SERVER}")
    far = pair.rescue("net", "check", "10.80.0.1", "2223")
    assert one_error(far, 20) == "network: TCP: 10.80.0.1:2223 refused the connection"
    assert f"route: via {SERVER} dev {pair.a_if}" in far.out.splitlines()


def test_check_without_arguments_uses_the_configured_destination(pair: Pair) -> None:
    pair.static_a(f"{NET}.2/24")
    settings = write_settings(
        pair.tmp / "rescue.toml",
        {
            "destination": {"method": "sftp", "host": SERVER, "port": 2200, "path": "/b"},
            "encryption": {"mode": "none"},
        },
    )
    line = one_error(pair.rescue("--config", str(settings), "net", "check"), 20)
    assert line == f"network: TCP: {SERVER}:2200 refused the connection"


# -- the recovery step and the guided question ---------------------------------------------------

STEP_SNIPPET = """
    import sys
    from rescue.errors import RescueError
    from rescue.prompts import Answers
    from rescue.steps import network
    from rescue.steps.context import Context, Options
    ctx = Context(Options(settings_file={settings!r}), Answers({answers!r}, interactive=False))
    try:
        for line in network.run(ctx):
            print(line)
    except RescueError as exc:
        print(f"{{type(exc).__name__}} {{exc.exit_code}}: {{exc}}", file=sys.stderr)
        sys.exit(exc.exit_code)
"""


def _step_settings(pair: Pair) -> Path:
    return write_settings(
        pair.tmp / "rescue.toml",
        {
            "destination": {"method": "sftp", "host": SERVER, "port": 2222, "path": "/b"},
            "encryption": {"mode": "none"},
        },
    )


def test_network_step_asks_for_an_address_then_checks_before_any_ssh(pair: Pair) -> None:
    settings = _step_settings(pair)
    answers = {"net.config": f"{pair.a_if}:{NET}.2/24,{SERVER}"}
    run = pair.python_a(STEP_SNIPPET.format(settings=str(settings), answers=answers))
    assert run.code == 20, (run.out, run.err)
    assert run.err.strip() == (
        f"UnreachableError 20: network: TCP: {SERVER}:2222 refused the connection"
    )
    assert pair.global_addresses_a() == [f"{NET}.2/24"]  # the planned answer was brought up


def test_network_step_with_a_bad_planned_spec_names_the_question(pair: Pair) -> None:
    settings = _step_settings(pair)
    answers = {"net.config": "eth0:10.79.0.2"}
    run = pair.python_a(STEP_SNIPPET.format(settings=str(settings), answers=answers))
    assert run.code == 8, (run.out, run.err)
    assert run.err.startswith("PlanError 8: the plan's answer to net.config: network spec")
    assert "needs its prefix length" in run.err


def test_network_step_unattended_without_an_answer_reports_the_address_layer(pair: Pair) -> None:
    pair.link(pair.ns_a, pair.a_if, "up")
    wait_for_carrier(pair, True)
    run = pair.python_a(STEP_SNIPPET.format(settings=str(_step_settings(pair)), answers={}))
    assert run.code == 20, (run.out, run.err)
    assert run.err.startswith(f"UnreachableError 20: network: address: no address on {pair.a_if}")


def test_network_step_on_loopback_checks_then_reaches_sshd(tmp_path: Path, sshd: SshServer) -> None:
    wait_for_port(sshd.port)
    settings = write_settings(
        tmp_path / "rescue.toml",
        {
            "destination": sshd.destination(tmp_path / "dest"),
            "encryption": {"mode": "none"},
        },
    )
    ctx = Context(Options(settings_file=str(settings)), Answers({}, interactive=False))
    lines = network.run(ctx)
    assert lines[:4] == [
        "link, address: not needed (127.0.0.1 is this machine)",
        "DNS: not needed (127.0.0.1 is an address)",
        "route: dev lo (this machine)",
        f"TCP: 127.0.0.1:{sshd.port} accepts connections",
    ]
    assert lines[4].startswith("reached sftp://")


GUIDED_SNIPPET = """
    from rescue.prompts import Answers
    from rescue.netconfig.setup import ask_and_bring_up
    for line in ask_and_bring_up(Answers({}, interactive=True), wait_link=2):
        print("DONE", line)
"""


def test_guided_question_asks_again_after_a_bad_spec(pair: Pair) -> None:
    argv = ["netns", "exec", pair.ns_a, sys.executable, "-c", textwrap.dedent(GUIDED_SNIPPET)]
    with (pair.tmp / "terminal.log").open("wb") as log:
        child = pexpect.spawn("ip", argv, timeout=30, dimensions=(40, 200), logfile=log)
        child.expect("Network:")
        child.send("\x15eth0:10.79.0.2\r")  # Ctrl-U clears the default "dhcp"
        child.expect("needs its prefix length")
        child.expect("Network:")
        child.send(f"\x15{pair.a_if}:{NET}.2/24\r")
        child.expect(f"DONE address: {NET}.2/24 on {pair.a_if} \\(static\\)")
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus == 0, (pair.tmp / "terminal.log").read_text()
    assert pair.global_addresses_a() == [f"{NET}.2/24"]
