"""The manifest: its ids, excluded-directory modes and hard-link groups match a generated tree,
and it travels inside every backup, restorable alone."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from clirun import local_settings, rescue
from loopdisks import loop_disk, partition, sh

from rescue.config import Settings
from rescue.exact.records import SIDECAR_REL
from rescue.layout.model import Disk, Filesystem, FstabEntry, Layout, Partition
from rescue.recovery import manifest

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\n"
    "svc:x:998:997::/nonexistent:/usr/sbin/nologin\n"
)
GROUP = "root:x:0:\nalice:x:1001:\nsvc:x:997:\nadm:x:4:alice\n"


def make_host(root: Path, outside: Path | None) -> None:
    """A small root with ids, hard links and excluded directories of telling modes."""
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text(PASSWD)
    (root / "etc/group").write_text(GROUP)
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian 12"\n')
    for d in ("data", "other", "x"):
        (root / d).mkdir()
    (root / "data/a").write_text("shared three ways")
    os.link(root / "data/a", root / "data/b")
    os.link(root / "data/a", root / "other/c")
    (root / "x/y").write_text("shared two ways")
    os.link(root / "x/y", root / "x/z")
    if outside is not None:
        outside.write_text("one link is outside the root")
        os.link(outside, root / "data/lonely")
    os.symlink("a", root / "data/symlink-to-a")
    for name, mode, owner in (("tmp", 0o1777, 0), ("proc", 0o555, 0), ("mnt", 0o750, 1001)):
        (root / name).mkdir()
        os.chmod(root / name, mode)
        os.chown(root / name, owner, owner)
    (root / "tmp/t1").write_text("excluded")
    os.link(root / "tmp/t1", root / "tmp/t2")  # excluded: never walked


def settings_for(tmp_path: Path, root: Path) -> Settings:
    return Settings.model_validate(
        {
            "destination": {"method": "file", "path": str(tmp_path / "dest")},
            "selection": {
                "root": str(root),
                "include": [str(root)],
                "exclude": [str(root / d) for d in ("tmp", "proc", "mnt", "dev")],
            },
            "duplicity": {"archive_dir": str(tmp_path / "cache")},
        }
    )


def test_manifest_matches_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_host(root, tmp_path / "outside")
    data = manifest.build(settings_for(tmp_path, root))

    assert data.format_version == manifest.FORMAT_VERSION
    assert data.hardlinks == [["data/a", "data/b", "other/c"], ["x/y", "x/z"]]
    assert data.users == {"root": 0, "alice": 1001, "svc": 998}
    assert data.groups == {"root": 0, "alice": 1001, "svc": 997, "adm": 4}
    dirs = {e.path: (e.mode, e.uid, e.gid) for e in data.excluded_dirs()}
    assert dirs == {"/tmp": ("1777", 0, 0), "/proc": ("0555", 0, 0), "/mnt": ("0750", 1001, 1001)}
    as_json = json.loads(data.to_json())  # plain data all the way down
    assert {"path": "/dev", "exists": False} in as_json["excluded"]
    assert data.host.os == {"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian 12"}
    assert data.host.boot_mode in ("bios", "uefi")
    assert data.settings["destination"]["method"] == "file"


def test_manifest_travels_inside_every_backup(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_host(root, tmp_path / "outside")
    config = local_settings(
        tmp_path,
        {
            "root": str(root),
            # the includes do not name var/, yet the manifest must be in the backup
            "include": [str(root / "etc"), str(root / "data")],
            "exclude": [str(root / "tmp")],
        },
    )
    r = rescue(config, "backup")
    assert r.code == 0, r.err
    on_disk = manifest.load(root / manifest.MANIFEST_REL)

    listed = rescue(config, "files", "var/lib/rescue", "--json")
    assert listed.code == 0, listed.err
    assert manifest.MANIFEST_REL in {e["path"] for e in listed.json()}

    alone = tmp_path / "manifest.json"
    r = rescue(config, "restore", manifest.MANIFEST_REL, "--to", str(alone))
    assert r.code == 0, r.err
    assert alone.read_text() == on_disk.to_json() == (root / manifest.MANIFEST_REL).read_text()
    assert (alone.stat().st_mode & 0o777) == 0o600

    shown = rescue(config, "manifest", "show", "--from-backup")
    assert shown.code == 0, shown.err
    assert shown.out == on_disk.to_json()
    # The groups as the backup holds them: the walk covers the includes only (other/ and x/
    # are not backed up), so data/a and data/b are the group relinked on recovery.
    assert on_disk.hardlinks == [["data/a", "data/b"]]
    assert on_disk.metadata is not None and on_disk.metadata.file == SIDECAR_REL

    # a second backup carries a fresh manifest; the first one stays restorable as of its set
    (root / "data/new").write_text("new")
    os.link(root / "data/new", root / "data/new-link")
    assert rescue(config, "backup", "--incremental").code == 0
    sets = rescue(config, "status", "--json").json()["sets"]
    old = rescue(config, "manifest", "show", "--from-backup", "-t", str(sets[0]["time"]))
    new = rescue(config, "manifest", "show", "--from-backup")
    assert ["data/new", "data/new-link"] not in json.loads(old.out)["hardlinks"]
    assert ["data/new", "data/new-link"] in json.loads(new.out)["hardlinks"]


def test_manifest_show_from_this_host(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_host(root, tmp_path / "outside")
    config = local_settings(tmp_path, {"root": str(root), "include": [str(root)]})
    r = rescue(config, "manifest", "show")
    assert r.code == 0, r.err
    assert json.loads(r.out)["users"]["alice"] == 1001
    assert not (root / manifest.MANIFEST_REL).exists(), "show must not write the manifest"


@pytest.mark.parametrize("version", [manifest.FORMAT_VERSION + 1, "1", None])
def test_unknown_manifest_format_is_refused(tmp_path: Path, version: object) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"format_version": version}))
    with pytest.raises(manifest.ManifestError, match="manifest format"):
        manifest.load(path)


def test_manifest_records_the_layout_of_the_disk_under_the_root(tmp_path: Path) -> None:
    """A root on its own (loop) disk: the manifest's layout is that disk's, exactly."""
    if os.geteuid() != 0:
        pytest.skip("loop disks need root")
    root_uuid = "5e1f2c3d-0000-4000-8000-00000000abcd"
    with loop_disk(tmp_path / "disk.img", "96M") as device:
        (part,) = partition(device, "label: gpt\nsize=64MiB, type=linux, name=root\n")
        sh("mkfs.ext4", "-q", "-F", "-U", root_uuid, "-L", "hostroot", part)
        root = tmp_path / "root"
        root.mkdir()
        sh("mount", part, str(root))
        try:
            make_host(root, None)  # a link to outside the root would cross file systems
            data = manifest.build(settings_for(tmp_path, root))
        finally:
            sh("umount", str(root))
    assert data.layout_error is None and data.layout is not None
    (disk,) = data.layout.disks
    assert disk.path == device and disk.table == "gpt"
    (captured,) = disk.partitions
    assert captured.name == "root" and captured.filesystem is not None
    assert captured.filesystem.uuid == root_uuid
    assert captured.filesystem.label == "hostroot"
    assert captured.filesystem.mountpoint == str(root)
    assert data.hardlinks == [["data/a", "data/b", "other/c"], ["x/y", "x/z"]]


def test_bootloader_kind_and_disk(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "boot/efi/EFI/debian").mkdir(parents=True)
    esp = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
    linux = Partition(1, "/dev/sda1", 2048, 2048, "0FC63DAF-8483-4772-8E79-3D69D8477DE4")
    efi = Filesystem("vfat", "/dev/sdb1", mountpoint=str(root / "boot/efi"))
    esp_part = Partition(1, "/dev/sdb1", 2048, 2048, esp, filesystem=efi)
    layout = Layout(
        disks=[
            Disk("sda", "/dev/sda", 2**30, partitions=[linux]),
            Disk("sdb", "/dev/sdb", 2**30, partitions=[esp_part]),
        ]
    )
    # A system below root that holds an EFI directory boots by UEFI, whatever this host does.
    assert manifest.boot_mode(root, layout) == "uefi"
    found = manifest.bootloader(root, "uefi", [], layout)
    assert (found.kind, found.disk) == ("grub-efi", "/dev/sdb")
    # GRUB's EFI modules, or an ESP in its fstab, say the same when the ESP is not mounted.
    modules_only = tmp_path / "modules"
    (modules_only / "boot/grub/x86_64-efi").mkdir(parents=True)
    assert manifest.boot_mode(modules_only, None) == "uefi"
    esp_in_fstab = Layout(fstab=[FstabEntry("UUID=DEAD-BEEF", "/boot/efi", "vfat")])
    assert manifest.boot_mode(tmp_path / "x", esp_in_fstab) == "uefi"

    bios_root = tmp_path / "bios"
    (bios_root / "boot/grub/i386-pc").mkdir(parents=True)
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\xeb\x63\x90" + b"\0" * 380 + b"GRUB \0Geom\0" + b"\0" * 118 + b"\x55\xaa")
    blank = tmp_path / "blank.img"
    blank.write_bytes(b"\0" * 512)
    root_only = Layout(fstab=[FstabEntry("/dev/sda1", "/", "ext4")])
    assert manifest.boot_mode(bios_root, root_only) == "bios"
    found = manifest.bootloader(bios_root, "bios", [str(blank), str(disk)])
    assert (found.kind, found.disk, found.disks) == ("grub-pc", str(disk), [str(disk)])
    # An MD RAID1's members each hold GRUB: all are recorded, so all get it back.
    mirror = tmp_path / "mirror.img"
    mirror.write_bytes(disk.read_bytes())
    found = manifest.bootloader(bios_root, "bios", [str(disk), str(blank), str(mirror)])
    assert (found.disk, found.disks) == (str(disk), [str(disk), str(mirror)])
    assert manifest.bootloader(tmp_path / "none", "bios", []).kind == "unknown"


def test_manifest_records_the_kernels_of_the_backed_up_system_not_the_running_one(
    tmp_path: Path,
) -> None:
    """A root that is not / holds its own kernels (data files with made-up releases here): the
    manifest names them, and its default, never the kernel of the machine running rescue."""
    root = tmp_path / "root"
    make_host(root, None)
    (root / "boot").mkdir()
    for release in ("6.1.0-9-amd64", "6.1.0-10-amd64"):
        (root / "boot" / f"vmlinuz-{release}").write_bytes(b"not really a kernel")
    (root / "usr/lib/modules/5.10.0-28-amd64").mkdir(parents=True)  # modules left behind
    (root / "usr/lib/modules/6.1.0-10-amd64").mkdir()
    (root / "lib").symlink_to("usr/lib")  # merged /usr, as Debian 12 has it
    (root / "vmlinuz").symlink_to("boot/vmlinuz-6.1.0-9-amd64")  # the default: not the newest
    config = local_settings(
        tmp_path,
        {"root": str(root), "exclude": [str(root / "tmp")]},
        encryption={"mode": "none"},
    )
    assert rescue(config, "backup").code == 0
    shown = rescue(config, "manifest", "show", "--from-backup")
    assert shown.code == 0, shown.err
    host = json.loads(shown.out)["host"]
    assert host["kernels"] == ["5.10.0-28-amd64", "6.1.0-9-amd64", "6.1.0-10-amd64"]
    assert host["kernel"] == "6.1.0-9-amd64"

    (root / "vmlinuz").unlink()  # no default link: the newest release
    host = json.loads(rescue(config, "manifest", "show").out)["host"]
    assert host["kernel"] == "6.1.0-10-amd64"
    for rel in ("boot", "usr/lib/modules"):
        shutil.rmtree(root / rel)
    host = json.loads(rescue(config, "manifest", "show").out)["host"]
    assert (host["kernels"], host["kernel"]) == ([], None)


def test_a_backup_of_slash_names_the_running_kernel_when_it_is_installed_or_none_is() -> None:
    """For / the running kernel is the system's own when / holds it, or holds none (a
    container, or this test machine, booted from a kernel outside its /)."""
    host = manifest.host_facts(Path("/"))
    running = os.uname().release
    if running in host.kernels or not host.kernels:
        assert host.kernel == running
    else:
        assert host.kernel in host.kernels
