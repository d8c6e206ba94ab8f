"""`rescue restore --to DEST [--force]` never destroys: every shape of DEST by every kind of
restored PATH, with and without --force, run by the real CLI and duplicity in the sandbox.

For each case: the exit code and the message; a tree hash of the whole sandbox before and
after, which may differ only in the entries the restore holds and its undo directory; the undo
directory holds exactly the replaced entries, with their metadata; and `rescue undo apply`
puts the old tree back, hash-identical.
"""

from __future__ import annotations

import os
import random
import re
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from clirun import Run, rescue, write_settings
from sandbox import PYTHON, Entry, Sandbox, differences, entry_state, tree_state

pytestmark = pytest.mark.slow

ARCHIVE = "/var/cache/rescue/duplicity"  # inside the sandbox: rescue's own, refused as a --to
PATHS = {"file": "etc/hostname", "directory": "srv/data", "symlink": "srv/link"}
UNDO_LINE = re.compile(r"^to put it back: rescue undo apply (\S+)$", re.M)


def source_tree(root: Path) -> None:
    """What the backup holds: a file, a directory tree (odd modes, a numeric owner, an empty
    directory) and a symlink."""
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("restored-host\n")
    data = root / "srv/data"
    (data / "sub/deep").mkdir(parents=True)
    (data / "empty").mkdir()
    (data / "a").write_text("restored a\n")
    (data / "sub/b").write_text("restored b\n")
    (data / "sub/deep/c").write_text("restored c\n")
    os.chmod(data / "a", 0o640)
    os.chown(data / "sub/b", 1234, 1235)
    os.chmod(data, 0o750)
    os.setxattr(data / "sub", "user.mark", b"restored")  # put back on a merged directory
    os.symlink("data", root / "srv/link")
    for d in range(4):  # a tree with many entries, for the kills
        folder = root / f"srv/big/d{d}"
        folder.mkdir(parents=True)
        for f in range(15):
            (folder / f"f{f}").write_text(f"restored {d}/{f}\n" * (f + 1))
        os.symlink(f"f{d}", folder / "link")


@dataclass
class World:
    source: Path
    settings: Path  # for the sandbox: archive dir inside it
    dest: Path  # the backup destination (bound read-only into the sandbox)
    backup: Path  # the settings the backup was made with, on this machine


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    top = tmp_path_factory.mktemp("safety")
    source = top / "src"
    source_tree(source)
    sections: dict[str, dict[str, object]] = {
        "destination": {"method": "file", "path": str(top / "dest")},
        "encryption": {"mode": "none"},
        "selection": {"root": str(source), "include": [str(source)]},
        "duplicity": {"archive_dir": str(top / "cache")},
    }
    backup = write_settings(top / "backup.toml", sections)
    made = rescue(backup, "backup", "--full")
    assert made.code == 0, made.err
    sections["duplicity"] = {"archive_dir": ARCHIVE}
    (top / "sandboxed").mkdir()
    settings = write_settings(top / "sandboxed/rescue.toml", sections)
    return World(source, settings, top / "dest", backup)


# -- the shapes of DEST: (what --to says, the working directory, how to build it) -------------

SETUP = "mkdir -p /srv/work /srv/work/sub /opt; "


@dataclass(frozen=True)
class Shape:
    to: str
    cwd: str
    build: str  # shell, run inside the sandbox
    resolved: str | None  # where the restore lands, or None when refused before any work


