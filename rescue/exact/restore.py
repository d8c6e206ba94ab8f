"""`rescue restore` with everything duplicity drops put back: the records of the set are
fetched first, the sparse files are followed while duplicity writes, then the hard links, the
xattrs and ACLs, the holes and the exact times are replayed on what was restored, still in the
staging directory: what is placed at the target is complete, even if rescue is killed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rescue.backup.engine import Engine
from rescue.backup.listing import relative_path
from rescue.backup.results import RestoreSummary
from rescue.exact.fetch import NO_RECORDS, fetched
from rescue.exact.links import Relinked, relink
from rescue.exact.records import relative
from rescue.exact.replay import Replayed, replay
from rescue.exact.sizes import check_room
from rescue.exact.watch import HoleWatch
from rescue.placement.guard import RestoreTarget


@dataclass
class ExactRestore:
    summary: RestoreSummary
    replayed: Replayed
    linked: int = 0
    warnings: list[str] = field(default_factory=list)  # what could not be put back


def restore_exact(
    engine: Engine,
    path: str | None,
    target: RestoreTarget,
    at: int | None = None,
    numeric_owner: bool = False,
) -> ExactRestore:
    """Restore path as of `at` to a target checked before any work (rescue.placement.guard)
    like Engine.restore, then replay its records on what was restored."""
    prefix = relative_path(path, engine.settings) if path else ""
    dest = target.path
    backup_set = engine.pick(at)
    with fetched(engine, backup_set.time) as records:
        check_room(records.sizes, prefix, dest, f"restoring /{prefix}")
        watch = HoleWatch(records.sparse_below(prefix))
        finished: list[tuple[Relinked, Replayed]] = []

        def put_back(item: Path) -> None:
            """Relink and replay in the staging directory, before the tree is placed."""

            def resolve(rel: str) -> Path | None:
                inside = relative(rel, prefix)
                return None if inside is None else item / inside if inside else item

            linked = relink(records.hardlinks, resolve)
            linked.problems = [p.replace(str(item), str(dest)) for p in linked.problems]
            punched = {item / rel if rel else item for rel in watch.touched}
            replayed = replay(records.records(), prefix, item, punched)
            replayed.freed += watch.freed
            finished.append((linked, replayed))

        summary = engine.restore(
            path,
            target,
            backup_set.time,
            numeric_owner=numeric_owner,
            during=watch.during,
            before_place=put_back,
        )
    ((linked, replayed),) = finished
    warnings = [*linked.problems, *replayed.warnings()]
    if records.sidecar is None:
        warnings.append(NO_RECORDS)
    return ExactRestore(summary, replayed, linked.linked, warnings)
