"""The web console (/ui/) in headless Chromium: sign-in, buckets, folders, uploads with pause,
resume and reload, permissions, public buckets. Real server, real PostgreSQL and SeaweedFS."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
from playwright.async_api import expect

from console_helpers import (MiB, WAIT_MS, chromium, console_server, make_file, screenshot, signed_in_page)
from conftest import REPO

pytestmark = pytest.mark.timeout(900)


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
    await page.get_by_role("button", name="Pause model.bin").click()
    await expect(item).to_have_attribute("data-state", "paused")
    # the panel shows what the server kept of the aborted chunks
    await expect(progress).not_to_have_attribute("value", "0", timeout=WAIT_MS)
    paused_at = int(await progress.get_attribute("value"))
    assert 0 < paused_at < 64 * MiB
    await page.wait_for_timeout(1500)
    assert int(await progress.get_attribute("value")) == paused_at  # nothing moves while paused
    assert await console.keys(bucket_id) == {}
    await page.get_by_role("button", name="Resume model.bin").click()
    await expect(item).to_have_attribute("data-state", "done", timeout=WAIT_MS)
    assert await console.keys(bucket_id) == {"model.bin": 64 * MiB}
    assert await console.sha256_of(bucket_id, "model.bin") == digest
    # a pause loses at most the chunks in flight (4 lanes of 8 MiB) on top of the file
    assert sum(console.patch_bytes) <= 64 * MiB + 4 * 8 * MiB