SHAPES: dict[str, Shape] = {
    "missing": Shape("/srv/work/new", "/", "", "/srv/work/new"),
    "file": Shape("/srv/work/old-file", "/", "echo old > /srv/work/old-file", "/srv/work/old-file"),
    "empty-dir": Shape("/srv/work/empty", "/", "mkdir /srv/work/empty", "/srv/work/empty"),
    "dir-with-content": Shape(
        "/srv/work/full",
        "/",
        "mkdir -p /srv/work/full/nested; echo x > /srv/work/full/x.txt; "
        "echo y > /srv/work/full/nested/y.txt",
        "/srv/work/full",
    ),
    "dir-holding-same-names": Shape(
        "/srv/work/holder",
        "/",
        "mkdir -p /srv/work/holder/sub; echo old > /srv/work/holder/hostname; "
        "echo 'old a' > /srv/work/holder/a; chmod 600 /srv/work/holder/a; "
        "echo 'old b' > /srv/work/holder/sub/b; echo keep > /srv/work/holder/sub/keep; "
        "echo 'a file' > /srv/work/holder/empty; ln -s nowhere /srv/work/holder/link; "
        "setfattr -n user.mark -v old /srv/work/holder/sub; "
        "setfattr -n user.mine -v kept /srv/work/holder/sub; "
        "touch -d 2020-01-02 /srv/work/holder/sub /srv/work/holder",
        "/srv/work/holder",
    ),
    "root": Shape("/", "/", "", None),
    "mount-point": Shape(
        "/srv/work/mnt",
        "/",
        "mkdir /srv/work/mnt; mount -t tmpfs -o size=8m mnt /srv/work/mnt; "
        "echo m > /srv/work/mnt/m.txt; echo 'old a' > /srv/work/mnt/a",
        "/srv/work/mnt",
    ),
    "mount-inside": Shape(
        "/srv/work/outer",
        "/",
        "mkdir -p /srv/work/outer/mnt; echo o > /srv/work/outer/o.txt; "
        "mount -t tmpfs -o size=8m inner /srv/work/outer/mnt",
        None,
    ),
    "empty-string": Shape("", "/srv/work", "", None),
    "relative": Shape(
        "rel/old",
        "/srv/work",
        "mkdir /srv/work/rel; echo old > /srv/work/rel/old",
        "/srv/work/rel/old",
    ),
    "dot-dot": Shape(
        "../dotdot",
        "/srv/work/sub",
        "mkdir /srv/work/dotdot; echo d > /srv/work/dotdot/d.txt",
        "/srv/work/dotdot",
    ),
    "symlink-to-dir": Shape(
        "/srv/work/to-dir",
        "/",
        "mkdir /srv/work/target-dir; echo t > /srv/work/target-dir/t.txt; "
        "ln -s target-dir /srv/work/to-dir",
        "/srv/work/target-dir",
    ),
    "symlink-outside": Shape(
        "/srv/work/to-outside",
        "/",
        "mkdir -p /opt/outside; echo o > /opt/outside/o.txt; "
        "ln -s /opt/outside /srv/work/to-outside",
        "/opt/outside",
    ),
    "symlink-to-root": Shape("/srv/work/to-root", "/", "ln -s / /srv/work/to-root", None),
    "symlink-to-archive": Shape(
        "/srv/work/to-cache", "/", f"mkdir -p {ARCHIVE}; ln -s {ARCHIVE} /srv/work/to-cache", None
    ),
    "archive-dir": Shape(f"{ARCHIVE}/restored", "/", "", None),
    "below-a-file": Shape("/srv/work/plain/x", "/", "echo p > /srv/work/plain", None),
}


def expected(shape: str, kind: str, force: bool) -> tuple[int, str]:
    """The exit code and a piece of the message a case must give."""
    spec = SHAPES[shape]
    if shape == "empty-string":
        return 44, "--to is empty"
    if shape in ("root", "symlink-to-root"):
        return 44, "is the root directory"
    if shape in ("symlink-to-archive", "archive-dir"):
        return 44, "inside the archive dir"
    if shape == "below-a-file":
        return 44, "/srv/work/plain is not a directory"
    if shape == "missing":
        return 0, ""
    if not force:
        return 40, "without --force"
    if shape == "mount-inside":
        return 44, "is a mount point inside"
    non_empty_dir = shape in (
        "dir-with-content",
        "dir-holding-same-names",
        "mount-point",
        "dot-dot",
        "symlink-to-dir",
        "symlink-outside",
    )
    if kind != "directory" and non_empty_dir:
        name = PATHS[kind].rsplit("/", 1)[-1]
        return 40, f"inside it use --to {spec.resolved}/{name}"
    return 0, ""


# -- what the restore holds, and what it replaced ------------------------------------------


def restored_entries_at(world: World, path: str) -> dict[str, Entry]:
    """rel (inside the restored item) -> the source's entry state."""
    top = world.source / path
    found = {"": entry_state(top)}
    if top.is_dir() and not top.is_symlink():
        found.update({k: v for k, v in tree_state(top).items() if k})
    return found


