"""The manifest: what recovery must know about the host, saved inside every backup.

Save at backup, replay at restore (ReaR's idea): before each backup rescue writes one JSON file at
a fixed path under the backed-up root, and the selection always includes it, so recovery restores
that one file first and the rescue ISO stays generic. It records what duplicity cannot keep or
what a blank machine cannot know: the host's facts and boot mode, the bootloader, the disk layout,
the numeric ids of every user and group (duplicity maps owners by name), the owner and mode of
every excluded directory (so /tmp comes back 1777), and the hard-link groups (duplicity restores
each link as a separate copy). The settings are recorded without secrets.

This module reads the host and writes the file; its shape, and the checks that an old manifest
loads and a newer one is refused, are rescue.recovery.manifest_model's.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import socket
import stat
import time
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Literal

from rescue import __version__
from rescue.config import Settings
from rescue.errors import ManifestError, RescueError
from rescue.exact.capture import Discard, capture, record_selection
from rescue.exact.records import SIDECAR_REL
from rescue.exact.sizes import SIZES_REL
from rescue.layout.model import Layout
from rescue.placement.fsops import write_atomic
from rescue.recovery.manifest_model import (
    FORMAT_VERSION,
    Bootloader,
    ExcludedAbsent,
    ExcludedEntry,
    Host,
    Manifest,
    MetadataCounts,
    load,
)

# Re-exported: the callers of rescue.recovery.manifest keep their names (manifest.load,
# .FORMAT_VERSION).
__all__ = ["FORMAT_VERSION", "Manifest", "load"]
MANIFEST_REL = "var/lib/rescue/manifest.json"
# Copies of etc/passwd and etc/group, beside the manifest (copy_identity).
IDENTITY_REL = "var/lib/rescue/identity"
IDENTITY_NAMES = ("passwd", "group")


def copy_identity(root: Path) -> None:
    """Copy etc/passwd and etc/group into rescue's own directory (IDENTITY_REL), before the
    walk that records the selection, so the copies are ordinary files of the set.

    Why: recovery needs them first (duplicity maps owners by name), together with the
    manifest. Fetched from etc/, they need a run that selects by pattern, which reads every
    volume of the set; beside the manifest, one run of rescue's own directory reads only the
    volume that holds it (a minute less under emulation, per volume).
    """
    for name in IDENTITY_NAMES:
        source, copy = root / "etc" / name, root / IDENTITY_REL / name
        try:
            data = source.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ManifestError(f"cannot read {source}: {exc.strerror}") from None
        with contextlib.suppress(OSError):
            if copy.read_bytes() == data:
                continue  # unchanged: left as it is, so an incremental does not store it again
        try:
            write_atomic(copy, data, mode=0o644)
        except OSError as exc:
            raise ManifestError(f"cannot copy {source}: {exc.strerror}") from None


def manifest_path(root: str | Path) -> Path:
    """Where the manifest of a backup of root lives on the host."""
    return Path(root) / MANIFEST_REL


def read_os_release(root: Path) -> dict[str, str]:
    """KEY=value pairs of the backed-up system's os-release (etc/ first, then usr/lib/)."""
    for rel in ("etc/os-release", "usr/lib/os-release"):
        try:
            text = (root / rel).read_text()
        except OSError:
            continue
        pairs = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() and not key.startswith("#"):
                pairs[key.strip()] = value.strip().strip('"').strip("'")
        return pairs
    return {}


def boot_mode(root: Path, layout: Layout | None) -> str:
    """How the backed-up system boots: the running firmware's mode for /; for a system mounted
    below root, what it holds (GRUB's EFI modules, an EFI directory, an ESP in its fstab)."""
    if str(root) == "/":
        return "uefi" if Path("/sys/firmware/efi").exists() else "bios"
    fstab_points = {e.mountpoint for e in layout.fstab} if layout else set()
    if (
        (root / "boot/grub/x86_64-efi").is_dir()
        or (root / "boot/efi/EFI").is_dir()
        or "/boot/efi" in fstab_points
    ):
        return "uefi"
    return "bios"


def _version_key(name: str) -> list[tuple[int, int | str]]:
    """A kernel release's sort key: 6.1.0-10 after 6.1.0-9 (numbers compared as numbers)."""
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name) if p]


def installed_kernels(root: Path) -> list[str]:
    """The kernel releases the system under root holds: its boot/vmlinuz-* images and its
    lib/modules directories (usr/lib/modules on a merged /usr), oldest first."""
    found = set()
    with contextlib.suppress(OSError):
        found |= {p.name.removeprefix("vmlinuz-") for p in (root / "boot").glob("vmlinuz-*")}
    for rel in ("lib/modules", "usr/lib/modules"):
        with contextlib.suppress(OSError):
            found |= {p.name for p in (root / rel).iterdir() if p.is_dir()}
    return sorted(found, key=_version_key)


