"""Run a workflow of steps: dry run, state file, resume, step by step, cleanups, report.

Why this shape (ReaR's workflows, borgmatic's actions): a bare-metal recovery is long, runs on a
machine in trouble, and must survive a crash or a reboot of the rescue system. So:

- a workflow is an explicit tuple of step modules; each has an ID, a TITLE, a pure
  `plan(ctx)` (the actions it would take, for --dry-run) and `run(ctx)` (what it did); a step
  whose title depends on the options (finish: reboot or not) also has a pure `title(ctx)`;
- after every step the state file is written (atomically), with the step's outcome, its
  duration and the facts the steps have found so far, so `--resume` starts at the first
  unfinished step with everything the earlier steps learnt;
- steps whose effect does not survive a crash or a reboot (mounts, the identity files put in
  place on the rescue system) say REDO_ON_RESUME; the runner runs them again before the step
  it resumes at, and they must be idempotent;
- on any failure (an error, Ctrl-C, SIGTERM) the cleanups the steps registered (unmount, put
  back) run in reverse order, and the failure is recorded;
- every run ends with a JSON report: each step's outcome, duration and what it did.

READ_ONLY steps change nothing on the machine; a dry run runs them (so the plan it prints is
about the real disks and the real backup) and only plans the rest.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from rescue.errors import RecoveryStateError, RescueError, UsageError
from rescue.placement.fsops import write_atomic
from rescue.process.lifetime import Terminated
from rescue.prompts import Question

log = logging.getLogger("rescue.recovery.runner")

STATE_FORMAT = 1
Outcome = Literal["pending", "running", "done", "failed"]


class StepContext(Protocol):
    """What the runner needs of the steps' shared context."""

    def ask(self, question: Question) -> Any: ...
    def echo(self, text: str) -> None: ...
    def facts_dict(self) -> dict[str, Any]: ...
    def load_facts(self, data: dict[str, Any]) -> None: ...
    def run_cleanups(self) -> None: ...

    checkpoint: Callable[[], None]  # saves the state mid-step (set by the runner)


class Step(Protocol):
    """A recovery step: a module with these names (see rescue/steps/)."""

    ID: str
    TITLE: str
    READ_ONLY: bool
    REDO_ON_RESUME: bool

    def plan(self, ctx: Any) -> list[str]: ...
    def run(self, ctx: Any) -> list[str]: ...


@dataclass
class StepRecord:
    """One step's line in the state file and the report."""

    id: str
    title: str
    outcome: Outcome = "pending"
    started: float | None = None
    seconds: float | None = None
    done: list[str] = field(default_factory=list)
    error: str | None = None
    runs: int = 0


