"""The sage:// fsspec filesystem (sagestore/client/fs.py) against a real `sagestore serve` process:
fsspec's own shared test suite for implementations (copy, get, put, pipe, open), then what it does
not cover: metadata from HEAD, listings with paging and the listing cache, ranged reads and the read
cache, resumable uploads for large writes, transactions, share links, errors, refused keys, anonymous
reads of public buckets, pickling and forked workers."""
from __future__ import annotations

import asyncio
import errno
import hashlib
import io
import multiprocessing
import os
import pickle
import posixpath
import re
import subprocess
import sys
import threading
import uuid
from operator import methodcaller

import aiohttp
import fsspec
import fsspec.tests.abstract as abstract
import pytest
import requests
from aiohttp import web
from support.client import MiB
from support.server import REPO

from sagestore.client import Client
from sagestore.client.fs import SageFileSystem



@pytest.fixture(scope="module")
def alice_fs(served):
    fs = SageFileSystem(served.url, served.token("alice"), skip_instance_cache=True)
    yield fs


@pytest.fixture(scope="module")
def bucket(served):
    with Client(served.url, served.token("alice")) as alice:
        return alice.create_bucket("training-data", "fsspec-tests")["id"]


class SageFixtures(abstract.AbstractFixtures):
    """fsspec's fixtures for an implementation: one filesystem, a fresh folder per test."""

    @pytest.fixture
    def fs(self, alice_fs):
        alice_fs.invalidate_cache()
        return alice_fs

    @pytest.fixture
    def fs_path(self, bucket):
        return f"{bucket}/{uuid.uuid4().hex[:8]}"

    @pytest.fixture
    def fs_join(self):
        return posixpath.join

    @pytest.fixture
    def supports_empty_directories(self):
        return False  # folders exist through their files, as on S3


class TestSageCopy(abstract.AbstractCopyTests, SageFixtures):
    pass


class TestSageGet(abstract.AbstractGetTests, SageFixtures):
    pass


class TestSagePut(abstract.AbstractPutTests, SageFixtures):
    pass


class TestSagePipe(abstract.AbstractPipeTests, SageFixtures):
    pass


class TestSageOpen(abstract.AbstractOpenTests, SageFixtures):
    pass


# ---------------------------------------------------------------------- beyond fsspec's suite
def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def gets(served) -> float:
    """File GETs (200 or 206) the server answered so far."""
    text = requests.get(served.url + "/metrics", timeout=30).text
    return sum(float(value) for value in re.findall(
        r'^sagestore_http_request_duration_seconds_count\{method="GET",route="/api/v1/objects/\{id\}/\{key\}",'
        r'status="20[06]"\} (\S+)$', text, re.M))


def test_the_entry_point_and_the_clis_environment(served, bucket, monkeypatch, tmp_path):
    monkeypatch.setenv("SAGESTORE_URL", served.url)
    monkeypatch.setenv("SAGESTORE_TOKEN", served.token("alice"))
    fs = fsspec.filesystem("sage", skip_instance_cache=True)
    assert isinstance(fs, SageFileSystem) and fs.url == served.url
    assert served.token("alice") not in repr(fs) and "<set>" in repr(fs)
    with fsspec.open(f"sage://{bucket}/entry/hello.txt", "w") as text:  # the URL alone, like pandas
        text.write("hello")
    assert fs.cat(f"sage://{bucket}/entry/hello.txt") == b"hello"
    monkeypatch.delenv("SAGESTORE_URL")
    monkeypatch.setenv("SAGE_STORE_URL", served.url)  # sage-cli's names work too
    assert fsspec.filesystem("sage", skip_instance_cache=True).exists(f"{bucket}/entry/hello.txt")
    monkeypatch.delenv("SAGE_STORE_URL")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no profile either: the CLI's default server
    monkeypatch.delenv("SAGESTORE_CONFIG", raising=False)
    assert fsspec.filesystem("sage", skip_instance_cache=True).url == "http://127.0.0.1:8080"
    anonymous = SageFileSystem(served.url, anon=True, skip_instance_cache=True)
    with pytest.raises(PermissionError, match="authentication required"):  # the env token is ignored
        anonymous.cat(f"{bucket}/entry/hello.txt")


