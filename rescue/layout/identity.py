"""A disk's identity: model, serial, WWN and /dev/disk/by-id names, from udev and sysfs.

Why a module of its own: these ids are how recovery knows a disk is back (rescue.layout.mapping)
and how a plan names the disks it may erase (rescue.layout.stable_ids), so they are read the same
way for a capture and for the disks of the machine being recovered. pyudev is optional (absent,
or no udev database in a rescue system or a container); sysfs fills in what it cannot tell.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from rescue.layout.kernel import SYS_CLASS_BLOCK, read_sys
from rescue.layout.model import Disk
from rescue.layout.tools import text_field

log = logging.getLogger("rescue.layout")

DEV_BY_ID = Path("/dev/disk/by-id")


def _udev_identity(path: str) -> dict[str, Any]:
    """WWN, serial, model and by-id links from the udev database, if pyudev and udev are here."""
    try:
        import pyudev

        device = pyudev.Devices.from_device_file(pyudev.Context(), path)
        props = device.properties
        return {
            "wwn": props.get("ID_WWN_WITH_EXTENSION") or props.get("ID_WWN"),
            "serial": props.get("ID_SERIAL_SHORT") or props.get("ID_SERIAL"),
            "model": props.get("ID_MODEL"),
            "by_id": [
                os.path.basename(link)
                for link in device.device_links
                if link.startswith(str(DEV_BY_ID) + "/")
            ],
        }
    except (ImportError, OSError, LookupError, ValueError) as exc:
        log.debug("pyudev knows nothing of %s: %s", path, exc)
        return {}


def _by_id_links(path: str) -> list[str]:
    """Names under /dev/disk/by-id that point at path (udev makes them; none without udev)."""
    try:
        entries = sorted(DEV_BY_ID.iterdir())
    except OSError:
        return []
    real = os.path.realpath(path)
    return [e.name for e in entries if os.path.realpath(e) == real]


def fill_identity(disk: Disk) -> None:
    """Fill model, serial, WWN and by-id from udev, then from sysfs where lsblk had nothing."""
    udev = _udev_identity(disk.path)
    disk.model = disk.model or text_field(udev.get("model"))
    disk.serial = disk.serial or text_field(udev.get("serial"))
    disk.wwn = disk.wwn or text_field(udev.get("wwn"))
    sys_dir = SYS_CLASS_BLOCK / disk.name
    disk.model = disk.model or read_sys(sys_dir / "device/model")
    for rel in ("serial", "device/serial"):  # virtio; nvme
        disk.serial = disk.serial or read_sys(sys_dir / rel)
    for rel in ("wwid", "device/wwid"):  # nvme; scsi
        disk.wwn = disk.wwn or read_sys(sys_dir / rel)
    disk.by_id = sorted(set(udev.get("by_id", [])) | set(_by_id_links(disk.path)))
