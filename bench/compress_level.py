"""Benchmark: gpg's compression level ([duplicity] compress_level), for the backup's time, the
restore's time and the room taken at the destination.

On one server-shaped tree (a quarter of its bytes incompressible), each round makes a full
backup and a full restore with `rescue` at gpg's default level and at each level asked for, and
the bare `duplicity full`/`restore` at the default level, back to back in rotating order. It
prints the medians and each level's ratios to the bare run of the same round.

    .venv/bin/python bench/compress_level.py --size-mib 512 --levels 1,0 --rounds 2

This is not a test: the machine is shared and noisy, so read the ratios.
"""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

from backup_restore import (
    BENCH_ENV,
    VENV_BIN,
    bench_parser,
    bench_tree,
    paired_ratio,
    settings,
    timed,
)


def _stored(dest: Path) -> int:
    return sum(p.stat().st_size for p in dest.iterdir() if ".difftar." in p.name)


def main() -> None:
    parser = bench_parser(__doc__ or "", rounds=2)
    parser.add_argument("--levels", default="1,0")
    args = parser.parse_args()
    work, source = bench_tree(args)
    env = BENCH_ENV
    duplicity = str(VENV_BIN / "duplicity")
    names = ["raw", "default", *(f"level {n}" for n in args.levels.split(","))]
    figures: dict[str, dict[str, list[float]]] = {
        n: {"backup": [], "restore": [], "stored": []} for n in names
    }
    for n in range(args.rounds):
        order = names[n % len(names) :] + names[: n % len(names)]
        for name in order:
            run = work / name.replace(" ", "-")
            shutil.rmtree(run, ignore_errors=True)
            run.mkdir()
            dest, cache, out = run / "dest", run / "cache", run / "out"
            if name == "raw":
                backup = [
                    duplicity,
                    "full",
                    "-v",
                    "notice",
                    "--archive-dir",
                    str(cache),
                    str(source),
                    f"file://{dest}",
                ]
                restore = [
                    duplicity,
                    "restore",
                    "-v",
                    "notice",
                    "--archive-dir",
                    str(cache),
                    f"file://{dest}",
                    str(out),
                ]
            else:
                config = settings(run / "rescue.toml", source, dest, cache)
                if name != "default":
                    level = name.split()[1]
                    config.write_text(config.read_text() + f"compress_level = {level}\n")
                rescue = [
                    str(VENV_BIN / "rescue"),
                    "--config",
                    str(config),
                    "--log-file",
                    str(run / "log"),
                ]
                backup = [*rescue, "backup", "--full"]
                restore = [*rescue, "restore", "/", "--to", str(out)]  # fmt: skip
            seconds, _ = timed(backup, env)
            figures[name]["backup"].append(seconds)
            figures[name]["stored"].append(_stored(dest))
            seconds, _ = timed(restore, env)
            figures[name]["restore"].append(seconds)
            print(
                f"round {n + 1}: {name:8} backup {figures[name]['backup'][-1]:6.1f}s  "
                f"restore {seconds:6.1f}s  stored {_stored(dest) / 2**20:7.1f} MiB",
                flush=True,
            )
            shutil.rmtree(run)
    summary: dict[str, object] = {"size_mib": args.size_mib, "rounds": args.rounds}
    print(
        f"\n{args.size_mib} MiB, {args.rounds} rounds: medians, and paired ratios to bare duplicity"
    )
    raw = figures["raw"]
    for name in names:
        f = figures[name]
        ratios = {
            what: paired_ratio(f[what], raw[what]) for what in ("backup", "restore", "stored")
        }
        print(
            f"  {name:8} backup {statistics.median(f['backup']):6.1f}s (x{ratios['backup']:.2f})"
            f"  restore {statistics.median(f['restore']):6.1f}s (x{ratios['restore']:.2f})"
            f"  stored {statistics.median(f['stored']) / 2**20:7.1f} MiB (x{ratios['stored']:.2f})"
        )
        summary[name] = {k: statistics.median(v) for k, v in f.items()} | {"ratios": ratios}
    print(json.dumps(summary))
    if args.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
