"""Uppy (Dashboard + @uppy/tus) and tus-js-client (parallelUploads: 4) in headless Chromium against
sagestore's tus endpoint, from a page served by another origin (CORS per SAGESTORE_CORS_ORIGINS).
Both come from npm for the test only (tests/browser: `npm ci`) and are bundled here by esbuild."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import expect

from support.console import MiB, WAIT_MS, chromium, console_server, make_file, npm_dir_ready
from sagestore.embedded import free_port

pytestmark = pytest.mark.timeout(900)
BROWSER_DIR = Path(__file__).resolve().parent / "browser"
PAGES = {
    "uppy.html": '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Uppy to sagestore</title>'
                 '<link rel="stylesheet" href="uppy-page.css"></head><body><div id="uppy"></div>'
                 '<script type="module" src="uppy-page.js"></script></body></html>',
    "tus.html": '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>tus-js-client to sagestore</title>'
                '</head><body><input type="file" id="file" aria-label="File"><span id="progress"></span>'
                '<script type="module" src="tus-page.js"></script></body></html>',
}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> Path:
    """esbuild bundles of the two test pages (never committed: built from node_modules each run)."""
    npm_dir_ready(BROWSER_DIR, "esbuild")
    out = tmp_path_factory.mktemp("bundles")
    subprocess.run([str(BROWSER_DIR / "node_modules" / ".bin" / "esbuild"), "uppy-page.mjs", "tus-page.mjs",
                    "--bundle", "--format=esm", "--log-level=warning", f"--outdir={out}"],
                   cwd=BROWSER_DIR, check=True, timeout=300)
    for name, html in PAGES.items():
        (out / name).write_text(html)
    return out


@pytest.fixture
async def page_origin(bundles):
    """The test pages on their own origin (another port)."""
    app = web.Application()
    app.router.add_static("/", bundles)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}"
    await server.close()


@pytest.fixture
async def console(settings, page_origin):
    async with console_server(settings, cors_origins=(page_origin,)) as server:
        yield server


@pytest.fixture
async def browser():
    async with chromium() as running:
        yield running


async def throttle(page, bytes_per_second: int) -> None:
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Network.enable")
    await cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                        "uploadThroughput": bytes_per_second})


async def test_uppy_dashboard_with_uppy_tus_pauses_resumes_and_stores_the_bytes(console, browser, page_origin,
                                                                                tmp_path):
    bucket_id = await console.create_bucket("uppy")
    digest = make_file(tmp_path / "checkpoint.pt", 24 * MiB, seed=24)
    page = await (await browser.new_context(viewport={"width": 1000, "height": 800})).new_page()
    page.set_default_timeout(60_000)
    await page.goto(f"{page_origin}/uppy.html#server={console.url}&bucket={bucket_id}"
                    f"&token={console.token('alice')}&chunk={5 * MiB}")
    await throttle(page, 4 * MiB)
    await page.locator('input.uppy-Dashboard-input[name="files[]"]:not([webkitdirectory])').first.set_input_files(
        str(tmp_path / "checkpoint.pt"))
    await page.get_by_role("button", name="Upload 1 file").click()
    await expect(page.get_by_text("Uploading", exact=False).first).to_be_visible()
    await page.wait_for_function("() => document.querySelector('.uppy-StatusBar-progress')?.getAttribute('aria-valuenow') > 0",
                                 timeout=WAIT_MS)
    await page.get_by_role("button", name="Pause", exact=True).click()
    await expect(page.get_by_role("button", name="Resume", exact=True)).to_be_visible()
    await page.wait_for_timeout(1000)
    assert await console.keys(bucket_id) == {}  # nothing published while paused
    await page.get_by_role("button", name="Resume", exact=True).click()
    await page.wait_for_function("() => window.uppyResult !== null", timeout=WAIT_MS)
    result = await page.evaluate("window.uppyResult")
    assert result == {"successful": ["checkpoint.pt"], "failed": []}
    assert await console.keys(bucket_id) == {"checkpoint.pt": 24 * MiB}
    assert await console.sha256_of(bucket_id, "checkpoint.pt") == digest


async def test_tus_js_client_with_four_parallel_uploads_through_cors(console, browser, page_origin, tmp_path):
    bucket_id = await console.create_bucket("tus-js")
    digest = make_file(tmp_path / "dataset.parquet", 24 * MiB + 12345, seed=9)
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{page_origin}/tus.html#server={console.url}&bucket={bucket_id}&token={console.token('alice')}")
    await page.get_by_label("File").set_input_files(str(tmp_path / "dataset.parquet"))
    await page.wait_for_function("() => window.tusResult !== null", timeout=WAIT_MS)
    result = await page.evaluate("window.tusResult")
    assert result["ok"], result
    assert await console.keys(bucket_id) == {"parallel/dataset.parquet": 24 * MiB + 12345}
    assert await console.sha256_of(bucket_id, "parallel/dataset.parquet") == digest
    assert len(console.patch_bytes) >= 4  # four partial uploads, each sent by its own PATCH


async def test_a_page_from_an_origin_not_configured_is_refused_by_the_browser(settings, bundles, browser, page_origin,
                                                                            tmp_path):
    async with console_server(settings, cors_origins=("http://elsewhere.example",)) as console:
        bucket_id = await console.create_bucket("no-cors")
        make_file(tmp_path / "x.bin", 1000)
        page = await (await browser.new_context()).new_page()
        await page.goto(f"{page_origin}/tus.html#server={console.url}&bucket={bucket_id}&token={console.token('alice')}")
        await page.get_by_label("File").set_input_files(str(tmp_path / "x.bin"))
        await page.wait_for_function("() => window.tusResult !== null", timeout=WAIT_MS)
        result = await page.evaluate("window.tusResult")
        assert not result["ok"]
        assert await console.keys(bucket_id) == {}
