"""Configuration backups end to end, through the real `rescue` command, on a fake host root.

The fake host (tests/confighost.py) is read and restored with --root; the real dpkg, systemctl,
ssh-keygen, gpg, zstd and OpenSSH/FTP servers do the work. Every assertion is on an outcome:
bytes, owners and modes in the root (tree comparison), exit codes and the error line.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest
from clirun import RESCUE, Run, rescue, write_settings
from confighost import (
    ALICE,
    APP_TOKEN,
    DEST_PASSWORD,
    SECRETS,
    SETTINGS_PASSPHRASE,
    WIFI_KEY,
    make_host,
)
from redaction_corpus import corpus_module, plant
from rgw import RgwServer
from servers import FtpServer, GpgHome, SshServer, VsftpdServer
from test_s3 import s3_destination

from rescue.backup.treecompare import compare_trees
from rescue.config import load_settings
from rescue.configbackup.store import Store

APP_MODULE = """\
description = "the web app"
paths = ["/etc/app"]
data_dirs = ["/srv/app"]
depends = ["users"]

[[state]]
name = "flag"
export = "cat {root}/etc/app/flag 2>/dev/null || echo off"
import = "cp {state} {root}/etc/app/imported-flag"
"""


@pytest.fixture
def host(tmp_path: Path) -> Path:
    root = make_host(tmp_path / "host")
    (root / "etc/app/flag").write_text("on\n")
    (root / "srv/app/uploads").mkdir(parents=True)
    (root / "srv/app/uploads/photo.jpg").write_bytes(bytes(range(256)) * 64)
    return root


def config_for(
    tmp_path: Path,
    *,
    encryption: dict[str, object] | None = None,
    destination: dict[str, object] | None = None,
    store: str = "store",
    **config_backup: object,
) -> Path:
    modules_dir = tmp_path / "modules.d"
    modules_dir.mkdir(exist_ok=True)
    (modules_dir / "app.toml").write_text(APP_MODULE)
    return write_settings(
        tmp_path / f"rescue-{store}.toml",
        {
            "destination": destination or {"method": "file", "path": str(tmp_path / "dest")},
            "encryption": encryption or {"mode": "none"},
            "config_backup": {
                "directory": str(tmp_path / store),
                "modules_dir": str(modules_dir),
                **config_backup,
            },
        },
    )


def created(config: Path, root: Path, *args: str) -> dict:
    run = rescue(config, "config-backup", "create", "--root", str(root), "--json", *args)
    assert run.code == 0, run.err
    return run.json()


def cb(config: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    return rescue(config, "config-backup", *args, env=env)


def restore(
    config: Path, name: str, root: Path, *args: str, env: dict[str, str] | None = None
) -> Run:
    return cb(config, "restore", name, "--root", str(root), *args, env=env)


def snapshot(root: Path, dest: Path) -> Path:
    subprocess.run(["cp", "-a", str(root), str(dest)], check=True)
    return dest


def tree_hash(root: Path) -> str:
    """Everything about a tree: names, types, modes, owners, bytes, link targets."""
    digest = hashlib.sha256()
    for top, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(dirs + files):
            path = Path(top) / name
            st = path.lstat()
            digest.update(f"{path}:{st.st_mode}:{st.st_uid}:{st.st_gid}:{st.st_mtime}".encode())
            if path.is_symlink():
                digest.update(os.readlink(path).encode())
            elif path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()


def config_diffs(expected: Path, actual: Path) -> list[str]:
    """compare_trees, minus dpkg's own database files: a selections import rewrites them."""
    return [d for d in compare_trees(expected, actual) if "var/lib/dpkg" not in d]


def disturb(root: Path) -> None:
    """The bad change an admin wants to undo, in several modules."""
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n")  # network
    (root / "etc/ssh/sshd_config").unlink()  # ssh
    (root / "etc/shadow").chmod(0o644)  # users
    os.chown(root / "etc/sudoers.d/alice", ALICE, ALICE)  # users
    (root / "etc/cron.d/backup").write_text("# disabled\n")  # cron
    (root / "etc/resolv.conf").unlink()
    (root / "etc/resolv.conf").symlink_to("/etc/resolv.manual")  # network
    (root / "etc/nftables.conf").write_text("flush ruleset\n")  # firewall


def test_round_trip_restores_every_module(tmp_path: Path, host: Path) -> None:
    config = config_for(tmp_path)
    made = created(config, host)
    assert made["type"] == "configuration"
    assert made["modules"] == [
        "users",
        "network",
        "ssh",
        "firewall",
        "cron",
        "packages",
        "services",
        "rescue",
        "app",
    ]
    before = snapshot(host, tmp_path / "before")
    disturb(host)
    assert compare_trees(before, host)

    dry = restore(config, made["name"], host, "--dry-run")
    assert dry.code == 0, dry.err
    assert "change /etc/hosts (content)" in dry.out
    assert "new    /etc/ssh/sshd_config (file)" in dry.out
    assert "change /etc/shadow (mode 0644 -> 0640)" in dry.out
    assert f"change /etc/sudoers.d/alice (owner {ALICE}:{ALICE} -> 0:0)" in dry.out
    assert "dry run: nothing was written" in dry.out
    assert (host / "etc/hosts").read_text() == "127.0.0.1 localhost\n"

    run = restore(config, made["name"], host, "--yes")
    assert run.code == 0, run.err
    assert (
        "restored users, network, ssh, firewall, cron, packages, services, rescue, app" in run.out
    )
    diffs = config_diffs(before, host)
    assert diffs == ["only in actual: etc/app/imported-flag"], diffs  # the app's state import
    assert (host / "etc/app/imported-flag").read_text() == "on\n"

    again = restore(
        config,
        made["name"],
        host,
        "--module",
        "ssh",
        "--yes",
        "--module",
        "users",
    )
    assert "nothing to restore: the system already matches the archive" in again.out


