"""Splitting a selection into shards (rescue.backup.shards): the plan from recorded sizes, and
each shard's duplicity rules, proven with the real duplicity binary: the shards' backups
together hold exactly what one unsharded backup holds, every file in one shard only."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from clirun import local_settings, rescue

from rescue.backup import duplog
from rescue.backup.duplicity_run import DUPLICITY
from rescue.backup.shards import Piece, Plan, plan, shard_args, subtree_totals
from rescue.config import load_settings
from rescue.exact.sizes import SIZES_REL, Sizes, load_sizes

MIB = 1 << 20
OWN = "var/lib/rescue"


def _sizes() -> Sizes:
    """A server-shaped record: /srv large and uneven, /var with rescue's own directory."""
    sizes = Sizes()
    for rel, mib in {
        "": 1, "srv": 0, "srv/a": 40, "srv/b": 25, "srv/b/x": 20, "srv/c": 10,
        "var": 0, "var/lib": 2, f"{OWN}": 1, f"{OWN}/identity": 1, "var/log": 30,
        "home": 5, "mnt2": 0, "mnt2/disk": 12,
    }.items():  # fmt: skip
        sizes.dirs[rel] = mib * MIB
    sizes.files["srv/c/image.raw"] = 8 * MIB
    return sizes


def _all(p: Plan) -> list[str]:
    return [str(piece) for pieces in p.pieces for piece in pieces]


def _disjoint(p: Plan) -> None:
    """No piece holds another: each byte is in one shard."""
    pieces = [piece for group in p.pieces for piece in group]
    for a in pieces:
        for b in pieces:
            if a != b and not b.initials:
                assert not a.holds(b.path), (a, b)
            elif a != b and a.path == b.path:
                assert not set(a.initials) & set(b.initials), (a, b)


@pytest.mark.parametrize("shards", [2, 3, 4])
def test_a_plan_splits_every_byte_once_and_evenly(shards: int) -> None:
    sizes = _sizes()
    made = plan(sizes, shards, keep=[OWN])
    assert made.count == shards and all(made.pieces[1:])
    assert sum(made.loads) == subtree_totals(sizes)[""] == 147 * MIB
    _disjoint(made)
    assert made.balance() < 1.35, made
    for piece in _all(made):  # rescue's own directory and its ancestors stay in shard 0's rest
        assert not OWN.startswith(piece) and not piece.startswith(OWN), piece


def test_a_file_system_and_a_large_file_become_pieces_of_their_own() -> None:
    assert "mnt2" in _all(plan(_sizes(), 2, keep=[OWN]))  # small enough to go whole
    split = _all(plan(_sizes(), 2, keep=[OWN], boundaries=["/mnt2/disk"]))
    assert "mnt2/disk" in split and "mnt2" not in split
    assert "srv/c/image.raw" in _all(plan(_sizes(), 4, keep=[OWN]))  # srv/c is split


def test_many_small_directories_become_a_few_pieces_by_their_initials() -> None:
    sizes = Sizes()
    sizes.dirs.update({"": MIB, "doc": 0, "doc/big": 30 * MIB, "doc/bigger": 40 * MIB})
    for n in range(400):  # 400 packages of 100 KiB: one rule each would be 400 rules
        sizes.dirs[f"doc/{'abcdefghijklmnopqrstuvwxyz'[n % 26]}pkg{n}"] = 100 * 1024
    made = plan(sizes, 2)
    _disjoint(made)
    pieces = [piece for group in made.pieces for piece in group]
    assert len(pieces) <= 2 * 16, pieces
    groups = [piece for piece in pieces if piece.initials]
    assert groups and all(piece.path == "doc" for piece in groups), pieces
    assert "b" not in "".join(piece.initials for piece in groups)  # doc/big's initial
    assert made.balance() < 1.2, made
    assert Piece("doc", "xyz").holds("doc/xpkg1/file") and not Piece("doc", "xyz").holds("doc")


def test_one_shard_or_nothing_recorded_is_one_plain_backup() -> None:
    assert plan(_sizes(), 1).pieces == ((),)
    assert plan(Sizes(), 4).pieces == ((),)


# -- with the real duplicity -------------------------------------------------------------------


