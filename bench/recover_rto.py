"""Benchmark: the time to recover (RTO) of a bare-metal recovery, against bare duplicity restore.

It builds the end-to-end test's source once (testsupport/bootdisk.py's bootable Debian on a loop
disk, populated like tests/scenario.py, `rescue backup --full` to a file destination with a
symmetric passphrase), then in each round, on fresh blank loop disks of the same size:

- `rescue recover --plan plan.toml --json` with a fresh work dir and an empty duplicity cache
  (as a new machine would have): the wall time and each step's seconds from the JSON report;
- right next to it, bare `duplicity restore` of the same set into an empty directory on a
  freshly made ext4 loop disk, passphrase in the environment, its cache warmed untimed first.

The order alternates per round to spread the machine's noise. It prints the median of each
step, the median RTO, the median bare restore, and restore_full / duplicity restore as a ratio
of medians and as the median of the per-round paired ratios (as bench/backup_restore.py does).
rescue's restore_full runs with the metadata that choose_backup and load_manifest already
fetched, so the bare restore's cache is warmed (untimed) too: the two timings cover the same
work.

    .venv/bin/python bench/recover_rto.py --rounds 3 [--json] [--payload-mib 700]

Needs root (loop disks, partitions, mounts, mkfs, chroot). This is not a test: read the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "testsupport"), str(ROOT / "tests")]

from bootdisk import source_image  # noqa: E402
from clirun import rescue  # noqa: E402
from loopdisks import attached_image, loop_disk, missing_tools, sh  # noqa: E402
from scenario import (  # noqa: E402
    PASSPHRASE,
    TOOLS,
    populate,
    recover_argv,
    scenario_settings,
    write_plan,
)

from rescue.backup.sampletree import make_bench_tree  # noqa: E402

DISK_SIZE = "1536M"  # the source disk's size: recovery onto a disk of the same size
DUPLICITY = str(Path(sys.executable).parent / "duplicity")
RETRIES = "3"  # rescue's default [duplicity] retries, so both retry alike
IDENTITY = (Path("/etc/passwd"), Path("/etc/group"))
TIMEOUT = 3600


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below path, deepest first, so they can be unmounted in that order."""
    prefix = str(path).rstrip("/")
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[1])  # \040
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def unmount_under(path: Path) -> None:
    """Unmount everything below path; lazily if a plain umount fails, so loop disks can go."""
    for point in mounts_under(path):
        if subprocess.run(["umount", point], capture_output=True).returncode:
            subprocess.run(["umount", "-l", point], capture_output=True)


def build_source(work: Path, payload_mib: int) -> tuple[Path, Path]:
    """The backed-up source, as the e2e test makes it but with one full backup only, and
    payload_mib of server-shaped data in srv/payload (rescue.backup.sampletree).

    Returns the backup destination and the source root path that the settings name.
    """
    image = work / "source.img"
    sh("cp", "--sparse=always", str(source_image()), str(image))
    root, dest = work / "src", work / "dest-file"
    root.mkdir()
    (work / "backup").mkdir()
    settings = scenario_settings(
        work / "backup/rescue.toml", {"method": "file", "path": str(dest)}, root, work / "cache"
    )
    with attached_image(image) as (_, parts):
        try:
            sh("mount", parts[3], str(root))
            sh("mount", parts[1], str(root / "boot"))
            populate(root)
            if payload_mib:
                make_bench_tree(root / "srv/payload", total_mib=payload_mib)
            start = time.monotonic()
            run = rescue(settings, "backup", "--full", timeout=TIMEOUT)
            if run.code:
                raise SystemExit(f"rescue backup --full failed ({run.code}): {run.err[-2000:]}")
            print(f"source backed up in {time.monotonic() - start:.1f}s", flush=True)
        finally:
            unmount_under(root)
    image.unlink()  # the backup is the source from here on
    return dest, root


