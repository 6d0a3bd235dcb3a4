"""Issue 23's holes, against real `sagestore serve` processes (two instances on one database, as
behind a load balancer): each test is named after its item and failed before the gate.

Instance A has no public URL configured; instance B has one. Both are noauth ('sage user:<name>'
tokens, groups after ';groups='), so a token may name any user: the server must refuse what the
gate refuses, whoever the caller claims to be.
"""
from __future__ import annotations

import base64
import importlib.metadata
import re
import socket
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import requests
from support.data import auth
from support.server import ServerProcess

from sagestore.limits import LARGEST_OBJECT
from sagestore.osdu import partition_bucket_id

REPO = Path(__file__).resolve().parent.parent
PUBLIC_URL = "https://files.example.org/sage"
TIMEOUT = 30


@pytest.fixture(scope="module")
def servers(base_settings):
    a = ServerProcess(base_settings).start()
    b = ServerProcess(base_settings.replace(public_url=PUBLIC_URL)).start()
    yield a, b
    a.stop()
    b.stop()
    for server in (a, b):
        assert "Traceback" not in server.output, server.output[-3000:]


# ---------------------------------------------------------------------------------------- helpers
def new_bucket(server, owner: str = "alice", public: bool = False) -> str:
    response = requests.post(f"{server.url}/api/v1/objects", params={"type": "model", "name": "gate",
                                                                    **({"public": "true"} if public else {})},
                             headers=auth(owner), timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def grant(server, bucket_id: str, grantee: str, permission: str, owner: str = "alice",
          grantee_type: str = "USER") -> None:
    response = requests.put(f"{server.url}/api/v1/objects/{bucket_id}?permissions", headers=auth(owner),
                            json={"granteeType": grantee_type, "grantee": grantee, "permission": permission},
                            timeout=TIMEOUT)
    assert response.status_code == 200, response.text


def revoke(server, bucket_id: str, spec: str, owner: str = "alice") -> None:
    response = requests.delete(f"{server.url}/api/v1/objects/{bucket_id}", params={"permissions": "", "grantee": spec},
                               headers=auth(owner), timeout=TIMEOUT)
    assert response.status_code == 200 and response.json()["deleted"], response.text


def put(server, bucket_id: str, key: str, data: bytes, user: str = "alice") -> None:
    response = requests.put(f"{server.url}/api/v1/objects/{bucket_id}/{key}", data=data, headers=auth(user),
                            timeout=TIMEOUT)
    assert response.status_code == 200, response.text


def share(server, bucket_id: str, key: str, user: str, method: str = "GET") -> dict:
    response = requests.post(f"{server.url}/api/v1/shares", json={"bucket_id": bucket_id, "key": key,
                                                                  "method": method, "expires_in": 3600},
                             headers=auth(user), timeout=TIMEOUT)
    assert response.status_code == 201, response.text
    return response.json()


def on(server, url: str) -> str:
    """The same signed URL, asked of this instance (past a public URL's path prefix, as its proxy would)."""
    parts = urlsplit(url)
    return f"{server.url}/api/{parts.path.split('/api/', 1)[1]}?{parts.query}"


def within_the_acl_bound(check, bound: float = 8.0) -> float:
    """Seconds until check() holds, at most `bound` (the ACL cache's TTL of 5 s is the backstop of its
    notifications); fails past it."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < bound, "not within the ACL cache's bound"
        time.sleep(0.2)
    return time.monotonic() - started


def status(method: str, url: str, **kwargs) -> int:
    return requests.request(method, url, timeout=TIMEOUT, **kwargs).status_code


# --------------------------------------------------------------------------------------------- item 1
def test_item1_a_share_link_works_only_while_its_creator_holds_the_permission(servers):
    """Bob's GET and PUT links stop when the owner revokes his READ and WRITE, on both instances and after a
    restart; a link made on a public bucket stops when it goes private (also for content added later); the
    owner lists every link on her bucket, with its creator, and revokes bob's."""
    a, b = servers
    bucket = new_bucket(a)
    put(a, bucket, "report.txt", b"alice's data")
    grant(a, bucket, "bob", "READ")
    grant(a, bucket, "bob", "WRITE")
    get_link = share(a, bucket, "report.txt", "bob")["url"]
    put_link = share(a, bucket, "report.txt", "bob", "PUT")["url"]
    spare_put_link = share(a, bucket, "other.txt", "bob", "PUT")["url"]
    for server in (a, b):
        got = requests.get(on(server, get_link), timeout=TIMEOUT)
        assert (got.status_code, got.content) == (200, b"alice's data")

    revoke(a, bucket, "USER:bob:READ")
    assert status("GET", f"{a.url}/api/v1/objects/{bucket}/report.txt", headers=auth("bob")) == 404
    for server in (a, b):  # refused on every instance within the cache's bound
        within_the_acl_bound(lambda: status("GET", on(server, get_link)) == 403)
        assert status("HEAD", on(server, get_link)) == 403

    revoke(a, bucket, "USER:bob:WRITE")
    # waited for with bob's own token on another key: a PUT through the link that came before the
    # revocation reached instance b would be accepted and use the link up (seen in a CI run)
    within_the_acl_bound(lambda: status("PUT", f"{b.url}/api/v1/objects/{bucket}/probe.txt", data=b"probe",
                                        headers=auth("bob")) in (403, 404))  # 404: he can read nothing there
    assert status("PUT", on(b, spare_put_link), data=b"probe") == 403
    assert status("PUT", on(a, put_link), data=b"evil") == 403
    got = requests.get(f"{a.url}/api/v1/objects/{bucket}/report.txt", headers=auth("alice"), timeout=TIMEOUT)
    assert got.content == b"alice's data"

    a.stop()
    a.start()
    assert status("GET", on(a, get_link)) == 403
    assert status("PUT", on(a, put_link), data=b"evil") == 403

    # a GET link made while the bucket was public (carol holds nothing else) lives as long as it is public
    public = new_bucket(a, public=True)
    put(a, public, "open.txt", b"public data")
    carol_link = share(a, public, "open.txt", "carol")["url"]
    assert status("GET", on(b, carol_link)) == 200
    revoke(a, public, "GROUP:AllUsers")
    put(a, public, "open.txt", b"written after it went private")
    within_the_acl_bound(lambda: status("GET", on(b, carol_link)) == 403)
    assert status("GET", on(a, carol_link)) == 403

    # WRITE again: bob's PUT link works again (a refused PUT did not use it up)
    grant(a, bucket, "bob", "WRITE")
    within_the_acl_bound(lambda: status("PUT", on(b, spare_put_link), data=b"dropped in") != 403)
    got = requests.get(f"{a.url}/api/v1/objects/{bucket}/other.txt", headers=auth("alice"), timeout=TIMEOUT)
    assert got.content == b"dropped in"

    # the owner finds every link on her bucket, whoever made it, and revokes bob's other PUT link
    mine = share(a, bucket, "report.txt", "alice")
    listing = requests.get(f"{a.url}/api/v1/shares", params={"bucket_id": bucket}, headers=auth("alice"),
                           timeout=TIMEOUT).json()["shares"]
    assert {(item["created_by"], item["method"], item["key"]) for item in listing} == {
        ("bob", "GET", "report.txt"), ("bob", "PUT", "report.txt"), ("bob", "PUT", "other.txt"),
        ("alice", "GET", "report.txt")}
    bobs_put = next(item for item in listing if item["created_by"] == "bob" and item["key"] == "report.txt"
                    and item["method"] == "PUT")
    assert "url" not in bobs_put  # a link is a credential of its creator's: only its creator sees it again
    assert next(item for item in listing if item["id"] == mine["id"])["url"] == mine["url"]
    response = requests.delete(f"{a.url}/api/v1/shares/{bobs_put['id']}", headers=auth("alice"), timeout=TIMEOUT)
    assert response.status_code == 204
    for server in (a, b):
        within_the_acl_bound(lambda: status("PUT", on(server, put_link), data=b"evil") == 403)
    got = requests.get(f"{a.url}/api/v1/objects/{bucket}/report.txt", headers=auth("alice"), timeout=TIMEOUT)
    assert got.content == b"alice's data"
    # without bucket_id a user still lists her own links only; bob sees his, not alice's
    own = requests.get(f"{a.url}/api/v1/shares", headers=auth("alice"), timeout=TIMEOUT).json()["shares"]
    assert {item["created_by"] for item in own} == {"alice"}
    bobs = requests.get(f"{a.url}/api/v1/shares", params={"bucket_id": bucket}, headers=auth("bob"),
                        timeout=TIMEOUT).json()["shares"]
    assert bobs and {item["created_by"] for item in bobs} == {"bob"}


# --------------------------------------------------------------------------------------------- item 2
def test_item2_a_signed_put_counts_against_its_creators_upload_cap(servers, base_settings):
    """Signed PUTs take the creator's upload slots as every other upload does: while `uploads_per_user`
    of dave's links hold a body open, the next one through his link waits and is answered 429 with
    Retry-After; another user's upload is not held up."""
    a, _ = servers
    bucket = new_bucket(a, owner="dave")
    per_user = base_settings.uploads_per_user
    links = [share(a, bucket, f"slow-{n}.bin", "dave", "PUT")["url"] for n in range(per_user + 1)]
    held = []
    try:
        for link in links[:per_user]:
            parts = urlsplit(link)
            sock = socket.create_connection(("127.0.0.1", a.port), timeout=TIMEOUT)
            sock.sendall(f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
                         .encode() + b"a")
            held.append(sock)
        time.sleep(1)  # every held body has reached the server and holds its slot
        started = time.monotonic()
        refused = requests.put(on(a, links[-1]), data=b"one too many", timeout=60)
        assert refused.status_code == 429 and "Retry-After" in refused.headers, refused.text
        assert time.monotonic() - started >= base_settings.budget_wait * 0.8  # it waited for a slot first
        put(a, new_bucket(a, owner="erin"), "free.txt", b"not held up", user="erin")
    finally:
        for sock in held:
            sock.close()
    assert status("GET", f"{a.url}/api/v1/objects/{bucket}/slow-{per_user}.bin", headers=auth("dave")) == 404


# --------------------------------------------------------------------------------------------- item 3
def test_item3_one_largest_upload_for_every_door(base_settings):
    """max_upload_size above what one S3 object holds: every door and every advertised limit says the same
    largest upload, LARGEST_OBJECT, and a declared length beyond it is 413 at once."""
    server = ServerProcess(base_settings.replace(max_upload_size=60 * 2**40)).start()
    try:
        bucket = new_bucket(server)
        too_big = str(LARGEST_OBJECT + 1)
        options = requests.options(f"{server.url}/api/v1/tus/", headers={"Tus-Resumable": "1.0.0"}, timeout=TIMEOUT)
        assert options.headers["Tus-Max-Size"] == str(LARGEST_OBJECT)
        ietf = requests.options(f"{server.url}/api/v1/uploads/", timeout=TIMEOUT)
        assert f"max-size={LARGEST_OBJECT}" in ietf.headers["Upload-Limit"]
        link = share(server, bucket, "big.bin", "alice", "PUT")["url"]
        for url in (f"{server.url}/api/v1/objects/{bucket}/big.bin", on(server, link)):
            assert raw_status(server, "PUT", url, {"Content-Length": too_big, **auth("alice")}) == 413, url
        assert status("POST", f"{server.url}/api/v1/tus/", headers={
            "Tus-Resumable": "1.0.0", "Upload-Length": too_big, **auth("alice"),
            "Upload-Metadata": f"bucket {b64(bucket)},key {b64('big.bin')}"}) == 413
        assert status("POST", f"{server.url}/api/v1/uploads/?bucket={bucket}&key=big.bin", headers={
            "Upload-Complete": "?0", "Upload-Length": too_big, **auth("alice")}) == 413
        assert status("POST", f"{server.url}/api/v1/attachment/initiate", headers=auth("alice"), json={
            "bucket_id": bucket, "fileName": "big.bin", "fileSize": LARGEST_OBJECT + 1}) == 413
    finally:
        server.stop()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def raw_status(server, method: str, url: str, headers: dict[str, str]) -> int:
    """Send only a request head (a large declared body, none of it sent): the answer must come at once."""
    parts = urlsplit(url)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"{method} {parts.path}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\nHost: x\r\n"
                     f"{head}\r\n".encode())
        try:
            answer = sock.recv(65536)
        except socket.timeout:
            return 0  # no answer while it waits for the body
    return int(answer.split(b" ", 2)[1]) if answer else 0


