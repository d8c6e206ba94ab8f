"""A throwaway GnuPG home for gpg runs that need no keyring, and its gpg-agent ended with it.

Why: gpg starts a gpg-agent in its home even for a symmetric passphrase, and the agent outlives
the gpg that started it. In root's own home that is a daemon left behind by every backup,
restore and drill; in a deleted temporary home it lingers until it notices. rescue leaves no
process behind, so the agent is ended (`gpgconf --kill all` for that home) before the home is
removed. gpg mode keeps the configured keyring, which holds its secret key and is the admin's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rescue import execute
from rescue.placement.fsops import private_dir

log = logging.getLogger("rescue.gpghome")


@contextmanager
def throwaway_home(prefix: str = "rescue-gnupg-") -> Iterator[Path]:
    """A new private GnuPG home for the block; whatever agent gpg started there ends with it."""
    with private_dir(prefix) as home:
        try:
            yield home
        finally:
            try:
                execute.run(["gpgconf", "--kill", "all"], env={"GNUPGHOME": str(home)})
            except OSError as exc:  # no gpgconf: no gpg either, so no agent was started
                log.warning("cannot end the gpg-agent of %s: %s", home, exc)
