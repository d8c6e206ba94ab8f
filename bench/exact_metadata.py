"""Benchmark: the cost of exact restores (rescue.exact) against duplicity's own work, same tree.

It copies /usr (files up to 1 MiB: about 120k files, 1.6 GB here) into a scratch directory on
an ext4 file system, puts a user xattr on 1% of the files and a POSIX ACL on another 1%, then
measures, in the same run:
  - the capture (the walk that writes the records) and the records' size, against a bare
    `duplicity full` of the tree;
  - the replay (xattrs, ACLs, holes and exact times put back), against a bare
    `duplicity restore` of it; then `rescue.exact.deep` checks the result has no difference.
The target is under 10% of each. Not a test: the machine is noisy, so read the ratios.

    .venv/bin/python bench/exact_metadata.py [--source /usr] [--max-size 1M] [--rounds 1] [--cold]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rescue.backup.duplicity_run import DUPLICITY  # noqa: E402
from rescue.exact.capture import capture  # noqa: E402
from rescue.exact.deep import compare  # noqa: E402
from rescue.exact.records import Writer, read  # noqa: E402
from rescue.exact.replay import replay  # noqa: E402


def acl_value(uid: int) -> bytes:
    """user::rw-,user:UID:r--,group::r--,mask::r--,other::r-- as the kernel's xattr."""
    entries = [(0x01, 6, 0xFFFFFFFF), (0x02, 4, uid), (0x04, 4, 0xFFFFFFFF),
               (0x10, 4, 0xFFFFFFFF), (0x20, 4, 0xFFFFFFFF)]  # fmt: skip
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def sprinkle(tree: Path) -> tuple[int, int]:
    """A user xattr on every 100th file, an ACL on every 100th file after the 50th."""
    files = sorted(p for p in tree.rglob("*") if p.is_file() and not p.is_symlink())
    tagged = acl = 0
    for index, path in enumerate(files):
        if index % 100 == 0:
            os.setxattr(path, "user.bench", f"file {index}".encode())
            tagged += 1
        elif index % 100 == 50:
            os.setxattr(path, "system.posix_acl_access", acl_value(1000 + index % 7))
            acl += 1
    return tagged, acl


def timed(argv: list[str]) -> float:
    start = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="/usr")
    parser.add_argument("--max-size", default="1M", help="rsync --max-size for the copy")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--work", default="/var/tmp", help="an ext4 directory for scratch")
    parser.add_argument(
        "--cold",
        action="store_true",
        help="drop the page, dentry and inode caches before each timed step (as after a reboot)",
    )
    args = parser.parse_args()

    def cold() -> None:
        if args.cold:
            os.sync()
            Path("/proc/sys/vm/drop_caches").write_text("3\n")

    with tempfile.TemporaryDirectory(prefix="rescue-bench-exact-", dir=args.work) as tmp:
        work = Path(tmp)
        tree = work / "tree"
        subprocess.run(
            ["rsync", "-a", f"--max-size={args.max_size}", f"{args.source}/", f"{tree}/"],
            check=True,
        )
        tagged, acls = sprinkle(tree)
        entries = sum(1 for _ in tree.rglob("*"))
        rows: dict[str, list[float]] = {"capture": [], "full": [], "replay": [], "restore": []}
        size = differences = 0
        for _ in range(args.rounds):
            sidecar = work / "metadata.jsonl.gz"
            cold()
            start = time.monotonic()
            writer = Writer(sidecar, {"root": str(tree)})
            found = capture(tree, [str(tree)], [], writer)
            writer.close()
            rows["capture"].append(time.monotonic() - start)
            size = sidecar.stat().st_size

            dest, cache, out = work / "dest", work / "cache", work / "out"
            for path in (dest, cache, out):
                shutil.rmtree(path, ignore_errors=True)
            common = ["--no-encryption", "--archive-dir", str(cache), "--name", "bench"]
            rows["full"].append(timed([DUPLICITY, "full", *common, str(tree), f"file://{dest}"]))
            rows["restore"].append(
                timed([DUPLICITY, "restore", *common, f"file://{dest}", str(out)])
            )
            start = time.monotonic()
            done = replay(read(sidecar)[1], "", out)
            rows["replay"].append(time.monotonic() - start)
            differences = len(compare(read(sidecar)[1], "", out).differences)
        med = {k: statistics.median(v) for k, v in rows.items()}
        result = {
            "entries": entries,
            "xattr_files": tagged,
            "acl_files": acls,
            "records": found.records,
            "records_bytes": size,
            "capture_s": round(med["capture"], 2),
            "duplicity_full_s": round(med["full"], 2),
            "capture_ratio": round(med["capture"] / med["full"], 4),
            "replay_s": round(med["replay"], 2),
            "duplicity_restore_s": round(med["restore"], 2),
            "replay_ratio": round(med["replay"] / med["restore"], 4),
            "replayed": done.applied,
            "replay_failures": {k: f.count for k, f in done.failed.items()},
            "deep_differences_after_replay": differences,
            "rounds": args.rounds,
            "cold_caches": args.cold,
        }
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
