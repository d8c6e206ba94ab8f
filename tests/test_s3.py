"""method = "s3" against a real Ceph RADOS Gateway (tests/rgw.py), through the real CLI.

Each test has a bucket of its own. The round trips cover both encryption modes, the keys from
a 0600 file and from the environment, a sharded backup, the lock and the records rescue keeps
beside the volumes; the error tests check one line, the exit code, and that nothing was made
or lost.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from clirun import rescue, write_settings
from rgw import RgwServer
from servers import GpgHome, free_port
from test_roundtrip import copy_tree

from rescue.backup.sampletree import mutate_sample_tree
from rescue.backup.treecompare import compare_trees

pytestmark = pytest.mark.slow

PASSPHRASE = "s3 passphrase, not in any log"
SECRET_ENV = "RESCUE_TEST_S3_SECRET"


def s3_destination(
    rgw: RgwServer,
    folder: Path,
    bucket: str,
    prefix: str = "web1",
    *,
    keys: tuple[str, str] | None = None,
    tls: bool = False,
) -> dict[str, object]:
    """[destination] for bucket/prefix on rgw; the secret key in folder/s3.secret (0600)."""
    access, secret = keys or (rgw.access_key, rgw.secret_key)
    secret_file = folder / "s3.secret"
    secret_file.write_text(secret + "\n")
    secret_file.chmod(0o600)
    destination: dict[str, object] = {
        "method": "s3",
        "endpoint_url": rgw.tls_endpoint if tls else rgw.endpoint,
        "bucket": bucket,
        "prefix": prefix,
        "access_key_id": access,
        "secret_access_key_file": str(secret_file),
    }
    if tls:
        destination["tls_ca_file"] = str(rgw.ca_file)
    return destination


def settings(
    folder: Path,
    tree: Path,
    destination: dict[str, object],
    encryption: dict[str, object] | None = None,
    **duplicity: object,
) -> Path:
    secret = folder / "passphrase"
    secret.write_text(PASSPHRASE)
    secret.chmod(0o600)
    return write_settings(
        folder / "rescue.toml",
        {
            "destination": destination,
            "encryption": encryption or {"mode": "symmetric", "passphrase_file": str(secret)},
            "schedule": {"keep_full": 1},
            "selection": {"root": str(tree), "include": [str(tree)]},
            "duplicity": {"archive_dir": str(folder / "cache"), "retries": 1, **duplicity},
        },
    )


def keys_in(rgw: RgwServer, bucket: str) -> list[str]:
    listed = rgw.client().list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_round_trip_symmetric_with_the_secret_in_a_file(
    rgw: RgwServer, tmp_path: Path, sample_tree: Path
) -> None:
    """full, incremental, status, files, versions, restores as of each set, one file, verify,
    a drill, and retention; the volumes and rescue's records under the prefix only."""
    bucket = rgw.bucket()
    config = settings(tmp_path, sample_tree, s3_destination(rgw, tmp_path, bucket, "srv/web1"))

    first = rescue(config, "backup", "--full", "--json")
    assert first.code == 0, first.err
    as_of_full = tmp_path / "as-of-full"
    copy_tree(sample_tree, as_of_full)
    changed = mutate_sample_tree(sample_tree)
    time.sleep(1)
    second = rescue(config, "backup", "--incremental", "--json")
    assert second.code == 0, second.err
    assert second.json()["files_changed"] >= len(changed)

    stored = keys_in(rgw, bucket)
    assert all(key.startswith("srv/web1/") for key in stored), stored
    names = [key.removeprefix("srv/web1/") for key in stored]
    assert any(n.startswith("duplicity-full.") and n.endswith(".difftar.gpg") for n in names)
    assert any(n.startswith("duplicity-inc.") for n in names)
    assert "rescue-host.json" in names
    assert not any(n.startswith("rescue.lock") for n in names)  # let go after each run

    status = rescue(config, "status", "--json")
    assert status.code == 0, status.err
    sets = status.json()["sets"]
    assert [(s["kind"], s["chain"]) for s in sets] == [("full", 1), ("incremental", 1)]
    assert all(s["bytes"] > 0 for s in sets)  # from the bucket's listing of the volumes
    table = rescue(config, "status")
    assert table.code == 0 and f"{rgw.endpoint}/{bucket}/srv/web1" in table.out

    old = tmp_path / "restored-old"
    r = rescue(config, "restore", "/", "--to", str(old), "-t", str(sets[0]["time"]))
    assert r.code == 0, r.err
    assert compare_trees(as_of_full, old) == []
    new = tmp_path / "restored-new"
    r = rescue(config, "restore", "/", "--to", str(new))
    assert r.code == 0, r.err
    assert compare_trees(sample_tree, new) == []
    one = tmp_path / "app.conf"
    r = rescue(config, "restore", "etc/app/app.conf", "--to", str(one), "-t", str(sets[0]["time"]))
    assert r.code == 0, r.err
    assert one.read_bytes() == (as_of_full / "etc/app/app.conf").read_bytes()

    listed = rescue(config, "files", "--json")
    assert listed.code == 0, listed.err
    assert "etc/app/app.conf" in {f["path"] for f in listed.json()}
    versions = rescue(config, "versions", "etc/app/app.conf", "--json")
    assert versions.code == 0, versions.err
    assert versions.json()

    net = rescue(config, "net", "check")  # the endpoint's host and port
    assert net.code == 0, net.err
    verified = rescue(config, "verify", "etc")
    assert verified.code == 0, verified.err + verified.out
    drill = rescue(config, "drill", "--json")
    assert drill.code == 0, drill.err
    assert all(check["identical"] for check in drill.json()["checks"]), drill.out

    # retention keeps 1 chain: a new full removes the first chain from the bucket
    time.sleep(1)
    third = rescue(config, "backup", "--full", "--json")
    assert third.code == 0, third.err
    sets = rescue(config, "status", "--json").json()["sets"]
    assert [(s["kind"], s["chain"]) for s in sets] == [("full", 1)]
    assert not any("duplicity-inc." in key for key in keys_in(rgw, bucket))

    log = (tmp_path / "rescue.log").read_text()
    for text in (first.out, first.err, second.out, status.out, table.out, log):
        assert PASSPHRASE not in text and rgw.secret_key not in text


