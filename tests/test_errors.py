"""Each failure gives its exit code and one clear line, and leaves the destination untouched.

The servers here are the test's own (not the shared fixtures), because the tests stop them or
change their host key.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import Run, rescue
from servers import FtpServer, GpgHome, SshServer, VsftpdServer, serving
from test_roundtrip import FTP_PASSWORD_ENV, PASSPHRASE_ENV, settings_for

from rescue.backup.treecompare import compare_trees

pytestmark = pytest.mark.slow


# rescue refuses to start a process whose arguments hold a secret: a two-letter passphrase
# ("pw") can occur by chance in duplicity's random temporary names, so this one is long.
PW = "corrupt-volume-passphrase-7c1e"


def fingerprint(directory: Path) -> dict[str, str]:
    """Every file under directory and the sha256 of its bytes: 'untouched' made checkable."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def one_line_error(run: Run, code: int, *words: str) -> None:
    """The failure contract: the exit code, `rescue: error:` once, the words, no traceback."""
    assert run.code == code, (run.code, run.err)
    lines = run.err.splitlines()
    errors = [ln for ln in lines if ln.startswith("rescue: error: ")]
    assert len(errors) == 1, run.err
    assert "Traceback" not in run.err
    for word in words:
        assert word in errors[0], (word, errors[0])


@pytest.fixture
def own_sshd(tmp_path: Path) -> Iterator[SshServer]:
    with serving(SshServer(tmp_path / "sshd")) as server:
        yield server


@pytest.fixture
def own_ftpd(tmp_path: Path) -> Iterator[FtpServer]:
    server = FtpServer(tmp_path / "ftpd", user="rescue", password=secrets.token_urlsafe(12))
    with serving(server):
        yield server


def symmetric(tmp_path: Path, sample_tree: Path, **kw: object) -> Path:
    return settings_for(
        "file",
        tmp_path,
        sample_tree,
        encryption={"mode": "symmetric", "passphrase_env": PASSPHRASE_ENV},
        **kw,
    )


def test_wrong_passphrase(tmp_path: Path, sample_tree: Path) -> None:
    config = symmetric(tmp_path, sample_tree)
    assert rescue(config, "backup", env={PASSPHRASE_ENV: "the right one"}).code == 0
    before = fingerprint(tmp_path / "dest")
    wrong = "the WRONG one"
    r = rescue(config, "restore", "/", "--to", str(tmp_path / "out"), env={PASSPHRASE_ENV: wrong})
    one_line_error(r, 10, "wrong passphrase")
    assert not (tmp_path / "out").exists(), "a failed restore left a partial tree"
    assert not list(tmp_path.glob(".rescue-restore-*"))
    assert wrong not in r.err + r.out + (tmp_path / "rescue.log").read_text()
    assert fingerprint(tmp_path / "dest") == before
    # a second backup with the wrong passphrase must not add a set it could never read back
    r = rescue(config, "backup", "--incremental", env={PASSPHRASE_ENV: wrong})
    assert r.code != 0
    assert fingerprint(tmp_path / "dest") == before


def test_missing_passphrase_env_names_the_key(tmp_path: Path, sample_tree: Path) -> None:
    config = symmetric(tmp_path, sample_tree)
    r = rescue(config, "backup")
    one_line_error(r, 3, "passphrase_env", PASSPHRASE_ENV)


def test_stopped_ftp_server(tmp_path: Path, sample_tree: Path, own_ftpd: FtpServer) -> None:
    env = {FTP_PASSWORD_ENV: own_ftpd.password}
    config = settings_for("ftp", tmp_path, sample_tree, ftpd=own_ftpd)
    assert rescue(config, "backup", env=env).code == 0
    before = fingerprint(own_ftpd.root)
    own_ftpd.stop()
    started = time.monotonic()
    r = rescue(config, "status", env=env)
    one_line_error(r, 20, "cannot reach", "127.0.0.1")
    assert time.monotonic() - started < 60
    assert fingerprint(own_ftpd.root) == before