# --------------------------------------------------------------------------------------------- item 5
HOSTILE_HOSTS = ["evil.example:666", "a@evil.example", "evil.example/x?", "[::1]:1", "evil.example\\@x"]


def test_item5_generated_urls_come_from_configuration_never_from_the_host_header(servers):
    """Share links (made and listed) and OSDU upload and download URLs: from --public-url, else the address
    the server listens on; whatever Host the request carries."""
    a, b = servers
    editor = auth("ed", ("service.file.editors",))
    for server, base in ((a, a.url), (b, PUBLIC_URL)):
        bucket = new_bucket(server)
        put(server, bucket, "f.txt", b"data")
        for host in HOSTILE_HOSTS:
            headers = {**auth("alice"), "Host": host}
            made = requests.post(f"{server.url}/api/v1/shares", headers=headers, timeout=TIMEOUT,
                                 json={"bucket_id": bucket, "key": "f.txt"})
            assert made.status_code == 201, made.text
            assert made.json()["url"].startswith(base + "/api/v1/signed/"), (host, made.json()["url"])
            listed = requests.get(f"{server.url}/api/v1/shares", params={"bucket_id": bucket}, headers=headers,
                                  timeout=TIMEOUT).json()["shares"]
            assert all(item["url"].startswith(base + "/api/v1/signed/") for item in listed), (host, listed)
            location = requests.get(f"{server.url}/api/file/v2/files/uploadURL", timeout=TIMEOUT, headers={
                **editor, "Host": host, "Data-Partition-Id": "default-partition"})
            assert location.status_code == 200, location.text
            signed_url = location.json()["Location"]["SignedURL"]
            assert signed_url.startswith(base + "/api/v1/signed/"), (host, signed_url)
        uploaded = requests.put(on(server, signed_url), data=b"osdu", timeout=TIMEOUT)
        assert uploaded.status_code == 201, uploaded.text
        file_id = location.json()["FileID"]
        download = requests.get(f"{server.url}/api/file/v2/files/{file_id}/downloadURL", timeout=TIMEOUT, headers={
            **auth("vi", ("service.file.viewers",)), "Host": "evil.example:666",
            "Data-Partition-Id": "default-partition"})
        assert download.status_code == 200 and download.json()["SignedUrl"].startswith(base + "/api/v1/signed/")
    # tus and IETF give relative Locations: nothing of the Host there either
    bucket = new_bucket(a)
    created = requests.post(f"{a.url}/api/v1/tus/", headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": "1", **auth("alice"), "Host": "evil.example:666",
        "Upload-Metadata": f"bucket {b64(bucket)},key {b64('t.bin')}"}, timeout=TIMEOUT)
    assert created.status_code == 201 and created.headers["Location"].startswith("/api/v1/tus/")
    created = requests.post(f"{a.url}/api/v1/uploads/?bucket={bucket}&key=i.bin", headers={
        "Upload-Complete": "?0", **auth("alice"), "Host": "evil.example:666"}, timeout=TIMEOUT)
    assert created.status_code == 201 and created.headers["Location"].startswith("/api/v1/uploads/")


