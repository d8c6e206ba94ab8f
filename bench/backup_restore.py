"""Benchmark: rescue against bare duplicity on the same data, in the same run.

It generates a tree shaped like a server root (many small text files, some medium, a few large,
a quarter of the bytes incompressible), then, in alternating order to spread the machine's noise,
times `rescue backup --full` against the equivalent bare `duplicity full`, and `rescue restore /`
against bare `duplicity restore`. It prints the median of each, their ratio, and the peak memory
of each process tree (rescue's includes the duplicity and gpg it starts).

    .venv/bin/python bench/backup_restore.py --size-mib 512 --rounds 3

This is not a test: the machine is shared and noisy, so read the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rescue.backup.sampletree import make_bench_tree  # noqa: E402
from rescue.backup.treecompare import compare_trees  # noqa: E402

VENV_BIN = Path(sys.executable).parent
PASSPHRASE = "bench passphrase, not a secret"


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS in KiB of argv and every process it waited for."""
    start = time.monotonic()
    proc = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {err[-2000:]}")
    return seconds, usage.ru_maxrss


def settings(path: Path, source: Path, dest: Path, cache: Path, duplicity: str = "") -> Path:
    """A bench settings file (symmetric, file://); duplicity: more [duplicity] lines."""
    path.write_text(
        "[destination]\n"
        f'method = "file"\npath = "{dest}"\n'
        "[encryption]\n"
        'mode = "symmetric"\npassphrase_env = "BENCH_PASSPHRASE"\n'
        "[selection]\n"
        f'root = "{source}"\ninclude = ["{source}"]\n'
        "[duplicity]\n"
        f'archive_dir = "{cache}"\n' + duplicity
    )
    path.chmod(0o600)
    return path


def bench_parser(doc: str, rounds: int) -> argparse.ArgumentParser:
    """The options every tree benchmark here takes: --size-mib, --rounds, --workdir."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary dir")
    return parser


def bench_tree(args: argparse.Namespace) -> tuple[Path, Path]:
    """(the work directory, the source tree in it), the tree generated unless it is there."""
    work = args.workdir or Path(tempfile.mkdtemp(prefix="rescue-bench-", dir="/var/tmp"))
    source = work / "source"
    if not source.exists():
        t = time.monotonic()
        make_bench_tree(source, total_mib=args.size_mib)
        print(f"generated {args.size_mib} MiB tree in {time.monotonic() - t:.1f}s at {source}")
    return work, source


BENCH_ENV = {**os.environ, "PASSPHRASE": PASSPHRASE, "BENCH_PASSPHRASE": PASSPHRASE}


def paired_ratio(ours: list[float], raw: list[float]) -> float:
    """The median of per-round ratios: each round's pair ran back to back, so it shares that
    moment's noise."""
    return statistics.median(o / r for o, r in zip(ours, raw, strict=True))


def main() -> None:
    args = bench_parser(__doc__ or "", rounds=3).parse_args()
    work, source = bench_tree(args)
    env = BENCH_ENV
    rescue = [str(VENV_BIN / "rescue")]
    duplicity = str(VENV_BIN / "duplicity")
    results: dict[str, list[tuple[float, int]]] = {
        k: [] for k in ("raw backup", "rescue backup", "raw restore", "rescue restore")
    }

    for n in range(args.rounds):
        run = work / f"round{n}"
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir()
        config = settings(run / "rescue.toml", source, run / "dest-rescue", run / "cache-rescue")
        raw_backup = [
            duplicity,
            "full",
            "-v",
            "notice",
            "--archive-dir",
            str(run / "cache-raw"),
            "--num-retries",
            "3",
            str(source),
            f"file://{run / 'dest-raw'}",
        ]
        rescue_backup = [
            *rescue,
            "--config",
            str(config),
            "--log-file",
            str(run / "log"),
            "backup",
            "--full",
        ]
        raw_restore = [
            duplicity,
            "restore",
            "-v",
            "notice",
            "--archive-dir",
            str(run / "cache-raw"),
            f"file://{run / 'dest-raw'}",
            str(run / "out-raw"),
        ]
        rescue_restore = [
            *rescue,
            "--config",
            str(config),
            "--log-file",
            str(run / "log"),
            "restore",
            "/",
            "--to",
            str(run / "out-rescue"),
        ]
        pairs = [("raw backup", raw_backup), ("rescue backup", rescue_backup)]
        pairs += [("raw restore", raw_restore), ("rescue restore", rescue_restore)]
        if n % 2:  # alternate who goes first
            pairs = [pairs[1], pairs[0], pairs[3], pairs[2]]
        for name, argv in pairs:
            seconds, rss = timed(argv, env)
            results[name].append((seconds, rss))
            print(
                f"round {n + 1}: {name:15} {seconds:7.2f}s  peak {rss / 1024:6.1f} MiB", flush=True
            )
        diffs = compare_trees(source, run / "out-rescue")
        if diffs:
            raise SystemExit(f"rescue restore differs from the source: {diffs[:5]}")
        shutil.rmtree(run)

    summary: dict[str, object] = {"size_mib": args.size_mib, "rounds": args.rounds}
    print(f"\n{args.size_mib} MiB, {args.rounds} rounds, medians:")
    for what in ("backup", "restore"):
        raw_times = [s for s, _ in results[f"raw {what}"]]
        our_times = [s for s, _ in results[f"rescue {what}"]]
        raw, ours = statistics.median(raw_times), statistics.median(our_times)
        paired = paired_ratio(our_times, raw_times)
        raw_rss = max(r for _, r in results[f"raw {what}"]) / 1024
        our_rss = max(r for _, r in results[f"rescue {what}"]) / 1024
        print(
            f"  {what:8} duplicity {raw:7.2f}s  rescue {ours:7.2f}s  "
            f"ratio of medians {ours / raw:.3f}  median paired ratio {paired:.3f}  "
            f"peak MiB duplicity {raw_rss:.0f} rescue {our_rss:.0f}"
        )
        summary[what] = {
            "duplicity_s": raw,
            "rescue_s": ours,
            "ratio_of_medians": ours / raw,
            "median_paired_ratio": paired,
            "peak_mib_duplicity": raw_rss,
            "peak_mib_rescue": our_rss,
        }
    print(json.dumps(summary))
    if args.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
