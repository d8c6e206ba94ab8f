"""The script under construction: its lines, numbered steps and header, what each source device
is called in it, and the quoting every value and comment goes through (labels and names can hold
anything). The shell functions every script starts with live in helpers.sh, package data next to
this module (pyproject.toml ships it)."""

from __future__ import annotations

import shlex
from functools import cache
from importlib.resources import files

from rescue.layout.model import Layout, LuksContainer
from rescue.layout.recreate.plan import DiskPlan
from rescue.layout.summary import layout_summary
from rescue.units import human_size

# The environment variable that names the file holding the passphrase of recreated LUKS devices.
LUKS_PASSPHRASE_VAR = "RESCUE_LUKS_PASSPHRASE_FILE"


def shell_word(value: str | int) -> str:
    """One shell word for any value."""
    return shlex.quote(str(value))


def comment_text(text: str) -> str:
    """Text that is safe inside a # comment: a newline in a label must not end the comment."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


@cache
def helper_lines() -> tuple[str, ...]:
    """The lines of helpers.sh, which every script carries before its steps: a real shell file,
    so shellcheck can read it and an admin can diff it against an edited script."""
    text = (files("rescue.layout.recreate") / "helpers.sh").read_text(encoding="utf-8")
    return tuple(text.strip("\n").splitlines())


class Script:
    """Builds the script text step by step, keeping what each source device is called in it."""

    def __init__(self, layout: Layout, plans: list[DiskPlan], first_step: int = 1) -> None:
        self.layout = layout
        self.plans = plans
        self.lines: list[str] = []
        self.step = first_step - 1
        # Source device path -> the shell word that names the recreated device.
        self.devices: dict[str, str] = {}
        # Source device paths that are not recreated (their disk has no target).
        self.skipped: set[str] = set()
        # Source device paths that the stacking steps wrote a signature on.
        self.stacked: set[str] = set()
        self.tools: set[str] = {"readlink", "awk", "wipefs", "sfdisk", "partx"}
        self.checks: list[str] = []
        self.releases: list[str] = []
        self.notes: list[str] = []
        # LUKS containers the script formats: step 1 then insists on a passphrase file.
        self.luks_made: list[LuksContainer] = []

    def emit(self, *lines: str) -> None:
        self.lines.extend(lines)

    def section(self, title: str) -> None:
        self.step += 1
        self.emit(
            "", "# " + "-" * 94, f"# Step {self.step}: {comment_text(title)}", "# " + "-" * 94
        )


def disk_words(plan: DiskPlan) -> str:
    source = plan.source
    what = f"{source.table}, {len(source.partitions)} partitions" if source.table else "no table"
    return f"{source.path} ({human_size(source.size_bytes)}, {what})"


def write_header(script: Script, grow: bool) -> None:
    script.emit(
        "#!/bin/sh",
        "# Recreate the disk layout that rescue recorded at backup time on blank disks.",
        "#",
        "# Read it before you run it: it DESTROYS everything on the target disks below.",
        "# Edit it if the machine differs; it can be run again after a partial run.",
        "#",
        "# Source disk -> target disk:",
    )
    for plan in script.plans:
        target = plan.target
        line = f"#   {disk_words(plan)} -> {target.path} ({human_size(target.size_bytes)})"
        if plan.grown:
            numbers = ", ".join(str(n) for n in sorted(plan.grown))
            line += f": partition {numbers} grows to the end of the disk"
        elif target.size_bytes > plan.source.size_bytes and plan.source.table:
            line += ": sizes kept exactly" + ("" if grow else " (no growth asked for)")
        script.emit(comment_text(line))
    mapped = {p.source.path for p in script.plans}
    for disk in script.layout.disks:
        if disk.path not in mapped:
            script.emit(
                comment_text(f"#   {disk.path} ({human_size(disk.size_bytes)}): not recreated")
            )
    script.emit("#", "# The recorded layout:")
    script.emit(*(comment_text(f"#   {line}") for line in layout_summary(script.layout)))
    script.emit("", "set -eu", "", "# The target disks (edit here to use other disks).")
    for plan in script.plans:
        script.emit(
            f"{plan.var}={shell_word(plan.target.path)}  # was {comment_text(plan.source.path)}"
        )
