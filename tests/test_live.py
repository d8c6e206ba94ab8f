"""The rescue ISO's boot side on the host: kernel parameters, where a plan comes from, consoles.

The plan disk is a real ext4 file system labelled RESCUEPLAN on a loop device, found by blkid as
the rescue system finds it; URL plans come from a real HTTP server and a real OpenSSH server on
127.0.0.1. The whole
boot is proven in QEMU by vm-tests/.
"""

from __future__ import annotations

import functools
import http.server
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import rescue
from loopdisks import loop_disk, need
from servers import SshServer

from rescue.errors import AuthenticationError, ChangedHostKeyError, PlanError
from rescue.live.cmdline import parse_cmdline
from rescue.live.console import console_enabled, primary_console
from rescue.live.plan_source import LABEL, fetch_plan
from rescue.recovery.mounts import mounted_at, unmount_tree

PLAN = 'settings = "rescue.toml"\nafter = "poweroff"\n'


def test_cmdline_reads_the_rescue_parameters_and_ignores_the_rest() -> None:
    options = parse_cmdline(
        "BOOT_IMAGE=/live/vmlinuz boot=live console=ttyS0,115200n8 rescue.plan=/plan.toml "
        "rescue.net=ens3:192.0.2.10/24,192.0.2.1,192.0.2.53 rescue.after=poweroff rescue.ssh=1\n"
    )
    assert options.plan == "/plan.toml"
    assert options.net == "ens3:192.0.2.10/24,192.0.2.1,192.0.2.53"
    assert options.after == "poweroff"
    assert options.ssh is True
    assert options.problems == []


def test_cmdline_without_rescue_parameters_means_guided() -> None:
    options = parse_cmdline("boot=live components quiet")
    assert (options.plan, options.net, options.after, options.ssh) == (None, None, None, False)


def test_cmdline_reports_typos_and_bad_values_as_problems() -> None:
    options = parse_cmdline("rescue.plna=/p.toml rescue.after=halt rescue.plan= rescue.ssh=yes")
    assert options.plan is None
    assert options.problems == [
        "unknown kernel parameter rescue.plna (known: rescue.plan, rescue.net, rescue.after, "
        "rescue.ssh)",
        "rescue.after=halt: must be one of reboot, poweroff, shell",
        "rescue.plan needs a value, as in rescue.plan=...",
        "rescue.ssh=yes: must be 1 or 0",
    ]


def test_consoles(tmp_path: Path) -> None:
    active = tmp_path / "active"
    active.write_text("tty0 ttyS0\n")
    assert console_enabled("tty1", active) and console_enabled("ttyS0", active)
    assert not console_enabled("ttyS1", active)
    assert primary_console(active) == "ttyS0"
    active.write_text("ttyS0 tty0\n")
    assert primary_console(active) == "tty1"  # tty0 is the current virtual terminal
    assert primary_console(tmp_path / "missing") == "tty1"
    assert not console_enabled("ttyS0", tmp_path / "missing")


def test_plan_from_the_iso_then_the_rescue_system(tmp_path: Path) -> None:
    medium = tmp_path / "medium"
    (medium / "plans").mkdir(parents=True)
    (medium / "plans/host.toml").write_text(PLAN)
    path, origin = fetch_plan("/plans/host.toml", work=tmp_path / "work", medium=medium)
    assert (path, origin) == (medium / "plans/host.toml", "from the rescue ISO")
    with pytest.raises(PlanError) as failed:
        fetch_plan("/plans/missing.toml", work=tmp_path / "work", medium=medium)
    assert str(failed.value) == (
        f"rescue.plan=/plans/missing.toml: no such file on the rescue ISO ({medium}), "
        "the rescue system"
    )


@pytest.fixture
def plan_disk(tmp_path: Path) -> Iterator[Path]:
    """A loop device with ext4 labelled RESCUEPLAN, holding plans/host.toml and a secret."""
    need("blkid", "mkfs.ext4", package="e2fsprogs")
    content = tmp_path / "content"
    (content / "plans").mkdir(parents=True)
    (content / "plans/host.toml").write_text(PLAN)
    (content / "passphrase").write_text("secret\n")
    (content / "passphrase").chmod(0o600)
    image = tmp_path / "plan.img"
    with loop_disk(image, "16M") as device:
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-L", LABEL, "-d", str(content), device],
            check=True,
            capture_output=True,
        )
        work = tmp_path / "work"
        try:
            yield work
        finally:
            unmount_tree(work / "disk")