def replaced_oracle(
    before: dict[str, Entry], dest_rel: str, restored: dict[str, Entry]
) -> set[str]:
    """The rels the rules replace: a directory meeting a directory is merged (its entries
    are looked at in turn), anything else that exists at DEST is replaced, whole."""
    replaced: set[str] = set()

    def visit(rel: str) -> None:
        at = _at(dest_rel, rel)
        if at not in before:
            return  # added, with everything below it
        if before[at][0] == restored[rel][0] == stat.S_IFDIR:
            for child in restored:
                if child and str(Path(child).parent) == (rel or "."):
                    visit(child)
        else:
            replaced.add(rel)

    visit("")
    return replaced


def _at(dest_rel: str, rel: str) -> str:
    return f"{dest_rel}/{rel}" if rel else dest_rel


def _below(rel: str, tops: set[str]) -> bool:
    return any(rel == t or not t or rel.startswith(t + "/") for t in tops)


@pytest.fixture
def box(tmp_path: Path, world: World) -> Iterator[Sandbox]:
    with Sandbox(tmp_path, readonly=[world.settings.parent, world.dest]) as sandbox:
        sandbox.run(["sh", "-ec", SETUP], check=True)
        yield sandbox


def _build(box: Sandbox, shape: Shape) -> None:
    if shape.build:
        box.run(["sh", "-ec", shape.build], check=True)


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("kind", list(PATHS))
@pytest.mark.parametrize("shape", list(SHAPES))
def test_restore_into(box: Sandbox, world: World, shape: str, kind: str, force: bool) -> None:
    spec = SHAPES[shape]
    _build(box, spec)
    before = box.state()
    args = ["restore", PATHS[kind], "--to", spec.to, *(["--force"] if force else [])]
    run = box.rescue(world.settings, *args, cwd=spec.cwd)
    code, words = expected(shape, kind, force)
    assert run.code == code, f"{run.out}\n{run.err}"
    assert words in (run.err if code else run.out)
    after = box.state()
    if code:
        assert run.err.count("rescue: error:") == 1
        assert differences(before, after) == set(), "a refused restore changed something"
        return
    assert spec.resolved is not None
    _check_restored(box, world, PATHS[kind], spec.resolved, before, after, run.out)


def _check_restored(
    box: Sandbox,
    world: World,
    path: str,
    resolved: str,
    before: dict[str, Entry],
    after: dict[str, Entry],
    out: str,
    kill_undo_at: int | None = None,
) -> None:
    dest_rel = resolved.lstrip("/")
    restored = restored_entries_at(world, path)
    # every restored entry is at DEST, with the source's bytes, owner, mode and exact times
    for rel, state in restored.items():
        at = f"{dest_rel}/{rel}" if rel else dest_rel
        assert after.get(at) == state, f"{at}: {after.get(at)} != {state}"
    found = UNDO_LINE.search(out)
    undo = found.group(1) if found else None
    undo_rel = undo.lstrip("/") if undo else None
    existed = dest_rel in before
    assert (undo is not None) == existed, out
    # nothing else changed: only DEST's restored entries, the undo directory, and the parent
    # of a DEST that was new (it gained an entry)
    allowed = {f"{dest_rel}/{r}" if r else dest_rel for r in restored}
    if not existed:
        allowed.add(str(Path(dest_rel).parent))
    for rel in differences(before, after) - allowed:
        assert undo_rel and (rel == undo_rel or rel.startswith(undo_rel + "/")), (
            f"{rel} changed, and the restore does not hold it"
        )
    if undo is None:
        return
    # the undo tree holds exactly the replaced entries, as they were; the rest of it is plain
    # directories that lead to them
    replaced = replaced_oracle(before, dest_rel, restored)
    held_tree = box.path(undo) / "tree"
    tree = tree_state(held_tree) if os.path.lexists(held_tree) else {}
    held = {rel: state for rel, state in tree.items() if _below(rel, replaced)}
    carriers = [state for rel, state in tree.items() if not _below(rel, replaced)]
    assert all(state[0] == stat.S_IFDIR for state in carriers)
    was = {
        sub[len(dest_rel) + 1 :] if sub != dest_rel else "": state
        for sub, state in before.items()
        if sub == dest_rel or sub.startswith(dest_rel + "/")
    }
    assert held == {rel: state for rel, state in was.items() if _below(rel, replaced)}
    # and one command puts the old tree back (run again if it was killed: it finishes)
    undo_argv = [str(PYTHON), "-m", "rescue", "undo", "apply", undo]
    if kill_undo_at is not None:
        inject = f"inject=renameat2:signal=KILL:when={kill_undo_at}"
        killed = box.run(
            ["strace", "-qq", "-o", "/dev/null", "-e", "trace=renameat2", "-e", inject, *undo_argv]
        )
        assert killed.code in (-9, 137), f"undo, renameat2 #{kill_undo_at}: {killed.err}"
    back = box.run(undo_argv)
    assert back.code == 0, back.err
    restored_again = box.state()
    stray = {rel for rel in differences(before, restored_again) if ".rescue-replaced-" not in rel}
    assert stray == set(), f"the undo left differences: {sorted(stray)}"