# --------------------------------------------------------------------------------------------- item 6
NOT_ASCII_DIGITS = ["\u00b2", "\u0663", "1\u00b2", "\uff11", "1_0", "\u2468"]


def test_item6_numbers_are_ascii_digits_and_no_unauthenticated_request_gets_a_500(servers):
    """Superscript and other scripts' digits in every number a request carries (signed-URL expiry, also
    inside OSDU revokeURL's SignedURL; offsets, lengths, chunk and part numbers, limits): a 4xx, never a 500,
    with or without a user."""
    a, _ = servers
    bucket = new_bucket(a)
    put(a, bucket, "f.txt", b"data")
    link = share(a, bucket, "f.txt", "alice")["url"]
    parts = urlsplit(link)
    admin = {**auth("adm", ("service.file.admin",)), "Data-Partition-Id": "default-partition"}
    partition_bucket = partition_bucket_id("default-partition")
    for digits in NOT_ASCII_DIGITS:
        quoted = quote(digits)
        tampered = re.sub(r"expires=\d+", f"expires={quoted}", parts.query)
        for headers in ({}, auth("alice")):
            for method in ("GET", "HEAD", "PUT"):
                answer = requests.request(method, f"{a.url}{parts.path}?{tampered}", headers=headers, timeout=TIMEOUT)
                assert 400 <= answer.status_code < 500, (digits, method, answer.status_code, answer.text)
            for method, path, extra in (
                    ("PUT", f"/api/v1/upload?upload_id={uuid.uuid4()}&offset={quoted}", {}),
                    ("GET", f"/api/v1/objects?limit={quoted}", {}),
                    ("GET", f"/api/v1/objects/{bucket}/?limit={quoted}", {}),
                    ("GET", f"/api/v1/attachment/sessions?limit={quoted}", {}),
                    ("PUT", f"/api/v1/attachment/session/{uuid.uuid4()}/upload/{quoted}", {}),
                    ("PUT", f"/api/v1/multipart/{uuid.uuid4()}/parts/{quoted}", {}),
                    ("PATCH", f"/api/v1/tus/{uuid.uuid4()}", {"Tus-Resumable": "1.0.0", "Upload-Offset": digits,
                                                               "Content-Type": "application/offset+octet-stream"}),
                    ("POST", "/api/v1/tus/", {"Tus-Resumable": "1.0.0", "Upload-Length": digits}),
                    ("PATCH", f"/api/v1/uploads/{uuid.uuid4()}", {"Upload-Offset": digits, "Upload-Complete": "?0"}),
            ):
                sent = {name: value.encode("utf-8").decode("latin-1") for name, value in {**headers, **extra}.items()}
                answer = requests.request(method, a.url + path, data=b"x", headers=sent, timeout=TIMEOUT)
                assert answer.status_code < 500, (digits, method, path, answer.status_code, answer.text)
        revoked = requests.post(f"{a.url}/api/file/v2/files/revokeURL", headers=admin, timeout=TIMEOUT, json={
            "SignedURL": f"{a.url}/api/v1/signed/{partition_bucket}/x?method=GET&expires={quoted}&kid=k"
                         f"&id={uuid.uuid4()}&sig=AAAA"})
        assert revoked.status_code == 400, (digits, revoked.status_code, revoked.text)


