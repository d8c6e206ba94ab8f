"""The settings file: good files load, every bad one names its key and line, secrets stay secret.

The tables are the point: a new rule is one row here. The GPG tests use a real, throwaway
GNUPGHOME with a fresh key, because python-gnupg's parsing of gpg's output is exactly what could
break.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner, Result

from rescue.cli.config_cmd import config
from rescue.config import (
    DEFAULT_CONFIG_PATH,
    SECTIONS,
    Settings,
    check_gpg_key,
    has_secret_key,
    load_settings,
    sample_settings,
)
from rescue.errors import ConfigError, GpgKeyError, InsecureConfigError

FINGERPRINT = "SHA256:" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+/abcde"
SECRET = "S3cr3t-inline-pw-7f9a"
MINIMAL = '[destination]\nmethod = "file"\npath = "/var/backups/rescue"\n'


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "rescue.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def config_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return caught.value


# -- good files --------------------------------------------------------------------------------

SFTP_FULL = f"""\
[destination]
method = "sftp"
path = "/srv/backups/web1"
host = "backup.example.org"
port = 2222
user = "backup"
password_env = "RESCUE_DESTINATION_PASSWORD"
ssh_key_file = "/etc/rescue/id_ed25519"
host_key_fingerprint = "{FINGERPRINT}"

[encryption]
mode = "symmetric"
passphrase_file = "/etc/rescue/passphrase"

[schedule]
full_every = "monthly"
keep_full = 2
incremental_every = "weekly"
start_time = "23:59"

[selection]
root = "/srv"
include = ["/srv/www", "/srv/db/"]
exclude = ["/srv/www/cache", "/proc"]
exclude_globs = ["*.avi", "/srv/www/*/tmp"]

[duplicity]
archive_dir = "/var/cache/rescue/duplicity"
volsize = 50
retries = 0
"""

GPG = """\
[destination]
method = "ftps"
path = "backups/web1"
host = "192.0.2.7"

[encryption]
mode = "gpg"
gpg_key = "0x89abcdef01234567"
gnupg_home = "/root/.gnupg"
passphrase_env = "RESCUE_GPG_PASSPHRASE"
"""

SYMMETRIC_ENV = (
    MINIMAL
    + """
[encryption]
mode = "symmetric"
passphrase_env = "RESCUE_PASSPHRASE"

