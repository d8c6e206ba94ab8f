"""apply_script: the script written where the admin can rerun it, run with sh -x, its output
logged."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from rescue.errors import LayoutApplyError
from rescue.process.execute import last_line, run

log = logging.getLogger("rescue.layout")

SCRIPT_NAME = "layout-recreate.sh"
OUTPUT_NAME = "layout-recreate.log"


def _last_error(output: str) -> str:
    """The last line the script or a tool printed, without sh -x's trace lines (the output
    stays merged: the log must show each error under the command that printed it)."""
    said = [line for line in output.splitlines() if not line.strip().startswith("+")]
    return last_line("\n".join(said), "no error message")


def apply_script(script: str, log_dir: Path, *, env: Mapping[str, str] | None = None) -> None:
    """Write script to log_dir (mode 0700, so the admin can rerun it) and run it with sh -x.

    Its traced output goes to the log and to layout-recreate.log beside it. A non-zero exit
    raises LayoutApplyError with the last error line and the script's path. env adds variables,
    e.g. RESCUE_LUKS_PASSPHRASE_FILE.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / SCRIPT_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o700)
        out.write(script)
    log.info("recreating the disk layout with %s", path)
    result = run(["sh", "-x", str(path)], env=env)
    output_path = log_dir / OUTPUT_NAME
    output_path.write_text(result.output + "\n")
    if result.returncode != 0:
        raise LayoutApplyError(
            f"recreating the disk layout failed (exit {result.returncode}): "
            f"{_last_error(result.output)} (script {path}, output {output_path})"
        )
