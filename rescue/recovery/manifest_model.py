"""The manifest's contract: the typed, versioned shape the backup writes and recovery reads.

Why a module of its own: the backup side (rescue.recovery.manifest) reads the host to fill it in,
the recovery side (rescue.steps) only reads it back; both import this module and nothing of each
other's, and the shape a file on disk has is written down in one place.

Versioning: `format_version` names the shape. Fields added while it stays 1 have defaults, so a
manifest of an older rescue loads (no `metadata` before the records, no `kernels` nor excluded
times before exact times). Every model refuses unknown keys and wrong types, so a manifest of a
newer rescue -- a higher `format_version`, or keys this rescue does not know -- fails with one
line naming the file, its version and what this rescue reads, instead of recovering half of it.
The JSON written is the JSON read: a round trip is byte for byte (`to_json`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rescue import __version__
from rescue.errors import ManifestError
from rescue.layout.model import UNKNOWN_KEY_ERRORS, Layout, describe_error, dotted

FORMAT_VERSION = 1  # the manifest shape this rescue writes and reads


class _Strict(BaseModel):
    """Unknown keys and wrong types fail, as the layout's do."""

    model_config = ConfigDict(strict=True, extra="forbid")


class Host(_Strict):
    """The facts of the machine backed up. `kernel` is the one it runs (or boots by default)."""

    hostname: str
    os: dict[str, str]  # os-release's ID, VERSION_ID and PRETTY_NAME, those it has
    kernel: str | None
    architecture: str
    boot_mode: Literal["uefi", "bios"]
    kernels: list[str] = Field(default_factory=list)  # since exact times (9784a55)


class Bootloader(_Strict):
    """What boots the host, and the disk it is installed on (None when none was found).

    `disks` are all the disks whose boot sector holds GRUB (grub-pc), `disk` the first of them:
    the members of an MD RAID1 each hold it, so that either disk boots alone."""

    kind: Literal["grub-efi", "grub-pc", "unknown"]
    disk: str | None
    # Written only when set: a manifest without it is byte for byte what rescue wrote before.
    disks: list[str] = Field(default_factory=list, exclude_if=lambda v: not v)


class ExcludedEntry(_Strict):
    """An excluded path that existed: recovery recreates it (a directory) as it was."""

    path: str  # absolute, relative to the backed-up root
    exists: Literal[True]
    type: Literal["dir", "symlink", "file", "other"]
    uid: int
    gid: int
    mode: str  # octal, four digits: "1777"
    mount_point: bool
    mtime_ns: int | None = None  # since exact times (9784a55): None leaves the recovery's time
    atime_ns: int | None = None


class ExcludedAbsent(_Strict):
    """An excluded path that did not exist at backup time: nothing to recreate."""

    path: str
    exists: Literal[False]


Excluded = Annotated[ExcludedEntry | ExcludedAbsent, Field(discriminator="exists")]


class MetadataCounts(_Strict):
    """What the metadata capture recorded (rescue.exact), in counts, and where its file is."""

    file: str
    entries: int
    records: int
    with_xattrs: int
    with_acls: int
    sparse_files: int
    seconds: float


class Manifest(_Strict):
    """Everything recovery must know about the host that duplicity does not keep."""

    format_version: int
    tool_version: str
    created: str  # local time, %Y-%m-%dT%H:%M:%S%z
    root: str  # the backed-up root, as a host path
    host: Host
    bootloader: Bootloader
    layout: Layout | None  # None when the capture failed: layout_error says why
    layout_error: str | None
    users: dict[str, int]  # name -> uid: duplicity maps owners by name
    groups: dict[str, int]
    excluded: list[Excluded]
    hardlinks: list[list[str]]  # groups of paths relative to root that share one inode
    settings: dict[str, Any]  # the settings, redacted: for people, recovery does not read them
    metadata: MetadataCounts | None = None  # since the metadata records (83a3c59)

    def to_json(self) -> str:
        """The file's text: sorted keys, two-space indent, a final newline."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"

    def excluded_paths(self) -> list[str]:
        """Every excluded path relative to the root (no leading slash), existing or not."""
        return [e.path.strip("/") for e in self.excluded]

    def excluded_dirs(self) -> list[ExcludedEntry]:
        """The excluded paths that were directories: what recovery recreates."""
        return [e for e in self.excluded if isinstance(e, ExcludedEntry) and e.type == "dir"]


def _version_line(path: Path | str, version: object, what: str) -> str:
    return (
        f"{path}: {what} (manifest format {version!r}); this rescue ({__version__}) reads "
        f"manifest format {FORMAT_VERSION}: recover with the rescue that wrote it or a newer one"
    )


def parse(text: str, path: Path | str) -> Manifest:
    """A manifest from its JSON text, or ManifestError in one line naming path (the file, or
    what the user knows it as)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ManifestError(f"cannot read the manifest {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path} is not a manifest: a JSON object was expected")
    version = data.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ManifestError(f"{path} has no valid manifest format ({version!r})")
    if version > FORMAT_VERSION:
        raise ManifestError(_version_line(path, version, "written by a newer rescue"))
    try:
        return Manifest.model_validate_json(text)
    except ValidationError as exc:
        unknown = [e for e in exc.errors() if e["type"] in UNKNOWN_KEY_ERRORS]
        if unknown:
            keys = ", ".join(dotted("manifest", tuple(e["loc"])) for e in unknown)
            raise ManifestError(
                _version_line(path, version, f"unknown key(s) {keys}, from a newer rescue?")
            ) from None
        raise ManifestError(
            f"{path} is not a valid manifest: {describe_error(exc, 'manifest')}"
        ) from None


def load(path: Path, name: str | None = None) -> Manifest:
    """A manifest read back, checked for a format and shape this version understands; errors
    name it as name (a temporary copy's path means nothing to the user), else as path."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ManifestError(f"cannot read the manifest {name or path}: {exc}") from None
    return parse(text, name or path)
