"""What a killed rescue leaves in the temporary directory, the next run removes
(rescue.placement.scratch): every temporary file of a run, duplicity's included, is in one
directory named for its process, and a live run's directory is never touched."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest
from clirun import RESCUE, local_settings
from killing import kill_at

from rescue.placement.scratch import PREFIX, sweep


def _name(pid: int, started: int) -> str:
    return f"{PREFIX}{pid}.{started}.abc123"


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_only_the_directories_of_dead_runs_go(tmp_path: Path) -> None:
    me = os.getpid()
    alive = tmp_path / _name(me, int(psutil.Process(me).create_time()))
    reused = tmp_path / _name(me, 1)  # this pid, but a process started at another time
    dead = tmp_path / _name(_dead_pid(), 1796600000)
    for folder in (alive, reused, dead):
        (folder / "duplicity-x-tempdir").mkdir(parents=True)
        (folder / "duplicity-x-tempdir/volume").write_bytes(b"v" * 1000)
    outside = tmp_path / "kept"
    (outside / "data").mkdir(parents=True)
    (tmp_path / _name(_dead_pid(), 5)).symlink_to(outside)  # a link is never followed
    (tmp_path / _name(_dead_pid(), 6)).write_text("a file, not a run directory\n")
    (tmp_path / "rescue-run-other").mkdir()  # not a run directory's name

    assert sorted(sweep(tmp_path)) == sorted([reused, dead])
    assert (alive / "duplicity-x-tempdir/volume").read_bytes() == b"v" * 1000
    assert not reused.exists() and not dead.exists()
    assert (outside / "data").is_dir() and (tmp_path / "rescue-run-other").is_dir()
    assert len(list(tmp_path.iterdir())) == 5


@pytest.mark.slow
def test_a_backup_killed_with_sigkill_leaves_nothing_after_the_next_run(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for n in range(8):
        (source / f"f{n}").write_bytes(os.urandom(2 << 20))
    config = local_settings(
        tmp_path,
        {"root": str(source), "include": [str(source)]},
        encryption={"mode": "none"},
        duplicity={"archive_dir": str(tmp_path / "cache"), "volsize": 1},
    )
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    argv = [*RESCUE, "--config", str(config), "--log-file", str(tmp_path / "log")]

    def start(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*argv, *args], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    killed = start("backup", "--full")
    children, _ = kill_at(killed, 0.5, signal.SIGKILL, from_child=True)
    assert children and killed.returncode == -signal.SIGKILL
    left = list(temp.iterdir())
    assert [p.name.startswith(PREFIX) for p in left] == [True], left
    assert list(left[0].glob("duplicity-*-tempdir")), list(left[0].iterdir())

    again = start("backup", "--full")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert list(temp.iterdir()) == []
    assert "removed 1 scratch directories left by killed runs" in (tmp_path / "log").read_text()
