"""A backup in shards (`[duplicity] shards = 2`) is one backup to every command: real duplicity
chains, one at the destination and one in its `shard-1` directory, written at once.

Each test reads the split from the destination's record (rescue-shards.json) rather than
assuming it, so that a change of the planner changes no expectation here: what must hold is
that shard 1 holds some of the tree, that every command sees the union, and that a set one
shard did not finish is never restored from.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from clirun import rescue, symmetric_settings

from rescue.backup.sampletree import make_sample_tree, mutate_sample_tree
from rescue.backup.shardmap import SHARDS_FILE, parse
from rescue.backup.treecompare import compare_trees

pytestmark = pytest.mark.slow

PASSPHRASE = "shards share one passphrase 3"


def setup(tmp_path: Path, **duplicity: object) -> tuple[Path, Path, Path]:
    """A sample tree with two large subtrees (so that the split is by size), its settings
    (2 shards, symmetric) and the destination."""
    tree = tmp_path / "tree"
    make_sample_tree(tree)
    for name in ("srv/media", "opt/data"):
        folder = tree / name
        folder.mkdir(parents=True)
        for n in range(4):
            (folder / f"blob-{n}.bin").write_bytes(bytes([n]) * (600_000 + n))
    dest = tmp_path / "dest"
    config = symmetric_settings(
        tmp_path, tree, {"method": "file", "path": str(dest)}, PASSPHRASE, shards=2, **duplicity
    )
    return tree, config, dest


def held_by_shard_one(dest: Path, tree: Path) -> list[str]:
    """The files of tree (relative) that shard 1's pieces hold, as the record says."""
    (chain,) = parse((dest / SHARDS_FILE).read_bytes()).values()
    files = sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    return [rel for rel in files if any(piece.holds(rel) for piece in chain.plan.pieces[1])]


def copy_tree(src: Path, dst: Path) -> None:
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)


def test_a_sharded_backup_is_one_backup_to_every_command(tmp_path: Path) -> None:
    tree, config, dest = setup(tmp_path)
    full = rescue(config, "backup", "--full", "--json")
    assert full.code == 0, full.err
    chains = parse((dest / SHARDS_FILE).read_bytes())
    (chain,) = chains.values()
    assert chain.count == 2 and chain.sets == [full.json()["time"]]
    given = held_by_shard_one(dest, tree)
    assert given, chain.plan  # shard 1 holds some of the tree ...
    assert list((dest / "shard-1").glob("duplicity-full.*.vol1.difftar.gpg"))  # ... in its chain
    assert full.json()["source_files"] > 30  # the two shards' statistics, summed
    as_of_full = tmp_path / "as-of-full"
    copy_tree(tree, as_of_full)

    # a change in both shards, then an incremental that keeps the split
    mutate_sample_tree(tree)
    rel_inside = given[0]
    (tree / rel_inside).write_bytes(b"changed in shard 1\n")
    time.sleep(1)
    inc = rescue(config, "backup", "--incremental", "--json")
    assert inc.code == 0, inc.err
    assert parse((dest / SHARDS_FILE).read_bytes())[chain.full].sets == [
        full.json()["time"],
        inc.json()["time"],
    ]

    status = rescue(config, "status", "--json")
    assert status.code == 0, status.err
    sets = status.json()["sets"]
    assert [s["kind"] for s in sets] == ["full", "incremental"]
    assert status.json()["incomplete_sets"] == 0
    assert all(s["bytes"] > 0 for s in sets)

    # files: the union of both shards, each path once
    listed = rescue(config, "files", "--json")
    assert listed.code == 0, listed.err
    paths = [e["path"] for e in listed.json()]
    assert len(paths) == len(set(paths))
    assert rel_inside in paths and "etc/app/app.conf" in paths

    # versions of a path of shard 1: both sets, changed in the second
    versions = rescue(config, "versions", rel_inside, "--json")
    assert versions.code == 0, versions.err
    assert [v["changed"] for v in versions.json()] == [True, True]

    # whole restores, as of each set, merged from both shards
    new = tmp_path / "restored-new"
    r = rescue(config, "restore", "/", "--to", str(new))
    assert r.code == 0, r.err
    assert compare_trees(tree, new) == []
    old = tmp_path / "restored-old"
    r = rescue(config, "restore", "/", "--to", str(old), "-t", str(sets[0]["time"]))
    assert r.code == 0, r.err
    assert compare_trees(as_of_full, old) == []

    # one file of shard 1 as of the full; a directory above the split, from both
    one = tmp_path / "one"
    r = rescue(config, "restore", rel_inside, "--to", str(one), "-t", str(sets[0]["time"]))
    assert r.code == 0, r.err
    assert one.read_bytes() == (as_of_full / rel_inside).read_bytes()
    top = given[0].split("/")[0]
    part = tmp_path / "part"
    r = rescue(config, "restore", top, "--to", str(part))
    assert r.code == 0, r.err
    assert compare_trees(tree / top, part) == []

    # verify compares every shard's files
    v = rescue(config, "verify", "/", "--json")
    assert v.code == 0, v.out + v.err


def test_a_set_one_shard_did_not_finish_is_incomplete_and_never_restored(
    tmp_path: Path,
) -> None:
    """The fault is made by hand (a shard's directory made immutable): a destination that
    fails under one chain, which rescue does not own."""
    tree, config, dest = setup(tmp_path)
    full = rescue(config, "backup", "--full", "--json")
    assert full.code == 0, full.err
    as_of_full = tmp_path / "as-of-full"
    copy_tree(tree, as_of_full)
    mutate_sample_tree(tree)
    time.sleep(1)
    subprocess.run(["chattr", "+i", str(dest / "shard-1")], check=True)
    try:
        failed = rescue(config, "backup", "--incremental")
    finally:
        subprocess.run(["chattr", "-i", str(dest / "shard-1")], check=True)
    assert failed.code != 0
    assert failed.err.count("\n") <= 2, failed.err  # one line

    status = rescue(config, "status", "--json")
    assert status.code == 0, status.err
    assert [s["kind"] for s in status.json()["sets"]] == ["full"]
    assert status.json()["incomplete_sets"] >= 1
    back = tmp_path / "back"
    r = rescue(config, "restore", "/", "--to", str(back))
    assert r.code == 0, r.err
    assert compare_trees(as_of_full, back) == []  # the full, not half of the incremental

    # the next incremental completes: every change is there
    time.sleep(1)
    again = rescue(config, "backup", "--incremental")
    assert again.code == 0, again.err
    latest = tmp_path / "latest"
    r = rescue(config, "restore", "/", "--to", str(latest))
    assert r.code == 0, r.err
    assert compare_trees(tree, latest) == []


def test_retention_removes_old_chains_from_every_shard(tmp_path: Path) -> None:
    _, config, dest = setup(tmp_path)
    text = config.read_text().replace("[duplicity]", "[schedule]\nkeep_full = 1\n\n[duplicity]")
    config.write_text(text)
    first = rescue(config, "backup", "--full", "--json")
    assert first.code == 0, first.err
    time.sleep(1)
    second = rescue(config, "backup", "--full", "--json")
    assert second.code == 0, second.err
    assert second.json()["removed_chains"] == 1
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(first.json()["time"]))
    for folder in (dest, dest / "shard-1"):
        assert not list(folder.glob(f"duplicity-full.{stamp}.*")), folder
        assert list(folder.glob("duplicity-full.*.vol1.difftar.gpg")), folder
    assert list(parse((dest / SHARDS_FILE).read_bytes())) == [second.json()["time"]]
    assert json.loads(rescue(config, "status", "--json").out)["incomplete_sets"] == 0