def test_gpg_keys_from_the_environment_and_two_shards(
    rgw: RgwServer, tmp_path: Path, sample_tree: Path, gpg_home: GpgHome
) -> None:
    """No key in the settings: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, as boto reads them.
    Two shards: shard 1 under prefix/shard-1/, and the restore merges both."""
    bucket = rgw.bucket()
    destination = {"method": "s3", "endpoint_url": rgw.endpoint, "bucket": bucket}
    encryption = {"mode": "gpg", "gpg_key": gpg_home.fingerprint, "gnupg_home": str(gpg_home.home)}
    config = settings(tmp_path, sample_tree, destination, encryption, shards=2)
    env = {"AWS_ACCESS_KEY_ID": rgw.access_key, "AWS_SECRET_ACCESS_KEY": rgw.secret_key}

    missing = rescue(config, "backup")
    assert missing.code == 3, missing.err
    assert "AWS_SECRET_ACCESS_KEY" in missing.err or "AWS_ACCESS_KEY_ID" in missing.err
    made = rescue(config, "backup", "--full", env=env)
    assert made.code == 0, made.err

    import socket

    prefix = socket.gethostname()  # the default prefix is {hostname}
    stored = keys_in(rgw, bucket)
    assert any(k.startswith(f"{prefix}/duplicity-full.") for k in stored), stored
    assert any(k.startswith(f"{prefix}/shard-1/duplicity-full.") for k in stored), stored
    assert f"{prefix}/rescue-shards.json" in stored

    out = tmp_path / "out"
    r = rescue(config, "restore", "/", "--to", str(out), env=env)
    assert r.code == 0, r.err
    assert compare_trees(sample_tree, out) == []
    log = (tmp_path / "rescue.log").read_text()
    assert rgw.secret_key not in log + made.out + made.err