def default_kernel(root: Path, kernels: list[str]) -> str | None:
    """The kernel the system under root boots by default: the target of its vmlinuz link (at
    / or in boot/, as Debian's kernel hooks keep it), else the newest installed."""
    for rel in ("vmlinuz", "boot/vmlinuz"):
        with contextlib.suppress(OSError):
            name = os.path.basename(os.readlink(root / rel)).removeprefix("vmlinuz-")
            if name in kernels:
                return name
    return kernels[-1] if kernels else None


def host_facts(root: Path, layout: Layout | None = None) -> Host:
    """Name, OS, kernels, architecture and boot mode of the machine being backed up.

    kernels are the releases installed in the backed-up system; kernel is the one it runs: the
    running kernel for a backup of / that has it installed (or of a system with no kernel of its
    own, a container's), else the backed-up system's default kernel, never the kernel of the
    machine that happens to read a system mounted below root."""
    os_release = read_os_release(root)
    hostname = socket.gethostname()
    if str(root) != "/":  # a system mounted below root: its own name, not this machine's
        with contextlib.suppress(OSError):
            hostname = (root / "etc/hostname").read_text().strip() or hostname
    kernels = installed_kernels(root)
    running = platform.release()
    if str(root) == "/" and (running in kernels or not kernels):
        kernel: str | None = running
    else:
        kernel = default_kernel(root, kernels)
    return Host(
        hostname=hostname,
        os={k: os_release[k] for k in ("ID", "VERSION_ID", "PRETTY_NAME") if k in os_release},
        kernel=kernel,
        kernels=kernels,
        architecture=platform.machine(),
        boot_mode="uefi" if boot_mode(root, layout) == "uefi" else "bios",
    )


def read_ids(path: Path) -> dict[str, int]:
    """name -> numeric id from a passwd- or group-format file (name:x:ID:...)."""
    ids: dict[str, int] = {}
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ids
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] and not line.startswith("#") and fields[2].isdigit():
            ids[fields[0]] = int(fields[2])
    return ids


def excluded_dirs(root: Path, excludes: Iterable[str]) -> list[ExcludedEntry | ExcludedAbsent]:
    """Owner, group, mode and times (nanoseconds) of each excluded path under root, so recovery
    recreates it as it was: the selection leaves these out, so the metadata records never
    describe them."""
    entries: list[ExcludedEntry | ExcludedAbsent] = []
    for path in excludes:
        rel = _relative(path, root)
        if rel is None:
            continue
        target = root / rel
        try:
            st = target.lstat()
        except OSError:
            entries.append(ExcludedAbsent(path="/" + rel, exists=False))
            continue
        entries.append(
            ExcludedEntry(
                path="/" + rel,
                exists=True,
                type=_kind(st.st_mode),
                uid=st.st_uid,
                gid=st.st_gid,
                mode=f"{stat.S_IMODE(st.st_mode):04o}",
                mtime_ns=st.st_mtime_ns,
                atime_ns=st.st_atime_ns,
                mount_point=os.path.ismount(target),
            )
        )
    return entries


def _kind(mode: int) -> Literal["dir", "symlink", "file", "other"]:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "file" if stat.S_ISREG(mode) else "other"


def _relative(path: str, root: Path) -> str | None:
    """path (absolute, on the host) relative to root, or None when it lies outside."""
    p, r = PurePosixPath(path), PurePosixPath(str(root))
    if p == r:
        return None
    try:
        return str(p.relative_to(r))
    except ValueError:
        return None


def hardlink_groups(
    root: Path, excludes: Iterable[str] = (), includes: Iterable[str] | None = None
) -> list[list[str]]:
    """Every group of two or more paths under root (or its includes) that share one inode,
    relative to root: the metadata capture's walk, with its records thrown away.

    Excluded paths are not walked (so /proc and /sys never are); other file systems mounted below
    root are, as duplicity backs them up too.
    """
    return capture(Path(root), includes or [str(root)], excludes, Discard()).hardlinks


def grub_disks(disks: Iterable[str]) -> list[str]:
    """The disks whose boot sector holds GRUB's boot code (as ReaR finds it)."""
    found = []
    for disk in disks:
        try:
            with open(disk, "rb") as device:
                if b"GRUB" in device.read(512):
                    found.append(disk)
        except OSError:
            continue
    return found


ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"


def esp_disk(layout: Layout | None, root: Path) -> str | None:
    """The disk holding the EFI system partition: the one mounted at root/boot/efi, else the
    only ESP there is."""
    if not layout:
        return None
    esps = [
        (disk.path, part.filesystem.mountpoint if part.filesystem else None)
        for disk in layout.disks
        for part in disk.partitions
        if part.type.upper() == ESP_TYPE
    ]
    mounted = [path for path, mountpoint in esps if mountpoint == str(root / "boot/efi")]
    if mounted:
        return mounted[0]
    return esps[0][0] if len(esps) == 1 else None


