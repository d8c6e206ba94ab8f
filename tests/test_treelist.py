"""The path-by-path listing the stacked-layout VM scenarios compare (testsupport/treelist.py):
every difference a restore could make shows, so an empty comparison there means something."""

from __future__ import annotations

import os
from pathlib import Path

from treelist import difference_path, differences, listing


def _tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/conf").write_text("a = 1\n")
    (root / "etc/link").symlink_to("conf")
    (root / "data").write_text("data\n")
    os.link(root / "data", root / "data.hard")
    (root / "skipped").mkdir()
    (root / "skipped/inside").write_text("not listed\n")
    os.utime(root / "etc/conf", (1_700_000_000, 1_700_000_000))
    return root


def test_identical_trees_list_alike_and_skipped_content_is_left_out(tmp_path: Path) -> None:
    one = listing(_tree(tmp_path / "one"), ["skipped"])
    two = listing(_tree(tmp_path / "two"), ["skipped"])
    assert differences(one, two) == []
    assert "skipped" in one and "skipped/inside" not in one
    assert one["data"][6] == 2  # the link count shows the hard link
    assert one["etc/link"][0] == "symlink" and one["etc/link"][7] == "conf"


def test_each_kind_of_difference_is_one_line_naming_its_path(tmp_path: Path) -> None:
    source = listing(_tree(tmp_path / "src"))
    target_root = _tree(tmp_path / "dst")
    (target_root / "etc/conf").write_text("a = 2\n")  # same size, other bytes
    os.utime(target_root / "etc/conf", (1_700_000_000, 1_700_000_000))
    (target_root / "etc/link").unlink()
    (target_root / "etc/link").symlink_to("elsewhere")
    (target_root / "data.hard").unlink()
    (target_root / "data.hard").write_text("data\n")  # a copy, not a link
    os.chmod(target_root / "data", 0o600)
    (target_root / "extra").write_text("new\n")
    (target_root / "skipped/inside").unlink()
    target = listing(target_root)
    lines = differences(source, target)
    assert "etc/conf: content" in "\n".join(lines)
    assert "etc/link: content conf -> elsewhere" in lines
    assert "data: mode 0o644 -> 0o600" in lines
    assert "data: links 2 -> 1" in lines
    assert "only in actual: extra" in lines
    assert "only in expected: skipped/inside" in lines
    assert {difference_path(line) for line in lines} == {
        "etc/conf",
        "etc/link",
        "data",
        "data.hard",
        "extra",
        "skipped/inside",
    }
