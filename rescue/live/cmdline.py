"""The rescue.* kernel parameters: how an admin (or a PXE/VM setup) steers a boot of the ISO.

    rescue.plan=URL|PATH   unattended recovery with this plan (see rescue.live.plan_source)
    rescue.net=dhcp|IFACE:ADDR/PREFIX,GW,DNS
    rescue.after=reboot|poweroff|shell
    rescue.ssh=1           sshd with a one-time root password, for remote help

Unknown rescue.* parameters are reported rather than ignored: a typo such as `rescue.plna=`
would otherwise silently turn an unattended recovery into a guided one that waits for ever.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from rescue.errors import PlanError
from rescue.recovery.recovery_plan import AFTER_CHOICES

CMDLINE = Path("/proc/cmdline")
KNOWN = ("plan", "net", "after", "ssh")
# "none" means "leave the rescue system as it is", which on a console is the shell.
LIVE_AFTER = tuple(choice for choice in AFTER_CHOICES if choice != "none")


@dataclass
class LiveOptions:
    """What this boot was asked to do; None means "not given" (ask, or the default)."""

    plan: str | None = None
    net: str | None = None
    after: str | None = None
    ssh: bool = False
    problems: list[str] = field(default_factory=list)


def parse_cmdline(text: str) -> LiveOptions:
    """The rescue.* parameters of a kernel command line. Bad values become problems (one line
    each), not exceptions: the console must still come up and show them."""
    try:
        words = shlex.split(text)
    except ValueError:  # an unbalanced quote: the kernel itself splits on blanks
        words = text.split()
    options = LiveOptions()
    for word in words:
        if not word.startswith("rescue."):
            continue
        key, has_value, value = word[len("rescue.") :].partition("=")
        if key not in KNOWN:
            options.problems.append(
                f"unknown kernel parameter rescue.{key} (known: "
                + ", ".join(f"rescue.{k}" for k in KNOWN)
                + ")"
            )
        elif key == "ssh":
            if value not in ("", "0", "1") and has_value:
                options.problems.append(f"rescue.ssh={value}: must be 1 or 0")
            options.ssh = value in ("", "1")
        elif not value:
            options.problems.append(f"rescue.{key} needs a value, as in rescue.{key}=...")
        elif key == "after" and value not in LIVE_AFTER:
            options.problems.append(f"rescue.after={value}: must be one of {', '.join(LIVE_AFTER)}")
        else:
            setattr(options, key, value)
    return options


def read_cmdline(path: Path = CMDLINE) -> LiveOptions:
    """This boot's options."""
    try:
        return parse_cmdline(path.read_text())
    except OSError as exc:
        raise PlanError(f"cannot read the kernel command line {path}: {exc.strerror}") from None
