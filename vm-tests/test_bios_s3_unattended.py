"""Scenario bios_s3_unattended: scenario 1's story, with the backups in S3 (a real Ceph RGW).

The source server backs itself up to a bucket on the RGW of tests/rgw.py, through QEMU's
guestfwd relay (the guest sees it at http://10.0.2.100:7480), in two shards; its disk is lost;
the rescue ISO boots with a plan whose settings name the bucket, the host's prefix and the keys
(the secret on the plan disk, mode 0600), recovers unattended and powers off; the recovered disk
boots and matches the source. The scenario CI runs (pyproject.toml's testpaths).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from bootdisk import DISK_MIB
from loopdisks import require_loop_disks, sh
from machine import GUEST_SERVER, Forward
from rgw import RgwServer
from scenario import TOOLS
from scenario_vm import Figures, assert_recovered, plan_disk, recover_from_iso
from server import backup_story, prepare_server, server_disk

pytestmark = pytest.mark.slow

GUEST_PORT = 7480  # RGW's usual port, as the guest sees the relay


def test_bios_s3_unattended(
    iso: Path,
    iso_kernel: tuple[Path, Path],
    accel: str,
    rgw: RgwServer,
    tmp_path: Path,
) -> None:
    require_loop_disks(TOOLS)
    figures = Figures()
    source = server_disk(tmp_path)
    bucket = rgw.bucket("vm")
    destination: dict[str, object] = {
        "method": "s3",
        "endpoint_url": f"http://{GUEST_SERVER}:{GUEST_PORT}",
        "bucket": bucket,
        "prefix": "servers/rescue-src",  # literal: on the ISO, {hostname} is the rescue system's
        "access_key_id": rgw.access_key,
    }
    secret = {"s3.secret": rgw.secret_key}
    boot = prepare_server(
        source, iso, {**destination, "secret_access_key_file": "/etc/rescue/s3.secret"},
        secret, tmp_path,
    )  # fmt: skip
    forwards = [Forward(GUEST_PORT, rgw.port)]

    _, figures.seconds = backup_story(tmp_path, source, boot, accel=accel, forwards=forwards)
    stored = [o["Key"] for o in rgw.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert any(k.startswith("servers/rescue-src/duplicity-inc.") for k in stored), stored
    # auto shards: 2 vCPUs and more than 512 MB selected, so two chains, restored at once
    assert any(k.startswith("servers/rescue-src/shard-1/duplicity-inc.") for k in stored)

    target = tmp_path / "target.img"
    sh("truncate", "-s", f"{DISK_MIB}M", str(target))
    plan = plan_disk(
        tmp_path,
        {**destination, "secret_access_key_file": "/run/rescue/plan/disk/s3.secret"},
        secret,
    )
    started = time.monotonic()
    recover_from_iso(
        tmp_path, iso, iso_kernel, target, plan, forwards=forwards, accel=accel, figures=figures
    )
    assert_recovered(source, target, tmp_path, figures, started)
    print("\n".join(["bios_s3_unattended:", *figures.lines()]))
