"""The web console (/ui/) in headless Chromium: sign-in, buckets, folders, uploads with pause,
resume and reload, permissions, public buckets. Real server, real PostgreSQL and SeaweedFS."""
from __future__ import annotations

import hashlib
import re
import subprocess
import sys

import pytest
from playwright.async_api import expect

from support.console import (MiB, WAIT_MS, chromium, console_server, make_file, screenshot, signed_in_page)
from support.backends import new_database
from support.server import REPO

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def console_database_url(database_server_url):
    """The module's own database: the bucket list shows its first 1000 buckets, and the session's
    database can hold more public ones once other tests ran."""
    with new_database(database_server_url) as url:
        yield url


@pytest.fixture
def settings(base_settings, console_database_url):
    return base_settings.replace(database_url=console_database_url)


@pytest.fixture
async def console(settings):
    async with console_server(settings) as server:
        yield server


@pytest.fixture
async def browser():
    async with chromium() as running:
        yield running


# ---------------------------------------------------------------------------------------- serving
async def test_root_redirects_browsers_and_keeps_json_for_api_clients(console):
    status, body = await console.api("GET", "/", None)
    assert status == 200 and body == {"id": "SAGE object store", "available_resources": ["api/v1/", "metrics/"]}
    import aiohttp
    async with aiohttp.ClientSession() as session:
        async with session.get(console.url + "/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
                               allow_redirects=False) as response:
            assert response.status == 302 and response.headers["Location"] == "/ui/"
        async with session.get(console.url + "/ui/") as response:
            assert response.status == 200 and response.content_type == "text/html"
            assert "default-src 'self'" in response.headers["Content-Security-Policy"]
            assert '<script type="module" src="/ui/js/main.js">' in await response.text()
        async with session.get(console.url + "/ui/js/uploads.js") as response:
            assert response.status == 200 and response.content_type == "text/javascript"
        for bad in ("/ui/..%2Fapp.py", "/ui/.hidden.js", "/ui/js/nothing.js", "/ui/index.py"):
            async with session.get(console.url + bad) as response:
                assert response.status == 404, bad
                assert "error" in await response.json()


def test_token_link_prints_a_console_link_with_the_token_in_the_fragment(tmp_path):
    done = subprocess.run([sys.executable, "-m", "sagestore", "token", "alice", "--link", "--data-dir", str(tmp_path),
                           "--jwt-secret", "x" * 40, "--port", "9123"], capture_output=True, text=True, cwd=REPO,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    link = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"http://127\.0\.0\.1:9123/ui/#token=[\w-]+\.[\w-]+\.[\w-]+", link), link
    done = subprocess.run([sys.executable, "-m", "sagestore", "token", "bob", "--link", "--url", "https://store.example/",
                           "--data-dir", str(tmp_path), "--jwt-secret", "x" * 40], capture_output=True, text=True,
                          cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.stdout.strip().startswith("https://store.example/ui/#token="), done.stdout


# ---------------------------------------------------------------------------------------- sign-in
async def test_sign_in_with_a_pasted_token(console, browser):
    bucket_id = await console.create_bucket("pasted-token-bucket")
    page = await (await browser.new_context()).new_page()
    await page.goto(console.url + "/ui/")
    await page.get_by_label("Token").fill(console.token("alice"))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_text("Signed in as alice")).to_be_visible()
    await expect(page.get_by_role("link", name="pasted-token-bucket", exact=True)).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('sagestore.token')")
    # the token is sent as Bearer: the bucket page is the API's own answer for alice
    await page.get_by_role("link", name="pasted-token-bucket", exact=True).click()
    await expect(page.get_by_role("heading", name=re.compile("pasted-token-bucket"))).to_be_visible()
    assert bucket_id in page.url


async def test_sign_in_with_a_token_link_drops_the_token_from_the_address(console, browser):
    await console.create_bucket("link-bucket", user="carol")
    page = await signed_in_page(browser, console, "carol")
    assert "token=" not in page.url
    await expect(page.get_by_role("link", name="link-bucket", exact=True)).to_be_visible()
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('sagestore.token')") is None


async def test_a_bad_token_shows_the_servers_message(console, browser):
    page = await (await browser.new_context()).new_page()
    await page.goto(console.url + "/ui/#token=not-a-jwt")
    status, body = await console.api("GET", "/api/v1/objects", None, headers={"Authorization": "Bearer not-a-jwt"})
    assert status == 401
    await expect(page.get_by_role("alert")).to_have_text(body["error"])


