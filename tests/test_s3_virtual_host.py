"""Virtual-hosted-style S3 requests (Host <bucket>.<s3_domain>) against a real `sagestore serve`
with --s3-domain, sent by boto3 with addressing_style "virtual" (the default of the AWS SDKs for
JavaScript, Go and Java and of DuckDB). The same buckets, keys, ACLs and signatures as
path-style; a host outside the domain is path-style. The test resolves every name under the
domain to 127.0.0.1 (a wildcard DNS record's job)."""
from __future__ import annotations

import os
import socket

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from s3_helpers import S3Server, error_code

DOMAIN = "s3.sagestore.test"
MiB = 2**20


@pytest.fixture(scope="module")
def server(base_settings):
    with S3Server(base_settings, s3_domain=DOMAIN) as running:
        yield running


@pytest.fixture(autouse=True)
def wildcard_dns(monkeypatch):
    resolve = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and (host == DOMAIN or host.endswith("." + DOMAIN)):
            host = "127.0.0.1"
        return resolve(host, *args, **kwargs)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def by_name(server, key: dict):
    """boto3 on the endpoint by name, virtual-hosted-style."""
    return boto3.client("s3", endpoint_url=f"http://{DOMAIN}:{server.s3_port}", region_name="us-east-1",
                        aws_access_key_id=key["access_key_id"], aws_secret_access_key=key["secret_access_key"],
                        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "virtual"}))


