"""Include/exclude lists and globs: the arguments, and what a real backup then holds."""

from __future__ import annotations

from pathlib import Path

import pytest
from clirun import rescue, write_settings

from rescue.backup.selection import filter_args, glob_pattern
from rescue.config import Selection


def test_defaults_outside_the_root_are_dropped() -> None:
    selection = Selection.model_validate({"root": "/srv", "include": ["/srv"]})
    assert filter_args(selection) == []


def test_whole_root_keeps_default_excludes() -> None:
    args = filter_args(Selection.model_validate({"exclude_globs": ["*.avi"]}))
    for path in ("/mnt", "/dev", "/media", "/sys", "/proc", "/run", "/tmp"):
        assert ["--exclude", path] == args[args.index(path) - 1 : args.index(path) + 1]
    assert args[-2:] == ["--exclude", "**/*.avi"]
    assert "--include" not in args


def test_includes_end_with_exclude_everything_else() -> None:
    selection = Selection.model_validate(
        {"include": ["/etc", "/home"], "exclude": ["/home/bob/cache"]}
    )
    args = filter_args(selection, ["/var/cache/rescue"])
    assert args == [
        "--exclude", "/var/cache/rescue",
        "--exclude", "/home/bob/cache",
        "--include", "/etc",
        "--include", "/home",
        "--exclude", "**",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("glob", "pattern"),
    [("*.avi", "**/*.avi"), ("/home/*/.cache", "/home/*/.cache"), ("**/tmp", "**/tmp")],
)
def test_glob_pattern(glob: str, pattern: str) -> None:
    assert glob_pattern(glob) == pattern


@pytest.mark.slow
def test_a_backup_holds_exactly_the_selection(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for rel in (
        "etc/hosts", "etc/passwd", "etc/film.avi", "home/alice/notes.txt",
        "home/alice/deep/x/clip.AVI",
        "home/alice/deep/x/clip.avi", "home/alice/.cache/blob", "srv/data.bin", "tmp/scratch",
        "film.avi",
    ):  # fmt: skip
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    config = write_settings(
        tmp_path / "rescue.toml",
        {
            "destination": {"method": "file", "path": str(tmp_path / "dest")},
            "selection": {
                "root": str(root),
                "include": [str(root / "etc"), str(root / "home"), str(root / "tmp")],
                "exclude": [str(root / "tmp"), "/proc"],
                "exclude_globs": ["*.avi", str(root / "home/*/.cache")],
            },
            "duplicity": {"archive_dir": str(tmp_path / "cache")},
        },
    )
    r = rescue(config, "backup")
    assert r.code == 0, r.err
    files = rescue(config, "files", "--json")
    assert files.code == 0, files.err
    held = {e["path"] for e in files.json() if e["type"] == "reg"}
    assert held == {
        "etc/hosts",
        "home/alice/notes.txt",
        "home/alice/deep/x/clip.AVI",
        "etc/passwd",
        "var/lib/rescue/manifest.json",  # always included, though no include names var/
        "var/lib/rescue/metadata.jsonl.gz",  # and its metadata records beside it,
        "var/lib/rescue/sizes.json.gz",  # the room its parts take,
        "var/lib/rescue/identity/passwd",  # and the copy of etc/passwd recovery reads first
    }


def test_always_included_files_come_first_and_only_when_needed() -> None:
    whole = Selection.model_validate({"root": "/srv", "include": ["/srv"]})
    assert filter_args(whole, always=["/srv/var/lib/rescue/manifest.json"]) == []
    some = Selection.model_validate({"root": "/srv", "include": ["/srv/www"]})
    args = filter_args(some, always=["/srv/var/lib/rescue/manifest.json"])
    assert args[:2] == ["--include", "/srv/var/lib/rescue/manifest.json"]
    assert args[-2:] == ["--exclude", "**"]
