"""[duplicity] compress_level reaches gpg: real duplicity and gpg, symmetric encryption.

The proof is in the bytes stored: 4 MiB of text stored at level 0 (no compression) take about
their own size, at gpg's default far less; both restore byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from clirun import rescue, symmetric_settings

from rescue.backup.treecompare import compare_trees

pytestmark = pytest.mark.slow

PASSPHRASE = "compress level, a test passphrase"
TEXT = b"a line of a log file that compresses well, as logs and configs do\n"


def _stored(tmp_path: Path, source: Path, level: int | None) -> int:
    folder = tmp_path / f"level-{level}"
    folder.mkdir()
    extra = {} if level is None else {"compress_level": level}
    config = symmetric_settings(
        folder, source, {"method": "file", "path": str(folder / "dest")}, PASSPHRASE, **extra
    )
    run = rescue(config, "backup", "--full")
    assert run.code == 0, run.err
    out = folder / "out"
    run = rescue(config, "restore", "/", "--to", str(out))
    assert run.code == 0, run.err
    assert compare_trees(source, out) == []
    return sum(p.stat().st_size for p in (folder / "dest").glob("*.difftar.gpg"))


def test_level_zero_stores_the_text_as_it_is_and_the_default_compresses_it(
    tmp_path: Path,
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "log.txt").write_bytes(TEXT * (4 * 1024 * 1024 // len(TEXT)))
    plain = _stored(tmp_path, source, 0)
    default = _stored(tmp_path, source, None)
    assert plain > 4 * 1024 * 1024 * 0.95
    assert default < plain / 10


def test_a_level_out_of_range_is_one_line(tmp_path: Path) -> None:
    config = symmetric_settings(
        tmp_path, tmp_path, {"method": "file", "path": str(tmp_path / "dest")}, PASSPHRASE,
        compress_level=10,
    )  # fmt: skip
    run = rescue(config, "config", "check")
    assert run.code == 3, run.err
    first = run.err.splitlines()[0]
    assert first.endswith("rescue.toml:15: duplicity.compress_level: must be between 0 and 9")
