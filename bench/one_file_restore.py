"""Benchmark: the volume size, for the full backup's time against a one-file restore's time,
rescue against bare duplicity on the same data, in the same run.

For each volume size (MB) it makes a full backup with bare `duplicity full --volsize N` and with
`rescue backup --full` ([duplicity] volsize = N), both with symmetric encryption to file://,
then restores single files (one early, one in the middle and one late in the backup's order)
with `duplicity restore --path-to-restore` and with `rescue restore FILE --to`. Each pair runs
back to back, in alternating order, so the ratios share the machine's noise. It also times
duplicity's own start (`duplicity --version`) and its chain loading (`collection-status`), the
floor that any one-file restore pays.

    .venv/bin/python bench/one_file_restore.py --size-mib 512 --volsizes 25,50,100,200 --rounds 2

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


def _files(source: Path) -> list[str]:
    """Three regular files, early, middle and late in duplicity's (sorted) order."""
    found = sorted(
        str(p.relative_to(source)) for p in source.rglob("*") if p.is_file() and not p.is_symlink()
    )
    return [found[len(found) // 10], found[len(found) // 2], found[-len(found) // 10]]


def main() -> None:
    parser = bench_parser(__doc__ or "", rounds=2)
    parser.add_argument("--volsizes", default="25,50,100,200")
    args = parser.parse_args()
    volsizes = [int(v) for v in args.volsizes.split(",")]
    work, source = bench_tree(args)
    env = BENCH_ENV
    duplicity = str(VENV_BIN / "duplicity")
    rescue = str(VENV_BIN / "rescue")
    files = _files(source)

    start, _ = timed([duplicity, "--version"], env)
    summary: dict[str, object] = {"size_mib": args.size_mib, "duplicity_start_s": start}
    print(f"duplicity --version: {start:.2f}s; files restored: {files}", flush=True)
    for volsize in volsizes:
        run = work / f"vol{volsize}"
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir()
        config = settings(run / "rescue.toml", source, run / "dest-rescue", run / "cache-rescue")
        config.write_text(config.read_text() + f"volsize = {volsize}\n")
        raw_url = f"file://{run / 'dest-raw'}"
        raw_cache = ["--archive-dir", str(run / "cache-raw")]
        backups = {
            "raw": [duplicity, "full", "-v", "notice", "--volsize", str(volsize), *raw_cache,
                    str(source), raw_url],
            "rescue": [rescue, "--config", str(config), "--log-file", str(run / "log"),
                       "backup", "--full"],
        }  # fmt: skip
        times: dict[str, list[float]] = {k: [] for k in ("raw backup", "rescue backup")}
        times |= {k: [] for k in ("raw one-file", "rescue one-file")}
        for n in range(args.rounds):
            for who in ("raw", "rescue") if n % 2 == 0 else ("rescue", "raw"):
                dest = run / f"dest-{who}"
                shutil.rmtree(dest, ignore_errors=True)
                shutil.rmtree(run / f"cache-{who}", ignore_errors=True)
                seconds, _ = timed(backups[who], env)
                times[f"{who} backup"].append(seconds)
        volumes = len(list((run / "dest-raw").glob("*.difftar.gpg")))
        chain, _ = timed([duplicity, "collection-status", *raw_cache, raw_url], env)
        for n in range(args.rounds):
            for k, rel in enumerate(files):
                out = run / f"out-{n}-{k}"
                restores = {
                    "raw": [duplicity, "restore", "-v", "notice", *raw_cache,
                            f"--path-to-restore={rel}", raw_url, str(out / "raw")],
                    "rescue": [rescue, "--config", str(config), "--log-file", str(run / "log"),
                               "restore", str(source / rel), "--to", str(out / "rescue")],
                }  # fmt: skip
                for who in ("raw", "rescue") if (n + k) % 2 == 0 else ("rescue", "raw"):
                    seconds, _ = timed(restores[who], env)
                    times[f"{who} one-file"].append(seconds)
                for who in ("raw", "rescue"):
                    if (out / who).read_bytes() != (source / rel).read_bytes():
                        raise SystemExit(f"{who} restored {rel} wrong")
        result = {
            "volumes": volumes,
            "collection_status_s": chain,
            **{f"{k}_s": statistics.median(v) for k, v in times.items()},
            "backup_ratio": paired_ratio(times["rescue backup"], times["raw backup"]),
            "one_file_ratio": paired_ratio(times["rescue one-file"], times["raw one-file"]),
        }
        summary[f"volsize_{volsize}"] = result
        print(
            f"volsize {volsize:4} MB: {volumes:3} volumes | full backup raw "
            f"{result['raw backup_s']:6.2f}s rescue {result['rescue backup_s']:6.2f}s "
            f"(x{result['backup_ratio']:.2f}) | one file raw {result['raw one-file_s']:5.2f}s "
            f"rescue {result['rescue one-file_s']:5.2f}s (x{result['one_file_ratio']:.2f}) | "
            f"collection-status {chain:.2f}s",
            flush=True,
        )
        shutil.rmtree(run)
    print(json.dumps(summary))
    if args.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
