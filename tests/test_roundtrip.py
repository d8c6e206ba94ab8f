"""One full round trip per destination method, through the real CLI, duplicity and servers.

Each: a full backup of the sample tree, a change, an incremental, a status with two sets, a
restore as of the first set (old bytes) and as of now (new bytes) compared file by file, a
single-file restore, and an existing target refused without --force. The encryption varies
with the method so that every mode is exercised: gpg key (file), symmetric from the
environment (ftp, ftps), symmetric from a file (sftp), none (scp). FTPS verifies the server's
self-signed certificate as its CA.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path, PurePosixPath

import pytest
from clirun import rescue, write_settings
from servers import FtpServer, GpgHome, SshServer, VsftpdServer

from rescue.backup.sampletree import mutate_sample_tree
from rescue.backup.treecompare import compare_trees
from rescue.recovery.manifest import MANIFEST_REL, load

PASSPHRASE = "correct horse battery staple 7"
FTP_PASSWORD_ENV = "RESCUE_TEST_FTP_PW"
PASSPHRASE_ENV = "RESCUE_TEST_PASSPHRASE"

pytestmark = pytest.mark.slow


def settings_for(
    method: str,
    tmp_path: Path,
    tree: Path,
    *,
    sshd: SshServer | None = None,
    ftpd: FtpServer | VsftpdServer | None = None,
    gpg: GpgHome | None = None,
    encryption: dict[str, object] | None = None,
    **overrides: object,
) -> Path:
    """A settings file for method, with everything under tmp_path; overrides go to [destination]."""
    if method == "file":
        destination: dict[str, object] = {"method": "file", "path": str(tmp_path / "dest")}
    elif method in ("ftp", "ftps"):
        assert ftpd is not None
        destination = {
            "method": method,
            "host": "127.0.0.1",
            "port": ftpd.port,
            "user": ftpd.user,
            "password_env": FTP_PASSWORD_ENV,
            "path": f"{tmp_path.name}/dest",
        }
    else:
        assert sshd is not None
        destination = sshd.destination(tmp_path / "dest", method)
    destination.update(overrides)
    if encryption is None:
        encryption = {"mode": "none"}
        if gpg is not None:
            encryption = {"mode": "gpg", "gpg_key": gpg.fingerprint, "gnupg_home": str(gpg.home)}
    return write_settings(
        tmp_path / "rescue.toml",
        {
            "destination": destination,
            "encryption": encryption,
            "schedule": {"keep_full": 3},
            "selection": {"root": str(tree), "include": [str(tree)]},
            "duplicity": {"archive_dir": str(tmp_path / "cache"), "retries": 1},
        },
    )


def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase"
    path.write_text(PASSPHRASE + "\n")
    path.chmod(0o600)
    return path


def copy_tree(src: Path, dst: Path) -> None:
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)


CASES = ["file", "ftp", "ftps", "sftp", "scp"]


@pytest.mark.parametrize("method", CASES)
def test_round_trip(
    method: str,
    tmp_path: Path,
    sample_tree: Path,
    sshd: SshServer,
    ftpd: FtpServer,
    ftpsd: VsftpdServer,
    gpg_home: GpgHome,
) -> None:
    ftp_server = ftpsd if method == "ftps" else ftpd
    env = {FTP_PASSWORD_ENV: ftp_server.password, PASSPHRASE_ENV: PASSPHRASE}
    encryption = {
        "file": None,
        "ftp": {"mode": "symmetric", "passphrase_env": PASSPHRASE_ENV},
        "ftps": {"mode": "symmetric", "passphrase_env": PASSPHRASE_ENV},
        "sftp": {"mode": "symmetric", "passphrase_file": str(passphrase_file(tmp_path))},
        "scp": {"mode": "none"},
    }[method]
    config = settings_for(
        method,
        tmp_path,
        sample_tree,
        sshd=sshd,
        ftpd=ftp_server,
        gpg=gpg_home if method == "file" else None,
        encryption=encryption,
        **({"tls_ca_file": str(ftpsd.certfile)} if method == "ftps" else {}),
    )

    # 1. full backup, remembered as it was
    first = rescue(config, "backup", "--json", env=env)
    assert first.code == 0, first.err
    assert first.json()["kind"] == "full"
    assert first.json()["source_files"] > 20
    as_of_full = tmp_path / "as-of-full"
    copy_tree(sample_tree, as_of_full)

    # 2-3. a change and an incremental (auto mode picks incremental: the full is fresh)
    changed = mutate_sample_tree(sample_tree)
    time.sleep(1)
    second = rescue(config, "backup", "--json", env=env)
    assert second.code == 0, second.err
    assert second.json()["kind"] == "incremental"
    assert second.json()["files_changed"] >= len(changed)

    # 4. status shows the two sets of one chain
    status = rescue(config, "status", "--json", env=env)
    assert status.code == 0, status.err
    sets = status.json()["sets"]
    assert [(s["kind"], s["chain"]) for s in sets] == [("full", 1), ("incremental", 1)]
    assert all(s["volumes"] >= 1 for s in sets)
    table = rescue(config, "status", env=env)
    assert table.code == 0 and "full" in table.out and "incremental" in table.out

    # 5. as of the full: the old bytes; as of now: the new bytes
    old = tmp_path / "restored-old"
    r = rescue(config, "restore", "/", "--to", str(old), "-t", str(sets[0]["time"]), env=env)
    assert r.code == 0, r.err
    assert compare_trees(as_of_full, old) == []
    new = tmp_path / "restored-new"
    r = rescue(config, "restore", "/", "--to", str(new), "--json", env=env)
    assert r.code == 0, r.err
    assert r.json()["files"] > 20
    assert compare_trees(sample_tree, new) == []

    # 6. one file as of the full, named as on the host
    one = tmp_path / "app.conf"
    r = rescue(
        config,
        "restore",
        str(sample_tree / "etc/app/app.conf"),
        "--to",
        str(one),
        "-t",
        str(sets[0]["time"]),
        env=env,
    )
    assert r.code == 0, r.err
    assert one.read_bytes() == (as_of_full / "etc/app/app.conf").read_bytes()
    assert one.stat().st_mode == (as_of_full / "etc/app/app.conf").stat().st_mode

    # 7. an existing target is refused without --force and left as it was (what --force does
    # is the same for every method: tests/test_restore_safety.py proves it, in the sandbox)
    r = rescue(config, "restore", "etc/app/app.conf", "--to", str(one), env=env)
    assert r.code == 40, r.err
    assert "--force" in r.err
    assert one.read_bytes() == (as_of_full / "etc/app/app.conf").read_bytes()

    # no secret in anything the user or the log can see
    log = (tmp_path / "rescue.log").read_text()
    for secret in (PASSPHRASE, ftp_server.password):
        for text in (first.out, first.err, second.out, status.out, r.out, r.err, log):
            assert secret not in text


def test_files_and_versions(tmp_path: Path, sample_tree: Path) -> None:
    config = settings_for("file", tmp_path, sample_tree)
    assert rescue(config, "backup", "--full").code == 0
    mutate_sample_tree(sample_tree)
    time.sleep(1)
    assert rescue(config, "backup", "--incremental").code == 0
    sets = rescue(config, "status", "--json").json()["sets"]

    listed = rescue(config, "files", "etc", "-t", str(sets[0]["time"]), "--json")
    assert listed.code == 0, listed.err
    paths = {e["path"] for e in listed.json()}
    assert "etc/app/app.conf" in paths
    assert all(p.startswith("etc") for p in paths)
    now = {e["path"] for e in rescue(config, "files", "--json").json()}
    assert "home/alice/todo.txt" in now and "var/log/app/app.log.1" not in now
    before = {
        e["path"] for e in rescue(config, "files", "-t", str(sets[0]["time"]), "--json").json()
    }
    assert "home/alice/todo.txt" not in before and "var/log/app/app.log.1" in before

    changed = rescue(config, "versions", str(sample_tree / "etc/app/app.conf"), "--json")
    assert changed.code == 0, changed.err
    assert [v["changed"] for v in changed.json()] == [True, True]
    steady = rescue(config, "versions", "etc/hostname", "--json").json()
    assert [v["changed"] for v in steady] == [True, False]
    added = rescue(config, "versions", "home/alice/todo.txt", "--json").json()
    assert [(v["set_type"], v["changed"]) for v in added] == [("incremental", True)]
    missing = rescue(config, "versions", "no/such/file")
    assert missing.code == 33 and "no/such/file" in missing.err


def test_retention_keeps_the_newest_chains(tmp_path: Path, sample_tree: Path) -> None:
    config = settings_for("file", tmp_path, sample_tree)
    text = config.read_text().replace("keep_full = 3", "keep_full = 2")
    config.write_text(text)
    for _ in range(3):
        r = rescue(config, "backup", "--full", "--json")
        assert r.code == 0, r.err
        time.sleep(1)
    assert r.json()["removed_chains"] == 1
    sets = rescue(config, "status", "--json").json()["sets"]
    assert len(sets) == 2 and [s["chain"] for s in sets] == [1, 2]
    manifests = sorted(p.name for p in (tmp_path / "dest").glob("duplicity-full.*.manifest*"))
    assert len(manifests) == 2
    for backup_set in sets:
        out = tmp_path / f"restore-{backup_set['time']}"
        r = rescue(config, "restore", "/", "--to", str(out), "-t", str(backup_set["time"]))
        assert r.code == 0, r.err
        # each full carries its own manifest and metadata records; the rest is the same tree
        diffs = compare_trees(sample_tree, out)
        own = str(PurePosixPath(MANIFEST_REL).parent) + "/"
        assert [d for d in diffs if own not in d] == []
        assert load(out / MANIFEST_REL).root == str(sample_tree)
