"""Deterministic sample data shaped like a server root, for the restore drill and the benchmark.

The drill backs up a tree, restores it and proves the restore with `rescue.backup.treecompare`, so
the tree must hold every kind of entry a real server has and a restore can get wrong: nested
directories, empty files and an empty directory, symlinks (to a file, to a directory, dangling),
restrictive and special modes (setuid file, setgid directory), a name with spaces and non-ASCII
letters, incompressible bytes and a second owner. Everything, mtimes included, follows from the
seed alone, so two builds with the same seed compare identical.

The second owner is the `daemon` user and group (present on every Debian system). Changing owner
needs root: run as another user the chown is skipped and every entry stays owned by that user;
the tree is otherwise the same. Symlinks are never given to `daemon` because duplicity restores
no owner on symlinks (it only chowns files and directories), and the drill must compare equal
after an honest restore.
"""

from __future__ import annotations

import grp
import os
import pwd
import random
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

KiB = 1024
MiB = 1024 * KiB

# Fixed instants (2023-11-14 22:13:20 UTC and a week later): whole seconds, in the past, and the
# same on every build, so mtimes compare equal between two builds and after a restore.
BASE_MTIME = 1_700_000_000
MUTATE_MTIME = BASE_MTIME + 7 * 86_400
_YEAR = 365 * 86_400

NON_ASCII_NAME = "home/alice/Grüße und Lücken.txt"

# Owner specs: (user, group) names; None keeps what the creating process gave the entry.
_Owner = tuple[str | None, str | None]
_KEEP: _Owner = (None, None)
_DAEMON: _Owner = ("daemon", "daemon")
_DAEMON_GROUP: _Owner = (None, "daemon")


@dataclass(frozen=True)
class _Dir:
    rel: str
    mode: int
    owner: _Owner = _KEEP


@dataclass(frozen=True)
class _File:
    rel: str
    mode: int
    kind: str  # "text" (compressible words), "binary" (seeded random bytes) or "empty"
    size: int = 0
    owner: _Owner = _KEEP


# Parents come before children; modes are set explicitly so the umask never matters.
_SAMPLE_DIRS = (
    _Dir("etc", 0o755),
    _Dir("etc/app", 0o755),
    _Dir("etc/ssl", 0o755),
    _Dir("etc/ssl/private", 0o700),
    _Dir("home", 0o755),
    _Dir("home/alice", 0o700),
    _Dir("home/alice/bin", 0o755),
    _Dir("usr", 0o755),
    _Dir("usr/lib", 0o755),
    _Dir("usr/lib/app", 0o755),
    _Dir("usr/local", 0o755),
    _Dir("usr/local/bin", 0o755),
    _Dir("usr/share", 0o755),
    _Dir("usr/share/doc", 0o755),
    _Dir("usr/share/doc/app-1.2", 0o755),
    _Dir("var", 0o755),
    _Dir("var/lib", 0o755),
    _Dir("var/lib/app", 0o750, _DAEMON),
    _Dir("var/lib/app/cache", 0o700, _DAEMON),  # the empty directory
    _Dir("var/log", 0o755),
    _Dir("var/log/app", 0o755),
    _Dir("var/spool", 0o755),
    _Dir("var/spool/shared", 0o2775, _DAEMON_GROUP),  # setgid: new files get group daemon
)

