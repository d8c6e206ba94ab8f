"""Runs INSIDE the QEMU test guest (vm-tests/stacked_scenario.py starts it): the whole life of a
stacked layout's disaster, in one boot, because only a guest kernel has device-mapper and md.

1. open the source's stack (MD, LUKS, LVM) and mount its system at /mnt/src as its fstab says;
2. `rescue backup --full` of it (settings in the work directory, a file destination there);
3. list the source path by path (testsupport/treelist.py), then unmount and close the stack;
4. wipe the source disks (every signature and partition table): the machine is lost;
5. `rescue recover --plan` onto the blank target disks (their virtio serials in the plan);
6. open the recovered stack, mount it read-only as its fstab says and list it as well.

The source disks are overlays of the cached images (snapshot=on), so the wipe never reaches the
cache. The host compares the listings, then boots the recovered disks. Each phase prints
`RESULT phase PASS seconds` or `RESULT phase FAIL: reason`; everything else goes to the work
directory (listings, the runs' output, report.json).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

WORK = Path(os.environ["rescuework"])  # noqa: SIM112  (the kernel command line sets it)
PROJECT = Path(os.environ["rescuesrc"])  # noqa: SIM112
RESCUE = PROJECT / ".venv/bin/rescue"
sys.path.insert(0, str(PROJECT / "testsupport"))
from treelist import listing  # noqa: E402  (the project is only known at run time)

SOURCE, CHECK = Path("/mnt/src"), Path("/mnt/check")


def sh(command: str, stdin: str | None = None, check: bool = True) -> str:
    print(f"+ {command}", flush=True)
    result = subprocess.run(command, shell=True, input=stdin, capture_output=True, text=True)
    if check and result.returncode:
        raise RuntimeError(f"{command}: exit {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def disk_by_serial(serial: str) -> str:
    for block in sorted(Path("/sys/block").glob("vd*")):
        if (block / "serial").exists() and (block / "serial").read_text().strip() == serial:
            return f"/dev/{block.name}"
    raise RuntimeError(f"no disk with serial {serial}")


def open_stack(task: dict[str, object]) -> None:
    """Assemble the arrays, open the LUKS containers and activate the VGs, as an initramfs
    would (whatever of them the disks hold)."""
    sh("mdadm --assemble --scan --run", check=False)
    # The recovery leaves its stack open (it unmounts only): an open mapping is used as it is.
    if task["luks_name"] and not Path(f"/dev/mapper/{task['luks_name']}").exists():
        for device in sh("blkid -t TYPE=crypto_LUKS -o device", check=False).split():
            sh(
                f"cryptsetup open --key-file - {device} {task['luks_name']}",
                str(task["passphrase"]),
            )
    sh("vgscan --mknodes", check=False)
    sh("vgchange -ay", check=False)


def close_stack(task: dict[str, object]) -> None:
    sh("vgchange -an", check=False)
    if task["luks_name"]:
        sh(f"cryptsetup close {task['luks_name']}", check=False)
    sh("mdadm --stop --scan", check=False)


def mount_system(task: dict[str, object], point: Path, *, writable: bool) -> None:
    """The root as the task names it, then what its own fstab mounts (swap left out)."""
    ro = "" if writable else "ro,"
    point.mkdir(parents=True, exist_ok=True)
    sh(f"mount -o {ro}{task['root_options'] or 'defaults'} {task['root_spec']} {point}")
    for line in (point / "etc/fstab").read_text().splitlines():
        fields = line.split()
        if len(fields) < 4 or line.startswith("#") or fields[1] in ("/", "none", "swap"):
            continue
        spec, mountpoint, kind, options = fields[:4]
        sh(f"mount -t {kind} -o {ro}{options} {spec} {point / mountpoint.lstrip('/')}")


def facts(point: Path) -> dict[str, object]:
    """What the listing cannot show: LV sizes and VG free space, the btrfs subvolumes and the
    default one, the arrays' members and state."""
    found: dict[str, object] = {}
    report = sh(
        "lvs --reportformat json --units b --nosuffix -o lv_name,vg_name,lv_size", check=False
    )
    if report.strip():
        lvs = json.loads(report)["report"][0]["lv"]
        found["lvs"] = {f"{lv['vg_name']}/{lv['lv_name']}": int(lv["lv_size"]) for lv in lvs}
    report = sh("vgs --reportformat json --units b --nosuffix -o vg_name,vg_free", check=False)
    if report.strip():
        vgs = json.loads(report)["report"][0]["vg"]
        found["vg_free"] = {vg["vg_name"]: int(vg["vg_free"]) for vg in vgs}
    if sh(f"findmnt -n -o FSTYPE {point}", check=False).strip() == "btrfs":
        listed = sh(f"btrfs subvolume list -a {point}").splitlines()
        found["subvolumes"] = sorted(line.split(" path ", 1)[1] for line in listed)
        found["default_subvolume"] = sh(f"btrfs subvolume get-default {point}").strip()
    crypttab = point / "etc/crypttab"
    if crypttab.exists():
        found["crypttab"] = crypttab.read_text()
        luks = sh("blkid -t TYPE=crypto_LUKS -o value -s UUID", check=False)
        found["luks_uuids"] = sorted(luks.split())
    details = sh("mdadm --detail --scan --verbose", check=False)
    if details.strip():
        found["md"] = details
    sizes = sh(f"findmnt -b -n -r -o TARGET,SIZE -R {point}").split("\n")
    relative = {".": "/"}
    found["fs_bytes"] = {
        relative.get(rel, "/" + rel): int(size)
        for target, size in (line.split() for line in sizes if line.strip())
        if (rel := os.path.relpath(target, point))
    }
    found["lsblk"] = sh("lsblk -o NAME,TYPE,SIZE,FSTYPE,LABEL,MOUNTPOINT", check=False)
    return found


