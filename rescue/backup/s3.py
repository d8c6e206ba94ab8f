"""S3-compatible object storage: rescue's own connection to the bucket, and its errors.

Why rescue talks to the bucket itself, beside duplicity's boto3 backend: duplicity does not
create buckets, reads a missing one, wrong keys or a refused prefix only after its retries (30 s
each), and says so in a traceback. rescue checks the bucket and the prefix first, in one request,
and turns what the storage says into one line and an exit code. Its own small files (the lock,
the host and shard records, the configuration archives) go through this connection too
(rescue.backup.remotedir).

An object store has no directories: a "directory" is a key prefix, and rescue's lock directory
is an empty object named `name/`, made with a conditional PUT (If-None-Match: *), the store's
one atomic "create if absent".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rescue.config import Settings
from rescue.errors import (
    AccessDeniedError,
    AuthenticationError,
    MissingBucketError,
    RescueError,
    UnreachableError,
    UntrustedCertificateError,
)
from rescue.placement.scratch import run_dir

# boto3's client class is made at run time; there is nothing to name it by
S3Client = Any

CONNECT_TIMEOUT = 15
# boto3 1.36 and later add checksums that older S3-compatible servers refuse; only when the
# request needs one (duplicity's own advice, gitlab.com/duplicity/duplicity/-/issues/870).
CHECKSUM_ENV = {
    "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
    "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
}
# S3's error codes, by what they mean to the admin.
AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
DENIED_CODES = {"AccessDenied", "AllAccessDisabled", "403"}
MISSING_CODES = {"NoSuchBucket", "404"}


@dataclass(frozen=True)
class Place:
    """Where the backups are in the store."""

    endpoint: str | None
    bucket: str
    prefix: str  # no leading or trailing slash

    @property
    def display(self) -> str:
        """A path-style URL: the endpoint's, or s3:// for AWS itself."""
        return f"{self.endpoint or 's3:/'}/{self.bucket}/{self.prefix}"


def place(settings: Settings) -> Place:
    dest = settings.destination
    assert dest.bucket is not None  # the settings model requires it for method s3
    return Place(dest.endpoint_url, dest.bucket, dest.path.strip("/"))


def endpoint_address(settings: Settings) -> tuple[str, int]:
    """The host and port a connection goes to (AWS's own when no endpoint_url is set)."""
    from urllib.parse import urlsplit

    url = urlsplit(settings.destination.endpoint_url or "https://s3.amazonaws.com")
    assert url.hostname is not None  # the settings model checks endpoint_url's shape
    return url.hostname, url.port or (443 if url.scheme == "https" else 80)


def duplicity_url(settings: Settings) -> str:
    """duplicity's boto3 backend: s3:///bucket/prefix (the endpoint is an option of its own)."""
    where = place(settings)
    return f"s3:///{where.bucket}/{where.prefix}"


def duplicity_options(settings: Settings) -> list[str]:
    dest = settings.destination
    options = []
    if dest.endpoint_url:
        options.append(f"--s3-endpoint-url={dest.endpoint_url}")
    if dest.region:
        options.append(f"--s3-region-name={dest.region}")
    return options


def duplicity_env(settings: Settings) -> dict[str, str]:
    """The plain (not secret) variables duplicity's boto3 needs: the CA, the checksums, and
    for an endpoint of its own, path-style addressing (http://host/bucket/key): boto3 would
    otherwise ask for bucket.host, a name that only a wildcard DNS entry would resolve."""
    env = dict(CHECKSUM_ENV)
    if settings.destination.tls_ca_file:
        env["AWS_CA_BUNDLE"] = settings.destination.tls_ca_file
    if settings.destination.endpoint_url:
        config = run_dir() / "aws-config"
        config.write_text("[default]\ns3 =\n    addressing_style = path\n")
        env["AWS_CONFIG_FILE"] = str(config)
    return env


def secret_env(settings: Settings) -> dict[str, str]:
    key_id, secret = settings.s3_credentials()
    return {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}


def client(settings: Settings) -> S3Client:
    """A boto3 client for the destination, with the settings' keys, CA and region."""
    import boto3  # here, not at the top: it costs a quarter of a second at every start
    from botocore.config import Config

    dest = settings.destination
    key_id, secret = settings.s3_credentials()
    return boto3.client(
        "s3",
        endpoint_url=dest.endpoint_url,
        region_name=dest.region or "us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        verify=dest.tls_ca_file or True,
        config=Config(
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=60,
            retries={"max_attempts": 2, "mode": "standard"},
            s3={"addressing_style": "path" if dest.endpoint_url else "auto"},
            request_checksum_calculation="when_required",  # as CHECKSUM_ENV says, for duplicity
            response_checksum_validation="when_required",
        ),
    )


