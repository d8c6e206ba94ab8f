"""A small bootable Debian 12 disk image, and a boot of a disk (machine.py's QEMU) to its marker.

Why: a recovery is only proven when the restored disk boots. The source system must be a real
one (GRUB in the MBR gap, /boot and / as separate ext4, swap, fstab by UUID), yet small enough to
back up and restore in seconds, and it must say on the serial console that it booted and which
system it is. Its `rescue-marker.service` prints one line,
`RESCUE-BOOT-MARKER host=<hostname> sum=<sha256 of /etc/rescue-marker.txt or "missing">`,
and powers the VM off, so a boot test ends by itself.

Two variants, each cached under its own key: `source_image("bios")` (GRUB for BIOS in the GPT
BIOS boot partition) and `source_image("uefi")` (grub-efi-amd64, an EFI system partition as p1,
mounted at /boot/efi by fstab). The host cannot mount vfat, so the UEFI image's ESP is left EMPTY
and grub-install is not run: the image is only a source to back up, and the recovery under test
installs GRUB onto the recovered ESP itself. What the image does hold is what a UEFI system that
boots by GRUB holds: grub-efi-amd64-bin's /usr/lib/grub/x86_64-efi and grub-install's copy of its
modules in /boot/grub/x86_64-efi, which is how a recovery can tell that it boots by UEFI.
`boot_disk(..., firmware="uefi")` boots a disk with OVMF (package `ovmf`).

The image is built once per machine (debootstrap, a few minutes) and cached under
/var/cache/rescue-vm, keyed by a hash of every input (imagecache.py: built under a lock, renamed
into place only when complete). Loop devices and mounts are always released in a `finally`. The
root file system is the LAST partition on purpose: a recovery onto a larger disk grows the last
partition. boot_disk's QEMU is machine.py's, with TCG (KVM hangs on this host) and no network at
all; see shared/VM-NOTES.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from imagecache import MIRROR, cached_build
from imagecache import run_logged as _run
from loopdisks import attached_image, loop_disk, partition, sh
from machine import Disk, Machine

MARKER_PREFIX = "RESCUE-BOOT-MARKER"
HOSTNAME = "rescue-src"
MARKER_FILE = "/etc/rescue-marker.txt"
MARKER_TEXT = "rescue boot disk marker: this file must survive backup and recovery unchanged.\n"
MARKER_SUM = hashlib.sha256(MARKER_TEXT.encode()).hexdigest()

# Partition layout (MiB), in order: BIOS boot, /boot, swap, / (the rest).
DISK_MIB = 1536
BIOS_BOOT_MIB = 1
BOOT_MIB = 192
SWAP_MIB = 64
BIOS_BOOT_TYPE = "21686148-6449-6E6F-744E-656564454649"  # "Hah!IdontNeedEFI"
LINUX_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
SWAP_TYPE = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"


def _sfdisk_script(first: str) -> str:
    """The layout for sfdisk, its first partition ("size=..., type=..., name=...") given."""
    return f"""label: gpt
{first}
size={BOOT_MIB}MiB, type={LINUX_TYPE}, name=boot
size={SWAP_MIB}MiB, type={SWAP_TYPE}, name=swap
type={LINUX_TYPE}, name=root
"""


SFDISK_SCRIPT = _sfdisk_script(f"size={BIOS_BOOT_MIB}MiB, type={BIOS_BOOT_TYPE}, name=bios")
# The UEFI variant: the same layout with an EFI system partition in place of the BIOS boot one,
# so /boot, swap and / keep their partition numbers (2, 3, 4).
ESP_MIB = 64
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ESP_LABEL = "EFI"
ESP_FSTAB_OPTIONS = "umask=0077"
UEFI_SFDISK_SCRIPT = _sfdisk_script(f"size={ESP_MIB}MiB, type={ESP_TYPE}, name=esp")
FIRMWARES = ("bios", "uefi")

PACKAGES = [
    "linux-image-amd64",
    "grub-pc",
    "systemd-sysv",
    "udev",
    "e2fsprogs",
    "util-linux",
    "kmod",
    "initramfs-tools",
]
UEFI_PACKAGES = ["grub-efi-amd64" if name == "grub-pc" else name for name in PACKAGES]
# The "server" variant runs rescue itself (vm-tests back it up from inside the VM): the Python and
# the native parts rescue's virtualenv needs, sfdisk for the layout capture, and networkd (part of
# systemd) for DHCP. Its virtualenv is copied in per test, from the ISO's layer.
SERVER_PACKAGES = ["python3", "librsync2", "gnupg", "fdisk"]
# Where grub-efi-amd64-bin keeps GRUB's EFI modules, and where grub-install copies them (*.mod and
# *.lst): their presence under /boot/grub is how a backed-up system shows that it boots by UEFI.
GRUB_EFI_LIB = "usr/lib/grub/x86_64-efi"
GRUB_EFI_BOOT = "boot/grub/x86_64-efi"
# Modules the guest needs to mount the ESP (vfat, default codepage 437, iocharset ascii, utf8):
# checked after trimming, because without them the boot ends in emergency mode.
ESP_MODULES = (
    "fs/fat/fat",
    "fs/fat/vfat",
    "fs/nls/nls_cp437",
    "fs/nls/nls_ascii",
    "fs/nls/nls_utf8",
)
# Deleted after install to keep the image (and every backup of it) small: nothing that a QEMU
# guest with virtio/SATA/IDE disks and no network needs to boot.
TRIM_PATHS = [
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/i18n",
]
TRIM_MODULES = [
    "drivers/gpu",
    "drivers/net/ethernet",
    "drivers/net/wireless",
    "drivers/media",
    "drivers/infiniband",
    "drivers/staging",
    "drivers/bluetooth",
    "drivers/isdn",
    "drivers/iio",
    "drivers/thunderbolt",
    "drivers/nfc",
    "sound",
    "net/wireless",
    "net/mac80211",
    "net/bluetooth",
]

MARKER_SCRIPT = f"""#!/bin/sh
# Print the boot marker that tests read from the serial console.
if [ -r {MARKER_FILE} ]; then
    sum=$(sha256sum {MARKER_FILE} | cut -d' ' -f1)
