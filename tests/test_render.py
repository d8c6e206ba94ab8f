"""rescue's tables print data literally: a MAC address, a path or a name is never read as rich
markup or an emoji code (CI once saw 72:0b:06:cd:c5:9d printed as 72:0b:06💿c5:9d)."""

from __future__ import annotations

import pytest

from rescue.cli import render


def test_a_table_prints_its_cells_literally(capsys: pytest.CaptureFixture[str]) -> None:
    cells = ["72:0b:06:cd:c5:9d", "/srv/[bold]odd[/bold] :smile: name"]
    render.table("t", ["mac", "path"], [cells])
    out = capsys.readouterr().out
    for cell in cells:
        assert cell in out, out
