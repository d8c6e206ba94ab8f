"""The destination's record of sharded chains (rescue.backup.shardmap), the merge of the
shards' restored parts (fsops.move_into) and which sets count (DuplicityRunner._complete)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rescue.backup.duplicity_run import DuplicityRunner
from rescue.backup.sets import BackupSet, Chain, Status
from rescue.backup.shardmap import ShardedChain, ShardMapError, parse, shard_url, write
from rescue.backup.shards import Piece, Plan, auto_count
from rescue.placement.fsops import move_into

PLAN = Plan(
    (
        (),
        (Piece("usr/share"), Piece("srv/media/big.iso")),
        (Piece("usr/lib"), Piece("var/cache", "abc")),
    ),
    (10, 20, 30),
)


@pytest.mark.parametrize(
    ("rel", "holders"),
    [
        ("", [0, 1, 2]),  # everything: every shard
        ("usr", [0, 1, 2]),  # above pieces of 1 and 2, and its own files in 0
        ("usr/share/doc/x", [1]),  # inside a piece: that shard alone
        ("usr/share", [1]),
        ("srv/media/big.iso", [1]),  # a single large file given away
        ("srv/media", [0, 1]),
        ("var/cache/apt", [2]),  # an initials piece holds var/cache/a*
        ("var/cache/zoo", [0]),  # ... but not var/cache/z*
        ("var/cache", [0, 2]),
        ("etc/passwd", [0]),
        ("var/lib/rescue", [0]),
    ],
)
def test_holders_are_the_shards_that_hold_some_of_a_path(rel: str, holders: list[int]) -> None:
    assert ShardedChain(100, PLAN).holders(rel) == holders


def test_the_record_round_trips_and_a_bad_or_newer_one_is_refused() -> None:
    class Folder:  # the RemoteDir calls the record makes, in memory
        def __init__(self) -> None:
            self.files: dict[str, bytes] = {}

        def read(self, name: str) -> bytes | None:
            return self.files.get(name)

        def write(self, name: str, data: bytes) -> None:
            self.files[name] = data

        def delete(self, name: str) -> None:
            self.files.pop(name, None)

    folder = Folder()
    chains = {100: ShardedChain(100, PLAN, [100, 160])}
    write(folder, chains)  # type: ignore[arg-type]
    (raw,) = folder.files.values()
    back = parse(raw)
    assert back[100].plan == PLAN and back[100].sets == [100, 160]
    assert parse(None) == {}
    with pytest.raises(ShardMapError, match="cannot be read"):
        parse(b"{not json")
    with pytest.raises(ShardMapError, match="newer rescue"):
        parse(b'{"version": 99, "chains": []}')
    write(folder, {})  # type: ignore[arg-type]
    assert folder.files == {}


def test_shard_urls() -> None:
    assert shard_url("file:///srv/b", 0) == "file:///srv/b"
    assert shard_url("file:///srv/b/", 2) == "file:///srv/b/shard-2"
    assert shard_url("sftp://u@h:22//srv/b", 1) == "sftp://u@h:22//srv/b/shard-1"


def test_sets_not_every_shard_made_do_not_count() -> None:
    def chain(*times: int) -> Chain:
        kinds = ["full", *["incremental"] * (len(times) - 1)]
        return Chain(0, [BackupSet(k, t, 1, True, 0) for k, t in zip(kinds, times, strict=True)])  # type: ignore[arg-type]

    status = Status("file:///b", [chain(10, 20), chain(100, 110, 120), chain(200)])
    chains = {100: ShardedChain(100, PLAN, [100, 120]), 200: ShardedChain(200, PLAN, [])}
    complete = DuplicityRunner._complete(status, chains)
    assert [[s.time for s in c.sets] for c in complete.chains] == [[10, 20], [100, 120]]
    assert [s.chain for s in complete.sets] == [1, 1, 2, 2]
    assert complete.incomplete == 2  # 110, and the full of 200 that one shard lacks
    assert DuplicityRunner._complete(status, {}) is status


def test_parts_merge_into_one_tree_and_directories_keep_their_times(tmp_path: Path) -> None:
    dest, part = tmp_path / "dest", tmp_path / "part"
    (dest / "usr/bin").mkdir(parents=True)
    (dest / "usr/bin/ls").write_text("ls")
    (part / "usr/share/doc").mkdir(parents=True)
    (part / "usr/share/doc/README").write_text("doc")
    (part / "usr/bin").mkdir()
    (part / "link").symlink_to("usr/share")
    os.utime(dest / "usr", (1_000_000, 1_000_000))
    os.utime(dest, (2_000_000, 2_000_000))
    move_into(part, dest)
    assert (dest / "usr/share/doc/README").read_text() == "doc"
    assert (dest / "usr/bin/ls").read_text() == "ls"
    assert os.readlink(dest / "link") == "usr/share"
    assert (dest / "usr").stat().st_mtime == 1_000_000
    assert dest.stat().st_mtime == 2_000_000


def test_the_owner_of_a_path_is_the_shard_that_backs_it_up() -> None:
    chain = ShardedChain(100, PLAN)
    assert chain.owner("usr/share/doc/x") == 1
    assert chain.owner("var/cache/apt") == 2
    assert chain.owner("usr") == 0 and chain.owner("var/cache/zoo") == 0


def test_auto_is_one_shard_per_core_and_none_for_a_small_selection() -> None:
    mib = 2**20
    assert auto_count(100 * mib, 8) == 1  # small: one chain
    assert auto_count(600 * mib, 8) == 2
    assert auto_count(100_000 * mib, 2) == 2  # never more than the cores
    assert auto_count(100_000 * mib, None) == 1
    assert auto_count(100_000 * mib, 64) == 8  # a large host: capped
