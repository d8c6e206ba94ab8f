"""duplicity's failures, as 3.2.1 reports them, each become one RescueError with its exit code."""

from __future__ import annotations

import pytest

from rescue import errors
from rescue.backup import duplog
from rescue.backup.failures import classify

DEST = "sftp://backup@127.0.0.1:2222//srv/b"


def record(code: int, *text: str) -> duplog.Record:
    return duplog.Record("ERROR", code, text=list(text))


@pytest.mark.parametrize(
    ("returncode", "records", "output", "cls", "words"),
    [
        (
            31,
            [record(31, "GPGError: GPG Failed", "gpg: decryption failed: Bad session key")],
            "",
            errors.WrongPassphraseError,
            "wrong passphrase",
        ),
        (
            31,
            [record(31, "gpg: decryption failed: No secret key")],
            "",
            errors.GpgKeyError,
            "secret GPG key",
        ),
        (
            21,
            [
                record(
                    21,
                    "Invalid data - SHA1 hash mismatch for file:",
                    " duplicity-full.20261126T083350Z.vol1.difftar.gpg",
                )
            ],
            "",
            errors.CorruptVolumeError,
            "duplicity-full.20261126T083350Z.vol1.difftar.gpg",
        ),
        (
            1,
            [record(1, "difftar volume 1 not found in backup.")],
            "",
            errors.MissingVolumeError,
            "volume number 1 is missing",
        ),
        (
            19,
            [record(19, "nothere not found in archive - no files restored.")],
            "",
            errors.PathNotInBackupError,
            "nothere",
        ),
        (
            11,
            [record(11, "Restore destination directory /x already exists.")],
            "",
            errors.RestoreTargetExistsError,
            "--force",
        ),
        (
            50,
            [
                record(
                    50,
                    "ssh connection to root@127.0.0.1:2222 failed: [Errno 111] Connection refused",
                )
            ],
            "",
            errors.UnreachableError,
            "cannot reach",
        ),
        (
            50,
            [record(50, "ssh connection failed: Authentication failed.")],
            "",
            errors.AuthenticationError,
            "refused the login",
        ),
        (
            23,
            [],
            "lftp: Login failed: 530 Login incorrect.",
            errors.AuthenticationError,
            "refused the login",
        ),
        (
            30,
            [record(30, "Something nobody foresaw")],
            "",
            errors.DuplicityError,
            "Something nobody foresaw",
        ),
    ],
)
def test_classify(
    returncode: int,
    records: list[duplog.Record],
    output: str,
    cls: type[errors.RescueError],
    words: str,
) -> None:
    error = classify(returncode, records, output, DEST)
    assert type(error) is cls
    assert words in str(error)
    assert "\n" not in str(error)


def test_exit_codes_are_distinct_and_in_the_readme() -> None:
    from pathlib import Path

    classes = [errors.RescueError]
    for cls in classes:
        classes.extend(cls.__subclasses__())
    codes = [c.exit_code for c in classes]
    assert len(set(codes)) == len(codes), "two error classes share an exit code"
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for code, meaning in errors.EXIT_CODES.items():
        assert f"| {code} | {meaning} |" in readme
