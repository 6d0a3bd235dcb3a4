"""The S3 door with boto3 against a real `sagestore serve`: keys, buckets, objects, listings,
multipart, copies, conditions and errors, signed payloads over http."""
from __future__ import annotations

import hashlib
import os

import pytest
from botocore.exceptions import ClientError

from s3_helpers import S3Server, error_code


@pytest.fixture(scope="module")
def server(base_settings):
    with S3Server(base_settings) as running:
        yield running


@pytest.fixture(scope="module")
def alice(server):
    return server.client(server.key("alice"))


def test_put_and_get_by_uuid_bucket(server, alice):
    bucket = server.sage_bucket("alice")
    body = os.urandom(3000)
    answer = alice.put_object(Bucket=bucket, Key="dir/file.bin", Body=body, Metadata={"colour": "blue"},
                              ContentType="application/x-test")
    assert answer["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = alice.get_object(Bucket=bucket, Key="dir/file.bin")
    assert got["Body"].read() == body
    assert got["ETag"] == answer["ETag"]
    assert got["ContentType"] == "application/x-test"
    assert got["Metadata"] == {"colour": "blue"}
    # the SAGE API sees the same object
    assert server.sage("GET", f"/api/v1/objects/{bucket}/dir/file.bin").content == body


def test_missing_key_and_bucket(server, alice):
    bucket = server.sage_bucket("alice")
    with pytest.raises(ClientError) as raised:
        alice.get_object(Bucket=bucket, Key="nope")
    assert error_code(raised.value) == "NoSuchKey"
    with pytest.raises(ClientError) as raised:
        alice.get_object(Bucket="no-such-bucket-here", Key="nope")
    assert error_code(raised.value) == "NoSuchBucket"


def test_bad_secret_is_signature_does_not_match(server):
    key = server.key("alice")
    wrong = server.client({**key, "secret_access_key": "x" * 40})
    with pytest.raises(ClientError) as raised:
        wrong.list_buckets()
    assert error_code(raised.value) == "SignatureDoesNotMatch"
    unknown = server.client({**key, "access_key_id": "SAGEAAAAAAAAAAAAAAAA"})
    with pytest.raises(ClientError) as raised:
        unknown.list_buckets()
    assert error_code(raised.value) == "InvalidAccessKeyId"


# ---------------------------------------------------------------- buckets
def test_create_bucket_by_name_and_uuid(server, alice):
    alice.create_bucket(Bucket="alice-named")
    listed = alice.list_buckets()
    assert "alice-named" in [entry["Name"] for entry in listed["Buckets"]]
    assert listed["Owner"]["ID"] == "alice"
    found = server.sage("GET", "/api/v1/objects", params={"name": "alice-named"}).json()
    assert len(found) == 1 and found[0]["owner"] == "alice" and found[0]["type"] == "none"
    bucket_id = found[0]["id"]
    alice.put_object(Bucket="alice-named", Key="a.txt", Body=b"by name")
    assert alice.get_object(Bucket=bucket_id, Key="a.txt")["Body"].read() == b"by name"
    assert alice.head_bucket(Bucket="alice-named")["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert alice.get_bucket_location(Bucket="alice-named").get("LocationConstraint") in (None, "")
    with pytest.raises(ClientError) as raised:
        alice.create_bucket(Bucket="alice-named")
    assert error_code(raised.value) == "BucketAlreadyOwnedByYou"
    bob = server.client(server.key("bob"))
    with pytest.raises(ClientError) as raised:
        bob.create_bucket(Bucket="alice-named")
    assert error_code(raised.value) == "BucketAlreadyExists"
    with pytest.raises(ClientError) as raised:
        alice.delete_bucket(Bucket="alice-named")
    assert error_code(raised.value) == "BucketNotEmpty"
    alice.delete_object(Bucket="alice-named", Key="a.txt")
    alice.delete_bucket(Bucket="alice-named")
    with pytest.raises(ClientError) as raised:
        alice.head_bucket(Bucket="alice-named")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert server.sage("GET", f"/api/v1/objects/{bucket_id}").status_code == 404
    # the name is free again
    bob.create_bucket(Bucket="alice-named")
    bob.delete_bucket(Bucket="alice-named")


def test_bad_bucket_names(server, alice):
    for name in ("ab", "UPPER", "has_underscore", "-dash", "a..b", "192.168.1.1"):
        with pytest.raises(ClientError) as raised:
            alice.create_bucket(Bucket=name)
        assert error_code(raised.value) == "InvalidBucketName", name


def test_list_buckets_shows_readable_ones(server, alice):
    mine = server.sage_bucket("alice")
    public = server.sage_bucket("carol", public=True)
    private = server.sage_bucket("carol")
    names = [entry["Name"] for entry in alice.list_buckets()["Buckets"]]
    assert mine in names and public in names and private not in names


# ---------------------------------------------------------------- objects
def test_head_range_and_conditions(server, alice):
    bucket = server.sage_bucket("alice")
    body = bytes(range(256)) * 40
    etag = alice.put_object(Bucket=bucket, Key="r.bin", Body=body)["ETag"]
    head = alice.head_object(Bucket=bucket, Key="r.bin")
    assert head["ContentLength"] == len(body) and head["ETag"] == etag
    part = alice.get_object(Bucket=bucket, Key="r.bin", Range="bytes=10-19")
    assert part["Body"].read() == body[10:20] and part["ContentRange"] == f"bytes 10-19/{len(body)}"
    assert alice.get_object(Bucket=bucket, Key="r.bin", Range="bytes=-5")["Body"].read() == body[-5:]
    with pytest.raises(ClientError) as raised:
        alice.get_object(Bucket=bucket, Key="r.bin", Range=f"bytes={len(body) + 10}-")
    assert error_code(raised.value) == "InvalidRange"
    assert alice.get_object(Bucket=bucket, Key="r.bin", IfMatch=etag)["Body"].read() == body
    with pytest.raises(ClientError) as raised:
        alice.get_object(Bucket=bucket, Key="r.bin", IfMatch='"0000"')
    assert error_code(raised.value) == "PreconditionFailed"
    with pytest.raises(ClientError) as raised:
        alice.get_object(Bucket=bucket, Key="r.bin", IfNoneMatch=etag)
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    modified = head["LastModified"]
    with pytest.raises(ClientError) as raised:
        alice.get_object(Bucket=bucket, Key="r.bin", IfModifiedSince=modified)
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(ClientError) as raised:
        alice.get_object(Bucket=bucket, Key="r.bin", IfUnmodifiedSince=modified.replace(year=2000))
    assert error_code(raised.value) == "PreconditionFailed"
    overridden = alice.get_object(Bucket=bucket, Key="r.bin", ResponseContentType="text/plain",
                                  ResponseContentDisposition="attachment; filename=x.txt",
                                  ResponseCacheControl="no-cache")
    assert overridden["ContentType"] == "text/plain"
    assert overridden["ContentDisposition"] == "attachment; filename=x.txt"
    assert overridden["CacheControl"] == "no-cache"


def test_content_md5_and_checksums(server, alice):
    bucket = server.sage_bucket("alice")
    import base64
    body = b"checked body"
    good = base64.b64encode(hashlib.md5(body).digest()).decode()
    alice.put_object(Bucket=bucket, Key="md5", Body=body, ContentMD5=good)
    with pytest.raises(ClientError) as raised:
        alice.put_object(Bucket=bucket, Key="bad-md5", Body=body,
                         ContentMD5=base64.b64encode(hashlib.md5(b"other").digest()).decode())
    assert error_code(raised.value) == "BadDigest"
    with pytest.raises(ClientError):
        alice.head_object(Bucket=bucket, Key="bad-md5")
    for algorithm in ("CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"):
        answer = alice.put_object(Bucket=bucket, Key=f"sum-{algorithm}", Body=body, ChecksumAlgorithm=algorithm)
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(ClientError) as raised:
        alice.put_object(Bucket=bucket, Key="bad-sum", Body=body, ChecksumCRC32="AAAAAA==")
    assert error_code(raised.value) == "BadDigest"


def test_copy_object(server, alice):
    source = server.sage_bucket("alice")
    target = server.sage_bucket("alice")
    etag = alice.put_object(Bucket=source, Key="src", Body=b"copy me", Metadata={"a": "1"},
                            ContentType="text/x-a")["ETag"]
    copied = alice.copy_object(Bucket=target, Key="dst", CopySource={"Bucket": source, "Key": "src"})
    assert copied["CopyObjectResult"]["ETag"] == etag
    got = alice.get_object(Bucket=target, Key="dst")
    assert got["Body"].read() == b"copy me" and got["Metadata"] == {"a": "1"} and got["ContentType"] == "text/x-a"
    alice.copy_object(Bucket=source, Key="same", CopySource=f"{source}/src")
    replaced = alice.copy_object(Bucket=source, Key="src", CopySource=f"{source}/src", MetadataDirective="REPLACE",
                                 Metadata={"b": "2"}, ContentType="text/x-b")
    assert replaced["CopyObjectResult"]["ETag"] == etag
    assert alice.head_object(Bucket=source, Key="src")["Metadata"] == {"b": "2"}
    with pytest.raises(ClientError) as raised:
        alice.copy_object(Bucket=source, Key="src", CopySource=f"{source}/src")
    assert error_code(raised.value) == "InvalidRequest"
    with pytest.raises(ClientError) as raised:
        alice.copy_object(Bucket=source, Key="x", CopySource=f"{source}/missing")
    assert error_code(raised.value) == "NoSuchKey"
    with pytest.raises(ClientError) as raised:
        alice.copy_object(Bucket=target, Key="dst2", CopySource=f"{source}/src", CopySourceIfMatch='"nope"')
    assert error_code(raised.value) == "PreconditionFailed"


def test_delete_object_and_objects(server, alice):
    bucket = server.sage_bucket("alice")
    for index in range(5):
        alice.put_object(Bucket=bucket, Key=f"d/{index}", Body=b"x")
    alice.delete_object(Bucket=bucket, Key="d/0")
    alice.delete_object(Bucket=bucket, Key="d/never-was")  # 204 all the same
    answer = alice.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": f"d/{index}"} for index in range(1, 4)]
                                                         + [{"Key": "d/x", "VersionId": "v1"}]})
    assert sorted(item["Key"] for item in answer["Deleted"]) == ["d/1", "d/2", "d/3"]
    assert [item["Code"] for item in answer["Errors"]] == ["NoSuchVersion"]
    keys = [item["Key"] for item in alice.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["d/4"]
    quiet = alice.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "d/4"}], "Quiet": True})
    assert "Deleted" not in quiet
    assert alice.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


