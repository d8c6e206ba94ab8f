"""rescue.layout.plan is the one layout-planning service: `rescue layout plan|apply` and the
recovery's map_disks and recreate_layout steps give the same mapping and the same script for
the same manifest and targets (real loop disks), and `layout apply` erases nothing without an
explicit yes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pexpect
import pytest
from clirun import RESCUE, rescue, write_settings
from loopdisks import LINUX, SWAP, loop_disk, require_loop_disks
from manifests import with_layout
from sandbox import PYTHON, REPO, Sandbox, tree_state

from rescue.layout.model import Disk, Filesystem, FstabEntry, Layout, Partition
from rescue.prompts import Answers
from rescue.steps import map_disks, recreate_layout
from rescue.steps.context import Context, Options

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _loops() -> None:
    require_loop_disks({"sfdisk": "fdisk"})


def _manifest(path: Path) -> Path:
    """A manifest whose layout is one 64 MiB GPT disk: a root and a swap partition."""

    def part(n: int, start: int, size: int, kind: str, fs: Filesystem) -> Partition:
        return Partition(n, f"/dev/vda{n}", start, size, kind, name=f"p{n}", filesystem=fs)

    disk = Disk(
        "vda",
        "/dev/vda",
        64 * 2**20,
        table="gpt",
        table_id="8E2B1B3A-6D1C-4C55-9C0B-5A0B7C1D2E3F",
        first_lba=2048,
        last_lba=131038,
        partitions=[
            part(1, 2048, 81920, LINUX, Filesystem("ext4", "/dev/vda1", uuid="aaaa-root")),
            part(2, 83968, 32768, SWAP, Filesystem("swap", "/dev/vda2", uuid="bbbb-swap")),
        ],
    )
    layout = Layout(disks=[disk], fstab=[FstabEntry("UUID=aaaa-root", "/", "ext4")])
    path.write_text(json.dumps(with_layout(layout, root="/", excluded=[])))
    return path


def _step_plan(tmp_path: Path, settings: Path, manifest: Path, options: Options) -> str:
    """What the recovery shows: map_disks' mapping lines, then recreate_layout's script."""
    answers = Answers({"recover.confirm_mapping": True}, interactive=False)
    ctx = Context(options, answers, echo=lambda _: None)
    ctx.facts.manifest_file = str(manifest)
    map_disks.run(ctx)
    return "".join(f"# {line}\n" for line in ctx.facts.mapping_lines) + recreate_layout._script(ctx)


@pytest.mark.parametrize("named_by", ["path", "file-id"])
def test_the_cli_and_the_recovery_give_the_same_plan(tmp_path: Path, named_by: str) -> None:
    """Guided recovery with a device path, unattended with a stable id: `layout plan` with the
    same --target prints the step's mapping lines and script byte for byte."""
    work = tmp_path / "work"
    work.mkdir()
    manifest = _manifest(tmp_path / "manifest.json")
    settings = write_settings(
        tmp_path / "rescue.toml", {"destination": {"method": "file", "path": str(tmp_path / "d")}}
    )
    image = tmp_path / "target.img"
    with loop_disk(image, "96M") as device:
        target = device if named_by == "path" else f"file:{image}"
        cli = rescue(settings, "layout", "plan", "--manifest", str(manifest), "--target", target)
        assert cli.code == 0, cli.err
        options = Options(
            work_dir=str(work),
            settings_file=str(settings),
            target_ids=[target],
            unattended=named_by == "file-id",
        )
        step = _step_plan(tmp_path, settings, manifest, options)
    assert cli.out == step + "\n"
    assert cli.out.splitlines()[0] == f"# /dev/vda (64 MiB) -> {device} (96 MiB): larger by 32 MiB"
    assert "aaaa-root" in step and "bbbb-swap" in step and "sfdisk" in step


