"""Faults that used to hang or leave debris: a full file system on either side, a damaged
volume, a server that never answers. Each ends fast with its one line and exit code, leaves
nothing behind, and the next run works once the fault is gone. The faults are real: a small
tmpfs, flipped bytes in a volume, a socket that accepts and says nothing."""

from __future__ import annotations

import random
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from clirun import RESCUE, Run, rescue, symmetric_settings

from rescue.backup.treecompare import compare_trees

pytestmark = pytest.mark.slow

PASSPHRASE = "full disks happen"


def _config(
    tmp_path: Path, source: Path, destination: dict[str, object], **duplicity: object
) -> Path:
    return symmetric_settings(tmp_path, source, destination, PASSPHRASE, **duplicity)


def _source(root: Path, mib: int) -> Path:
    rng = random.Random(34)
    (root / "data").mkdir(parents=True)
    for n in range(mib):
        (root / "data" / f"chunk{n}").write_bytes(rng.randbytes(1 << 20))
    (root / "etc").mkdir()
    (root / "etc/hostname").write_text("faulty\n")
    return root


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Path]:
    """A 20 MiB tmpfs."""
    point = tmp_path / "small"
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "small", str(point)], check=True)
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=True)


def _timed(config: Path, *args: str) -> tuple[Run, float]:
    began = time.monotonic()
    run = rescue(config, *args, timeout=120)
    return run, time.monotonic() - began


def _no_duplicity_on(folder: Path) -> None:
    left = [
        " ".join(p.info["cmdline"] or [])
        for p in psutil.process_iter(["cmdline"])
        if str(folder) in " ".join(p.info["cmdline"] or [])
    ]
    assert not left, f"still running: {left}"


def test_a_restore_that_cannot_fit_is_refused_before_any_work(tmp_path: Path, small: Path) -> None:
    """The backup recorded the room each part takes: 24 MiB of data in a 20 MiB file system is
    refused at once, with both numbers, before duplicity writes a byte; 1 MiB of it fits."""
    source = _source(tmp_path / "src", 24)
    config = _config(tmp_path, source, {"method": "file", "path": str(tmp_path / "dest")})
    assert rescue(config, "backup", "--full").code == 0
    run, seconds = _timed(config, "restore", "/", "--to", str(small / "out"))
    assert run.code == 34, run.err
    assert re.search(
        r"restoring / needs about 24\.\d MiB \(its size at backup time\), but ", run.err
    )
    assert f"{small} has only 20 MiB free" in run.err and "nothing was written" in run.err
    assert seconds < 30
    assert list(small.iterdir()) == []
    chunk = rescue(config, "restore", "data/chunk7", "--to", str(small / "chunk"))
    assert chunk.code == 0, chunk.err
    assert (small / "chunk").read_bytes() == (source / "data/chunk7").read_bytes()
    subprocess.run(["mount", "-o", "remount,size=200m", str(small)], check=True)
    again = rescue(config, "restore", "/", "--to", str(small / "out"))
    assert again.code == 0, again.err
    assert compare_trees(source, small / "out") == []


def test_a_restore_into_a_file_system_that_fills_up_meanwhile(tmp_path: Path, small: Path) -> None:
    """The check passed (8 MiB into 20 MiB free), then another process filled the file
    system while duplicity wrote: that filler is the test's, a fault rescue does not own."""
    source = _source(tmp_path / "src", 8)
    config = _config(tmp_path, source, {"method": "file", "path": str(tmp_path / "dest")})
    assert rescue(config, "backup", "--full").code == 0
    filler = tmp_path / "filler"
    began = time.monotonic()
    proc = subprocess.Popen(
        [*RESCUE, "--config", str(config), "--log-file", str(tmp_path / "rescue.log"),
         "restore", "/", "--to", str(small / "out")],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    while not list(small.glob(".rescue-restore-*")) and proc.poll() is None:
        time.sleep(0.01)
    subprocess.run(["mount", "--bind", str(small), str(_mkdir(filler))], check=True)
    try:
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}/other", "bs=1M"], capture_output=True)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 34, err
        assert f"{small} is full: the restore did not fit in the " in err, err
        assert time.monotonic() - began < 30
        assert [p.name for p in small.iterdir()] == ["other"]  # no staging, no half tree
        _no_duplicity_on(tmp_path)
        (filler / "other").unlink()
    finally:
        subprocess.run(["umount", str(filler)], check=True)
    again = rescue(config, "restore", "/", "--to", str(small / "out"))
    assert again.code == 0, again.err
    assert compare_trees(source, small / "out") == []


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def test_a_backup_to_a_full_destination(tmp_path: Path, small: Path) -> None:
    source = _source(tmp_path / "src", 40)
    config = _config(tmp_path, source, {"method": "file", "path": str(small / "dest")})
    run, seconds = _timed(config, "backup", "--full")
    assert run.code == 34, run.err
    assert f"the backup destination file://{small}/dest is full" in run.err
    assert "with the partial volume removed" in run.err
    assert seconds < 30  # no retries for a local disk
    assert not list((small / "dest").glob("*.difftar*")), "a partial volume was left"
    _no_duplicity_on(tmp_path)
    subprocess.run(["mount", "-o", "remount,size=200m", str(small)], check=True)
    assert rescue(config, "backup", "--full").code == 0
    out = tmp_path / "out"
    assert rescue(config, "restore", "/", "--to", str(out)).code == 0
    assert compare_trees(source, out) == []


def test_a_damaged_volume_ends_restore_drill_and_verify(tmp_path: Path) -> None:
    source = _source(tmp_path / "src", 4)
    config = _config(tmp_path, source, {"method": "file", "path": str(tmp_path / "dest")})
    assert rescue(config, "backup", "--full").code == 0
    (volume,) = (tmp_path / "dest").glob("*.vol1.difftar.gpg")
    data = bytearray(volume.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 4096):
        data[i] ^= 0xFF
    volume.write_bytes(data)
    for args in (
        ["restore", "/", "--to", str(tmp_path / "out")],
        ["drill", "--path", "etc"],
        ["verify", "/"],
    ):
        run, seconds = _timed(config, *args)
        assert run.code == 31, (args, run.err)
        assert f"{volume.name} at file://{tmp_path}/dest is corrupt" in run.err
        assert seconds < 60
    assert not (tmp_path / "out").exists()
    _no_duplicity_on(tmp_path)


def test_a_server_that_never_answers_is_a_stall(tmp_path: Path) -> None:
    """An FTP server that accepts and says nothing: duplicity (lftp) would wait for its
    greeting for minutes; with stall_seconds = 10 it is stopped, with a line that says why."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(silent.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    source = _source(tmp_path / "src", 1)
    destination = {
        "method": "ftp",
        "host": "127.0.0.1",
        "port": silent.getsockname()[1],
        "user": "nobody",
        "password": "not-a-secret-here",
        "path": "x",
    }
    config = _config(tmp_path, source, destination, stall_seconds=10)
    try:
        # (a backup would not get that far: its lock at the destination needs the server,
        # and rescue's own connection gives up after 15 s with "cannot reach")
        run, seconds = _timed(config, "status")
    finally:
        silent.close()
        for conn in held:
            conn.close()
    assert run.code == 52, run.err
    assert "duplicity was stopped: it wrote nothing and did no I/O for 10 s" in run.err
    assert seconds < 60
    _no_duplicity_on(tmp_path)