def run_rescue(folder: Path, dest: Path, root: Path) -> tuple[float, dict[str, Any]]:
    """One `rescue recover --plan` onto a blank disk: wall seconds and the JSON report."""
    folder.mkdir()
    settings = scenario_settings(
        folder / "rescue.toml", {"method": "file", "path": str(dest)}, root, folder / "cache"
    )
    target = folder / "target.img"
    with loop_disk(target, DISK_SIZE):
        try:
            plan = write_plan(folder, settings, [target])
            argv = recover_argv(settings, folder, "--plan", str(plan), "--json")
            start = time.monotonic()
            done = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT
            )
            seconds = time.monotonic() - start
        finally:
            unmount_under(folder)
    if done.returncode:
        raise SystemExit(f"rescue recover failed ({done.returncode}): {done.stderr[-3000:]}")
    report = json.loads(done.stdout)
    if report["outcome"] != "success":
        raise SystemExit(f"rescue recover ended {report['outcome']}: {done.stdout[-3000:]}")
    return seconds, report


def entries(tree: Path) -> int:
    """Entries below tree, counted as rescue's report counts restored files."""
    return sum(len(dirs) + len(files) for _, dirs, files in os.walk(tree))


def run_duplicity(folder: Path, dest: Path) -> tuple[float, int]:
    """Bare `duplicity restore` into an empty directory on a fresh ext4 loop disk, with the
    log-fd rescue also asks for: wall seconds and the entries restored.

    Its cache is warmed first, untimed (a collection-status), because rescue's restore_full
    also runs with the metadata that the earlier steps fetched: the timed parts match."""
    folder.mkdir()
    point, cache = folder / "mnt", folder / "cache"
    point.mkdir()
    cache.mkdir(mode=0o700)
    env = {**os.environ, "PASSPHRASE": PASSPHRASE}
    with loop_disk(folder / "raw.img", DISK_SIZE) as device:
        try:
            sh("mkfs.ext4", "-q", "-F", device)
            sh("mount", device, str(point))
            into = point / "restored"  # absent, like rescue's staging .../restored
            warm = [DUPLICITY, "collection-status", "--archive-dir", str(cache), f"file://{dest}"]
            subprocess.run(warm, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=True)
            with (folder / "logfd").open("w") as logfd, (folder / "output").open("w") as out:
                argv = [
                    DUPLICITY, "restore",
                    f"--log-fd={logfd.fileno()}", "-v", "notice",
                    "--archive-dir", str(cache), "--num-retries", RETRIES,
                    f"file://{dest}", str(into),
                ]  # fmt: skip
                start = time.monotonic()
                done = subprocess.run(
                    argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                    pass_fds=(logfd.fileno(),), timeout=TIMEOUT,
                )  # fmt: skip
                seconds = time.monotonic() - start
            if done.returncode:
                tail = (folder / "output").read_text()[-2000:]
                raise SystemExit(f"duplicity restore failed ({done.returncode}): {tail}")
            count = entries(into)
        finally:
            unmount_under(folder)
    return seconds, count


def ratio(ours: list[float], raw: list[float]) -> tuple[float, float]:
    """Ratio of medians, and median of per-round ratios (each pair shared its moment's noise)."""
    paired = statistics.median(o / r for o, r in zip(ours, raw, strict=True))
    return statistics.median(ours) / statistics.median(raw), paired


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds, in the report's step order."""
    order = [s["id"] for s in rounds[0]["report"]["steps"]]
    steps = {
        sid: statistics.median(
            next(s["seconds"] or 0.0 for s in r["report"]["steps"] if s["id"] == sid)
            for r in rounds
        )
        for sid in order
    }
    walls = [r["rto_s"] for r in rounds]
    full = [
        next(s["seconds"] for s in r["report"]["steps"] if s["id"] == "restore_full")
        for r in rounds
    ]
    raw = [r["duplicity_s"] for r in rounds]
    of_medians, paired = ratio(full, raw)
    rto = statistics.median(walls)
    totals = rounds[0]["report"]["totals"]
    return {
        "rounds": len(rounds),
        "disk": DISK_SIZE,
        "restored_files": totals["files"],
        "restored_bytes": totals["bytes"],
        "steps_median_s": steps,
        "rto_median_s": rto,
        "steps_sum_median_s": statistics.median(r["report"]["totals"]["seconds"] for r in rounds),
        "restore_full_median_s": statistics.median(full),
        "duplicity_restore_median_s": statistics.median(raw),
        "ratio_of_medians": of_medians,
        "median_paired_ratio": paired,
        "share_of_rto": {k: steps[k] / rto for k in ("restore_full", "bootloader")},
        "per_round": [
            {"rto_s": r["rto_s"], "restore_full_s": f, "duplicity_s": d}
            for r, f, d in zip(rounds, full, raw, strict=True)
        ],
    }


