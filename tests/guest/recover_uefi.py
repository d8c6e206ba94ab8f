"""Runs INSIDE the QEMU test guest (tests/test_recover_uefi.py starts it): an unattended
`rescue recover` of a UEFI system, which needs what the host kernel lacks (vfat, to mount the
EFI system partition that grub-install writes).

The host shares its work directory at the same path (settings, plan and the file destination
are there) and the project with its virtualenv at the project's path, so the real `rescue`
command runs here exactly as it would on a rescue system. The target disk is vdb, with the
virtio serial the plan names. Prints `RESULT recover PASS` or `RESULT recover FAIL: reason`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def main() -> None:
    # The kernel command line (rescuework=, rescuesrc=) sets these, lower case.
    work = Path(os.environ["rescuework"]) / "recover"  # noqa: SIM112
    rescue = Path(os.environ["rescuesrc"]) / ".venv/bin/rescue"  # noqa: SIM112
    argv = [
        str(rescue),
        "--config", str(work / "rescue.toml"),
        "--log-file", str(work / "rescue.log"),
        "recover",
        "--plan", str(work / "plan.toml"),
        "--work-dir", "/var/lib/rescue/recover",
        "--json",
    ]  # fmt: skip
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    (work / "report.json").write_text(result.stdout)
    (work / "stderr.txt").write_text(result.stderr)
    layout = Path("/var/lib/rescue/recover/layout")
    if layout.is_dir():
        shutil.copytree(layout, work / "layout", dirs_exist_ok=True)
    if result.returncode == 0:
        print("RESULT recover PASS", flush=True)
    else:
        last = (result.stderr.strip().splitlines() or ["no message"])[0]
        print(f"RESULT recover FAIL: exit {result.returncode}: {last}", flush=True)


if __name__ == "__main__":
    main()
