"""Runs INSIDE the QEMU test guest (testsupport/stacked.py starts it): lays the host-built Debian
system onto blank virtio disks in one of the layouts the Debian installer makes, and makes it
bootable from a chroot, as the installer's last steps do.

The work directory (shared at its host path) holds task.json (the layout's name, the tarball,
the LUKS passphrase), the tarball and the disk images, attached as vdb (and vdc). Layouts:
- lvm: MBR; /boot (ext2) on p1, an extended p2, the PV on p5; VG rescue-src-vg with LVs root
  (ext4) and swap_1, the installer's "use entire disk and set up LVM".
- luks-lvm: the same with the PV inside a LUKS2 container on p5 (vdb5_crypt), the installer's
  "encrypted LVM"; crypttab names the container by UUID.
- raid1: MBR on two disks, one RAID partition each, an MD RAID1 (metadata 1.2) holding / (ext4,
  /boot in it), GRUB on both disks.
- btrfs: GPT with a BIOS boot partition and one btrfs: subvolumes @ (/, the default), @home
  (/home) and @snapshots (/.snapshots) holding a read-only snapshot of @.
Prints `RESULT build PASS` or `RESULT build FAIL: reason`.
"""

from __future__ import annotations

import json
import os
import subprocess
import traceback
from pathlib import Path

WORK = Path(os.environ["rescuework"])  # noqa: SIM112  (the kernel command line sets it)
ROOT = Path("/mnt/src")
LINUX_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
VG = "rescue-src-vg"