def test_plan_from_the_disk_labelled_rescueplan_is_mounted_read_only(
    plan_disk: Path, tmp_path: Path
) -> None:
    medium = tmp_path / "medium"
    medium.mkdir()
    path, origin = fetch_plan("plans/host.toml", work=plan_disk, medium=medium)
    assert path == plan_disk / "disk/plans/host.toml"
    assert origin.startswith(f"from the disk labelled {LABEL} (/dev/loop")
    assert path.read_text() == PLAN
    assert mounted_at(plan_disk / "disk") is not None
    assert (plan_disk / "disk/passphrase").stat().st_mode & 0o777 == 0o600
    with pytest.raises(OSError):
        (plan_disk / "disk/new-file").write_text("the plan disk must stay untouched")
    # A second lookup (the other console, or a retry) finds the disk already mounted.
    assert fetch_plan("plans/host.toml", work=plan_disk, medium=medium)[0] == path


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving a directory."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_plan_from_a_url_brings_its_settings(web: tuple[str, Path], tmp_path: Path) -> None:
    url, root = web
    (root / "hosts/web1").mkdir(parents=True)
    (root / "hosts/web1/plan.toml").write_text(PLAN)
    (root / "hosts/web1/rescue.toml").write_text("[destination]\nmethod = 'file'\n")
    work = tmp_path / "work"
    path, origin = fetch_plan(f"{url}/hosts/web1/plan.toml", work=work)
    assert path == work / "plan.toml" and path.read_text() == PLAN
    assert origin == f"downloaded from {url}/hosts/web1/plan.toml"
    assert (work / "rescue.toml").read_text() == "[destination]\nmethod = 'file'\n"
    for fetched in (path, work / "rescue.toml"):
        assert fetched.stat().st_mode & 0o777 == 0o600


def test_plan_url_errors_are_one_line(web: tuple[str, Path], tmp_path: Path) -> None:
    url, root = web
    with pytest.raises(PlanError) as failed:
        fetch_plan(f"{url}/nothing.toml", work=tmp_path / "work")
    assert str(failed.value) == f"cannot download {url}/nothing.toml: HTTP 404 File not found"
    (root / "escape.toml").write_text('settings = "../../etc/rescue.toml"\n')
    with pytest.raises(PlanError, match="names settings outside its directory"):
        fetch_plan(f"{url}/escape.toml", work=tmp_path / "work")
    with pytest.raises(PlanError, match=r"only http://, https://, sftp:// and paths are supported"):
        fetch_plan("ftp://host/plan.toml", work=tmp_path / "work")


def test_live_show_prints_the_parameters_as_understood() -> None:
    """`rescue live show` on this machine: no rescue.* parameters, so guided."""
    if "rescue." in Path("/proc/cmdline").read_text():
        pytest.skip("this machine was booted with rescue.* parameters")
    run = rescue(None, "live", "show")
    assert run.code == 0, run.err
    assert "plan:    (none: guided recovery)" in run.out
    assert "rescue.plan=PATH|URL" in rescue(None, "live", "--help").out


def test_plan_from_sftp_with_a_pinned_host_key(sshd: SshServer, tmp_path: Path) -> None:
    """A real OpenSSH server on 127.0.0.1; the plan and its settings come over one session."""
    folder = tmp_path / "plans/web1"
    folder.mkdir(parents=True)
    (folder / "plan.toml").write_text(PLAN)
    (folder / "rescue.toml").write_text("[destination]\nmethod = 'file'\n")
    base = f"sftp://root@127.0.0.1:{sshd.port}{folder}/plan.toml"
    url = f"{base}?fingerprint={sshd.host_key_fingerprint}&key={sshd.client_key}"
    work = tmp_path / "work"
    path, origin = fetch_plan(url, work=work)
    assert path.read_text() == PLAN and origin == f"downloaded from {base}"
    assert (work / "rescue.toml").read_text() == "[destination]\nmethod = 'file'\n"
    assert (work / "rescue.toml").stat().st_mode & 0o777 == 0o600


def test_sftp_plan_refusals(sshd: SshServer, tmp_path: Path) -> None:
    base = f"sftp://root@127.0.0.1:{sshd.port}/nowhere/plan.toml"
    with pytest.raises(PlanError, match=r"add \?fingerprint=SHA256"):
        fetch_plan(base, work=tmp_path)
    wrong = "SHA256:" + "A" * 43
    with pytest.raises(ChangedHostKeyError, match="has CHANGED"):
        fetch_plan(f"{base}?fingerprint={wrong}", work=tmp_path)
    asked = []

    def typed(prompt: str) -> str:
        asked.append(prompt)
        return "typed-password-123"

    with pytest.raises(AuthenticationError) as refused:  # this server takes keys only
        fetch_plan(f"{base}?fingerprint={sshd.host_key_fingerprint}", work=tmp_path,
                   ask_password=typed)  # fmt: skip
    assert asked == ["Password of root@127.0.0.1 (for the plan): "]
    assert "typed-password-123" not in str(refused.value)
    key = f"{base}?fingerprint={sshd.host_key_fingerprint}&key={sshd.client_key}"
    with pytest.raises(PlanError, match=re.escape("cannot read /nowhere/plan.toml on 127.0.0.1")):
        fetch_plan(key, work=tmp_path)
