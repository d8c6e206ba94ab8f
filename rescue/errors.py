"""The RescueError tree: every expected failure has a class, an exit code and one clear line.

The CLI has one handler that turns these into "rescue: error: <line>" and the exit code, so a
user never sees a traceback for something that was foreseen. The table in README.md is generated
from `EXIT_CODES` below; keep the two in step (a test checks it).
"""

from __future__ import annotations


class RescueError(Exception):
    """Base class. `exit_code` is stable: scripts and the README rely on it."""

    exit_code = 1
    meaning = "unexpected internal error (a bug: see the log)"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(RescueError):
    """A bad argument that click's own checks cannot see, such as a malformed time."""

    exit_code = 2
    meaning = "usage error (bad command line)"


class ConfigError(RescueError):
    """The settings file is missing, malformed, or holds an impossible value."""

    exit_code = 3
    meaning = "the settings file is missing or invalid"


class InsecureConfigError(ConfigError):
    """A file that holds a secret can be read by group or others."""

    exit_code = 4
    meaning = "a settings or secret file is readable by group or others"


class LockedError(RescueError):
    exit_code = 5
    meaning = "another backup, restore or recovery is already running"


class ManifestError(RescueError):
    """The host manifest cannot be written, read, or is of a newer format."""

    exit_code = 6
    meaning = "the host manifest cannot be written or read"


class UnansweredQuestionError(UsageError):
    """An unattended recovery met a question its plan does not answer; it never waits."""

    exit_code = 7
    meaning = "unattended recovery: the plan does not answer a question (its ID is named)"


class PlanError(ConfigError):
    """The recovery plan file is missing, malformed, or names something that is not there."""

    exit_code = 8
    meaning = "the recovery plan file is invalid"


class ScheduleClockError(RescueError):
    """The clock reads earlier than the newest backup: a set made now would be filed before
    the chains it follows, and retention would remove the newest backups."""

    exit_code = 9
    meaning = "the clock is earlier than the newest backup; no backup was made"


class WrongPassphraseError(RescueError):
    exit_code = 10
    meaning = "wrong encryption passphrase"


class GpgKeyError(RescueError):
    exit_code = 11
    meaning = "the GPG key is missing, or its secret key is not available"


class UnreachableError(RescueError):
    exit_code = 20
    meaning = "the backup host cannot be reached"


class AuthenticationError(RescueError):
    exit_code = 21
    meaning = "the backup host refused the user, password or key"


class UnknownHostKeyError(RescueError):
    exit_code = 22
    meaning = "the backup host's key is not pinned in the settings"


class ChangedHostKeyError(RescueError):
    exit_code = 23
    meaning = "the backup host's key differs from the pinned fingerprint"


class UntrustedCertificateError(RescueError):
    exit_code = 24
    meaning = "the FTPS or S3 server's TLS certificate is not trusted (see tls_ca_file)"


class OtherHostError(RescueError):
    """The destination holds the backups of another machine (copied settings, or two hosts
    pointed at one path): writing there would break both chains."""

    exit_code = 25
    meaning = "the destination holds another host's backups (give each host its own path)"


class MissingBucketError(RescueError):
    exit_code = 26
    meaning = "the S3 bucket does not exist (create it: rescue config check --create-bucket)"


class AccessDeniedError(RescueError):
    exit_code = 27
    meaning = "the storage denied access to the bucket or prefix (the keys' policy)"


class NoBackupError(RescueError):
    exit_code = 30
    meaning = "no backup found at the destination (or none as old as the time asked for)"


class StaleHostsError(RescueError):
    exit_code = 35
    meaning = "fleet status: a host's newest backup is older than --stale-after"


class CorruptVolumeError(RescueError):
    exit_code = 31
    meaning = "a backup volume is corrupt (hash mismatch or unreadable)"


class MissingVolumeError(RescueError):
    exit_code = 32
    meaning = "a backup volume is missing from the destination"


class PathNotInBackupError(RescueError):
    exit_code = 33
    meaning = "the path asked for is not in the backup at that time"


class RestoreTargetExistsError(RescueError):
    exit_code = 40
    meaning = "the restore target exists; add --force to overwrite it"


class RestoreDestinationRefused(RescueError):
    """A restore destination refused before any work, whatever the flags: /, an empty --to,
    rescue's own archive dir or backup destination, or a merge that would cross a mount point
    (every move of a restore is a rename on one file system)."""

    exit_code = 44
    meaning = "the restore destination is refused (/, empty, the backups themselves, a mount)"


