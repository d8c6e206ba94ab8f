"""Benchmark: the rescue ISO and the VM scenarios (vm-tests/), the figures issue 5 asks for.

- The ISO build: cold (image/build into an empty temporary cache: a full `lb build` plus the
  remaster), then cached (the same command again: nothing to do), then a code change alone (the
  layer rebuilt on the cached base: the fast remaster), and the ISO's size. The remaster is set
  against the cold build as a ratio, measured in the same run.
- Each scenario, run by pytest with its figures printed: the source VM's full and incremental
  backups, the ISO's boot to its first prompt (the rescue console's banner), the recovery's time
  by step (from the report the recovery keeps in the restored system), the ISO's boot to the end
  of the recovery, and the ISO's boot to the recovered system's marker. The stacked_* scenarios
  (LVM, LUKS, MD RAID1, btrfs) print each phase of their one guest boot (backup, wipe,
  recovery), the recovery's steps and the recovered disks' boot.

    .venv/bin/python bench/vm_scenarios.py [--cold] [--scenarios bios_sftp_unattended,guided]

Needs root, QEMU, live-build (bash scripts/setup --with-test-tools). This is not a test.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "image" / "build"
PYTHON = ROOT / ".venv" / "bin" / "python"
SCENARIOS = ("bios_sftp_unattended", "bios_s3_unattended", "uefi_file_larger_disk", "guided")
# The installer's stacked layouts (issue 22): backup, wipe and recovery in a guest, then a boot.
SCENARIOS += ("stacked_lvm", "stacked_luks_lvm", "stacked_raid1", "stacked_btrfs")


def timed_build(cache: Path | None) -> tuple[float, Path]:
    """Seconds of one image/build run, and the ISO it made."""
    argv = [str(PYTHON), str(BUILD), "--print-path"]
    if cache is not None:
        argv += ["--cache", str(cache)]
    started = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    return time.monotonic() - started, Path(out.stdout.strip().splitlines()[-1])


def iso_figures(cold: bool) -> list[str]:
    lines = []
    if cold:
        with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="rescue-iso-bench-") as tmp:
            cache = Path(tmp)
            cold_seconds, iso = timed_build(cache)
            cached_seconds, _ = timed_build(cache)
            for layer in cache.glob("layer-*.squashfs"):
                layer.unlink()  # as after a code change: the base stays, the layer is rebuilt
            for rebuilt in cache.glob("rescue-*.iso"):
                rebuilt.unlink()
            remaster_seconds, _ = timed_build(cache)
            size = iso.stat().st_size if iso.exists() else 0
        lines += [
            f"ISO build, cold (lb build + remaster): {cold_seconds:.0f} s",
            f"ISO build, code change only (remaster): {remaster_seconds:.1f} s "
            f"(ratio to cold: {remaster_seconds / cold_seconds:.3f})",
            f"ISO build, cached: {cached_seconds:.1f} s",
        ]
    else:
        cached_seconds, iso = timed_build(None)
        size = iso.stat().st_size
        lines.append(f"ISO build, cached: {cached_seconds:.1f} s (--cold for the cold build)")
    lines.append(f"ISO size: {size / 2**20:.0f} MiB")
    return lines


def scenario_figures(name: str) -> list[str]:
    """Run one scenario; its printed figures (the block after its name)."""
    test = ROOT / "vm-tests" / f"test_{name}.py"
    started = time.monotonic()
    out = subprocess.run(
        [str(PYTHON), "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", str(test)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    lines = out.stdout.splitlines()
    if f"{name}:" not in lines:
        return [f"{name}: FAILED (exit {out.returncode}); last lines:", *lines[-15:]]
    block = lines[lines.index(f"{name}:") :]
    figures = [line for line in block if line.startswith((name, " ", "ISO", "backup", "recov"))]
    return [*figures, f"  whole scenario (pytest): {time.monotonic() - started:.0f} s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="also time a cold ISO build")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    args = parser.parse_args()
    if shutil.which("qemu-system-x86_64") is None:
        raise SystemExit("needs qemu-system-x86 (bash scripts/setup --with-test-tools)")
    for line in iso_figures(args.cold):
        print(line, flush=True)
    for name in filter(None, args.scenarios.split(",")):
        if name not in SCENARIOS:
            raise SystemExit(f"unknown scenario {name}; known: {', '.join(SCENARIOS)}")
        for line in scenario_figures(name):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
