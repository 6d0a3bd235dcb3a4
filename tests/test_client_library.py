"""The client library (sync Client and AsyncClient) against a real `sagestore serve` process:
every operation, typed errors, small and session uploads with the server's sha256 check,
parallel ranged downloads checked against Repr-Digest, paging, anonymous public downloads."""
from __future__ import annotations

import hashlib
import io
import os

import pytest
from support.client import MiB

from sagestore.client import (AsyncClient, BadRequest, Client, Forbidden, NotFound, TransferConfig, Unauthorized,
                              parse_repr_digest)

SMALL = TransferConfig(threshold=1 * MiB, chunk_size=2 * MiB, concurrency=4)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_buckets_permissions_and_typed_errors(served):
    with Client(served.url, served.token("alice")) as alice, Client(served.url, served.token("bob")) as bob:
        assert "token" not in repr(alice) or "<set>" in repr(alice)
        assert served.token("alice") not in repr(alice)
        bucket = alice.create_bucket("model", "lib-test")
        assert bucket["name"] == "lib-test" and bucket["owner"] == "alice"
        bucket_id = bucket["id"]
        assert alice.get_bucket(bucket_id)["type"] == "model"
        assert bucket_id in [b["id"] for b in alice.list_buckets()]
        assert alice.update_bucket(bucket_id, name="renamed")["name"] == "renamed"
        with pytest.raises(NotFound) as missing:
            bob.get_bucket(bucket_id)
        assert missing.value.status == 404 and missing.value.message
        assert alice.grant(bucket_id, "USER", "bob", "READ")["permission"] == "READ"
        assert bob.get_bucket(bucket_id)["id"] == bucket_id
        with pytest.raises(Forbidden):
            bob.delete_bucket(bucket_id)
        grants = {(g["granteeType"], g["grantee"], g["permission"]) for g in alice.list_permissions(bucket_id)}
        assert ("USER", "bob", "READ") in grants and ("USER", "alice", "FULL_CONTROL") in grants
        assert alice.revoke(bucket_id, "USER", "bob")["deleted"] == ["USER:bob"]
        alice.make_public(bucket_id)
        assert ("GROUP", "AllUsers", "READ") in {(g["granteeType"], g["grantee"], g["permission"])
                                                 for g in alice.list_permissions(bucket_id)}
        alice.make_private(bucket_id)
        assert all(g["grantee"] != "AllUsers" for g in alice.list_permissions(bucket_id))
        with pytest.raises(BadRequest):
            alice.create_bucket("no-such-type")
        with Client(served.url) as anonymous, pytest.raises(Unauthorized):
            anonymous.create_bucket("model")
        assert alice.delete_bucket(bucket_id)["deleted"] == [bucket_id]
        with pytest.raises(NotFound):
            alice.get_bucket(bucket_id)