[schedule]
full_every = "daily"
incremental_every = "hourly"
start_time = 02:30:00
"""
)


def _minimal(s: Settings) -> None:
    assert (s.destination.method, s.destination.path) == ("file", "/var/backups/rescue")
    assert s.encryption.mode == "none"
    assert (s.schedule.full_every, s.schedule.keep_full) == ("weekly", 4)
    assert (s.schedule.incremental_every, s.schedule.start_time) == ("daily", "02:30")
    assert (s.selection.root, s.selection.include) == ("/", ["/"])
    assert s.selection.exclude == ["/mnt", "/dev", "/media", "/sys", "/proc", "/run", "/tmp"]
    assert s.selection.exclude_globs == []
    assert (s.duplicity.archive_dir, s.duplicity.volsize) == ("/var/cache/rescue/duplicity", 25)


def _sftp(s: Settings) -> None:
    d = s.destination
    assert (d.method, d.host, d.port, d.user) == ("sftp", "backup.example.org", 2222, "backup")
    assert d.host_key_fingerprint == FINGERPRINT
    assert s.encryption.passphrase_file == "/etc/rescue/passphrase"
    assert (s.schedule.full_every, s.schedule.incremental_every) == ("monthly", "weekly")
    assert s.schedule.start.hour == 23
    assert s.selection.include == ["/srv/www", "/srv/db"]  # normalised
    assert (s.duplicity.volsize, s.duplicity.retries) == (50, 0)


def _gpg(s: Settings) -> None:
    assert s.encryption.gpg_key == "89ABCDEF01234567"
    assert s.destination.port is None


def _symmetric(s: Settings) -> None:
    assert s.encryption.passphrase_env == "RESCUE_PASSPHRASE"
    assert s.schedule.start_time == "02:30"  # an unquoted TOML time is accepted


def _include_defaults_to_root(s: Settings) -> None:
    assert (s.selection.root, s.selection.include) == ("/srv", ["/srv"])


@pytest.mark.parametrize(
    ("text", "check"),
    [
        pytest.param(MINIMAL, _minimal, id="minimal-file"),
        pytest.param(SFTP_FULL, _sftp, id="sftp-full"),
        pytest.param(GPG, _gpg, id="gpg"),
        pytest.param(SYMMETRIC_ENV, _symmetric, id="symmetric-env"),
        pytest.param(
            MINIMAL + '[selection]\nroot = "/srv"\n',
            _include_defaults_to_root,
            id="include-defaults-to-root",
        ),
    ],
)
def test_good_files(tmp_path: Path, text: str, check: Callable[[Settings], None]) -> None:
    path = write(tmp_path, text)
    settings = load_settings(path)
    assert settings.path == path
    check(settings)


# -- bad files: (text, line, substring of that line's message) ----------------------------------


def sftp(*lines: str) -> str:
    """An sftp destination (lines 1-4) followed by lines 5...; handy for counting lines."""
    head = '[destination]\nmethod = "sftp"\npath = "/srv/b"\nhost = "h"\n'
    return head + "".join(f"{line}\n" for line in lines)


def minimal(*lines: str) -> str:
    """MINIMAL (lines 1-3) followed by lines 4..."""
    return MINIMAL + "".join(f"{line}\n" for line in lines)


BAD = [
    ("unknown-key", minimal('hots = "x"'), 4, "destination.hots: unknown key (did you mean host?)"),
    ("unknown-section", minimal("[shedule]", "keep_full = 2"), 4, "shedule: unknown section"),
    (
        "bad-method",
        '[destination]\nmethod = "rsync"\npath = "/x"\n',
        2,
        "destination.method: must be one of: file, ftp, ftps, sftp, scp, s3",
    ),
    (
        "s3-with-path",
        '[destination]\nmethod = "s3"\nbucket = "b1b"\npath = "bucket"\n',
        4,
        "destination.path: not used by method s3",
    ),
    ("s3-no-bucket", '[destination]\nmethod = "s3"\n', 1, "destination.bucket: missing"),
    (
        "s3-bad-bucket",
        '[destination]\nmethod = "s3"\nbucket = "My_Bucket"\n',
        3,
        "destination.bucket: must be an S3 bucket name",
    ),
    (
        "s3-bad-prefix",
        '[destination]\nmethod = "s3"\nbucket = "b1b"\nprefix = "a/../b"\n',
        4,
        "destination.prefix: must be names",
    ),
    (
        "s3-endpoint-with-path",
        '[destination]\nmethod = "s3"\nbucket = "b1b"\nendpoint_url = "http://h:1/b1b"\n',
        4,
        "destination.endpoint_url: must be http:// or https:// and a host",
    ),
    (
        "s3-two-secrets",
        '[destination]\nmethod = "s3"\nbucket = "b1b"\nsecret_access_key_env = "A"\n'
        'secret_access_key_file = "/x"\n',
        4,
        "destination.secret_access_key_env: give only one of the three",
    ),
    (
        "s3-ca-on-http",
        '[destination]\nmethod = "s3"\nbucket = "b1b"\nendpoint_url = "http://h:1"\n'
        'tls_ca_file = "/ca.pem"\n',
        5,
        "destination.tls_ca_file: only for an https:// endpoint_url",
    ),
    ("bucket-on-sftp", sftp('bucket = "b1b"'), 5, "destination.bucket: only for method s3"),
    (
        "missing-path",
        '# settings\n[destination]\nmethod = "file"\n',
        2,
        "destination.path: missing (the directory that holds the backups)",
    ),
    ("missing-destination", "[schedule]\nkeep_full = 2\n", 1, "destination: missing"),
    ("empty-file", "", 1, "destination: missing"),
    (
        "destination-not-table",
        'destination = "/x"\n',
        1,
        "destination: must be a table ([destination])",
    ),
    ("host-on-file", minimal('host = "h"'), 4, "destination.host: not used by method file"),
    ("password-on-file", minimal('password_env = "X"'), 4, "destination.password_env: not used"),
    ("relative-file-path", '[destination]\nmethod = "file"\npath = "b"\n', 3, "absolute path"),
    (
        "scp-without-host",
        '[destination]\nmethod = "scp"\npath = "/srv/b"\n',
        1,
        "destination.host: missing (required for method scp)",
    ),
    ("empty-path", '[destination]\nmethod = "ftp"\npath = ""\nhost = "h"', 3, "must not be empty"),
    ("bad-host", sftp().replace('"h"', '"user@h"'), 4, "destination.host: must be a host name"),
    ("port-zero", sftp("port = 0"), 5, "destination.port: must be between 1 and 65535"),
    ("port-too-big", sftp("port = 65536"), 5, "destination.port: must be between 1 and 65535"),
    ("port-string", sftp('port = "22"'), 5, "destination.port: must be a whole number"),
    ("port-bool", sftp("port = true"), 5, "destination.port: must be a whole number"),
    (
        "two-password-sources",
        sftp('password_file = "/etc/rescue/pw"', 'password_env = "PW"'),
        6,
        "destination.password_env: give only one of password, password_file, password_env",
    ),
    ("relative-password-file", sftp('password_file = "pw"'), 5, "absolute path"),
    ("bad-env-name", sftp('password_env = "1-PW"'), 5, "name of an environment variable"),
    (
        "bad-fingerprint",
        sftp('host_key_fingerprint = "SHA256:abc"'),
        5,
        "destination.host_key_fingerprint: must look like SHA256:",
    ),
    (
        "md5-fingerprint",
        sftp('host_key_fingerprint = "MD5:12:34"'),
        5,
        "as `ssh-keygen -lf` prints it",
    ),
    (
        "fingerprint-on-ftp",
        sftp(f'host_key_fingerprint = "{FINGERPRINT}"').replace('"sftp"', '"ftp"'),
        5,
        "destination.host_key_fingerprint: only for method sftp or scp",
    ),
    (
        "bad-mode",
        minimal("[encryption]", 'mode = "aes"'),
        5,
        "must be one of: none, symmetric, gpg",
    ),
    (
        "symmetric-without-passphrase",
        minimal("", "[encryption]", 'mode = "symmetric"'),
        5,
        "encryption.passphrase_file: missing: mode symmetric needs passphrase_file or",
    ),
    (
        "symmetric-two-passphrases",
        minimal(
            "[encryption]", 'mode = "symmetric"', 'passphrase_env = "P"', 'passphrase_file = "/p"'
        ),
        6,
        "encryption.passphrase_env: give only one of passphrase_file, passphrase_env",
    ),
    (
        "gpg-key-on-symmetric",
        minimal(
            "[encryption]", 'mode = "symmetric"', 'passphrase_env = "P"', 'gpg_key = "ABCD1234"'
        ),
        7,
        'encryption.gpg_key: only for mode "gpg"',
    ),
    (
        "gpg-without-key",
        minimal("[encryption]", 'mode = "gpg"'),
        4,
        "encryption.gpg_key: missing (mode gpg needs the key id",
    ),
    (
        "gpg-bad-key",
        minimal("[encryption]", 'mode = "gpg"', 'gpg_key = "ABCDEF1"'),
        6,
        "encryption.gpg_key: must be a key id or fingerprint of 8, 16 or 40 hex digits",
    ),
    (
        "passphrase-without-encryption",
        minimal("[encryption]", 'passphrase_env = "P"'),
        5,
        'encryption.passphrase_env: not used when mode is "none"',
    ),
    (
        "incremental-not-shorter",
        minimal("[schedule]", 'full_every = "weekly"', 'incremental_every = "weekly"'),
        6,
        "schedule.incremental_every: must be more frequent than full_every",
    ),
    (
        "daily-full-with-default-incremental",
        minimal("[schedule]", 'full_every = "daily"'),
        4,
        "must be more frequent than full_every (daily is not shorter than daily)",
    ),
    ("bad-full-every", minimal("[schedule]", 'full_every = "yearly"'), 5, "daily, weekly, monthly"),
    ("bad-start-time", minimal("[schedule]", 'start_time = "2:30"'), 5, "schedule.start_time: "),
    ("start-time-24h", minimal("[schedule]", 'start_time = "24:00"'), 5, "HH:MM (24-hour)"),
    ("keep-full-zero", minimal("[schedule]", "keep_full = 0"), 5, "keep_full: must be at least 1"),
    ("keep-full-string", minimal("[schedule]", 'keep_full = "4"'), 5, "must be a whole number"),
    (
        "relative-include",
        minimal("[selection]", 'include = ["/etc", "home"]'),
        5,
        "selection.include[1]: must be an absolute path",
    ),
    (
        "include-outside-root",
        minimal("[selection]", 'root = "/srv"', 'include = ["/srv/a", "/etc"]'),
        6,
        "selection.include[1]: /etc is not inside root /srv",
    ),
    (
        "include-escapes-root",
        minimal("[selection]", 'root = "/srv"', 'include = ["/srv/../etc"]'),
        6,
        "must not contain '..'",
    ),
    ("include-empty", minimal("[selection]", "include = []"), 5, "include: must not be empty"),
    ("include-not-list", minimal("[selection]", 'include = "/"'), 5, "must be a list"),
    ("relative-root", minimal("[selection]", 'root = "srv"'), 5, "root: must be an absolute path"),
    ("relative-exclude", minimal("[selection]", 'exclude = ["tmp"]'), 5, "exclude[0]: must be"),
    ("empty-glob", minimal("[selection]", 'exclude_globs = [" "]'), 5, "must not hold empty"),
    ("volsize", minimal("[duplicity]", "volsize = 0"), 5, "volsize: must be between 1 and 10000"),
    ("archive-dir", minimal("[duplicity]", 'archive_dir = "cache"'), 5, "archive_dir: must be"),
    ("toml-syntax", minimal('user = "x', "port = 1"), 4, "invalid TOML: "),
    ("toml-duplicate", minimal('path = "/y"'), 4, "invalid TOML: "),
    ("toml-unterminated-end", minimal('user = """x'), 4, "Unterminated string"),
    (
        "indented-and-dotted",
        '  [ destination ]\n  method = "file"\n  path="/x"\n  selection . root = 1\n',
        4,
        "destination.selection: unknown key",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_files(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path, text)
    error = config_error(path)
    lines = str(error).splitlines()
    assert len(lines) == 1, str(error)
    assert lines[0].startswith(f"{path}:{line}: "), (lines[0], line)
    assert message in lines[0], (message, lines[0])
    assert error.exit_code == 3


def test_several_problems_are_one_error_in_file_order(tmp_path: Path) -> None:
    text = """\
[schedule]
start_time = '9'
keep_full = 0
[destination]
method = "file"
path = "/var/backups/rescue"
port = 70000

[selection]
include = ["rel"]
"""
    lines = str(config_error(write(tmp_path, text))).splitlines()
    assert [ln.split(": ")[0].rsplit(":", 1)[1] for ln in lines] == ["2", "3", "7", "10"]
    assert [ln.split(": ")[1] for ln in lines] == [
        "schedule.start_time",
        "schedule.keep_full",
        "destination.port",
        "selection.include[0]",
    ]


def test_built_in_code_errors_have_no_file_prefix() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.model_validate({"destination": {"method": "file", "path": "/x", "port": 22}})
    assert str(caught.value) == "destination.port: not used by method file (a local directory)"
    settings = Settings.model_validate({"destination": {"method": "file", "path": "/x"}})
    assert settings.path is None


def test_missing_file(tmp_path: Path) -> None:
    message = str(config_error(tmp_path / "nope.toml"))
    assert (
        message
        == f"no settings file at {tmp_path / 'nope.toml'}; create one with: rescue config init"
    )


# -- secrets -----------------------------------------------------------------------------------

INLINE = sftp(f'password = "{SECRET}"')


def test_inline_password_in_readable_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, INLINE, mode=0o644)
    with pytest.raises(InsecureConfigError) as caught:
        load_settings(path)
    assert str(caught.value) == (
        f"{path} is readable by group or others (mode 0644) and holds destination.password; "
        f"run: chmod 600 {path}"
    )
    assert caught.value.exit_code == 4
    path.chmod(0o640)
    with pytest.raises(InsecureConfigError):
        load_settings(path)