class UndoError(RescueError):
    """An undo directory cannot be read or applied; nothing was moved."""

    exit_code = 45
    meaning = "an undo directory cannot be read or applied (nothing was moved)"


class DrillMismatchError(RescueError):
    exit_code = 41
    meaning = "the drill restored data that differs from what was backed up"


class IncompleteRestoreError(RescueError):
    """The files are restored, but some of what duplicity drops could not be put back (a file
    system without xattrs or ACLs, say); one warning line per kind says what and how many."""

    exit_code = 42
    meaning = "restored, with warnings: some xattrs, ACLs, holes or times could not be put back"


class TreeDiffersError(RescueError):
    """`rescue verify` found differences between a tree and the backup; each one is printed."""

    exit_code = 43
    meaning = "the tree differs from the backup (rescue verify printed each difference)"


class LayoutError(RescueError):
    """The disk layout cannot be read: a probe failed, or a layout record is malformed."""

    exit_code = 60
    meaning = "the disk layout cannot be read"


class DiskMappingError(RescueError):
    """No safe target disk for a source disk: too small, mounted, in use, or ambiguous."""

    exit_code = 61
    meaning = "no safe target disk for the layout (too small, in use, or ambiguous)"


class LayoutApplyError(RescueError):
    """Recreating the layout on the target disks failed; the script and its output are logged."""

    exit_code = 62
    meaning = "recreating the disk layout failed"


class RecoveryStateError(RescueError):
    """There is no recovery to resume, or its state file cannot be used."""

    exit_code = 70
    meaning = "no recovery to resume, or its state file is unusable"


class RecoveryStepError(RescueError):
    """A recovery step failed for a reason no more specific class covers (mount, chroot)."""

    exit_code = 71
    meaning = "a recovery step failed (see the report and the log)"


class VerifyError(RescueError):
    """The recovered system differs from the backup where it must not."""

    exit_code = 72
    meaning = "the recovered system differs from the backup (see the report)"


class ConfigArchiveError(RescueError):
    """A configuration archive is damaged (a checksum, a truncated file, a missing member) or
    cannot be read; nothing was written."""

    exit_code = 80
    meaning = "a configuration archive is corrupt or unreadable; nothing was written"


class ConfigRestoreRefused(RescueError):
    """A configuration restore that would be wrong: a bug report, modules whose dependencies
    are left out, a path the archive would write outside the root, or no confirmation."""

    exit_code = 81
    meaning = "a configuration restore was refused (see the line; nothing was written)"


class ConfigArchiveNotFoundError(RescueError):
    exit_code = 82
    meaning = "no configuration archive of that name"


class RemoteCopyError(RescueError):
    exit_code = 83
    meaning = "copying a configuration archive to or from the backup destination failed"


class DuplicityError(RescueError):
    """duplicity failed in a way that has no more specific class; its own line is shown."""

    exit_code = 50
    meaning = "duplicity failed for another reason (its message is shown)"


class StalledError(DuplicityError):
    """A child made no progress for too long (or hung after its own error) and was stopped;
    `tail` holds its last output lines, for a more specific error."""

    exit_code = 52
    meaning = "duplicity stopped moving and was stopped (see the line for why)"

    def __init__(self, message: str, tail: list[str] | None = None) -> None:
        super().__init__(message)
        self.tail = tail or []


class NoSpaceError(RescueError):
    """A file system filled up: the backup destination, or the target or staging of a restore.
    What was half-written is removed; the next run works once there is room."""

    exit_code = 34
    meaning = "a file system is full (the destination, or a restore's target); nothing was kept"


class CommandNotFoundError(RescueError):
    exit_code = 51
    meaning = "a required program is not installed"


class TimedOutError(RescueError):
    """A program rescue started did not finish within the time its caller gave it; it was
    stopped, with every process it had started (rescue.process.execute's timeout)."""

    exit_code = 53
    meaning = "a program did not finish in its time and was stopped"


def _all_classes() -> list[type[RescueError]]:
    seen: list[type[RescueError]] = [RescueError]
    for cls in seen:
        seen.extend(c for c in cls.__subclasses__() if c not in seen)
    return seen


EXIT_CODES: dict[int, str] = {
    0: "success",
    **{cls.exit_code: cls.meaning for cls in sorted(_all_classes(), key=lambda c: c.exit_code)},
    129: "stopped by SIGHUP (every process rescue had started was stopped first)",
    130: "interrupted by Ctrl-C (SIGINT)",
    143: "stopped by SIGTERM (every process rescue had started was stopped first)",
}
