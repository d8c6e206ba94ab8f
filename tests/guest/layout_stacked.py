"""Runs INSIDE the QEMU test guest (tests/test_layout_stacked.py starts it): the LVM-on-GPT and
MD RAID1 round trips that the host kernel cannot do (it has no device-mapper and no md).

Disks (virtio): vdb LVM source, vdc blank of the same size, vdd blank and larger (used twice:
the VG's new room left free, then given to the root LV with grow_lv); vde+vdf RAID1 source
members, vdg+vdh blank targets of the same size, vdi+vdj larger blank targets. Each round trip:
build the source, capture it, take the source away (as a lost machine's disks are), recreate on
the blank disks with the generated script, capture again and compare. Prints `RESULT name PASS`
or `RESULT name FAIL: reason`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

# rescue's dependencies (pydantic for the layout model) are in the project's virtualenv, which
# the guest sees at its host path (rescuesrc= on the kernel command line): run under it.
VENV_PYTHON = Path(os.environ["rescuesrc"]) / ".venv/bin/python"  # noqa: SIM112
if sys.prefix == sys.base_prefix:
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), *sys.argv])

from rescue.layout.capture import capture  # noqa: E402  (after the re-exec under the venv)
from rescue.layout.model import Filesystem, Layout  # noqa: E402
from rescue.layout.recreate import apply_script, build_script  # noqa: E402

BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
LINUX_LVM = "E6D6D379-F507-44C2-A23C-238F2A3DF928"
BOOT_UUID = "11111111-aaaa-4bbb-8ccc-000000000001"
ROOT_UUID = "11111111-aaaa-4bbb-8ccc-000000000002"
SWAP_UUID = "11111111-aaaa-4bbb-8ccc-000000000003"
RAID_FS_UUID = "11111111-aaaa-4bbb-8ccc-000000000004"


def sh(command: str, stdin: str | None = None) -> str:
    result = subprocess.run(command, shell=True, input=stdin, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{command}: exit {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def fs_view(fs: Filesystem | None) -> tuple[str | None, str | None, str | None]:
    """What a round trip must keep of a file system: its type, UUID and label."""
    return (fs.type, fs.uuid, fs.label) if fs is not None else (None, None, None)


def lvm_view(layout: Layout) -> dict[str, object]:
    """What must survive an LVM round trip (VG/LV UUIDs cannot be kept by vgcreate/lvcreate)."""
    assert layout.lvm is not None, "no LVM captured"
    (disk,) = layout.disks
    return {
        "parts": [(p.number, p.start_sector, p.type, p.uuid, p.name) for p in disk.partitions],
        "pvs": sorted((pv.uuid, pv.vg) for pv in layout.lvm.pvs),
        "vgs": sorted((vg.name, vg.extent_size_bytes) for vg in layout.lvm.vgs),
        "lvs": sorted(
            (lv.vg, lv.name, lv.size_bytes, *fs_view(lv.filesystem)) for lv in layout.lvm.lvs
        ),
        "boot_fs": [
            fs_view(p.filesystem)
            for p in disk.partitions
            if p.filesystem and p.filesystem.type == "ext4"
        ],
    }


def make_lvm_source() -> Layout:
    sh(
        "sfdisk --quiet --wipe always /dev/vdb",
        f"label: gpt\nsize=1MiB, type={BIOS_BOOT}, name=bios\n"
        f"size=32MiB, type=linux, name=boot\ntype={LINUX_LVM}, name=lvm\n",
    )
    sh(f"mkfs.ext4 -q -F -U {BOOT_UUID} -L boot /dev/vdb2")
    sh("pvcreate -ff -y /dev/vdb3 && vgcreate -s 8M vg0 /dev/vdb3")
    sh("lvcreate -y -L 96M -n root vg0 && lvcreate -y -L 32M -n swap vg0")
    sh(f"mkfs.ext4 -q -F -U {ROOT_UUID} -L root /dev/vg0/root")
    sh(f"mkswap -U {SWAP_UUID} -L swap /dev/vg0/swap")
    layout = capture(["/dev/vdb"])
    drop_vg("/dev/vdb")  # the lost machine's disk is gone
    return layout


def drop_vg(disk: str) -> None:
    """Take a recreated VG away again, PV labels included: two disks holding the same PV UUID
    would make the next round trip's pvcreate refuse (rightly)."""
    sh(f"vgchange -an vg0 && vgremove -ff -y vg0 && wipefs -a {disk}3 {disk}")


def recreate(
    source: Layout, mapping: dict[str, str], grow: bool, log: str, grow_lv: str = "none"
) -> Layout:
    apply_script(build_script(source, mapping, grow=grow, grow_lv=grow_lv), Path(log))
    targets = sorted(mapping.values())
    return capture(targets)


def lvm_same_size(source: Layout) -> None:
    got = recreate(source, {"/dev/vdb": "/dev/vdc"}, True, "/tmp/lvm-same")
    assert lvm_view(got) == lvm_view(source), (lvm_view(got), lvm_view(source))
    (src_disk,), (got_disk,) = source.disks, got.disks
    assert [p.size_sectors for p in got_disk.partitions] == [
        p.size_sectors for p in src_disk.partitions
    ]
    drop_vg("/dev/vdc")


def pv_growth(source: Layout, got: Layout) -> int:
    """Bytes the PV partition (the last) gained; the others keep their sizes exactly."""
    src_parts, got_parts = source.disks[0].partitions, got.disks[0].partitions
    assert [p.size_sectors for p in got_parts[:-1]] == [p.size_sectors for p in src_parts[:-1]]
    assert got_parts[-1].size_sectors > src_parts[-1].size_sectors, "the PV partition grew"
    return (got_parts[-1].size_sectors - src_parts[-1].size_sectors) * 512


