"""Encrypt and decrypt archives with gpg, by the same [encryption] settings as the backups.

Why gpg directly: the archives are single files, not duplicity volumes, but an admin has one
passphrase or one key to keep safe, so the archives use the same. The passphrase reaches gpg on
its stdin (--passphrase-fd 0), never in argv; a symmetric run uses a throwaway GnuPG home, so
nothing is left in root's keyring and no gpg-agent outlives it (rescue.process.gpghome).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rescue.config import Settings, check_gpg_key
from rescue.errors import ConfigArchiveError, GpgKeyError, WrongPassphraseError
from rescue.process import execute, gpghome

SUFFIX = ".gpg"
_BATCH = ["gpg", "--batch", "--no-tty", "--yes", "--pinentry-mode", "loopback"]


def encrypts(settings: Settings | None) -> bool:
    return settings is not None and settings.encryption.mode != "none"


def encrypt(settings: Settings, source: Path, out: Path) -> None:
    """source -> out, encrypted as [encryption] says."""
    enc = settings.encryption
    if enc.mode == "gpg":
        check_gpg_key(settings)
        assert enc.gpg_key is not None  # the settings model requires it in gpg mode
        argv: list[str | Path] = [*_BATCH, *_home(settings), "--trust-model", "always", "--encrypt"]
        _gpg([*argv, "--recipient", enc.gpg_key, "--output", out, source], None, "encrypt")
        return
    with gpghome.throwaway_home("rescue-gpg-") as home:
        argv = [*_BATCH, "--homedir", str(home), "--passphrase-fd", "0", "--symmetric"]
        argv += ["--cipher-algo", "AES256", "--output", out, source]
        _gpg(argv, settings.passphrase(), "encrypt")


def decrypt(settings: Settings | None, source: Path, out: Path) -> None:
    """source -> out; a wrong passphrase, a missing key and a damaged file are told apart."""
    if settings is None or settings.encryption.mode == "none":
        raise ConfigArchiveError(
            f"{source.name} is encrypted, and the settings have no [encryption] to open it with"
        )
    passphrase = settings.passphrase()
    if settings.encryption.mode == "gpg":
        argv = [*_BATCH, *_home(settings)]
        if passphrase is not None:
            argv += ["--passphrase-fd", "0"]
        _gpg([*argv, "--decrypt", "--output", out, source], passphrase, "decrypt", source)
        return
    with gpghome.throwaway_home("rescue-gpg-") as home:
        argv = [*_BATCH, "--homedir", str(home), "--passphrase-fd", "0", "--decrypt"]
        _gpg([*argv, "--output", out, source], passphrase, "decrypt", source)


def _home(settings: Settings) -> list[str]:
    home = settings.encryption.gnupg_home
    return ["--homedir", home] if home else []


def _gpg(
    argv: Sequence[str | Path], secret: str | None, what: str, source: Path | None = None
) -> None:
    result = execute.run([str(a) for a in argv], stdin_secret=secret)
    if result.returncode == 0:
        return
    text = result.output
    name = source.name if source else "the archive"
    if "Bad session key" in text or "Bad passphrase" in text:
        raise WrongPassphraseError(f"cannot decrypt {name}: wrong passphrase")
    if "No secret key" in text:
        raise GpgKeyError(f"cannot decrypt {name}: its secret key is not in the keyring")
    last = result.last_line("no message")
    if what == "decrypt":
        raise ConfigArchiveError(f"{name} is corrupt: gpg cannot decrypt it ({last})")
    raise GpgKeyError(f"gpg cannot {what}: {last}")