def test_tls_with_the_ca_and_untrusted_without(
    rgw: RgwServer, tmp_path: Path, sample_tree: Path
) -> None:
    bucket = rgw.bucket()
    destination = s3_destination(rgw, tmp_path, bucket, tls=True)
    config = settings(tmp_path, sample_tree, destination)
    ok = rescue(config, "backup", "--full")
    assert ok.code == 0, ok.err
    del destination["tls_ca_file"]
    config = settings(tmp_path, sample_tree, destination)
    refused = rescue(config, "status")
    assert refused.code == 24, refused.err
    assert refused.err.count("rescue: error:") == 1 and "is not trusted" in refused.err
    assert "tls_ca_file" in refused.err


def test_the_errors_are_one_line_and_nothing_is_made(
    rgw: RgwServer, tmp_path: Path, sample_tree: Path
) -> None:
    bucket = rgw.bucket()

    def at(name: str, **how: Any) -> dict[str, object]:
        (tmp_path / name).mkdir()
        return s3_destination(rgw, tmp_path / name, **how)

    down = f"http://127.0.0.1:{free_port()}"
    cases = {
        "wrong-secret": (
            at("wrong-secret", bucket=bucket, keys=(rgw.access_key, "not-the-secret")),
            21,
            "refused the keys",
        ),
        "unknown-key": (at("unknown-key", bucket=bucket, keys=("NOSUCHKEY", "x")), 21, "refused"),
        "missing-bucket": (
            at("missing-bucket", bucket="no-such-bucket-here"),
            26,
            "the bucket no-such-bucket-here does not exist",
        ),
        "down": ({**at("down", bucket=bucket), "endpoint_url": down}, 20, "cannot reach"),
        "denied": (
            at("denied", bucket=bucket, keys=rgw.user("other-tenant")),
            27,
            "access denied",
        ),
    }
    for name, (destination, code, words) in cases.items():
        folder = tmp_path / name
        config = settings(folder, sample_tree, destination)
        began = time.monotonic()
        for command in (["backup"], ["status"], ["restore", "/", "--to", str(folder / "out")]):
            run = rescue(config, *command)
            assert run.code == code, (name, command, run.err)
            assert run.err.count("rescue: error:") == 1 and words in run.err, (name, run.err)
            assert rgw.secret_key not in run.err
        assert time.monotonic() - began < 60, name  # no retries of 30 s each
        assert not (folder / "out").exists()
    assert keys_in(rgw, bucket) == []
    assert "no-such-bucket-here" not in {b["Name"] for b in rgw.client().list_buckets()["Buckets"]}


def test_create_bucket(rgw: RgwServer, tmp_path: Path, sample_tree: Path) -> None:
    """Only on request: config check --create-bucket, or create_bucket = true."""
    name = f"made-{time.time_ns()}"
    config = settings(tmp_path, sample_tree, s3_destination(rgw, tmp_path, name))
    check = rescue(None, "config", "check", str(config), "--create-bucket")
    assert check.code == 0, check.err
    assert f"bucket {name}: created" in check.out
    again = rescue(None, "config", "check", str(config), "--create-bucket")
    assert f"bucket {name}: exists" in again.out
    assert rescue(config, "backup").code == 0

    other = f"made-by-backup-{time.time_ns()}"
    folder = tmp_path / "second"
    folder.mkdir()
    destination = {**s3_destination(rgw, folder, other), "create_bucket": True}
    made = rescue(settings(folder, sample_tree, destination), "backup")
    assert made.code == 0, made.err
    assert any(k.endswith(".difftar.gpg") for k in keys_in(rgw, other))


