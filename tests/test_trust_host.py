"""`rescue config check` and an unpinned sftp host; `rescue config trust-host` against real sshd.

check must fail (exit 22, naming the key and the fix) where a backup would; trust-host must
write the very fingerprint the server's key file has, change nothing else in the file (comments,
order, mode 0600), and change nothing at all on a no or when the host is unreachable.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from clirun import RESCUE, rescue
from servers import SshServer, free_port

from rescue.backup.pinning import with_fingerprint
from rescue.errors import ChangedHostKeyError, UnknownHostKeyError, UnreachableError

FP = "SHA256:" + "A" * 43


def unpinned(tmp_path: Path, sshd: SshServer, tree: Path, port: int | None = None) -> Path:
    """A hand-written settings file (comments, an odd order), no host_key_fingerprint."""
    config = tmp_path / "rescue.toml"
    config.write_text(
        "# backups of web1, by hand\n"
        "[destination]\n"
        'method = "sftp"   # over ssh\n'
        f'host = "127.0.0.1"\n'
        f"port = {port or sshd.port}\n"
        f'user = "{sshd.user}"\n'
        "# the key rescue logs in with\n"
        f'ssh_key_file = "{sshd.client_key}"\n'
        f'path = "{tmp_path / "dest"}"\n'
        "\n"
        "[encryption]\n"
        'mode = "none"\n'
        "\n"
        "[selection]\n"
        f'root = "{tree}"\n'
        f'include = ["{tree}"]\n'
        "\n"
        "[duplicity]\n"
        f'archive_dir = "{tmp_path / "cache"}"\n'
        "retries = 1\n"
    )
    config.chmod(0o640)
    return config


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if not line.startswith("  (log:")]


def test_check_refuses_an_unpinned_ssh_host(tmp_path: Path, sshd: SshServer) -> None:
    config = unpinned(tmp_path, sshd, tmp_path)
    r = rescue(config, "config", "check")
    assert r.code == UnknownHostKeyError.exit_code, r.err
    (line,) = _lines(r.err)
    assert "host_key_fingerprint is missing" in line
    assert f"rescue --config {config} config trust-host" in line


def test_trust_host_pins_the_servers_key_then_backup_works(
    tmp_path: Path, sshd: SshServer, sample_tree: Path
) -> None:
    config = unpinned(tmp_path, sshd, sample_tree)
    before = config.read_text()
    assert rescue(config, "backup").code == UnknownHostKeyError.exit_code

    r = rescue(config, "config", "trust-host", "--yes")
    assert r.code == 0, r.err
    assert f"ssh-ed25519 {sshd.host_key_fingerprint}" in r.out
    after = config.read_text()
    assert f'host_key_fingerprint = "{sshd.host_key_fingerprint}"' in after
    # one line added, after the section's last key; everything else as it was
    expected = before.replace(
        f'path = "{tmp_path / "dest"}"\n',
        f'path = "{tmp_path / "dest"}"\nhost_key_fingerprint = "{sshd.host_key_fingerprint}"\n',
    )
    assert after == expected
    assert config.stat().st_mode & 0o777 == 0o600

    assert rescue(config, "config", "check").code == 0
    b = rescue(config, "backup", "--full")
    assert b.code == 0, b.err

    # again: already pinned, nothing changes
    again = rescue(config, "config", "trust-host", "--yes")
    assert again.code == 0 and "pinned already" in again.out
    assert config.read_text() == after


@pytest.mark.parametrize("answer", ["n\n", "", "maybe\n"])
def test_trust_host_without_a_yes_changes_nothing(
    answer: str, tmp_path: Path, sshd: SshServer
) -> None:
    config = unpinned(tmp_path, sshd, tmp_path)
    before = config.read_bytes()
    argv = [*RESCUE, "--config", str(config), "--log-file", str(tmp_path / "log")]
    proc = subprocess.run(
        [*argv, "config", "trust-host"],
        input=answer,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == UnknownHostKeyError.exit_code, proc.stderr
    assert "not trusted" in proc.stderr and "unchanged" in proc.stderr
    assert sshd.host_key_fingerprint in proc.stdout  # shown before the question
    assert config.read_bytes() == before
    assert config.stat().st_mode & 0o777 == 0o640
    assert sorted(os.listdir(tmp_path)) == ["log", "rescue.toml"]


def test_trust_host_warns_when_another_key_is_pinned(tmp_path: Path, sshd: SshServer) -> None:
    config = unpinned(tmp_path, sshd, tmp_path)
    config.write_text(with_fingerprint(config.read_text(), FP))
    before = config.read_bytes()
    r = rescue(config, "config", "trust-host")
    assert r.code == ChangedHostKeyError.exit_code, r.err
    assert "DIFFERENT key" in r.err and FP in r.err
    assert config.read_bytes() == before
    r = rescue(config, "config", "trust-host", "--yes")
    assert r.code == 0, r.err
    assert f'host_key_fingerprint = "{sshd.host_key_fingerprint}"' in config.read_text()
    assert FP not in config.read_text()


def test_trust_host_unreachable_is_one_line(tmp_path: Path, sshd: SshServer) -> None:
    config = unpinned(tmp_path, sshd, tmp_path, port=free_port())
    before = config.read_bytes()
    r = rescue(config, "config", "trust-host", "--yes")
    assert r.code == UnreachableError.exit_code, r.err
    (line,) = _lines(r.err)
    assert line.startswith("rescue: error: cannot reach 127.0.0.1:")
    assert config.read_bytes() == before


def test_trust_host_refuses_other_methods(tmp_path: Path) -> None:
    config = tmp_path / "rescue.toml"
    config.write_text(f'[destination]\nmethod = "file"\npath = "{tmp_path / "d"}"\n')
    r = rescue(config, "config", "trust-host", "--yes")
    assert r.code == 3, r.err
    assert "for sftp and scp" in r.err


def test_with_fingerprint_replaces_in_place_keeping_a_comment() -> None:
    text = '[destination]\nhost_key_fingerprint = "SHA256:old"  # pinned 2026\nhost = "h"\n'
    assert with_fingerprint(text, FP) == (
        f'[destination]\nhost_key_fingerprint = "{FP}"  # pinned 2026\nhost = "h"\n'
    )
    # a commented-out key is left as a comment; the real one goes after the last key
    text = '[destination]\n# host_key_fingerprint = "x"\nhost = "h"\n\n[encryption]\n'
    assert with_fingerprint(text, FP) == (
        f'[destination]\n# host_key_fingerprint = "x"\nhost = "h"\n'
        f'host_key_fingerprint = "{FP}"\n\n[encryption]\n'
    )
