"""Step 3: list the restore points and choose one (the newest unless told otherwise).

Each point shows its date, type, place in its chain and age. A long chain of incrementals is
warned about: each one must be read and applied, and one bad volume breaks every set after it.
"""

from __future__ import annotations

import time

from rescue.backup.sets import BackupSet, Status, pick_set
from rescue.backup.timespec import iso, parse_time
from rescue.prompts import Choice, Question
from rescue.steps.context import Context

ID = "choose_backup"
TITLE = "choose the restore point"
READ_ONLY = True
REDO_ON_RESUME = False

LONG_CHAIN = 30


def plan(ctx: Context) -> list[str]:
    which = f"the newest set at or before {ctx.options.time}" if ctx.options.time else "the newest"
    return [f"read the backup's collection status; restore point: {which}"]


def _age(seconds: float) -> str:
    days = seconds / 86400
    return f"{days:.1f} days" if days >= 1 else f"{seconds / 3600:.1f} hours"


def _place(status: Status, chosen: BackupSet) -> tuple[int, int]:
    """The set's number in its chain, and the chain's length."""
    chain = next(c for c in status.chains if c.index == chosen.chain)
    return chain.sets.index(chosen) + 1, len(chain.sets)


def _position(status: Status, chosen: BackupSet) -> int:
    return _place(status, chosen)[0]


def _title(status: Status, s: BackupSet, now: float) -> str:
    number, length = _place(status, s)
    return (
        f"{iso(s.time)}  {s.kind:<11}  chain {s.chain}, set {number} of {length}  "
        f"({_age(now - s.time)} old)"
    )


def run(ctx: Context) -> list[str]:
    status = ctx.engine().status()
    now = time.time()
    newest = pick_set(status, None)
    lines = [_title(status, s, now) for s in status.sets]
    if ctx.options.time:
        chosen = pick_set(status, parse_time(ctx.options.time))
    elif ctx.answers.interactive or ctx.answers.has("recover.restore_point"):
        for line in lines:
            ctx.echo(f"      {line}")
        question = Question(
            "recover.restore_point",
            "select",
            "Restore which backup set?",
            [Choice(_title(status, s, now), str(s.time)) for s in reversed(status.sets)],
            default=str(newest.time),
        )
        chosen = pick_set(status, int(ctx.ask(question)))
    else:
        chosen = newest
    position = _position(status, chosen)
    ctx.facts.restore_set = {**chosen.as_dict(), "position": position}
    if position > LONG_CHAIN:
        ctx.warn(
            f"the chosen set is number {position} of its chain: every incremental before it is "
            "read too, and one damaged volume breaks the rest"
        )
    return [*lines, f"chosen: {_title(status, chosen, now)}"]
