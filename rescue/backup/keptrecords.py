"""rescue's own files of each backup set (the manifest, the metadata records, the sizes), kept in
the archive dir, keyed by destination and set time.

Why: every restore and verify needs the set's records before it starts, and fetching them from
the backup is a whole extra duplicity run, which reads one volume: that doubled the time of a
one-file restore. The backup itself wrote these files just before duplicity read them, so it
keeps a copy of exactly what went into the set; a restore on another host (or after the cache
was lost) fetches them from the set once and keeps them for the next time.

Layout: ARCHIVE_DIR/rescue-records/<cache name of the destination>/<set time>/, holding the
files under their own names, or the empty marker NONE_MARKER when the set holds none (a backup
made by an older rescue). An entry is written in a temporary directory beside it and renamed
into place, so a reader finds a whole entry or none. The cache is rescue's alone (the archive
dir is never backed up), and losing it only costs the fetch again.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from rescue.backup.cache import cache_name
from rescue.exact.records import SIDECAR_REL
from rescue.exact.sizes import SIZES_REL
from rescue.placement.fsops import remove_own
from rescue.recovery.manifest import MANIFEST_REL

log = logging.getLogger("rescue.backup.keptrecords")

FOLDER = "rescue-records"
NONE_MARKER = ".none"
# The base names of rescue's own files in its directory of the backup (var/lib/rescue).
OWN_NAMES = tuple(PurePosixPath(rel).name for rel in (MANIFEST_REL, SIDECAR_REL, SIZES_REL))


def _folder(archive_dir: Path, url: str) -> Path:
    return archive_dir / FOLDER / cache_name(url)


def kept(archive_dir: Path, url: str, at: int) -> Path | None:
    """The kept entry of the set at `at` (its files by base name; none there when the set holds
    none), or None when there is no entry."""
    entry = _folder(archive_dir, url) / str(at)
    return entry if entry.is_dir() else None


def keep(archive_dir: Path, url: str, at: int, own: Path | None) -> Path | None:
    """Keep a copy of rescue's files of the set at `at`, found in `own` (None: the set holds
    none). Returns the entry, or None when it could not be written: the caller then uses its own
    copy, and the next restore fetches again."""
    folder = _folder(archive_dir, url)
    entry = folder / str(at)
    if entry.is_dir():
        return entry
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{at}.", dir=folder))
        try:
            present = {n: own / n for n in OWN_NAMES if (own / n).is_file()} if own else {}
            for name, path in present.items():
                shutil.copyfile(path, work / name)
            if not present:
                (work / NONE_MARKER).touch()
            os.rename(work, entry)  # another process may have kept it meanwhile: OSError
        except BaseException:
            remove_own(work)
            raise
    except OSError as exc:
        if entry.is_dir():
            return entry
        log.warning("cannot keep the records of the set in %s: %s", folder, exc)
        return None
    return entry


def prune(archive_dir: Path, url: str, times: Iterable[int]) -> None:
    """Drop the entries of sets that are gone (retention removed them), and any leftover of a
    killed write: the entries of the sets in `times` stay."""
    folder = _folder(archive_dir, url)
    wanted = {str(t) for t in times}
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name not in wanted:
            try:
                remove_own(entry)
            except OSError as exc:
                log.warning("cannot remove %s: %s", entry, exc)