# --------------------------------------------------------------------------------------------- item 9
def dompurify_version(script: bytes) -> tuple[int, ...]:
    found = re.search(rb'DOMPurify\.version="(\d+)\.(\d+)\.(\d+)"', script) or \
        re.search(rb'version="(\d+)\.(\d+)\.(\d+)",\w+\.removed=\[\]', script)
    assert found, "DOMPurify not found in the Swagger UI bundle"
    return tuple(int(part) for part in found.groups())


def test_item9_swagger_ui_has_a_csp_and_a_current_dompurify_and_the_console_its_security_headers(servers):
    a, _ = servers
    for prefix in ("", "/api/file/v2"):
        page = requests.get(f"{a.url}{prefix}/swagger-ui/index.html", timeout=TIMEOUT)
        assert page.status_code == 200
        policy = page.headers["Content-Security-Policy"]
        scripts = next(item for item in policy.split(";") if item.strip().startswith("script-src"))
        assert "frame-ancestors 'none'" in policy and "'self'" in scripts
        assert "unsafe-inline" not in scripts and "unsafe-eval" not in scripts
        assert page.headers["X-Frame-Options"] == "DENY" and page.headers["X-Content-Type-Options"] == "nosniff"
        bundle = requests.get(f"{a.url}{prefix}/swagger-ui/swagger-ui-bundle.js", timeout=TIMEOUT)
        # CVE-2024-45801 and CVE-2024-47875 are fixed in DOMPurify 3.1.3 (and 2.5.4 on the 2.x line)
        assert dompurify_version(bundle.content) >= (3, 1, 3)
    for path in ("/ui/", "/ui/js/main.js", "/ui/app.css"):
        response = requests.get(a.url + path, timeout=TIMEOUT)
        assert response.status_code == 200, path
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"


