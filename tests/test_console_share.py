"""The console's share links and downloads, which use the shares API (POST /api/v1/shares,
GET /api/v1/shares, DELETE /api/v1/shares/{id})."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import expect

from support.console import MiB, chromium, console_server, make_file, screenshot, signed_in_page

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
async def console(settings):
    async with console_server(settings) as server:
        yield server


@pytest.fixture
async def browser():
    async with chromium() as running:
        yield running


async def test_a_share_link_opened_in_a_fresh_anonymous_context_downloads_the_file(console, browser, tmp_path):
    bucket_id = await console.create_bucket("shared-models")
    make_file(tmp_path / "weights.safetensors", 3 * MiB, seed=3)
    data = (tmp_path / "weights.safetensors").read_bytes()
    await console.put(bucket_id, "v1/weights.safetensors", data)
    page = await signed_in_page(browser, console, "alice")
    await page.goto(f"{console.url}/ui/#/b/{bucket_id}/v1/")
    await page.get_by_role("button", name="Share weights.safetensors").click()
    expiry = page.get_by_label("Link expires after")
    assert max(int(value) for value in await expiry.locator("option").evaluate_all(
        "options => options.map(o => o.value)")) == 7 * 86400  # at most 7 days
    await expiry.select_option(label="1 hour")
    await page.get_by_role("button", name="Create share link").click()
    link = page.get_by_label("Share link for v1/weights.safetensors")
    await expect(link).not_to_have_value("")
    url = await link.input_value()
    await screenshot(page, "share-wide")

    status, listed = await console.api("GET", "/api/v1/shares", params={"bucket_id": bucket_id})
    assert status == 200
    share = next(item for item in listed["shares"] if item["url"] == url)
    assert share["key"] == "v1/weights.safetensors" and share["method"] == "GET" and not share["revoked"]
    expires = datetime.fromisoformat(share["expires_at"].replace("Z", "+00:00"))
    assert abs(expires - (datetime.now(timezone.utc) + timedelta(hours=1))) < timedelta(minutes=5)

    anonymous = await browser.new_context(accept_downloads=True)  # no token, no storage
    stranger = await anonymous.new_page()
    async with stranger.expect_download() as info:
        try:
            await stranger.goto(url)
        except PlaywrightError:
            pass  # navigation turns into a download: "Download is starting"
    download = await info.value
    assert open(await download.path(), "rb").read() == data


async def test_download_uses_a_short_lived_signed_url(console, browser):
    bucket_id = await console.create_bucket("downloads")
    await console.put(bucket_id, "notes.txt", b"signed download bytes")
    page = await signed_in_page(browser, console, "alice")
    await page.goto(f"{console.url}/ui/#/b/{bucket_id}/")
    async with page.expect_download() as info:
        await page.get_by_role("button", name="Download notes.txt").click()
    download = await info.value
    assert "Authorization" not in download.url and "token" not in download.url.lower().split("?")[0]
    assert open(await download.path(), "rb").read() == b"signed download bytes"
    status, listed = await console.api("GET", "/api/v1/shares", params={"bucket_id": bucket_id})
    share = next(item for item in listed["shares"] if item["key"] == "notes.txt")
    expires = datetime.fromisoformat(share["expires_at"].replace("Z", "+00:00"))
    assert expires - datetime.now(timezone.utc) <= timedelta(minutes=5)
