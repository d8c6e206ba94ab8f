"""Running the tools that read a disk layout (blkid, lsblk, sfdisk, lvm, mdadm), and reading
their output.

Why a module of its own: every part of the capture (the disks, LVM, MD) starts its probes the same
way -- through rescue.process.execute.run, unmasked, stderr apart, a failure as a LayoutError that
quotes the tool -- and reads the same loosely typed JSON fields.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from rescue.layout import LayoutError
from rescue.process.execute import Completed, last_line, run


def run_probe(argv: Sequence[str], env: dict[str, str] | None = None) -> Completed:
    """Run a probe through rescue.process.execute: its stdout unmasked, its stderr apart.

    execute.run masks every registered secret in a child's output; a passphrase that happens to
    equal part of a label or a name must not change the recorded layout ("swapper" would become
    "swa***er"), so probes ask for the exact output. The log stays masked. stderr is kept apart
    so that a tool's warnings (lvm's, sfdisk's) never land inside the JSON it prints.
    """
    return run(argv, env=env, mask_output=False, separate_stderr=True)


def run_probe_ok(argv: Sequence[str], env: dict[str, str] | None = None) -> str:
    """Run a probe and return its stdout; LayoutError (its last words) if it fails."""
    return run_probe(argv, env=env).check(LayoutError).output


def parse_json_output(output: str, tool: str = "the tool") -> Any:
    """The JSON document a tool printed on its stdout.

    One leniency: lvm's command log (report_command_log) can end its array with a trailing
    comma, which JSON does not allow; such commas are dropped before a second try.
    """
    try:
        return json.loads(output)
    except json.JSONDecodeError as first:
        try:
            return json.loads(re.sub(r",(\s*[\]}])", r"\1", output))
        except json.JSONDecodeError:
            said = last_line(output, "no output")
            raise LayoutError(f"{tool} printed no JSON ({first}): {said}") from first


def int_field(value: Any) -> int | None:
    """lsblk and lvm print numbers as numbers or as strings depending on their version."""
    if value is None or value == "":
        return None
    return int(value)


def text_field(value: Any) -> str | None:
    """A tool's text field, trimmed, with empty meaning absent."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None
