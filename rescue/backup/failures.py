"""Turn a failed duplicity run into the one RescueError that says what went wrong.

duplicity reports an error code and text on its log-fd; the code alone is too coarse (a refused
password, a dead host and a missing file all come back as backend errors), so the text of the
ERROR records, and failing that the output, is matched against what duplicity, gpg, paramiko and
lftp say for each case. Every message names the destination, never a secret.
"""

from __future__ import annotations

import re

from rescue.backup import duplog
from rescue.errors import (
    AccessDeniedError,
    AuthenticationError,
    ChangedHostKeyError,
    CorruptVolumeError,
    DuplicityError,
    GpgKeyError,
    MissingBucketError,
    MissingVolumeError,
    NoBackupError,
    NoSpaceError,
    PathNotInBackupError,
    RescueError,
    RestoreTargetExistsError,
    UnreachableError,
    UntrustedCertificateError,
    WrongPassphraseError,
)

_NO_SPACE = re.compile(r"No space left on device|\[Errno 28\]|ENOSPC")

# Each: what duplicity (or the backend under it) says, case-insensitive; the error it means; its
# message ({dest}: the destination; {detail}: duplicity's most telling line).
_PATTERNS: list[tuple[re.Pattern[str], type[RescueError], str]] = [
    (re.compile(pattern, re.I), cls, template)
    for pattern, cls, template in [
        (
            r"Bad session key|bad passphrase|No passphrase given",
            WrongPassphraseError,
            "wrong passphrase: gpg cannot decrypt the backup at {dest}",
        ),
        (
            r"No secret key|secret key not available",
            GpgKeyError,
            "the secret GPG key needed to decrypt the backup at {dest} is not in the keyring",
        ),
        (
            r"public key not found|unusable public key|No public key",
            GpgKeyError,
            "the GPG key to encrypt with is not in the keyring",
        ),
        (
            r"Host key for server .* does not match|BadHostKey|Host key verification",
            ChangedHostKeyError,
            "the host key of {dest} does not match the pinned fingerprint",
        ),
        (
            r"InvalidAccessKeyId|SignatureDoesNotMatch",
            AuthenticationError,
            "{dest} refused the keys (access_key_id or the secret access key)",
        ),
        (
            r"NoSuchBucket|S3 bucket .* does not exist",
            MissingBucketError,
            "the bucket of {dest} does not exist (rescue config check --create-bucket makes it)",
        ),
        (
            r"AccessDenied|\(403\) when calling the Head\w+ operation: Forbidden",
            AccessDeniedError,
            "access denied to {dest}: the keys' policy does not allow this bucket or prefix "
            "(duplicity also needs s3:ListBucket on the bucket itself)",
        ),
        (
            r"Could not connect to the endpoint URL",
            UnreachableError,
            "cannot reach {dest}",
        ),
        (
            r"Certificate verification|certificate .*not trusted|Not trusted|"
            r"CERTIFICATE_VERIFY_FAILED",
            UntrustedCertificateError,
            "the TLS certificate of {dest} is not trusted: {detail}; if it is the server's own, "
            "set tls_ca_file in [destination] to a copy of it (or of its CA)",
        ),
        (
            r"Authentication failed|Login incorrect|Login authentication failed|530 |"
            r"Permission denied \(publickey|not a valid RSA private key|"
            r"private key file is encrypted",
            AuthenticationError,
            "{dest} refused the login (user, password or key)",
        ),
        (
            r"Connection refused|No route to host|timed out|Name or service not known|"
            r"Temporary failure in name resolution|Network is unreachable|Unable to connect",
            UnreachableError,
            "cannot reach {dest}",
        ),
        (
            r"hash mismatch|Invalid data|CRC error|invalid packet|unexpected EOF|"
            r"decryption failed|Error -3 while decompressing|not a gzipped file|"
            r"truncated|bad magic|invalid block type",
            CorruptVolumeError,
            "a backup volume at {dest} is corrupt: {detail}",
        ),
    ]
]


def classify(returncode: int, errors: list[duplog.Record], output: str, dest: str) -> RescueError:
    """The RescueError for a duplicity exit code, its ERROR records and its output."""
    text = "\n".join(r.message for r in errors)
    codes = {r.code for r in errors} | {returncode}
    detail = _detail(text or output)

    if _NO_SPACE.search(text + "\n" + output):
        return NoSpaceError(f"no space left on a file system while duplicity worked on {dest}")
    if duplog.RESTORE_PATH_EXISTS in codes:
        return RestoreTargetExistsError(f"the restore target exists; add --force ({detail})")
    if codes & {duplog.RESTORE_PATH_NOT_FOUND, duplog.NO_RESTORE_FILES}:
        return PathNotInBackupError(f"not in the backup at that time: {detail}")
    if duplog.MISMATCHED_HASH in codes:
        volume = _VOLUME.search(text)
        name = volume.group(1) if volume else "a volume"
        return CorruptVolumeError(
            f"{name} at {dest} is corrupt: its SHA1 hash does not match the backup's manifest"
        )
    if re.search(r"No backup chains found|No signature chains found|no_manifests", text + output):
        return NoBackupError(f"no backup found at {dest}")
    missing = _missing_volume(text + "\n" + output)
    if missing:
        return MissingVolumeError(f"volume {missing} is missing from {dest}")
    for pattern, cls, template in _PATTERNS:
        if pattern.search(text) or pattern.search(output):
            return cls(template.format(dest=dest, detail=detail))
    return DuplicityError(f"duplicity failed (exit {returncode}) at {dest}: {detail}")


_VOLUME = re.compile(r"(duplicity-(?:full|inc)[\w.-]*?\.vol\d+\.difftar(?:\.gpg|\.gz)?)")
_MISSING = re.compile(r"difftar volume (\d+) not found", re.I)


def _missing_volume(text: str) -> str | None:
    match = _MISSING.search(text)
    if match:
        return f"number {match.group(1)}"
    if re.search(r"No such file|does not exist|Access failed", text, re.I):
        named = _VOLUME.search(text)
        return named.group(1) if named else None
    return None


def _detail(text: str) -> str:
    """The most telling single line of duplicity's message."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("=====", "DEBUG:", "Traceback"))]
    for ln in lines:
        if ln.startswith("gpg:") and "encrypted" not in ln:
            return ln
    return lines[-1] if lines else "no message"
