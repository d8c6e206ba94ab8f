"""Running a few calls at once, each in a thread of its own: the shards of one backup.

Why threads: each call waits on a child (duplicity) that does the work, so the GIL costs
nothing, and the gate (rescue.process.execute) already tracks every child. What threads need
beyond that is an interruption that stops them all: signals reach only the main thread, so a
Ctrl-C or a Terminated there first stops every live child (rescue.process.lifetime), waits for
the threads (their runs end with their children) and is then raised, as in a plain run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from rescue.process import lifetime

T = TypeVar("T")
POLL_SECONDS = 0.2  # how often the main thread looks up from its wait (signals are handled then)


def run_all(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Every call at once; their results in order. The first failure (by position) is raised
    once all have ended: the others are not cut short, so what each wrote is whole or cleaned
    up by its own run. One call runs in this thread."""
    if len(calls) == 1:
        return [calls[0]()]
    results: list[T | None] = [None] * len(calls)
    errors: list[BaseException | None] = [None] * len(calls)

    def work(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as exc:  # raised in the caller's thread below
            errors[index] = exc

    threads = [
        threading.Thread(target=work, args=(n,), name=f"rescue-part-{n}", daemon=True)
        for n in range(len(calls))
    ]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(POLL_SECONDS)
    except BaseException:
        lifetime.signal_children()
        for thread in threads:
            thread.join()
        raise
    for error in errors:
        if error is not None:
            raise error
    return results  # type: ignore[return-value]
