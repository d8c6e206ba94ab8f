"""`rescue.ssh=1`: let a colleague log in to the rescue system while the admin watches.

The ISO carries no SSH host keys and no password (the image build removes both), so each boot
makes its own host keys and a random one-time root password, valid until the rescue system
powers off. Both are shown on the console, the password never in a log. The fingerprints are
printed too, so the helper can check that they reached this machine.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from rescue.errors import RecoveryStepError
from rescue.process.execute import register_secret, run, run_checked

SSHD_DROP_IN = Path("/etc/ssh/sshd_config.d/rescue-remote-help.conf")
SSHD_CONFIG = "PermitRootLogin yes\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\n"
# Easy to read out over the phone: no 0/O, 1/l/I.
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
PASSWORD_LENGTH = 16


def one_time_password() -> str:
    """A random password in four groups of four: about 79 bits."""
    chars = "".join(secrets.choice(ALPHABET) for _ in range(PASSWORD_LENGTH))
    return "-".join(chars[i : i + 4] for i in range(0, PASSWORD_LENGTH, 4))


def start_sshd() -> tuple[str, list[str]]:
    """Host keys, the password and sshd; returns the password and the host key fingerprints."""
    password = one_time_password()
    register_secret(password)
    run_checked(["ssh-keygen", "-A"], "making the SSH host keys", RecoveryStepError)
    # chpasswd reads the secret on stdin, never from argv.
    run(["chpasswd"], stdin_secret=f"root:{password}", separate_stderr=True).check(
        RecoveryStepError, "setting the one-time password"
    )
    SSHD_DROP_IN.parent.mkdir(parents=True, exist_ok=True)
    SSHD_DROP_IN.write_text(SSHD_CONFIG)
    run_checked(["systemctl", "restart", "ssh.service"], "starting sshd", RecoveryStepError)
    fingerprints = []
    for key in sorted(Path("/etc/ssh").glob("ssh_host_*_key.pub")):
        listed = run(["ssh-keygen", "-lf", str(key)], mask_output=False)
        if listed.returncode == 0:
            fingerprints.append(listed.output.strip())
    return password, fingerprints