def test_archives_made_within_one_second_get_names_of_their_own(tmp_path: Path, host: Path) -> None:
    """The default name has a one-second stamp: a second archive in that second gets -2, and
    a name the user chose is still refused when it is taken."""
    config = config_for(tmp_path)
    names = [created(config, host, "--module", "cron")["name"] for _ in range(3)]
    assert len(set(names)) == 3, names
    assert all(re.fullmatch(r"confighost-configuration-\d{8}-\d{6}(-[23])?", n) for n in names)
    store = Store(load_settings(config))  # the collision itself, whatever the clock did
    assert store.free_name(names[-1]) == f"{names[-1]}-2"
    assert store.free_name("confighost-unused") == "confighost-unused"
    again = cb(config, "create", "--root", str(host), "--module", "cron", "--name", names[0])
    assert again.code == 2 and f"an archive named {names[0]} exists" in again.err
    listed = cb(config, "list", "--json").json()
    assert sorted(a["name"] for a in listed) == sorted(names)


def test_restoring_one_module_changes_only_its_files(tmp_path: Path, host: Path) -> None:
    config = config_for(tmp_path)
    made = created(config, host, "--module", "cron", "--module", "network")
    assert made["modules"] == ["network", "cron"]
    disturb(host)
    disturbed = snapshot(host, tmp_path / "disturbed")

    run = restore(config, made["name"], host, "--module", "cron", "--yes")
    assert run.code == 0, run.err
    diffs = compare_trees(disturbed, host)
    assert diffs and all(": etc/cron.d/backup: " in d for d in diffs), diffs
    assert (host / "etc/cron.d/backup").read_text() == "30 2 * * * root /usr/local/bin/nightly\n"
    assert (host / "etc/hosts").read_text() == "127.0.0.1 localhost\n"  # network untouched


def test_full_archives_also_hold_the_data_dirs(tmp_path: Path, host: Path) -> None:
    config = config_for(tmp_path)
    plain = created(config, host, "--module", "app")
    paths = {e["path"] for m in plain["manifest"]["modules"] for e in m["entries"]}
    assert "/etc/app/app.conf" in paths and not any(p.startswith("/srv") for p in paths)
    full = created(config, host, "--module", "app", "--type", "full")
    paths = {e["path"] for m in full["manifest"]["modules"] for e in m["entries"]}
    assert {"/srv/app", "/srv/app/uploads", "/srv/app/uploads/photo.jpg"} <= paths

    photo = host / "srv/app/uploads/photo.jpg"
    original = photo.read_bytes()
    shutil.rmtree(host / "srv/app")
    run = restore(config, full["name"], host, "--module", "app", "--module", "users", "--yes")
    assert run.code == 0, run.err
    assert photo.read_bytes() == original
    nothing = restore(config, plain["name"], host, "--yes", "--no-imports")
    assert "nothing to restore" in nothing.out  # a configuration archive leaves data alone


def test_dependencies_decide_and_order_the_restore(tmp_path: Path, host: Path) -> None:
    config = config_for(tmp_path)
    made = created(config, host)
    disturb(host)
    before = tree_hash(host)

    refused = restore(config, made["name"], host, "--module", "firewall", "--yes")
    assert refused.code == 81
    assert (
        "firewall depend(s) on network, which is not selected: add --module network, or "
        "give --ignore-dependencies" in refused.err
    )
    assert tree_hash(host) == before

    ordered = restore(
        config,
        made["name"],
        host,
        "--module",
        "firewall",
        "--module",
        "network",
        "--dry-run",
    )
    assert ordered.code == 0, ordered.err
    assert ordered.out.index("  network:") < ordered.out.index("  firewall:")

    forced = restore(
        config,
        made["name"],
        host,
        "--module",
        "firewall",
        "--ignore-dependencies",
        "--yes",
    )
    assert forced.code == 0, forced.err
    assert (
        "restoring without network, which firewall depend(s) on (--ignore-dependencies)"
        in forced.out
    )
    assert (host / "etc/nftables.conf").read_text().startswith("table inet filter")
    assert (host / "etc/hosts").read_text() == "127.0.0.1 localhost\n"

    # creating ssh alone takes users along, so the archive can be restored as it is
    ssh_only = created(config, host, "--module", "ssh")
    assert ssh_only["modules"] == ["users", "ssh"]