# ---------------------------------------------------------------- listings
KEYS = ["asdf", "boo/bar", "boo/baz/xyzzy", "cquux/thud", "cquux/bla", "sp ace+plus", "zz"]


@pytest.fixture(scope="module")
def listed(server, alice):
    bucket = server.sage_bucket("alice")
    for key in KEYS:
        alice.put_object(Bucket=bucket, Key=key, Body=key.encode())
    return bucket


def test_list_v2_pages_prefixes_and_owner(alice, listed):
    everything = alice.list_objects_v2(Bucket=listed)
    assert [item["Key"] for item in everything["Contents"]] == sorted(KEYS)
    assert everything["KeyCount"] == len(KEYS) and not everything["IsTruncated"]
    assert "Owner" not in everything["Contents"][0]
    owned = alice.list_objects_v2(Bucket=listed, FetchOwner=True)
    assert owned["Contents"][0]["Owner"] == {"ID": "alice", "DisplayName": "alice"}
    grouped = alice.list_objects_v2(Bucket=listed, Delimiter="/")
    assert [item["Key"] for item in grouped["Contents"]] == ["asdf", "sp ace+plus", "zz"]
    assert [item["Prefix"] for item in grouped["CommonPrefixes"]] == ["boo/", "cquux/"]
    inside = alice.list_objects_v2(Bucket=listed, Prefix="boo/", Delimiter="/")
    assert [item["Key"] for item in inside["Contents"]] == ["boo/bar"]
    assert [item["Prefix"] for item in inside["CommonPrefixes"]] == ["boo/baz/"]
    seen, token = [], None
    while True:
        page = alice.list_objects_v2(Bucket=listed, MaxKeys=2, **({"ContinuationToken": token} if token else {}))
        seen += [item["Key"] for item in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert seen == sorted(KEYS)
    after = alice.list_objects_v2(Bucket=listed, StartAfter="cquux/thud")
    assert [item["Key"] for item in after["Contents"]] == ["sp ace+plus", "zz"]
    encoded = alice.list_objects_v2(Bucket=listed, Prefix="sp", EncodingType="url")
    # botocore decodes keys only when it asked for encoding-type=url itself
    assert [item["Key"] for item in encoded["Contents"]] == ["sp%20ace%2Bplus"]
    assert alice.list_objects_v2(Bucket=listed, MaxKeys=0)["KeyCount"] == 0
    with pytest.raises(ClientError) as raised:
        alice.list_objects_v2(Bucket=listed, ContinuationToken="bm90LWEtdG9rZW4")
    assert error_code(raised.value) == "InvalidArgument"


def test_list_v1_markers_and_versions(alice, listed):
    page = alice.list_objects(Bucket=listed, MaxKeys=1, Delimiter="/")
    markers, entries = [], []
    while True:
        entries += [item["Key"] for item in page.get("Contents", [])] + \
            [item["Prefix"] for item in page.get("CommonPrefixes", [])]
        if not page["IsTruncated"]:
            break
        markers.append(page["NextMarker"])
        page = alice.list_objects(Bucket=listed, MaxKeys=1, Delimiter="/", Marker=page["NextMarker"])
    assert entries == ["asdf", "boo/", "cquux/", "sp ace+plus", "zz"]
    assert markers == ["asdf", "boo/", "cquux/", "sp ace+plus"]
    full = alice.list_objects(Bucket=listed)
    assert full["Contents"][0]["Owner"]["DisplayName"] == "alice"
    versions = alice.list_object_versions(Bucket=listed)
    assert [item["Key"] for item in versions["Versions"]] == sorted(KEYS)
    assert all(item["VersionId"] == "null" and item["IsLatest"] for item in versions["Versions"])
    paged = alice.list_object_versions(Bucket=listed, MaxKeys=3)
    assert paged["IsTruncated"] and paged["NextKeyMarker"] == sorted(KEYS)[2]
    rest = alice.list_object_versions(Bucket=listed, KeyMarker=paged["NextKeyMarker"])
    assert [item["Key"] for item in rest["Versions"]] == sorted(KEYS)[3:]


# ---------------------------------------------------------------- multipart
MiB = 2**20


def test_multipart_upload(server, alice):
    bucket = server.sage_bucket("alice")
    created = alice.create_multipart_upload(Bucket=bucket, Key="big.bin", ContentType="application/x-big",
                                            Metadata={"kind": "multi"})
    upload_id = created["UploadId"]
    sessions = server.sage("GET", "/api/v1/attachment/sessions").json()["sessions"]
    assert [entry["protocol"] for entry in sessions if entry["sessionId"] == upload_id] == ["s3"]
    listed = alice.list_multipart_uploads(Bucket=bucket)
    assert [entry["UploadId"] for entry in listed["Uploads"]] == [upload_id]
    parts_data = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1234)]
    parts = []
    for number, data in enumerate(parts_data, start=1):
        answer = alice.upload_part(Bucket=bucket, Key="big.bin", UploadId=upload_id, PartNumber=number, Body=data)
        assert answer["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})
    listed_parts = alice.list_parts(Bucket=bucket, Key="big.bin", UploadId=upload_id)
    assert [(part["PartNumber"], part["Size"]) for part in listed_parts["Parts"]] == \
        [(1, 5 * MiB), (2, 5 * MiB), (3, 1234)]
    paged = alice.list_parts(Bucket=bucket, Key="big.bin", UploadId=upload_id, MaxParts=2)
    assert paged["IsTruncated"] and paged["NextPartNumberMarker"] == 2
    with pytest.raises(ClientError) as raised:
        alice.complete_multipart_upload(Bucket=bucket, Key="big.bin", UploadId=upload_id,
                                        MultipartUpload={"Parts": [parts[1], parts[0]]})
    assert error_code(raised.value) == "InvalidPartOrder"
    with pytest.raises(ClientError) as raised:
        alice.complete_multipart_upload(Bucket=bucket, Key="big.bin", UploadId=upload_id,
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"' + "0" * 32 + '"'}]})
    assert error_code(raised.value) == "InvalidPart"
    with pytest.raises(ClientError) as raised:
        alice.complete_multipart_upload(Bucket=bucket, Key="big.bin", UploadId=upload_id,
                                        MultipartUpload={"Parts": [parts[2], ]} if False else
                                        {"Parts": [{"PartNumber": 3, "ETag": parts[2]["ETag"]},
                                                   {"PartNumber": 4, "ETag": parts[2]["ETag"]}]})
    assert error_code(raised.value) == "InvalidPart"
    done = alice.complete_multipart_upload(Bucket=bucket, Key="big.bin", UploadId=upload_id,
                                           MultipartUpload={"Parts": parts})
    expected = hashlib.md5(b"".join(hashlib.md5(data).digest() for data in parts_data)).hexdigest() + "-3"
    assert done["ETag"] == f'"{expected}"'
    got = alice.get_object(Bucket=bucket, Key="big.bin")
    assert got["Body"].read() == b"".join(parts_data)
    assert got["ETag"] == done["ETag"] and got["Metadata"] == {"kind": "multi"}
    assert got["ContentType"] == "application/x-big"
    assert alice.list_objects_v2(Bucket=bucket)["Contents"][0]["ETag"] == done["ETag"]
    with pytest.raises(ClientError) as raised:
        alice.list_parts(Bucket=bucket, Key="big.bin", UploadId=upload_id)
    assert error_code(raised.value) == "NoSuchUpload"


def test_multipart_small_part_abort_and_copy(server, alice):
    bucket = server.sage_bucket("alice")
    upload_id = alice.create_multipart_upload(Bucket=bucket, Key="small")["UploadId"]
    first = alice.upload_part(Bucket=bucket, Key="small", UploadId=upload_id, PartNumber=1, Body=b"tiny")
    second = alice.upload_part(Bucket=bucket, Key="small", UploadId=upload_id, PartNumber=2, Body=b"tiny too")
    with pytest.raises(ClientError) as raised:
        alice.complete_multipart_upload(Bucket=bucket, Key="small", UploadId=upload_id, MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": first["ETag"]}, {"PartNumber": 2, "ETag": second["ETag"]}]})
    assert error_code(raised.value) == "EntityTooSmall"
    alice.abort_multipart_upload(Bucket=bucket, Key="small", UploadId=upload_id)
    with pytest.raises(ClientError) as raised:
        alice.upload_part(Bucket=bucket, Key="small", UploadId=upload_id, PartNumber=1, Body=b"late")
    assert error_code(raised.value) == "NoSuchUpload"
    assert alice.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    # UploadPartCopy: a range of one object, then the whole of another
    source = os.urandom(6 * MiB)
    alice.put_object(Bucket=bucket, Key="source", Body=source)
    alice.put_object(Bucket=bucket, Key="tail", Body=b"the tail")
    upload_id = alice.create_multipart_upload(Bucket=bucket, Key="copied")["UploadId"]
    one = alice.upload_part_copy(Bucket=bucket, Key="copied", UploadId=upload_id, PartNumber=1,
                                 CopySource={"Bucket": bucket, "Key": "source"}, CopySourceRange=f"bytes=0-{5 * MiB - 1}")
    two = alice.upload_part_copy(Bucket=bucket, Key="copied", UploadId=upload_id, PartNumber=2,
                                 CopySource={"Bucket": bucket, "Key": "tail"})
    alice.complete_multipart_upload(Bucket=bucket, Key="copied", UploadId=upload_id, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": one["CopyPartResult"]["ETag"]},
        {"PartNumber": 2, "ETag": two["CopyPartResult"]["ETag"]}]})
    assert alice.get_object(Bucket=bucket, Key="copied")["Body"].read() == source[:5 * MiB] + b"the tail"
    with pytest.raises(ClientError) as raised:
        alice.upload_part(Bucket=bucket, Key="copied", UploadId="not-an-upload", PartNumber=1, Body=b"x")
    assert error_code(raised.value) == "NoSuchUpload"


def test_another_users_upload_is_no_such_upload(server, alice):
    bucket = server.sage_bucket("alice")
    server.sage("PUT", f"/api/v1/objects/{bucket}?permissions",
                json={"granteeType": "USER", "grantee": "dave", "permission": "WRITE"})
    upload_id = alice.create_multipart_upload(Bucket=bucket, Key="mine")["UploadId"]
    dave = server.client(server.key("dave"))
    with pytest.raises(ClientError) as raised:
        dave.upload_part(Bucket=bucket, Key="mine", UploadId=upload_id, PartNumber=1, Body=b"x")
    assert error_code(raised.value) == "NoSuchUpload"
    assert dave.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    alice.abort_multipart_upload(Bucket=bucket, Key="mine", UploadId=upload_id)


def test_upload_file_and_download_file(server, alice, tmp_path):
    """s3transfer's managed transfer: multipart above the threshold, parallel ranged GETs down."""
    from boto3.s3.transfer import TransferConfig
    bucket = server.sage_bucket("alice")
    source = tmp_path / "up.bin"
    source.write_bytes(os.urandom(12 * MiB + 17))
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    alice.upload_file(str(source), bucket, "managed.bin", Config=config)
    target = tmp_path / "down.bin"
    alice.download_file(bucket, "managed.bin", str(target), Config=config)
    assert target.read_bytes() == source.read_bytes()
    assert alice.head_object(Bucket=bucket, Key="managed.bin")["ETag"].endswith('-3"')


# ---------------------------------------------------------------- wrong requests, metrics, access log
def test_wrong_requests_get_s3_errors_never_500(server, alice):
    import requests

    from s3_helpers import sign
    key = server.key("alice")
    bucket = server.sage_bucket("alice")
    upload_id = alice.create_multipart_upload(Bucket=bucket, Key="w")["UploadId"]

    def send(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> requests.Response:
        url = server.s3_url + path
        payload = hashlib.sha256(body).hexdigest()
        return requests.request(method, url, data=body, timeout=30,
                                headers=sign(method, url, key, payload_hash=payload, headers=headers or {}))
    cases = [
        ("POST", f"/{bucket}/w?uploadId={upload_id}", b"<CompleteMultipartUpload><Part>", "MalformedXML"),
        ("POST", f"/{bucket}/w?uploadId={upload_id}", b"<Other/>", "MalformedXML"),
        ("POST", f"/{bucket}/w?uploadId={upload_id}", b"<CompleteMultipartUpload></CompleteMultipartUpload>",
         "MalformedXML"),
        ("POST", f"/{bucket}?delete", b"<Delete></Delete>", "MalformedXML"),
        ("POST", f"/{bucket}?delete", b'<!DOCTYPE x [<!ENTITY a "b">]><Delete><Object><Key>&a;</Key></Object></Delete>',
         "MalformedXML"),
        ("PUT", f"/{bucket}/w?partNumber=0&uploadId={upload_id}", b"x", "InvalidArgument"),
        ("PUT", f"/{bucket}/w?partNumber=10001&uploadId={upload_id}", b"x", "InvalidArgument"),
        ("GET", f"/{bucket}?policy", b"", "NotImplemented"),
        ("GET", f"/{bucket}/w?tagging", b"", "NotImplemented"),
        ("GET", f"/{bucket}?list-type=2&max-keys=-1", b"", "InvalidArgument"),
        ("GET", f"/{bucket}?encoding-type=base64", b"", "InvalidArgument"),
        ("PUT", f"/{bucket}/w", b"x", "InvalidDigest", {"Content-MD5": "not base64!"}),
        ("PUT", f"/{bucket}/w", b"x", "InvalidRequest", {"x-amz-checksum-crc32": "AAAAAA==",
                                                         "x-amz-checksum-sha1": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}),
        ("PUT", f"/{bucket}/w", b"x", "InvalidArgument", {"x-amz-copy-source": "nobucket"}),
        ("PATCH", f"/{bucket}/w", b"", "MethodNotAllowed"),
    ]
    for method, path, body, code, *extra in cases:
        response = send(method, path, body, extra[0] if extra else None)
        assert response.status_code < 500 or code == "NotImplemented", (path, response.status_code, response.text)
        assert f"<Code>{code}</Code>" in response.text, (method, path, response.text)
    for bad_key in ("a//b", "a/../b", "dir/"):  # SAGE's key rules
        with pytest.raises(ClientError) as raised:
            alice.put_object(Bucket=bucket, Key=bad_key, Body=b"x")
        assert error_code(raised.value) == "InvalidArgument", bad_key
    # broken aws-chunked framing, signed chunks: a 4xx and nothing stored
    url = f"{server.s3_url}/{bucket}/framing"
    headers = sign("PUT", url, key, payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                   headers={"Content-Encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32",
                            "x-amz-decoded-content-length": "5"})
    for body in (b"zz\r\nhello\r\n0\r\n\r\n", b"5\r\nhel", b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n",
                 b"5\r\nhello\r\n0\r\n\r\n"):
        response = requests.put(url, data=body, headers=headers, timeout=30)
        assert 400 <= response.status_code < 500, (body, response.status_code, response.text)
    with pytest.raises(ClientError):
        alice.head_object(Bucket=bucket, Key="framing")


def test_metrics_and_access_log(server, alice):
    import requests
    bucket = server.sage_bucket("alice")
    alice.put_object(Bucket=bucket, Key="metered", Body=b"m")
    alice.get_object(Bucket=bucket, Key="metered")["Body"].read()
    metrics = requests.get(f"{server.url}/metrics", timeout=30).text
    assert 'sagestore_s3_request_duration_seconds_count{operation="PutObject",status="200"}' in metrics
    assert 'operation="GetObject",status="200"' in metrics
    assert f'"PUT /{bucket}/metered' in server.process.output and "user=alice" in server.process.output
    assert f"S3 API at {server.s3_url} (path-style" in server.process.output  # printed at start


def test_stored_headers_come_back(server, alice):
    bucket = server.sage_bucket("alice")
    alice.put_object(Bucket=bucket, Key="h", Body=b"h", CacheControl="max-age=60", ContentLanguage="en",
                     ContentDisposition='attachment; filename="h.txt"', ContentEncoding="identity",
                     Expires="Wed, 21 Oct 2037 07:28:00 GMT")
    head = alice.head_object(Bucket=bucket, Key="h")
    assert head["CacheControl"] == "max-age=60" and head["ContentLanguage"] == "en"
    assert head["ContentDisposition"] == 'attachment; filename="h.txt"' and head["ContentEncoding"] == "identity"
    assert head["ResponseMetadata"]["HTTPHeaders"]["expires"] == "Wed, 21 Oct 2037 07:28:00 GMT"
    assert head["Metadata"] == {}
    upload_id = alice.create_multipart_upload(Bucket=bucket, Key="hm", CacheControl="no-store")["UploadId"]
    etag = alice.upload_part(Bucket=bucket, Key="hm", UploadId=upload_id, PartNumber=1, Body=b"x")["ETag"]
    alice.complete_multipart_upload(Bucket=bucket, Key="hm", UploadId=upload_id,
                                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert alice.head_object(Bucket=bucket, Key="hm")["CacheControl"] == "no-store"
