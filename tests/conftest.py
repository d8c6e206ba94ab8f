"""Shared fixtures: real servers on 127.0.0.1, a throwaway GnuPG home and the sample tree; and
the test tiers (unit, root, net, vm), assigned here, in one place, by what each test uses.

The servers are session-scoped because starting sshd or pyftpdlib costs a moment and tests only
add files under their own tmp_path. A test that must disturb a server (new host key, restart)
builds its own from tests/servers.py instead of touching these. Every fixture stops what it
started in a `finally`, so a failing test leaves no daemon behind.
"""

from __future__ import annotations

import fcntl
import inspect
import os
import signal
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopdisks import require_loop_disks
from rgw import RgwServer
from servers import FtpServer, GpgHome, SshServer, VsftpdServer, serving

from rescue.backup.sampletree import make_sample_tree
from rescue.process import execute

TIERS = ("unit", "root", "net", "vm")
# Helper modules of tests/ (and vm-tests/) by the tier a test that uses them belongs to.
VM_HELPERS = {"vm", "bootdisk", "isoimage", "machine"}  # QEMU (and the images it boots)
# CI's second process, beside the rest (marker `beside`): the rescue ISO's tests and the host
# recoveries that boot, chosen by measured durations so both processes take about as long (a CI
# run of 2026-12-06: the ISO tests 6 min, the scenario 23 and the e2e recoveries 7 here; the UEFI
# guest 14 and all the rest 21 in the other process).
BESIDE_HELPERS = {"isoimage", "machine"}
BESIDE_MODULES = {"test_recover_e2e.py"}
ROOT_HELPERS = {"loopdisks", "sandbox", "scenario", "exacttree"}  # loop disks, mounts, chown
NET_NAMES = {"SshServer", "FtpServer", "VsftpdServer", "RgwServer"}  # servers a test starts itself
NET_FIXTURES = {"sshd", "ftpd", "ftpsd", "rgw"}
ROOT_FIXTURES = {"host_identity"}  # swaps this machine's /etc/passwd and /etc/group
TESTS = Path(__file__).resolve().parent
# Root needs that the detection below cannot see (a chown, a mount, unshare, /etc/shadow, a
# network namespace), found by running the unit tier as nobody: "module" or "module::test".
NEEDS_ROOT = {
    "test_configbackup.py": "its fake hosts chown files to their users; /etc/shadow",
    "test_netconfig.py": "network namespaces and veth pairs",
    "test_faults.py::test_a_restore_that_cannot_fit_is_refused_before_any_work": "tmpfs mount",
    "test_faults.py::test_a_restore_into_a_file_system_that_fills_up_meanwhile": "tmpfs mount",
    "test_faults.py::test_a_backup_to_a_full_destination": "tmpfs mount",
    "test_destlock.py::test_copied_settings_on_another_host_are_refused": "unshare --uts",
    "test_exact_times.py::test_the_root_and_rescues_own_files_come_back_with_their_exact_times": (
        "restores /-like trees with root's modes and owners"
    ),
    "test_exact_times.py::test_a_manifest_without_recorded_times_"
    "still_recreates_the_excluded_dirs": ("recreates /tmp with its sticky bit and owner"),
    "test_exact_units.py::test_plain_files_cost_nothing_and_owners_are_inherited": "chown",
    "test_lifetime.py::test_a_recovery_resumes_from_any_working_directory": "/run/rescue-recover",
    "test_live.py::test_plan_from_the_iso_then_the_rescue_system": "a loop device and a mount",
    "test_manifest.py": "its source trees hold root's /tmp (sticky, owned by root)",
    "test_restore_safety.py": "the sandbox (a mount namespace); owners in its trees",
}
# `rescue recover` on this host: one per machine (/run/rescue-recover, and it swaps /etc/passwd
# and /etc/group for a while). CI runs the vm tier beside the rest, so two test processes could
# both start one: such tests take this lock for their whole run (setup to teardown).
HOST_RECOVERY_LOCK = Path("/run/lock/rescue-tests-host-recovery.lock")
HOST_RECOVERY_TESTS = {
    "test_lifetime.py::test_a_recovery_resumes_from_any_working_directory",
    "test_manifest_model.py::test_a_newer_manifest_stops_the_recovery_with_the_manifest_exit_code",
}


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _uses(func: object, seen: set[object]) -> tuple[set[str], set[str]]:
    """The helper modules and the server classes that func refers to, following the functions
    of its own module that it calls (a test's helpers often sit beside it)."""
    func = inspect.unwrap(func)  # type: ignore[arg-type]
    code = getattr(func, "__code__", None)
    if code is None or func in seen:
        return set(), set()
    seen.add(func)
    modules: set[str] = set()
    names: set[str] = set()
    scope = func.__globals__  # type: ignore[attr-defined]
    for name in _code_names(code):
        value = scope.get(name)
        if value is None:
            continue
        if isinstance(value, types.ModuleType):
            modules.add(value.__name__)
        elif inspect.isfunction(value) and value.__module__ == scope.get("__name__"):
            more_modules, more_names = _uses(value, seen)
            modules |= more_modules
            names |= more_names
        else:
            modules.add(getattr(value, "__module__", "") or "")
            if name in NET_NAMES:
                names.add(name)
    return modules, names


