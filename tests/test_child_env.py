"""Each child process gets only the secrets it uses, asserted on what real children saw.

duplicity gets PASSPHRASE and FTP_PASSWORD (through secret_env); every other child rescue starts
gets none, whether rescue found them in its own environment under duplicity's names, under the
names the settings give (password_env, passphrase_env), or under any name holding a registered
secret. The programs duplicity starts itself (gpg, lftp) get none either
(rescue.process.grandchildren).

The backup test puts recorders for gpg and lftp first on PATH: each writes the names of the
variables it was started with, then execs the real program. They are not fakes (the real gpg
and lftp do the work); they only let the test see the environment of duplicity's children.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from clirun import rescue, write_settings
from servers import FtpServer

from rescue.process import execute

SECRET_NAMES = {"PASSPHRASE", "SIGN_PASSPHRASE", "FTP_PASSWORD"}


def names_seen(monkeypatch: pytest.MonkeyPatch, **run: object) -> set[str]:
    """The variable names a real `sh` child of execute.run saw."""
    result = execute.run(["sh", "-c", "env | cut -d= -f1"], mask_output=False, **run)  # type: ignore[arg-type]
    assert result.returncode == 0
    return set(result.output.split())


def test_no_child_inherits_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRET_NAMES:
        monkeypatch.setenv(name, f"inherited {name}")
    monkeypatch.setenv("RESCUE_T_PASSWORD", "named by password_env")
    monkeypatch.setenv("SOME_COPY", "a registered secret under another name")
    monkeypatch.setenv("RESCUE_T_PLAIN", "not a secret")
    execute.register_secret_variable("RESCUE_T_PASSWORD")
    execute.register_secret("a registered secret under another name")

    seen = names_seen(monkeypatch)
    assert seen.isdisjoint(SECRET_NAMES | {"RESCUE_T_PASSWORD", "SOME_COPY"})
    assert {"RESCUE_T_PLAIN", "PATH"} <= seen

    # what the caller gives is what the child gets, and nothing more
    seen = names_seen(monkeypatch, secret_env={"FTP_PASSWORD": "for duplicity"})
    assert seen & (SECRET_NAMES | {"RESCUE_T_PASSWORD", "SOME_COPY"}) == {"FTP_PASSWORD"}
    # rescue's own environment is left as it was
    assert os.environ["PASSPHRASE"] == "inherited PASSPHRASE"


def test_settings_register_their_secret_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from rescue.config import load_settings

    monkeypatch.setenv("RESCUE_T_PW", "the ftp password")
    monkeypatch.setenv("RESCUE_T_PP", "the passphrase")
    config = write_settings(
        tmp_path / "rescue.toml",
        {
            "destination": {
                "method": "ftp",
                "host": "127.0.0.1",
                "user": "u",
                "password_env": "RESCUE_T_PW",
                "path": "d",
            },
            "encryption": {"mode": "symmetric", "passphrase_env": "RESCUE_T_PP"},
        },
    )
    load_settings(config)  # no secret read yet: the names alone are enough
    assert names_seen(monkeypatch).isdisjoint({"RESCUE_T_PW", "RESCUE_T_PP"})


class EnvironWatch:
    """The variable names of every duplicity process this test's rescue starts (marked by
    RESCUE_T_RECORDS in its environment), read from /proc."""

    def __init__(self) -> None:
        self.seen: dict[int, set[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if b"duplicity" not in cmdline or b"--log-fd=" not in cmdline:
                        continue
                    environ = Path(f"/proc/{pid}/environ").read_bytes()
                except OSError:
                    continue
                names = {e.split(b"=", 1)[0].decode() for e in environ.split(b"\0") if e}
                if "RESCUE_T_RECORDS" in names:  # this test's, not another's on the machine
                    self.seen[int(pid)] = names
            time.sleep(0.05)

    def __enter__(self) -> EnvironWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def recorders(folder: Path) -> Path:
    """A directory of gpg and lftp recorders (see the module's docstring)."""
    folder.mkdir()
    for program in ("gpg", "lftp"):
        recorder = folder / program
        recorder.write_text(
            "#!/bin/sh\n"
            f'env | cut -d= -f1 > "$RESCUE_T_RECORDS/{program}.$$"\n'
            f'exec /usr/bin/{program} "$@"\n'
        )
        recorder.chmod(0o755)
    return folder


@pytest.mark.slow
def test_duplicity_gets_its_secrets_and_its_children_none(
    tmp_path: Path, sample_tree: Path, ftpd: FtpServer
) -> None:
    records = tmp_path / "records"
    records.mkdir()
    config = write_settings(
        tmp_path / "rescue.toml",
        {
            "destination": {
                "method": "ftp",
                "host": "127.0.0.1",
                "port": ftpd.port,
                "user": ftpd.user,
                "password_env": "RESCUE_T_PW",
                "path": f"{tmp_path.name}/dest",
            },
            "encryption": {"mode": "symmetric", "passphrase_env": "RESCUE_T_PP"},
            "selection": {"root": str(sample_tree), "include": [str(sample_tree)]},
            "duplicity": {"archive_dir": str(tmp_path / "cache"), "retries": 1},
        },
    )
    env = {
        "RESCUE_T_PW": ftpd.password,
        "RESCUE_T_PP": "a passphrase for the children test",
        "PASSPHRASE": "a stray one in the admin's shell",
        "RESCUE_T_RECORDS": str(records),
        "PATH": f"{recorders(tmp_path / 'bin')}:{os.environ['PATH']}",
    }
    with EnvironWatch() as watch:
        r = rescue(config, "backup", "--full", env=env)
        assert r.code == 0, r.err
        s = rescue(config, "status", env=env)
        assert s.code == 0, s.err

    assert watch.seen, "no duplicity process was seen"
    for names in watch.seen.values():
        assert {"PASSPHRASE", "FTP_PASSWORD"} <= names
        assert names.isdisjoint({"RESCUE_T_PW", "RESCUE_T_PP"})

    by_program: dict[str, list[set[str]]] = {"gpg": [], "lftp": []}
    for record in records.iterdir():
        by_program[record.name.split(".")[0]].append(set(record.read_text().split()))
    assert by_program["gpg"], "duplicity started no gpg"
    assert by_program["lftp"], "duplicity started no lftp"
    for program, runs in by_program.items():
        for names in runs:
            assert names.isdisjoint(SECRET_NAMES | {"RESCUE_T_PW", "RESCUE_T_PP"}), program
            assert "RESCUE_T_RECORDS" in names