else
    sum=missing
fi
echo "{MARKER_PREFIX} host=$(hostname) sum=$sum"
"""
MARKER_UNIT = """[Unit]
Description=Print the rescue boot marker on the serial console, then power off
Before=getty.target serial-getty@ttyS0.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/rescue-marker
# Not `systemctl poweroff`: that first asks logind over D-Bus (absent here) and logs a failure.
ExecStartPost=/bin/systemctl --no-block --job-mode=replace-irreversibly start poweroff.target
StandardOutput=tty
TTYPath=/dev/ttyS0

[Install]
WantedBy=multi-user.target
"""
DEFAULT_GRUB = """GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=ttyS0,115200n8"
GRUB_TERMINAL="serial console"
GRUB_SERIAL_COMMAND="serial --speed=115200 --unit=0 --word=8 --parity=no --stop=1"
GRUB_DISABLE_OS_PROBER=true
GRUB_DISABLE_RECOVERY=true
"""
HOSTS = f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
# No hibernation: without this the initramfs hook picks a swap device from the build host.
INITRAMFS_RESUME = "RESUME=none\n"
# Bump when a build step changes in a way the constants above do not show.
RECIPE_VERSION = 1
# The same, for the steps only the UEFI variant has (not part of the BIOS key).
UEFI_RECIPE_VERSION = 1

CHROOT_ENV = ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root"]


def _key(firmware: str = "bios", server: bool = False) -> str:
    """Hash of every input of the image, so a changed recipe never reuses an old image.

    The BIOS key hashes exactly what it always did (changing it would rebuild every cached image).
    """
    uefi = _check_firmware(firmware) == "uefi"
    parts = [
        str(RECIPE_VERSION),
        MIRROR,
        *(UEFI_PACKAGES if uefi else PACKAGES),
        *TRIM_PATHS,
        *TRIM_MODULES,
        UEFI_SFDISK_SCRIPT if uefi else SFDISK_SCRIPT,
        str(DISK_MIB),
        HOSTNAME,
        HOSTS,
        MARKER_FILE,
        MARKER_TEXT,
        MARKER_SCRIPT,
        MARKER_UNIT,
        DEFAULT_GRUB,
        INITRAMFS_RESUME,
    ]
    if uefi:
        parts += [
            "uefi",
            str(UEFI_RECIPE_VERSION),
            ESP_LABEL,
            ESP_FSTAB_OPTIONS,
            GRUB_EFI_LIB,
            GRUB_EFI_BOOT,
            *ESP_MODULES,
        ]
    if server:
        parts += ["server", *SERVER_PACKAGES]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _check_firmware(firmware: str) -> str:
    if firmware not in FIRMWARES:
        raise ValueError(f"firmware must be one of {FIRMWARES}, not {firmware!r}")
    return firmware


def source_image(firmware: str = "bios", *, server: bool = False) -> Path:
    """The cached bootable source disk image (raw, sparse) for firmware "bios" or "uefi", built
    first if absent. The UEFI image's ESP is empty (see the module's docstring): it boots only
    after a recovery (or a test) has put a loader on it.

    server=True adds SERVER_PACKAGES, so that rescue can run inside it.

    Callers must copy it (`cp --sparse=always`) before writing to it or booting it read-write.
    """
    key = _key(firmware, server)
    # The BIOS name is the historical one; the other variants have their own cache entries.
    key = key if firmware == "bios" else f"{firmware}-{key}"
    key = f"server-{key}" if server else key
    return cached_build(f"bootdisk-{key}", "disk.img", lambda work: _build(work, firmware, server))


@contextlib.contextmanager
def mounted_system(image: Path, root: Path, *, read_only: bool = False) -> Iterator[list[str]]:
    """The system on a boot disk (or a disk recovered from one) at root: / (partition 4) with
    /boot (partition 2) on it, for the block; its partition devices are yielded."""
    root.mkdir(exist_ok=True)
    options = ["-o", "ro"] if read_only else []
    with attached_image(image, read_only=read_only) as (_, parts):
        sh("mount", *options, parts[3], str(root))
        try:
            sh("mount", *options, parts[1], str(root / "boot"))
            yield parts
        finally:
            sh("umount", "-R", str(root))


def _build(work: Path, firmware: str, server: bool = False) -> None:
    """debootstrap into work/rootfs, configure and trim it, then lay it onto a partitioned disk."""
    started = time.monotonic()
    uefi = firmware == "uefi"
    log = work / "build.log"
    rootfs = work / "rootfs"
    packages = [*(UEFI_PACKAGES if uefi else PACKAGES), *(SERVER_PACKAGES if server else [])]
    _run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(packages)}",
            "bookworm",
            str(rootfs),
            MIRROR,
        ],
        log,
    )
    uuids = {name: str(uuid.uuid4()) for name in ("boot", "swap", "root")}
    if uefi:  # a FAT volume ID: fstab and blkid show it as XXXX-XXXX
        volume_id = uuid.uuid4().hex[:8].upper()
        uuids["esp"] = f"{volume_id[:4]}-{volume_id[4:]}"
    configure_system(rootfs, uuids)
    kernel = trim_system(rootfs)
    if uefi:
        modules = rootfs / "usr/lib/modules" / kernel / "kernel"
        for name in ESP_MODULES:
            if not list(modules.glob(f"{name}.ko*")):
                raise RuntimeError(f"module {name} is missing: the guest could not mount the ESP")
        if not any((rootfs / GRUB_EFI_LIB).glob("*.mod")):
            raise RuntimeError(f"/{GRUB_EFI_LIB} has no GRUB modules (grub-efi-amd64-bin)")
    image = work / "disk.img"
    with loop_disk(image, f"{DISK_MIB}M") as device:
        first, boot, swap, root = partition(device, UEFI_SFDISK_SCRIPT if uefi else SFDISK_SCRIPT)
        if uefi:  # the ESP stays empty: the host cannot mount vfat (see the module's docstring)
            volume_id = uuids["esp"].replace("-", "")
            _run(["mkfs.vfat", "-F", "32", "-n", ESP_LABEL, "-i", volume_id, first], log)
        _run(["mkfs.ext4", "-q", "-F", "-L", "boot", "-U", uuids["boot"], boot], log)
        _run(["mkswap", "-L", "swap", "-U", uuids["swap"], swap], log)
        _run(["mkfs.ext4", "-q", "-F", "-L", "root", "-U", uuids["root"], root], log)
        mnt = work / "mnt"
        mnt.mkdir()
        with _mounted(root, mnt), _mounted(boot, mnt / "boot", mkdir=True):
            _run(["cp", "-a", f"{rootfs}/.", f"{mnt}/"], log)
            shutil.rmtree(rootfs)
            if uefi:
                (mnt / "boot/efi").mkdir(mode=0o755)  # the ESP's mount point, on /boot
                _copy_grub_efi_modules(mnt)
            with _chroot_binds(mnt):
                chroot = ["chroot", str(mnt), *CHROOT_ENV]
                _run([*chroot, "depmod", "-a", kernel], log)
                _run([*chroot, "update-initramfs", "-u", "-k", kernel], log)
                if not uefi:
                    _run([*chroot, "grub-install", "--target=i386-pc", device], log)
                _run([*chroot, "update-grub"], log)
            _boot_by_uuid(mnt / "boot/grub/grub.cfg", uuids["root"])
            for path in (mnt / "boot/grub/grub.cfg", mnt / "etc/fstab"):
                if "/dev/loop" in path.read_text():
                    raise RuntimeError(f"{path.name} still names a loop device; see {log}")
            usage = {
                name: subprocess.run(
                    ["df", "-B1M", "--output=used", str(point)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.split()[-1]
                for name, point in (("root", mnt), ("boot", mnt / "boot"))
            }
        mnt.rmdir()
        _run(["e2fsck", "-fn", boot], log)
        _run(["e2fsck", "-fn", root], log)
        if uefi and shutil.which("fsck.vfat"):
            _run(["fsck.vfat", "-n", first], log)
    seconds = time.monotonic() - started
    info = [f"kernel {kernel}", f"used_mib root={usage['root']} boot={usage['boot']}"]
    if uefi:
        info += [f"firmware {firmware}", f"esp_uuid {uuids['esp']}"]
    info.append(f"build_seconds {seconds:.0f}")
    (work / "info.txt").write_text("".join(line + "\n" for line in info))


def _copy_grub_efi_modules(root: Path) -> None:
    """What grub-install --target=x86_64-efi leaves in /boot/grub: GRUB's modules and lists."""
    target = root / GRUB_EFI_BOOT
    target.mkdir(parents=True)
    for pattern in ("*.mod", "*.lst"):
        for source in (root / GRUB_EFI_LIB).glob(pattern):
            shutil.copy2(source, target / source.name)