_SAMPLE_FILES = (
    _File("etc/hostname", 0o644, "text", 24),
    _File("etc/hosts", 0o644, "text", 310),
    _File("etc/app/app.conf", 0o640, "text", 2_300, _DAEMON_GROUP),
    _File("etc/app/empty.conf", 0o644, "empty"),
    _File("etc/ssl/private/server.key", 0o600, "binary", 3_243),
    _File("home/alice/.bashrc", 0o644, "text", 3_526),
    _File("home/alice/notes.txt", 0o600, "text", 21_000),
    _File(NON_ASCII_NAME, 0o644, "text", 1_500),
    _File("home/alice/empty.txt", 0o600, "empty"),
    _File("home/alice/bin/backup.sh", 0o700, "text", 900),
    _File("usr/lib/app/libapp.so.1", 0o644, "binary", 200 * KiB),
    _File("usr/local/bin/apptool", 0o755, "text", 4_100),
    _File("usr/local/bin/apptool-suid", 0o4755, "text", 700),
    _File("usr/share/doc/app-1.2/README", 0o644, "text", 9_800),
    _File("usr/share/doc/app-1.2/changelog", 0o644, "text", 300 * KiB),
    _File("usr/share/doc/app-1.2/copyright", 0o644, "text", 1_200),
    _File("var/lib/app/blob.bin", 0o640, "binary", 1 * MiB, _DAEMON),  # the incompressible one
    _File("var/lib/app/state.db", 0o640, "binary", 96 * KiB, _DAEMON),
    _File("var/log/app/app.log", 0o640, "text", 150 * KiB, _DAEMON),
    _File("var/log/app/app.log.1", 0o640, "text", 100 * KiB, _DAEMON),
    _File("var/spool/shared/queue.txt", 0o664, "text", 640, _DAEMON_GROUP),
)

# (link, target): a file link, a relative directory link and a dangling one.
_SAMPLE_LINKS = (
    ("etc/app/current.conf", "app.conf"),
    ("usr/share/doc/app", "app-1.2"),
    ("var/lib/app/app.pid.lock", "app.pid"),
)

# One string reads better than one word per line.
_WORDS = (  # noqa: SIM905
    "server backup restore volume daemon config kernel module network socket service archive "
    "signature manifest chain incremental full duplicity gpg passphrase host key disk "
    "partition mount root boot grub fstab passwd group shadow log rotate cron job error "
    "warning info debug started stopped listening accepted closed session user the a of to "
    "and in for on with is was by at from as be this that it not or"
).split()


def make_sample_tree(root: Path, *, seed: int = 0) -> None:
    """Create the drill's sample tree (about 2 MiB) in `root`, which must be empty or absent.

    Refusing a non-empty root keeps the result a pure function of the seed.
    """
    _prepare_root(root)
    rng = random.Random(seed)
    as_root = os.geteuid() == 0

    for d in _SAMPLE_DIRS:
        (root / d.rel).mkdir()
    for f in _SAMPLE_FILES:
        (root / f.rel).write_bytes(_content(rng, f.kind, f.size))
    for link, target in _SAMPLE_LINKS:
        os.symlink(target, root / link)

    # chown before chmod: chown clears setuid/setgid bits on files.
    if as_root:
        for entry in (*_SAMPLE_DIRS, *_SAMPLE_FILES):
            _chown(root / entry.rel, entry.owner)
    os.chmod(root, 0o755)
    for entry in (*_SAMPLE_DIRS, *_SAMPLE_FILES):
        os.chmod(root / entry.rel, entry.mode)

    for f in _SAMPLE_FILES:
        _set_mtime(root / f.rel, BASE_MTIME - rng.randrange(_YEAR))
    for link, _target in _SAMPLE_LINKS:
        _set_mtime(root / link, BASE_MTIME - rng.randrange(_YEAR))
    _settle_dir_mtimes(root, [d.rel for d in _SAMPLE_DIRS], BASE_MTIME)


def mutate_sample_tree(root: Path) -> list[str]:
    """Change a sample tree the way a day on a server does; return the changed relative paths.

    Two files get new bytes and a new size, one file is added, one deleted and one chmodded.
    Every touched file gets a later mtime (MUTATE_MTIME) so duplicity's incremental, which looks
    at mtime and size, certainly picks the change up.
    """
    rng = random.Random("mutate")
    conf = root / "etc/app/app.conf"
    with conf.open("ab") as f:
        f.write(b"# changed for the incremental backup\nworkers = 8\n")

    state = root / "var/lib/app/state.db"
    data = bytearray(state.read_bytes())
    data[1000:5000] = rng.randbytes(4000)
    data += rng.randbytes(3 * KiB)
    state.write_bytes(bytes(data))

    added = root / "home/alice/todo.txt"
    added.write_bytes(_content(rng, "text", 5_000))
    os.chmod(added, 0o644)

    deleted = root / "var/log/app/app.log.1"
    deleted.unlink()

    chmodded = root / "usr/local/bin/apptool"
    os.chmod(chmodded, 0o750)

    for path in (conf, state, added, chmodded):
        _set_mtime(path, MUTATE_MTIME)
    for parent in (added.parent, deleted.parent):
        _set_mtime(parent, MUTATE_MTIME)
    return sorted(p.relative_to(root).as_posix() for p in (conf, state, added, deleted, chmodded))