def test_the_sandbox_keeps_this_machine(box: Sandbox) -> None:
    """The sandbox's / is a tmpfs: what a test removes there is not this machine's."""
    marker = box.path("/srv/marker")
    box.run(["sh", "-c", "echo inside > /srv/marker"], check=True)
    assert marker.read_text() == "inside\n"
    assert not Path("/srv/marker").exists()
    assert box.run(["sh", "-c", "touch /usr/written"]).code != 0  # read-only bind
    assert subprocess.run(["findmnt", str(box.mountpoint)], capture_output=True).returncode != 0


# -- killed in the middle of a forced merge ------------------------------------------------

# The live tree the kills restore over: some files edited, some extra, one directory missing,
# a file where the backup has a directory's entry, an empty directory where it has a file.
LIVE = (
    "cp -a {src}/srv/big /srv/live; "
    "for d in 0 1 2; do for f in 1 4 7 10; do echo edited >> /srv/live/d$d/f$f; done; done; "
    "echo mine > /srv/live/d0/extra; rm -r /srv/live/d3; "
    "rm /srv/live/d1/f2; mkdir /srv/live/d1/f2; "
    "rm /srv/live/d2/link; echo text > /srv/live/d2/link; "
    "touch -d 2021-03-04 /srv/live/d0 /srv/live"
)
KILL_SEED = 16


def _killed_box(tmp_path: Path, world: World, name: str) -> Sandbox:
    box = Sandbox(tmp_path / name, readonly=[world.settings.parent, world.dest, world.source])
    box.__enter__()
    box.run(["sh", "-ec", SETUP + LIVE.format(src=world.source)], check=True)
    return box


def _renames(box: Sandbox, world: World, *args: str) -> Run:
    """The restore under strace; with a kill, SIGKILL at the entry of one renameat2 (the
    product's every move is one: rescue.placement.fsops). strace is the fault here, not rescue."""
    return box.run(
        ["strace", "-qq", "-o", "/tmp/renames", "-e", "trace=renameat2", *args,
         str(PYTHON), "-m", "rescue", "--config", str(world.settings),
         "--log-file", "/var/log/rescue/rescue.log",
         "restore", "srv/big", "--to", "/srv/live", "--force"],
    )  # fmt: skip


def test_a_killed_forced_merge_loses_nothing_and_finishes(tmp_path: Path, world: World) -> None:
    box = _killed_box(tmp_path, world, "count")
    try:
        counted = _renames(box, world)
        assert counted.code == 0, counted.err
        total = len(box.path("/tmp/renames").read_text().splitlines())
    finally:
        box.__exit__(None, None, None)
    assert total > 40  # the fetch of the records, and one or two per entry the merge moves
    restored = restored_entries_at(world, "srv/big")
    for point in sorted(random.Random(KILL_SEED).sample(range(1, total + 1), 10)):
        box = _killed_box(tmp_path, world, f"kill-{point}")
        try:
            before = box.state()
            killed = _renames(box, world, "-e", f"inject=renameat2:signal=KILL:when={point}")
            assert killed.code in (-9, 137), f"renameat2 #{point}: {killed.code} {killed.err}"
            _nothing_lost(box, before, restored)
            again = box.rescue(world.settings, "restore", "srv/big", "--to", "/srv/live", "--force")
            assert again.code == 0, f"after a kill at renameat2 #{point}: {again.err}"
            assert not list(box.path("/srv").glob(".rescue-restore-*")), "a stale staging dir"
            assert len(list(box.path("/srv").glob(".rescue-replaced-*"))) <= 1
            # the undo, too, is killed once at a rename of its own, then run again
            undo_kill = random.Random(KILL_SEED + point).randint(1, 20)
            _check_restored(
                box, world, "srv/big", "/srv/live", before, box.state(), again.out, undo_kill
            )
        finally:
            box.__exit__(None, None, None)


