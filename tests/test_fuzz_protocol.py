"""hypothesis on the protocol headers and on keys, against a live `sagestore serve` subprocess:
Upload-Offset, Upload-Length, Upload-Metadata, Upload-Checksum, Upload-Complete, Content-Range,
Range, Content-Digest and Tus-Resumable take arbitrary values; keys are arbitrary text; every door
that takes a body also gets empty ones. No answer is a 5xx, and a 4xx changes nothing (the upload's
offset and the bucket's listing).

SAGESTORE_FUZZ_EXAMPLES sets the examples per test (CI: 8 x 5; the full run: 200 x 5)."""
from __future__ import annotations

import os
import time

import pytest
import requests
from support.server import ServerProcess
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.tus import metadata
from support.data import auth, create_bucket_row

EXAMPLES = int(os.environ.get("SAGESTORE_FUZZ_EXAMPLES", "8")) * 5
ALICE = auth("alice")
TUS = {"Tus-Resumable": "1.0.0"}
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)

header_values = st.one_of(
    st.sampled_from(["", "0", "-1", "1", "1000", "1001", "18446744073709551616", "1e3", " 7 ", "0x10", "?0", "?1",
                     "?2", "1.0.0", "0.2.2", "sha256 !!", "md5 ", "bytes=0-", "bytes=-5", "bytes 0-9/10",
                     "bytes */5", "sha-256=:AAAA:", "key", "key dGVzdA==,other", "a b c", "\t", ":", ";;"]),
    st.integers(min_value=-10, max_value=2**70).map(str),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
).map(str.lstrip)  # requests refuses to send a value with leading whitespace
FIELDS = ["Upload-Offset", "Upload-Length", "Upload-Metadata", "Upload-Checksum", "Upload-Complete",
          "Content-Range", "Range", "Content-Digest", "Tus-Resumable", "Upload-Defer-Length", "Upload-Concat"]
fuzzed_headers = st.dictionaries(st.sampled_from(FIELDS), header_values, min_size=1, max_size=5)


@pytest.fixture(scope="module")
def live(base_settings):
    server = ServerProcess(base_settings).start()
    bucket_id = create_bucket_row(base_settings.database_url)
    yield server, bucket_id
    server.stop()


