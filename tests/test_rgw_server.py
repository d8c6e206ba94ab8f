"""The Ceph S3 test server really works: the S3 destination's tests stand on this fixture."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import boto3
import botocore.exceptions
import psutil
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from rgw import RgwServer
from servers import serving


def _code(error: ClientError) -> str:
    return error.response["Error"]["Code"]


def test_the_owner_creates_a_bucket_and_puts_gets_lists_and_deletes(rgw: RgwServer) -> None:
    s3 = rgw.client()
    bucket = rgw.bucket("own")
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    payload = bytes(range(256)) * 4000  # 1 MB: more than one network read
    s3.put_object(Bucket=bucket, Key="dir/one", Body=payload)
    s3.put_object(Bucket=bucket, Key="dir/two", Body=b"2")

    assert s3.get_object(Bucket=bucket, Key="dir/one")["Body"].read() == payload
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="dir/")["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("dir/one", len(payload)), ("dir/two", 1)]

    s3.delete_object(Bucket=bucket, Key="dir/one")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["dir/two"]
    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket=bucket, Key="dir/one")
    assert _code(missing.value) == "NoSuchKey"


def test_a_wrong_secret_or_an_unknown_access_key_is_refused(rgw: RgwServer) -> None:
    bucket = rgw.bucket()
    with pytest.raises(ClientError) as wrong_secret:
        rgw.client(secret="not-the-secret").list_objects_v2(Bucket=bucket)
    assert _code(wrong_secret.value) == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as unknown_key:
        rgw.client(access="NOSUCHKEY0000000000", secret="x").list_objects_v2(Bucket=bucket)
    assert _code(unknown_key.value) == "InvalidAccessKeyId"


def test_tls_is_verified_with_the_ca_file_and_fails_without_it(
    rgw: RgwServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = rgw.bucket()
    rgw.client(tls=True).put_object(Bucket=bucket, Key="over-tls", Body=b"x" * 100_000)
    assert rgw.client().get_object(Bucket=bucket, Key="over-tls")["Body"].read() == b"x" * 100_000

    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    untrusting = boto3.client(
        "s3",
        endpoint_url=rgw.tls_endpoint,
        aws_access_key_id=rgw.access_key,
        aws_secret_access_key=rgw.secret_key,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(botocore.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        untrusting.list_objects_v2(Bucket=bucket)


def test_another_user_is_denied_the_owners_bucket(rgw: RgwServer) -> None:
    bucket = rgw.bucket()
    rgw.client().put_object(Bucket=bucket, Key="secret", Body=b"s")
    other = rgw.client(*rgw.user("intruder"))
    for call in (
        lambda: other.get_object(Bucket=bucket, Key="secret"),
        lambda: other.list_objects_v2(Bucket=bucket),
        lambda: other.put_object(Bucket=bucket, Key="planted", Body=b"p"),
    ):
        with pytest.raises(ClientError) as denied:
            call()
        assert _code(denied.value) == "AccessDenied"
    # The user's own buckets are its own.
    own = f"intruder-{bucket}"
    other.create_bucket(Bucket=own)
    other.put_object(Bucket=own, Key="mine", Body=b"m")


def test_a_bucket_policy_grants_another_user_one_prefix_only(rgw: RgwServer) -> None:
    bucket = rgw.bucket()
    owner = rgw.client()
    for key in ("shared/a", "private/b"):
        owner.put_object(Bucket=bucket, Key=key, Body=key.encode())
    user = "reader"
    reader = rgw.client(*rgw.user(user))
    rgw.grant_prefix(bucket, user, "shared")

    assert reader.get_object(Bucket=bucket, Key="shared/a")["Body"].read() == b"shared/a"
    reader.put_object(Bucket=bucket, Key="shared/c", Body=b"c")
    listed = reader.list_objects_v2(Bucket=bucket, Prefix="shared/")["Contents"]
    assert [o["Key"] for o in listed] == ["shared/a", "shared/c"]
    for call in (
        lambda: reader.get_object(Bucket=bucket, Key="private/b"),
        lambda: reader.put_object(Bucket=bucket, Key="private/c", Body=b"c"),
        lambda: reader.delete_object(Bucket=bucket, Key="private/b"),
        lambda: reader.list_objects_v2(Bucket=bucket, Prefix="private/"),
        lambda: reader.list_objects_v2(Bucket=bucket),
    ):
        with pytest.raises(ClientError) as denied:
            call()
        assert _code(denied.value) == "AccessDenied"


def test_a_put_with_if_none_match_creates_a_key_only_once(rgw: RgwServer) -> None:
    """What a lock on S3 needs: an atomic create-if-absent, even with writers racing."""
    bucket = rgw.bucket()
    s3 = rgw.client()
    s3.put_object(Bucket=bucket, Key="lock", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as again:
        s3.put_object(Bucket=bucket, Key="lock", Body=b"second", IfNoneMatch="*")
    assert _code(again.value) == "PreconditionFailed"
    assert again.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert s3.get_object(Bucket=bucket, Key="lock")["Body"].read() == b"first"

    outcomes: Counter[tuple[str, str]] = Counter()
    racers = rgw.client()

    def put(key: str, writer: int) -> None:
        try:
            racers.put_object(Bucket=bucket, Key=key, Body=f"{writer}".encode(), IfNoneMatch="*")
            outcomes[key, "created"] += 1
        except ClientError as error:
            outcomes[key, _code(error)] += 1

    keys = [f"race/{n}" for n in range(5)]
    threads = [threading.Thread(target=put, args=(k, w)) for k in keys for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == Counter(
        {**{(k, "created"): 1 for k in keys}, **{(k, "PreconditionFailed"): 5 for k in keys}}
    )


def test_a_restart_keeps_the_data_and_close_leaves_no_process(tmp_path: Path) -> None:
    with serving(RgwServer(tmp_path / "rgw")) as server:
        bucket = server.bucket()
        server.client().put_object(Bucket=bucket, Key="kept", Body=b"k")
        daemons = [psutil.Process(p.pid) for p in (server._mon, server._osd) if p]
        port = server.port

        server.stop_gateway()
        with pytest.raises(botocore.exceptions.EndpointConnectionError):
            server.client().head_bucket(Bucket=bucket)
        server.restart()

        assert server.port == port
        assert server.client().get_object(Bucket=bucket, Key="kept")["Body"].read() == b"k"
        server.bucket()  # no wait for the stopped gateway's watches
        daemons.append(psutil.Process(server.pid))
    assert not [d for d in daemons if d.is_running() and d.status() != psutil.STATUS_ZOMBIE]
    assert not (tmp_path / "rgw" / "cluster").exists()
