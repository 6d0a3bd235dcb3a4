"""Every S3 operation x the callers of the SAGE ACL matrix (tests/test_api_acl_matrix.py), on a
private and a public bucket, answered as the SAGE API answers the same caller: the expected cells
are derived from that matrix (200 -> the operation succeeds, 404 -> NoSuchBucket, 403 and 401 ->
AccessDenied), so the two doors cannot drift apart. Refused writes are checked to change nothing."""
from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from s3_helpers import S3Server
from test_api_acl_matrix import CALLERS, OWNER, parse_matrix

# S3 operation -> the SAGE operation whose answer it must give
SAGE_EQUIVALENT = {
    "ListBuckets": "list_buckets", "CreateBucket": "create_bucket", "HeadBucket": "show_bucket",
    "GetBucketLocation": "show_bucket", "GetBucketAcl": "show_perms", "DeleteBucket": "delete_bucket",
    "ListObjectsV2": "list_files", "ListObjects": "list_files", "ListObjectVersions": "list_files",
    "HeadObject": "head", "GetObject": "download", "PutObject": "upload",
    # a copy reads its source (checked first) and writes its target: here both in the same bucket
    "CopyObject": ("download", "upload"), "UploadPartCopy": ("download", "upload"),
    "DeleteObject": "delete_file", "DeleteObjects": "delete_file", "CreateMultipartUpload": "upload",
    "UploadPart": "upload", "ListParts": "upload", "CompleteMultipartUpload": "upload",
    "AbortMultipartUpload": "upload", "ListMultipartUploads": "upload",
}
S3_ANSWER = {"200": "ok", "404": "NoSuchBucket", "403": "AccessDenied", "401": "AccessDenied",
             "yes": "yes", "no": "no"}
CONTENT = b"s3-matrix-content"


@pytest.fixture(scope="module")
def server(base_settings):
    with S3Server(base_settings) as running:
        yield running


@pytest.fixture(scope="module")
def clients(server):
    found = {}
    for column, (user, groups) in CALLERS.items():
        found[column] = server.client(server.key(user, groups) if user else None)
    return found


def grant(server, bucket: str, grantee_type: str, grantee: str, permission: str) -> None:
    response = server.sage("PUT", f"/api/v1/objects/{bucket}?permissions", OWNER,
                           json={"granteeType": grantee_type, "grantee": grantee, "permission": permission})
    assert response.status_code == 200, response.text


def new_bucket(server, visibility: str) -> str:
    bucket = server.sage_bucket(OWNER, public=visibility == "public", name="s3-matrix")
    for column in ("READ", "WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL"):
        grant(server, bucket, "USER", CALLERS[column][0], column)
    grant(server, bucket, "GROUP", "m-team", "READ")
    grant(server, bucket, "GROUP", "m-team", "WRITE")
    assert server.sage("PUT", f"/api/v1/objects/{bucket}/existing.txt", OWNER, data=CONTENT).status_code == 200
    return bucket


def exists(owner, bucket: str, key: str) -> bool:
    try:
        owner.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError:
        return False


def answer(call) -> str:
    """'ok', or the S3 error code (a HEAD's, which has no body, from its status)."""
    try:
        call()
        return "ok"
    except ClientError as problem:
        code = problem.response["Error"]["Code"]
        return {"404": "NoSuchBucket", "403": "AccessDenied"}.get(code, code)


