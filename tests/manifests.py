"""Manifests as rescue wrote them over time, for the tests that prove they still load.

tests/golden/manifest-v1.json was written by rescue.recovery.manifest.write as of eaf9cb4 (before
the manifest had a typed model) for a generated root and a layout with LVM on MD, LUKS in an LV,
btrfs, swap and an ESP. The older shapes are that file with what later code added taken out,
as `git log -p --follow rescue/recovery/manifest.py` shows it added."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rescue.layout.model import Layout, layout_to_dict

GOLDEN = Path(__file__).parent / "golden" / "manifest-v1.json"


def current_shape() -> dict[str, Any]:
    """The golden manifest, as plain JSON data."""
    data: dict[str, Any] = json.loads(GOLDEN.read_text())
    return data


def first_shape() -> dict[str, Any]:
    """The golden manifest as the first manifest code (08240e7) wrote it: no metadata counts
    (added with the records, 83a3c59), no host.kernels nor excluded times (added with exact
    times, 9784a55), and host.kernel always the running kernel's name."""
    data = current_shape()
    del data["metadata"]
    del data["host"]["kernels"]
    data["host"]["kernel"] = "5.10.0-9"
    for entry in data["excluded"]:
        entry.pop("mtime_ns", None)
        entry.pop("atime_ns", None)
    return data


def with_layout(layout: Layout, **fields: Any) -> dict[str, Any]:
    """A complete current manifest (the golden one) that records layout, with fields replaced:
    what a test that is about the layout writes as its manifest."""
    data = current_shape()
    data["layout"] = layout_to_dict(layout)
    data["layout_error"] = None
    data.update(fields)
    return data
