"""Benchmark: parallel shards (rescue.backup.shards) against one duplicity stream and restic,
on the same data, in the same run.

rescue's planner splits the tree from the sizes that rescue's own walk records (one `rescue
backup --full` first writes them), and each shard is backed up by its own `duplicity full`
(symmetric encryption, file://), all at once; the restore runs every shard's `duplicity restore`
at once. The same through rescue itself ("rescue N": `[duplicity] shards = N`, `rescue backup
--full` and `rescue restore /`, everything rescue adds included). Against them: one `duplicity
full`/`restore` of the whole tree, and `restic backup` / `restic restore` (when restic is
installed: apt-get install restic). Each round runs every
configuration back to back in rotating order; it prints medians and the paired ratios to restic
and to one stream, and checks that the shards restore as many entries as the one stream.

    .venv/bin/python bench/shards.py --size-mib 512 --shards 1,2,4 --rounds 2

This is not a test: the machine is shared and noisy, so read the ratios.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from backup_restore import (
    BENCH_ENV,
    PASSPHRASE,
    VENV_BIN,
    bench_parser,
    bench_tree,
    paired_ratio,
    settings,
    timed,
)

from rescue.backup.shards import Plan, plan, shard_args
from rescue.config import load_settings
from rescue.exact.sizes import SIZES_REL, load_sizes

DUPLICITY = str(VENV_BIN / "duplicity")
OWN = str(Path(SIZES_REL).parent)


def together(argvs: list[list[str]], env: dict[str, str]) -> float:
    """Wall seconds from starting every argv at once to the end of the last."""
    start = time.monotonic()
    procs = [
        subprocess.Popen(a, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
        for a in argvs
    ]  # fmt: skip
    for proc, argv in zip(procs, argvs, strict=True):
        _, err = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"{argv[:2]} failed ({proc.returncode}): {err.decode()[-2000:]}")
    return time.monotonic() - start


def paths(root: Path) -> set[str]:
    """Every path below root, relative to it."""
    found = set()
    for top, dirs, files in os.walk(root):
        found.update(os.path.relpath(os.path.join(top, n), root) for n in [*dirs, *files])
    return found


def _runs(
    name: str, level: str, run: Path, source: Path, config: Path, sharding: Plan | None
) -> tuple[list[list[str]], list[list[str]], list[Path]]:
    """The backup and restore argvs of one configuration, and where its restores go."""
    if name.startswith("rescue"):
        shards, level = name.split()[1], name.split()[-1]
        duplicity = f"shards = {shards}\n" + (
            "" if level == "default" else f"compress_level = {level}\n"
        )
        own = settings(run / "rescue.toml", source, run / "dest", run / "cache", duplicity)
        rescue = [str(VENV_BIN / "rescue"), "--config", str(own), "--log-file", str(run / "log")]
        return (
            [[*rescue, "backup", "--full"]],
            [[*rescue, "restore", "/", "--to", str(run / "out")]],
            [run / "out"],
        )
    if name == "restic":
        repo = ["-r", str(run / "repo")]
        return (
            [["restic", *repo, "backup", "-q", str(source)]],
            [["restic", *repo, "restore", "latest", "-q", "--target", str(run / "out")]],
            [run / "out" / source.relative_to("/")],
        )
    assert sharding is not None
    selection = load_settings(config).selection
    gpg = [] if level == "default" else [f"--gpg-options=--compress-level={level}"]
    backups, restores, outs = [], [], []
    count = sharding.count
    for k in range(count):
        url = f"file://{run / f'dest-{k}'}"
        cache = ["--archive-dir", str(run / "cache"), "--name", f"shard-{k}"]
        args = shard_args(selection, sharding, k, always=[str(source / OWN)]) if count > 1 else []
        backups.append([DUPLICITY, "full", "-v", "error", *cache, *gpg, *args, str(source), url])
        restores.append([DUPLICITY, "restore", "-v", "error", *cache, url, str(run / f"out-{k}")])
        outs.append(run / f"out-{k}")
    return backups, restores, outs


def main() -> None:
    parser = bench_parser(__doc__ or "", rounds=2)
    parser.add_argument("--shards", default="1,2,4")
    parser.add_argument("--levels", default="default,1", help="gpg compress levels to try")
    args = parser.parse_args()
    work, source = bench_tree(args)
    env = {**BENCH_ENV, "RESTIC_PASSWORD": PASSPHRASE}
    config = settings(work / "rescue.toml", source, work / "dest-rescue", work / "cache-rescue")
    seconds, _ = timed([str(VENV_BIN / "rescue"), "--config", str(config), "--log-file",
                        str(work / "log"), "backup", "--full"], env)  # fmt: skip
    print(f"rescue backup --full (writes the sizes): {seconds:.1f}s", flush=True)
    shutil.rmtree(work / "dest-rescue")
    sizes = load_sizes(source / SIZES_REL)
    assert sizes is not None, "rescue recorded no sizes"
    counts = [int(n) for n in args.shards.split(",")]
    plans = {n: plan(sizes, n, keep=[OWN]) for n in counts}
    for n, made in plans.items():
        pieces = sum(len(p) for p in made.pieces)
        loads = ", ".join(f"{b / 2**20:.0f}" for b in made.loads)
        print(f"{n} shards: {pieces} pieces, loads MiB [{loads}], balance {made.balance():.3f}")
    names = [f"{n} x level {lv}" for n in counts for lv in args.levels.split(",")]
    names += [f"rescue {n} x level {lv}" for n in counts for lv in args.levels.split(",")]
    if shutil.which("restic"):
        subprocess.run(["restic", "-r", str(work / "init-check"), "init", "-q"], env=env,
                       check=True, capture_output=True)  # fmt: skip
        names.insert(0, "restic")
    else:
        print("restic is not installed: no restic figures (apt-get install restic)")
    figures: dict[str, dict[str, list[float]]] = {n: {"backup": [], "restore": []} for n in names}
    restored: dict[str, set[str]] = {}
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            run = work / name.replace(" ", "-")
            shutil.rmtree(run, ignore_errors=True)
            run.mkdir()
            sharding = plans.get(int(name.split()[0])) if name[0].isdigit() else None
            if name == "restic":
                subprocess.run(["restic", "-r", str(run / "repo"), "init", "-q"], env=env,
                               check=True, capture_output=True)  # fmt: skip
            backups, restores, outs = _runs(name, name.split()[-1], run, source, config, sharding)
            figures[name]["backup"].append(together(backups, env))
            figures[name]["restore"].append(together(restores, env))
            restored[name] = set().union(*(paths(o) for o in outs))
            same = restored[name] == restored.get(names[-1], restored[name])
            note = "" if same else " (NOT the same paths as the others)"
            print(f"round {r + 1}: {name:18} backup {figures[name]['backup'][-1]:6.1f}s  "
                  f"restore {figures[name]['restore'][-1]:6.1f}s  {len(restored[name])} paths"
                  f"{note}", flush=True)  # fmt: skip
            shutil.rmtree(run)
    summary: dict[str, object] = {"size_mib": args.size_mib, "rounds": args.rounds}
    base = "1 x level default"
    print(f"\n{args.size_mib} MiB, {args.rounds} rounds: medians; paired ratios")
    for name in names:
        f = figures[name]
        ratios = {
            f"{what} vs {other}": paired_ratio(f[what], figures[other][what])
            for what in ("backup", "restore")
            for other in ("restic", base)
            if other in figures and other != name
        }
        shown = "  ".join(f"{k} x{v:.2f}" for k, v in ratios.items())
        print(f"  {name:18} backup {statistics.median(f['backup']):6.1f}s  restore "
              f"{statistics.median(f['restore']):6.1f}s  {shown}")  # fmt: skip
        summary[name] = {k: statistics.median(v) for k, v in f.items()} | ratios
    print(json.dumps(summary))
    if args.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