def show(summary: dict[str, Any]) -> None:
    """The human-readable table."""
    mib = summary["restored_bytes"] / 2**20
    print(f"\n{summary['rounds']} rounds on {summary['disk']} disks, medians:")
    print(f"  restored: {summary['restored_files']} entries, {mib:.1f} MiB")
    for number, (sid, seconds) in enumerate(summary["steps_median_s"].items(), start=1):
        print(f"  [{number:>2}] {sid:18} {seconds:8.2f}s")
    print(
        f"  RTO (wall, rescue recover) {summary['rto_median_s']:8.2f}s"
        f"   (sum of steps {summary['steps_sum_median_s']:.2f}s)"
    )
    print(f"  duplicity restore          {summary['duplicity_restore_median_s']:8.2f}s")
    print(
        "  restore_full / duplicity restore: "
        f"ratio of medians {summary['ratio_of_medians']:.3f}  "
        f"median paired ratio {summary['median_paired_ratio']:.3f}"
    )
    share = summary["share_of_rto"]
    print(
        f"  share of the RTO: restore_full {share['restore_full']:.1%}"
        f"  bootloader {share['bootloader']:.1%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="also print a JSON summary")
    parser.add_argument(
        "--payload-mib", type=int, default=0, help="server-shaped data added to the source"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("recover_rto.py: must run as root (loop disks, partitions, mounts)")
    missing = missing_tools(*(t for t in TOOLS if t != "qemu-system-x86_64"), "losetup")
    if missing:
        raise SystemExit(f"recover_rto.py: missing tools: {', '.join(missing)}")

    # Recovery swaps merged passwd/group onto this machine and puts them back; a safety net.
    saved = {path: path.read_bytes() for path in IDENTITY}
    work = Path(tempfile.mkdtemp(prefix="rescue-rto-", dir="/var/tmp"))
    try:
        dest, root = build_source(work, args.payload_mib)
        rounds: list[dict[str, Any]] = []
        for n in range(args.rounds):
            run = work / f"round{n + 1}"
            run.mkdir()
            result: dict[str, Any] = {}

            def ours(run: Path = run, result: dict[str, Any] = result) -> None:
                result["rto_s"], result["report"] = run_rescue(run / "rescue", dest, root)

            def bare(run: Path = run, result: dict[str, Any] = result) -> None:
                result["duplicity_s"], result["raw_entries"] = run_duplicity(run / "raw", dest)

            for measure in (ours, bare) if n % 2 == 0 else (bare, ours):  # alternate the order
                measure()
            files, raw_files = result["report"]["totals"]["files"], result["raw_entries"]
            full = next(s for s in result["report"]["steps"] if s["id"] == "restore_full")
            if raw_files != files:
                raise SystemExit(
                    f"duplicity restored {raw_files} entries, rescue {files}: {full['done']}"
                )
            print(
                f"round {n + 1} ({'rescue' if n % 2 == 0 else 'duplicity'} first): "
                f"RTO {result['rto_s']:7.2f}s  restore_full {full['seconds']:7.2f}s  "
                f"duplicity restore {result['duplicity_s']:7.2f}s",
                flush=True,
            )
            rounds.append(result)
            shutil.rmtree(run)  # the disk images: ~1 GB a round
        summary = summarize(rounds)
        show(summary)
        if args.json:
            print(json.dumps(summary))
    finally:
        unmount_under(work)
        for path, data in saved.items():
            if path.read_bytes() != data:
                path.write_bytes(data)
                print(f"recover_rto.py: put {path} back", file=sys.stderr)
        if mounts_under(work):
            print(f"recover_rto.py: still mounted under {work}; left in place", file=sys.stderr)
        else:
            with contextlib.suppress(OSError):
                shutil.rmtree(work)


if __name__ == "__main__":
    main()
