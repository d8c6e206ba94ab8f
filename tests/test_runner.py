"""The step runner: order, state file, resume, --from/--only, step by step, cleanups, dry run.

The steps here are small recording objects (the runner's own contract, not a product the
runner talks to); the recovery steps themselves are proven end to end in test_recover_e2e.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rescue.errors import (
    LayoutApplyError,
    RecoveryStateError,
    UnansweredQuestionError,
    UnreachableError,
    UsageError,
)
from rescue.prompts import Answers
from rescue.recovery.runner import Runner, State, Stopped, report


@dataclass
class Ctx:
    """A minimal context: records what ran and the cleanups, persists one fact."""

    answers: Answers = field(default_factory=lambda: Answers({}, interactive=False))
    ran: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    cleanups: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    checkpoint: Callable[[], None] = lambda: None

    def ask(self, question: Any) -> Any:
        return self.answers.ask(question)

    def echo(self, text: str) -> None:
        self.lines.append(text)

    def facts_dict(self) -> dict[str, Any]:
        return dict(self.facts)

    def load_facts(self, data: dict[str, Any]) -> None:
        self.facts = dict(data)

    def run_cleanups(self) -> None:
        while self.cleanups:
            self.cleaned.append(self.cleanups.pop())


@dataclass
class FakeStep:
    ID: str
    READ_ONLY: bool = False
    REDO_ON_RESUME: bool = False
    fail: Exception | None = None
    cleanup: str | None = None
    TITLE: str = "a step"

    def plan(self, ctx: Ctx) -> list[str]:
        return [f"would {self.ID} (seen {ctx.facts.get('seen')})"]

    def run(self, ctx: Ctx) -> list[str]:
        ctx.ran.append(self.ID)
        if self.cleanup:
            ctx.cleanups.append(self.cleanup)
        if self.fail is not None:
            raise self.fail
        ctx.facts["seen"] = ctx.facts.get("seen", 0) + 1
        return [f"did {self.ID}"]


def workflow(**overrides: FakeStep) -> list[FakeStep]:
    steps = {
        "probe": FakeStep("probe", READ_ONLY=True),
        "layout": FakeStep("layout"),
        "mount": FakeStep("mount", REDO_ON_RESUME=True, cleanup="unmount"),
        "restore": FakeStep("restore"),
        "finish": FakeStep("finish"),
    }
    steps.update(overrides)
    return list(steps.values())


def test_runs_in_order_and_records_each_step(tmp_path: Path) -> None:
    ctx = Ctx()
    runner = Runner(workflow(), ctx, tmp_path / "state.json")
    runner.start({"x": 1})
    state = runner.run(runner.selection())
    assert ctx.ran == ["probe", "layout", "mount", "restore", "finish"]
    saved = json.loads((tmp_path / "state.json").read_text())
    assert [s["outcome"] for s in saved["steps"]] == ["done"] * 5
    assert saved["facts"] == {"seen": 5}
    assert saved["options"] == {"x": 1}
    assert all(s["seconds"] is not None and s["seconds"] >= 0 for s in saved["steps"])
    data = report(state)
    assert data["outcome"] == "success"
    assert data["steps"][3]["done"] == ["did restore"]
    assert oct(os.stat(tmp_path / "state.json").st_mode & 0o777) == "0o600"


def test_failure_runs_cleanups_records_error_and_resume_redoes_mounts(tmp_path: Path) -> None:
    ctx = Ctx()
    broken = FakeStep("restore", fail=LayoutApplyError("disk on fire"))
    runner = Runner(workflow(restore=broken), ctx, tmp_path / "state.json")
    runner.start({})
    with pytest.raises(LayoutApplyError):
        runner.run(runner.selection())
    assert ctx.ran == ["probe", "layout", "mount", "restore"]
    assert ctx.cleaned == ["unmount"]
    saved = State.load(tmp_path / "state.json")
    assert [s.outcome for s in saved.steps] == ["done", "done", "done", "failed", "pending"]
    assert saved.record("restore").error == "disk on fire"
    assert report(saved)["outcome"] == "failed"

    # A new process: the facts come back, the mount is redone, then the failed step on.
    ctx2 = Ctx()
    runner2 = Runner(workflow(), ctx2, tmp_path / "state.json")
    runner2.load()
    assert ctx2.facts == {"seen": 3}
    chosen = runner2.selection()
    assert [s.ID for s in chosen] == ["mount", "restore", "finish"]
    runner2.run(chosen)
    assert ctx2.ran == ["mount", "restore", "finish"]
    final = State.load(tmp_path / "state.json")
    assert report(final)["outcome"] == "success"
    assert final.record("mount").runs == 2 and final.record("restore").runs == 2


def test_a_fresh_start_refuses_to_overwrite_an_unfinished_recovery(tmp_path: Path) -> None:
    ctx = Ctx()
    runner = Runner(workflow(layout=FakeStep("layout", fail=UsageError("no"))), ctx, tmp_path / "s")
    runner.start({})
    with pytest.raises(UsageError):
        runner.run(runner.selection())
    with pytest.raises(RecoveryStateError, match=r"--resume.*--restart"):
        Runner(workflow(), Ctx(), tmp_path / "s").start({})


def test_from_and_only(tmp_path: Path) -> None:
    ctx = Ctx()
    runner = Runner(workflow(), ctx, tmp_path / "state.json")
    runner.start({})
    runner.run(runner.selection())
    assert [s.ID for s in runner.selection(from_step="restore")] == ["mount", "restore", "finish"]
    assert [s.ID for s in runner.selection(only="restore")] == ["mount", "restore"]
    assert [s.ID for s in runner.selection(only="layout")] == ["layout"]
    assert runner.selection() == []  # everything done
    with pytest.raises(UsageError, match="no step 'nope'; the steps are: probe, layout"):
        runner.selection(only="nope")


def test_step_by_step_asks_by_id_and_stops_with_state_saved(tmp_path: Path) -> None:
    # The plan answers "no" to the first step-by-step question: nothing runs.
    ctx = Ctx(answers=Answers({"recover.step": False}, interactive=False))
    runner = Runner(workflow(), ctx, tmp_path / "state.json")
    runner.start({})
    with pytest.raises(Stopped) as stopped:
        runner.run(runner.selection(), step_by_step=True)
    assert stopped.value.step_id == "probe" and ctx.ran == []
    assert "      would probe (seen None)" in ctx.lines  # the step's plan is shown first
    # Without an answer and without a terminal, the question fails at once, naming its ID.
    ctx2 = Ctx()
    runner2 = Runner(workflow(), ctx2, tmp_path / "state.json")
    runner2.load()
    with pytest.raises(UnansweredQuestionError, match=r"question recover\.step is not answered"):
        runner2.run(runner2.selection(), step_by_step=True)


def test_dry_run_runs_read_only_steps_and_plans_the_rest(tmp_path: Path) -> None:
    ctx = Ctx()
    runner = Runner(workflow(), ctx, tmp_path / "state.json")
    planned = runner.dry_run()
    assert ctx.ran == ["probe"]  # the writer steps were only planned
    assert [a for _, a, _ in planned][1] == ["would layout (seen 1)"]
    assert not (tmp_path / "state.json").exists()
    # A failing probe is reported, and the plan goes on generically.
    ctx2 = Ctx()
    unreachable = FakeStep("probe", READ_ONLY=True, fail=UnreachableError("cannot reach h:22"))
    planned = Runner(workflow(probe=unreachable), ctx2, tmp_path / "s2").dry_run()
    assert planned[0][2] == "cannot reach h:22"
    assert len(planned) == 5


def test_state_file_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(RecoveryStateError, match="no recovery to resume"):
        State.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(RecoveryStateError, match="cannot use the state file"):
        State.load(tmp_path / "bad.json")
    runner = Runner(workflow(), Ctx(), tmp_path / "state.json")
    runner.start({})
    with pytest.raises(RecoveryStateError, match="written for other steps"):
        Runner(workflow()[:3], Ctx(), tmp_path / "state.json").load()


def test_sigterm_runs_the_cleanups(tmp_path: Path) -> None:
    """A real SIGTERM to a real process mid-step: the cleanup runs, the state says failed."""
    script = tmp_path / "victim.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            from pathlib import Path
            sys.path[:0] = [{str(Path(__file__).parent)!r}, {str(Path.cwd())!r}]
            from test_runner import Ctx, FakeStep, workflow
            from rescue.process.lifetime import signals_stop_children
            from rescue.recovery.runner import Runner

            class Slow(FakeStep):
                def run(self, ctx):
                    ctx.cleanups.append("unmount-slow")
                    print("READY", flush=True)
                    time.sleep(60)
                    return []

            ctx = Ctx()
            path = Path({str(tmp_path / "s.json")!r})
            runner = Runner(workflow(restore=Slow("restore")), ctx, path)
            runner.start({{}})
            try:
                with signals_stop_children():  # as the CLI does for every command
                    runner.run(runner.selection())
            finally:
                print("CLEANED", ctx.cleaned, flush=True)
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "CLEANED ['unmount-slow', 'unmount']" in out
    saved = State.load(tmp_path / "s.json")
    assert saved.record("restore").outcome == "failed"
    assert saved.record("restore").error == "terminated (SIGTERM)"