def _tree(root: Path) -> None:
    for top, count in (("srv/a", 30), ("srv/b", 12), ("srv/b/deep", 9), ("home/u", 6)):
        folder = root / top
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(count):
            (folder / f"f{n}").write_bytes(bytes([n % 251]) * (4096 * (n + 1)))
    for n in range(70):  # many small directories: grouped by their initials
        folder = root / f"srv/doc/{'abcdefghij_.ABC'[n % 15]}pkg{n}"
        folder.mkdir(parents=True)
        (folder / "README").write_bytes(bytes([n]) * 20_000)
    (root / "srv/a/movie.avi").write_bytes(b"v" * 9000)
    (root / "srv/odd [1]*").mkdir()
    (root / "srv/odd [1]*/x").write_bytes(b"o" * 300_000)
    (root / "srv/big.img").write_bytes(b"\1" * (2 * MIB))
    (root / "srv/skip").mkdir()
    (root / "srv/skip/no").write_text("left out\n")
    (root / "etc").mkdir()
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n")
    (root / "srv/link").symlink_to("a/f1")


def _listing(url: str, cache: Path) -> dict[str, str]:
    """path -> type of what the chain at url holds, by duplicity list-current-files."""
    found = subprocess.run(
        [DUPLICITY, "list-current-files", "--log-fd=2", "-v", "info", "--no-encryption",
         "--archive-dir", str(cache), url],
        capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    parser = duplog.LogParser(None)
    for line in found.splitlines(keepends=True):
        parser.feed(line.rstrip("\n"))
    parser.close()
    entries = {}
    for r in parser.records:
        if r.level == "INFO" and r.code == duplog.INFO_FILE_LIST and r.extra:
            _, rest = r.extra[0].split(" ", 1)
            quoted, kind = rest.rsplit(" ", 1)
            entries[duplog.unescape_path(quoted)] = kind
    return entries


@pytest.mark.slow
@pytest.mark.parametrize("shards", [2, 3])
def test_the_shards_together_hold_what_one_backup_holds(tmp_path: Path, shards: int) -> None:
    source = tmp_path / "src"
    _tree(source)
    config = local_settings(
        tmp_path,
        {
            "root": str(source),
            "include": [str(source / "srv"), str(source / "etc"), str(source / "var")],
            "exclude": [str(source / "srv/skip")],
            "exclude_globs": ["*.avi"],
        },
        encryption={"mode": "none"},
    )
    made = rescue(config, "backup", "--full")  # the reference, and the recorded sizes
    assert made.code == 0, made.err
    reference = _listing(f"file://{tmp_path / 'dest'}", tmp_path / "cache")
    assert "srv/a/f1" in reference and "srv/a/movie.avi" not in reference
    assert "srv/skip/no" not in reference and "home/u" not in reference

    sizes = load_sizes(source / SIZES_REL)
    assert sizes is not None
    settings = load_settings(config)
    made_plan = plan(sizes, shards, keep=[OWN])
    assert all(made_plan.pieces[1:]), made_plan  # every shard got work
    assert "srv/odd [1]*" in _all(made_plan), made_plan  # a name that is a glob
    assert any(piece.initials for group in made_plan.pieces for piece in group), made_plan
    always = [str(source / OWN)]
    held: list[dict[str, str]] = []
    for k in range(shards):
        args = shard_args(settings.selection, made_plan, k, always=always if k == 0 else ())
        url = f"file://{tmp_path / f'shard-{k}'}"
        subprocess.run(
            [DUPLICITY, "full", "--no-encryption", "-v", "error", "--archive-dir",
             str(tmp_path / "cache"), *args, str(source), url],
            check=True, capture_output=True,
        )  # fmt: skip
        held.append(_listing(url, tmp_path / "cache"))
    union = {rel: kind for listing in held for rel, kind in listing.items()}
    assert union == reference
    for rel, kind in reference.items():
        owners = [k for k, listing in enumerate(held) if rel in listing]
        if kind != "dir":
            assert len(owners) == 1, f"{rel} is in shards {owners}"
    assert all(rel in held[0] for rel in reference if rel.startswith(OWN + "/"))
