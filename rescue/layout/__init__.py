"""Disk layout: the model of a host's disks (model.py) and how it is read (capture.py).

Backup time captures the layout into the manifest; bare-metal recovery later recreates it on blank
disks.
"""

from __future__ import annotations

from rescue.errors import LayoutError

__all__ = ["LayoutError"]