# ---------------------------------------------------------------------------------------- buckets, uploads
async def throttle_uploads(page, bytes_per_second: int) -> None:
    """Chromium's own network throttling (DevTools protocol), so a pause lands mid-upload."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Network.enable")
    await cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                        "uploadThroughput": bytes_per_second})


async def test_create_a_bucket_then_upload_three_files_and_a_folder_of_twenty(console, browser, tmp_path):
    page = await signed_in_page(browser, console, "alice")
    await page.get_by_label("Bucket name").fill("datasets")
    await page.get_by_label("Bucket type").select_option("training-data")
    await page.get_by_role("button", name="Create bucket").click()
    await expect(page.get_by_role("heading", name=re.compile("datasets"))).to_be_visible()
    bucket_id = re.search(r"#/b/([0-9a-f-]{36})/", page.url).group(1)
    status, bucket = await console.api("GET", f"/api/v1/objects/{bucket_id}")
    assert status == 200 and bucket["name"] == "datasets" and bucket["type"] == "training-data"
    assert bucket["owner"] == "alice"

    files = tmp_path / "three"
    files.mkdir()
    digests = {}
    for index, size in enumerate((1, 300_000, 11 * MiB)):  # 11 MiB: two chunks, sent as two parallel tus partials
        digests[f"file-{index}.bin"] = make_file(files / f"file-{index}.bin", size, seed=index)
    await page.get_by_label("Upload files").set_input_files([str(files / name) for name in digests])
    for name in digests:
        await expect(page.locator("li.upload", has_text=name)).to_have_attribute("data-state", "done", timeout=WAIT_MS)
    await expect(page.get_by_role("progressbar", name="Upload progress of file-2.bin")).to_have_attribute(
        "value", str(11 * MiB))

    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(20):
        digests[f"images/{index:02d}.jpg"] = make_file(folder / f"{index:02d}.jpg", 1000 + index, seed=100 + index)
    await page.get_by_label("Upload a folder").set_input_files(str(folder))
    await expect(page.locator("li.upload[data-state=done]")).to_have_count(23, timeout=WAIT_MS)
    await expect(page.get_by_text("23 of 23 files")).to_be_visible()
    await expect(page.get_by_role("progressbar", name="Total upload progress")).to_have_attribute(
        "value", str(1 + 300_000 + 11 * MiB + sum(1000 + index for index in range(20))))

    stored = await console.keys(bucket_id)
    assert set(stored) == set(digests)
    for key, digest in digests.items():
        assert await console.sha256_of(bucket_id, key) == digest, key

    # the listing shows the folder; breadcrumbs lead in and out; the prefix filter narrows
    await expect(page.get_by_role("link", name="images/")).to_be_visible()
    await screenshot(page, "bucket-wide")
    await page.get_by_role("link", name="images/").click()
    await expect(page.get_by_role("navigation", name="Breadcrumb").get_by_role("link", name="images")).to_be_visible()
    await expect(page.get_by_role("cell", name="07.jpg", exact=True)).to_be_visible()
    await page.get_by_label("Filter by name prefix").fill("1")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("tbody tr")).to_have_count(10)
    await page.get_by_role("navigation", name="Breadcrumb").get_by_role("link", name="datasets").click()
    await expect(page.get_by_role("cell", name="file-0.bin", exact=True)).to_be_visible()

    # paging through the listing API
    await page.evaluate("sessionStorage.setItem('sagestore.pageSize', '2')")
    await page.reload()
    await expect(page.locator("tbody tr")).to_have_count(2)
    await page.get_by_role("link", name="Next page").click()
    await expect(page.locator("tbody tr")).to_have_count(2)
    await page.get_by_role("link", name="First page").click()
    await page.evaluate("sessionStorage.removeItem('sagestore.pageSize')")

    # delete a file (with a confirmation)
    page.once("dialog", lambda dialog: dialog.accept())
    await page.reload()
    await page.get_by_role("button", name="Delete file-0.bin").click()
    await expect(page.get_by_role("cell", name="file-0.bin", exact=True)).to_have_count(0)
    assert "file-0.bin" not in await console.keys(bucket_id)


async def test_a_64_mib_upload_paused_and_resumed(console, browser, tmp_path):
    bucket_id = await console.create_bucket("big")
    digest = make_file(tmp_path / "model.bin", 64 * MiB, seed=64)
    page = await signed_in_page(browser, console, "alice")
    await page.goto(f"{console.url}/ui/#/b/{bucket_id}/")
    await throttle_uploads(page, 8 * MiB)
    await page.get_by_label("Upload files").set_input_files(str(tmp_path / "model.bin"))
    item = page.locator("li.upload", has_text="model.bin")
    progress = page.get_by_role("progressbar", name="Upload progress of model.bin")
    await expect(progress).not_to_have_attribute("value", "0", timeout=WAIT_MS)
    await expect(item).to_contain_text("left")  # speed and ETA
    await screenshot(page, "uploading-wide", full_page=False)
    await page.get_by_role("button", name="Pause model.bin").click()
    await expect(item).to_have_attribute("data-state", "paused")
    # the panel shows what the server kept of the aborted chunks
    await expect(progress).not_to_have_attribute("value", "0", timeout=WAIT_MS)
    paused_at = int(await progress.get_attribute("value"))
    assert 0 < paused_at < 64 * MiB
    await page.wait_for_timeout(1500)
    assert int(await progress.get_attribute("value")) == paused_at  # nothing moves while paused
    await page.set_viewport_size({"width": 390, "height": 844})
    await screenshot(page, "paused-phone")
    await page.set_viewport_size({"width": 1280, "height": 900})
    assert await console.keys(bucket_id) == {}
    await page.get_by_role("button", name="Resume model.bin").click()
    await expect(item).to_have_attribute("data-state", "done", timeout=WAIT_MS)
    assert await console.keys(bucket_id) == {"model.bin": 64 * MiB}
    assert await console.sha256_of(bucket_id, "model.bin") == digest
    # a pause loses at most the chunks in flight (4 lanes of 8 MiB) on top of the file
    assert sum(console.patch_bytes) <= 64 * MiB + 4 * 8 * MiB


async def test_a_reload_mid_upload_resumes_sending_only_what_is_missing(console, browser, tmp_path):
    chunk = 5 * MiB
    size = 40 * MiB  # 8 chunks: 4 lanes (tus partial uploads) of 2 chunks, all in flight at once
    bucket_id = await console.create_bucket("reload")
    digest = make_file(tmp_path / "shard.tar", size, seed=7)
    page = await signed_in_page(browser, console, "alice")
    await page.evaluate(f"sessionStorage.setItem('sagestore.chunkSize', '{chunk}')")
    await page.goto(f"{console.url}/ui/#/b/{bucket_id}/")
    await throttle_uploads(page, 4 * MiB)
    await page.get_by_label("Upload files").set_input_files(str(tmp_path / "shard.tar"))
    # wait until the server has confirmed a chunk, then reload with the other chunks in flight
    deadline_ms = WAIT_MS
    waited = 0
    while not any(length == chunk for length in console.patch_bytes[4:]) and waited < deadline_ms:
        await page.wait_for_timeout(100)
        waited += 100
    assert len(console.patch_bytes) > 4, console.patch_bytes  # a second chunk was started: the first was confirmed
    await page.reload()
    before_reload = sum(console.patch_bytes)
    await expect(page.get_by_text("Unfinished uploads: pick the same file again")).to_be_visible()
    await expect(page.get_by_text("shard.tar (40.0 MiB)")).to_be_visible()
    await page.get_by_label("Upload files").set_input_files(str(tmp_path / "shard.tar"))
    await expect(page.locator("li.upload", has_text="shard.tar")).to_have_attribute("data-state", "done", timeout=WAIT_MS)
    assert await console.keys(bucket_id) == {"shard.tar": size}
    assert await console.sha256_of(bucket_id, "shard.tar") == digest
    # what the server received, over both page lives: the file plus at most one chunk per chunk in flight
    in_flight = 4
    assert sum(console.patch_bytes) <= size + in_flight * chunk, console.patch_bytes
    assert sum(console.patch_bytes) - before_reload < size  # the second page life sent only what was missing
    assert await page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('sagestore.upload.')).length") == 0


# ---------------------------------------------------------------------------------------- permissions
async def test_a_permission_change_shows_and_a_read_only_bucket_refuses_an_upload(console, browser, tmp_path):
    bucket_id = await console.create_bucket("team")
    await console.put(bucket_id, "readme.txt", b"hello team")
    page = await signed_in_page(browser, console, "alice")
    await page.goto(f"{console.url}/ui/#/p/{bucket_id}")
    await expect(page.get_by_role("heading", name="Permissions of team")).to_be_visible()
    await expect(page.locator("#visibility")).to_contain_text("This bucket is private.")
    await page.get_by_label("Grantee type").select_option("USER")
    await page.get_by_label("Grantee", exact=True).fill("bob")
    await page.get_by_label("Permission").select_option("READ")
    await page.get_by_role("button", name="Grant", exact=True).click()
    await expect(page.get_by_role("row", name="USER bob READ")).to_be_visible()
    status, grants = await console.api("GET", f"/api/v1/objects/{bucket_id}", params={"permissions": "true"})
    assert {"granteeType": "USER", "grantee": "bob", "permission": "READ"} in grants

    # the server's rules, in the server's words: AllUsers gets READ only
    status, refused = await console.api("PUT", f"/api/v1/objects/{bucket_id}", params={"permissions": "true"},
                                        json={"granteeType": "GROUP", "grantee": "AllUsers", "permission": "WRITE"})
    assert status == 400
    await page.get_by_label("Grantee type").select_option("GROUP")
    await page.get_by_label("Grantee", exact=True).fill("AllUsers")
    await page.get_by_label("Permission").select_option("WRITE")
    await page.get_by_role("button", name="Grant", exact=True).click()
    await expect(page.get_by_role("alert")).to_have_text(refused["error"])

    await page.get_by_role("button", name="Make public").click()
    await expect(page.locator("#visibility")).to_contain_text("This bucket is public")
    await expect(page.get_by_role("row", name="GROUP AllUsers READ")).to_be_visible()
    await screenshot(page, "permissions-wide")
    await page.get_by_role("button", name="Make private").click()
    await expect(page.locator("#visibility")).to_contain_text("This bucket is private.")

    # bob sees the bucket, reads it, and an upload is refused with the server's message
    bob = await signed_in_page(browser, console, "bob")
    await expect(bob.get_by_role("link", name="team", exact=True)).to_be_visible()
    await bob.get_by_role("link", name="team", exact=True).click()
    await expect(bob.get_by_role("cell", name="readme.txt", exact=True)).to_be_visible()
    (tmp_path / "intruder.txt").write_bytes(b"not allowed")
    import base64
    metadata = ",".join(f"{name} {base64.b64encode(value.encode()).decode()}"
                        for name, value in (("bucket", bucket_id), ("key", "intruder.txt")))
    status, body = await console.api("POST", "/api/v1/tus/", "bob", headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": "11", "Upload-Metadata": metadata})
    assert status == 403
    await bob.get_by_label("Upload files").set_input_files(str(tmp_path / "intruder.txt"))
    item = bob.locator("li.upload", has_text="intruder.txt")
    await expect(item).to_have_attribute("data-state", "failed", timeout=WAIT_MS)
    await expect(item).to_contain_text(body["error"])
    await expect(bob.get_by_role("alert")).to_have_text(f"intruder.txt: {body['error']}")
    assert "intruder.txt" not in await console.keys(bucket_id)

    # revoking shows too
    await page.get_by_role("button", name="Revoke READ from USER bob").click()
    await expect(page.get_by_role("row", name="USER bob READ")).to_have_count(0)
    status, _ = await console.api("GET", f"/api/v1/objects/{bucket_id}", "bob")
    assert status == 404


# ---------------------------------------------------------------------------------------- signed out
async def test_a_public_bucket_is_browsed_and_downloaded_signed_out(console, browser):
    bucket_id = await console.create_bucket("open-data", public=True)
    await console.put(bucket_id, "docs/intro.txt", b"public bytes \xe2\x9c\x93")
    private_id = await console.create_bucket("closed")
    context = await browser.new_context(viewport={"width": 390, "height": 844}, accept_downloads=True)
    page = await context.new_page()
    await page.goto(console.url + "/")  # a browser at / lands on the console
    assert page.url.startswith(console.url + "/ui/")
    await expect(page.get_by_role("heading", name="Public buckets")).to_be_visible()
    await expect(page.get_by_role("link", name="open-data", exact=True)).to_be_visible()
    await expect(page.get_by_role("link", name="closed", exact=True)).to_have_count(0)
    await page.get_by_role("link", name="open-data", exact=True).click()
    await page.get_by_role("link", name="docs/").click()
    await expect(page.get_by_role("cell", name="intro.txt", exact=True)).to_be_visible()
    await expect(page.get_by_role("button", name="Delete intro.txt")).to_have_count(0)
    await expect(page.get_by_label("Upload files")).to_have_count(0)
    await screenshot(page, "public-phone")
    async with page.expect_download() as info:
        await page.get_by_role("button", name="Download intro.txt").click()
    download = await info.value
    assert download.suggested_filename == "intro.txt"
    assert open(await download.path(), "rb").read() == b"public bytes \xe2\x9c\x93"
    # a private bucket's page shows the server's refusal
    status, body = await console.api("GET", f"/api/v1/objects/{private_id}", None)
    await page.goto(f"{console.url}/ui/#/b/{private_id}/")
    await expect(page.get_by_role("alert")).to_have_text(body["error"])


async def test_files_dropped_on_the_bucket_page_upload(console, browser):
    bucket_id = await console.create_bucket("dropped")
    page = await signed_in_page(browser, console, "alice")
    await page.goto(f"{console.url}/ui/#/b/{bucket_id}/")
    await page.get_by_role("heading", name=re.compile("dropped")).wait_for()
    # a drop event as the browser dispatches it, carrying files made in the page
    await page.evaluate("""() => {
        const transfer = new DataTransfer();
        transfer.items.add(new File(["first dropped file"], "one.txt", { type: "text/plain" }));
        transfer.items.add(new File([new Uint8Array(70000)], "two.bin"));
        const zone = document.getElementById("drop-zone");
        zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }""")
    await expect(page.locator("li.upload[data-state=done]")).to_have_count(2, timeout=WAIT_MS)
    assert await console.keys(bucket_id) == {"one.txt": 18, "two.bin": 70000}
    assert await console.sha256_of(bucket_id, "one.txt") == hashlib.sha256(b"first dropped file").hexdigest()
    assert await console.sha256_of(bucket_id, "two.bin") == hashlib.sha256(bytes(70000)).hexdigest()
    await expect(page.get_by_role("cell", name="two.bin", exact=True)).to_be_visible()


async def test_controls_are_reachable_by_keyboard(console, browser):
    bucket_id = await console.create_bucket("keyboard")
    page = await signed_in_page(browser, console, "alice")
    await page.goto(f"{console.url}/ui/#/b/{bucket_id}/")
    await page.get_by_role("heading", name=re.compile("keyboard")).wait_for()
    reached = set()
    for _ in range(40):
        await page.keyboard.press("Tab")
        reached.add(await page.evaluate(
            "() => { const e = document.activeElement; return e.getAttribute('aria-label') || e.labels?.[0]?.textContent"
            " || e.textContent.trim() }"))
    assert {"Upload files", "Upload a folder", "Filter by name prefix", "Filter", "Sign out"} <= reached, reached
    # every button, link and field on the page has an accessible name
    unnamed = await page.evaluate("""() => [...document.querySelectorAll('button, a[href], input, select, textarea')]
        .filter(e => !e.hidden && !(e.getAttribute('aria-label') || e.labels?.length || e.textContent.trim()))
        .map(e => e.outerHTML)""")
    assert unnamed == []


async def test_rename_and_delete_a_bucket_with_a_confirmation(console, browser):
    bucket_id = await console.create_bucket("old-name")
    await console.put(bucket_id, "a.txt", b"a")
    page = await signed_in_page(browser, console, "alice")
    await page.get_by_role("button", name="Rename old-name").click()
    await page.get_by_label("New name for old-name").fill("new-name")
    await page.get_by_role("button", name="Save name").click()
    await expect(page.get_by_role("link", name="new-name", exact=True)).to_be_visible()
    status, bucket = await console.api("GET", f"/api/v1/objects/{bucket_id}")
    assert bucket["name"] == "new-name"

    page.once("dialog", lambda dialog: dialog.dismiss())  # "cancel" keeps the bucket
    await page.get_by_role("button", name="Delete bucket new-name").click()
    await page.wait_for_timeout(300)
    assert (await console.api("GET", f"/api/v1/objects/{bucket_id}"))[0] == 200
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Delete bucket new-name").click()
    await expect(page.get_by_role("link", name="new-name", exact=True)).to_have_count(0)
    assert (await console.api("GET", f"/api/v1/objects/{bucket_id}"))[0] == 404


async def test_a_refused_upload_can_be_retried_once_allowed_and_a_cancelled_one_is_terminated(console, browser,
                                                                                             tmp_path):
    bucket_id = await console.create_bucket("retry")
    status, _ = await console.api("PUT", f"/api/v1/objects/{bucket_id}", params={"permissions": "true"},
                                  json={"granteeType": "USER", "grantee": "dave", "permission": "READ"})
    assert status == 200
    (tmp_path / "later.txt").write_bytes(b"uploaded on retry")
    page = await signed_in_page(browser, console, "dave")
    await page.goto(f"{console.url}/ui/#/b/{bucket_id}/")
    await page.get_by_label("Upload files").set_input_files(str(tmp_path / "later.txt"))
    item = page.locator("li.upload", has_text="later.txt")
    await expect(item).to_have_attribute("data-state", "failed", timeout=WAIT_MS)
    status, _ = await console.api("PUT", f"/api/v1/objects/{bucket_id}", params={"permissions": "true"},
                                  json={"granteeType": "USER", "grantee": "dave", "permission": "WRITE"})
    assert status == 200
    await page.get_by_role("button", name="Retry later.txt").click()
    await expect(item).to_have_attribute("data-state", "done", timeout=WAIT_MS)
    assert await console.keys(bucket_id) == {"later.txt": 17}

    make_file(tmp_path / "abandoned.bin", 24 * MiB)
    await throttle_uploads(page, 2 * MiB)
    await page.get_by_label("Upload files").set_input_files(str(tmp_path / "abandoned.bin"))
    progress = page.get_by_role("progressbar", name="Upload progress of abandoned.bin")
    await expect(progress).not_to_have_attribute("value", "0", timeout=WAIT_MS)
    urls = await page.evaluate("""() => Object.entries(localStorage)
        .filter(([k]) => k.startsWith('sagestore.upload.')).flatMap(([, v]) => JSON.parse(v).urls)""")
    assert len(urls) == 3  # 24 MiB: three 8 MiB chunks, one partial upload each
    await page.get_by_role("button", name="Cancel abandoned.bin").click()
    await expect(page.locator("li.upload", has_text="abandoned.bin")).to_have_attribute("data-state", "cancelled")
    for url in urls:  # tus termination: the server forgot them
        for _ in range(100):
            status, _ = await console.api("HEAD", url, "dave", headers={"Tus-Resumable": "1.0.0"})
            if status == 404:
                break
            await page.wait_for_timeout(100)
        assert status == 404, url
    assert await console.keys(bucket_id) == {"later.txt": 17}


async def test_an_upload_survives_a_lost_connection(console, browser, tmp_path):
    bucket_id = await console.create_bucket("offline")
    digest = make_file(tmp_path / "train.jsonl", 24 * MiB, seed=5)
    page = await signed_in_page(browser, console, "alice")
    await page.goto(f"{console.url}/ui/#/b/{bucket_id}/")
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Network.enable")
    conditions = {"latency": 0, "downloadThroughput": -1, "uploadThroughput": 2 * MiB}
    await cdp.send("Network.emulateNetworkConditions", {"offline": False, **conditions})
    await page.get_by_label("Upload files").set_input_files(str(tmp_path / "train.jsonl"))
    item = page.locator("li.upload", has_text="train.jsonl")
    await expect(page.get_by_role("progressbar", name="Upload progress of train.jsonl")).not_to_have_attribute(
        "value", "0", timeout=WAIT_MS)
    await cdp.send("Network.emulateNetworkConditions", {"offline": True, **conditions})
    await expect(item).to_contain_text("retrying", timeout=WAIT_MS)
    await page.wait_for_timeout(1000)
    await cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                        "uploadThroughput": -1})
    await expect(item).to_have_attribute("data-state", "done", timeout=WAIT_MS)
    assert await console.sha256_of(bucket_id, "train.jsonl") == digest