def test_at_a_terminal_it_offers_the_dependencies_and_asks(tmp_path: Path, host: Path) -> None:
    config = config_for(tmp_path)
    made = created(config, host)
    disturb(host)
    argv = [*RESCUE, "--config", str(config), "--log-file", str(tmp_path / "log")]
    argv += ["config-backup", "restore", made["name"]]
    child = pexpect.spawn(
        argv[0], [*argv[1:], "--root", str(host), "--module", "firewall"],
        env={**os.environ, "TERM": "xterm"}, dimensions=(50, 200), encoding="utf-8",
        codec_errors="replace", timeout=60,
    )  # fmt: skip
    child.logfile_read = (tmp_path / "terminal.log").open("w")
    child.expect("firewall depend\\(s\\) on network, which is not selected. Restore network too")
    child.send("y")  # a confirm takes one key; Enter would answer the next question
    child.expect("  network: 0 new, 2 changed")
    child.expect("Replace the configuration as shown")
    child.send("y")
    child.expect("undo: rescue config-backup restore pre-restore-")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, (tmp_path / "terminal.log").read_text()
    assert (host / "etc/hosts").read_text().endswith("10.0.0.5 confighost\n")
    assert (host / "etc/nftables.conf").read_text().startswith("table inet filter")

    made = created(config, host, "--module", "cron")
    (host / "etc/crontab").write_text("# changed\n")
    child = pexpect.spawn(
        argv[0], [*argv[1:-1], made["name"], "--root", str(host)],
        env={**os.environ, "TERM": "xterm"}, dimensions=(50, 200), encoding="utf-8",
        codec_errors="replace", timeout=60,
    )  # fmt: skip
    child.expect("Replace the configuration as shown")
    child.send("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 81
    assert (host / "etc/crontab").read_text() == "# changed\n"


def test_bug_report_holds_no_secret_and_cannot_be_restored(tmp_path: Path, host: Path) -> None:
    passphrase = tmp_path / "passphrase"
    passphrase.write_text(SETTINGS_PASSPHRASE + "\n")
    passphrase.chmod(0o600)
    config = config_for(
        tmp_path, encryption={"mode": "symmetric", "passphrase_file": str(passphrase)}
    )
    (host / "etc/app/notes.txt").write_text(f"the passphrase is {SETTINGS_PASSPHRASE}\n")
    made = created(config, host, "--type", "bug-report", "--name", "support-case-1")
    path = Path(made["file"]) if "/" in made["file"] else tmp_path / "store" / made["file"]
    assert path.name == "support-case-1.tar.gz"  # never encrypted: it is meant to be sent
    raw = path.read_bytes()
    tar_bytes = gzip.decompress(raw)
    for secret in [*SECRETS, "PRIVATE KEY-----\nb3BlbnNzaC1rZXk"]:
        assert secret.encode() not in raw and secret.encode() not in tar_bytes, secret
    private = (host / "etc/ssh/ssh_host_ed25519_key").read_text().splitlines()[1]
    assert private.encode() not in tar_bytes

    manifest = made["manifest"]
    what = {(r["path"], r["what"]) for r in manifest["redactions"]}
    assert ("/etc/shadow", "password hashes of root, alice") in what
    assert ("/etc/ssh/ssh_host_ed25519_key", "1 private key(s)") in what
    assert ("/etc/NetworkManager/system-connections/office.nmconnection", "values of psk") in what
    assert ("/etc/app/app.conf", "values of token") in what
    assert ("/etc/rescue/rescue.toml", "values of password") in what
    assert ("/etc/rescue/passphrase", "a secret file (whole content)") in what
    assert ("/etc/app/notes.txt", "a secret of the settings (by value)") in what
    assert manifest["diagnostics"] == ["rescue.log", "status.json", "versions.txt"]
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        shadow = tar.extractfile("modules/users/files/etc/shadow").read().decode()
        versions = tar.extractfile("diagnostics/versions.txt").read().decode()
    assert shadow.startswith("root:[REDACTED by rescue]:19700:")
    assert "nobody:*:19700" in shadow  # a locked account has no hash to hide
    assert versions.startswith("rescue ")

    info = cb(config, "info", "support-case-1")
    assert info.code == 0, info.err
    assert "/etc/shadow: password hashes of root, alice" in info.out
    before = tree_hash(host)
    refused = restore(config, "support-case-1", host, "--yes")
    assert refused.code == 81
    assert "support-case-1 is a bug report" in refused.err and "never be restored" in refused.err
    assert tree_hash(host) == before
    assert WIFI_KEY not in refused.err + refused.out and APP_TOKEN not in info.out


def test_bug_report_redacts_a_corpus_of_real_secret_formats(tmp_path: Path, host: Path) -> None:
    """Over 50 files in real formats (tests/redaction_corpus.py), one seeded secret each, made
    into a bug report by `create --type bug-report`: no secret (nor its base64 form) is in any
    byte of the archive, packed or unpacked, nor in the output, `info` or the log; each file
    keeps its other lines and its key names, with the marker in place of the value."""
    planted = plant(host, seed=1818)
    assert len(planted) >= 40
    config = config_for(tmp_path)
    plain = {  # no secret here, though the keys look like it: each must stay byte for byte
        "/etc/nsswitch.conf": "passwd:         files systemd\nshadow:         files\n",
        "/etc/pam.d/common-password": "password\t[success=1 default=ignore]\tpam_unix.so "
        "obscure yescrypt\npassword\trequisite\t\t\tpam_deny.so\n",
        "/etc/ssh/sshd_config": "PasswordAuthentication no\nPermitEmptyPasswords no\n"
        "PubkeyAuthentication yes\nHostKey /etc/ssh/ssh_host_ed25519_key\n",
        "/etc/NetworkManager/conf.d/wifi.conf": "[connection]\nwifi.powersave=2\n"
        "[keyfile]\npsk-flags=0\npassword-flags=1\n",
    }
    for path, text in plain.items():
        (host / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (host / path.lstrip("/")).write_text(text)
    (tmp_path / "modules.d/corpus.toml").write_text(
        corpus_module(planted, ["/etc/nsswitch.conf", "/etc/pam.d/common-password"])
    )
    for item in planted:  # each secret is really in its file, so the scan below can fail
        original = (host / item.case.path.lstrip("/")).read_bytes()
        assert any(needle in original for needle in item.needles), item.case.path

    run = cb(config, "create", "--root", str(host), "--type", "bug-report", "--name", "corpus")
    assert run.code == 0, run.err
    raw = (tmp_path / "store/corpus.tar.gz").read_bytes()
    tar_bytes = gzip.decompress(raw)
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    info = cb(config, "info", "corpus")
    assert info.code == 0, info.err
    seen = [raw, tar_bytes, *members.values(), (tmp_path / "rescue.log").read_bytes()]
    seen += [(run.out + run.err + info.out + info.err).encode()]
    leaks = [
        (item.case.path, needle[:16])
        for item in planted
        for needle in item.needles
        if any(needle in blob for blob in seen)
    ]
    assert leaks == []

    lost = []
    for item in planted:
        lines = members[item.member].decode().split("\n")
        lost += [(item.case.path, line) for line in item.case.keep if line not in lines]
    assert lost == []
    manifest = json.loads(members["manifest.json"])
    redacted = {r["path"] for r in manifest["redactions"]}
    assert {item.case.path for item in planted} <= redacted
    assert ("/root/.my.cnf", "values of password") in {
        (r["path"], r["what"]) for r in manifest["redactions"]
    }
    modules = {"/etc/ssh/sshd_config": "ssh", "/etc/NetworkManager/conf.d/wifi.conf": "network"}
    for path, text in plain.items():
        member = f"modules/{modules.get(path, 'corpus')}/files{path}"
        assert members[member] == text.encode(), path
    assert members["modules/network/files/etc/hosts"] == (host / "etc/hosts").read_bytes()


def _rewrite_without(path: Path, member: str) -> None:
    """The same archive minus one member (manifest untouched): a missing member."""
    with tarfile.open(path) as src:
        members = [(m, src.extractfile(m).read()) for m in src.getmembers()]
    with tarfile.open(path, "w:gz") as out:
        for info, data in members:
            if info.name != member:
                out.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "missing member"])