def test_fleet_status_over_twenty_hosts(rgw: RgwServer, tmp_path: Path) -> None:
    """20 hosts' real backups in one bucket, one of them three days old and one drilled: one
    table, read from the records beside the chains."""
    from concurrent.futures import ThreadPoolExecutor

    from rescue.backup.engine import Engine
    from rescue.config import load_settings

    bucket = rgw.bucket("fleet")
    configs = []
    for n in range(20):
        folder = tmp_path / f"host{n:02d}"
        (folder / "tree").mkdir(parents=True)
        (folder / "tree/data.txt").write_text(f"host {n}\n")
        prefix = f"dc{n % 2}/host{n:02d}"  # two levels: the walk finds hosts below "dc0/"
        configs.append(
            settings(folder, folder / "tree", s3_destination(rgw, folder, bucket, prefix))
        )
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda c: rescue(c, "backup"), configs[1:]))
    assert [r.code for r in runs] == [0] * 19, [r.err for r in runs if r.code]
    three_days_ago = time.time() - 3 * 86400  # host00's only backup: made with the clock back
    Engine(load_settings(configs[0])).backup("full", now=three_days_ago)
    drilled = rescue(configs[5], "drill")
    assert drilled.code == 0, drilled.err

    reader = tmp_path / "reader"
    reader.mkdir()
    fleet_config = settings(reader, reader, s3_destination(rgw, reader, bucket, "unused"))
    began = time.monotonic()
    shown = rescue(fleet_config, "fleet", "status", "--json")
    seconds = time.monotonic() - began
    assert shown.code == 35, shown.err  # one host is stale
    assert "1 stale host(s): dc0/host00" in shown.err
    hosts = {h["prefix"]: h for h in shown.json()}
    assert sorted(hosts) == sorted(f"dc{n % 2}/host{n:02d}" for n in range(20))
    assert [p for p, h in hosts.items() if h["stale"]] == ["dc0/host00"]
    assert abs(hosts["dc0/host00"]["last_full"] - three_days_ago) < 2
    fresh = hosts["dc1/host01"]
    assert fresh["chains"] == 1 and fresh["sets"] == 1 and fresh["last_incremental"] is None
    assert fresh["age_seconds"] < 600
    assert hosts["dc1/host05"]["last_drill"]["outcome"] == "identical"
    assert all(h["last_drill"] is None for p, h in hosts.items() if p != "dc1/host05")
    assert seconds < 30, seconds

    table = rescue(fleet_config, "fleet", "status", "--under", "dc1", "--stale-after", "100")
    assert table.code == 0, table.err
    assert "10 host(s), 0 stale" in table.out
    assert "dc1/host05" in table.out and "identical" in table.out and "dc0/" not in table.out


def test_guided_recovery_asks_for_an_s3_destination(rgw: RgwServer, tmp_path: Path) -> None:
    """A new machine with only the ISO: the S3 answers make settings that reach the bucket (the
    answers stand for the admin at the console; the bucket is real)."""
    from rescue.backup import s3
    from rescue.prompts import Question
    from rescue.steps.guided_settings import ask_settings

    bucket = rgw.bucket()
    answers = {
        "recover.settings_file": "",
        "destination.method": "s3",
        "destination.endpoint_url": rgw.endpoint,
        "destination.bucket": bucket,
        "destination.prefix": "servers/web1",
        "destination.access_key_id": rgw.access_key,
        "destination.secret_access_key": rgw.secret_key,
        "encryption.mode": "none",
    }
    asked: list[str] = []

    def ask(question: Question) -> object:
        asked.append(question.id)
        return answers[question.id]

    settings, source = ask_settings(ask)
    assert source == "" and asked == list(answers)
    assert settings.destination.path == "servers/web1"  # the prefix as typed, no {hostname}
    assert s3.check(settings) is False  # the bucket exists and answers to these keys
    assert rgw.secret_key not in str(settings.redacted())