def test_inline_password_at_0600_is_accepted(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, INLINE, mode=0o600))
    assert settings.destination_password() == SECRET


def test_readable_file_without_inline_secret_is_accepted(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, SFTP_FULL, mode=0o644)).destination.port == 2222


@pytest.mark.parametrize(
    ("content", "expected"),
    [("pw", "pw"), ("pw\n", "pw"), ("pw\n\n", "pw\n"), ("p w \n", "p w "), ("pw\r\n", "pw")],
)
def test_password_file(tmp_path: Path, content: str, expected: str) -> None:
    secret = tmp_path / "pw"
    secret.write_text(content)
    secret.chmod(0o600)
    settings = load_settings(write(tmp_path, sftp(f'password_file = "{secret}"')))
    assert settings.destination_password() == expected


def test_password_file_problems_name_the_key(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    path = write(tmp_path, sftp(f'password_file = "{secret}"'))
    settings = load_settings(path)
    with pytest.raises(ConfigError) as caught:
        settings.destination_password()
    assert str(caught.value) == f"{path}:5: destination.password_file: {secret} does not exist"
    secret.write_text(SECRET)
    secret.chmod(0o644)
    with pytest.raises(InsecureConfigError) as insecure:
        settings.destination_password()
    assert f"{secret} is readable by group or others (mode 0644)" in str(insecure.value)
    assert f"run: chmod 600 {secret}" in str(insecure.value)
    assert SECRET not in str(insecure.value)
    secret.chmod(0o600)
    assert settings.destination_password() == SECRET


def test_password_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, sftp('password_env = "RESCUE_TEST_PW"'))
    settings = load_settings(path)
    monkeypatch.delenv("RESCUE_TEST_PW", raising=False)
    with pytest.raises(ConfigError) as caught:
        settings.destination_password()
    assert str(caught.value) == (
        f"{path}:5: destination.password_env: the environment variable RESCUE_TEST_PW is not set"
    )
    monkeypatch.setenv("RESCUE_TEST_PW", SECRET)
    assert settings.destination_password() == SECRET