def run_cell(server, clients, operation: str, bucket: str, visibility: str, column: str) -> str:
    client, owner = clients[column], clients["owner"]
    tag = f"{operation}-{column}-{uuid.uuid4().hex[:6]}"
    if operation == "ListBuckets":
        return "yes" if bucket in [entry["Name"] for entry in client.list_buckets()["Buckets"]] else "no"
    if operation == "CreateBucket":
        name = f"m-{uuid.uuid4().hex[:12]}"
        return answer(lambda: client.create_bucket(Bucket=name))
    if operation == "HeadBucket":
        return answer(lambda: client.head_bucket(Bucket=bucket))
    if operation == "GetBucketLocation":
        return answer(lambda: client.get_bucket_location(Bucket=bucket))
    if operation == "GetBucketAcl":
        return answer(lambda: client.get_bucket_acl(Bucket=bucket))
    if operation == "DeleteBucket":
        victim = server.sage_bucket(OWNER, public=visibility == "public")
        for column_name in ("READ", "WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL"):
            grant(server, victim, "USER", CALLERS[column_name][0], column_name)
        grant(server, victim, "GROUP", "m-team", "READ")
        grant(server, victim, "GROUP", "m-team", "WRITE")
        result = answer(lambda: client.delete_bucket(Bucket=victim))
        still_there = server.sage("GET", f"/api/v1/objects/{victim}", OWNER).status_code == 200
        assert still_there == (result != "ok")
        return result
    if operation == "ListObjectsV2":
        return answer(lambda: client.list_objects_v2(Bucket=bucket))
    if operation == "ListObjects":
        return answer(lambda: client.list_objects(Bucket=bucket))
    if operation == "ListObjectVersions":
        return answer(lambda: client.list_object_versions(Bucket=bucket))
    if operation == "HeadObject":
        return answer(lambda: client.head_object(Bucket=bucket, Key="existing.txt"))
    if operation == "GetObject":
        def get():
            assert client.get_object(Bucket=bucket, Key="existing.txt")["Body"].read() == CONTENT
        return answer(get)
    if operation == "PutObject":
        result = answer(lambda: client.put_object(Bucket=bucket, Key=tag, Body=b"new"))
        assert exists(owner, bucket, tag) == (result == "ok")
        return result
    if operation == "CopyObject":
        result = answer(lambda: client.copy_object(Bucket=bucket, Key=tag, CopySource=f"{bucket}/existing.txt"))
        assert exists(owner, bucket, tag) == (result == "ok")
        return result
    if operation in ("DeleteObject", "DeleteObjects"):
        owner.put_object(Bucket=bucket, Key=tag, Body=b"victim")
        if operation == "DeleteObject":
            result = answer(lambda: client.delete_object(Bucket=bucket, Key=tag))
        else:
            result = answer(lambda: client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": tag}]}))
        assert exists(owner, bucket, tag) == (result != "ok")
        return result
    if operation == "CreateMultipartUpload":
        result = answer(lambda: client.create_multipart_upload(Bucket=bucket, Key=tag))
        return result
    if operation == "ListMultipartUploads":
        return answer(lambda: client.list_multipart_uploads(Bucket=bucket))
    # the operations on an upload: the caller's own where they may start one, else the owner's
    try:
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=tag)["UploadId"]
    except ClientError:
        upload_id = owner.create_multipart_upload(Bucket=bucket, Key=tag)["UploadId"]
    if operation == "UploadPart":
        return answer(lambda: client.upload_part(Bucket=bucket, Key=tag, UploadId=upload_id, PartNumber=1,
                                                 Body=b"part"))
    if operation == "UploadPartCopy":
        return answer(lambda: client.upload_part_copy(Bucket=bucket, Key=tag, UploadId=upload_id, PartNumber=1,
                                                      CopySource=f"{bucket}/existing.txt"))
    if operation == "ListParts":
        return answer(lambda: client.list_parts(Bucket=bucket, Key=tag, UploadId=upload_id))
    if operation == "AbortMultipartUpload":
        return answer(lambda: client.abort_multipart_upload(Bucket=bucket, Key=tag, UploadId=upload_id))
    if operation == "CompleteMultipartUpload":
        try:
            etag = client.upload_part(Bucket=bucket, Key=tag, UploadId=upload_id, PartNumber=1, Body=b"part")["ETag"]
        except ClientError:
            etag = owner.upload_part(Bucket=bucket, Key=tag, UploadId=upload_id, PartNumber=1, Body=b"part")["ETag"]
        result = answer(lambda: client.complete_multipart_upload(
            Bucket=bucket, Key=tag, UploadId=upload_id, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]}))
        assert exists(owner, bucket, tag) == (result == "ok")
        return result
    raise AssertionError(f"no runner for {operation}")


def expected_cells() -> dict[tuple[str, str, str], str]:
    sage = {(operation, visibility, caller): cell for operation, visibility, caller, cell in parse_matrix()}

    def cell(equivalent, visibility: str, caller: str) -> str:
        steps = equivalent if isinstance(equivalent, tuple) else (equivalent,)
        answers = [sage[(step, visibility, caller)] for step in steps]
        return S3_ANSWER[next((found for found in answers if found != "200"), answers[-1])]
    return {(s3_operation, visibility, caller): cell(equivalent, visibility, caller)
            for s3_operation, equivalent in SAGE_EQUIVALENT.items()
            for visibility in ("private", "public") for caller in CALLERS}


@pytest.fixture(scope="module")
def buckets(server):
    return {visibility: new_bucket(server, visibility) for visibility in ("private", "public")}


@pytest.mark.parametrize("operation", list(SAGE_EQUIVALENT))
def test_s3_acl_matrix(server, clients, buckets, operation):
    mismatches = []
    for (name, visibility, caller), expected in expected_cells().items():
        if name != operation:
            continue
        actual = run_cell(server, clients, operation, buckets[visibility], visibility, caller)
        if actual != expected:
            mismatches.append(f"{operation:22} {visibility:8} {caller:13} expected {expected}, got {actual}")
    assert not mismatches, "\n" + "\n".join(mismatches)