def test_a_host_limited_to_its_prefix(rgw: RgwServer, tmp_path: Path, sample_tree: Path) -> None:
    """A bucket policy gives a host's keys its own prefix only (and the listing of the bucket,
    which duplicity's start needs): its backups work; another prefix is one line, exit 27, and
    nothing is written there."""
    bucket = rgw.bucket("policy")
    user = "web1-only"
    keys = rgw.user(user)
    rgw.grant_prefix(bucket, user, "hosts/web1", list_whole_bucket=True)
    own = settings(tmp_path, sample_tree, s3_destination(rgw, tmp_path, bucket, "hosts/web1",
                                                         keys=keys))  # fmt: skip
    made = rescue(own, "backup")
    assert made.code == 0, made.err
    out = tmp_path / "out"
    assert rescue(own, "restore", "/", "--to", str(out)).code == 0
    assert compare_trees(sample_tree, out) == []

    db1 = tmp_path / "db1"  # another host's backup, made with the owner's keys
    db1.mkdir()
    assert rescue(settings(db1, sample_tree, s3_destination(rgw, db1, bucket, "hosts/db1")),
                  "backup").code == 0  # fmt: skip
    before = keys_in(rgw, bucket)
    other_folder = tmp_path / "other"
    other_folder.mkdir()
    other = settings(other_folder, sample_tree,
                     s3_destination(rgw, other_folder, bucket, "hosts/db1", keys=keys))  # fmt: skip
    # status reads names alone, which the bucket-wide listing allows; what needs the objects is
    # refused
    assert rescue(other, "status").code == 0
    for command in (["backup"], ["restore", "/", "--to", str(other_folder / "out")]):
        refused = rescue(other, *command)
        assert refused.code == 27, (command, refused.err)
        assert refused.err.count("rescue: error:") == 1 and "access denied" in refused.err
    assert keys_in(rgw, bucket) == before
    assert not (other_folder / "out").exists()


def test_the_scheduled_backup_runs_over_s3(
    rgw: RgwServer, tmp_path: Path, sample_tree: Path
) -> None:
    """`rescue schedule install` into a systemd-shaped root, then its service's command run as
    systemd runs it (no environment of ours: the keys come from the settings' files): a full,
    then the auto mode's incremental."""
    import shlex
    import subprocess

    bucket = rgw.bucket("sched")
    config = settings(tmp_path, sample_tree, s3_destination(rgw, tmp_path, bucket))
    root = tmp_path / "root"
    (root / "lib/systemd").mkdir(parents=True)
    (root / "lib/systemd/systemd").write_text("")
    installed = rescue(config, "schedule", "install", "--root", str(root))
    assert installed.code == 0, installed.err
    service = (root / "etc/systemd/system/rescue-backup.service").read_text()
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    command = shlex.split(exec_start.split("=", 1)[1])
    clean = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    for kind in ("full", "incremental"):
        done = subprocess.run(command, capture_output=True, text=True, env=clean, check=False)
        assert done.returncode == 0, done.stderr
        sets = rescue(config, "status", "--json").json()["sets"]
        assert sets[-1]["kind"] == kind
        time.sleep(1)


def test_what_each_s3_error_code_means() -> None:
    """The codes an S3 server answers with, as rescue's errors and exit codes."""
    from rescue.backup.s3 import Place, from_code

    where = Place("https://s3.example.org", "backups", "web1")
    cases = {
        "InvalidAccessKeyId": 21,
        "SignatureDoesNotMatch": 21,
        "NoSuchBucket": 26,
        "AccessDenied": 27,
        "InternalError": 20,  # the server's own failure: there, but not serving now
        "SlowDown": 20,
    }
    for code, exit_code in cases.items():
        error = from_code(code, where, f"An error occurred ({code})")
        assert error.exit_code == exit_code, code
        assert "https://s3.example.org" in str(error), code
