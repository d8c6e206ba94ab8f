"""What each console of the rescue ISO runs at boot (rescue-console@tty1 and @ttyS0).

Once per boot, whichever console comes first sets the rescue system up: remote help (rescue.ssh=1),
the network (rescue.net=, DHCP by default) and the plan (rescue.plan=). With a plan, the primary
console (the kernel's /dev/console, the last console= given) runs the unattended recovery; the
other console says so. Then every console shows a small menu: the guided recovery (which resumes
an unfinished one), a shell, reboot or power off. Nothing here ends the console: a failed step,
a bad parameter or a lost network is one line, and the menu comes back, so an admin at the
console is never left without a way on. Leaving the shell returns to the menu; inside it,
`rescue recover --resume` continues a stopped recovery.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rescue import __version__
from rescue.errors import RescueError
from rescue.live.cmdline import LiveOptions, read_cmdline
from rescue.process.execute import run
from rescue.recovery.recovery_plan import load_plan
from rescue.recovery.runner import State
from rescue.steps.context import DEFAULT_WORK_DIR, STATE_FILE

RUN_DIR = Path("/run/rescue")
SETUP_FILE = RUN_DIR / "live-setup.json"
PASSWORD_FILE = RUN_DIR / "remote-help-password"
UNATTENDED_FILE = RUN_DIR / "unattended-started"
ACTIVE_CONSOLES = Path("/sys/class/tty/console/active")
READY_MARKER = "RESCUE-ISO-READY"
DONE_MARKER = "RESCUE-RECOVERY-EXIT"
RESCUE = [sys.executable, "-m", "rescue"]
AFTER_DELAY = 5  # seconds to read the outcome before the machine goes
MENU = """
  Enter  guided recovery (continues an unfinished one; Ctrl-C at a question: a shell)
  s      shell: `rescue recover --resume` continues a stopped recovery; `exit` comes back here
  r      reboot
  p      power off
"""

Say = Callable[[str], None]


def say(text: str) -> None:
    print(text, flush=True)


def console_enabled(tty: str, active: Path = ACTIVE_CONSOLES) -> bool:
    """tty1 always (the screen); another tty only if the kernel writes its console there, so a
    machine without a serial port gets no console waiting on a UART that does not exist."""
    if tty == "tty1":
        return True
    try:
        return tty in active.read_text().split()
    except OSError:
        return False


def primary_console(active: Path = ACTIVE_CONSOLES) -> str:
    """The kernel's /dev/console: the last console= on the command line, listed last."""
    try:
        names = active.read_text().split()
    except OSError:
        names = []
    name = names[-1] if names else "tty1"
    return "tty1" if name == "tty0" else name