@contextmanager
def errors(where: Place) -> Iterator[None]:
    """Turn what boto3 raises into rescue's one-line errors."""
    from botocore import exceptions as bx

    try:
        yield
    except bx.SSLError as exc:
        raise UntrustedCertificateError(
            f"the TLS certificate of {where.endpoint} is not trusted ({_reason(exc)}): set "
            "tls_ca_file in [destination] to a copy of it (or of its CA)"
        ) from None
    except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError) as exc:
        raise UnreachableError(f"cannot reach {where.endpoint or 'S3'}: {_reason(exc)}") from None
    except bx.ClientError as exc:
        raise from_code(exc.response.get("Error", {}).get("Code", ""), where, str(exc)) from None


def from_code(code: str, where: Place, detail: str) -> RescueError:
    """The error an S3 error code means; the others keep the storage's own words."""
    if code in AUTH_CODES:
        return AuthenticationError(
            f"{where.display} refused the keys ({code}): check access_key_id and the secret "
            "access key in [destination]"
        )
    if code in MISSING_CODES:
        return MissingBucketError(
            f"the bucket {where.bucket} does not exist at {where.endpoint or 'S3'}: create it "
            "with rescue config check --create-bucket (or set create_bucket = true)"
        )
    if code in DENIED_CODES:
        return AccessDeniedError(
            f"access denied to {where.display} ({code}): the keys' policy does not allow this "
            "bucket or prefix"
        )
    # a server's own failure (InternalError, SlowDown, ServiceUnavailable...): it is there but
    # cannot serve now, which is what an admin does something about as "cannot reach"
    return UnreachableError(f"the storage at {where.display} failed: {detail}")


def _reason(exc: Exception) -> str:
    text = str(exc)
    for known in ("CERTIFICATE_VERIFY_FAILED", "Connection refused", "timed out"):
        if known in text:
            return known.replace("_", " ").lower() if known.isupper() else known
    return text.splitlines()[0] if text else type(exc).__name__


def check(settings: Settings, *, create: bool = False) -> bool:
    """Fail with one line unless the bucket answers to the keys for this prefix; with create
    (or create_bucket), make a missing bucket. True when it was made."""
    where = place(settings)
    s3 = client(settings)
    with errors(where):
        try:
            s3.list_objects_v2(Bucket=where.bucket, Prefix=f"{where.prefix}/", MaxKeys=1)
            return False
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code != "NoSuchBucket" or not (create or settings.destination.create_bucket):
                raise
        s3.create_bucket(Bucket=where.bucket)
        return True


class S3Dir:
    """rescue.backup.remotedir.RemoteDir over a key prefix: names are plain names under it."""

    def __init__(self, s3: S3Client, where: Place, sub: str = "") -> None:
        self.s3, self.where = s3, where
        self.bucket = where.bucket
        self.prefix = "/".join(p for p in (where.prefix, sub.strip("/")) if p)

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def read(self, name: str) -> bytes | None:
        with errors(self.where):
            try:
                answer = self.s3.get_object(Bucket=self.bucket, Key=self._key(name))
            except self.s3.exceptions.NoSuchKey:
                return None
            return bytes(answer["Body"].read())

    def write(self, name: str, data: bytes) -> None:
        """One PUT: an object appears whole or not at all, so no temporary name is needed."""
        with errors(self.where):
            self.s3.put_object(Bucket=self.bucket, Key=self._key(name), Body=data)

    def put(self, local: Path, name: str) -> None:
        with errors(self.where):
            self.s3.upload_file(str(local), self.bucket, self._key(name))

    def get(self, name: str, local: Path) -> None:
        with errors(self.where):
            self.s3.download_file(self.bucket, self._key(name), str(local))

    def delete(self, name: str) -> None:
        with errors(self.where):
            self.s3.delete_object(Bucket=self.bucket, Key=self._key(name))

    def listing(self) -> dict[str, int]:
        """The objects directly under the prefix (not those under its "subdirectories")."""
        found: dict[str, int] = {}
        with errors(self.where):
            pages = self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{self.prefix}/", Delimiter="/"
            )
            for page in pages:
                for item in page.get("Contents", []):
                    name = item["Key"][len(self.prefix) + 1 :]
                    if name:
                        found[name] = int(item["Size"])
        return found

    def exists(self) -> bool:
        """Whether any object has the prefix: an S3 "directory" exists while it holds one."""
        with errors(self.where):
            found = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.prefix}/", MaxKeys=1)
        return bool(found.get("KeyCount"))

    def make_dir(self, name: str) -> bool:
        """An empty object `name/`, made only if absent (If-None-Match: *)."""
        from botocore.exceptions import ClientError

        with errors(self.where):
            try:
                self.s3.put_object(
                    Bucket=self.bucket, Key=self._key(name) + "/", Body=b"", IfNoneMatch="*"
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                    return False
                raise
        return True

    def remove_dir(self, name: str) -> None:
        with errors(self.where):
            self.s3.delete_object(Bucket=self.bucket, Key=self._key(name) + "/")
