"""The archive file: a tar (gzip or zstd, maybe gpg-encrypted) of module contents and a manifest.

Why the manifest is the last member and holds every member's checksum: it is written once all
contents are known (hashed as they stream in), and a reader checks every byte against it before
anything is used. A flipped byte, a truncated file, a missing or an extra member, each makes the
whole archive refused, so a restore never writes half of a damaged configuration.

Members: `modules/<module>/files/<system path>`, `modules/<module>/state/<name>`,
`diagnostics/<name>` (bug reports) and `manifest.json`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

from rescue.config import Settings
from rescue.configbackup import crypt
from rescue.errors import ConfigArchiveError
from rescue.process import execute

FORMAT = 1
MANIFEST = "manifest.json"
SUFFIXES = {"gzip": ".tar.gz", "zstd": ".tar.zst"}
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def file_member(module: str, path: str) -> str:
    return f"modules/{module}/files{path}"


def state_member(module: str, name: str) -> str:
    return f"modules/{module}/state/{name}"


class _Hashing(io.RawIOBase):
    """A read-only file wrapper that hashes what tarfile reads through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        return data


class Writer:
    """Writes members to a tar in work_dir; finish() compresses, encrypts and places it."""

    def __init__(self, work_dir: Path, compression: str) -> None:
        self.compression = compression
        self.tar_path = work_dir / "archive.tar"
        mode: Literal["w:gz", "w"] = "w:gz" if compression == "gzip" else "w"
        self.tar = tarfile.open(self.tar_path, mode, format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self.members: dict[str, dict[str, Any]] = {}

    def _info(self, name: str, size: int) -> tarfile.TarInfo:
        if name in self.members or name == MANIFEST:
            raise ValueError(f"member {name} twice")
        info = tarfile.TarInfo(name)
        info.size, info.mode = size, 0o600
        return info

    def add_bytes(self, name: str, data: bytes) -> str:
        self.tar.addfile(self._info(name, len(data)), io.BytesIO(data))
        digest = hashlib.sha256(data).hexdigest()
        self.members[name] = {"sha256": digest, "size": len(data)}
        return digest

    def add_file(self, name: str, path: Path) -> tuple[str, int]:
        """Stream a file in; a file that changes size meanwhile fails (tarfile reads exactly)."""
        with path.open("rb") as raw:
            size = path.stat().st_size
            hashing = _Hashing(raw)
            self.tar.addfile(self._info(name, size), hashing)
        digest = hashing.digest.hexdigest()
        self.members[name] = {"sha256": digest, "size": size}
        return digest, size

    def finish(self, manifest: dict[str, Any], out: Path, settings: Settings | None) -> int:
        """Write the manifest last, then compress/encrypt into out; returns out's size."""
        manifest = {**manifest, "format": FORMAT, "members": self.members}
        data = json.dumps(manifest, indent=1, sort_keys=True).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode = len(data), 0o600
        self.tar.addfile(info, io.BytesIO(data))
        self.tar.close()
        packed = self.tar_path
        if self.compression == "zstd":
            packed = self.tar_path.with_suffix(".tar.zst")
            execute.run_checked(
                ["zstd", "-q", "-3", "--rm", "-o", str(packed), str(self.tar_path)], "zstd"
            )
        if manifest.get("encrypted"):
            assert settings is not None
            sealed = packed.with_name(packed.name + crypt.SUFFIX)
            crypt.encrypt(settings, packed, sealed)
            packed.unlink()
            packed = sealed
        packed.chmod(0o600)
        packed.replace(out)
        return out.stat().st_size


@dataclass
class Opened:
    """A verified archive: its manifest, and where each member's bytes were staged (if asked)."""

    path: Path
    manifest: dict[str, Any]
    staged: dict[str, Path] = field(default_factory=dict)

    def content(self, member: str) -> bytes:
        return self.staged[member].read_bytes()


def _magic(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(4)


def open_verified(path: Path, settings: Settings | None, work_dir: Path, stage: bool) -> Opened:
    """Decrypt, decompress and read the whole archive, checking every member against the
    manifest; with stage, each member's bytes are kept in work_dir for a restore."""
    name = path.name
    try:
        head = _magic(path)
    except OSError as exc:
        raise ConfigArchiveError(f"cannot read {path}: {exc.strerror}") from None
    if path.name.endswith(crypt.SUFFIX):
        plain = work_dir / "decrypted"
        crypt.decrypt(settings, path, plain)
        path, head = plain, _magic(plain)
    if head == _ZSTD_MAGIC:
        plain = work_dir / "archive.tar"
        result = execute.run(["zstd", "-d", "-q", "-f", "-o", str(plain), str(path)])
        if result.returncode:
            raise ConfigArchiveError(f"{name} is corrupt: {result.last_line('damaged')}")
        path = plain
    elif head[:2] != _GZIP_MAGIC:
        raise ConfigArchiveError(f"{name} is not a configuration archive (unknown file type)")
    found: dict[str, dict[str, Any]] = {}
    staged: dict[str, Path] = {}
    manifest_bytes = None
    try:
        with tarfile.open(path, "r:*") as tar:
            for number, member in enumerate(tar):
                _check_member_name(name, member)
                if member.name in found or (member.name == MANIFEST and manifest_bytes):
                    raise ConfigArchiveError(f"{name} is corrupt: {member.name} appears twice")
                source = tar.extractfile(member)
                assert source is not None
                if member.name == MANIFEST:
                    manifest_bytes = source.read()
                    continue
                digest = hashlib.sha256()
                out = work_dir / f"m{number}" if stage else None
                with source, out.open("wb") if out else io.BytesIO() as sink:
                    while chunk := source.read(1 << 20):
                        digest.update(chunk)
                        sink.write(chunk)
                found[member.name] = {"sha256": digest.hexdigest(), "size": member.size}
                if out:
                    staged[member.name] = out
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ConfigArchiveError(f"{name} is corrupt: truncated or damaged ({exc})") from None
    except OSError as exc:
        raise ConfigArchiveError(f"{name} cannot be read: {exc}") from None
    manifest = _parse_manifest(name, manifest_bytes)
    _compare(name, manifest.get("members", {}), found)
    return Opened(path=path, manifest=manifest, staged=staged)


def _check_member_name(name: str, member: tarfile.TarInfo) -> None:
    parts = PurePosixPath(member.name).parts
    if not member.isfile() or member.name.startswith("/") or ".." in parts:
        raise ConfigArchiveError(f"{name} is corrupt: it holds an unexpected member {member.name}")


def _parse_manifest(name: str, data: bytes | None) -> dict[str, Any]:
    if data is None:
        raise ConfigArchiveError(f"{name} is corrupt: it has no {MANIFEST} (truncated?)")
    try:
        manifest = json.loads(data)
    except ValueError:
        raise ConfigArchiveError(f"{name} is corrupt: its {MANIFEST} is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ConfigArchiveError(
            f"{name} has an unknown manifest format {manifest.get('format')!r} (this rescue "
            f"reads format {FORMAT}); use the rescue version that made it"
        )
    return manifest


def _compare(name: str, listed: dict[str, Any], found: dict[str, Any]) -> None:
    for member, want in listed.items():
        got = found.get(member)
        if got is None:
            raise ConfigArchiveError(f"{name} is corrupt: member {member} is missing")
        if got != want:
            raise ConfigArchiveError(f"{name} is corrupt: member {member} fails its checksum")
    extra = sorted(set(found) - set(listed))
    if extra:
        raise ConfigArchiveError(f"{name} is corrupt: member {extra[0]} is not in its manifest")


def copy_file(source: Path, out: Path) -> None:
    """Copy to out through a temporary name beside it, so out is whole or absent."""
    tmp = out.with_name(f".{out.name}.part")
    shutil.copyfile(source, tmp)
    tmp.chmod(0o600)
    tmp.replace(out)
