"""What `status`, `files` and `versions` print, against real duplicity sets at a file
destination: the restore window that exists (not the one the settings plan), set sizes from
the destination's volumes (also for a resumed set and one made by a raw duplicity run), a
path that is not in the set, and output into pipes (closed early, and read line by line).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clirun import RESCUE, Run, rescue, write_settings

from rescue.backup.duplicity_run import DUPLICITY
from rescue.backup.engine import Engine
from rescue.config import load_settings

pytestmark = pytest.mark.slow

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"


def _settings(tmp_path: Path, tree: Path, **duplicity: object) -> Path:
    return write_settings(
        tmp_path / "rescue.toml",
        {
            "destination": {"method": "file", "path": str(tmp_path / "dest")},
            "encryption": {"mode": "none"},
            "schedule": {"full_every": "weekly", "incremental_every": "daily", "keep_full": 4},
            "selection": {"root": str(tree), "include": [str(tree)]},
            "duplicity": {"archive_dir": str(tmp_path / "cache"), "retries": 1, **duplicity},
        },
    )


def _keep(config: Path, keep: int) -> None:
    config.write_text(config.read_text().replace("keep_full = 4", f"keep_full = {keep}"))


def _tiny_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/hostname").write_text("box\n")
    return tree


def _volume_bytes(dest: Path, stamp: str) -> int:
    """The bytes of the volumes of the set whose time is stamp (duplicity's 20261206T120000Z),
    counted here from the file names the way duplicity writes them."""
    full = re.compile(rf"^duplicity-full\.{stamp}\.vol\d+\.difftar")
    inc = re.compile(rf"^duplicity-inc\.\d{{8}}T\d{{6}}Z\.to\.{stamp}\.vol\d+\.difftar")
    found = [p for p in dest.iterdir() if full.match(p.name) or inc.match(p.name)]
    assert found, f"no volumes of {stamp} in {sorted(p.name for p in dest.iterdir())}"
    return sum(p.stat().st_size for p in found)


def _stamp(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def _into_a_closed_pipe(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run argv with its stdout on a pipe whose reader is gone before the first line is written
    (as `| head -0` does); stderr is captured."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        return subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
        )
    finally:
        os.close(writer)


def _status(config: Path) -> tuple[dict, Run]:  # type: ignore[type-arg]
    data = rescue(config, "status", "--json")
    assert data.code == 0, data.err
    text = rescue(config, "status")
    assert text.code == 0, text.err
    return data.json(), text


def test_keep_one_right_after_a_second_full_shows_only_that_full(tmp_path: Path) -> None:
    config = _settings(tmp_path, _tiny_tree(tmp_path))
    _keep(config, 1)
    assert rescue(config, "backup", "--full").code == 0
    time.sleep(1)
    second = rescue(config, "backup", "--full", "--json")
    assert second.code == 0, second.err
    assert second.json()["removed_chains"] == 1

    data, text = _status(config)
    window = data["window"]
    assert window["sets"] == 1 and window["chains"] == 1
    assert window["oldest_time"] == second.json()["time"]
    assert 0 <= window["seconds"] < 120
    assert data["planned_window"] == "you can restore any day of the last week (7 days)"
    lines = text.out.splitlines()
    now_line = next(line for line in lines if line.startswith("restore window:"))
    assert now_line.startswith(f"restore window: back to {second.json()['date']} (")
    assert now_line.endswith("ago; 1 set(s) in 1 chain(s))")
    assert "week" not in now_line
    assert (
        "planned window (schedule settings): you can restore any day of the last week (7 days)"
        in lines
    )


def test_one_young_chain_and_an_old_one_show_their_real_age(tmp_path: Path) -> None:
    tree = _tiny_tree(tmp_path)
    config = _settings(tmp_path, tree)
    assert rescue(config, "backup", "--full").code == 0
    data, text = _status(config)
    assert data["window"]["sets"] == 1 and data["window"]["seconds"] < 120
    assert data["planned_window"] == "you can restore any day of the last 4 weeks (28 days)"
    assert "28 days" not in next(x for x in text.out.splitlines() if x.startswith("restore window"))

    # a chain three days older, made with duplicity's --current-time (the clock faked)
    other = tmp_path / "older"
    other.mkdir()
    old_config = _settings(other, tree)
    three_days_ago = time.time() - 3 * 86400
    Engine(load_settings(old_config)).backup("full", now=three_days_ago)
    assert rescue(old_config, "backup", "--incremental").code == 0
    data, text = _status(old_config)
    assert data["window"]["sets"] == 2
    assert abs(data["window"]["oldest_time"] - three_days_ago) <= 1
    assert abs(data["window"]["seconds"] - 3 * 86400) < 120
    assert re.search(r"^restore window: back to \S+ \(3d00h ago; 2 set\(s\)", text.out, re.M)

    # no sets: a window of none, and no planned promise taken for one
    empty = tmp_path / "empty"
    empty.mkdir()
    data, text = _status(_settings(empty, tree))
    assert data["window"] is None
    assert "restore window: none, there is no backup to restore from" in text.out.splitlines()


def test_sizes_are_the_volumes_at_the_destination_for_resumed_and_foreign_sets(
    tmp_path: Path,
) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(8):  # incompressible, so that 1 MB volumes are many
        (tree / f"f{i}").write_bytes(os.urandom(1_500_000))
    config = _settings(tmp_path, tree, volsize=1)
    dest = tmp_path / "dest"

    # a full stopped after its third volume, then resumed by the next run
    argv = [*RESCUE, "--config", str(config), "--log-file", str(tmp_path / "rescue.log")]
    first = subprocess.Popen(
        [*argv, "backup", "--full"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    while first.poll() is None and not list(dest.glob("*.vol3.difftar*")):
        time.sleep(0.01)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 143, f"the full was not stopped midway: {err}"
    resumed = rescue(config, "backup", "--full", "--json")
    assert resumed.code == 0, resumed.err
    assert "left a partial set, restarting" in (tmp_path / "rescue.log").read_text()
    full_time = resumed.json()["time"]
    full_bytes = _volume_bytes(dest, _stamp(full_time))
    # what the resuming run wrote is less than the set: the volumes before the stop count too
    assert resumed.json()["bytes_written"] < full_bytes

    # an incremental by rescue, then one by a raw duplicity run that rescue never recorded
    # (as a set an orphaned duplicity finished), with its own cache
    time.sleep(1)
    (tree / "f0").write_bytes(os.urandom(300_000))
    assert rescue(config, "backup", "--incremental").code == 0
    time.sleep(1)
    (tree / "f1").write_bytes(os.urandom(200_000))
    raw = subprocess.run(
        [
            DUPLICITY,
            "incremental",
            "--no-encryption",
            "--archive-dir",
            str(tmp_path / "raw-cache"),
            str(tree),
            f"file://{dest}",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    assert raw.returncode == 0, raw.stderr

    data, text = _status(config)
    sets = data["sets"]
    assert [s["kind"] for s in sets] == ["full", "incremental", "incremental"]
    for backup_set in sets:
        assert backup_set["bytes"] == _volume_bytes(dest, _stamp(backup_set["time"]))
    assert sets[0]["volumes"] >= 10

    # without a terminal every row is one whole line, however long
    rows = [line for line in text.out.splitlines() if re.match(rf"^\d+\s+│ \S+\s+│ {ISO} ", line)]
    assert len(rows) == 3, text.out
    runs = [line for line in text.out.splitlines() if re.match(rf"^{ISO} +│ ", line)]
    assert len(runs) == 3, text.out
    assert any(len(line) > 80 for line in runs), "no row longer than 80 columns to test"
    assert any("interrupted (SIGTERM)" in line for line in runs)


def test_files_of_a_path_not_in_the_set_exits_33(tmp_path: Path) -> None:
    config = _settings(tmp_path, _tiny_tree(tmp_path))
    assert rescue(config, "backup", "--full").code == 0
    missing = rescue(config, "files", "no/such/dir")
    assert missing.code == 33
    assert missing.out == ""
    assert missing.err.splitlines()[0].startswith("rescue: error: no/such/dir is not in the backup")
    present = rescue(config, "files", "etc")
    assert present.code == 0 and "etc/hostname" in present.out
    assert rescue(config, "files").code == 0


@pytest.mark.parametrize(
    "args", [("files", "etc"), ("status",), ("versions", "etc/hostname"), ("--help",)]
)
def test_a_closed_pipe_ends_every_command_quietly(tmp_path: Path, args: tuple[str, ...]) -> None:
    config = _settings(tmp_path, _tiny_tree(tmp_path))
    assert rescue(config, "backup", "--full").code == 0
    proc = _into_a_closed_pipe([*RESCUE, "--config", str(config), *args], timeout=300)
    assert proc.returncode == 0
    assert proc.stderr == ""


def test_head_reads_one_line_and_the_rest_goes_quietly(tmp_path: Path) -> None:
    tree = _tiny_tree(tmp_path)
    for i in range(3000):  # more than a pipe holds, so rescue is still writing when head leaves
        (tree / "etc" / f"conf-{i:04d}").write_text("x")
    config = _settings(tmp_path, tree)
    assert rescue(config, "backup", "--full").code == 0
    command = " ".join([*RESCUE, "--config", str(config), "files", "etc"])
    shell = subprocess.run(
        ["bash", "-c", f'{command} | head -1; echo "exit ${{PIPESTATUS[0]}}" >&2'],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert len(shell.stdout.splitlines()) == 1
    assert re.match(rf"^{ISO}  dir   etc$", shell.stdout.splitlines()[0])
    assert shell.stderr == "exit 0\n"


def test_a_backup_whose_reader_left_still_finishes_its_work(tmp_path: Path) -> None:
    """Its few lines wait in the buffer until the work is done: the backup is made, exit 0."""
    config = _settings(tmp_path, _tiny_tree(tmp_path))
    proc = _into_a_closed_pipe([*RESCUE, "--config", str(config), "backup", "--full"], timeout=300)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert len(json.loads(rescue(config, "status", "--json").out)["sets"]) == 1


_CUT_SHORT = """
import sys
from rescue.cli.main import _quiet_when_reader_leaves
import click
try:
    with _quiet_when_reader_leaves(sys.argv[1]):
        for i in range(100000):  # more than a pipe holds: the write fails mid-work
            print("line", i)
        sys.stdout.flush()
except click.exceptions.Exit as end:
    sys.exit(end.exit_code)
"""


@pytest.mark.parametrize(("command", "code"), [("restore", 141), ("files", 0)])
def test_work_cut_short_by_a_closed_pipe_is_not_a_success(command: str, code: int) -> None:
    """A command that changes things and is cut short mid-work by its closed output must not
    exit 0 (a real closed pipe; the guard alone, since no command prints enough mid-work)."""
    proc = _into_a_closed_pipe([sys.executable, "-c", _CUT_SHORT, command], timeout=60)
    assert proc.returncode == code, proc.stderr
    expected = [f"rescue: {command} stopped: the reader of its output went away (exit 141)"]
    assert proc.stderr.splitlines() == (expected if code else [])