# --- benchmark tree ---

# Where the benchmark's files go: (directory template, extension). {svc}, {pkg} and {user} are
# filled from the lists below, so the tree fans out like a real server's.
_SVCS = ("nginx", "postgresql", "redis", "postfix", "sshd", "cron", "app", "grafana")
_PKGS = tuple(f"lib{w}{n}" for w in ("ssl", "xml", "z", "ffi", "gnutls", "curl") for n in (1, 2))
_USERS = ("alice", "bob", "carol")

_SMALL_TEXT = (
    ("etc/{svc}/conf.d", ".conf"),
    ("usr/share/doc/{pkg}", ".txt"),
    ("home/{user}/projects/{svc}/src", ".py"),
    ("srv/www/{svc}", ".html"),
)
_MEDIUM_TEXT = (
    ("var/log/{svc}", ".log"),
    ("usr/share/doc/{pkg}", ".html"),
    ("var/lib/{svc}", ".sql"),
)
_MEDIUM_RANDOM = (
    ("var/cache/apt/archives", ".deb"),
    ("home/{user}/photos", ".jpg"),
    ("srv/archive", ".tar.gz"),
)
_LARGE_TEXT = (("var/lib/postgresql/15/main/base", ".dat"), ("var/log/journal", ".log"))
_LARGE_RANDOM = (("srv/backups", ".tar.xz"), ("home/{user}/videos", ".mp4"))

_CORPUS_SIZE = 2 * MiB
_WRITE_CHUNK = 4 * MiB


@dataclass
class _BenchFile:
    size: int
    kind: str  # "small", "medium" or "large"
    incompressible: bool = False