def test_wrong_ftp_password(tmp_path: Path, sample_tree: Path, own_ftpd: FtpServer) -> None:
    config = settings_for("ftp", tmp_path, sample_tree, ftpd=own_ftpd)
    assert rescue(config, "backup", env={FTP_PASSWORD_ENV: own_ftpd.password}).code == 0
    before = fingerprint(own_ftpd.root)
    r = rescue(config, "backup", env={FTP_PASSWORD_ENV: "not-the-password"})
    one_line_error(r, 21, "refused the login")
    assert "not-the-password" not in r.err + (tmp_path / "rescue.log").read_text()
    assert fingerprint(own_ftpd.root) == before


def test_untrusted_ftps_certificate(tmp_path: Path, sample_tree: Path, ftpsd: VsftpdServer) -> None:
    config = settings_for("ftps", tmp_path, sample_tree, ftpd=ftpsd)  # no tls_ca_file
    r = rescue(config, "backup", env={FTP_PASSWORD_ENV: ftpsd.password})
    one_line_error(r, 24, "not trusted", "tls_ca_file")
    assert not (ftpsd.root / tmp_path.name).exists()


def test_stopped_ssh_server(tmp_path: Path, sample_tree: Path, own_sshd: SshServer) -> None:
    config = settings_for("sftp", tmp_path, sample_tree, sshd=own_sshd)
    assert rescue(config, "backup").code == 0
    own_sshd.stop()
    r = rescue(config, "restore", "/", "--to", str(tmp_path / "out"))
    one_line_error(r, 20, "cannot reach", f"127.0.0.1:{own_sshd.port}")
    assert not (tmp_path / "out").exists()


def test_changed_host_key(tmp_path: Path, sample_tree: Path, own_sshd: SshServer) -> None:
    config = settings_for("sftp", tmp_path, sample_tree, sshd=own_sshd)
    assert rescue(config, "backup").code == 0
    before = fingerprint(tmp_path / "dest")
    pinned = own_sshd.host_key_fingerprint
    own_sshd.regenerate_host_key()
    own_sshd.restart()
    offered = own_sshd.host_key_fingerprint
    assert offered != pinned
    r = rescue(config, "backup")
    one_line_error(r, 23, "CHANGED", pinned, offered, "host_key_fingerprint")
    assert fingerprint(tmp_path / "dest") == before


def test_unknown_host_key_shows_how_to_pin(
    tmp_path: Path, sample_tree: Path, sshd: SshServer
) -> None:
    config = settings_for("sftp", tmp_path, sample_tree, sshd=sshd)
    text = "\n".join(
        ln for ln in config.read_text().splitlines() if not ln.startswith("host_key_fingerprint")
    )
    config.write_text(text)
    r = rescue(config, "backup")
    one_line_error(r, 22, "not pinned", sshd.host_key_fingerprint, "host_key_fingerprint =")
    assert not (tmp_path / "dest").exists()


def test_refused_ssh_key(tmp_path: Path, sample_tree: Path, sshd: SshServer) -> None:
    stranger = tmp_path / "stranger"
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    config = settings_for("sftp", tmp_path, sample_tree, sshd=sshd, ssh_key_file=str(stranger))
    r = rescue(config, "status")
    one_line_error(r, 21, "refused the login")


@pytest.fixture
def backed_up(tmp_path: Path, sample_tree: Path) -> Path:
    config = symmetric(tmp_path, sample_tree)
    assert rescue(config, "backup", env={PASSPHRASE_ENV: PW}).code == 0
    return config


def test_deleted_volume(tmp_path: Path, backed_up: Path) -> None:
    (volume,) = (tmp_path / "dest").glob("*.vol1.difftar.gpg")
    volume.unlink()
    before = fingerprint(tmp_path / "dest")
    r = rescue(backed_up, "restore", "/", "--to", str(tmp_path / "out"), env={PASSPHRASE_ENV: PW})
    one_line_error(r, 32, "missing")
    assert not (tmp_path / "out").exists()
    assert fingerprint(tmp_path / "dest") == before


def test_deleted_middle_volume(tmp_path: Path, sample_tree: Path) -> None:
    config = symmetric(tmp_path, sample_tree)
    config.write_text(config.read_text().replace("retries = 1", "retries = 1\nvolsize = 1"))
    assert rescue(config, "backup", env={PASSPHRASE_ENV: PW}).code == 0
    volumes = sorted((tmp_path / "dest").glob("*.vol*.difftar.gpg"))
    assert len(volumes) >= 2, volumes
    volumes[1].unlink()
    before = fingerprint(tmp_path / "dest")
    r = rescue(config, "restore", "/", "--to", str(tmp_path / "out"), env={PASSPHRASE_ENV: PW})
    one_line_error(r, 32, "volume number 2 is missing")
    assert fingerprint(tmp_path / "dest") == before