def _nothing_lost(box: Sandbox, before: dict[str, Entry], restored: dict[str, Entry]) -> None:
    """Each old entry is at DEST as it was, or in an undo tree; once the merge began (its undo
    directory exists), each restored entry is at DEST or still in the staging directory the
    killed run left."""
    after = box.state()
    held: dict[str, Entry] = {}
    undos = list(box.path("/srv").glob(".rescue-replaced-*"))
    for undo in undos:
        if (undo / "tree").exists():
            held.update({_at("srv/live", r): s for r, s in tree_state(undo / "tree").items()})
    for rel, state in before.items():
        if rel != "srv/live" and not rel.startswith("srv/live/"):
            assert after.get(rel) == state or rel == "srv", f"{rel} changed"
        elif state[0] == stat.S_IFDIR:
            assert after.get(rel, (None,))[0] == stat.S_IFDIR or held.get(rel) == state, rel
        else:
            assert state in (after.get(rel), held.get(rel)), f"{rel} is lost"
    if not undos:
        return  # killed before the merge (fetching the records, or in duplicity's run)
    staged = [s / "restored" for s in box.path("/srv").glob(".rescue-restore-*")]
    for rel, state in restored.items():
        at = _at("srv/live", rel)
        new = [after.get(at)] + [entry_state(s / rel) for s in staged if os.path.lexists(s / rel)]
        assert any(n is not None and _same_content(n, state) for n in new), f"{at} is missing"


def _same_content(a: Entry, b: Entry) -> bool:
    """Type, mode, owner, size and bytes (a killed run did not replay times and xattrs yet)."""
    return a[:5] == b[:5] and a[6] == b[6]


def test_merge_rules_hold_for_random_trees(tmp_path: Path) -> None:
    """hypothesis, 200 seeded pairs of small trees, through rescue.placement in the sandbox
    (tests/sandboxed/merge_property.py says what holds)."""
    with Sandbox(tmp_path) as box:
        box.run(["mkdir", "-p", "/srv"], check=True)
        run = box.python("tests/sandboxed/merge_property.py")
    assert run.code == 0, f"{run.out}\n{run.err}"
    held = re.search(r"200 examples held: (.*)", run.out)
    assert held, run.out
    seen = {k: int(v) for k, v in (part.rsplit(" ", 1) for part in held.group(1).split(", "))}
    # every outcome was exercised, not only the easy one
    assert all(seen.get(kind, 0) >= 10 for kind in ("new", "merged", "replacing", "refused")), seen


