"""Running the tools that read a disk layout (blkid, lsblk, sfdisk, lvm, mdadm), and reading
their output.

Why a module of its own: every part of the capture (the disks, LVM, MD) starts its probes the same
way -- through rescue.execute.run, unmasked, a failure as a LayoutError that quotes the tool --
and reads the same loosely typed JSON fields.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from rescue.execute import Completed, run
from rescue.layout import LayoutError

# --- running the tools ----------------------------------------------------------------------


def output_tail(output: str, lines: int = 3) -> str:
    """The last few lines of a tool's output, on one line, for an error message."""
    kept = [ln.strip() for ln in output.strip().splitlines() if ln.strip()][-lines:]
    return " / ".join(kept) or "no output"


def run_probe(argv: Sequence[str], env: dict[str, str] | None = None) -> Completed:
    """Run a probe through rescue.execute and get its output unmasked.

    execute.run masks every registered secret in a child's output; a passphrase that happens to
    equal part of a label or a name must not change the recorded layout ("swapper" would become
    "swa***er"), so probes ask for the exact output. The log stays masked.
    """
    return run(argv, env=env, mask_output=False)


def run_probe_ok(argv: Sequence[str], env: dict[str, str] | None = None) -> str:
    """Run a probe and return its output; LayoutError if it fails."""
    result = run_probe(argv, env=env)
    if result.returncode != 0:
        raise LayoutError(
            f"{argv[0]} failed (exit {result.returncode}): {output_tail(result.output)}"
        )
    return result.output


def parse_json_output(output: str) -> Any:
    """The JSON document in a tool's output, which run() merges with its stderr.

    Why lenient: lvm writes its warnings to stderr while it prints the report, so they can land
    between the report's lines, and its error reports end an array with a trailing comma. Lines
    that cannot be part of a pretty-printed JSON document are dropped before a second try.
    """
    text = output.strip()
    start = text.find("{")
    if start < 0:
        raise LayoutError(f"expected JSON, got: {output_tail(output)}")
    try:
        return json.JSONDecoder().raw_decode(text[start:])[0]
    except json.JSONDecodeError:
        pass
    kept = [ln for ln in text[start:].splitlines() if re.match(r'\s*[\[\]{}",]', ln)]
    cleaned = re.sub(r",(\s*[\]}])", r"\1", "\n".join(kept))
    try:
        return json.JSONDecoder().raw_decode(cleaned)[0]
    except json.JSONDecodeError as exc:
        raise LayoutError(f"cannot parse the JSON output ({exc}): {output_tail(output)}") from exc


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