def test_flipped_byte(tmp_path: Path, backed_up: Path) -> None:
    (volume,) = (tmp_path / "dest").glob("*.vol1.difftar.gpg")
    data = bytearray(volume.read_bytes())
    data[len(data) // 2] ^= 0x01
    volume.write_bytes(bytes(data))
    before = fingerprint(tmp_path / "dest")
    r = rescue(backed_up, "restore", "/", "--to", str(tmp_path / "out"), env={PASSPHRASE_ENV: PW})
    one_line_error(r, 31, "corrupt", volume.name)
    assert fingerprint(tmp_path / "dest") == before


def test_restore_target_exists(tmp_path: Path, backed_up: Path) -> None:
    target = tmp_path / "precious"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    r = rescue(backed_up, "restore", "/", "--to", str(target), env={PASSPHRASE_ENV: PW})
    one_line_error(r, 40, str(target), "--force")
    assert (target / "keep.txt").read_text() == "mine"


def test_no_backup_yet(tmp_path: Path, sample_tree: Path) -> None:
    config = symmetric(tmp_path, sample_tree)
    r = rescue(config, "restore", "/", "--to", str(tmp_path / "out"), env={PASSPHRASE_ENV: PW})
    one_line_error(r, 30, "no backup found")


def test_time_before_the_first_backup(tmp_path: Path, backed_up: Path) -> None:
    r = rescue(
        backed_up,
        "restore",
        "/",
        "--to",
        str(tmp_path / "o"),
        "-t",
        "2001-01-01",
        env={PASSPHRASE_ENV: PW},
    )
    one_line_error(r, 30, "no backup as old as")
    r = rescue(backed_up, "files", "-t", "last tuesday", env={PASSPHRASE_ENV: PW})
    one_line_error(r, 2, "bad time")


def test_backup_lock(tmp_path: Path, backed_up: Path) -> None:
    from rescue.backup.lock import exclusive

    with exclusive(tmp_path / "cache", "test holds it"):
        r = rescue(backed_up, "backup", env={PASSPHRASE_ENV: PW})
    one_line_error(r, 5, "another rescue run")


def test_unexpected_config_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "rescue.toml"
    config.write_text("[destination]\nmethod = 'file'\npath = '/x'\nhots = 1\n")
    config.chmod(0o600)
    r = rescue(config, "status")
    one_line_error(r, 3, "hots")
    missing = rescue(tmp_path / "nope.toml", "status")
    one_line_error(missing, 3, "config init")


def test_gpg_key_with_a_passphrase(tmp_path: Path, sample_tree: Path) -> None:
    """Backups encrypt to the public key; a restore needs the secret key's passphrase."""
    with GpgHome(passphrase="key passphrase 42") as gpg:
        config = settings_for(
            "file",
            tmp_path,
            sample_tree,
            encryption={
                "mode": "gpg",
                "gpg_key": gpg.fingerprint,
                "gnupg_home": str(gpg.home),
                "passphrase_env": PASSPHRASE_ENV,
            },
        )
        right = {PASSPHRASE_ENV: "key passphrase 42"}
        assert rescue(config, "backup", env=right).code == 0
        out = tmp_path / "out"
        r = rescue(config, "restore", "/", "--to", str(out), env={PASSPHRASE_ENV: "not it"})
        one_line_error(r, 10, "wrong passphrase")
        assert not out.exists()
        r = rescue(config, "restore", "/", "--to", str(out), env=right)
        assert r.code == 0, r.err
        assert compare_trees(sample_tree, out) == []


def test_gpg_key_not_in_the_keyring(tmp_path: Path, sample_tree: Path, gpg_home: GpgHome) -> None:
    config = settings_for(
        "file",
        tmp_path,
        sample_tree,
        encryption={"mode": "gpg", "gpg_key": "0123456789ABCDEF", "gnupg_home": str(gpg_home.home)},
    )
    r = rescue(config, "backup")
    one_line_error(r, 11, "0123456789ABCDEF")
    assert not (tmp_path / "dest").exists()