def configure_system(rootfs: Path, uuids: dict[str, str]) -> None:
    """Hostname, fstab by UUID, GRUB on the serial console, the marker unit, a locked root."""
    (rootfs / "etc/hostname").write_text(HOSTNAME + "\n")
    (rootfs / "etc/hosts").write_text(HOSTS)
    fstab = (
        f"UUID={uuids['root']}\t/\text4\terrors=remount-ro\t0\t1\n"
        f"UUID={uuids['boot']}\t/boot\text4\tdefaults\t0\t2\n"
        f"UUID={uuids['swap']}\tnone\tswap\tsw\t0\t0\n"
    )
    if "esp" in uuids:  # the UEFI variant
        fstab += f"UUID={uuids['esp']}\t/boot/efi\tvfat\t{ESP_FSTAB_OPTIONS}\t0\t1\n"
    (rootfs / "etc/fstab").write_text(fstab)
    (rootfs / "etc/default/grub").write_text(DEFAULT_GRUB)
    (rootfs / "etc/initramfs-tools/conf.d/resume").write_text(INITRAMFS_RESUME)
    (rootfs / MARKER_FILE.lstrip("/")).write_text(MARKER_TEXT)
    script = rootfs / "usr/local/sbin/rescue-marker"
    script.write_text(MARKER_SCRIPT)
    script.chmod(0o755)
    systemd = rootfs / "etc/systemd/system"
    (systemd / "rescue-marker.service").write_text(MARKER_UNIT)
    wants = systemd / "multi-user.target.wants"
    wants.mkdir(exist_ok=True)
    (wants / "rescue-marker.service").symlink_to("/etc/systemd/system/rescue-marker.service")
    # A first boot must not stop at an interactive prompt on the console.
    (systemd / "systemd-firstboot.service").symlink_to("/dev/null")
    shadow = rootfs / "etc/shadow"
    lines = shadow.read_text().splitlines()
    shadow.write_text(
        "".join(
            (re.sub(r"^root:[^:]*:", "root:!*:", line) if line.startswith("root:") else line) + "\n"
            for line in lines
        )
    )