def tus_upload(server, bucket_id: str) -> str:
    response = requests.post(f"{server.url}/api/v1/tus/", timeout=30, headers={
        **ALICE, **TUS, "Upload-Length": "5000", "Upload-Metadata": metadata(bucket=bucket_id, key="fuzz/t.bin")})
    location = server.url + response.headers["Location"]
    response = requests.patch(location, data=b"a" * 1000, timeout=30, headers={
        **ALICE, **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert response.status_code == 204
    return location


def tus_offset(location: str) -> str:
    return requests.head(location, headers={**ALICE, **TUS}, timeout=30).headers.get("Upload-Offset")


def test_tus_patch_headers(live):
    server, bucket_id = live
    location = tus_upload(server, bucket_id)

    @FUZZ
    @given(headers=fuzzed_headers, body=st.binary(max_size=64))
    def run(headers, body):
        before = tus_offset(location)
        response = requests.patch(location, data=body, timeout=30, headers={
            **ALICE, "Content-Type": "application/offset+octet-stream", **TUS, **headers})
        assert response.status_code < 500, (headers, response.status_code, response.text)
        if response.status_code >= 400:
            assert tus_offset(location) == before, headers
    run()


def test_tus_and_ietf_creation_headers(live):
    server, bucket_id = live

    @FUZZ
    @given(headers=fuzzed_headers, ietf=st.booleans())
    def run(headers, ietf):
        url = f"{server.url}/api/v1/uploads/?bucket={bucket_id}&key=fuzz/c.bin" if ietf else f"{server.url}/api/v1/tus/"
        base = {} if ietf else {**TUS, "Upload-Metadata": metadata(bucket=bucket_id, key="fuzz/c.bin")}
        response = requests.post(url, timeout=30, headers={**ALICE, **base, **headers})
        assert response.status_code < 500, (headers, response.status_code, response.text)
    run()


def test_ietf_append_headers(live):
    server, bucket_id = live
    response = requests.post(f"{server.url}/api/v1/uploads/?bucket={bucket_id}&key=fuzz/i.bin", timeout=30,
                             headers={**ALICE, "Upload-Complete": "?0"})
    location = server.url + response.headers["Location"]

    @FUZZ
    @given(headers=fuzzed_headers, body=st.binary(max_size=64))
    def run(headers, body):
        before = requests.head(location, headers=ALICE, timeout=30).headers.get("Upload-Offset")
        response = requests.patch(location, data=body, timeout=30, headers={
            **ALICE, "Content-Type": "application/partial-upload", **headers})
        assert response.status_code < 500, (headers, response.status_code, response.text)
        if response.status_code >= 400:
            assert requests.head(location, headers=ALICE, timeout=30).headers.get("Upload-Offset") == before
    run()


def test_download_range_headers(live):
    server, bucket_id = live
    url = f"{server.url}/api/v1/objects/{bucket_id}/fuzz/range.bin"
    assert requests.put(url, data=b"0123456789" * 100, headers=ALICE, timeout=30).status_code in (200, 201)

    @FUZZ
    @given(headers=fuzzed_headers, method=st.sampled_from(["GET", "HEAD"]))
    def run(headers, method):
        response = requests.request(method, url, headers={**ALICE, **headers}, timeout=30)
        assert response.status_code < 500, (headers, response.status_code)
    run()


def listing(server, bucket_id: str) -> list[str]:
    response = requests.get(f"{server.url}/api/v1/objects/{bucket_id}/", params={"recursive": "true"},
                            headers=ALICE, timeout=30)
    assert response.status_code == 200, response.text
    return sorted(response.text.split())


def test_keys_and_paths(live):
    server, bucket_id = live
    keys = st.one_of(st.text(max_size=40), st.sampled_from(["..", ".", "a/../b", "a//b", "/a", "a/", "\\", "%00",
                                                            "%2e%2e", "a" * 1200, "é/ü", "\u202e", "a\x7fb"]))

    @FUZZ
    @given(key=keys, how=st.sampled_from(["raw", "offset", "tus"]))
    def run(key, how):
        before = listing(server, bucket_id)
        if how == "raw":
            quoted = requests.utils.quote(key, safe="/")
            response = requests.put(f"{server.url}/api/v1/objects/{bucket_id}/{quoted}", data=b"x",
                                    headers=ALICE, timeout=30)
        elif how == "offset":
            response = requests.put(f"{server.url}/api/v1/upload", params={"bucket_id": bucket_id, "key": key},
                                    data=b"x", headers=ALICE, timeout=30)
        else:
            response = requests.post(f"{server.url}/api/v1/tus/", timeout=30, headers={
                **ALICE, **TUS, "Upload-Length": "1", "Upload-Metadata": metadata(bucket=bucket_id, key=key)})
        assert response.status_code < 500, (key, how, response.status_code, response.text)
        if response.status_code >= 400:
            assert listing(server, bucket_id) == before, (key, how)
    run()


def test_zero_length_bodies_at_every_door(live):
    """Empty bodies (Content-Length: 0) with fuzzed protocol headers and Content-Types at every door that
    takes a body: no 5xx, a 4xx changes nothing, and /healthz answers within a second after each."""
    server, bucket_id = live
    tus_location = tus_upload(server, bucket_id)
    ietf = requests.post(f"{server.url}/api/v1/uploads/?bucket={bucket_id}&key=fuzz/e.bin", timeout=30,
                         headers={**ALICE, "Upload-Complete": "?0"})
    multipart = requests.post(f"{server.url}/api/v1/multipart/", headers=ALICE, timeout=30, json={
        "object_type": "file", "object_id": bucket_id, "key": "fuzz/m.bin"}).json()["upload_id"]
    session = requests.post(f"{server.url}/api/v1/attachment/initiate", headers=ALICE, timeout=30, json={
        "bucket_id": bucket_id, "fileName": "e.bin", "fileSize": 10}).json()["sessionId"]
    link = requests.post(f"{server.url}/api/v1/shares", headers=ALICE, timeout=30, json={
        "bucket_id": bucket_id, "key": "fuzz/link.bin", "method": "PUT"}).json()["url"]
    doors = {
        "raw": ("PUT", f"{server.url}/api/v1/objects/{bucket_id}/fuzz/empty.bin"),
        "signed": ("PUT", server.url + "/api/" + link.split("/api/", 1)[1]),
        "part": ("PUT", f"{server.url}/api/v1/multipart/{multipart}/parts/1"),
        "offset": ("PUT", f"{server.url}/api/v1/upload?bucket_id={bucket_id}&key=fuzz/o.bin"),
        "chunk": ("PUT", f"{server.url}/api/v1/attachment/session/{session}/upload/1"),
        "tus create": ("POST", f"{server.url}/api/v1/tus/"),
        "tus patch": ("PATCH", tus_location),
        "ietf create": ("POST", f"{server.url}/api/v1/uploads/?bucket={bucket_id}&key=fuzz/f.bin"),
        "ietf append": ("PATCH", server.url + ietf.headers["Location"]),
    }
    content_types = st.sampled_from([None, "application/octet-stream", "application/offset+octet-stream",
                                     "application/partial-upload", "multipart/form-data; boundary=b", "text/plain"])

    @FUZZ
    @given(headers=fuzzed_headers, door=st.sampled_from(sorted(doors)), content_type=content_types,
           user=st.booleans())
    def run(headers, door, content_type, user):
        method, url = doors[door]
        before = tus_offset(tus_location)
        sent = {**(ALICE if user else {}), **TUS, **headers, **({"Content-Type": content_type} if content_type else {})}
        response = requests.request(method, url, data=b"", headers=sent, timeout=30)
        assert response.status_code < 500, (door, headers, response.status_code, response.text)
        if door == "tus patch" and response.status_code >= 400:
            assert tus_offset(tus_location) == before, headers
        started = time.monotonic()
        assert requests.get(server.url + "/healthz", timeout=1).status_code == 200
        assert time.monotonic() - started < 1
    run()
