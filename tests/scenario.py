"""The recovery scenario the end-to-end tests and the RTO benchmark share: a populated source
system (owners with and without names, links, a FIFO, excluded content), its settings, the plan
of an unattended recovery, and the `rescue recover` command line."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

from bootdisk import MARKER_FILE
from clirun import RESCUE, write_settings
from exacttree import make_tree

from rescue.recovery.manifest import hardlink_groups

TOOLS = {
    "sfdisk": "fdisk",
    "partx": "util-linux",
    "wipefs": "util-linux",
    "mkfs.ext4": "e2fsprogs",
    "mkswap": "util-linux",
    "qemu-system-x86_64": "qemu-system-x86",
    "debootstrap": "debootstrap",
    "chroot": "coreutils",
    "setcap": "libcap2-bin",  # add_exact_tree and its checks
    "setfacl": "acl",
    "getfattr": "attr",
}
PASSPHRASE = "correct horse battery staple 42"
CHANGED_MARKER = "changed before the incremental backup: recovery must bring this back\n"
# The source's "games" has other ids than this machine's (5:60): only the identity step makes
# duplicity give its files the source's numbers.
GAMES_ID = 1500
EXCLUDE_GLOB = "*.avi"
EXACT_REL = "srv/exact"  # the exacttree tree inside the source system
SOURCE_EXCLUDES = ("proc", "sys", "dev", "run", "tmp", "mnt", "media")


# What recovery itself writes, named with the reason; nothing else may differ.
def scenario_settings(
    path: Path,
    destination: dict[str, object],
    root: Path,
    cache: Path,
    *,
    extra_excludes: tuple[str, ...] = (),
    **duplicity: object,
) -> Path:
    """Settings backing up root (the scenario's excludes and extra_excludes, relative to root),
    symmetric; duplicity adds keys."""
    secret = path.parent / "passphrase"
    secret.write_text(PASSPHRASE)
    secret.chmod(0o600)
    return write_settings(
        path,
        {
            "destination": destination,
            "encryption": {"mode": "symmetric", "passphrase_file": str(secret)},
            "selection": {
                "root": str(root),
                "exclude": [str(root / d) for d in (*SOURCE_EXCLUDES, *extra_excludes)],
                "exclude_globs": [EXCLUDE_GLOB],
            },
            "duplicity": {"archive_dir": str(cache), **duplicity},
        },
    )


def populate(root: Path) -> None:
    """Owners with and without names, modes, links, a FIFO, data, and excluded content."""
    with (root / "etc/passwd").open("a") as f:
        f.write("alice:x:1001:1001:Alice:/home/alice:/bin/sh\n")
    with (root / "etc/group").open("a") as f:
        f.write("alice:x:1001:\nshared:x:1002:alice\n")
    for rel in ("etc/passwd", "etc/group"):
        text = (root / rel).read_text()
        text = re.sub(r"^games:x:5:60:", f"games:x:{GAMES_ID}:{GAMES_ID}:", text, flags=re.M)
        text = re.sub(r"^games:x:60:", f"games:x:{GAMES_ID}:", text, flags=re.M)
        (root / rel).write_text(text)
    home = root / "home/alice"
    home.mkdir(parents=True)
    (home / "notes.txt").write_text("alice's notes\n")
    os.chmod(home / "notes.txt", 0o600)
    for path in (home, home / "notes.txt"):
        os.chown(path, 1001, 1001)
    data = root / "srv/data"
    (data / "sub").mkdir(parents=True)
    (data / "blob.bin").write_bytes(hashlib.sha256(b"seed").digest() * 100_000)  # 3.2 MB
    os.symlink("blob.bin", data / "blob.link")
    (data / "h1").write_text("one inode, three names\n")
    os.link(data / "h1", data / "h2")
    os.link(data / "h1", data / "sub/h3")
    os.mkfifo(data / "fifo")
    (data / "nameless-owner").write_text("uid 4242 has no name\n")
    os.chown(data / "nameless-owner", 4242, 4242)
    (data / "games-save").write_text("owned by the source's games user\n")
    os.chown(data / "games-save", GAMES_ID, GAMES_ID)
    (data / "delete-me").write_text("gone in the incremental\n")
    (data / "movie.avi").write_bytes(b"\0" * 1000)  # excluded by glob
    shared = root / "srv/shared"
    shared.mkdir()
    os.chown(shared, 0, 1002)
    os.chmod(shared, 0o2775)
    (root / "usr/local/bin").mkdir(parents=True, exist_ok=True)
    (root / "usr/local/bin/suid-tool").write_text("#!/bin/sh\n")
    os.chmod(root / "usr/local/bin/suid-tool", 0o4755)
    (root / "tmp/scratch.txt").write_text("excluded: not in the backup\n")


def assert_links_and_owners(source: Path, target: Path) -> None:
    """The recovered system at target keeps populate()'s hard links (the same groups as the
    source at source, each one inode) and its numeric owners that only the identity step gets
    right (games with the source's id, a uid without a name)."""
    groups = hardlink_groups(source)
    assert ["srv/data/h1", "srv/data/h2", "srv/data/sub/h3"] in groups
    for group in groups:
        inodes = {(target / p).lstat().st_ino for p in group}
        assert len(inodes) == 1, f"{group} are {len(inodes)} files"
    assert (target / "srv/data/games-save").stat().st_uid == GAMES_ID
    assert (target / "srv/data/nameless-owner").stat().st_uid == 4242


def add_exact_tree(root: Path) -> None:
    """What duplicity drops (xattrs, ACLs, a capability, sub-second and symlink mtimes, links)
    and a 1 GiB sparse file: more than the root file system's free space (about 800 MiB), so
    a restore onto a disk of the source's size fits only if the holes are kept while duplicity
    writes. Host-side recoveries only: under emulation 1 GiB of writes costs minutes."""
    (root / EXACT_REL).mkdir(parents=True)
    make_tree(root / EXACT_REL)


def change(root: Path) -> None:
    """What happens between the full and the incremental backup."""
    (root / MARKER_FILE.lstrip("/")).write_text(CHANGED_MARKER)
    (root / "srv/data/delete-me").unlink()
    (root / "srv/data/new.txt").write_text("made after the full backup\n")
    (root / "home/alice/notes.txt").write_text("alice's notes, edited\n")


def write_plan(
    folder: Path,
    settings: Path,
    targets: list[Path | str],
    *,
    target_root: Path | None = None,
    **extra: object,
) -> Path:
    """An unattended plan: the targets are images (file: ids of their loop devices) or stable
    ids given as strings (serial:X)."""
    ids = [t if isinstance(t, str) else f"file:{t}" for t in targets]
    lines = [
        f"settings = {json.dumps(str(settings))}",
        f"target_root = {json.dumps(str(target_root or folder / 'target'))}",
        'after = "none"',
        *(f"{k} = {json.dumps(v)}" for k, v in extra.items()),
        "[disks]",
        f"targets = {json.dumps(ids)}",
        "[answers]",
        '"recover.erase" = "yes"',
    ]
    plan = folder / "plan.toml"
    plan.write_text("\n".join(lines) + "\n")
    return plan


def recover_argv(settings: Path, folder: Path, *args: str) -> list[str]:
    return [
        *RESCUE,
        "--config", str(settings),
        "--log-file", str(folder / "rescue.log"),
        "recover",
        "--work-dir", str(folder / "work"),
        *args,
    ]  # fmt: skip


def run_recover(
    settings: Path, folder: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        recover_argv(settings, folder, *args),
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=1200,
    )


def recovery_state(folder: Path) -> dict[str, object]:
    try:
        return json.loads((folder / "work/state.json").read_text())
    except (OSError, ValueError):
        return {}


def step_record(state: dict[str, object], step_id: str) -> dict[str, object]:
    steps = state.get("steps") or []
    return next((s for s in steps if s["id"] == step_id), {})  # type: ignore[union-attr]


PATTERN = b"\xab" * (1 << 20)


def mark_disk(device: str) -> None:
    """Fill the first MiB of a disk with a pattern, so any write to it shows."""
    with open(device, "r+b") as disk:
        disk.write(PATTERN)


def untouched(device: str) -> bool:
    with open(device, "rb") as disk:
        return disk.read(len(PATTERN)) == PATTERN