def bootloader(
    root: Path, boot_mode: str, disks: Iterable[str], layout: Layout | None = None
) -> Bootloader:
    """What boots the host: GRUB for EFI (on the disk of the ESP) or for BIOS (on the disk whose
    boot sector holds GRUB)."""
    if boot_mode == "uefi":
        return Bootloader(kind="grub-efi", disk=esp_disk(layout, root))
    if (root / "boot/grub/i386-pc").is_dir():
        found = grub_disks(disks)
        return Bootloader(kind="grub-pc", disk=found[0] if found else None, disks=found)
    return Bootloader(kind="unknown", disk=None)


def _layout(root: Path) -> tuple[Layout | None, str | None, list[str]]:
    """The disk layout of the disks that hold root (all disks for /), and their paths.

    A failure here must not stop the backup: it is recorded, and recovery asks for a layout.
    """
    try:
        from rescue.layout.capture import capture
        from rescue.layout.kernel import disks_holding

        devices = None if str(root) == "/" else disks_holding(root)
        # The fstab is the backed-up system's own: recovery mounts what it mounts.
        layout = capture(devices, fstab=root / "etc/fstab")
    except (RescueError, OSError, ImportError, ValueError) as exc:
        # ValueError: a probe's output the strict layout model refuses (pydantic's error)
        return None, str(exc).splitlines()[0], []
    return layout, None, [d.path for d in layout.disks]


def build(
    settings: Settings,
    hardlinks: list[list[str]] | None = None,
    metadata: MetadataCounts | None = None,
) -> Manifest:
    """The manifest of the host and selection that settings describe. hardlinks are the groups
    the metadata capture found in its walk (walked here when not given); metadata is what that
    capture recorded, in counts."""
    root = Path(str(settings.selection.root))
    layout, layout_error, disks = _layout(root)
    facts = host_facts(root, layout)
    return Manifest(
        format_version=FORMAT_VERSION,
        tool_version=__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        root=str(root),
        host=facts,
        bootloader=bootloader(root, facts.boot_mode, disks, layout),
        layout=layout,
        layout_error=layout_error,
        users=read_ids(root / "etc/passwd"),
        groups=read_ids(root / "etc/group"),
        excluded=excluded_dirs(root, settings.selection.exclude),
        hardlinks=(
            hardlinks
            if hardlinks is not None
            else hardlink_groups(root, settings.selection.exclude)
        ),
        metadata=metadata,
        settings=settings.redacted(),
    )


def write(settings: Settings, extra_excludes: Iterable[str] = ()) -> Path:
    """Record the metadata duplicity drops (rescue.exact), then build the manifest and write
    both where the backup will pick them up. One walk of the file system serves both."""
    copy_identity(Path(str(settings.selection.root)))
    captured = record_selection(settings, extra_excludes)
    metadata = MetadataCounts(
        file=SIDECAR_REL,
        entries=captured.entries,
        records=captured.records,
        with_xattrs=captured.with_xattrs,
        with_acls=captured.with_acls,
        sparse_files=captured.sparse,
        seconds=round(captured.seconds, 3),
    )
    manifest = build(settings, captured.hardlinks, metadata)
    path = manifest_path(str(settings.selection.root))
    try:
        # rescue's own manifest, rewritten at every backup
        write_atomic(path, manifest.to_json(), mode=0o600)
        root = Path(str(settings.selection.root))
        whole_seconds([root / SIDECAR_REL, root / SIZES_REL, path, path.parent])
    except OSError as exc:
        raise ManifestError(f"cannot write the manifest {path}: {exc.strerror}") from None
    return path


def whole_seconds(paths: Iterable[Path]) -> None:
    """Round the mtimes of the files a backup writes for itself down to the second, in order
    (their directory last: it changed as they were written into it).

    Why: they are written during the backup, after (or while) the walk records the selection,
    so the records cannot hold their times, and duplicity keeps whole seconds only. A trailer of
    their times would need its own time kept somewhere again; a whole-second time is one that
    duplicity itself restores exactly, in every restore and recovery, with nothing to replay.
    Only rescue's own files are touched, each by less than a second.
    """
    for path in paths:
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns // 10**9 * 10**9), follow_symlinks=False)


def excluded_mount_paths(data: Manifest) -> list[str]:
    """The excluded paths of a loaded manifest as host paths (the root joined on), the form the
    layout records mount points in: the disk mapping leaves out disks mounted only there."""
    root = PurePosixPath(data.root)
    return [str(root / rel) for rel in data.excluded_paths()]
