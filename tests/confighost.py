"""A fake Debian host root for the configuration-backup tests, with seeded secrets.

Everything a built-in module reads exists here: accounts with real password hashes, network
files (a NetworkManager connection with a Wi-Fi key), sshd with real host keys, firewall rules,
crontabs, APT sources with a dpkg database that the real dpkg reads with --admindir, a unit
enabled by the real `systemctl --root`, and rescue's own settings with a passphrase file.
SECRETS lists every secret planted, for the bug-report scan.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SETTINGS_PASSPHRASE = "tr0ub4dor-and-3-more-words"
DEST_PASSWORD = "ftp-pass-W7x9q2"
WIFI_KEY = "wifi-key-Qz81mPx"
APP_TOKEN = "app-token-9f8e7d6c5b"
ROOT_HASH = "$6$saltsalt$K2xvZC1oYXNoLXJvb3QtcGFzc3dvcmQtc2VlZGVkLXZhbHVl"
ALICE_HASH = "$y$j9T$abcdefgh$aGFzaC1vZi1hbGljZS1zZWVkZWQtZm9yLXRlc3Rz"

SECRETS = [SETTINGS_PASSPHRASE, DEST_PASSWORD, WIFI_KEY, APP_TOKEN, ROOT_HASH, ALICE_HASH]

ALICE = 1001


def write(root: Path, path: str, text: str, mode: int = 0o644, owner: int = 0) -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    os.chown(target, owner, owner)
    target.chmod(mode)
    return target


def make_host(root: Path) -> Path:
    """Fill root as a small Debian server; returns root."""
    write(root, "/etc/hostname", "confighost\n")
    write(
        root,
        "/etc/passwd",
        f"root:x:0:0:root:/root:/bin/bash\nalice:x:{ALICE}:{ALICE}:Alice:/home/alice:/bin/bash\n",
    )
    write(root, "/etc/group", f"root:x:0:\nsudo:x:27:alice\nalice:x:{ALICE}:\n")
    write(
        root,
        "/etc/shadow",
        f"root:{ROOT_HASH}:19700:0:99999:7:::\n"
        f"alice:{ALICE_HASH}:19700:0:99999:7:::\nnobody:*:19700:0:99999:7:::\n",
        0o640,
    )
    write(root, "/etc/gshadow", "root:*::\nsudo:*::alice\nalice:!::\n", 0o640)
    write(root, "/etc/sudoers", "root ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n", 0o440)
    write(root, "/etc/sudoers.d/alice", "alice ALL=(ALL) NOPASSWD: ALL\n", 0o440)
    write(root, "/etc/hosts", "127.0.0.1 localhost\n10.0.0.5 confighost\n")
    write(root, "/etc/network/interfaces", "auto eth0\niface eth0 inet dhcp\n")
    write(
        root,
        "/etc/NetworkManager/system-connections/office.nmconnection",
        f"[wifi]\nssid=office\n[wifi-security]\nkey-mgmt=wpa-psk\npsk={WIFI_KEY}\n",
        0o600,
    )
    (root / "etc/resolv.conf").symlink_to("/run/systemd/resolve/stub-resolv.conf")
    write(root, "/etc/ssh/sshd_config", "PermitRootLogin no\nPasswordAuthentication no\n")
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "host",
            "-f",
            str(root / "etc/ssh/ssh_host_ed25519_key"),
        ],
        check=True,
    )
    write(
        root,
        "/etc/nftables.conf",
        "table inet filter {\n  chain input { type filter hook "
        "input priority 0; policy drop; }\n}\n",
        0o755,
    )
    write(root, "/etc/crontab", "17 * * * * root cd / && run-parts --report /etc/cron.hourly\n")
    write(root, "/etc/cron.d/backup", "30 2 * * * root /usr/local/bin/nightly\n")
    write(root, "/var/spool/cron/crontabs/alice", "0 8 * * 1 echo monday\n", 0o600, ALICE)
    os.chown(root / "var/spool/cron/crontabs/alice", ALICE, 0)
    write(root, "/etc/apt/sources.list", "deb http://deb.debian.org/debian bookworm main\n")
    write(
        root,
        "/etc/app/app.conf",
        f"[api]\nurl = https://example.invalid\ntoken = {APP_TOKEN}\n",
        0o640,
        ALICE,
    )
    status = "".join(
        f"Package: {name}\nStatus: install ok installed\nVersion: 1.0\nArchitecture: all\n"
        f"Maintainer: x <x@example.invalid>\nDescription: {name}\n\n"
        for name in ("curl", "nginx")
    )
    write(root, "/var/lib/dpkg/status", status)
    (root / "var/lib/dpkg/info").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/dpkg/updates").mkdir(parents=True, exist_ok=True)
    write(
        root,
        "/lib/systemd/system/web.service",
        "[Unit]\nDescription=web\n[Service]\nExecStart=/bin/true\n"
        "[Install]\nWantedBy=multi-user.target\n",
    )
    subprocess.run(
        ["systemctl", f"--root={root}", "enable", "web.service"], check=True, capture_output=True
    )
    write(root, "/etc/rescue/passphrase", SETTINGS_PASSPHRASE + "\n", 0o600)
    write(
        root,
        "/etc/rescue/rescue.toml",
        '[destination]\nmethod = "ftp"\nhost = "backup.example.invalid"\nuser = "web1"\n'
        f'password = "{DEST_PASSWORD}"\npath = "web1"\n[encryption]\nmode = "symmetric"\n'
        'passphrase_file = "/etc/rescue/passphrase"\n',
        0o600,
    )
    return root