def test_no_password_is_none() -> None:
    settings = Settings.model_validate(
        {"destination": {"method": "sftp", "path": "/b", "host": "h"}}
    )
    assert settings.destination_password() is None
    assert settings.passphrase() is None


def test_passphrase_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESCUE_TEST_PASSPHRASE", "from the env")
    from_env = load_settings(
        write(tmp_path, SYMMETRIC_ENV.replace("RESCUE_PASSPHRASE", "RESCUE_TEST_PASSPHRASE"))
    )
    assert from_env.passphrase() == "from the env"
    file = tmp_path / "passphrase"
    file.write_text("from the file\n")
    file.chmod(0o600)
    from_file = Settings.model_validate(
        {
            "destination": {"method": "file", "path": "/b"},
            "encryption": {"mode": "symmetric", "passphrase_file": str(file)},
        }
    )
    assert from_file.passphrase() == "from the file"
    monkeypatch.delenv("RESCUE_TEST_PASSPHRASE")
    with pytest.raises(
        ConfigError, match=r":7: encryption.passphrase_env: .*RESCUE_TEST_PASSPHRASE is not set"
    ):
        from_env.passphrase()


def test_secrets_never_shown(tmp_path: Path) -> None:
    path = write(tmp_path, INLINE)
    settings = load_settings(path)
    for text in (
        str(settings),
        repr(settings),
        repr(settings.destination),
        json.dumps(settings.redacted()),
    ):
        assert SECRET not in text
    assert settings.redacted()["destination"]["password"] == "***"
    # a file or variable NAME is not a secret and stays
    named = Settings.model_validate(
        {"destination": {"method": "ftp", "path": "b", "host": "h", "password_env": "FTP_PW"}}
    )
    assert named.redacted()["destination"]["password_env"] == "FTP_PW"

    shown = invoke(["show", str(path)])
    shown_json = invoke(["show", "--json", str(path)])
    assert SECRET not in shown.output + shown_json.output
    assert json.loads(shown_json.output)["destination"]["password"] == "***"

    # error messages of a file holding the secret, valid or not, never carry it
    for broken in (
        INLINE + "port = 0\n",
        INLINE.replace(f'"{SECRET}"', f'"{SECRET}'),
        INLINE.replace(f'"{SECRET}"', SECRET),
        INLINE + "[destination.x]\n",
        INLINE.replace("[destination]", "[destination]\nfile = 1"),
    ):
        message = str(config_error(write(tmp_path, broken)))
        assert SECRET not in message, message
    with pytest.raises(ConfigError) as caught:
        Settings.model_validate(
            {"destination": {"method": "file", "path": "/b", "password": SECRET}}
        )
    assert SECRET not in str(caught.value)