def vg_free() -> int:
    return int(sh("vgs --noheadings --units b --nosuffix -o vg_free vg0").strip())


def lv_sizes(layout: Layout) -> dict[str, int]:
    assert layout.lvm is not None
    return {lv.name: lv.size_bytes for lv in layout.lvm.lvs}


def ext4_bytes(device: str) -> int:
    """The size of the ext4 file system on device, from its superblock."""
    fields = dict(
        line.split(":", 1)
        for line in sh(f"dumpe2fs -h {device} 2>/dev/null").splitlines()
        if ":" in line
    )
    return int(fields["Block count"]) * int(fields["Block size"])


def lvm_larger(source: Layout) -> None:
    """grow_lv = "none": every LV keeps its size, the new room stays free in the VG."""
    got = recreate(source, {"/dev/vdb": "/dev/vdd"}, True, "/tmp/lvm-larger")
    assert lvm_view(got) == lvm_view(source), (lvm_view(got), lvm_view(source))
    extent = 8 * 2**20
    free, growth = vg_free(), pv_growth(source, got)
    print(f"lvm-larger: the PV partition gained {growth} bytes, the VG has {free} free", flush=True)
    assert free >= growth - extent, f"the VG has only {free} bytes free"
    drop_vg("/dev/vdd")


def lvm_larger_grow_root(source: Layout) -> None:
    """grow_lv = "last": root (swap is the last LV) takes every free extent, and its ext4,
    made after the lvextend, fills it; swap keeps its size."""
    got = recreate(source, {"/dev/vdb": "/dev/vdd"}, True, "/tmp/lvm-grow-root", "last")
    was, now = lv_sizes(source), lv_sizes(got)
    assert now["swap"] == was["swap"], (now, was)
    extent = 8 * 2**20
    growth = pv_growth(source, got)
    print(f"lvm-larger-grow-root: LV sizes {was} -> {now}, ext4 on root", end=" ", flush=True)
    print(f"{ext4_bytes('/dev/vg0/root')} bytes; the PV partition gained {growth}", flush=True)
    assert now["root"] - was["root"] >= growth - extent, (now, was)
    assert vg_free() == 0, f"{vg_free()} bytes left free in the VG"
    assert ext4_bytes("/dev/vg0/root") == now["root"], (ext4_bytes("/dev/vg0/root"), now)
    # Everything else as recorded: partitions, PV UUID, VG, the file systems' ids.
    view, expected = lvm_view(got), lvm_view(source)
    for key in ("parts", "pvs", "vgs", "boot_fs"):
        assert view[key] == expected[key], (key, view[key], expected[key])
    assert got.lvm is not None and source.lvm is not None
    ids = {lv.name: fs_view(lv.filesystem) for lv in got.lvm.lvs}
    assert ids == {lv.name: fs_view(lv.filesystem) for lv in source.lvm.lvs}, ids
    drop_vg("/dev/vdd")


def raid_view(layout: Layout) -> list[tuple[object, ...]]:
    return sorted(
        (r.level, r.uuid, r.metadata, r.raid_devices, *fs_view(r.filesystem)) for r in layout.raids
    )


def make_raid_source() -> Layout:
    sh("mdadm --create /dev/md0 --run --level=1 --raid-devices=2 --metadata=1.2 /dev/vde /dev/vdf")
    sh(f"mkfs.ext4 -q -F -U {RAID_FS_UUID} -L mirror /dev/md0")
    source = capture(["/dev/vde", "/dev/vdf"])
    assert raid_view(source), "no RAID captured"
    sh("mdadm --stop /dev/md0 && mdadm --zero-superblock /dev/vde /dev/vdf")
    return source


def raid1(source: Layout, targets: tuple[str, str], log: str) -> None:
    mapping = {"/dev/vde": targets[0], "/dev/vdf": targets[1]}
    got = recreate(source, mapping, True, log)
    assert raid_view(got) == raid_view(source), (raid_view(got), raid_view(source))
    # take it away again: the next round trip recreates the same array UUID elsewhere
    sh(f"mdadm --stop /dev/md0 && mdadm --zero-superblock {targets[0]} {targets[1]}")


def run(name: str, test: Callable[[], None]) -> bool:
    try:
        test()
    except Exception as exc:  # report every failure and go on with the next round trip
        traceback.print_exc()
        print(f"RESULT {name} FAIL: {type(exc).__name__}: {str(exc)[:400]}", flush=True)
        return False
    print(f"RESULT {name} PASS", flush=True)
    return True


def main() -> int:
    holder: dict[str, Layout] = {}

    def source() -> None:
        holder["lvm"] = make_lvm_source()

    results = [run("lvm-source", source)]
    if results[0]:
        results.append(run("lvm-same-size", lambda: lvm_same_size(holder["lvm"])))
        results.append(run("lvm-larger", lambda: lvm_larger(holder["lvm"])))
        results.append(run("lvm-larger-grow-root", lambda: lvm_larger_grow_root(holder["lvm"])))

    def raid_source() -> None:
        holder["raid"] = make_raid_source()

    results.append(run("raid1-source", raid_source))
    if results[-1]:
        same, larger = ("/dev/vdg", "/dev/vdh"), ("/dev/vdi", "/dev/vdj")
        results.append(run("raid1-same-size", lambda: raid1(holder["raid"], same, "/tmp/r1")))
        results.append(run("raid1-larger", lambda: raid1(holder["raid"], larger, "/tmp/r2")))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
