"""Hard links: make each recorded group one inode again.

duplicity restores every link of a group as a separate copy. A copy that differs from the first
of its group changed between the walk and the backup: it is left alone and reported.
"""

from __future__ import annotations

import filecmp
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rescue.exact.dirtimes import kept


@dataclass
class Relinked:
    linked: int = 0
    already: int = 0
    problems: list[str] = field(default_factory=list)


def relink(groups: Iterable[list[str]], resolve: Callable[[str], Path | None]) -> Relinked:
    """Link the restored copies of each group (backup paths, mapped by resolve; None = not
    restored) to the first present one. The directories keep their times (see dirtimes)."""
    done = Relinked()
    for group in groups:
        paths = [p for p in (resolve(rel) for rel in group) if p is not None]
        present = [p for p in paths if p.is_file() and not p.is_symlink()]
        if len(present) < 2:
            continue
        first = present[0]
        st = first.lstat()
        for other in present[1:]:
            ot = other.lstat()
            if (ot.st_dev, ot.st_ino) == (st.st_dev, st.st_ino):
                done.already += 1
                continue
            if ot.st_dev != st.st_dev:
                done.problems.append(
                    f"{other} and {first} are on different file systems: not linked"
                )
                continue
            if not filecmp.cmp(first, other, shallow=False):
                done.problems.append(f"{other} differs from {first}: left as a separate file")
                continue
            tmp = other.with_name(f".{other.name}.rescue-link")
            with kept(other.parent):
                tmp.unlink(missing_ok=True)
                os.link(first, tmp)
                os.replace(tmp, other)
            done.linked += 1
    return done