def trim_system(rootfs: Path) -> str:
    """Delete what the guest never needs; return the kernel version (for depmod/initramfs)."""
    for relative in TRIM_PATHS:
        shutil.rmtree(rootfs / relative, ignore_errors=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True)
    (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True)
    (kernel,) = [p.name for p in (rootfs / "usr/lib/modules").iterdir()]
    modules = rootfs / "usr/lib/modules" / kernel / "kernel"
    for relative in TRIM_MODULES:
        shutil.rmtree(modules / relative, ignore_errors=True)
    return kernel


@contextlib.contextmanager
def _mounted(device: str, point: Path, mkdir: bool = False) -> Iterator[None]:
    """Mount device on point for the block; always unmount."""
    if mkdir:
        point.mkdir(exist_ok=True)
    subprocess.run(["mount", device, str(point)], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["umount", str(point)], check=True, capture_output=True)


@contextlib.contextmanager
def _chroot_binds(root: Path) -> Iterator[None]:
    """/dev, /proc and /sys bound into root (rslave, so unmounting does not hit the host's)."""
    with contextlib.ExitStack() as stack:
        for name in ("dev", "proc", "sys"):
            target = root / name
            target.mkdir(exist_ok=True)
            subprocess.run(["mount", "--rbind", f"/{name}", str(target)], check=True)
            stack.callback(subprocess.run, ["umount", "-R", str(target)], check=True)
            subprocess.run(["mount", "--make-rslave", str(target)], check=True)
        yield


