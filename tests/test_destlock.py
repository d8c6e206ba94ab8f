"""One writer per destination, and one host: real concurrent backups, real other hosts.

The other host is this machine seen through a mount and UTS namespace with another
/etc/machine-id bound over its own and another hostname (`unshare`): to rescue, which reads
only those, it is another machine.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from pathlib import Path

import pytest
from clirun import RESCUE, Run, rescue, symmetric_settings
from rgw import RgwServer
from servers import FtpServer, SshServer
from test_roundtrip import FTP_PASSWORD_ENV
from test_s3 import s3_destination

from rescue.backup.treecompare import compare_trees

pytestmark = pytest.mark.slow

PASSPHRASE = "one writer at a time"
PAIRS = 20


def _tree(root: Path) -> Path:
    """About 8 MiB, so that a backup lasts a few seconds and two started together overlap."""
    rng = random.Random(25)
    for d in range(4):
        (root / f"d{d}").mkdir(parents=True)
        for f in range(8):
            (root / f"d{d}" / f"f{f}").write_bytes(rng.randbytes(256 * 1024))
    return root


def _two_caches(tmp_path: Path, source: Path, dest: dict[str, object]) -> tuple[Path, Path]:
    """Two settings files for one destination path, each with its own archive dir."""
    configs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        configs.append(symmetric_settings(tmp_path / name, source, dest, PASSPHRASE))
    return configs[0], configs[1]


def _together(first: Path, second: Path, env: dict[str, str] | None = None) -> list[Run]:
    procs = [
        subprocess.Popen(
            [*RESCUE, "--config", str(c), "--log-file", str(c.parent / "rescue.log"), "backup"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for c in (first, second)
    ]
    runs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        runs.append(Run(proc.returncode, out, err))
    return runs


def _exactly_one_writes(runs: list[Run], where: str) -> None:
    codes = sorted(r.code for r in runs)
    assert codes == [0, 5], [(r.code, r.err) for r in runs]
    refused = next(r for r in runs if r.code == 5)
    held = f"{where} is locked by " in refused.err and "rescue unlock" in refused.err
    ended = f"{where} was locked by another backup, which has just ended" in refused.err
    assert held or ended, refused.err  # ended: the holder let go while this run looked
    assert refused.err.count("rescue: error:") == 1


def test_two_caches_started_together_never_both_write(tmp_path: Path) -> None:
    source = _tree(tmp_path / "src")
    dest = tmp_path / "dest"
    first, second = _two_caches(tmp_path, source, {"method": "file", "path": str(dest)})
    for pair in range(PAIRS):
        (source / "d0/f0").write_bytes(f"pair {pair}\n".encode())
        _exactly_one_writes(_together(first, second), f"file://{dest}")
        assert not (dest / "rescue.lock").exists() and not (dest / "rescue.lock.json").exists()
    out = tmp_path / "out"
    run = rescue(first, "restore", "/", "--to", str(out))
    assert run.code == 0, run.err
    assert compare_trees(source, out) == []
    status = rescue(second, "status", "--json")
    assert status.code == 0, status.err
    assert len(status.json()["sets"]) == PAIRS  # one set per pair: one chain, unbroken


@pytest.mark.parametrize("method", ["sftp", "ftp", "s3"])
def test_the_lock_holds_over_the_network(
    tmp_path: Path, method: str, sshd: SshServer, ftpd: FtpServer, rgw: RgwServer
) -> None:
    """Two backups started together: one writes, one is refused. Over S3, the lock "directory"
    is a conditional PUT (If-None-Match: *), the store's own create-if-absent."""
    source = _tree(tmp_path / "src")
    env = None
    if method == "s3":
        bucket = rgw.bucket("lock")
        dest = s3_destination(rgw, tmp_path, bucket, "host")
        where = f"{rgw.endpoint}/{bucket}/host"
    elif method == "sftp":
        dest = sshd.destination(tmp_path / "dest")
        where = f"sftp://{sshd.user}@127.0.0.1:{sshd.port}/{tmp_path}/dest"
    else:
        dest = {
            "method": "ftp",
            "host": "127.0.0.1",
            "port": ftpd.port,
            "user": ftpd.user,
            "password_env": FTP_PASSWORD_ENV,
            "path": f"{tmp_path.name}/dest",
        }
        where = f"ftp://{ftpd.user}@127.0.0.1:{ftpd.port}/{tmp_path.name}/dest"
        env = {**os.environ, FTP_PASSWORD_ENV: ftpd.password}
    first, second = _two_caches(tmp_path, source, dest)
    for pair in range(3):
        (source / "d0/f0").write_bytes(f"pair {pair}\n".encode())
        _exactly_one_writes(_together(first, second, env), where)