def tier_of(item: pytest.Item) -> list[str]:
    """The tier markers of a test: vm if it boots QEMU; else root (loop disks, mounts, the
    sandbox, the host's identity files, a skip for non-root) and/or net (the server fixtures or
    a server it starts); unit when none of these. A tier a module declares (`pytestmark`, for
    what this cannot see: a fixture that makes network namespaces, a chown) replaces unit."""
    declared = {m.name for m in item.iter_markers() if m.name in TIERS}
    function = getattr(item, "function", None)
    seen: set[object] = set()
    modules, names = _uses(function, seen) if function else (set(), set())
    fixtures = set(getattr(item, "fixturenames", ()))
    for defs in getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {}).values():
        for fixturedef in defs:
            more_modules, more_names = _uses(fixturedef.func, seen)
            modules |= more_modules
            names |= more_names
    if modules & BESIDE_HELPERS or item.path.name in BESIDE_MODULES:
        return ["beside", "vm"]
    if modules & VM_HELPERS or "vm" in declared:
        return ["vm"]
    tiers = sorted(declared)
    skips_non_root = any(
        "root" in str(m.kwargs.get("reason", "")) for m in item.iter_markers("skipif")
    )
    listed = {item.path.name, f"{item.path.name}::{getattr(item, 'originalname', item.name)}"}
    if (
        modules & ROOT_HELPERS
        or fixtures & ROOT_FIXTURES
        or skips_non_root
        or listed & NEEDS_ROOT.keys()
    ):
        tiers.append("root")
    if fixtures & NET_FIXTURES or names:
        tiers.append("net")
    return sorted(set(tiers)) or ["unit"]


def pytest_configure(config: pytest.Config) -> None:
    """A SIGTERM (scripts/test passes its own on) ends the run as Ctrl-C does, with every
    fixture's cleanup (servers, mounts, loop disks); SIGINT may be ignored where CI starts us."""
    main = os.getpid()

    def interrupt(signum: int, frame: object) -> None:
        if os.getpid() != main:  # a forked child: die as SIGTERM would have made it
            os._exit(128 + signum)
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def runs_a_host_recovery(item: pytest.Item) -> bool:
    name = f"{item.path.name}::{getattr(item, 'originalname', item.name)}"
    return "host_identity" in getattr(item, "fixturenames", ()) or name in HOST_RECOVERY_TESTS


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """A test that runs `rescue recover` on this host waits for any other test process's."""
    if not runs_a_host_recovery(item):
        yield
        return
    HOST_RECOVERY_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with HOST_RECOVERY_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if TESTS in item.path.parents:
            for name in tier_of(item):
                if not item.get_closest_marker(name):
                    item.add_marker(name)


@pytest.fixture(autouse=True)
def isolated_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no registered secrets: one test's passphrase must not mask (or, in
    argv, refuse) another test's data."""
    monkeypatch.setattr(execute, "_secrets", set())
    monkeypatch.setattr(execute, "_secret_variables", set())


@pytest.fixture(scope="module")
def loops(request: pytest.FixtureRequest) -> None:
    """Skip where loop disks cannot exist; fail, naming the package, where a tool is missing:
    the test module's TOOLS maps each program it runs to the Debian package that has it."""
    require_loop_disks(request.module.TOOLS)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """OpenSSH sshd: key-only root login with `sshd.client_key`, SFTP enabled."""
    with serving(SshServer(tmp_path_factory.mktemp("sshd"))) as server:
        yield server


@pytest.fixture(scope="session")
def ftpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    """pyftpdlib FTP server: user "rescue" with a random password, files under `ftpd.root`."""
    with serving(FtpServer(tmp_path_factory.mktemp("ftpd"))) as server:
        yield server


@pytest.fixture(scope="session")
def ftpsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VsftpdServer]:
    """vsftpd with explicit FTPS required; `ftpsd.certfile` is its self-signed certificate."""
    with serving(VsftpdServer(tmp_path_factory.mktemp("ftpsd"))) as server:
        yield server


@pytest.fixture(scope="session")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RgwServer]:
    """Ceph's RADOS Gateway (S3) on a throwaway one-node cluster (memstore): `rgw.endpoint`
    (HTTP) and `rgw.tls_endpoint` (HTTPS, verified with `rgw.ca_file`); rgw.bucket() makes a
    fresh bucket of the owner (`rgw.access_key`), rgw.user() another user."""
    with serving(RgwServer(tmp_path_factory.mktemp("rgw"))) as server:
        yield server


@pytest.fixture
def gpg_home() -> Iterator[GpgHome]:
    """A fresh GNUPGHOME with one key pair (no passphrase); `gpg_home.fingerprint` names it."""
    with GpgHome() as home:
        yield home


@pytest.fixture
def sample_tree(tmp_path: Path) -> Path:
    """tmp_path / "src" filled by rescue.backup.sampletree.make_sample_tree (seed 0)."""
    root = tmp_path / "src"
    make_sample_tree(root)
    return root


@pytest.fixture
def host_identity() -> Iterator[None]:
    """The recovery puts merged passwd/group files on this machine for a while: check that it
    gives the originals back, and restore them here whatever happens. (The test holds the
    host-recovery lock meanwhile: see pytest_runtest_protocol.)"""
    saved = {name: Path(f"/etc/{name}").read_bytes() for name in ("passwd", "group")}
    try:
        yield
        for name, data in saved.items():
            assert Path(f"/etc/{name}").read_bytes() == data, f"/etc/{name} was not put back"
    finally:
        for name, data in saved.items():
            if Path(f"/etc/{name}").read_bytes() != data:
                Path(f"/etc/{name}").write_bytes(data)