def wipe(disks: list[str]) -> None:
    """Every signature on every partition and disk, then the first MiBs: nothing is left to
    assemble or mount."""
    for disk in disks:
        name = Path(disk).name
        for part in sorted(Path(f"/sys/block/{name}").glob(f"{name}*")):
            sh(f"wipefs -a -f /dev/{part.name}")
        sh(f"wipefs -a -f {disk}")
        sh(f"dd if=/dev/zero of={disk} bs=1M count=8 conv=fsync status=none")
        sh(f"blockdev --rereadpt {disk}", check=False)
        left = sh(f"blkid -p {disk}", check=False).strip()
        if left:
            raise RuntimeError(f"{disk} still shows {left}")


def rescue(config: str, log: Path, *args: str, env: dict[str, str] | None = None) -> None:
    argv = [str(RESCUE), "--config", config, "--log-file", str(log), *args]
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env)
    (log.parent / f"{args[0]}.stdout").write_text(result.stdout)
    (log.parent / f"{args[0]}.stderr").write_text(result.stderr)
    if result.returncode:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(f"rescue {args[0]}: exit {result.returncode}: {last}")


def write_lists(side: str, point: Path, task: dict[str, object]) -> None:
    """side-list.json (every path) and side-facts.json (the stack) in the work directory."""
    tree = listing(point, task["skip_below"])  # type: ignore[arg-type]
    (WORK / f"{side}-list.json").write_text(json.dumps(tree))
    (WORK / f"{side}-facts.json").write_text(json.dumps(facts(point), indent=1))


def recover(task: dict[str, object], env: dict[str, str]) -> None:
    """The unattended recovery; its layout script and output are kept for the host."""
    work_dir = Path("/var/lib/rescue/recover")
    argv = ["recover", "--plan", str(task["plan"]), "--work-dir", str(work_dir), "--json"]
    try:
        rescue(str(task["recover_config"]), WORK / "recover/rescue.log", *argv, env=env)
    finally:
        if (work_dir / "layout").is_dir():
            shutil.copytree(work_dir / "layout", WORK / "recover/layout", dirs_exist_ok=True)


def main() -> None:
    task = json.loads((WORK / "cycle.json").read_text())
    sources = [disk_by_serial(s) for s in task["source_serials"]]
    env = dict(os.environ, **task.get("recover_env", {}))
    phases = [
        ("open-source", lambda: (open_stack(task), mount_system(task, SOURCE, writable=True))),
        ("backup", lambda: rescue(
            task["backup_config"], WORK / "backup/rescue.log", "backup", "--full")),
        ("list-source", lambda: write_lists("source", SOURCE, task)),
        ("close-source", lambda: (sh(f"umount -R {SOURCE}"), close_stack(task))),
        ("wipe", lambda: wipe(sources)),
        ("recover", lambda: recover(task, env)),
        ("open-target", lambda: (open_stack(task), mount_system(task, CHECK, writable=False))),
        ("list-target", lambda: write_lists("target", CHECK, task)),
        ("close-target", lambda: (sh(f"umount -R {CHECK}"), close_stack(task))),
    ]  # fmt: skip
    for name, phase in phases:
        started = time.monotonic()
        try:
            phase()
        except Exception as exc:  # one line for the host, the trace on the console
            traceback.print_exc()
            print(f"RESULT {name} FAIL: {exc}".splitlines()[0], flush=True)
            return
        print(f"RESULT {name} PASS {time.monotonic() - started:.1f}", flush=True)
    sh("sync")


if __name__ == "__main__":
    main()