def _digest(device: str) -> str:
    digest = hashlib.sha256()
    with open(device, "rb") as disk:
        while chunk := disk.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _scribble(device: str) -> str:
    """Random bytes at the start, the middle and the end of the disk; its digest."""
    fd = os.open(device, os.O_WRONLY)
    try:
        for offset in (0, 48 * 2**20, 96 * 2**20 - 65536):
            os.pwrite(fd, os.urandom(65536), offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    return _digest(device)


def test_apply_without_yes_and_without_a_terminal_erases_nothing(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "manifest.json")
    settings = write_settings(
        tmp_path / "rescue.toml", {"destination": {"method": "file", "path": str(tmp_path / "d")}}
    )
    logs = tmp_path / "logs"
    with loop_disk(tmp_path / "target.img", "96M") as device:
        before = _scribble(device)
        r = rescue(
            settings, "layout", "apply", "--manifest", str(manifest), "--target", device,
            "--log-dir", str(logs),
        )  # fmt: skip
        after = _digest(device)
    assert r.code == 2, r.err
    errors = [line for line in r.err.splitlines() if not line.startswith("  (log: ")]
    assert errors == [
        "rescue: error: refusing to erase disks without --yes (no terminal to ask on)"
    ], r.err
    assert after == before
    assert not logs.exists()  # no script was even written


def test_at_a_terminal_apply_asks_the_recoverys_erase_question(tmp_path: Path) -> None:
    """The question is recover.erase, put as the recovery puts it; anything but "yes" stops
    with the recovery's error (exit 2) and the disk keeps its bytes."""
    manifest = _manifest(tmp_path / "manifest.json")
    settings = write_settings(
        tmp_path / "rescue.toml", {"destination": {"method": "file", "path": str(tmp_path / "d")}}
    )
    logs = tmp_path / "logs"
    argv = [*RESCUE, "--config", str(settings), "--log-file", str(tmp_path / "log")]
    with loop_disk(tmp_path / "target.img", "96M") as device:
        before = _scribble(device)
        child = pexpect.spawn(
            argv[0],
            [*argv[1:], "layout", "apply", "--manifest", str(manifest), "--target", device,
             "--log-dir", str(logs)],
            env={**os.environ, "TERM": "xterm"}, dimensions=(50, 200), encoding="utf-8",
            codec_errors="replace", timeout=60,
        )  # fmt: skip
        child.logfile_read = (tmp_path / "terminal.log").open("w")
        question = f"ERASE {device} and recreate the layout (script: {logs}/layout-recreate.sh)?"
        child.expect_exact(question)
        child.sendline("no")
        child.expect_exact("the layout was not confirmed; nothing was written to the disks")
        child.expect(pexpect.EOF)
        child.close()
        after = _digest(device)
    assert child.exitstatus == 2, (tmp_path / "terminal.log").read_text()
    assert after == before
    assert not logs.exists()


APPLY_WITH_LUKS = """
import sys
from pathlib import Path
from rescue.layout import plan
script = 'test "$(cat "${RESCUE_LUKS_PASSPHRASE_FILE:-}")" = "new luks secret"\\n'
logs = Path("/srv/logs")
plan.apply_layout(script, logs, lambda question: "new luks secret", secret_dir=logs)
"""


def test_the_luks_passphrase_file_never_replaces_a_file_in_the_log_dir(tmp_path: Path) -> None:
    """`layout apply --log-dir DIR` keeps the LUKS passphrase in DIR while the script runs: in a
    new file of its own, removed afterwards. The admin's own files there, one of them named as
    the passphrase file once was, stay byte for byte (in the sandbox: it removes a file)."""
    with Sandbox(tmp_path) as box:
        box.run(["mkdir", "-p", "/srv/logs"], check=True)
        for name, text in {"luks-passphrase": "the admin own\n", "notes": "keep\n"}.items():
            box.run(["sh", "-c", f"printf '{text}' > /srv/logs/{name}"], check=True)
        before = tree_state(box.path("/srv/logs"))
        run = box.run([str(PYTHON), "-c", APPLY_WITH_LUKS], env={"PYTHONPATH": str(REPO)})
        assert run.code == 0, run.out + run.err  # the script read the passphrase from its file
        after = tree_state(box.path("/srv/logs"))
        files = {k: v for k, v in before.items() if k}  # the directory itself gains entries
        assert set(files) == {"luks-passphrase", "notes"}
        assert {k: after[k] for k in files} == files
        assert sorted(set(after) - set(before)) == ["layout-recreate.log", "layout-recreate.sh"]