# -- the CLI -----------------------------------------------------------------------------------


def invoke(args: list[str], config_path: Path | None = None) -> Result:
    """Run the `config` group on its own, with the root group's obj when config_path is given."""
    obj = SimpleNamespace(config_path=config_path) if config_path else None
    return CliRunner().invoke(config, args, obj=obj, catch_exceptions=True)


def test_init_then_load(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "rescue" / "rescue.toml"
    result = invoke(["init"], config_path=path)
    assert result.exit_code == 0, result.output
    assert f"wrote {path}" in result.output
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "etc").stat().st_mode & 0o777 == 0o700
    assert path.parent.stat().st_mode & 0o777 == 0o700
    settings = load_settings(path)
    assert (settings.destination.method, settings.destination.path) == (
        "file",
        "/var/backups/rescue",
    )
    assert (
        settings.redacted()
        == Settings.model_validate(
            {"destination": {"method": "file", "path": "/var/backups/rescue"}}
        ).redacted()
    )


def test_init_takes_an_explicit_path(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    assert invoke(["init", str(path)], config_path=tmp_path / "global.toml").exit_code == 0
    assert path.exists() and not (tmp_path / "global.toml").exists()


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "rescue.toml"
    path.write_text("mine\n")
    path.chmod(0o644)
    result = invoke(["init"], config_path=path)
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == f"{path} exists; add --force to overwrite it"
    assert path.read_text() == "mine\n"
    forced = invoke(["init", "--force"], config_path=path)
    assert forced.exit_code == 0, forced.output
    assert path.read_text() == sample_settings()
    assert path.stat().st_mode & 0o777 == 0o600
    # the replaced file is kept beside it, as it was; no temporary is left behind
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[0] == "rescue.toml" and len(names) == 2, names
    kept = tmp_path / names[1]
    assert kept.name.startswith("rescue.toml.replaced-") and kept.read_text() == "mine\n"
    assert kept.stat().st_mode & 0o777 == 0o644
    assert f"kept as {kept}" in forced.output


def test_sample_covers_every_key() -> None:
    """Each commented `# key = value` is valid TOML and a real key of its section."""
    sample = sample_settings()
    section = ""
    seen: dict[str, set[str]] = {}
    for line in sample.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
            seen[section] = set()
        elif _is_key_line(line):
            seen[section] |= set(tomllib.loads(line.removeprefix("# ")))
    for name, model in SECTIONS:
        assert seen[name] == set(model.model_fields), name


def _is_key_line(line: str) -> bool:
    parts = line.removeprefix("# ").split(" = ", 1)
    return len(parts) == 2 and parts[0].isidentifier()


def test_check(tmp_path: Path) -> None:
    path = write(tmp_path, SFTP_FULL)
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("pp")
    passphrase.chmod(0o600)
    path.write_text(SFTP_FULL.replace("/etc/rescue/passphrase", str(passphrase)))
    result = invoke(["check"], config_path=path)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{path}: OK"
    assert lines[1] == (
        "method sftp, destination backup@backup.example.org:2222:/srv/backups/web1, "
        "encryption symmetric, keep 2 full chains"
    )
    assert lines[2] == "you can restore any week of the last 2 months (about 60 days)"
    passphrase.chmod(0o644)
    assert isinstance(invoke(["check"], config_path=path).exception, InsecureConfigError)


def test_check_reports_the_error(tmp_path: Path) -> None:
    path = write(tmp_path, minimal("port = 1"))
    result = invoke(["check"], config_path=path)
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception).startswith(f"{path}:4: destination.port")


