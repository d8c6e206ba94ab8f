"""The bootloader step's last fix of grub.cfg: a kernel device name that update-grub wrote
without udev (root=/dev/sdb4 is another disk at the next boot) becomes root=UUID=...; names that
stay the same (an LV's /dev/mapper/VG-LV, as Debian writes it for a root on LVM) are kept."""

from __future__ import annotations

from pathlib import Path

from rescue.steps.bootloader import fix_grub_cfg

UUID = "0b7d7e49-3f7e-4d7c-9d3a-6a1f2e0c1b11"


def test_kernel_names_become_uuids_and_stable_names_stay(tmp_path: Path) -> None:
    cfg = tmp_path / "grub.cfg"
    cfg.write_text(
        "linux /vmlinuz root=/dev/vdb4 ro quiet\n"
        "linux /vmlinuz root=/dev/mapper/vg0-root ro\n"
        "linux /vmlinuz root=/dev/md0 ro\n"
    )
    uuid_of = {"/dev/vdb4": UUID, "/dev/mapper/vg0-root": "lv-uuid", "/dev/md0": "md-uuid"}
    assert fix_grub_cfg(cfg, uuid_of) == 2
    assert cfg.read_text() == (
        f"linux /vmlinuz root=UUID={UUID} ro quiet\n"
        "linux /vmlinuz root=/dev/mapper/vg0-root ro\n"
        "linux /vmlinuz root=UUID=md-uuid ro\n"
    )


def test_nothing_to_fix_leaves_the_file_alone(tmp_path: Path) -> None:
    cfg = tmp_path / "grub.cfg"
    cfg.write_text(f"linux /vmlinuz root=UUID={UUID} ro\n")
    before = cfg.stat().st_mtime_ns
    assert fix_grub_cfg(cfg, {"/dev/vdb4": UUID}) == 0
    assert cfg.stat().st_mtime_ns == before
    assert fix_grub_cfg(tmp_path / "absent.cfg", {}) == 0