def test_info_from_head_and_listings(alice_fs, bucket):
    fs = alice_fs
    data = b"x,y\n1,2\n"
    fs.pipe(f"{bucket}/info/table.csv", data)
    info = fs.info(f"sage://{bucket}/info/table.csv")
    assert info["type"] == "file" and info["size"] == len(data) and info["sha256"] == sha(data)
    assert info["etag"].startswith('"') and info["content_type"] == "text/csv"
    assert fs.modified(f"{bucket}/info/table.csv").tzinfo is not None
    assert fs.info(f"{bucket}/info") == {"name": f"{bucket}/info", "size": 0, "type": "directory"}
    assert fs.info(bucket)["type"] == "directory" and fs.isdir(bucket)
    assert bucket in fs.ls("", detail=False)  # the root lists the caller's buckets
    assert fs.ls(f"{bucket}/info/table.csv", detail=False) == [f"{bucket}/info/table.csv"]  # ls of a file
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        fs.info(f"{bucket}/info/missing.csv")
    with pytest.raises(FileNotFoundError):
        fs.ls(f"{bucket}/no-such-folder")
    # checksum and ukey follow the ETag: the same while the file stays, another once it is replaced
    key, checksum = fs.ukey(f"{bucket}/info/table.csv"), fs.checksum(f"{bucket}/info/table.csv")
    assert fs.ukey(f"{bucket}/info/table.csv") == key
    fs.pipe(f"{bucket}/info/table.csv", b"x,y\n3,4\n")
    assert fs.ukey(f"{bucket}/info/table.csv") != key and fs.checksum(f"{bucket}/info/table.csv") != checksum


def test_listings_page_and_are_cached_until_a_write(alice_fs, bucket, served):
    """1001 files: more than one page (1000 keys); glob and find on one recursive listing."""
    fs = alice_fs
    fs.pipe({f"{bucket}/many/f{number:04d}.txt": b"%d" % number for number in range(1001)})
    fs.pipe(f"{bucket}/many/sub/deep/last.txt", b"last")
    names = fs.ls(f"{bucket}/many", detail=False)
    assert len(names) == 1002 and names[0] == f"{bucket}/many/f0000.txt" and f"{bucket}/many/sub" in names
    assert len(fs.glob(f"{bucket}/many/**/*.txt")) == 1002
    assert fs.find(f"{bucket}/many/sub", withdirs=True) == [
        f"{bucket}/many/sub", f"{bucket}/many/sub/deep", f"{bucket}/many/sub/deep/last.txt"]
    assert fs.du(f"{bucket}/many") == sum(len(b"%d" % n) for n in range(1001)) + 4
    # the listing is cached: another writer's file shows after invalidate_cache() or refresh=True
    with Client(served.url, served.token("alice")) as other:
        other.upload_file(bucket, "many/other.txt", io.BytesIO(b"o"))
    assert f"{bucket}/many/other.txt" not in fs.ls(f"{bucket}/many", detail=False)
    assert f"{bucket}/many/other.txt" in fs.ls(f"{bucket}/many", detail=False, refresh=True)
    fs.rm(f"{bucket}/many/other.txt")  # this filesystem's own writes update its cache
    assert f"{bucket}/many/other.txt" not in fs.ls(f"{bucket}/many", detail=False)