def _as_other_host(config: Path, tmp_path: Path, *args: str) -> Run:
    """`rescue ARGS` as seen from another machine: another machine id, another hostname."""
    machine_id = tmp_path / "other-machine-id"
    machine_id.write_text("0123456789abcdef0123456789abcdef\n")
    script = 'mount --bind "$1" /etc/machine-id && hostname otherhost && shift && exec "$@"'
    argv = [*RESCUE, "--config", str(config), "--log-file", str(tmp_path / "other.log"), *args]
    proc = subprocess.run(
        ["unshare", "--mount", "--uts", "--propagation", "private", "--",
         "sh", "-c", script, "other", str(machine_id), *argv],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return Run(proc.returncode, proc.stdout, proc.stderr)


def test_copied_settings_on_another_host_are_refused(tmp_path: Path) -> None:
    source = _tree(tmp_path / "src")
    dest = tmp_path / "dest"
    mine, copied = _two_caches(tmp_path, source, {"method": "file", "path": str(dest)})
    assert rescue(mine, "backup").code == 0
    before = sorted(p.name for p in dest.iterdir())
    other = _as_other_host(copied, tmp_path, "backup")
    assert other.code == 25, other.err
    assert f"file://{dest} holds the backups of " in other.err
    assert "this is otherhost (machine id 0123456789ab)" in other.err
    assert f'path = "{dest}/otherhost"' in other.err
    assert sorted(p.name for p in dest.iterdir()) == before  # it wrote nothing there
    assert rescue(mine, "backup").code == 0  # the first host's chain goes on
    # a reinstalled host (a new machine id) claims its destination once, on purpose
    claimed = _as_other_host(copied, tmp_path, "unlock", "--claim")
    assert claimed.code == 0 and "now belong to otherhost" in claimed.out, claimed.err
    assert json.loads((dest / "rescue-host.json").read_text())["hostname"] == "otherhost"
    assert rescue(mine, "backup").code == 25


def test_a_lock_left_by_a_dead_host(tmp_path: Path) -> None:
    """Another host's lock with a live lease blocks (exit 5) until `rescue unlock`; one whose
    lease ran out is taken over without help."""
    source = _tree(tmp_path / "src")
    dest = tmp_path / "dest"
    config, _ = _two_caches(tmp_path, source, {"method": "file", "path": str(dest)})
    assert rescue(config, "backup").code == 0
    holder = {
        "hostname": "deadhost",
        "machine_id": "feedfacefeedfacefeedfacefeedface",
        "pid": 4242,
        "started": "2026-12-01T03:00:00+00:00",
        "lease_until": time.time() + 600,
        "what": "backup",
        "token": "0badc0de",
    }
    (dest / "rescue.lock").mkdir()
    (dest / "rescue.lock.json").write_text(json.dumps(holder))
    blocked = rescue(config, "backup")
    assert blocked.code == 5, blocked.err
    assert "is locked by deadhost (machine id feedfacefeed), pid 4242" in blocked.err
    freed = rescue(config, "unlock")
    assert freed.code == 0 and "removed the lock of deadhost" in freed.out, freed.err
    assert rescue(config, "backup").code == 0
    (dest / "rescue.lock").mkdir()
    (dest / "rescue.lock.json").write_text(json.dumps({**holder, "lease_until": time.time() - 1}))
    taken = rescue(config, "backup")
    assert taken.code == 0, taken.err
    assert "taking over the lock" in (config.parent / "rescue.log").read_text()
    assert not (dest / "rescue.lock").exists()


def test_a_lock_dir_without_its_record_is_stale_and_taken_over(tmp_path: Path) -> None:
    """A run killed between making rescue.lock/ and writing its record (seen in CI: SIGKILL
    at 0.76 s) leaves the directory alone; the next backup takes it over, as it does any lock
    that names no holder, instead of refusing every run after it."""
    source = _tree(tmp_path / "src")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "rescue.lock").mkdir()
    config = symmetric_settings(tmp_path, source, {"method": "file", "path": str(dest)}, PASSPHRASE)
    run = rescue(config, "backup")
    assert run.code == 0, run.err
    assert "taking over the lock" in (tmp_path / "rescue.log").read_text()
    assert "it names no holder" in (tmp_path / "rescue.log").read_text()
    assert not (dest / "rescue.lock").exists()