def test_verify_reads_a_relative_path_as_restore_does(tmp_path: Path, world: World) -> None:
    """`verify --deep srv/data` compares the live srv/data under the backup root, wherever it
    runs, and creates nothing; a PATH that is not there is one line, exit 2."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = rescue(world.backup, "verify", "--deep", "srv/data", cwd=elsewhere)
    assert run.code == 0, run.err
    assert f"{world.source}/srv/data against the set of" in run.out
    missing = rescue(world.backup, "verify", "--deep", "srv/nothing", cwd=elsewhere)
    assert missing.code == 2 and "srv/nothing does not exist here" in missing.err
    assert list(elsewhere.iterdir()) == []
    assert not (world.source / "srv/nothing").exists()


def test_a_file_replaced_then_killed_before_the_new_one_lands(tmp_path: Path, world: World) -> None:
    """Killed between moving the old file into the undo directory and placing the new one
    (renameat2 #3: the records' fetch, the old file's move, the new file's): DEST is gone for a
    moment, the old file is in the undo tree, and the same command finishes into that same
    undo directory."""
    with Sandbox(tmp_path, readonly=[world.settings.parent, world.dest]) as box:
        box.run(["sh", "-ec", SETUP + "echo old > /srv/work/f"], check=True)
        before = box.state()
        argv = ["restore", "etc/hostname", "--to", "/srv/work/f", "--force"]
        killed = box.run(
            ["strace", "-qq", "-o", "/dev/null", "-e", "trace=renameat2",
             "-e", "inject=renameat2:signal=KILL:when=3",
             str(PYTHON), "-m", "rescue", "--config", str(world.settings), *argv],
        )  # fmt: skip
        assert killed.code in (-9, 137), killed.err
        assert not box.path("/srv/work/f").exists()
        (undo,) = box.path("/srv/work").glob(".rescue-replaced-f-*")
        assert (undo / "tree").read_text() == "old\n"
        again = box.rescue(world.settings, *argv)
        assert again.code == 0, again.err
        assert "finished an interrupted forced restore" in again.out
        assert f"kept in /srv/work/{undo.name}" in again.out
        assert box.path("/srv/work/f").read_text() == "restored-host\n"
        back = box.run([str(PYTHON), "-m", "rescue", "undo", "apply", f"/srv/work/{undo.name}"])
        assert back.code == 0, back.err
        assert box.path("/srv/work/f").read_text() == "old\n"
        after = {k: v for k, v in box.state().items() if ".rescue-replaced-" not in k}
        # the one difference: the kill came while f was out of srv/work, whose mtime moved then
        assert differences(before, after) == {"srv/work"}
        assert after["srv/work"][:5] == before["srv/work"][:5]


def test_undo_directories_are_listed_and_pruned(tmp_path: Path, world: World) -> None:
    with Sandbox(tmp_path, readonly=[world.settings.parent, world.dest]) as box:
        box.run(["sh", "-ec", SETUP + "echo old > /srv/work/f"], check=True)
        run = box.rescue(
            world.settings, "restore", "etc/hostname", "--to", "/srv/work/f", "--force"
        )
        assert run.code == 0, run.err
        undo = UNDO_LINE.search(run.out)
        assert undo
        undo_cmd = [str(PYTHON), "-m", "rescue", "undo"]
        listed = box.run([*undo_cmd, "list", "--json"])
        assert listed.code == 0, listed.err
        (item,) = listed.json()
        assert item["path"] == undo.group(1) and item["dest"] == "/srv/work/f"
        assert item["replaced"] == 1 and item["finished"] and item["bytes"] > 0
        dry = box.run([*undo_cmd, "prune", "--older-than", "2100-01-01"])
        assert dry.code == 0 and f"would remove {item['path']}" in dry.out
        assert "add --yes to remove them" in dry.out
        assert box.path(item["path"]).is_dir()
        gone = box.run([*undo_cmd, "prune", "--older-than", "2100-01-01", "--yes"])
        assert gone.code == 0 and f"removing {item['path']}" in gone.out
        assert not box.path(item["path"]).exists()
        assert box.run([*undo_cmd, "list", "--json"]).json() == []
        assert box.path("/srv/work/f").read_text() == "restored-host\n"  # prune moves nothing


def test_a_backup_replaces_only_its_own_files_at_the_source(tmp_path: Path) -> None:
    """The files a backup rewrites in the source's var/lib/rescue (the manifest, the records and
    the sizes, each by a rename of its own temporary file) are the only source paths it
    touches: a symlink planted in place of sizes.json.gz is replaced itself, never followed
    to the file it names, and a neighbour there stays as it was."""
    folder = tmp_path / "settings"
    folder.mkdir()
    config = write_settings(
        folder / "rescue.toml",
        {
            "destination": {"method": "file", "path": "/srv/dest"},
            "encryption": {"mode": "none"},
            "selection": {"root": "/srv/sys", "include": ["/srv/sys"]},
            "duplicity": {"archive_dir": "/srv/cache"},
        },
    )
    setup = (
        "mkdir -p /srv/sys/etc /srv/sys/var/lib/rescue /etc; echo keep > /etc/precious; "
        "echo src > /srv/sys/etc/hostname; echo mine > /srv/sys/var/lib/rescue/notes; "
        "ln -s /etc/precious /srv/sys/var/lib/rescue/sizes.json.gz"
    )
    with Sandbox(tmp_path / "box", readonly=[folder]) as box:
        box.run(["sh", "-ec", setup], check=True)
        before = tree_state(box.path("/srv/sys")) | {
            "precious": entry_state(box.path("/etc/precious"))
        }
        run = box.rescue(config, "backup", "--full")
        assert run.code == 0, run.err
        after = tree_state(box.path("/srv/sys")) | {
            "precious": entry_state(box.path("/etc/precious"))
        }
        own = {
            f"var/lib/rescue/{n}" for n in ("manifest.json", "metadata.jsonl.gz", "sizes.json.gz")
        }
        own.add("var/lib/rescue")  # their directory: its times change as they are renamed in
        assert differences(before, after) <= own
        assert box.path("/etc/precious").read_text() == "keep\n"
        sizes = box.path("/srv/sys/var/lib/rescue/sizes.json.gz")
        assert sizes.is_file() and not sizes.is_symlink()
        assert box.path("/srv/sys/var/lib/rescue/notes").read_text() == "mine\n"
