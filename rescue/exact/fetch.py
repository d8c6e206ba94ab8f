"""The records of one backup set, fetched for a restore or a verify of a path.

They are what the set itself holds (rescue's own directory, var/lib/rescue): the copy the backup
kept in the archive dir when it made the set, or else that directory restored alone (one
duplicity run that reads only the volume holding it) and kept there in turn, so a restore on
another machine gets the same result as one on the backed-up host, and pays the fetch once. A
backup made before the records existed has none: the restore goes on and says what it could not
put back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from rescue.backup import keptrecords
from rescue.backup.destinations import duplicity_url
from rescue.backup.engine import Engine
from rescue.errors import PathNotInBackupError
from rescue.exact import holes
from rescue.exact.records import SIDECAR_REL, Record, read, relative
from rescue.exact.sizes import SIZES_REL, Sizes, load_sizes
from rescue.placement.guard import fresh
from rescue.placement.scratch import private_dir
from rescue.recovery import manifest

OWN_DIR = str(PurePosixPath(SIDECAR_REL).parent)
NO_RECORDS = (
    "this backup holds no metadata records (it was made by an older rescue): xattrs, ACLs, "
    "capabilities, holes and exact times are not restored"
)


@dataclass
class Fetched:
    """A set's records and hard-link groups, as local files."""

    sidecar: Path | None
    hardlinks: list[list[str]] = field(default_factory=list)
    sizes: Sizes | None = None  # the room its parts take (None: not recorded)

    def records(self) -> Iterator[Record]:
        if self.sidecar is None:
            return iter(())
        return read(self.sidecar)[1]

    def sparse_below(self, prefix: str) -> dict[str, tuple[int, holes.Extents]]:
        """The sparse files at or below prefix, relative to it: what the hole puncher follows."""
        sparse = {}
        for r in self.records():
            inside = relative(r["p"], prefix)
            if "s" in r and inside is not None:
                size, extents = r["s"]
                sparse[inside] = (size, holes.holes_of([(o, n) for o, n in extents], size))
        return sparse


def restore_own(engine: Engine, at: int, into: Path) -> Path | None:
    """rescue's own directory of the set at `at`, restored into `into` (a new path): one
    duplicity run with --path-to-restore, which reads only the volume that holds it. None when
    the set holds none (a backup made by an older rescue)."""
    try:
        engine.restore(OWN_DIR, fresh(into), at)
    except PathNotInBackupError:
        return None
    return into


@contextmanager
def fetched(engine: Engine, at: int) -> Iterator[Fetched]:
    """The records of the set at `at` (an exact set time): kept in the archive dir by the
    backup that made the set (rescue.backup.keptrecords), or else fetched from the set, in a
    private temporary directory, and kept there for the next restore."""
    url = duplicity_url(engine.settings)
    entry = keptrecords.kept(engine.archive_dir, url, at)
    if entry is not None:
        yield _load(entry)
        return
    with private_dir("rescue-records-") as tmp:
        own = restore_own(engine, at, tmp / "rescue")
        entry = keptrecords.keep(engine.archive_dir, url, at, own)
        yield _load(entry if entry is not None else own)


def _load(own: Path | None) -> Fetched:
    """The Fetched of rescue's own files in a directory (None: the set holds none)."""
    if own is None:
        return Fetched(None)
    sidecar = own / PurePosixPath(SIDECAR_REL).name
    hardlinks: list[list[str]] = []
    path = own / PurePosixPath(manifest.MANIFEST_REL).name
    if path.exists():
        hardlinks = manifest.load(path).hardlinks
    room = load_sizes(own / PurePosixPath(SIZES_REL).name)
    return Fetched(sidecar if sidecar.exists() else None, hardlinks, room)
