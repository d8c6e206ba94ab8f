"""Benchmark: how backup and restore scale with the data's size and with its number of files.

Two series, each against bare duplicity on the same data in the same run (symmetric
encryption, file://):
- by size: server-shaped trees of 1, 2 and 4 GiB (rescue.backup.sampletree.make_bench_tree);
- by count: 50k, 200k and 800k small files (1-3 KiB of text, 1,000 per directory).

For each it times `rescue backup --full` and `rescue restore /` and the bare `duplicity full` and
`duplicity restore`, and records each one's peak memory (the largest process of the tree it
waited for: rescue's own Python, duplicity or gpg), and the part of the backup that is rescue's
own walk (the metadata records, from its log). It then prints the time per GiB or per 100k files
at each step of the series: linear time keeps that figure flat, and a step whose figure grows by
more than a quarter from the smallest to the largest is named. --scale 0.25 runs the series
at a quarter of the scale (256 MiB to 1 GiB, 12.5k to 200k files).

    .venv/bin/python bench/scaling.py               # about an hour here
    .venv/bin/python bench/scaling.py --scale 0.25  # about a quarter of that

This is not a test: the machine is shared and noisy, so read the ratios and the trends.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from backup_restore import BENCH_ENV, VENV_BIN, settings, timed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rescue.backup.sampletree import make_bench_tree  # noqa: E402

GROWTH = 1.25  # a per-unit figure this much larger at the largest step: not linear
WALK = re.compile(r"metadata: \d+ entries walked.*, ([0-9.]+) s$")


@dataclass
class Step:
    label: str
    units: float  # GiB or 100k files
    figures: dict[str, float] = field(default_factory=dict)


def many_files(root: Path, count: int) -> None:
    """count small text files, 1,000 per directory."""
    line = b"a line of a small configuration or log file, repeated\n"
    for n in range(count):
        folder = root / f"d{n // 1000:04d}"
        if n % 1000 == 0:
            folder.mkdir(parents=True)
        (folder / f"f{n:07d}.txt").write_bytes(line * (20 + n % 40))


def _entries(root: Path) -> int:
    return sum(len(dirs) + len(files) for _, dirs, files in os.walk(root))


def measure(work: Path, source: Path, step: Step, env: dict[str, str]) -> None:
    """Both backups and both restores of source, into step.figures."""
    config = settings(work / "rescue.toml", source, work / "dest-rescue", work / "cache-rescue")
    log = work / "log"
    duplicity = str(VENV_BIN / "duplicity")
    rescue = [str(VENV_BIN / "rescue"), "--config", str(config), "--log-file", str(log)]
    raw_url = f"file://{work / 'dest-raw'}"
    raw_cache = ["--archive-dir", str(work / "cache-raw")]
    # rescue's backup first: it writes its own files (var/lib/rescue) into the source, and the
    # bare backup then holds them too, so both restores give the same tree
    runs = {
        "rescue backup": [*rescue, "backup", "--full"],
        "raw backup": [duplicity, "full", "-v", "notice", *raw_cache, str(source), raw_url],
        "rescue restore": [*rescue, "restore", "/", "--to", str(work / "out-rescue")],
        "raw restore": [duplicity, "restore", "-v", "notice", *raw_cache, raw_url,
                        str(work / "out-raw")],
    }  # fmt: skip
    for name, argv in runs.items():
        # what the step before left to write back (a removed tree of 800k files is minutes of
        # journal) is written now, not during this run: it had made whichever restore came
        # second look 2-3x slower
        os.sync()
        seconds, rss = timed(argv, env)
        step.figures[f"{name} s"] = seconds
        step.figures[f"{name} peak MiB"] = rss / 1024
        print(f"  {step.label}: {name:15} {seconds:8.1f}s  peak {rss / 1024:7.1f} MiB", flush=True)
        if name.endswith("restore"):
            out = work / ("out-raw" if name.startswith("raw") else "out-rescue")
            if _entries(out) != _entries(source):  # a cheap check that it restored everything
                raise SystemExit(f"{name}: {_entries(out)} entries, the source has more or fewer")
            shutil.rmtree(out)
    walks = [float(m.group(1)) for m in map(WALK.search, log.read_text().splitlines()) if m]
    step.figures["rescue walk s"] = walks[-1] if walks else float("nan")
    for what in ("backup", "restore"):
        step.figures[f"{what} ratio"] = (
            step.figures[f"rescue {what} s"] / step.figures[f"raw {what} s"]
        )


def report(title: str, unit: str, steps: list[Step]) -> dict[str, object]:
    """Print the series and name what grows faster than linear."""
    print(f"\n{title} (seconds per {unit}; peak memory in MiB)")
    timed_parts = ["raw backup s", "rescue backup s", "rescue walk s", "raw restore s",
                   "rescue restore s"]  # fmt: skip
    for step in steps:
        per = "  ".join(
            f"{k.removesuffix(' s')} {step.figures[k] / step.units:6.1f}" for k in timed_parts
        )
        peaks = "  ".join(
            f"{k.removesuffix(' peak MiB')} {step.figures[k]:5.0f}"
            for k in step.figures
            if k.endswith("peak MiB")
        )
        print(
            f"  {step.label:>8}: {per} | backup x{step.figures['backup ratio']:.2f} "
            f"restore x{step.figures['restore ratio']:.2f} | peak {peaks}"
        )
    faster = []
    first, last = steps[0], steps[-1]
    for part in timed_parts:
        if not first.figures[part] > 0:  # too small to time (or not logged): no trend
            continue
        growth = (last.figures[part] / last.units) / (first.figures[part] / first.units)
        if growth > GROWTH:
            faster.append(f"{part.removesuffix(' s')} (x{growth:.2f} per {unit})")
    for part in [k for k in first.figures if k.endswith("peak MiB")]:
        growth = last.figures[part] / first.figures[part]
        if growth > GROWTH:
            faster.append(f"{part} (x{growth:.2f} from {first.label} to {last.label})")
    print("  grows faster than linear: " + (", ".join(faster) if faster else "nothing"))
    return {"steps": [{"label": s.label, **s.figures} for s in steps], "faster": faster}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="0.25: a quarter of it")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary dir")
    args = parser.parse_args()
    scale = args.scale
    work = args.workdir or Path(tempfile.mkdtemp(prefix="rescue-scaling-", dir="/var/tmp"))
    env = BENCH_ENV
    summary: dict[str, object] = {"scale": scale}

    series = {
        "by size": [(f"{gib * scale:g} GiB", gib * scale) for gib in (1, 2, 4)],
        "by count": [(f"{n * scale / 1000:g}k", n * scale / 100_000)
                     for n in (50_000, 200_000, 800_000)],
    }  # fmt: skip
    for title, points in series.items():
        steps = []
        for label, units in points:
            run = work / label.replace(" ", "")
            run.mkdir(parents=True)
            source = run / "source"
            began = time.monotonic()
            if title == "by size":
                make_bench_tree(source, total_mib=int(units * 1024))
            else:
                many_files(source, int(units * 100_000))
            print(f"{title} {label}: made in {time.monotonic() - began:.0f}s", flush=True)
            step = Step(label, units)
            measure(run, source, step, env)
            steps.append(step)
            shutil.rmtree(run)
        summary[title] = report(title, "GiB" if title == "by size" else "100k files", steps)
    print(json.dumps(summary))
    if args.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
