"""Which of duplicity's difference lines the recovery's verify step expects (recovery made or
rewrote the path on purpose) and which it reports. The lines are duplicity 3.2's own wording
(duplicity.path.ROPath.compare_verbose); the whole step runs in test_recover_e2e.py."""

from __future__ import annotations

import pytest

from rescue.steps.verify import _expected, _times_ignored

MADE = {"boot", "var/log/rescue", "tmp", "etc/fstab", "etc/fstab.before-rescue"}
TIMES = _times_ignored(MADE)


@pytest.mark.parametrize(
    ("below", "line"),
    [
        ("", "File boot/grub/grub.cfg has mtime Sun Dec  6 10:00:00 2026, expected Sat ..."),
        ("", "New file var/log/rescue/recover.log"),
        ("", "New file tmp"),
        ("", "File var/log has mtime Sun Dec  6 10:00:00 2026, expected Sat Dec  5 ..."),
        ("", "File . has mtime Sun Dec  6 10:00:00 2026, expected Sat Dec  5 ..."),
        ("", "File var/tmp has mtime Sun Dec  6 10:00:00 2026, expected Sat Dec  5 ..."),
        ("etc", "File fstab has mtime Sun Dec  6 10:00:00 2026, expected Sat Dec  5 ..."),
        ("etc", "New file fstab.before-rescue"),
        ("etc", "File . has mtime Sun Dec  6 10:00:00 2026, expected Sat Dec  5 ..."),
    ],
)
def test_what_recovery_made_or_rewrote_is_expected(below: str, line: str) -> None:
    assert _expected(line, MADE, TIMES, below)


@pytest.mark.parametrize(
    ("below", "line"),
    [
        ("", "File etc/passwd has mtime Sun Dec  6 10:00:00 2026, expected Sat ..."),
        ("", "File usr/share/boot/x is missing"),  # not boot/: only a path that starts there
        ("", "File var/log has permissions 0700, expected 0755"),  # a parent's mode still counts
        ("", "File var/log/syslog is missing"),
        ("", "New file var/tmp/left-behind"),  # update-initramfs's scratch: its mtime only
        ("etc", "File hosts has permissions 0600, expected 0644"),
        ("etc", "File fstab2 is missing"),
    ],
)
def test_every_other_difference_is_reported(below: str, line: str) -> None:
    assert not _expected(line, MADE, TIMES, below)