def test_objects_buckets_and_listings_by_bucket_host_name(server, tmp_path):
    key = server.key("alice")
    alice, path_style = by_name(server, key), server.client(key)
    sent = []
    alice.meta.events.register("before-send.s3", lambda request, **_: sent.append(request.url))

    alice.create_bucket(Bucket="hosted-models")
    alice.put_object(Bucket="hosted-models", Key="dir/small.txt", Body=b"hello")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 * MiB + 1))
    alice.upload_file(str(big), "hosted-models", "dir/big.bin",
                      Config=boto3.s3.transfer.TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
    assert sent and all(url.startswith(f"http://hosted-models.{DOMAIN}:") for url in sent)  # really virtual-hosted

    assert alice.get_object(Bucket="hosted-models", Key="dir/small.txt")["Body"].read() == b"hello"
    assert alice.head_object(Bucket="hosted-models", Key="dir/big.bin")["ContentLength"] == 12 * MiB + 1
    listed = alice.list_objects_v2(Bucket="hosted-models", Prefix="dir/", Delimiter="/")
    assert [item["Key"] for item in listed["Contents"]] == ["dir/big.bin", "dir/small.txt"]
    alice.copy_object(Bucket="hosted-models", Key="copy.txt", CopySource={"Bucket": "hosted-models",
                                                                           "Key": "dir/small.txt"})
    # one store: path-style sees what virtual-hosted-style wrote, and the other way round
    assert path_style.get_object(Bucket="hosted-models", Key="dir/big.bin")["Body"].read() == big.read_bytes()
    path_style.put_object(Bucket="hosted-models", Key="from-path.txt", Body=b"path")
    assert alice.get_object(Bucket="hosted-models", Key="from-path.txt")["Body"].read() == b"path"

    url = alice.generate_presigned_url("get_object", Params={"Bucket": "hosted-models", "Key": "copy.txt"})
    assert url.startswith(f"http://hosted-models.{DOMAIN}:")
    answer = requests.get(url, timeout=30)
    assert answer.content == b"hello", answer.text

    alice.delete_objects(Bucket="hosted-models", Delete={"Objects": [{"Key": k} for k in (
        "dir/small.txt", "dir/big.bin", "copy.txt", "from-path.txt")]})
    alice.delete_bucket(Bucket="hosted-models")
    assert "hosted-models" not in [b["Name"] for b in path_style.list_buckets()["Buckets"]]


def test_a_uuid_bucket_by_host_name_keeps_its_acl(server):
    bucket = server.sage_bucket("alice")
    bob_key = server.key("bob")
    alice, bob, bob_by_path = by_name(server, server.key("alice")), by_name(server, bob_key), server.client(bob_key)
    alice.put_object(Bucket=bucket, Key="private.bin", Body=b"alice's")
    assert alice.get_object(Bucket=bucket, Key="private.bin")["Body"].read() == b"alice's"
    for client_method, params in (("get_object", {}), ("put_object", {"Body": b"bob's"}),
                                  ("list_objects_v2", {}), ("delete_object", {})):
        codes = []
        for client in (bob, bob_by_path):
            call = getattr(client, client_method)
            with pytest.raises(ClientError) as raised:
                call(Bucket=bucket, **({} if client_method == "list_objects_v2" else {"Key": "private.bin"}), **params)
            codes.append(error_code(raised.value))
        assert codes[0] == codes[1] and codes[0] in ("AccessDenied", "NoSuchBucket"), (client_method, codes)
    assert alice.get_object(Bucket=bucket, Key="private.bin")["Body"].read() == b"alice's"


@pytest.mark.parametrize("signature", ["s3", "s3v4"])  # boto3's presign default (SigV2), and SigV4
def test_a_presigned_url_serves_its_bucket_host_only(server, signature):
    key = server.key("alice")
    alice = by_name(server, key)
    bucket = f"hosted-{signature}"
    alice.create_bucket(Bucket=bucket)
    alice.put_object(Bucket=bucket, Key="k", Body=b"one")
    signer = boto3.client("s3", endpoint_url=f"http://{DOMAIN}:{server.s3_port}", region_name="us-east-1",
                          aws_access_key_id=key["access_key_id"], aws_secret_access_key=key["secret_access_key"],
                          config=Config(s3={"addressing_style": "virtual"}, signature_version=signature))
    url = signer.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    assert url.startswith(f"http://{bucket}.{DOMAIN}:")
    assert requests.get(url, timeout=30).content == b"one"
    alice.create_bucket(Bucket=bucket + "-other")
    alice.put_object(Bucket=bucket + "-other", Key="k", Body=b"other")
    moved = requests.get(url.replace(f"//{bucket}.", f"//{bucket}-other."), timeout=30)
    assert moved.status_code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in moved.content


def test_a_host_outside_the_domain_is_path_style(server):
    key = server.key("alice")
    path_style = server.client(key)  # http://127.0.0.1:<port>/<bucket>/<key>
    path_style.create_bucket(Bucket="hosted-path")
    path_style.put_object(Bucket="hosted-path", Key="a/b.txt", Body=b"b")
    assert path_style.get_object(Bucket="hosted-path", Key="a/b.txt")["Body"].read() == b"b"
    answer = requests.get(f"http://127.0.0.1:{server.s3_port}/hosted-path/a/b.txt",
                          headers={"Host": f"elsewhere.example:{server.s3_port}"}, timeout=30)
    assert answer.status_code == 403 and b"<Code>AccessDenied</Code>" in answer.content  # anonymous, path-style


@pytest.mark.parametrize("label", ["no-such-bucket", "Bad_Name", ""])
def test_an_unknown_or_malformed_bucket_host_is_an_s3_error_and_changes_nothing(server, label):
    key = server.key("alice")
    path_style = server.client(key)
    before = path_style.list_buckets()["Buckets"]
    for method, path in (("GET", "/"), ("PUT", "/k"), ("PUT", "/")):
        answer = requests.request(method, f"http://127.0.0.1:{server.s3_port}{path}", data=b"x" if path == "/k" else None,
                                  headers={"Host": f"{label}.{DOMAIN}:{server.s3_port}"}, timeout=30)
        assert 400 <= answer.status_code < 500, (method, path, answer.status_code, answer.text)
        assert answer.headers["Content-Type"].startswith("application/xml") and b"<Code>" in answer.content
    assert path_style.list_buckets()["Buckets"] == before
