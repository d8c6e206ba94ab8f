"""Benchmark: `rescue config-backup` against bare tar on the same files, in the same run.

It makes a fake host root (tests/confighost.py) and, to give it weight, a /etc of this machine
copied in, then in alternating rounds times `rescue config-backup create` against
`tar -czf` of exactly the files the archive holds, and `rescue config-backup restore --yes`
(onto a root where every file differs, so all are rewritten) against `tar -xzf` of the same.
It prints the median of each and the ratio. Not a test: the machine is noisy, read the ratios.

    .venv/bin/python bench/config_backup.py --rounds 5 [--bulk /usr/share/doc]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from confighost import make_host  # noqa: E402

RESCUE = [sys.executable, "-m", "rescue"]


def seconds(argv: list[str], cwd: Path | None = None) -> float:
    start = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True, cwd=cwd)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--bulk",
        default="/usr/share/doc",
        help="a directory copied in as one more module, for weight ('' for none)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rescue-bench-cb-") as tmp:
        work = Path(tmp)
        host = make_host(work / "host")
        for sub in ("ssh", "systemd", "apt", "cron.d", "network"):
            if (Path("/etc") / sub).is_dir():
                subprocess.run(["cp", "-a", f"/etc/{sub}/.", str(host / "etc" / sub)], check=True)
        if args.bulk:  # a module with thousands of files: the per-file cost, not the start-up
            subprocess.run(["cp", "-a", args.bulk, str(host / "etc/bulk")], check=True)
        modules = work / "modules.d"
        modules.mkdir()
        (modules / "bulk.toml").write_text('paths = ["/etc/bulk"]\n')
        config = work / "rescue.toml"
        config.write_text(
            f'[destination]\nmethod = "file"\npath = "{work}/dest"\n'
            f'[config_backup]\ndirectory = "{work}/store"\nmodules_dir = "{modules}"\n'
        )
        config.chmod(0o600)
        base = [*RESCUE, "--config", str(config), "--log-file", str(work / "log")]
        times: dict[str, list[float]] = {
            k: [] for k in ("rescue create", "tar -czf", "rescue restore", "tar -xzf")
        }
        files = 0
        for number in range(args.rounds):
            name = f"round{number}"
            created = seconds(
                [*base, "config-backup", "create", "--root", str(host), "--name", name, "--json"]
            )
            out = subprocess.run(
                [*base, "config-backup", "info", name, "--json"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            manifest = json.loads(out)
            paths = [
                e["path"].lstrip("/")
                for m in manifest["modules"]
                for e in m["entries"]
                if e["kind"] != "dir"
            ]
            files = len(paths)
            listing = work / "paths.txt"
            listing.write_text("\n".join(paths) + "\n")
            tarred = seconds(
                ["tar", "-czf", str(work / "plain.tar.gz"), "--no-recursion", "-T", str(listing)],
                cwd=host,
            )
            target = work / "target"
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(host, target, symlinks=True)
            for path in paths:  # every file differs, so every file is written
                p = target / path
                if p.is_file() and not p.is_symlink():
                    p.write_bytes(b"changed\n")
            restored = seconds(
                [
                    *base,
                    "config-backup",
                    "restore",
                    name,
                    "--root",
                    str(target),
                    "--yes",
                    "--no-imports",
                ]
            )
            untar_to = work / "untar"
            shutil.rmtree(untar_to, ignore_errors=True)
            untar_to.mkdir()
            untarred = seconds(["tar", "-xzf", str(work / "plain.tar.gz"), "-C", str(untar_to)])
            for key, value in zip(times, (created, tarred, restored, untarred), strict=True):
                times[key].append(value)
        median = {k: statistics.median(v) for k, v in times.items()}
        startup = statistics.median(seconds([*RESCUE, "--version"]) for _ in range(3))
        print(f"{files} files and links, {args.rounds} rounds (median seconds)")
        print(f"  rescue start-up {startup:6.3f}  (python and imports, in every command)")
        for key, value in median.items():
            print(f"  {key:<15} {value:6.3f}")
        print(f"  create / tar -czf   {median['rescue create'] / median['tar -czf']:6.1f}x")
        print(f"  restore / tar -xzf  {median['rescue restore'] / median['tar -xzf']:6.1f}x")


if __name__ == "__main__":
    main()
