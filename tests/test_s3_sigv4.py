"""SigV4 on the S3 door against a real `sagestore serve`: every payload mode (signed, unsigned,
aws-chunked with chunk signatures, checksum trailers unsigned and signed), presigned URLs, and the
refusals (skew, expiry, tampering, malformed headers) with S3's codes; nothing refused is stored."""
from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import time
import zlib

import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from s3_helpers import S3Server, TlsFront, sign

EMPTY = hashlib.sha256(b"").hexdigest()


@pytest.fixture(scope="module")
def server(base_settings):
    with S3Server(base_settings) as running:
        yield running


@pytest.fixture(scope="module")
def key(server):
    return server.key("alice")


@pytest.fixture(scope="module")
def bucket(server):
    return server.sage_bucket("alice")


def capture_modes(client) -> list[str]:
    """The x-amz-content-sha256 of every request the client sends."""
    seen: list[str] = []
    client.meta.events.register("before-send.s3.*",
                                lambda request, **_: seen.append(request.headers.get("x-amz-content-sha256",
                                                                                     b"").decode()
                                                                 if isinstance(request.headers.get(
                                                                     "x-amz-content-sha256"), bytes)
                                                                 else request.headers.get("x-amz-content-sha256")))
    return seen


def test_signed_and_unsigned_payloads_over_http(server, key, bucket):
    signed = server.client(key)
    modes = capture_modes(signed)
    signed.put_object(Bucket=bucket, Key="signed", Body=b"signed body")
    assert len(modes[-1]) == 64  # the payload's sha256
    unsigned = server.client(key, s3={"addressing_style": "path", "payload_signing_enabled": False})
    modes = capture_modes(unsigned)
    unsigned.put_object(Bucket=bucket, Key="unsigned", Body=b"unsigned body")
    assert modes[-1] == "UNSIGNED-PAYLOAD"
    assert unsigned.get_object(Bucket=bucket, Key="unsigned")["Body"].read() == b"unsigned body"


def test_checksum_trailers_over_tls(server, key, bucket, tmp_path_factory):
    """botocore's default (when_supported) over https: aws-chunked bodies with a CRC trailer, for
    PutObject and UploadPart; a managed upload and download round trip."""
    import boto3
    import os
    front = TlsFront(server.s3_port, tmp_path_factory.mktemp("tls"))
    try:
        client = boto3.client("s3", endpoint_url=front.url, region_name="us-east-1", verify=front.cert_file,
                              aws_access_key_id=key["access_key_id"], aws_secret_access_key=key["secret_access_key"],
                              config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
        modes = capture_modes(client)
        body = os.urandom(300_000)
        answer = client.put_object(Bucket=bucket, Key="trailer", Body=body)
        assert modes[-1] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
        assert answer["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
        assert client.get_object(Bucket=bucket, Key="trailer")["Body"].read() == body
        for algorithm in ("CRC32C", "SHA256", "CRC64NVME", "SHA1"):
            client.put_object(Bucket=bucket, Key=f"trailer-{algorithm}", Body=body, ChecksumAlgorithm=algorithm)
            assert client.get_object(Bucket=bucket, Key=f"trailer-{algorithm}")["Body"].read() == body
        from boto3.s3.transfer import TransferConfig
        source = tmp_path_factory.mktemp("up") / "file"
        source.write_bytes(os.urandom(11 * 2**20))
        config = TransferConfig(multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20)
        client.upload_file(str(source), bucket, "managed-tls", Config=config)
        assert "STREAMING-UNSIGNED-PAYLOAD-TRAILER" in modes
        target = source.with_name("down")
        client.download_file(bucket, "managed-tls", str(target), Config=config)
        assert target.read_bytes() == source.read_bytes()
    finally:
        front.close()


# ---------------------------------------------------------------- aws-chunked by hand
def chunk_signature(key: dict, amz_date: str, previous: str, data: bytes) -> str:
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    text = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous, EMPTY, hashlib.sha256(data).hexdigest()])
    return hmac.new(signing_key(key, amz_date), text.encode(), hashlib.sha256).hexdigest()