def test_without_root_obj_the_default_path_is_used() -> None:
    if DEFAULT_CONFIG_PATH.exists():
        pytest.skip(f"{DEFAULT_CONFIG_PATH} exists on this machine")
    result = invoke(["check"])
    assert isinstance(result.exception, ConfigError)
    assert str(DEFAULT_CONFIG_PATH) in str(result.exception)


def test_show_round_trips(tmp_path: Path) -> None:
    path = write(tmp_path, SFTP_FULL)
    settings = load_settings(path)
    shown = invoke(["show"], config_path=path)
    assert shown.exit_code == 0, shown.output
    assert Settings.model_validate(tomllib.loads(shown.output)).redacted() == settings.redacted()
    as_json = invoke(["show", "--json"], config_path=path)
    assert json.loads(as_json.output) == settings.redacted()


def test_through_the_root_group(tmp_path: Path) -> None:
    """--config on the root group reaches the commands; errors end as one line and exit 3."""
    from rescue.cli.main import cli

    path = tmp_path / "rescue.toml"
    log = ["--log-file", str(tmp_path / "rescue.log")]
    runner = CliRunner()
    assert runner.invoke(cli, ["--config", str(path), *log, "config", "init"]).exit_code == 0
    ok = runner.invoke(cli, ["--config", str(path), *log, "config", "check"])
    assert ok.exit_code == 0 and ok.output.startswith(f"{path}: OK"), ok.output
    path.write_text(path.read_text() + "bogus = 1\n")
    bad = runner.invoke(cli, ["--config", str(path), *log, "config", "check"])
    assert bad.exit_code == 3
    last = SECTIONS[-1][0]  # the sample's last section, which the appended key falls into
    assert f"{last}.bogus: unknown key" in bad.output