def test_ranged_reads_and_the_read_cache(alice_fs, bucket, served):
    fs = alice_fs
    data = os.urandom(3 * MiB + 5)
    path = f"{bucket}/read/data.bin"
    fs.pipe(path, data)
    assert fs.cat_file(path, 10, 20) == data[10:20]
    assert fs.cat_file(path, -5) == data[-5:] and fs.cat_file(path, 10, -10) == data[10:-10]
    assert fs.cat_file(path, len(data) + 1) == b"" and fs.cat_file(path, 5, 5) == b""
    assert fs.cat_ranges([path, path], [0, 100], [10, 110]) == [data[:10], data[100:110]]
    # a footer read (8 bytes at the end) fetches the file's tail once; the footer then comes from it
    before = gets(served)
    with fs.open(path, "rb") as f:
        f.seek(-8, 2)
        assert f.read(8) == data[-8:]
        f.seek(-60_000, 2)
        assert f.read(1000) == data[-60_000:-59_000]
        assert gets(served) - before == 1
        f.seek(1000)  # a read elsewhere fetches just its range
        assert f.read(10) == data[1000:1010]
        assert f.cache.total_requested_bytes == 64 * 1024 + 10
    # sequential reads read ahead, the window doubling from the block size (here 64 KiB)
    before = gets(served)
    with fs.open(path, "rb", block_size=64 * 1024) as f:
        pieces = [f.read(16 * 1024) for _ in range((len(data) + 16 * 1024 - 1) // (16 * 1024))]
    assert b"".join(pieces) == data
    assert gets(served) - before <= 7  # 64 KiB, 128, 256, 512, 1 MiB, 2 MiB: all of 3 MiB in 6 GETs
    assert fs.read_block(path, 1000, 100, delimiter=None) == data[1000:1100]


def test_a_file_replaced_while_it_is_read_is_an_error(alice_fs, bucket):
    fs = alice_fs
    path = f"{bucket}/read/changing.bin"
    fs.pipe(path, b"a" * MiB)
    with fs.open(path, "rb", block_size=1000) as f:
        assert f.read(10) == b"a" * 10
        fs.pipe(path, b"b" * MiB)
        f.seek(500_000)
        with pytest.raises(OSError, match="changed while it was read") as changed:
            f.read(10)
        assert changed.value.errno == errno.ESTALE


def test_large_writes_go_as_a_verified_session(served, bucket, tmp_path):
    """Above the threshold (1 MiB here), writes are spooled to disk and sent as a resumable session
    (chunks of the server's 5 MiB parts); the server checks the sha256 the client computed."""
    fs = SageFileSystem(served.url, served.token("alice"), threshold=1 * MiB, skip_instance_cache=True)
    data = os.urandom(6 * MiB + 3)
    received = served.metric("sagestore_session_received_bytes_total")
    with fs.open(f"{bucket}/big/written.bin", "wb") as f:
        for start in range(0, len(data), 700_000):
            f.write(data[start:start + 700_000])
        assert not isinstance(f._spool, io.BytesIO)  # on disk, not in memory
        assert not fs.exists(f"{bucket}/big/written.bin")  # nothing visible before close
    assert served.metric("sagestore_session_received_bytes_total") - received == len(data)
    info = fs.info(f"{bucket}/big/written.bin")
    assert info["size"] == len(data) and info["sha256"] == sha(data)
    (tmp_path / "local.bin").write_bytes(data)
    fs.put(str(tmp_path / "local.bin"), f"{bucket}/big/put.bin")
    fs.get(f"{bucket}/big/put.bin", str(tmp_path / "back.bin"))  # parallel ranged GETs, sha256 checked
    assert (tmp_path / "back.bin").read_bytes() == data and not list(tmp_path.glob("*.part*"))
    fs.cp(f"{bucket}/big/put.bin", f"{bucket}/big/copy.bin")  # through a temporary file above 1 MiB
    fs.mv(f"{bucket}/big/copy.bin", f"{bucket}/big/moved.bin")
    assert fs.info(f"{bucket}/big/moved.bin")["sha256"] == sha(data)
    assert not fs.exists(f"{bucket}/big/copy.bin")
    with Client(served.url, served.token("alice")) as alice:
        assert alice.list_uploads(bucket) == []


def test_mv_of_a_folder_is_a_copy_and_a_delete(alice_fs, bucket):
    fs = alice_fs
    fs.pipe({f"{bucket}/mv/src/a.txt": b"a", f"{bucket}/mv/src/deep/b.txt": b"b"})
    fs.mv(f"{bucket}/mv/src", f"{bucket}/mv/dst", recursive=True)
    assert fs.find(f"{bucket}/mv") == [f"{bucket}/mv/dst/a.txt", f"{bucket}/mv/dst/deep/b.txt"]
    assert fs.cat(f"{bucket}/mv/dst/deep/b.txt") == b"b" and not fs.exists(f"{bucket}/mv/src")
    fs.rename(f"{bucket}/mv/dst/a.txt", f"{bucket}/mv/renamed.txt")
    assert fs.ls(f"{bucket}/mv", detail=False) == [f"{bucket}/mv/dst", f"{bucket}/mv/renamed.txt"]


def test_transactions_publish_on_commit_only(alice_fs, bucket, served):
    fs = alice_fs
    with fs.transaction:
        with fs.open(f"{bucket}/tx/a.bin", "wb") as f:
            f.write(b"first")
        assert not fs.exists(f"{bucket}/tx/a.bin")  # closed, not committed
    assert fs.cat(f"{bucket}/tx/a.bin") == b"first"
    with pytest.raises(RuntimeError, match="boom"):
        with fs.transaction:
            with fs.open(f"{bucket}/tx/b.bin", "wb") as f:
                f.write(b"never")
            raise RuntimeError("boom")
    assert not fs.exists(f"{bucket}/tx/b.bin")
    with pytest.raises(FileExistsError):
        fs.open(f"{bucket}/tx/a.bin", "xb")
    with pytest.raises(NotImplementedError, match="appended"):
        fs.open(f"{bucket}/tx/a.bin", "ab")


class ChunkRefusingProxy:
    """An HTTP proxy to the server that answers every session chunk PUT with a 400 (a failure the
    client does not retry): an upload that starts a session and cannot finish it."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait(30)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        self.session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * MiB)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.method == "PUT" and "/upload/" in request.path:
            return web.json_response({"error": "the proxy refuses chunks"}, status=400)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self.session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                        data=body) as answer:
            return web.Response(status=answer.status, body=await answer.read(),
                                headers={k: v for k, v in answer.headers.items()
                                         if k.lower() in ("content-type", "etag", "repr-digest")})

    def close(self) -> None:
        async def stop() -> None:
            await self.session.close()
            await self.runner.cleanup()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_a_failed_write_aborts_its_session_and_publishes_nothing(served, bucket):
    proxy = ChunkRefusingProxy(served.url)
    try:
        fs = SageFileSystem(proxy.url, served.token("alice"), threshold=1 * MiB, skip_instance_cache=True)
        with pytest.raises(OSError, match="the proxy refuses chunks") as refused:
            with fs.open(f"{bucket}/failed/big.bin", "wb") as f:
                f.write(os.urandom(6 * MiB))
        assert refused.value.errno == errno.EINVAL
        with pytest.raises(OSError, match="the proxy refuses chunks"):  # in a transaction: at its end
            with fs.transaction:
                with fs.open(f"{bucket}/failed/tx.bin", "wb") as f:
                    f.write(os.urandom(6 * MiB))
        with Client(served.url, served.token("alice")) as alice:
            def left() -> list[str]:
                return [u["key"] for u in alice.list_uploads(bucket) if u["key"].startswith("failed/")]
            assert left() == []  # fsspec discards a file whose commit failed: its session is aborted
            f = fs.open(f"{bucket}/failed/later.bin", "wb", autocommit=False)
            f.write(os.urandom(6 * MiB))
            f.close()
            with pytest.raises(OSError, match="the proxy refuses chunks"):
                f.commit()
            assert left() == ["failed/later.bin"]  # a commit that failed can be tried again ...
            f.discard()
            assert left() == []  # ... or given up: its session is aborted
        assert fs.find(f"{bucket}/failed") == []
    finally:
        proxy.close()


def test_errors_are_the_ones_fsspec_callers_expect(served, bucket, alice_fs):
    alice_fs.pipe(f"{bucket}/errors/a.txt", b"a")
    bob = SageFileSystem(served.url, served.token("bob"), skip_instance_cache=True)
    with pytest.raises(FileNotFoundError, match="bucket not found"):  # not his: invisible, not forbidden
        bob.cat(f"{bucket}/errors/a.txt")
    with Client(served.url, served.token("alice")) as alice:
        alice.grant(bucket, "USER", "bob", "READ")
    try:
        assert bob.cat(f"{bucket}/errors/a.txt") == b"a"
        with pytest.raises(PermissionError) as denied:
            bob.pipe(f"{bucket}/errors/b.txt", b"b")
        assert denied.value.errno == errno.EACCES and denied.value.strerror
    finally:
        with Client(served.url, served.token("alice")) as alice:
            alice.revoke(bucket, "USER", "bob")
    with pytest.raises(FileNotFoundError, match="file not found"):
        alice_fs.cat_file(f"{bucket}/errors/missing.txt")
    with pytest.raises(IsADirectoryError):
        alice_fs.open(f"{bucket}/errors", "rb")
    with pytest.raises(IsADirectoryError):
        alice_fs.cat_file(f"{bucket}/errors")
    with pytest.raises(IsADirectoryError):
        alice_fs.pipe(bucket, b"a bucket is a folder")
    with pytest.raises(IsADirectoryError):
        alice_fs.rm(f"{bucket}/errors")
    with pytest.raises(FileNotFoundError):
        alice_fs.rm(f"{bucket}/errors/missing.txt")
    alice_fs.rm(f"{bucket}/errors", recursive=True)
    assert not alice_fs.exists(f"{bucket}/errors") and alice_fs.exists(bucket)  # the bucket stays


@pytest.mark.parametrize("key", ["../escape", "a/../../escape", "a//b", "./a", "a/.", "a\\b", "a\x00b", "a\nb",
                                 "..", "../shares/x", ".", "x?y/z", "%2e%2e/x"])
def test_paths_that_could_escape_are_refused_before_any_request(key, bucket):
    """Keys with '.', '..' or empty segments, backslashes or control characters, and buckets that are
    not a plain name (a bucket '..' would turn /api/v1/objects/../shares/x into another route)."""
    nowhere = SageFileSystem("http://127.0.0.1:9", "token", skip_instance_cache=True)  # nothing listens
    path = key if key.startswith((".", "x?", "%")) else f"{bucket}/{key}"
    for call in (lambda p: nowhere.cat_file(p), lambda p: nowhere.pipe_file(p, b"x"), nowhere.info,
                 nowhere.rm_file, lambda p: nowhere.open(p, "wb"), nowhere.ls):
        with pytest.raises(ValueError, match="no empty, '.' or '..' segments|a bucket is its id"):
            call(path)


def test_public_buckets_read_with_no_token_and_share_links(served, alice_fs):
    with Client(served.url, served.token("alice")) as alice:
        public = alice.create_bucket("training-data", "fsspec-public", public=True)["id"]
    alice_fs.pipe(f"{public}/data/part-0.csv", b"a,b\n1,2\n")
    anonymous = SageFileSystem(served.url, skip_instance_cache=True)
    assert anonymous.ls(f"sage://{public}/data", detail=False) == [f"{public}/data/part-0.csv"]
    assert anonymous.cat(f"sage://{public}/data/part-0.csv") == b"a,b\n1,2\n"
    with pytest.raises(PermissionError, match="authentication required"):
        anonymous.pipe(f"{public}/data/part-1.csv", b"no")
    link = alice_fs.sign(f"{public}/data/part-0.csv", expiration=60)
    assert requests.get(link, timeout=30).content == b"a,b\n1,2\n"  # no Authorization header
    upload = alice_fs.sign(f"{public}/data/part-2.csv", expiration=60, method="PUT")
    assert requests.put(upload, data=b"c,d\n", timeout=30).status_code in (200, 201)
    assert anonymous.cat(f"{public}/data/part-2.csv") == b"c,d\n"


def test_pickled_and_forked_filesystems_work_in_workers(alice_fs, bucket):
    path = f"{bucket}/workers/x.bin"
    alice_fs.pipe(path, b"for the workers")
    state = pickle.dumps(alice_fs)
    assert b"ClientSession" not in state and b"aiohttp" not in state  # the options only
    assert pickle.loads(state).cat(path) == b"for the workers"
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # dask, DataLoader with spawn
        # methodcaller: the child imports sagestore, not this test module; a timeout, because a
        # child that dies unpickling its task leaves apply() waiting for ever
        assert pool.apply_async(methodcaller("cat", path), (alice_fs,)).get(timeout=60) == b"for the workers"
    # DataLoader's default: a forked worker uses the parent's object. Forked from a fresh process, not
    # from this one: a pytest-xdist worker runs threads of its own, whose locks a fork may copy held
    forked = subprocess.run([sys.executable, "-c", FORKED_WORKER, alice_fs.url, alice_fs._token, path],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert forked.returncode == 0 and forked.stdout == "for the workers\nfor the workers\n", forked
    assert alice_fs.cat(path) == b"for the workers"  # and the parent's connections still work


FORKED_WORKER = """
import multiprocessing, sys
from operator import methodcaller
from sagestore.client.fs import SageFileSystem

if __name__ == "__main__":
    url, token, path = sys.argv[1:]
    fs = SageFileSystem(url, token, skip_instance_cache=True)
    print(fs.cat(path).decode())  # the parent's loop and connections exist before the fork
    with multiprocessing.get_context("fork").Pool(1) as pool:
        print(pool.apply_async(methodcaller("cat", path), (fs,)).get(timeout=60).decode())
    assert fs.cat(path) == b"for the workers"
"""


async def test_asynchronous_use_in_the_callers_event_loop(served, bucket):
    fs = SageFileSystem(served.url, served.token("alice"), asynchronous=True, skip_instance_cache=True)
    await fs._pipe_file(f"{bucket}/async/a.txt", b"awaited")
    assert await fs._cat_file(f"{bucket}/async/a.txt", 2) == b"aited"
    assert await fs._ls(f"{bucket}/async", detail=False) == [f"{bucket}/async/a.txt"]
    assert "sha256" not in await fs._info(f"{bucket}/async/a.txt")  # from the listing just cached
    assert (await fs._info(f"{bucket}/async/a.txt", refresh=True))["sha256"] == sha(b"awaited")  # a HEAD
    await fs._rm(f"{bucket}/async", recursive=True)
    assert not await fs._exists(f"{bucket}/async/a.txt")
    await fs.client.close()
