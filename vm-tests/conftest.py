"""Fixtures of the VM scenarios: the ISO, the accelerator, the backup server (sshd on 127.0.0.1).

The scenarios share the test support of tests/ (testsupport/: the ISO, the boot disks, loop disks
and the QEMU driver; tests/: the servers and the runner scenario's content), both on pytest's
pythonpath (pyproject.toml), so there is one way to build each of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from isoimage import extract, iso_for_tests
from machine import accelerator
from rgw import RgwServer
from servers import SshServer, serving

VM_TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every scenario here boots the rescue ISO in QEMU: the vm tier, run in CI's second
    process (beside; see tests/conftest.py)."""
    for item in items:
        if VM_TESTS in item.path.parents:
            item.add_marker("vm")
            item.add_marker("beside")


@pytest.fixture(scope="session")
def iso() -> Path:
    return iso_for_tests()


@pytest.fixture(scope="session")
def iso_kernel(iso: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The ISO's kernel and initramfs, for boots that set the kernel command line."""
    folder = tmp_path_factory.mktemp("iso-kernel")
    kernel, initrd = folder / "vmlinuz", folder / "initrd.img"
    extract(iso, {"/live/vmlinuz": kernel, "/live/initrd.img": initrd})
    return kernel, initrd


@pytest.fixture(scope="session")
def accel(iso_kernel: tuple[Path, Path]) -> str:
    return accelerator(iso_kernel[0])


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """OpenSSH sshd on 127.0.0.1, key-only root login: the backup server."""
    with SshServer(tmp_path_factory.mktemp("sshd")) as server:
        server.start()
        yield server


@pytest.fixture(scope="session")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RgwServer]:
    """Ceph's RADOS Gateway (S3) on 127.0.0.1: the backup server of the S3 scenario."""
    with serving(RgwServer(tmp_path_factory.mktemp("rgw"))) as server:
        yield server
