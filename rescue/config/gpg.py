"""GnuPG key checks for [encryption] mode gpg: is the key there, usable, and can it decrypt?

An exception to the process gate: the tools rescue runs start in rescue.process.execute, but these
look-ups let python-gnupg start gpg itself (`gpg --list-config` when GPG() is made,
`gpg --list-keys` / `--list-secret-keys` for list_keys). Why: python-gnupg drives gpg's
machine-readable status protocol (--status-fd, --with-colons) and parses the keys, subkeys,
validity and trust from it; doing that through execute.run would mean rewriting that parser.
What the gate would give is given here by hand: the child's environment is execute.child_env()
(no secret variable), and gpg only lists keys (no passphrase; nothing written but gpg's own
housekeeping, a trustdb or an empty keybox in a new home). Not given: the gate's log line and
its lifetime rules (a gpg that outlives a killed rescue ends when its short listing does).
Where: check_gpg_key() (public keys only) before a backup (rescue.backup.engine), before a config
archive is encrypted (rescue.configbackup.crypt) and in `rescue config check`; has_secret_key()
lists secret keys, for which gpg may start a gpg-agent in that home. duplicity's own gpg runs
are duplicity's children, so they go through the gate with it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rescue.config.settings import Settings
from rescue.errors import GpgKeyError
from rescue.process import execute


def _gnupg_home(settings: Settings) -> str:
    home = settings.encryption.gnupg_home or os.environ.get("GNUPGHOME") or "~/.gnupg"
    return str(Path(home).expanduser())


def _list_keys(settings: Settings, secret: bool) -> list[dict[str, Any]]:
    import gnupg  # only gpg mode needs it; the import spawns nothing, GPG() and list_keys() do

    home = _gnupg_home(settings)
    if not Path(home).is_dir():
        raise GpgKeyError(f"the GnuPG home {home} does not exist (encryption.gnupg_home)")
    try:
        gpg = gnupg.GPG(gnupghome=home, env=execute.child_env())  # no secret variable
    except (OSError, ValueError) as exc:
        raise GpgKeyError(f"cannot run gpg with the keyring {home}: {exc}") from None
    return list(gpg.list_keys(secret=secret))


def _matches(key: Mapping[str, Any], wanted: str) -> bool:
    ids = [key.get("fingerprint") or "", key.get("keyid") or ""]
    for sub in key.get("subkeys") or []:
        ids += [str(x) for x in sub[:3:2] if x]
    return any(i.upper().endswith(wanted) for i in ids if i)


def check_gpg_key(settings: Settings) -> None:
    """In gpg mode, fail before duplicity does when the key is not in the keyring."""
    enc = settings.encryption
    if enc.mode != "gpg" or enc.gpg_key is None:
        return
    wanted = enc.gpg_key.upper()
    home = _gnupg_home(settings)
    matching = [k for k in _list_keys(settings, secret=False) if _matches(k, wanted)]
    if not matching:
        raise GpgKeyError(f"GPG key {enc.gpg_key} is not in the keyring {home}")
    if all(k.get("trust") in ("r", "e") for k in matching):
        raise GpgKeyError(f"GPG key {enc.gpg_key} in the keyring {home} is revoked or expired")


def has_secret_key(settings: Settings) -> bool:
    """Whether the keyring can decrypt (restore needs the secret key; backup does not)."""
    enc = settings.encryption
    if enc.mode != "gpg" or enc.gpg_key is None:
        return False
    wanted = enc.gpg_key.upper()
    return any(_matches(k, wanted) for k in _list_keys(settings, secret=True))