def test_a_damaged_archive_is_refused_whole(tmp_path: Path, host: Path, damage: str) -> None:
    config = config_for(tmp_path)
    made = created(config, host)
    path = tmp_path / "store" / made["file"]
    data = bytearray(path.read_bytes())
    if damage == "flipped byte":
        data[len(data) // 2] ^= 0x10
        path.write_bytes(bytes(data))
    elif damage == "truncated":
        path.write_bytes(bytes(data[: len(data) * 2 // 3]))
    else:
        _rewrite_without(path, "modules/network/files/etc/hosts")
    disturb(host)
    before = tree_hash(host)
    run = restore(config, made["name"], host, "--yes")
    assert run.code == 80, run.err
    line = run.err.splitlines()[0]
    assert line.startswith(f"rescue: error: {path.name} is corrupt: ")
    if damage == "missing member":
        assert "member modules/network/files/etc/hosts is missing" in line
    assert tree_hash(host) == before
    assert [p.name for p in (tmp_path / "store").glob("pre-restore-*")] == []
    assert cb(config, "info", made["name"]).code == 80


def test_undo_restores_the_pre_restore_state(tmp_path: Path, host: Path) -> None:
    config = config_for(tmp_path)
    made = created(config, host)
    disturb(host)
    (host / "etc/cron.d/backup").unlink()
    shutil.rmtree(host / "etc/sudoers.d")
    disturbed = snapshot(host, tmp_path / "disturbed")

    run = restore(config, made["name"], host, "--yes")
    assert run.code == 0, run.err
    undo_name = run.out.split("undo: rescue config-backup restore ")[1].strip()
    assert (host / "etc/cron.d/backup").exists() and (host / "etc/sudoers.d/alice").exists()
    listed = cb(config, "list", "--json").json()
    assert [a["type"] for a in listed if a["name"] == undo_name] == ["pre-restore"]

    undo = restore(config, undo_name, host, "--yes")
    assert undo.code == 0, undo.err
    assert "remove /etc/cron.d/backup (not there before the restore)" in undo.out
    diffs = config_diffs(disturbed, host)
    assert diffs == ["only in actual: etc/app/imported-flag"], diffs


def test_encrypted_archives_symmetric_and_gpg(
    tmp_path: Path, host: Path, gpg_home: GpgHome
) -> None:
    env = {"CB_PASSPHRASE": SETTINGS_PASSPHRASE}
    config = config_for(
        tmp_path, encryption={"mode": "symmetric", "passphrase_env": "CB_PASSPHRASE"}
    )
    made = rescue(config, "config-backup", "create", "--root", str(host), "--json", env=env)
    assert made.code == 0, made.err
    path = tmp_path / "store" / made.json()["file"]
    assert path.name.endswith(".tar.gz.gpg")
    assert b"confighost" not in path.read_bytes() and not path.read_bytes().startswith(b"\x1f\x8b")
    assert cb(config, "info", made.json()["name"], env=env).code == 0

    wrong = cb(config, "info", made.json()["name"], env={"CB_PASSPHRASE": "not it"})
    assert wrong.code == 10 and "wrong passphrase" in wrong.err
    assert "not it" not in wrong.err

    disturb(host)
    run = restore(
        config,
        made.json()["name"],
        host,
        "--module",
        "network",
        "--yes",
        env=env,
    )
    assert run.code == 0, run.err
    assert (host / "etc/hosts").read_text().endswith("10.0.0.5 confighost\n")

    keyed = config_for(
        tmp_path,
        store="gpg-store",
        encryption={
            "mode": "gpg",
            "gpg_key": gpg_home.fingerprint,
            "gnupg_home": str(gpg_home.home),
        },
    )
    made_gpg = created(keyed, host, "--module", "cron")
    assert made_gpg["encrypted"] and made_gpg["file"].endswith(".gpg")
    info = cb(keyed, "info", made_gpg["name"])
    assert info.code == 0 and "all 3 member checksums verified" in info.out, info.out


def test_zstd_export_import_to_another_store(tmp_path: Path, host: Path) -> None:
    config = config_for(tmp_path, compression="zstd")
    made = created(config, host, "--name", "move-me")
    assert made["file"] == "move-me.tar.zst"
    carried = tmp_path / "usb"
    carried.mkdir()
    out = cb(config, "export", "move-me", str(carried))
    assert out.code == 0, out.err
    assert (carried / "move-me.tar.zst").read_bytes() == (
        tmp_path / "store/move-me.tar.zst"
    ).read_bytes()
    again = cb(config, "export", "move-me", str(carried))
    assert again.code == 40 and "add --force" in again.err

    other = config_for(tmp_path, store="other-server")
    imported = cb(other, "import", str(carried / "move-me.tar.zst"), "--name", "from-web1")
    assert imported.code == 0, imported.err
    assert [a["name"] for a in cb(other, "list", "--json").json()] == ["from-web1"]
    table = cb(other, "list")
    assert "from-web1" in table.out and "configuration" in table.out
    disturb(host)
    run = restore(
        other,
        "from-web1",
        host,
        "--module",
        "firewall",
        "--module",
        "network",
        "--yes",
    )
    assert run.code == 0, run.err
    assert (host / "etc/nftables.conf").read_text().startswith("table inet filter")

    bad = carried / "bad.tar.zst"
    data = bytearray((carried / "move-me.tar.zst").read_bytes())
    data[-20] ^= 0xFF
    bad.write_bytes(bytes(data))
    refused = cb(other, "import", str(bad))
    assert refused.code == 80 and "bad.tar.zst is corrupt" in refused.err
    kinds = {a["name"]: a["type"] for a in cb(other, "list", "--json").json()}
    assert sorted(kinds.values()) == ["configuration", "pre-restore"]  # and no bad one

    gone = cb(other, "delete", "from-web1")
    assert gone.code == 0 and "from-web1" not in str(cb(other, "list", "--json").json())
    missing = cb(other, "delete", "from-web1")
    assert missing.code == 82 and "no configuration archive named from-web1" in missing.err


def test_state_exports_and_imports_with_real_dpkg_and_systemctl(tmp_path: Path, host: Path) -> None:
    config = config_for(tmp_path)
    made = created(config, host, "--module", "services")
    assert made["modules"] == ["packages", "services"]
    packages = {m["name"]: m for m in made["manifest"]["modules"]}
    assert packages["packages"]["state"] == ["selections"]
    assert packages["services"]["state"] == ["enabled-units"]

    admindir = f"--admindir={host}/var/lib/dpkg"
    subprocess.run(
        ["dpkg", admindir, "--set-selections"], input="nginx deinstall\n", text=True, check=True
    )
    subprocess.run(
        ["systemctl", f"--root={host}", "disable", "web.service"], check=True, capture_output=True
    )
    wants = host / "etc/systemd/system/multi-user.target.wants/web.service"
    assert not wants.exists()

    run = restore(config, made["name"], host, "--yes")
    assert run.code == 0, run.err
    selections = subprocess.run(
        ["dpkg", admindir, "--get-selections"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert selections == ["curl", "install", "nginx", "install"]
    assert os.readlink(wants) == "/lib/systemd/system/web.service"
    assert "not run: apt-get dselect-upgrade" in run.out  # the fake root has no apt-get


def test_confirmation_and_settings_problems(tmp_path: Path, host: Path) -> None:
    config = config_for(tmp_path)
    made = created(config, host, "--module", "cron")
    disturb(host)
    before = tree_hash(host)
    unasked = restore(
        config,
        made["name"],
        host,
    )
    assert unasked.code == 81 and "not confirmed: nothing was written" in unasked.err
    assert tree_hash(host) == before

    (tmp_path / "modules.d/broken.toml").write_text('paths = ["etc/relative"]\ndepend = []\n')
    broken = cb(config, "modules")
    assert broken.code == 3
    assert f"{tmp_path}/modules.d/broken.toml:1: paths[0]: must be an absolute path" in broken.err
    assert "broken.toml:2: depend: unknown key (did you mean depends?)" in broken.err
    (tmp_path / "modules.d/broken.toml").write_text('paths = ["/etc/x"]\ndepends = ["nope"]\n')
    unknown = cb(config, "modules")
    assert unknown.code == 3 and "module broken depends on unknown module(s) nope" in unknown.err
    (tmp_path / "modules.d/broken.toml").unlink()
    listed = cb(config, "modules", "--json")
    assert [m["name"] for m in listed.json()][-1] == "app"

    unknown_module = cb(config, "create", "--root", str(host), "--module", "nosuch")
    assert unknown_module.code == 2 and "unknown module(s) nosuch" in unknown_module.err


def test_a_bad_value_in_a_modules_d_file_is_one_line_with_file_and_line(tmp_path: Path) -> None:
    """A drop-in is read through the settings' TOML layer: the admin is sent to the line."""
    config = config_for(tmp_path)
    dropin = tmp_path / "modules.d/web.toml"
    dropin.write_text('# the web server\ndescription = "nginx"\n\npaths = ["/etc/nginx", 7]\n')
    run = cb(config, "modules")
    assert run.code == 3, run.err
    assert run.err.splitlines()[0] == (
        f"rescue: error: {dropin}:4: paths[1]: must be a string (in quotes)"
    )


def test_a_symlinked_directory_cannot_lead_a_restore_outside_the_root(
    tmp_path: Path, host: Path
) -> None:
    config = config_for(tmp_path)
    made = created(config, host, "--module", "cron")
    (host / "etc/crontab").unlink()
    outside = tmp_path / "outside-etc"
    (host / "etc").rename(outside)
    (host / "etc").symlink_to(outside)  # a root whose /etc leads elsewhere
    before = tree_hash(outside)
    run = restore(config, made["name"], host, "--yes")
    assert run.code == 81, run.err
    assert f"/etc/crontab: its directory resolves to {outside}, outside {host}" in run.err
    assert "nothing was written" in run.err
    assert tree_hash(outside) == before


def test_a_file_with_a_mount_over_it_is_refused(tmp_path: Path, host: Path) -> None:
    """A file bound over a target (resolv.conf in a container) cannot be renamed over: the
    restore is refused whole, before anything is written."""
    config = config_for(tmp_path)
    made = created(config, host, "--module", "cron")
    (host / "etc/crontab").write_text("# edited\n")
    cover = tmp_path / "cover"
    cover.write_text("bound over crontab\n")
    subprocess.run(["mount", "--bind", str(cover), str(host / "etc/crontab")], check=True)
    try:
        before = tree_hash(host)
        run = restore(config, made["name"], host, "--yes")
        assert run.code == 81, run.err
        assert "/etc/crontab is a mount point on the system" in run.err
        assert "nothing was written" in run.err
        assert tree_hash(host) == before
    finally:
        subprocess.run(["umount", str(host / "etc/crontab")], check=True)
    assert (host / "etc/crontab").read_text() == "# edited\n"


@dataclass
class RemoteFiles:
    """The destination's config-backups/ as a test reads it: a directory of the server's, or
    the objects under the prefix in the S3 bucket."""

    url: str  # how the destination's URL begins in rescue's messages
    folder: Path | None = None
    s3: tuple[RgwServer, str, str] | None = None  # server, bucket, key prefix

    def read(self, name: str) -> bytes | None:
        if self.s3 is not None:
            rgw, bucket, prefix = self.s3
            try:
                return rgw.client().get_object(Bucket=bucket, Key=prefix + name)["Body"].read()
            except rgw.client().exceptions.NoSuchKey:
                return None
        assert self.folder is not None
        path = self.folder / name
        return path.read_bytes() if path.exists() else None

    def names(self) -> list[str]:
        if self.s3 is not None:
            rgw, bucket, prefix = self.s3
            listed = rgw.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
            return sorted(o["Key"].removeprefix(prefix) for o in listed.get("Contents", []))
        assert self.folder is not None
        return sorted(p.name for p in self.folder.iterdir()) if self.folder.is_dir() else []

    def delete(self, name: str) -> None:
        if self.s3 is not None:
            rgw, bucket, prefix = self.s3
            rgw.client().delete_object(Bucket=bucket, Key=prefix + name)
        else:
            assert self.folder is not None
            (self.folder / name).unlink()


def _remote(
    tmp_path: Path,
    method: str,
    sshd: SshServer,
    server: FtpServer | VsftpdServer,
    rgw: RgwServer | None = None,
) -> tuple[dict[str, object], RemoteFiles, dict[str, str] | None]:
    """(the [destination] on a real server, its config-backups/, the environment)."""
    if method == "s3":
        assert rgw is not None
        bucket = rgw.bucket("cb")
        where = RemoteFiles(rgw.endpoint, s3=(rgw, bucket, "web1/config-backups/"))
        return s3_destination(rgw, tmp_path, bucket), where, None
    if method == "sftp":
        where = RemoteFiles("sftp://", tmp_path / "remote/config-backups")
        return sshd.destination(tmp_path / "remote"), where, None
    destination: dict[str, object] = {
        "method": method,
        "host": "127.0.0.1",
        "port": server.port,
        "user": server.user,
        "password_env": "CB_FTP",
        "path": f"{tmp_path.name}/remote",
    }
    if method == "ftps":
        destination["tls_ca_file"] = str(server.certfile)
    where = RemoteFiles(f"{method}://", server.root / tmp_path.name / "remote/config-backups")
    return destination, where, {"CB_FTP": server.password}


@pytest.mark.parametrize("method", ["sftp", "ftp", "ftps", "s3"])
def test_copies_at_the_backup_destination(
    tmp_path: Path,
    host: Path,
    method: str,
    sshd: SshServer,
    ftpd: FtpServer,
    ftpsd: VsftpdServer,
    rgw: RgwServer,
) -> None:
    """copy_to_destination, list --remote, pull, push and delete --remote, on real servers."""
    destination, remote, env = _remote(
        tmp_path, method, sshd, ftpd if method == "ftp" else ftpsd, rgw
    )
    config = config_for(tmp_path, destination=destination, copy_to_destination=True)
    run = rescue(
        config, "config-backup", "create", "--root", str(host), "--name", "copied",
        "--allow-unencrypted", env=env,
    )  # fmt: skip
    assert run.code == 0, run.err
    assert f"copied to {remote.url}" in run.out
    local = tmp_path / "store/copied.tar.gz"
    original = local.read_bytes()
    assert remote.read("copied.tar.gz") == original
    assert remote.names() == ["copied.tar.gz"]  # no .part left
    listed = cb(config, "list", "--json").json()
    assert listed[0]["remote"].endswith("/config-backups/copied.tar.gz")

    # the server is lost with its store: a new one pulls the copy from the destination
    assert cb(config, "delete", "copied").code == 0 and not local.exists()
    at_remote = cb(config, "list", "--remote", "--json", env=env)
    assert at_remote.code == 0, at_remote.err
    assert at_remote.json() == [{"file": "copied.tar.gz", "size": len(original), "local": False}]
    pulled = cb(config, "pull", "copied.tar.gz", env=env)
    assert pulled.code == 0, pulled.err
    assert local.read_bytes() == original
    assert cb(config, "info", "copied").code == 0
    absent = cb(config, "pull", "nosuch.tar.gz", env=env)
    assert absent.code == 82 and "holds no nosuch.tar.gz" in absent.err

    remote.delete("copied.tar.gz")  # the copy was lost: push it again
    pushed = cb(config, "push", "copied", "--allow-unencrypted", env=env)
    assert pushed.code == 0, pushed.err
    assert remote.read("copied.tar.gz") == original

    gone = cb(config, "delete", "copied", "--remote", env=env)
    assert gone.code == 0, gone.err
    assert remote.read("copied.tar.gz") is None and not local.exists()
    assert cb(config, "list", "--remote", "--json", env=env).json() == []


def test_sftp_copy_refuses_an_unpinned_host(tmp_path: Path, host: Path, sshd: SshServer) -> None:
    destination = sshd.destination(tmp_path / "remote")
    del destination["host_key_fingerprint"]
    config = config_for(tmp_path, destination=destination, copy_to_destination=True)
    run = cb(config, "create", "--root", str(host), "--name", "kept", "--allow-unencrypted")
    assert run.code == 22 and "is not pinned" in run.err
    assert "kept is in the store, but its copy to the destination failed" in run.err
    assert "rescue config-backup push kept" in run.err
    assert not (tmp_path / "remote").exists()
    assert [a["name"] for a in cb(config, "list", "--json").json()] == ["kept"]


def test_a_failed_copy_is_one_line_and_keeps_the_archive(tmp_path: Path, host: Path) -> None:
    blocked = tmp_path / "dest"
    blocked.write_text("a file where the destination directory should be\n")
    config = config_for(tmp_path, copy_to_destination=True)
    run = cb(config, "create", "--root", str(host), "--module", "cron", "--name", "local-only")
    assert run.code == 83, run.err
    first = run.err.splitlines()[0]
    assert first.startswith("rescue: error: local-only is in the store, but its copy to the ")
    assert f"copying local-only.tar.gz at file://{blocked}/config-backups/ failed" in first
    assert (tmp_path / "store/local-only.tar.gz").is_file()
    assert cb(config, "info", "local-only").code == 0


def test_the_real_etc_read_only(tmp_path: Path) -> None:
    """create and info against this machine's own /etc: it copes with a real system."""
    config = config_for(tmp_path)
    before = {p: p.stat().st_mtime for p in Path("/etc").iterdir()}
    made = created(config, Path("/"), "--type", "bug-report")
    names = {m["name"]: m for m in made["manifest"]["modules"]}
    paths = {e["path"] for e in names["users"]["entries"]}
    assert {"/etc/passwd", "/etc/group", "/etc/shadow"} <= paths
    assert "layout.json" in made["manifest"]["diagnostics"]
    info = cb(config, "info", made["name"])
    assert info.code == 0 and "member checksums verified" in info.out
    plain = created(config, Path("/"))
    assert cb(config, "info", plain["name"]).code == 0
    assert {p: p.stat().st_mtime for p in Path("/etc").iterdir()} == before
    assert json.dumps(made)  # the whole manifest is plain data
    assert DEST_PASSWORD not in info.out


def test_no_enabled_unit_is_an_empty_list_not_a_failure(tmp_path: Path, host: Path) -> None:
    """The real `systemctl --root` on a root where no unit is enabled (it exits 1 then, printing
    nothing); a drop-in's grep that matches nothing is the same; a real failure still warns."""
    subprocess.run(
        ["systemctl", f"--root={host}", "disable", "web.service"], check=True, capture_output=True
    )
    listed = subprocess.run(
        ["systemctl", f"--root={host}", "list-unit-files", "--state=enabled", "--no-legend"],
        capture_output=True,
    )
    assert (listed.returncode, listed.stdout, listed.stderr) == (1, b"", b"")  # the condition
    (tmp_path / "modules.d").mkdir()
    (tmp_path / "modules.d/greps.toml").write_text(
        'paths = ["/etc/hosts"]\n'
        '[[state]]\nname = "nomatch"\nexport = "grep -h nosuchword {root}/etc/hosts"\n'
        "empty_exit = 1\n"
        '[[state]]\nname = "broken"\nexport = "echo the table is gone >&2; exit 1"\n'
        "empty_exit = 1\n"
    )
    config = config_for(tmp_path)
    made = created(config, host, "--module", "services", "--module", "greps")
    records = {m["name"]: m for m in made["manifest"]["modules"]}
    assert records["services"]["state"] == ["enabled-units"]
    assert records["greps"]["state"] == ["nomatch"]
    assert made["manifest"]["warnings"] == [
        "greps: the export of broken failed (exit 1): the table is gone"
    ]
    text = cb(config, "create", "--root", str(host), "--module", "services")
    assert text.code == 0, text.err
    assert "warning" not in text.out + text.err and "enabled-units" not in text.out
    with tarfile.open(tmp_path / "store" / made["file"]) as tar:
        state = tar.extractfile("modules/services/state/enabled-units").read()
    assert state == b""

    wants = host / "etc/systemd/system/multi-user.target.wants"
    run = restore(config, made["name"], host, "--module", "services", "--module", "packages")
    assert run.code == 81  # not confirmed; then with --yes the empty list enables nothing
    run = restore(config, made["name"], host, "--module", "services", "--module", "packages",
                  "--yes")  # fmt: skip
    assert run.code == 0, run.err
    assert "could not enable" not in run.out and not list(wants.glob("*"))


def test_a_dry_run_of_one_module_lists_it_and_its_dependencies(tmp_path: Path, host: Path) -> None:
    """`restore --module ssh --dry-run` (ssh depends on users) shows every file, the modules in
    order, and what a real restore would need; it asks nothing and changes no byte."""
    config = config_for(tmp_path)
    made = created(config, host)
    (host / "etc/ssh/sshd_config").write_text("PermitRootLogin yes\n")
    (host / "etc/shadow").chmod(0o644)
    before = tree_hash(host)

    dry = restore(config, made["name"], host, "--module", "ssh", "--dry-run")
    assert dry.code == 0, dry.err
    assert "modules, in restore order: users, ssh\n" in dry.out
    assert (
        "warning: ssh depend(s) on users: shown with them; a restore needs --module users"
        in dry.out
    )
    assert dry.out.index("  users:") < dry.out.index("  ssh:")
    assert "    change /etc/ssh/sshd_config (content)\n" in dry.out
    assert "    change /etc/shadow (mode 0644 -> 0640)\n" in dry.out
    for same in (
        "/etc/passwd",
        "/etc/group",
        "/etc/sudoers.d/alice",
        "/etc/ssh/ssh_host_ed25519_key",
    ):
        assert f"    same   {same} (file)\n" in dry.out, same
    assert "/etc/hosts" not in dry.out and "/etc/crontab" not in dry.out  # other modules
    assert dry.out.rstrip().endswith("dry run: nothing was written")
    assert tree_hash(host) == before
    assert [p.name for p in (tmp_path / "store").glob("pre-restore-*")] == []

    # the real restore of ssh alone is still refused, naming what it needs
    refused = restore(config, made["name"], host, "--module", "ssh", "--yes")
    assert refused.code == 81 and "add --module users" in refused.err
    assert tree_hash(host) == before

    alone = created(config, host, "--module", "cron", "--name", "cron-only")
    assert alone["modules"] == ["cron"]
    unchanged = restore(config, "cron-only", host, "--dry-run")
    assert unchanged.code == 0, unchanged.err
    assert "    same   /etc/crontab (file)\n" in unchanged.out
    assert "nothing to restore" in unchanged.out
    assert tree_hash(host) == before


@pytest.mark.parametrize("method", ["sftp", "ftp"])
def test_an_unencrypted_archive_with_secrets_warns_and_stays_local(
    tmp_path: Path, host: Path, method: str, sshd: SshServer, ftpd: FtpServer
) -> None:
    """mode = "none": create names the secret-bearing files in one warning line; the copy to
    a real sftp/FTP destination is refused (exit 83, one line, nothing uploaded) until
    --allow-unencrypted; an archive without secrets, a bug report and an encrypted archive go."""
    destination, remote, env = _remote(tmp_path, method, sshd, ftpd)
    config = config_for(tmp_path, destination=destination, copy_to_destination=True)
    uploaded = remote.names

    run = cb(config, "create", "--root", str(host), "--name", "plain", env=env)
    assert run.code == 83, run.err
    warnings = [line for line in run.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1, run.err
    assert warnings[0].startswith("warning: plain is not encrypted and holds secrets in ")
    for secret_file in ("/etc/shadow", "/etc/ssh/ssh_host_ed25519_key"):
        assert secret_file in warnings[0]
    assert '[encryption] mode = "symmetric"' in warnings[0]
    error = run.err.split("rescue: error: ")[1].splitlines()[0]
    assert error.startswith("plain is in the store, not copied to the destination: it is not ")
    assert "rescue config-backup push plain --allow-unencrypted" in error
    assert (tmp_path / "store/plain.tar.gz").is_file() and uploaded() == []
    listed = cb(config, "list", "--json").json()
    nm = "/etc/NetworkManager/system-connections/office.nmconnection"
    assert listed[0]["secret_files"][:2] == ["/etc/shadow", nm]  # gshadow holds no hash here
    assert "remote" not in listed[0]
    info = cb(config, "info", "plain")
    assert "not encrypted, and these files hold secrets:\n  /etc/shadow\n" in info.out

    refused = cb(config, "push", "plain", env=env)
    assert refused.code == 83
    first = refused.err.splitlines()[0]
    assert first.startswith(f"rescue: error: plain was not copied to {method}://")
    assert f"holds secrets (/etc/shadow, {nm}, " in first and "--allow-unencrypted" in first
    assert uploaded() == []

    pushed = cb(config, "push", "plain", "--allow-unencrypted", env=env)
    assert pushed.code == 0, pushed.err
    assert remote.read("plain.tar.gz") == (tmp_path / "store/plain.tar.gz").read_bytes()
    allowed = cb(config, "create", "--root", str(host), "--name", "allowed",
                 "--allow-unencrypted", env=env)  # fmt: skip
    assert allowed.code == 0, allowed.err
    assert "warning: allowed is not encrypted and holds secrets" in allowed.err
    assert "copied to" in allowed.out and uploaded() == ["allowed.tar.gz", "plain.tar.gz"]

    for name, args in (("cron-only", ["--module", "cron"]), ("report", ["--type", "bug-report"])):
        quiet = cb(config, "create", "--root", str(host), "--name", name, *args, env=env)
        assert quiet.code == 0, quiet.err
        assert "warning" not in quiet.err and "copied to" in quiet.out
    assert uploaded() == ["allowed.tar.gz", "cron-only.tar.gz", "plain.tar.gz", "report.tar.gz"]

    # a restore's pre-restore archive holds the shadow: it stays local, the restore goes on
    (host / "etc/shadow").chmod(0o644)
    restored = restore(config, "plain", host, "--module", "users", "--yes", env=env)
    assert restored.code == 0, restored.err
    assert (host / "etc/shadow").stat().st_mode & 0o777 == 0o640
    assert not any(name.startswith("pre-restore-") for name in uploaded())
    assert [a["type"] for a in cb(config, "list", "--json").json()].count("pre-restore") == 1

    (tmp_path / "passphrase").write_text(SETTINGS_PASSPHRASE)
    (tmp_path / "passphrase").chmod(0o600)
    sealed = config_for(
        tmp_path,
        store="sealed",
        destination=destination,
        copy_to_destination=True,
        encryption={"mode": "symmetric", "passphrase_file": str(tmp_path / "passphrase")},
    )
    run = cb(sealed, "create", "--root", str(host), "--name", "sealed", env=env)
    assert run.code == 0, run.err
    assert "warning" not in run.err and "sealed.tar.gz.gpg" in uploaded()
