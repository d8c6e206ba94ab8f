"""Scenario 1, bios_sftp_unattended: the whole disaster-recovery story, in virtual machines.

1. The source server (vm-tests/server.py: a real Debian on a BIOS/GPT disk, users with their own
   ids, a service, hard links, symlinks, a sparse file, odd modes, rescue installed from the
   ISO's own layer) boots and backs itself up with `rescue backup --full` over sftp, through
   QEMU's guestfwd relay to OpenSSH on 127.0.0.1; its data changes and an incremental follows.
2. It powers off, and its disk is lost: a blank disk of the same size takes its place.
3. The rescue ISO boots with `rescue.plan=/plan.toml` found on a small disk labelled RESCUEPLAN,
   sets up the network by DHCP, recovers unattended and powers off.
4. The recovered disk boots by GRUB and prints its marker, and its tree matches the source.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from bootdisk import DISK_MIB
from loopdisks import require_loop_disks, sh
from machine import GUEST_SERVER, Forward
from scenario import TOOLS
from scenario_vm import Figures, assert_recovered, plan_disk, recover_from_iso
from server import backup_story, prepare_server, server_disk
from servers import SshServer

pytestmark = pytest.mark.slow


def test_bios_sftp_unattended(
    iso: Path,
    iso_kernel: tuple[Path, Path],
    accel: str,
    sshd: SshServer,
    tmp_path: Path,
) -> None:
    require_loop_disks(TOOLS)
    figures = Figures()
    source = server_disk(tmp_path)
    destination: dict[str, object] = {
        "method": "sftp",
        "host": GUEST_SERVER,
        "port": 22,
        "user": sshd.user,
        "host_key_fingerprint": sshd.host_key_fingerprint,
        "path": str(tmp_path / "backups"),
    }
    key = sshd.client_key.read_text()
    boot = prepare_server(
        source, iso, {**destination, "ssh_key_file": "/etc/rescue/backup-key"},
        {"backup-key": key}, tmp_path,
    )  # fmt: skip
    forwards = [Forward(22, sshd.port)]

    _, figures.seconds = backup_story(tmp_path, source, boot, accel=accel, forwards=forwards)
    # auto shards: 2 vCPUs and more than 512 MB selected, so two chains, restored at once below
    assert list((tmp_path / "backups/shard-1").glob("duplicity-inc.*.manifest.gpg"))

    target = tmp_path / "target.img"
    sh("truncate", "-s", f"{DISK_MIB}M", str(target))
    plan = plan_disk(
        tmp_path,
        {**destination, "ssh_key_file": "/run/rescue/plan/disk/backup-key"},
        {"backup-key": key},
    )
    started = time.monotonic()
    recover_from_iso(
        tmp_path, iso, iso_kernel, target, plan, forwards=forwards, accel=accel, figures=figures
    )
    assert_recovered(source, target, tmp_path, figures, started)
    print("\n".join(["bios_sftp_unattended:", *figures.lines()]))
