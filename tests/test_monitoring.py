"""[monitoring]: the node_exporter textfile and the healthchecks.io-style pings, around real
backups and drills (the real duplicity, a file destination, symmetric encryption).

The ping service is the one fake here: rescue does not own it (healthchecks.io or a self-hosted
one), so a small http.server on 127.0.0.1 stands in for it and records every request.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from clirun import rescue, symmetric_settings

from rescue.config import Settings
from rescue.configbackup.create import _redactor
from rescue.errors import ConfigError

pytestmark = pytest.mark.slow

CHECK = "4f1c2b7e-check-uuid-8d9a"  # the secret part of a ping URL


class PingRecorder:
    """A stand-in ping service: records (method, path, body) of every request, answers 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                recorder.requests.append((self.command, self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            do_GET = do_POST = do_HEAD = _record

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/{CHECK}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pings() -> Iterator[PingRecorder]:
    recorder = PingRecorder()
    try:
        yield recorder
    finally:
        recorder.close()


# -- a strict reader of the exposition format (text 0.0.4) ----------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(rf"({_NAME})(\{{{_LABEL}(?:,{_LABEL})*\}})? (\S+)")


def parse_prom(text: str) -> dict[str, float]:
    """{'name{labels}': value}; fails on anything Prometheus' text parser would reject or
    warn about: no final newline, a sample before its family's HELP and TYPE, a family given
    twice, a duplicate sample, an unknown TYPE, a value that is not a number."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    samples: dict[str, float] = {}
    families: list[str] = []
    current: str | None = None
    helped: str | None = None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert re.fullmatch(_NAME, name) and name not in families, line
            helped = name
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name == helped and kind in ("gauge", "counter", "untyped"), line
            families.append(name)
            current = name
        else:
            match = _SAMPLE.fullmatch(line)
            assert match, f"not a sample line: {line!r}"
            name, labels, value = match.groups()
            assert name == current, f"{name} outside its family"
            key = name + (labels or "")
            assert key not in samples, f"duplicate sample {key}"
            try:
                number = float(value)
            except ValueError:
                raise AssertionError(f"not a number: {line!r}") from None
            assert not math.isnan(number)
            samples[key] = number
    return samples


def test_the_parser_rejects_what_prometheus_rejects() -> None:
    good = '# HELP a_b x\n# TYPE a_b gauge\na_b{kind="backup"} 1\n'
    assert parse_prom(good) == {'a_b{kind="backup"}': 1.0}
    for bad in (
        good.rstrip("\n"),
        "a_b 1\n",
        good + 'a_b{kind="backup"} 2\n',
        good.replace("gauge", "gauges"),
        good.replace(" 1\n", " one\n"),
        good.replace('kind="backup"', "kind=backup"),
    ):
        with pytest.raises(AssertionError):
            parse_prom(bad)


# -- settings --------------------------------------------------------------------------------


def _settings(tmp_path: Path, tree: Path, monitoring: dict[str, object]) -> Path:
    """A symmetric file-destination settings file with a [monitoring] section."""
    folder = tmp_path / "host"
    folder.mkdir()
    config = symmetric_settings(
        folder,
        tree,
        {"method": "file", "path": str(tmp_path / "dest")},
        "a drill passphrase",
        retries=1,
    )
    lines = ["[monitoring]"] + [
        f"{k} = {v}" if isinstance(v, int) else f'{k} = "{v}"' for k, v in monitoring.items()
    ]
    config.write_text(config.read_text() + "\n".join(lines) + "\n")
    return config


def test_ping_urls_are_checked_and_never_shown() -> None:
    base = {"destination": {"method": "file", "path": "/srv/b"}}
    for bad in ("ftp://hc.example/x", "hc-ping.com/x", "https://user@hc.example/x", "http://a b"):
        with pytest.raises(ConfigError, match=r"monitoring\.ping_url: must be an http"):
            Settings.model_validate({**base, "monitoring": {"ping_url": bad}})
    url = f"https://hc-ping.example/{CHECK}"
    settings = Settings.model_validate({**base, "monitoring": {"ping_url": url}})
    assert CHECK not in str(settings.redacted()) and CHECK not in repr(settings)
    # a bug report (config-backup --type bug-report) redacts it wherever it appears
    text = f'[monitoring]\nping_url = "{url}"\n'.encode()
    redacted = _redactor(settings, Path("/nonexistent"), {}).redact("rescue", "/x.toml", text)
    assert CHECK.encode() not in redacted and b"[REDACTED by rescue]" in redacted


# -- backups ---------------------------------------------------------------------------------


def _history_error(config: Path) -> str:
    return rescue(config, "status", "--history", "--json").json()[-1]["error"]


def test_backup_pings_start_and_success_or_fail_and_writes_the_textfile(
    tmp_path: Path, sample_tree: Path, pings: PingRecorder
) -> None:
    prom = tmp_path / "node-exporter/rescue.prom"
    prom.parent.mkdir()
    config = _settings(tmp_path, sample_tree, {"textfile": prom, "ping_url": pings.url})
    time.sleep(1)
    r = rescue(config, "backup")
    assert r.code == 0, r.err
    assert r.err == ""
    assert pings.requests == [("GET", f"/{CHECK}/start", ""), ("GET", f"/{CHECK}", "")]

    status = rescue(config, "status", "--json").json()
    metrics = parse_prom(prom.read_text())
    assert metrics['rescue_last_run_success{kind="backup"}'] == 1
    assert metrics["rescue_backup_sets"] == 1 and metrics["rescue_backup_chains"] == 1
    assert metrics["rescue_oldest_restorable_timestamp_seconds"] == status["sets"][0]["time"]
    assert metrics["rescue_last_backup_bytes_written"] == status["last_run"]["bytes"] > 0
    run = status["last_run"]
    assert metrics['rescue_last_run_duration_seconds{kind="backup"}'] == pytest.approx(
        run["seconds"], abs=0.06
    )
    succeeded = metrics['rescue_last_success_timestamp_seconds{kind="backup"}']
    assert abs(succeeded - time.time()) < 120
    assert not any(k.endswith('{kind="drill"}') for k in metrics)  # no drill yet
    assert oct(prom.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in prom.parent.iterdir()) == ["rescue.prom"]  # no temp file left

    # A failing run: start, then fail with the error line; the textfile says so.
    (tmp_path / "dest").rename(tmp_path / "dest-away")
    (tmp_path / "dest").write_text("not a directory\n")
    pings.requests.clear()
    r = rescue(config, "backup")
    assert r.code != 0
    error = _history_error(config)
    assert error and error in r.err
    assert pings.requests == [
        ("GET", f"/{CHECK}/start", ""),
        ("POST", f"/{CHECK}/fail", error + "\n"),
    ]
    metrics = parse_prom(prom.read_text())
    assert metrics['rescue_last_run_success{kind="backup"}'] == 0
    assert metrics['rescue_last_success_timestamp_seconds{kind="backup"}'] == succeeded
    assert metrics["rescue_backup_sets"] == 1  # what the cache knows is still restorable


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_or_silent_ping_service_never_fails_the_backup(
    tmp_path: Path, sample_tree: Path
) -> None:
    port = _closed_port()
    prom = tmp_path / "not-installed/rescue.prom"  # node_exporter's directory is missing
    config = _settings(
        tmp_path, sample_tree, {"ping_url": f"http://127.0.0.1:{port}/{CHECK}", "textfile": prom}
    )
    time.sleep(1)
    r = rescue(config, "backup")
    assert r.code == 0, r.err
    assert "full backup done" in r.out
    lines = r.err.splitlines()
    assert lines == [
        f"rescue: warning: the /start ping to http://127.0.0.1:{port}/… failed: "
        "[Errno 111] Connection refused",
        f"rescue: warning: the success ping to http://127.0.0.1:{port}/… failed: "
        "[Errno 111] Connection refused",
        f"rescue: warning: cannot write the metrics textfile {prom}: its directory does not exist",
    ]
    assert not prom.parent.exists()
    log = (config.parent / "rescue.log").read_text()
    assert "ping to" in log and CHECK not in log and CHECK not in r.out

    # A service that takes the connection and never answers: given up after the timeout.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/{CHECK}"
        text = config.read_text().replace(f"http://127.0.0.1:{port}/{CHECK}", url)
        config.write_text(text + "ping_timeout_seconds = 1\n")
        start = time.monotonic()
        r = rescue(config, "backup", "--incremental")
        took = time.monotonic() - start
    assert r.code == 0, r.err
    assert r.err.count("failed: timed out") == 2 and CHECK not in r.err
    assert took < 30


# -- drills ----------------------------------------------------------------------------------


def _agents(marker: str) -> list[str]:
    """The command lines of running gpg-agents whose home has marker in its name."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
                continue  # exited, waiting for its parent to notice
        except OSError:
            continue
        line = " ".join(a.decode(errors="replace") for a in argv)
        if "gpg-agent" in line and marker in line:
            found.append(line)
    return found


@pytest.fixture
def gnupg_homes() -> Iterator[tuple[Path, Path]]:
    """Two empty GnuPG homes with short paths (gpg-agent's socket path is limited); the agents
    gpg may start in them are ended by home afterwards."""
    homes = tuple(Path(tempfile.mkdtemp(prefix="rescue-test-gh-", dir="/tmp")) for _ in "ab")
    try:
        yield homes  # type: ignore[misc]
    finally:
        for home in homes:
            subprocess.run(["gpgconf", "--kill", "all"], env={**os.environ, "GNUPGHOME": str(home)})
            shutil.rmtree(home)


def test_drills_are_recorded_shown_exported_and_pinged(
    tmp_path: Path, sample_tree: Path, pings: PingRecorder, gnupg_homes: tuple[Path, Path]
) -> None:
    mine = gnupg_homes[1]
    # agents that runs killed earlier left behind (a SIGKILL gives no time to end them) are
    # not this test's: only an agent that appears during it and stays is a leak
    before = set(_agents("rescue-drill-gnupg-"))
    prom = tmp_path / "rescue.prom"
    config = _settings(tmp_path, sample_tree, {"textfile": prom, "drill_ping_url": pings.url})
    time.sleep(1)
    assert rescue(config, "backup", env={"GNUPGHOME": str(gnupg_homes[0])}).code == 0
    assert pings.requests == []  # the drill check gets only the drills' pings
    assert "last drill: none recorded" in rescue(config, "status").out

    # The drill's gpg uses a home of its own, not the caller's (where gpg would leave an agent
    # behind), and ends the agent it started there (rescue.process.gpghome).
    r = rescue(
        config, "drill", "--scratch", str(tmp_path / "scratch"), env={"GNUPGHOME": str(mine)}
    )
    assert r.code == 0, r.err
    assert _agents(str(mine)) == [] and sorted(mine.iterdir()) == []
    # the report: the set's date as people read it, and the bytes the backup really holds
    assert re.search(r"^/ as of \d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}: identical$", r.out, re.M)
    data = re.search(r"^data: ([\d.]+) (B|KiB|MiB) backed up", r.out, re.M)
    assert data and float(data.group(1)) > 0 and data.group(2) != "B", r.out
    assert pings.requests == [("GET", f"/{CHECK}/start", ""), ("GET", f"/{CHECK}", "")]
    assert set(_agents("rescue-drill-gnupg-")) <= before  # the drill's own gpg-agent was ended
    log = (config.parent / "rescue.log").read_text()
    assert "run: gpgconf --kill all" in log

    status = rescue(config, "status", "--json").json()
    drill = status["last_drill"]
    assert drill["outcome"] == "identical" and drill["compared_bytes"] > 100_000
    assert drill["set_time"] == status["sets"][-1]["date"]
    line = next(ln for ln in rescue(config, "status").out.splitlines() if "last drill" in ln)
    assert re.fullmatch(
        r"last drill: identical, \d{4}-\d\d-\d\d \d\d:\d\d, [\d.]+ (KiB|MiB) compared, "
        r"restored in [\d.]+s",
        line,
    ), line
    metrics = parse_prom(prom.read_text())
    assert metrics["rescue_last_drill_identical"] == 1
    assert metrics['rescue_last_run_success{kind="drill"}'] == 1
    assert metrics["rescue_last_drill_compared_bytes"] == drill["compared_bytes"]
    assert metrics["rescue_last_drill_restore_seconds"] == pytest.approx(drill["restore_seconds"])
    good = metrics['rescue_last_success_timestamp_seconds{kind="drill"}']
    assert metrics['rescue_last_run_success{kind="backup"}'] == 1  # the backup's lines stay

    # A drill that cannot restore: recorded as a failure, pinged /fail, 0 in the textfile.
    (tmp_path / "dest").rename(tmp_path / "dest-away")
    pings.requests.clear()
    r = rescue(
        config, "drill", "--scratch", str(tmp_path / "scratch2"), env={"GNUPGHOME": str(mine)}
    )
    assert r.code != 0
    drill = rescue(config, "status", "--json").json()["last_drill"]
    assert drill["outcome"] == "failure" and drill["error"] in r.err
    assert pings.requests == [
        ("GET", f"/{CHECK}/start", ""),
        ("POST", f"/{CHECK}/fail", drill["error"] + "\n"),
    ]
    metrics = parse_prom(prom.read_text())
    assert metrics["rescue_last_drill_identical"] == 0
    assert metrics['rescue_last_success_timestamp_seconds{kind="drill"}'] == good
    assert "last drill: FAILURE, " in rescue(config, "status").out
    assert set(_agents("rescue-drill-gnupg-")) <= before
    # the backup runs' own records are untouched by the drills'
    assert [r["outcome"] for r in rescue(config, "status", "--history", "--json").json()] == [
        "success"
    ]
