"""Benchmark: backups over S3 (a real Ceph RGW on 127.0.0.1) against file://, and the fleet view.

1. The same server-shaped tree, in alternating order each round: `rescue backup --full` and
   `rescue restore /` with a file:// destination and with an S3 one (a fresh bucket each round),
   the same settings otherwise. It prints the medians and the paired ratios S3 / file://: what
   the object store's protocol costs over a local directory, on this machine.
2. `rescue fleet status` over --hosts hosts in one bucket: each host's records (as its backups
   and drills write them) and --volumes objects standing for its volumes, which the walk must
   never list. It prints the median time of the whole command, and, for scale, one bare
   `duplicity collection-status` of a host times the host count: what a fleet view built on
   duplicity would cost.

    .venv/bin/python bench/s3.py --size-mib 256 --rounds 2 --hosts 100

The RGW keeps its data in memory (memstore) up to 300 MiB of tree, on a sparse file above.
This is not a test: the machine is shared and noisy, so read the ratios.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from backup_restore import BENCH_ENV, VENV_BIN, bench_parser, bench_tree, paired_ratio, timed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from rgw import RgwServer  # noqa: E402
from servers import serving  # noqa: E402


def settings(path: Path, source: Path, destination: str, cache: Path) -> Path:
    path.write_text(
        f"[destination]\n{destination}\n"
        "[encryption]\n"
        'mode = "symmetric"\npassphrase_env = "BENCH_PASSPHRASE"\n'
        "[selection]\n"
        f'root = "{source}"\ninclude = ["{source}"]\n'
        "[duplicity]\n"
        f'archive_dir = "{cache}"\n'
    )
    path.chmod(0o600)
    return path


def s3_lines(rgw: RgwServer, bucket: str, prefix: str, secret_file: Path) -> str:
    return (
        f'method = "s3"\nendpoint_url = "{rgw.endpoint}"\nbucket = "{bucket}"\n'
        f'prefix = "{prefix}"\naccess_key_id = "{rgw.access_key}"\n'
        f'secret_access_key_file = "{secret_file}"'
    )


def transfer(rgw: RgwServer, work: Path, source: Path, rounds: int, secret: Path) -> dict:
    rescue = str(VENV_BIN / "rescue")
    times: dict[str, list[float]] = {k: [] for k in ("file backup", "s3 backup", "file restore",
                                                      "s3 restore")}  # fmt: skip
    for n in range(rounds):
        run = work / f"round{n}"
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir()
        bucket = rgw.bucket("bench")
        configs = {
            "file": settings(run / "file.toml", source,
                             f'method = "file"\npath = "{run / "dest"}"', run / "cache-file"),
            "s3": settings(run / "s3.toml", source, s3_lines(rgw, bucket, "host", secret),
                           run / "cache-s3"),
        }  # fmt: skip
        order = ["file", "s3"] if n % 2 == 0 else ["s3", "file"]
        for kind in order:
            seconds, _ = timed([rescue, "--config", str(configs[kind]), "backup", "--full"],
                               BENCH_ENV)  # fmt: skip
            times[f"{kind} backup"].append(seconds)
            print(f"  round {n}: {kind:4} backup  {seconds:7.1f}s", flush=True)
        for kind in order:
            out = run / f"out-{kind}"
            seconds, _ = timed([rescue, "--config", str(configs[kind]), "restore", "/", "--to",
                                str(out)], BENCH_ENV)  # fmt: skip
            times[f"{kind} restore"].append(seconds)
            print(f"  round {n}: {kind:4} restore {seconds:7.1f}s", flush=True)
            shutil.rmtree(out)
        shutil.rmtree(run)
    result = {k: statistics.median(v) for k, v in times.items()}
    for what in ("backup", "restore"):
        result[f"{what} ratio s3/file"] = paired_ratio(times[f"s3 {what}"], times[f"file {what}"])
    return result


def fleet(rgw: RgwServer, work: Path, hosts: int, volumes: int, secret: Path) -> dict:
    """hosts' records and volumes in one bucket; the fleet view timed against duplicity."""
    bucket = rgw.bucket("fleet")
    client = rgw.client()
    now = int(time.time())

    def host(n: int) -> None:
        prefix = f"dc{n % 4}/host{n:03d}"
        summary = {"format": 1, "hostname": f"host{n:03d}", "machine_id": f"{n:032x}",
                   "chains": 2, "sets": 8, "last_full": now - 86400, "last_incremental": now,
                   "oldest": now - 8 * 86400, "newest": now}  # fmt: skip
        client.put_object(Bucket=bucket, Key=f"{prefix}/rescue-summary.json",
                          Body=json.dumps(summary).encode())  # fmt: skip
        for v in range(volumes):
            client.put_object(Bucket=bucket, Key=f"{prefix}/duplicity-full.x.vol{v}.difftar.gpg",
                              Body=b"x")  # fmt: skip

    began = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(host, range(hosts)))
    print(f"  {hosts} hosts' records and {hosts * volumes} objects written in "
          f"{time.monotonic() - began:.0f}s", flush=True)  # fmt: skip
    config = settings(work / "fleet.toml", work, s3_lines(rgw, bucket, "reader", secret),
                      work / "cache-fleet")  # fmt: skip
    rescue = [str(VENV_BIN / "rescue"), "--config", str(config), "fleet", "status", "--json"]
    runs = []
    for _ in range(3):
        began = time.monotonic()
        proc = subprocess.run(rescue, env=BENCH_ENV, capture_output=True, text=True)
        runs.append(time.monotonic() - began)
        found = json.loads(proc.stdout)
        assert len(found) == hosts, (len(found), proc.stderr)
    env = {**BENCH_ENV, "AWS_ACCESS_KEY_ID": rgw.access_key,
           "AWS_SECRET_ACCESS_KEY": rgw.secret_key}  # fmt: skip
    began = time.monotonic()
    subprocess.run(
        [str(VENV_BIN / "duplicity"), "collection-status", "--s3-endpoint-url", rgw.endpoint,
         "--archive-dir", str(work / "cache-cs"), f"s3:///{bucket}/dc0/host000"],
        env=env, capture_output=True, check=False,
    )  # fmt: skip
    one = time.monotonic() - began
    return {"hosts": hosts, "fleet status s": statistics.median(runs),
            "one collection-status s": one, "collection-status x hosts s": one * hosts}  # fmt: skip