@contextmanager
def _setup_lock() -> Iterator[None]:
    RUN_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (RUN_DIR / "live-setup.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def setup(options: LiveOptions, out: Say = say) -> dict[str, object]:
    """Remote help, network and plan, each on its own: one failing does not stop the others.

    Returns what was found: "plan" (a local path, or None) and "errors" (one line each)."""
    errors: list[str] = list(options.problems)
    lines: list[str] = []
    result: dict[str, object] = {"plan": None, "errors": errors, "lines": lines}
    try:
        lines += _network(options.net)
    except RescueError as exc:
        errors.append(f"network: {exc}")
    if options.ssh:
        try:
            lines += _remote_help()
        except RescueError as exc:
            errors.append(f"remote help: {exc}")
    if options.plan:
        from rescue.live.plan_source import fetch_plan

        try:
            path, origin = fetch_plan(options.plan)
            result["plan"] = str(path)
            lines.append(f"plan {path} ({origin})")
        except RescueError as exc:
            errors.append(f"plan: {exc}")
    for line in lines:
        out(f"rescue: {line}")
    for line in errors:
        out(f"rescue: error: {line}")
    return result


def _network(spec: str | None) -> list[str]:
    from rescue.netconfig.setup import bring_up
    from rescue.netconfig.spec import parse_net_spec

    return bring_up(parse_net_spec(spec or "dhcp"))


def _remote_help() -> list[str]:
    from rescue.live.remote_help import start_sshd

    password, fingerprints = start_sshd()
    fd = os.open(PASSWORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return ["sshd started for remote help", *(f"host key {f}" for f in fingerprints)]


def _shared_setup(options: LiveOptions, out: Say) -> dict[str, object]:
    """Setup runs once per boot; the console that comes second shows what the first found."""
    with _setup_lock():
        if SETUP_FILE.exists():
            result = json.loads(SETUP_FILE.read_text())
            for line in result.get("lines", []):
                out(f"rescue: {line}")
            for line in result.get("errors", []):
                out(f"rescue: error: {line}")
        else:
            result = setup(options, out)
            SETUP_FILE.write_text(json.dumps(result))
    if PASSWORD_FILE.exists():
        out(f"rescue: remote help: ssh root@<this machine>, one-time password "
            f"{PASSWORD_FILE.read_text().strip()}")  # fmt: skip
    return result


def _terminal(argv: list[str]) -> int:
    """Run argv on this console (it owns the terminal while it runs); its exit code. Through
    the process gate, so it is stopped with the console and gets no secret of ours."""
    return run(argv, interactive=True).returncode


def _claim_unattended() -> bool:
    """True for the one console (per boot) that runs the unattended recovery."""
    try:
        os.close(os.open(UNATTENDED_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return False
    return True


def unattended(plan: str, after: str | None, out: Say = say) -> int:
    """The plan's recovery, on this console. The console, not the recovery, reboots or powers
    off afterwards, so the outcome line is always printed (and seen) before the machine goes."""
    after = after or _planned_after(plan)
    argv = [*RESCUE, "recover", "--plan", plan, "--after", "none"]
    out(f"rescue: unattended recovery with the plan {plan}")
    code = _terminal(argv)
    out(f"{DONE_MARKER} {code}")
    if code:
        out("rescue: the unattended recovery stopped; read the error above, fix its cause from "
            "the shell (menu: s), then run `rescue recover --resume`")  # fmt: skip
    elif after in ("reboot", "poweroff"):
        out(f"rescue: recovery done; {after} in {AFTER_DELAY} s")
        time.sleep(AFTER_DELAY)
        _terminal(["systemctl", after])
    elif after == "shell":
        shell(out)
    return code


def _planned_after(plan: str) -> str | None:
    """The plan's `after`, when the kernel command line gives none."""
    try:
        return load_plan(Path(plan)).after
    except RescueError:
        return None  # recover itself reports a bad plan


def guided(out: Say = say) -> int:
    """`rescue recover`, resuming a recorded unfinished recovery instead of refusing it."""
    argv = [*RESCUE, "recover"]
    state_path = Path(DEFAULT_WORK_DIR) / STATE_FILE
    if state_path.exists():
        try:
            if State.load(state_path).first_unfinished() is not None:
                argv.append("--resume")
        except RescueError:
            pass  # recover itself explains a broken state file
    code = _terminal(argv)
    if code:
        out(f"rescue: the recovery stopped (exit {code}); Enter continues it")
    return code


def shell(out: Say = say) -> None:
    out("rescue: a shell; `rescue recover --resume` continues a stopped recovery, "
        "`exit` comes back to the menu")  # fmt: skip
    _terminal(["/bin/bash", "--login"])


def menu(out: Say = say, read: Callable[[str], str] = input) -> None:
    """The console's loop: never returns while there is a terminal to read from."""
    while True:
        out(MENU)
        try:
            choice = read("rescue> ").strip().lower()
        except EOFError:
            time.sleep(5)  # no terminal: nothing to do but stay up for the other console
            continue
        except KeyboardInterrupt:
            out("")
            continue
        if choice == "":
            guided(out)
        elif choice == "s":
            shell(out)
        elif choice == "r":
            _terminal(["systemctl", "reboot"])
        elif choice == "p":
            _terminal(["systemctl", "poweroff"])
        else:
            out(f"rescue: {choice!r} is not a choice")


def run_console(tty: str, out: Say = say) -> int:
    """Everything a console does, from the banner on."""
    out(f"{READY_MARKER} version={__version__} console={tty}")
    options = read_cmdline()
    result = _shared_setup(options, out)
    plan = result.get("plan")
    if options.plan and isinstance(plan, str):
        if tty == primary_console() and _claim_unattended():
            unattended(plan, options.after, out)
        elif tty != primary_console():
            out(f"rescue: the unattended recovery runs on {primary_console()}")
    elif not options.plan:
        out("rescue: no rescue.plan given: choose the guided recovery below")
    menu(out)
    return 0