def trailer_signature(key: dict, amz_date: str, previous: str, trailer: str) -> str:
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    text = "\n".join(["AWS4-HMAC-SHA256-TRAILER", amz_date, scope, previous,
                      hashlib.sha256(trailer.encode()).hexdigest()])
    return hmac.new(signing_key(key, amz_date), text.encode(), hashlib.sha256).hexdigest()


def signing_key(key: dict, amz_date: str) -> bytes:
    derived = ("AWS4" + key["secret_access_key"]).encode()
    for part in (amz_date[:8], "us-east-1", "s3", "aws4_request"):
        derived = hmac.new(derived, part.encode(), hashlib.sha256).digest()
    return derived


def streaming_put(server, key: dict, path: str, chunks: list[bytes], *, trailer: bool = False,
                  tamper: str | None = None) -> requests.Response:
    """A PUT with STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER], every chunk signed."""
    amz_date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    data = b"".join(chunks)
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" + ("-TRAILER" if trailer else "")
    headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
               "X-Amz-Date": amz_date}
    if trailer:
        headers["x-amz-trailer"] = "x-amz-checksum-crc32"
    body = b""
    # the encoded length is signed, so the body is built first with placeholder signatures of the same size
    def encode(previous: str) -> bytes:
        out = b""
        for index, chunk in enumerate(chunks + [b""]):
            if tamper == "chunk" and index == 0:
                signature = "0" * 64
            else:
                signature = chunk_signature(key, amz_date, previous, chunk)
            previous = signature
            out += f"{len(chunk):x};chunk-signature={signature}\r\n".encode() + chunk + (b"\r\n" if chunk else b"")
        if trailer:
            crc = zlib.crc32(data if tamper != "checksum" else data + b"!")
            value = base64.b64encode(crc.to_bytes(4, "big")).decode()
            line = f"x-amz-checksum-crc32:{value}\n"
            signature = trailer_signature(key, amz_date, previous, line) if tamper != "trailer" else "1" * 64
            out += f"x-amz-checksum-crc32:{value}\r\nx-amz-trailer-signature:{signature}\r\n".encode()
        return out + b"\r\n"
    headers["Content-Length"] = str(len(encode("0" * 64)))
    signed = sign("PUT", server.s3_url + path, key, headers=headers, payload_hash=mode, amz_date=amz_date)
    seed = signed["Authorization"].rsplit("Signature=", 1)[1]
    body = encode(seed)
    assert len(body) == int(headers["Content-Length"])
    return requests.put(server.s3_url + path, data=body, headers=signed, timeout=60)


@pytest.mark.parametrize("trailer", [False, True])
def test_streaming_signed_chunks(server, key, bucket, trailer):
    chunks = [b"a" * 65536, b"b" * 1024, b"c" * 7]
    response = streaming_put(server, key, f"/{bucket}/chunked-{trailer}", chunks, trailer=trailer)
    assert response.status_code == 200, response.text
    client = server.client(key)
    assert client.get_object(Bucket=bucket, Key=f"chunked-{trailer}")["Body"].read() == b"".join(chunks)


@pytest.mark.parametrize("tamper,code", [("chunk", "SignatureDoesNotMatch"), ("trailer", "SignatureDoesNotMatch"),
                                         ("checksum", "BadDigest")])
def test_streaming_refusals_store_nothing(server, key, bucket, tamper, code):
    path = f"/{bucket}/refused-{tamper}"
    response = streaming_put(server, key, path, [b"x" * 5000, b"y" * 10], trailer=True, tamper=tamper)
    assert response.status_code in (400, 403) and f"<Code>{code}</Code>" in response.text, response.text
    with pytest.raises(ClientError) as raised:
        server.client(key).head_object(Bucket=bucket, Key=f"refused-{tamper}")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_signed_payload_mismatch_stores_nothing(server, key, bucket):
    path = f"/{bucket}/lying"
    headers = sign("PUT", server.s3_url + path, key, payload_hash=hashlib.sha256(b"what I say").hexdigest(),
                   headers={"Content-Length": "12"})
    response = requests.put(server.s3_url + path, data=b"what I sent!", headers=headers, timeout=30)
    assert response.status_code == 400 and "XAmzContentSHA256Mismatch" in response.text
    assert requests.head(server.s3_url + path, headers=sign("HEAD", server.s3_url + path, key,
                                                            payload_hash=EMPTY), timeout=30).status_code == 404


