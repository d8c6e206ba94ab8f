"""When the bootloader step rebuilds the restored initramfs, and when it keeps it.

The restored systems here are small trees of real files (a kernel's modules.dep, its image and
initramfs); the listing of an initramfs stands for `lsinitramfs`'s output, which the step gets
from the restored system's own lsinitramfs in a chroot: that real path runs in
test_recover_uefi.py (a virtio disk in a QEMU guest: kept) and in the host recoveries of
test_recover_e2e.py (loop disks: no driver to check; one asks for a rebuild and boots).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rescue.layout.model import Layout, LuksContainer
from rescue.recovery.initramfs import Inputs, decide, module_name, storage_drivers

VERSION = "6.1.0-28-amd64"
VIRTIO = "kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio.ko.xz\n"
SWAP_UUID = "0b0d4f7a-1c33-4e2a-9a51-31b3c8f1a0aa"


def restored(tmp_path: Path, *, initrd: bool = True, resume: str | None = None) -> Path:
    root = tmp_path / "root"
    modules = root / "lib/modules" / VERSION
    modules.mkdir(parents=True)
    (modules / "modules.dep").write_text(
        VIRTIO + "kernel/drivers/nvme/host/nvme.ko.xz: kernel/drivers/nvme/host/nvme-core.ko.xz\n"
    )
    (root / "boot").mkdir()
    (root / "boot" / f"vmlinuz-{VERSION}").write_bytes(b"kernel")
    if initrd:
        (root / "boot" / f"initrd.img-{VERSION}").write_bytes(b"initrd")
    if resume is not None:
        conf = root / "etc/initramfs-tools/conf.d"
        conf.mkdir(parents=True)
        (conf / "resume").write_text(resume)
    return root


def listing(*paths: str) -> Callable[[str], list[str]]:
    def read(initrd: str) -> list[str]:
        assert initrd == f"/boot/initrd.img-{VERSION}"
        return ["usr/lib/modules", *paths]

    return read


def inputs(root: Path, **changes: Any) -> Inputs:
    base = Inputs(
        choice="auto",
        root=root,
        layout=Layout(),
        uuid_changes={},
        present_uuids={SWAP_UUID},
        changed_files=[],
        target_disks=["/dev/vda"],
        list_initrd=listing(f"usr/lib/modules/{VERSION}/kernel/drivers/block/virtio_blk.ko"),
    )
    return dataclasses.replace(base, **changes)


def need_virtio_disk() -> None:
    if "virtio_blk" not in storage_drivers("/dev/vda"):
        pytest.skip("this machine has no virtio disk at /dev/vda")


def test_the_drivers_of_a_disk_come_from_sysfs_and_a_loop_device_has_none() -> None:
    need_virtio_disk()
    assert {"virtio_blk", "virtio_pci"} <= storage_drivers("/dev/vda")
    assert storage_drivers("/dev/loop0") == set()


def test_module_names_are_read_from_any_compression_and_dashes_are_underscores() -> None:
    assert module_name("usr/lib/modules/6.1/kernel/drivers/block/virtio_blk.ko") == "virtio_blk"
    assert module_name("kernel/drivers/nvme/host/nvme-core.ko.zst") == "nvme_core"
    assert module_name("kernel/fs/ext4/ext4.ko.xz") == "ext4"
    assert module_name("usr/lib/modules/6.1/modules.dep") is None


def test_kept_when_uuids_resume_and_the_disk_driver_all_still_fit(tmp_path: Path) -> None:
    need_virtio_disk()
    root = restored(tmp_path, resume=f"RESUME=UUID={SWAP_UUID}\n")
    verdict = decide(inputs(root))
    assert not verdict.rebuild
    assert verdict.line == (
        "initramfs kept: file-system UUIDs as recorded; resume device present; "
        f"boot/initrd.img-{VERSION} has the storage drivers virtio_blk"
    )


def test_a_new_storage_driver_missing_from_the_initramfs_rebuilds_it(tmp_path: Path) -> None:
    need_virtio_disk()
    verdict = decide(inputs(restored(tmp_path), list_initrd=listing("usr/lib/modules/x/nvme.ko")))
    assert verdict.line == (
        f"initramfs rebuilt: boot/initrd.img-{VERSION} lacks the storage driver virtio_blk"
    )


def test_loop_disks_need_no_driver_and_the_initramfs_is_not_even_listed(tmp_path: Path) -> None:
    def unlisted(initrd: str) -> list[str]:
        raise AssertionError("a loop disk has no driver to look for")

    verdict = decide(inputs(restored(tmp_path), target_disks=["/dev/loop0"], list_initrd=unlisted))
    assert verdict.line == (
        "initramfs kept: file-system UUIDs as recorded; resume device present; "
        f"kernel {VERSION} needs no module for the target disks"
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"choice": "always"}, 'asked for (initramfs = "always")'),
        (
            {"uuid_changes": {"1234-abcd": "5678-ef01"}},
            "a file system's UUID changed (1234-abcd is now 5678-ef01)",
        ),
        (
            {"changed_files": ["etc/fstab", "etc/fstab.before-rescue", "etc/default/grub"]},
            "fix_fstab rewrote etc/fstab",
        ),
        (
            {"layout": Layout(luks=[LuksContainer(device="/dev/vda3")])},
            "the layout holds LUKS: always rebuilt",
        ),
        ({"present_uuids": set()}, f"the resume device UUID={SWAP_UUID} is on no recreated device"),
    ],
)
def test_each_reason_to_rebuild_is_said(
    tmp_path: Path, changes: dict[str, object], reason: str
) -> None:
    root = restored(tmp_path, resume=f'RESUME="UUID={SWAP_UUID}"\n')
    verdict = decide(inputs(root, target_disks=["/dev/loop0"], **changes))
    assert verdict.rebuild
    assert verdict.line == f"initramfs rebuilt: {reason}"


def test_a_kernel_without_its_initramfs_rebuilds_it(tmp_path: Path) -> None:
    verdict = decide(inputs(restored(tmp_path, initrd=False), target_disks=["/dev/loop0"]))
    assert verdict.line == (f"initramfs rebuilt: kernel {VERSION} has no boot/initrd.img-{VERSION}")


def test_no_kernel_at_all_rebuilds_rather_than_guessing(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    verdict = decide(inputs(root, target_disks=["/dev/loop0"]))
    assert verdict.line == (
        "initramfs rebuilt: no installed kernel found under lib/modules and boot/"
    )
