"""`rescue live`: what the rescue ISO's consoles run at boot (see rescue.live.console)."""

from __future__ import annotations

import sys

import click

from rescue.live.cmdline import read_cmdline
from rescue.live.console import console_enabled, primary_console, run_console

PARAMETERS = """\b
Kernel parameters (add them at the boot menu: Tab in isolinux, e in GRUB):
  rescue.plan=PATH|URL   unattended recovery with this plan: PATH on a disk labelled
                         RESCUEPLAN, on the ISO or in the rescue system; or an http(s) URL,
                         or sftp://USER@HOST/PATH?fingerprint=SHA256:...[&key=KEYFILE]
  rescue.net=dhcp        the network (default), or IFACE:ADDR/PREFIX,GW,DNS, as in
                         rescue.net=ens3:192.0.2.10/24,192.0.2.1,192.0.2.53
  rescue.after=reboot|poweroff|shell
                         what follows a successful unattended recovery
  rescue.ssh=1           start sshd with a one-time root password shown on the console
"""


@click.group("live", epilog=PARAMETERS)
def live_group() -> None:
    """The rescue ISO's boot consoles (run by rescue-console@TTY.service)."""


@live_group.command("console", epilog=PARAMETERS)
@click.argument("tty")
def console(tty: str) -> None:
    """Set the rescue system up once, run the unattended recovery if a plan was given, then
    offer the guided recovery, a shell, reboot and power off on this console."""
    sys.exit(run_console(tty))


@live_group.command("enabled")
@click.argument("tty")
def enabled(tty: str) -> None:
    """Exit 0 if TTY should run a rescue console (tty1, or a console the kernel writes to)."""
    sys.exit(0 if console_enabled(tty) else 1)


@live_group.command("show", epilog=PARAMETERS)
def show() -> None:
    """The rescue.* parameters of this boot, as understood, and any problem with them."""
    options = read_cmdline()
    click.echo(f"plan:    {options.plan or '(none: guided recovery)'}")
    click.echo(f"net:     {options.net or 'dhcp (default)'}")
    click.echo(f"after:   {options.after or '(the plan says, else ask)'}")
    click.echo(f"ssh:     {'yes' if options.ssh else 'no'}")
    click.echo(f"primary console: {primary_console()}")
    for problem in options.problems:
        click.echo(f"problem: {problem}")