def make_bench_tree(root: Path, *, total_mib: int, seed: int = 0) -> None:
    """Create about `total_mib` MiB of server-shaped data in `root` (empty or absent).

    By count ~60% of the files are small (1-16 KiB of text), the rest medium (100 KiB-2 MiB)
    and, from 100 MiB on, a few large ones (32-64 MiB). About a quarter of the bytes are
    incompressible (whole files: archives, photos, video), the rest is text that compresses
    like logs and configs do. Text is cut from one seeded corpus and random bytes come from
    `Random.randbytes`, so hundreds of MiB take seconds, not minutes.
    """
    if total_mib < 1:
        raise ValueError("total_mib must be at least 1")
    _prepare_root(root)
    rng = random.Random(seed)
    corpus = _text_corpus(rng, _CORPUS_SIZE)
    plan = _plan_bench(rng, total_mib * MiB)

    written: list[Path] = []
    for index, item in enumerate(plan):
        path = root / _bench_path(rng, item, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            remaining = item.size
            while remaining:
                n = min(remaining, _WRITE_CHUNK)
                f.write(rng.randbytes(n) if item.incompressible else _corpus_slice(rng, corpus, n))
                remaining -= n
        os.chmod(path, 0o600 if rng.random() < 0.1 else 0o644)
        _set_mtime(path, BASE_MTIME - rng.randrange(_YEAR))
        written.append(path)

    # Symlinks: a sibling link to about 2% of the files, plus links to directories.
    for path in rng.sample(written, max(3, len(written) // 50)):
        os.symlink(path.name, path.with_name(path.name + ".link"))
    for path in rng.sample(written, min(2, len(written))):
        link = path.parent.with_name("current")
        if not os.path.lexists(link):
            os.symlink(path.parent.name, link)


def _plan_bench(rng: random.Random, total: int) -> list[_BenchFile]:
    """Pick file sizes until `total` bytes are planned, then mark ~25% of bytes incompressible."""
    plan: list[_BenchFile] = []
    planned = 0
    large_budget = total * 35 // 100
    while True:
        size = rng.randint(32 * MiB, 64 * MiB)
        if planned + size > large_budget:
            break
        plan.append(_BenchFile(size, "large"))
        planned += size
    small, others = 0, len(plan)
    while planned < total:
        if small < 1.5 * others:
            item = _BenchFile(rng.randint(1 * KiB, 16 * KiB), "small")
            small += 1
        else:
            # Log-uniform: many files near 100 KiB, fewer near 2 MiB, as on real disks.
            size = int(100 * KiB * (20.48 ** rng.random()))
            item = _BenchFile(size, "medium")
            others += 1
        item.size = min(item.size, total - planned)
        plan.append(item)
        planned += item.size

    target = total // 4
    incompressible = 0
    candidates = [item for item in plan if item.kind != "small"]
    rng.shuffle(candidates)
    for item in candidates:
        if incompressible + item.size <= target:
            item.incompressible = True
            incompressible += item.size
    rng.shuffle(plan)
    return plan


def _bench_path(rng: random.Random, item: _BenchFile, index: int) -> str:
    if item.kind == "small":
        places: tuple[tuple[str, str], ...] = _SMALL_TEXT
    elif item.kind == "medium":
        places = _MEDIUM_RANDOM if item.incompressible else _MEDIUM_TEXT
    else:
        places = _LARGE_RANDOM if item.incompressible else _LARGE_TEXT
    template, ext = rng.choice(places)
    directory = template.format(
        svc=rng.choice(_SVCS), pkg=rng.choice(_PKGS), user=rng.choice(_USERS)
    )
    return f"{directory}/{rng.choice(_WORDS)}-{index:06d}{ext}"


def _text_corpus(rng: random.Random, size: int) -> bytes:
    """Log-like lines of words; gzip shrinks this about as much as it does real logs."""
    lines = []
    length = 0
    while length < size:
        words = rng.choices(_WORDS, k=rng.randint(4, 14))
        line = f"{rng.randrange(10**6):06d} {' '.join(words)}\n"
        lines.append(line)
        length += len(line)
    return "".join(lines).encode()[:size]


def _corpus_slice(rng: random.Random, corpus: bytes, n: int) -> bytes:
    start = rng.randrange(len(corpus))
    out = corpus[start : start + n]
    while len(out) < n:
        out += corpus[: n - len(out)]
    return out


# --- shared helpers ---


def _prepare_root(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise FileExistsError(f"refusing to build a sample tree in a non-empty directory: {root}")


def _content(rng: random.Random, kind: str, size: int) -> bytes:
    if kind == "empty":
        return b""
    if kind == "binary":
        return rng.randbytes(size)
    words = []
    length = 0
    while length < size:
        word = rng.choice(_WORDS)
        words.append(word + ("\n" if rng.random() < 0.12 else " "))
        length += len(word) + 1
    return "".join(words).encode()[:size]


def _chown(path: Path, owner: _Owner) -> None:
    user, group = owner
    if user is None and group is None:
        return
    uid = pwd.getpwnam(user).pw_uid if user else -1
    gid = grp.getgrnam(group).gr_gid if group else -1
    os.chown(path, uid, gid, follow_symlinks=False)


def _set_mtime(path: Path, mtime: int) -> None:
    os.utime(path, (mtime, mtime), follow_symlinks=False)


def _settle_dir_mtimes(root: Path, dirs: list[str], mtime: int) -> None:
    """Set directory mtimes last and deepest first: creating entries inside bumps them."""
    for rel in sorted(dirs, key=lambda r: len(PurePosixPath(r).parts), reverse=True):
        _set_mtime(root / rel, mtime)
    _set_mtime(root, mtime)