def sh(command: str, stdin: str | None = None) -> str:
    print(f"+ {command}", flush=True)
    result = subprocess.run(command, shell=True, input=stdin, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{command}: exit {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def uuid_of(device: str) -> str:
    return sh(f"blkid -p -s UUID -o value {device}").strip()


def mount(device: str, point: Path, options: str = "") -> None:
    point.mkdir(parents=True, exist_ok=True)
    sh(f"mount {'-o ' + options if options else ''} {device} {point}")


def lvm_on(pv: str) -> tuple[str, str]:
    """The installer's VG with root and swap_1 on pv; their fstab lines (mapper paths, as the
    installer writes them)."""
    sh(f"pvcreate -ff -y {pv} && vgcreate {VG} {pv}")
    sh(f"lvcreate -y -L 1088M -n root {VG} && lvcreate -y -l 100%FREE -n swap_1 {VG}")
    root, swap = (
        f"/dev/mapper/{VG.replace('-', '--')}-root",
        f"/dev/mapper/{VG.replace('-', '--')}-swap_1",
    )
    sh(f"mkfs.ext4 -q -F -L root {root} && mkswap -L swap {swap}")
    return root, f"{root}\t/\text4\terrors=remount-ro\t0\t1\n{swap}\tnone\tswap\tsw\t0\t0\n"


def build_lvm(task: dict[str, str], encrypted: bool) -> dict[str, object]:
    last = "83" if encrypted else "8e"
    sh(
        "sfdisk --quiet --wipe always /dev/vdb",
        f"label: dos\nsize=256MiB, type=83, bootable\ntype=5\ntype={last}\n",
    )
    sh("mkfs.ext2 -q -F -L boot /dev/vdb1")
    crypttab = ""
    pv = "/dev/vdb5"
    if encrypted:
        key = task["passphrase"]
        sh(
            "cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2"
            " --pbkdf-force-iterations 1000 --key-file - /dev/vdb5",
            key,
        )
        sh("cryptsetup open --key-file - /dev/vdb5 vdb5_crypt", key)
        crypttab = f"vdb5_crypt\tUUID={uuid_of('/dev/vdb5')}\tnone\tluks,discard\n"
        pv = "/dev/mapper/vdb5_crypt"
    root, fstab = lvm_on(pv)
    fstab += f"UUID={uuid_of('/dev/vdb1')}\t/boot\text2\tdefaults\t0\t2\n"
    mount(root, ROOT)
    mount("/dev/vdb1", ROOT / "boot")
    return {"fstab": fstab, "crypttab": crypttab, "grub_disks": ["/dev/vdb"]}


def build_raid1(task: dict[str, str]) -> dict[str, object]:
    for disk in ("/dev/vdb", "/dev/vdc"):
        sh(f"sfdisk --quiet --wipe always {disk}", "label: dos\ntype=fd, bootable\n")
    # The images are blank (zeros), so the members agree already: no resync to wait for.
    sh(
        "mdadm --create /dev/md0 --run --assume-clean --level=1 --raid-devices=2"
        " --metadata=1.2 --name=rescue-src:0 --homehost=rescue-src /dev/vdb1 /dev/vdc1"
    )
    md = "/dev/md0"
    sh(f"mkfs.ext4 -q -F -L root {md}")
    mount(md, ROOT)
    fstab = f"UUID={uuid_of(md)}\t/\text4\terrors=remount-ro\t0\t1\n"
    return {"fstab": fstab, "crypttab": "", "grub_disks": ["/dev/vdb", "/dev/vdc"], "md": True}


def build_btrfs(task: dict[str, str]) -> dict[str, object]:
    sh(
        "sfdisk --quiet --wipe always /dev/vdb",
        f"label: gpt\nsize=1MiB, type={BIOS_BOOT}, name=bios\ntype={LINUX_TYPE}, name=root\n",
    )
    sh("mkfs.btrfs -q -f -L root /dev/vdb2")
    top = Path("/mnt/top")
    mount("/dev/vdb2", top)
    for name in ("@", "@home", "@snapshots"):
        sh(f"btrfs subvolume create {top / name}")
    sh(f"btrfs subvolume set-default {top / '@'}")
    sh(f"umount {top}")
    uuid = uuid_of("/dev/vdb2")
    fstab = ""
    for sub, point in (("@", "/"), ("@home", "/home"), ("@snapshots", "/.snapshots")):
        mount("/dev/vdb2", ROOT / point.lstrip("/"), f"subvol={sub}")
        passno = 1 if point == "/" else 2
        fstab += f"UUID={uuid}\t{point}\tbtrfs\tdefaults,subvol={sub}\t0\t{passno}\n"
    return {"fstab": fstab, "crypttab": "", "grub_disks": ["/dev/vdb"], "snapshot": True}


def uuid_links() -> None:
    """/dev/disk/by-uuid for every file system (no udev here), so update-grub names the root by
    UUID, as on an installed system."""
    links = Path("/dev/disk/by-uuid")
    links.mkdir(parents=True, exist_ok=True)
    for line in sh("blkid -o export").split("\n\n"):
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "UUID" in fields and "DEVNAME" in fields:
            link = links / fields["UUID"]
            if not link.exists():
                link.symlink_to(fields["DEVNAME"])


def install(task: dict[str, str], made: dict[str, object]) -> None:
    sh(f"tar --numeric-owner --xattrs --xattrs-include='*' -xpf {task['tarball']} -C {ROOT}")
    (ROOT / "etc/fstab").write_text(str(made["fstab"]))
    if made["crypttab"]:
        (ROOT / "etc/crypttab").write_text(str(made["crypttab"]))
    if made.get("md"):
        scan = sh("mdadm --detail --scan")
        (ROOT / "etc/mdadm/mdadm.conf").write_text("HOMEHOST <system>\nMAILADDR root\n" + scan)
    home = ROOT / task["home_marker"]
    home.parent.mkdir(parents=True, exist_ok=True)
    home.write_text(task["home_text"])
    os.chown(home.parent, 1000, 1000)
    os.chown(home, 1000, 1000)
    uuid_links()
    # MODULES=dep: only the modules this (virtio) machine needs. With Debian's "most",
    # update-initramfs took 12 minutes under emulation, here and in every recovery that
    # rebuilds it (LUKS, MD); dep is a setting Debian supports, and the disks stay virtio.
    (ROOT / "etc/initramfs-tools/conf.d/modules").write_text("MODULES=dep\n")
    for name in ("dev", "proc", "sys", "run"):
        sh(f"mount --rbind /{name} {ROOT / name} && mount --make-rslave {ROOT / name}")
    chroot = f"chroot {ROOT} env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root"
    try:
        sh(f"{chroot} update-initramfs -u -k all")
        for disk in made["grub_disks"]:  # type: ignore[attr-defined]
            sh(f"{chroot} grub-install --target=i386-pc {disk}")
        sh(f"{chroot} update-grub")
    finally:
        for name in ("run", "sys", "proc", "dev"):
            subprocess.run(["umount", "-R", str(ROOT / name)])
    grub = (ROOT / "boot/grub/grub.cfg").read_text()
    if "root=/dev/vd" in grub:
        raise RuntimeError("grub.cfg names a kernel disk name, not the root's UUID or LV")
    if made.get("snapshot"):
        sh(f"btrfs subvolume snapshot -r {ROOT} {ROOT / '.snapshots/1'}")


def main() -> None:
    task = json.loads((WORK / "task.json").read_text())
    try:
        builders = {
            "lvm": lambda: build_lvm(task, encrypted=False),
            "luks-lvm": lambda: build_lvm(task, encrypted=True),
            "raid1": lambda: build_raid1(task),
            "btrfs": lambda: build_btrfs(task),
        }
        made = builders[task["layout"]]()
        install(task, made)
        sh(f"umount -R {ROOT}")
        sh("vgchange -an >/dev/null 2>&1 || true")
        sh("cryptsetup close vdb5_crypt 2>/dev/null || true")
        sh("mdadm --stop --scan 2>/dev/null || true")
        sh("sync")
        print("RESULT build PASS", flush=True)
    except Exception as exc:  # one line for the host, the trace on the console
        traceback.print_exc()
        print(f"RESULT build FAIL: {exc}".splitlines()[0], flush=True)


if __name__ == "__main__":
    main()
