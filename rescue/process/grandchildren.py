"""The programs duplicity starts itself (gpg, lftp) get none of the secrets duplicity got.

Why: duplicity reads PASSPHRASE and FTP_PASSWORD from its environment, and every child it
forks inherits that environment, although gpg gets the passphrase on a descriptor and lftp the
password in a command file. rescue cannot change how duplicity forks, but it can choose what
`gpg` and `lftp` mean on duplicity's PATH: a two-line shim that unsets the secret variables and
execs the real program (same pid, same arguments). On a temporary directory mounted noexec no
shim can run, so none is made (and the log says so); the children then inherit as before.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from rescue.placement.scratch import private_dir

log = logging.getLogger("rescue.process.grandchildren")

# What duplicity runs by name, for the destinations and encryption rescue configures.
SHIMMED = ("gpg", "lftp")


@contextmanager
def without_secrets(names: Iterable[str], path: str | None = None) -> Iterator[dict[str, str]]:
    """Yield the plain variables (PATH) to give duplicity so that its gpg and lftp run
    without the variables in names; {} when there is nothing to hide or no way to."""
    names = sorted(set(names))
    path = path if path is not None else os.environ.get("PATH", os.defpath)
    if not names:
        yield {}
        return
    with private_dir("rescue-shims-") as shims:
        if os.statvfs(shims).f_flag & os.ST_NOEXEC:
            log.info("%s is mounted noexec: gpg and lftp inherit duplicity's secrets", shims)
            yield {}
            return
        unset = " ".join(f"-u {name}" for name in names)
        for program in SHIMMED:
            real = shutil.which(program, path=path)
            if real is None:
                continue
            shim = shims / program
            shim.write_text(f'#!/bin/sh\nexec /usr/bin/env {unset} {shlex.quote(real)} "$@"\n')
            shim.chmod(0o700)
        yield {"PATH": f"{shims}{os.pathsep}{path}"}