def test_files_small_and_large_sync(served, tmp_path):
    with Client(served.url, served.token("alice"), config=SMALL) as alice:
        bucket_id = alice.create_bucket("training-data")["id"]
        small = os.urandom(300_000)
        large = os.urandom(12 * MiB + 123)  # 5 MiB server chunks: 3 chunks, 4 in flight
        (tmp_path / "small.bin").write_bytes(small)
        (tmp_path / "large.bin").write_bytes(large)
        seen = []
        result = alice.upload_file(bucket_id, "dir/small.bin", tmp_path / "small.bin", progress=seen.append)
        assert result["sha256"] == sha(small) and sum(seen) == len(small)
        seen.clear()
        result = alice.upload_file(bucket_id, "dir/large.bin", str(tmp_path / "large.bin"), progress=seen.append)
        assert result["sha256"] == sha(large) and result["size"] == len(large) and sum(seen) == len(large)
        assert alice.list_uploads(bucket_id) == []  # the session was completed
        alice.upload_file(bucket_id, "dir/sub/fileobj.bin", io.BytesIO(b"from a file object"))
        info = alice.stat(bucket_id, "dir/large.bin")
        assert info.size == len(large) and info.sha256 == sha(large)
        listing = list(alice.list(bucket_id, "dir"))
        assert {"prefix": "dir/sub/"} in listing
        assert sorted(i["key"] for i in listing if "key" in i) == ["dir/large.bin", "dir/small.bin"]
        assert sorted(i["key"] for i in alice.list(bucket_id, recursive=True)) == [
            "dir/large.bin", "dir/small.bin", "dir/sub/fileobj.bin"]
        seen.clear()
        result = alice.download_file(bucket_id, "dir/large.bin", tmp_path / "out" / "large.bin",
                                     progress=seen.append)
        assert result["verified"] and (tmp_path / "out" / "large.bin").read_bytes() == large
        assert sum(seen) == len(large)
        assert not (tmp_path / "out" / "large.bin.part").exists()
        assert not (tmp_path / "out" / "large.bin.part.json").exists()
        alice.download_folder(bucket_id, "dir", tmp_path / "folder", include=["*.bin"], exclude=["large*"])
        assert sorted(p.relative_to(tmp_path / "folder").as_posix()
                      for p in (tmp_path / "folder").rglob("*") if p.is_file()) == ["small.bin", "sub/fileobj.bin"]
        assert alice.delete(bucket_id, "dir/small.bin")["deleted"] == ["dir/small.bin"]
        with pytest.raises(NotFound):
            alice.stat(bucket_id, "dir/small.bin")
        with pytest.raises(NotFound):
            alice.download_file(bucket_id, "dir/small.bin", tmp_path / "gone.bin")


async def test_async_client_same_methods_and_paging(served, tmp_path):
    assert {name for name in dir(AsyncClient) if not name.startswith("_")} <= set(dir(Client))
    async with AsyncClient(served.url, served.token("alice"), config=SMALL) as alice:
        bucket_id = (await alice.create_bucket("model"))["id"]
        for number in range(5):
            await alice.upload_file(bucket_id, f"many/{number}.txt", io.BytesIO(f"file {number}".encode()))
        page = await alice.list_page(bucket_id, "many", limit=2)
        assert page["IsTruncated"] and len(page["Contents"]) == 2
        keys = [item["key"] async for item in alice.list(bucket_id, "many/")]
        assert keys == [f"many/{n}.txt" for n in range(5)]
        data = os.urandom(7 * MiB)
        (tmp_path / "a.bin").write_bytes(data)
        await alice.upload_file(bucket_id, "a.bin", tmp_path / "a.bin")
        await alice.download_file(bucket_id, "a.bin", tmp_path / "b.bin")
        assert (tmp_path / "b.bin").read_bytes() == data


def test_anonymous_download_of_a_public_bucket(served, tmp_path):
    with Client(served.url, served.token("alice")) as alice:
        bucket_id = alice.create_bucket("training-data", public=True)["id"]
        private_id = alice.create_bucket("training-data")["id"]
        data = os.urandom(3 * MiB)
        alice.upload_file(bucket_id, "public.bin", io.BytesIO(data))
        alice.upload_file(private_id, "private.bin", io.BytesIO(data))
    with Client(served.url, config=SMALL) as anonymous:
        assert [item["key"] for item in anonymous.list(bucket_id)] == ["public.bin"]
        result = anonymous.download_file(bucket_id, "public.bin", tmp_path / "public.bin")
        assert result["verified"] and (tmp_path / "public.bin").read_bytes() == data
        with pytest.raises(Unauthorized):  # anonymous where a user is needed
            anonymous.download_file(private_id, "private.bin", tmp_path / "private.bin")
        with pytest.raises(Unauthorized):
            anonymous.upload_file(bucket_id, "x", io.BytesIO(b"x"))


def test_parse_repr_digest():
    assert parse_repr_digest("sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:") == sha(b"")
    assert parse_repr_digest("sha-512=:abc=:, sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:") == sha(b"")
    assert parse_repr_digest(None) is None and parse_repr_digest("sha-256=:bad:") is None
