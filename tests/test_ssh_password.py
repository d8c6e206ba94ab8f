"""sftp and scp with a password and no key, against the real OpenSSH sshd with password login.

The full cycle for both methods (full, incremental, status, files, restore compared byte for
byte, a file whose name starts with a dash), a wrong password as one line, and the password in
no argv of any process rescue starts, in no output and in no log. The server is its own (not the
session's key-only sshd): it makes a throwaway system user and deletes it afterwards.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import rescue, write_settings
from servers import SshServer, serving

from rescue.backup.sampletree import mutate_sample_tree
from rescue.backup.treecompare import compare_trees

pytestmark = pytest.mark.slow

PASSWORD_ENV = "RESCUE_TEST_SSH_PW"


@pytest.fixture(scope="module")
def pw_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with serving(SshServer(tmp_path_factory.mktemp("pw-sshd"), password_login=True)) as server:
        yield server
    assert not server.password_home.exists()


def settings(tmp_path: Path, tree: Path, destination: dict[str, object]) -> Path:
    return write_settings(
        tmp_path / "rescue.toml",
        {
            "destination": destination,
            "encryption": {"mode": "none"},
            "selection": {"root": str(tree), "include": [str(tree)]},
            "duplicity": {"archive_dir": str(tmp_path / "cache"), "retries": 1},
        },
    )


class ArgvWatch:
    """Reads /proc/*/cmdline of every process while a command runs, looking for a secret."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.seen: list[str] = []
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if self.secret in cmdline:
                    self.seen.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
            self.scans += 1
            time.sleep(0.02)

    def __enter__(self) -> ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.parametrize("method", ["sftp", "scp"])
def test_password_login_full_cycle(
    method: str, tmp_path: Path, sample_tree: Path, pw_sshd: SshServer
) -> None:
    (sample_tree / "-dash.txt").write_bytes(b"a name that starts with a dash\n")
    destination = pw_sshd.password_destination(f"{tmp_path.name}-{method}", method)
    # sftp: the password inline, as the issue had it; scp: from the environment
    if method == "sftp":
        destination["password"] = pw_sshd.password
    else:
        destination["password_env"] = PASSWORD_ENV
    env = {PASSWORD_ENV: pw_sshd.password}
    config = settings(tmp_path, sample_tree, destination)

    outputs = []
    with ArgvWatch(pw_sshd.password) as watch:
        first = rescue(config, "backup", "--full", "--json", env=env)
        outputs.append(first)
        assert first.code == 0, first.err
        assert first.json()["kind"] == "full"
        as_of_full = tmp_path / "as-of-full"
        subprocess.run(["cp", "-a", str(sample_tree), str(as_of_full)], check=True)

        mutate_sample_tree(sample_tree)
        time.sleep(1)
        second = rescue(config, "backup", "--incremental", "--json", env=env)
        outputs.append(second)
        assert second.code == 0, second.err
        assert second.json()["kind"] == "incremental"

        status = rescue(config, "status", "--json", env=env)
        outputs.append(status)
        assert status.code == 0, status.err
        sets = status.json()["sets"]
        assert [s["kind"] for s in sets] == ["full", "incremental"]

        files = rescue(config, "files", "/", env=env)
        outputs.append(files)
        assert files.code == 0, files.err
        assert "-dash.txt" in files.out

        old = tmp_path / "restored-old"
        r = rescue(config, "restore", "/", "--to", str(old), "-t", str(sets[0]["time"]), env=env)
        outputs.append(r)
        assert r.code == 0, r.err
        assert compare_trees(as_of_full, old) == []
        new = tmp_path / "restored-new"
        r = rescue(config, "restore", "/", "--to", str(new), env=env)
        outputs.append(r)
        assert r.code == 0, r.err
        assert compare_trees(sample_tree, new) == []

        one = tmp_path / "dash-copy"
        r = rescue(config, "restore", str(sample_tree / "-dash.txt"), "--to", str(one), env=env)
        outputs.append(r)
        assert r.code == 0, r.err
        assert one.read_bytes() == b"a name that starts with a dash\n"

    assert watch.scans > 10
    assert watch.seen == []
    log = (tmp_path / "rescue.log").read_text()
    assert "--ssh-options=" in log  # the one form duplicity's parser takes
    for text in [log, *(o.out for o in outputs), *(o.err for o in outputs)]:
        assert pw_sshd.password not in text


def test_wrong_password_is_one_line(tmp_path: Path, sample_tree: Path, pw_sshd: SshServer) -> None:
    destination = pw_sshd.password_destination(f"{tmp_path.name}-wrong")
    destination["password"] = "not-the-password-" + pw_sshd.password[:4]
    config = settings(tmp_path, sample_tree, destination)
    r = rescue(config, "backup", "--full")
    assert r.code == 21, r.err
    lines = [line for line in r.err.splitlines() if not line.startswith("  (log:")]
    assert len(lines) == 1, r.err
    assert lines[0].startswith("rescue: error: ")
    assert destination["password"] not in r.err + (tmp_path / "rescue.log").read_text()