def main() -> None:
    parser = bench_parser(__doc__ or "", rounds=2)
    parser.set_defaults(size_mib=256)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--volumes", type=int, default=40, help="objects per host")
    args = parser.parse_args()
    work, source = bench_tree(args)
    store = "memstore" if args.size_mib <= 300 else "bluestore"
    with serving(RgwServer(work / "rgw", store=store, store_bytes=(args.size_mib * 3 + 1024) << 20)
                 ) as rgw:  # fmt: skip
        secret = work / "s3.secret"
        secret.write_text(rgw.secret_key)
        secret.chmod(0o600)
        print(f"RGW ({store}) at {rgw.endpoint}; {args.size_mib} MiB tree, {args.rounds} rounds")
        result = transfer(rgw, work, source, args.rounds, secret)
        result.update(fleet(rgw, work, args.hosts, args.volumes, secret))
    print()
    for what in ("backup", "restore"):
        print(f"{what:8}: file:// {result[f'file {what}']:6.1f}s   S3 {result[f's3 {what}']:6.1f}s"
              f"   S3/file x{result[f'{what} ratio s3/file']:.2f}")  # fmt: skip
    print(f"fleet status over {args.hosts} hosts: {result['fleet status s']:.2f}s (one "
          f"duplicity collection-status: {result['one collection-status s']:.2f}s, x{args.hosts}"
          f" = {result['collection-status x hosts s']:.0f}s)")  # fmt: skip
    print(json.dumps(result))
    if args.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