def _boot_by_uuid(grub_cfg: Path, root_uuid: str) -> None:
    """Without udev, update-grub writes root=/dev/loopNpM: name the root by UUID instead."""
    text = grub_cfg.read_text()
    grub_cfg.write_text(re.sub(r"root=/dev/loop\d+p\d+", f"root=UUID={root_uuid}", text))


def boot_disk(
    image: Path,
    log: Path,
    timeout: float = 600,
    *,
    snapshot: bool = False,
    firmware: str = "bios",
) -> str:
    """Boot a raw disk (image file or block device) in QEMU; return its marker line.

    The whole serial console goes to log. Fails fast with RuntimeError on a boot failure seen on
    the console or when QEMU exits without a marker, and with TimeoutError after timeout seconds.
    QEMU is always killed before returning; snapshot=True keeps the disk unchanged.
    firmware="uefi" boots with OVMF (package `ovmf`), its variable store a fresh copy next to log.
    """
    _check_firmware(firmware)
    log.with_name(log.name + ".OVMF_VARS.fd").unlink(missing_ok=True)  # Machine makes it anew
    machine = Machine(
        log.name,
        log.parent,
        console_log=log,
        disks=[Disk(image, snapshot=snapshot, bootindex=0)],
        firmware=firmware,
        network=False,
        memory_mib=1024,
    )
    with machine:
        return machine.wait_for(re.escape(MARKER_PREFIX) + r"[^\r\n]*(?=[\r\n])", timeout)[
            0
        ].strip()