# -- GPG ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gnupg_home() -> Iterator[tuple[Path, str]]:
    """A fresh GNUPGHOME (short path, for the agent socket) with one key; (home, fingerprint)."""
    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed")
    home = Path(tempfile.mkdtemp(prefix="rescue-cfg-gpg-", dir="/tmp"))
    home.chmod(0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    try:
        subprocess.run(
            [
                "gpg",
                "--batch",
                "--passphrase",
                "",
                "--quick-gen-key",
                "test@example.invalid",
                "default",
                "default",
                "never",
            ],
            env=env,
            check=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )
        out = subprocess.run(
            ["gpg", "--batch", "--with-colons", "--list-keys"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        fingerprint = next(ln.split(":")[9] for ln in out.splitlines() if ln.startswith("fpr:"))
        yield home, fingerprint
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def gpg_settings(home: Path, key: str) -> Settings:
    return Settings.model_validate(
        {
            "destination": {"method": "file", "path": "/b"},
            "encryption": {"mode": "gpg", "gpg_key": key, "gnupg_home": str(home)},
        }
    )


def test_gpg_known_key(gnupg_home: tuple[Path, str]) -> None:
    home, fingerprint = gnupg_home
    for key in (fingerprint, fingerprint[-16:], fingerprint[-8:].lower()):
        settings = gpg_settings(home, key)
        check_gpg_key(settings)
        assert has_secret_key(settings)


def test_gpg_unknown_key(gnupg_home: tuple[Path, str]) -> None:
    home, _ = gnupg_home
    settings = gpg_settings(home, "0123456789ABCDEF")
    with pytest.raises(GpgKeyError) as caught:
        check_gpg_key(settings)
    assert str(caught.value) == f"GPG key 0123456789ABCDEF is not in the keyring {home}"
    assert caught.value.exit_code == 11
    assert not has_secret_key(settings)


def test_gpg_missing_home(tmp_path: Path) -> None:
    with pytest.raises(GpgKeyError, match="does not exist"):
        check_gpg_key(gpg_settings(tmp_path / "nowhere", "0123456789ABCDEF"))
    assert not (tmp_path / "nowhere").exists()


def test_gpg_check_skips_other_modes() -> None:
    check_gpg_key(Settings.model_validate({"destination": {"method": "file", "path": "/b"}}))


def test_check_runs_the_gpg_check(tmp_path: Path, gnupg_home: tuple[Path, str]) -> None:
    home, fingerprint = gnupg_home
    text = minimal(
        "[encryption]", 'mode = "gpg"', f'gpg_key = "{fingerprint}"', f'gnupg_home = "{home}"'
    )
    path = write(tmp_path, text)
    result = invoke(["check"], config_path=path)
    assert result.exit_code == 0, result.output
    assert f"encryption gpg key {fingerprint}" in result.output
    path.write_text(text.replace(fingerprint, "0123456789ABCDEF"))
    assert isinstance(invoke(["check"], config_path=path).exception, GpgKeyError)