def test_item9_swagger_ui_renders_in_a_real_browser_under_its_csp(servers):
    """The policy does not break the page: Chromium shows the document's title and operations, and reports
    no CSP violation."""
    from playwright.sync_api import sync_playwright
    a, _ = servers
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"])
        try:
            page = browser.new_page()
            problems: list[str] = []
            page.on("console", lambda message: problems.append(message.text)
                    if "Content Security Policy" in message.text else None)
            page.goto(f"{a.url}/swagger")
            page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
            page.wait_for_selector(".opblock", timeout=30_000)
            assert "sagestore" in page.inner_text(".swagger-ui .info .title").lower()
            assert not problems, problems
        finally:
            browser.close()


# -------------------------------------------------------------------------------------------- item 10
def test_item10_osdu_roles_match_exactly_and_the_service_user_cannot_be_impersonated(servers, base_settings,
                                                                                      tmp_path):
    a, _ = servers
    partition = {"Data-Partition-Id": "default-partition"}
    for group in ("service.file.admin@default-partition.evil.example", "service.file.admin@default-partition.",
                  "service.file.admin@default-partitionx", "xservice.file.admin"):
        response = requests.get(f"{a.url}/api/file/v2/files/uploadURL", timeout=TIMEOUT,
                                headers={**auth("mallory", (group,)), **partition})
        assert response.status_code == 400 and "no service.file role" in response.json()["error"], group
    exact = requests.get(f"{a.url}/api/file/v2/files/uploadURL", timeout=TIMEOUT,
                         headers={**auth("ed", ("service.file.editors@default-partition",)), **partition})
    assert exact.status_code == 200
    # the service user owns every partition's bucket: no token may name it, in any spelling
    bucket = partition_bucket_id("default-partition")
    for name in ("osdu-file-service", "OSDU-File-Service"):
        response = requests.get(f"{a.url}/api/v1/objects/{bucket}/", headers=auth(name), timeout=TIMEOUT)
        assert response.status_code == 401, (name, response.text)
    minted = subprocess.run([sys.executable, "-m", "sagestore", "token", "osdu-file-service",
                             "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60,
                            cwd=REPO, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert minted.returncode == 2 and "reserved" in minted.stderr and not minted.stdout
    # pyjwt above CVE-2024-53861 (2.10.0 checked 'iss' as a substring)
    floor = next(item for item in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
                 if item.startswith("pyjwt"))
    assert re.search(r">=\s*2\.10\.1\b", floor), floor
    installed = tuple(int(part) for part in importlib.metadata.version("pyjwt").split(".")[:3])
    assert installed >= (2, 10, 1)


