"""What a stopped or crashed run leaves must not trip the next: a duplicity still at work on the
archive dir is named (exit 5), a recovery resumes from any working directory, and the log
holds no file listing."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from clirun import RESCUE, rescue, write_settings

from rescue.backup.duplicity_run import DUPLICITY

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, source: Path, destination: dict[str, object]) -> Path:
    return write_settings(
        tmp_path / "rescue.toml",
        {
            "destination": destination,
            "encryption": {"mode": "none"},
            "selection": {"root": str(source), "include": [str(source)]},
            "duplicity": {"archive_dir": str(tmp_path / "cache"), "retries": 1},
        },
    )


def test_a_duplicity_left_on_the_archive_dir_is_named(tmp_path: Path) -> None:
    """A real duplicity, started by hand on the same archive dir, hangs on an sftp server that
    accepts and never answers; rescue refuses to start beside it and names its pid."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True).start()
    source = tmp_path / "src"
    source.mkdir()
    (source / "f").write_text("x\n")
    config = _config(tmp_path, source, {"method": "file", "path": str(tmp_path / "dest")})
    cache = tmp_path / "cache"
    cache.mkdir()
    port = silent.getsockname()[1]
    by_hand = subprocess.Popen(
        [DUPLICITY, "collection-status", "--archive-dir", str(cache), "--no-encryption",
         f"sftp://nobody@127.0.0.1:{port}/x"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not accepted and time.monotonic() < deadline:
            time.sleep(0.1)
        assert accepted, "duplicity never connected"
        run = rescue(config, "backup", "--full")
        assert run.code == 5, run.err
        assert f"duplicity (pid {by_hand.pid}" in run.err
        assert f"is still using the archive dir {cache}" in run.err
        assert run.err.count("rescue: error:") == 1
    finally:
        by_hand.kill()
        by_hand.wait()
        silent.close()
    assert rescue(config, "backup", "--full").code == 0  # and once it is gone, all is well


def test_a_listing_is_output_not_log(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "many").mkdir(parents=True)
    for n in range(50):
        (source / "many" / f"listed-name-{n}").write_text("x")
    config = _config(tmp_path, source, {"method": "file", "path": str(tmp_path / "dest")})
    assert rescue(config, "backup", "--full").code == 0
    log = tmp_path / "rescue.log"
    before = log.stat().st_size
    run = rescue(config, "files", "many")
    assert run.code == 0 and run.out.count("listed-name-") == 50
    added = log.read_bytes()[before:].decode()
    assert "listed-name-" not in added
    assert "lines of output, not logged" in added


def test_a_recovery_resumes_from_any_working_directory(tmp_path: Path) -> None:
    """Relative --plan, settings, log and work dir: the state keeps them absolute."""
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    _config(here, Path("/"), {"method": "file", "path": str(tmp_path / "nowhere")})
    (here / "plan.toml").write_text(
        'settings = "rescue.toml"\n[disks]\ntargets = ["file:/nonexistent.img"]\n'
    )
    argv = ["recover", "--plan", "plan.toml", "--work-dir", "work"]
    first = subprocess.run(
        [*RESCUE, "--log-file", "log", *argv],
        cwd=here, stdin=subprocess.DEVNULL, capture_output=True, text=True,
    )  # fmt: skip
    assert "does not exist here" in first.stderr, first.stderr
    options = json.loads((here / "work/state.json").read_text())["options"]
    for key in ("plan_file", "settings_file", "log_file", "work_dir"):
        assert Path(options[key]).is_absolute(), (key, options[key])
    again = subprocess.run(
        [*RESCUE, "recover", "--resume", "--work-dir", str(here / "work")],
        cwd=elsewhere, stdin=subprocess.DEVNULL, capture_output=True, text=True,
    )  # fmt: skip
    assert "does not exist here" in again.stderr, again.stderr  # the same step, not a lost plan


def test_a_stop_while_rescue_starts_is_one_line_and_exit_143() -> None:
    """SIGTERM at moments spread over the imports (click, pydantic and the command modules):
    always the one line and exit 143, never a traceback from inside an import. The moments are
    spread over a measured start, so a loaded machine moves them with it."""
    began = time.monotonic()
    subprocess.run([*RESCUE, "--version"], stdin=subprocess.DEVNULL, capture_output=True)
    start = time.monotonic() - began
    caught = 0
    for n in range(12):
        proc = subprocess.Popen(
            [*RESCUE, "--version"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(start * (0.15 + 0.07 * n))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        if proc.returncode == 0:
            continue  # it was done first
        if proc.returncode == -signal.SIGTERM and not err:
            continue  # before the interpreter ran rescue's first line: nothing had started
        assert proc.returncode == 143, err
        assert err.count("\n") == 1 and err.startswith("rescue: stopped by SIGTERM"), err
        caught += 1
    assert caught >= 3, f"only {caught} of 12 stops came while rescue started ({start:.2f} s)"


@pytest.mark.parametrize("log_dir_usable", [True, False], ids=["before-the-log", "no-log-at-all"])
def test_a_stop_before_the_log_exists_is_still_one_line(
    tmp_path: Path, log_dir_usable: bool
) -> None:
    """The SIGTERM lands just as the log is set up (placed there by wrapping the setup: the
    timing is the fault, not rescue's), or where no log file can be made at all: one line
    on stderr, never the logging module's own print of the same message."""
    log_file = tmp_path / "log/rescue.log" if log_dir_usable else Path("/proc/no/rescue.log")
    script = (
        "import os, signal, sys\n"
        "import importlib\nmain = importlib.import_module('rescue.cli.main')\n"
        "setup = main._setup_logging\n"
        "def stopped_at_setup(path, verbose):\n"
        f"    if {log_dir_usable!r}:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "    chosen = setup(path, verbose)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return chosen\n"
        "main._setup_logging = stopped_at_setup\n"
        f"sys.argv = ['rescue', '--log-file', {str(log_file)!r}, 'config', 'path']\n"
        "main.cli()\n"
    )
    run = subprocess.run(
        [RESCUE[0], "-c", script], stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert run.returncode == 143, run.stderr
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("rescue: stopped by SIGTERM"), (
        run.stderr
    )