# ---------------------------------------------------------------- refusals
def test_clock_skew_and_malformed_headers(server, key, bucket):
    url = f"{server.s3_url}/{bucket}"
    old = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=20)).strftime("%Y%m%dT%H%M%SZ")
    response = requests.get(url, headers=sign("GET", url, key, payload_hash=EMPTY, amz_date=old), timeout=30)
    assert response.status_code == 403 and "<Code>RequestTimeTooSkewed</Code>" in response.text
    good = sign("GET", url, key, payload_hash=EMPTY)
    assert requests.get(url, headers=good, timeout=30).status_code == 200
    for broken, code in ((good["Authorization"].replace("Credential=", "Credentials="), "AuthorizationHeaderMalformed"),
                         ("AWS AKIAEXAMPLE:c2lnbmF0dXJl", "InvalidRequest"),
                         (good["Authorization"].replace("/s3/", "/ec2/"), "AuthorizationHeaderMalformed"),
                         (good["Authorization"][:-1] + ("0" if good["Authorization"][-1] != "0" else "1"),
                          "SignatureDoesNotMatch")):
        response = requests.get(url, headers={**good, "Authorization": broken}, timeout=30)
        assert response.status_code in (400, 403) and f"<Code>{code}</Code>" in response.text, (broken, response.text)
    missing_hash = {name: value for name, value in good.items() if name.lower() != "x-amz-content-sha256"}
    assert "<Code>InvalidRequest</Code>" in requests.get(url, headers=missing_hash, timeout=30).text


def test_presigned_sigv2_urls(server, key, bucket):
    """What `aws s3 presign` and boto3 make for a custom endpoint by default."""
    client = server.client(key)
    put_url = client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "v2"}, ExpiresIn=300)
    assert "AWSAccessKeyId=" in put_url
    assert requests.put(put_url, data=b"via v2", timeout=30).status_code == 200
    get_url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "v2"}, ExpiresIn=300)
    assert requests.get(get_url, timeout=30).content == b"via v2"
    assert requests.get(get_url.replace("/v2?", "/v3?"), timeout=30).status_code == 403
    assert requests.put(get_url, data=b"other verb", timeout=30).status_code == 403
    overridden = client.generate_presigned_url("get_object", ExpiresIn=300, Params={
        "Bucket": bucket, "Key": "v2", "ResponseContentDisposition": "attachment; filename=\"x y.bin\""})
    assert requests.get(overridden, timeout=30).headers["Content-Disposition"] == 'attachment; filename="x y.bin"'


def test_presigned_urls(server, key, bucket):
    client = server.client(key, signature_version="s3v4")
    put_url = client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "presigned"},
                                            ExpiresIn=300)
    assert requests.put(put_url, data=b"via presigned PUT", timeout=30).status_code == 200
    get_url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "presigned"},
                                            ExpiresIn=300)
    assert requests.get(get_url, timeout=30).content == b"via presigned PUT"
    assert requests.get(get_url.replace("presigned", "presigneD"), timeout=30).status_code == 403
    week = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "presigned"},
                                         ExpiresIn=604800)
    assert requests.get(week, timeout=30).status_code == 200
    too_long = week.replace("X-Amz-Expires=604800", "X-Amz-Expires=604801")
    response = requests.get(too_long, timeout=30)
    assert response.status_code == 400 and "AuthorizationQueryParametersError" in response.text
    short = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "presigned"}, ExpiresIn=1)
    time.sleep(2.1)
    response = requests.get(short, timeout=30)
    assert response.status_code == 403 and "Request has expired" in response.text


def test_secrets_are_never_logged(server, key):
    assert key["secret_access_key"] not in server.process.output