@dataclass
class State:
    """The state file: the options of the run, the steps' records and the facts found."""

    options: dict[str, Any]
    steps: list[StepRecord]
    facts: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    format: int = STATE_FORMAT

    def record(self, step_id: str) -> StepRecord:
        return next(r for r in self.steps if r.id == step_id)

    def first_unfinished(self) -> str | None:
        return next((r.id for r in self.steps if r.outcome != "done"), None)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(path, json.dumps(asdict(self), indent=2, sort_keys=True) + "\n", 0o600)

    @classmethod
    def load(cls, path: Path) -> State:
        try:
            data = json.loads(path.read_text())
            if data.get("format") != STATE_FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {STATE_FORMAT}")
            steps = [StepRecord(**s) for s in data["steps"]]
            return cls(data["options"], steps, data.get("facts", {}), data["started"])
        except FileNotFoundError:
            raise RecoveryStateError(
                f"no recovery to resume: {path} does not exist (start one with rescue recover)"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RecoveryStateError(f"cannot use the state file {path}: {exc}") from None


class Stopped(Exception):
    """The user declined the next step in step-by-step mode; the state is saved."""

    def __init__(self, step_id: str) -> None:
        super().__init__(step_id)
        self.step_id = step_id


def step_ids(workflow: Sequence[Step]) -> list[str]:
    return [s.ID for s in workflow]


def find_step(workflow: Sequence[Step], step_id: str) -> Step:
    for step in workflow:
        if step_id == step.ID:
            return step
    raise UsageError(f"no step {step_id!r}; the steps are: {', '.join(step_ids(workflow))}")


class Runner:
    """Runs a workflow against a context, keeping the state file at state_path."""

    def __init__(
        self,
        workflow: Sequence[Step],
        ctx: StepContext,
        state_path: Path,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        ids = step_ids(workflow)
        if len(set(ids)) != len(ids):
            raise AssertionError(f"a workflow names a step twice: {ids}")
        self.workflow = tuple(workflow)
        self.ctx = ctx
        self.state_path = state_path
        self.clock = clock
        self.state: State | None = None
        ctx.checkpoint = self._save  # a long step records what it has finished

    # -- the plan ----------------------------------------------------------------------------

    def dry_run(self) -> list[tuple[Step, list[str], str | None]]:
        """Every step with the actions it would take. Read-only steps run, so later plans are
        concrete; the first one that fails ends the real part, and the rest are planned
        generically. Returns (step, actions, error of that step or None)."""
        planned: list[tuple[Step, list[str], str | None]] = []
        probing = True
        for step in self.workflow:
            error = None
            if probing and step.READ_ONLY:
                try:
                    actions = step.run(self.ctx)
                except RescueError as exc:
                    error, probing = str(exc), False
                    actions = step.plan(self.ctx)
            else:
                probing = probing and step.READ_ONLY
                actions = step.plan(self.ctx)
            planned.append((step, actions, error))
        return planned

    # -- choosing what to run ----------------------------------------------------------------

    def start(self, options: dict[str, Any]) -> None:
        """A fresh state; refuses to overwrite one that holds an unfinished recovery."""
        if self.state_path.exists():
            try:
                old = State.load(self.state_path)
            except RecoveryStateError:
                old = None
            if (
                old is not None
                and old.first_unfinished() is not None
                and any(r.outcome != "pending" for r in old.steps)
            ):
                raise RecoveryStateError(
                    f"an unfinished recovery is recorded in {self.state_path} (at step "
                    f"{old.first_unfinished()}); continue it with --resume, or start over "
                    "with --restart"
                )
        records = [StepRecord(s.ID, title_of(s, self.ctx)) for s in self.workflow]
        self.state = State(options, records)
        self.state.save(self.state_path)

    def load(self) -> State:
        """The saved state, with the facts handed back to the context."""
        self.state = State.load(self.state_path)
        known = [r.id for r in self.state.steps]
        if known != step_ids(self.workflow):
            raise RecoveryStateError(
                f"{self.state_path} was written for other steps ({', '.join(known)})"
            )
        self.ctx.load_facts(self.state.facts)
        return self.state

    def selection(self, *, from_step: str | None = None, only: str | None = None) -> list[Step]:
        """The steps to run: all (fresh), from the first unfinished (resume), from_step on,
        or only one; each preceded by the finished REDO_ON_RESUME steps before it."""
        assert self.state is not None
        if only is not None:
            start_id = find_step(self.workflow, only).ID
        elif from_step is not None:
            start_id = find_step(self.workflow, from_step).ID
        else:
            first = self.state.first_unfinished()
            if first is None:
                return []
            start_id = first
        index = step_ids(self.workflow).index(start_id)
        redo = [
            s
            for s in self.workflow[:index]
            if s.REDO_ON_RESUME and self.state.record(s.ID).outcome == "done"
        ]
        chosen = [self.workflow[index]] if only is not None else list(self.workflow[index:])
        return redo + chosen

    # -- running -------------------------------------------------------------------------------

    def run(self, steps: Sequence[Step], *, step_by_step: bool = False) -> State:
        """Run steps in order, saving the state after each; cleanups run on any failure."""
        assert self.state is not None
        total = len(self.workflow)
        try:
            for step in steps:
                number = step_ids(self.workflow).index(step.ID) + 1
                if step_by_step and not self._confirm(step, number, total):
                    raise Stopped(step.ID)
                self._run_step(step, number, total)
        except Stopped:
            self._save()
            raise
        except BaseException:  # SIGTERM too (rescue.process.lifetime): the children are gone by now
            self._cleanup()
            raise
        return self.state

    def _confirm(self, step: Step, number: int, total: int) -> bool:
        for action in step.plan(self.ctx):
            self.ctx.echo(f"      {action}")
        question = Question(
            "recover.step", "confirm", f"Run step {number}/{total} {step.ID}?", default=True
        )
        return bool(self.ctx.ask(question))

    def _run_step(self, step: Step, number: int, total: int) -> None:
        assert self.state is not None
        record = self.state.record(step.ID)
        record.outcome, record.error, record.done = "running", None, []
        record.started = time.time()
        record.runs += 1
        self._save()
        self.ctx.echo(f"[{number:>2}/{total}] {step.ID}: {title_of(step, self.ctx)}")
        log.info("step %s: start", step.ID)
        began = self.clock()
        try:
            done = step.run(self.ctx)
        except BaseException as exc:
            record.seconds = self.clock() - began
            record.outcome = "failed"
            record.error = _one_line(exc)
            log.error("step %s: failed after %.1fs: %s", step.ID, record.seconds, record.error)
            self._save()
            raise
        record.seconds = self.clock() - began
        record.outcome, record.done = "done", list(done)
        for line in done:
            self.ctx.echo(f"      {line}")
        log.info("step %s: done in %.1fs: %s", step.ID, record.seconds, "; ".join(done))
        self._save()

    def _save(self) -> None:
        assert self.state is not None
        self.state.facts = self.ctx.facts_dict()
        self.state.save(self.state_path)

    def _cleanup(self) -> None:
        try:
            self.ctx.run_cleanups()
        finally:
            self._save()


def title_of(step: Step, ctx: Any) -> str:
    """The step's title for this run: its `title(ctx)` when it has one, else its TITLE."""
    title = getattr(step, "title", None)
    return str(title(ctx)) if callable(title) else step.TITLE


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(exc, Terminated):
        return f"terminated ({exc})"
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def report(state: State) -> dict[str, Any]:
    """The JSON report of a run: per step what was done, how long and the outcome; totals."""
    failed = [r for r in state.steps if r.outcome == "failed"]
    unfinished = [r for r in state.steps if r.outcome != "done"]
    outcome = "failed" if failed else ("incomplete" if unfinished else "success")
    facts = state.facts
    return {
        "outcome": outcome,
        "started": state.started,
        "restore_point": facts.get("restore_set"),
        "host": facts.get("host"),
        "steps": [
            {
                "id": r.id,
                "title": r.title,
                "outcome": r.outcome,
                "seconds": None if r.seconds is None else round(r.seconds, 2),
                "done": r.done,
                "error": r.error,
                "runs": r.runs,
            }
            for r in state.steps
        ],
        "totals": {
            "seconds": round(sum(r.seconds or 0 for r in state.steps), 2),
            "files": facts.get("restored_files", 0),
            "bytes": facts.get("restored_bytes", 0),
            "warnings": facts.get("warnings", []),
        },
    }
