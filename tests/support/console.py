"""The web console under test: a real app (JWT auth, real PostgreSQL and SeaweedFS) on a free port,
and Debian's /usr/bin/chromium driven by Python playwright (never a downloaded browser)."""
from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from support.apps import AppServer
from sagestore.app import create_app
from sagestore.auth.tokens import mint_token
from sagestore.config import Settings
from sagestore.embedded import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
JWT_SECRET = "console-tests-" + "s" * 40
MiB = 2**20
WAIT_MS = 180_000  # uploads under a loaded 2-core machine: wait on state, generously
# where the tests put their screenshots (SAGESTORE_SCREENSHOTS to keep them)
SCREENSHOTS = Path(os.environ.get("SAGESTORE_SCREENSHOTS", "/tmp/sagestore-console-screenshots"))


def need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: apt-get install -y chromium (scripts/test and .ci/run do)")


@dataclass
class Console:
    """The running server; `patch_bytes` sums the Content-Length of every tus PATCH it received."""
    url: str
    settings: Settings
    patch_bytes: list[int] = field(default_factory=list)

    def token(self, user: str, groups: tuple[str, ...] = ()) -> str:
        return mint_token(self.settings, user, list(groups), 3600)

    def headers(self, user: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user)}"} if user else {}

    async def api(self, method: str, path: str, user: str | None = "alice", headers: dict | None = None,
                  **kwargs) -> tuple[int, object]:
        async with aiohttp.ClientSession() as session:
            async with session.request(method, self.url + path, headers={**self.headers(user), **(headers or {})},
                                       **kwargs) as response:
                body = await response.read()
                try:
                    return response.status, (await response.json(content_type=None)) if body else None
                except ValueError:
                    return response.status, body

    async def create_bucket(self, name: str, user: str = "alice", public: bool = False) -> str:
        status, body = await self.api("POST", "/api/v1/objects", user,
                                      params={"type": "model", "name": name, **({"public": "true"} if public else {})})
        assert status == 200, body
        return body["id"]

    async def put(self, bucket_id: str, key: str, data: bytes, user: str = "alice") -> None:
        status, body = await self.api("PUT", f"/api/v1/objects/{bucket_id}/{key}", user, data=data)
        assert status == 200, body

    async def sha256_of(self, bucket_id: str, key: str, user: str = "alice") -> str:
        digest = hashlib.sha256()
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{self.url}/api/v1/objects/{bucket_id}/{key}", headers=self.headers(user)) as response:
                assert response.status == 200, await response.text()
                async for chunk in response.content.iter_chunked(MiB):
                    digest.update(chunk)
        return digest.hexdigest()

    async def keys(self, bucket_id: str, user: str = "alice") -> dict[str, int]:
        status, body = await self.api("GET", f"/api/v1/objects/{bucket_id}/", user, params={"recursive": "true"})
        assert status == 200, body
        return {item["Key"]: item["Size"] for item in body["Contents"] or []}


@asynccontextmanager
async def console_server(settings: Settings, cors_origins: tuple[str, ...] = ()) -> AsyncIterator[Console]:
    settings = settings.replace(auth_mode="jwt", jwt_secret=JWT_SECRET, cors_origins=cors_origins)
    app = create_app(settings)
    console = Console("", settings)

    @web.middleware
    async def count_patch_bytes(request: web.Request, handler):
        # an observer, not a stand-in: it records what each tus PATCH declared it would send
        if request.method == "PATCH" and request.path.startswith("/api/v1/tus/"):
            console.patch_bytes.append(request.content_length or 0)
        return await handler(request)
    app.middlewares.insert(0, count_patch_bytes)
    server = AppServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    console.url = f"http://127.0.0.1:{server.port}"
    try:
        yield console
    finally:
        await server.close()


class _SharedBrowser:
    """One Chromium for the browser tests of a module (launching one costs seconds on a loaded
    machine); conftest closes it after the module's last test."""
    playwright_manager = None
    browser = None
    loop = None

    @classmethod
    async def get(cls):
        if cls.browser is None or not cls.browser.is_connected():
            await cls.close()
            cls.loop = asyncio.get_running_loop()
            from playwright.async_api import async_playwright
            cls.playwright_manager = async_playwright()
            playwright = await cls.playwright_manager.__aenter__()
            cls.browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                           headless=True)
        return cls.browser

    @classmethod
    async def close(cls) -> None:
        browser, manager = cls.browser, cls.playwright_manager
        cls.browser = cls.playwright_manager = None
        if browser is not None:
            try:
                await browser.close()
            except Exception:  # noqa: BLE001 - already gone (crashed, or closed by playwright)
                pass
        if manager is not None:
            await manager.__aexit__(None, None, None)


class BrowserForOneTest:
    """The session's Chromium as one test sees it: every context (and so every page, cookie and
    local storage) the test opens is its own and closed when the test ends."""

    def __init__(self, browser) -> None:
        self.browser = browser
        self.contexts: list = []

    async def new_context(self, **options):
        context = await self.browser.new_context(**options)
        self.contexts.append(context)
        return context

    async def new_page(self, **options):
        return await (await self.new_context(**options)).new_page()

    def __getattr__(self, name: str):
        return getattr(self.browser, name)

    async def close_contexts(self) -> None:
        for context in self.contexts:
            try:
                await context.close()
            except Exception:  # noqa: BLE001 - the browser went away with it
                pass
        self.contexts.clear()


@asynccontextmanager
async def chromium() -> AsyncIterator[BrowserForOneTest]:
    need_chromium()
    browser = BrowserForOneTest(await _SharedBrowser.get())
    try:
        yield browser
    finally:
        await browser.close_contexts()


def close_module_browser() -> None:
    """Close the shared Chromium, if a test launched it, on the loop it was launched on (between
    tests, when that loop is not running)."""
    loop = _SharedBrowser.loop
    if _SharedBrowser.browser is not None and loop is not None and not loop.is_closed() and not loop.is_running():
        loop.run_until_complete(_SharedBrowser.close())


async def signed_in_page(browser, console: Console, user: str = "alice", width: int = 1280, height: int = 900):
    """A fresh context signed in through the #token= link, as `sagestore token --link` prints it."""
    context = await browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    page = await context.new_page()
    page.set_default_timeout(60_000)
    await page.goto(f"{console.url}/ui/#token={console.token(user)}")
    await page.get_by_text(f"Signed in as {user}").wait_for()
    return page


def make_file(path: Path, size: int, seed: int = 1) -> str:
    """A file of pseudo-random bytes (written in 1 MiB pieces); returns its sha256."""
    digest = hashlib.sha256()
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
    with path.open("wb") as out:
        written = 0
        while written < size:
            piece = bytes((byte + written // MiB) % 256 for byte in block[:16]) + block[16:]
            piece = piece[:size - written]
            out.write(piece)
            digest.update(piece)
            written += len(piece)
    return digest.hexdigest()


async def screenshot(page, name: str, full_page: bool = True) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path


def npm_dir_ready(directory: Path, package: str) -> None:
    if not (directory / "node_modules" / package).is_dir():
        pytest.fail(f"run `npm ci` in {directory} (scripts/test and .ci/run do)")
    if shutil.which("node") is None:
        pytest.fail("node is missing: apt-get install -y nodejs npm")
