"""The `rescue` command line: one click group, one module per command group, one error handler."""

from __future__ import annotations

from rescue.cli.main import main

__all__ = ["main"]
