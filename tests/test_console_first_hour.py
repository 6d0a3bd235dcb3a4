"""The console's first hour in Chromium, against a real server process: it never says "signed in"
with a token the server refused; a #token= link asks before it replaces a signed-in user (login
CSRF) and says whom it signs in; the share panel lists and revokes links and shows a link box only
once there is a link; tables line up; our own favicon; the bucket's id with a copy button.
Screenshots at a phone's width (390 px) and a wide screen (1440 px) go to SAGESTORE_SCREENSHOTS."""
from __future__ import annotations

import struct
import uuid

import pytest
import requests
from playwright.async_api import expect

from support.backends import new_database
from support.client import start_client_server
from support.console import chromium, screenshot
from test_first_hour import forged


@pytest.fixture(scope="module")
def served(s3_backend, database_server_url, backends_dir):
    """The module's server on a database of its own: signed out, the console lists the first 1000
    public buckets, oldest first, and the session's database can hold more once other tests ran."""
    with new_database(database_server_url) as url:
        client_server, server = start_client_server(s3_backend, url, backends_dir)
        yield client_server
        server.stop()


pytestmark = pytest.mark.timeout(600)
PHONE, WIDE = {"width": 390, "height": 844}, {"width": 1440, "height": 900}


@pytest.fixture
async def browser():
    async with chromium() as running:
        yield running


async def new_page(browser, served, viewport=WIDE, **options):
    context = await browser.new_context(viewport=viewport, **options)
    page = await context.new_page()
    page.set_default_timeout(60_000)
    return page


async def open_link(page, served, token: str) -> None:
    await page.goto(f"{served.url}/ui/#token={token}")


async def sign_in(page, served, user: str) -> None:
    await open_link(page, served, served.token(user))
    await expect(page.locator("#who")).to_have_text(f"Signed in as {user} Sign out")


def create_bucket(served, user: str, name: str, public: bool = False) -> str:
    answer = requests.post(served.url + "/api/v1/objects", params={"type": "model", "name": name,
                                                                   **({"public": "true"} if public else {})},
                           headers={"Authorization": f"Bearer {served.token(user)}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["id"]


def put(served, user: str, bucket_id: str, key: str, data: bytes) -> None:
    answer = requests.put(f"{served.url}/api/v1/objects/{bucket_id}/{key}", data=data, timeout=30,
                          headers={"Authorization": f"Bearer {served.token(user)}"})
    assert answer.status_code == 200, answer.text


# ------------------------------------------------------------------------------------ sign-in (29.1, 23.7)
async def test_a_rejected_token_never_shows_signed_in(browser, served):
    page = await new_page(browser, served)
    foreign = forged(served, "alice", secret="another-data-dir-secret-" + "q" * 30)
    await open_link(page, served, foreign)
    await expect(page.get_by_role("alert")).to_contain_text(
        "the token is not valid for this server: its signature does not match this server's key")
    await expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    await expect(page.get_by_text("Signed in as")).to_have_count(0)
    assert await page.evaluate("sessionStorage.getItem('sagestore.token')") is None
    # a kept token the server no longer accepts (expired, or another key): signed out on the next load
    await page.evaluate(f"sessionStorage.setItem('sagestore.token', '{foreign}')")
    await page.reload()
    await expect(page.get_by_role("alert")).to_contain_text("You are signed out: the token is not valid")
    await expect(page.get_by_text("Signed in as")).to_have_count(0)
    # a pasted token is checked before the header says anything
    await page.get_by_label("Token").fill(forged(served, "mallory", expires_in=-60))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("token expired")
    await expect(page.get_by_text("Signed in as")).to_have_count(0)
    await page.get_by_label("Token").fill(served.token("alice"))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_text("Signed in as alice")).to_be_visible()


async def test_a_token_link_asks_before_it_replaces_the_signed_in_user(browser, served):
    for viewport, name in ((WIDE, "wide"), (PHONE, "phone")):
        page = await new_page(browser, served, viewport)
        await open_link(page, served, served.token("alice"))
        await expect(page.locator("#who")).to_have_text("Signed in as alice Sign out")
        alice_token = await page.evaluate("sessionStorage.getItem('sagestore.token')")

        # someone sends alice a link that would sign her in as mallory
        await open_link(page, served, served.token("mallory"))
        dialog = page.get_by_role("alertdialog", name="Switch user?")
        await expect(dialog).to_contain_text("This sign-in link is for mallory. You are signed in as alice.")
        await expect(page.locator("#who")).to_have_text("Signed in as alice Sign out")
        assert "token=" not in page.url
        await screenshot(page, f"switch-user-{name}")
        await expect(dialog.get_by_role("button", name="Stay signed in as alice")).to_be_focused()
        await page.keyboard.press("Enter")  # the focused, safe answer
        await expect(page.locator("#who")).to_have_text("Signed in as alice Sign out")
        await expect(page.get_by_role("alertdialog")).to_have_count(0)
        assert await page.evaluate("sessionStorage.getItem('sagestore.token')") == alice_token

        # a refused link changes nothing even when alice agrees to switch
        await open_link(page, served, forged(served, "mallory", secret="not-this-servers-key-" + "k" * 30))
        await page.get_by_role("button", name="Sign in as mallory").click()
        await expect(page.get_by_role("alert")).to_contain_text("The link was refused, you are still signed in as alice")
        await expect(page.locator("#who")).to_have_text("Signed in as alice Sign out")
        assert await page.evaluate("sessionStorage.getItem('sagestore.token')") == alice_token

        # and when she asked for it, she switches
        await open_link(page, served, served.token("bob"))
        await page.get_by_role("button", name="Sign in as bob").click()
        await expect(page.locator("#who")).to_have_text("Signed in as bob Sign out")
        await page.context.close()


# ------------------------------------------------------------------------------------ shares (29.3)
async def test_the_share_panel_lists_and_revokes_links(browser, served):
    bucket_id = create_bucket(served, "alice", "shared-here")
    put(served, "alice", bucket_id, "v1/weights.bin", b"weights" * 100)
    for viewport, name in ((WIDE, "wide"), (PHONE, "phone")):
        page = await new_page(browser, served, viewport)
        await sign_in(page, served, "alice")
        await page.goto(f"{served.url}/ui/#/b/{bucket_id}/v1/")
        await page.get_by_role("button", name="Share weights.bin").click()
        await expect(page.get_by_text("No active share link to this file.")).to_be_visible()
        # no link box and no Copy button before there is a link
        await expect(page.get_by_role("button", name="Copy link")).to_have_count(0)
        await expect(page.get_by_label("Share link for v1/weights.bin")).to_have_count(0)
        await page.get_by_role("button", name="Create share link").click()
        link = page.get_by_label("Share link for v1/weights.bin")
        await expect(link).to_be_visible()
        url = await link.input_value()
        assert requests.get(url, timeout=30).status_code == 200
        await expect(page.get_by_role("button", name="Copy link")).to_be_visible()
        revoke = page.get_by_role("button", name="Revoke the link to v1/weights.bin made by alice", exact=False)
        await expect(revoke).to_have_count(1)
        await screenshot(page, f"share-panel-{name}")
        await revoke.click()
        await expect(page.get_by_text("No active share link to this file.")).to_be_visible()
        assert requests.get(url, timeout=30).status_code in (403, 404, 410)
        await page.context.close()

    # every active link on the bucket, on its permissions page, with Revoke
    made = requests.post(served.url + "/api/v1/shares", timeout=30, headers={"Authorization": f"Bearer {served.token('alice')}"},
                         json={"bucket_id": bucket_id, "key": "v1/weights.bin", "expires_in": 600}).json()
    page = await new_page(browser, served)
    await sign_in(page, served, "alice")
    await page.goto(f"{served.url}/ui/#/p/{bucket_id}")
    table = page.locator("#bucket-shares table")
    await expect(table).to_contain_text("v1/weights.bin")
    await table.get_by_role("button", name="Revoke", exact=False).click()
    await expect(page.get_by_text("No active share links.")).to_be_visible()
    assert requests.get(made["url"], timeout=30).status_code in (403, 404, 410)


# ------------------------------------------------------------------------------------ the console (29.8)
def ico_images(data: bytes) -> list[tuple[int, bytes]]:
    reserved, kind, count = struct.unpack("<HHH", data[:6])
    assert (reserved, kind) == (0, 1) and count >= 1
    images = []
    for index in range(count):
        width, _, _, _, _, _, size, offset = struct.unpack("<BBBBHHII", data[6 + 16 * index:22 + 16 * index])
        images.append((width or 256, data[offset:offset + size]))
    return images


async def cells_line_up(page, selector: str) -> None:
    """Every cell of every row has its row's top and bottom, and its column header's left and width."""
    await page.locator(selector).wait_for()
    misaligned = await page.evaluate("""(selector) => {
      const table = document.querySelector(selector);
      const heads = [...table.querySelectorAll('thead th')].map((th) => th.getBoundingClientRect());
      const problems = [];
      for (const row of table.querySelectorAll('tbody tr')) {
        const box = row.getBoundingClientRect();
        const cells = [...row.children];
        if (cells.length !== heads.length) problems.push(`${cells.length} cells under ${heads.length} headers`);
        cells.forEach((cell, index) => {
          const rect = cell.getBoundingClientRect();
          const style = getComputedStyle(cell);
          if (style.display !== 'table-cell') problems.push(`cell ${index} is display:${style.display}`);
          if (Math.abs(rect.top - box.top) > 1 || Math.abs(rect.bottom - box.bottom) > 1)
            problems.push(`cell ${index}: ${rect.top}-${rect.bottom} in row ${box.top}-${box.bottom}`);
          if (heads[index] && (Math.abs(rect.left - heads[index].left) > 1 || Math.abs(rect.width - heads[index].width) > 1))
            problems.push(`cell ${index}: left ${rect.left} width ${rect.width}, header ${heads[index].left} ${heads[index].width}`);
        });
      }
      return problems;
    }""", selector)
    assert misaligned == [], (selector, misaligned)


async def test_tables_line_up_favicon_and_bucket_id(browser, served):
    bucket_name = f"open-data-{uuid.uuid4().hex[:8]}"  # the suite's database has other public buckets
    public_id = create_bucket(served, "alice", bucket_name, public=True)
    put(served, "alice", public_id, "folder/inside.txt", b"inside")
    put(served, "alice", public_id, "readme.txt", b"read me")
    icon = requests.get(served.url + "/favicon.ico", timeout=30)
    assert icon.status_code == 200 and icon.headers["Content-Type"] == "image/vnd.microsoft.icon"
    images = ico_images(icon.content)
    assert {width for width, _ in images} >= {16, 32} and all(png.startswith(b"\x89PNG") for _, png in images)
    svg = requests.get(served.url + "/ui/favicon.svg", timeout=30)
    assert svg.status_code == 200 and svg.headers["Content-Type"].startswith("image/svg+xml") and b"<svg" in svg.content

    for viewport, name in ((WIDE, "wide"), (PHONE, "phone")):
        page = await new_page(browser, served, viewport, permissions=["clipboard-read", "clipboard-write"])
        await page.goto(served.url + "/ui/")  # signed out: the public buckets
        await expect(page.get_by_role("link", name=bucket_name, exact=True)).to_be_visible()
        # headless Chromium fetches no icon by itself: the page fetches what its <link rel=icon> name
        icons = await page.evaluate("""Promise.all([...document.querySelectorAll('link[rel=icon]')].map(
          (link) => fetch(link.href).then((answer) => [new URL(link.href).pathname, answer.status,
                                                       answer.headers.get('content-type')])))""")
        assert sorted(icons) == [["/favicon.ico", 200, "image/vnd.microsoft.icon"],
                                 ["/ui/favicon.svg", 200, "image/svg+xml; charset=utf-8"]], icons
        if viewport is WIDE:
            await expect(page.locator("#buckets thead th")).to_have_text(["Name", "Type", "Owner", "Access"])
            await cells_line_up(page, "#buckets")
        await screenshot(page, f"public-buckets-{name}")
        await page.get_by_role("link", name=bucket_name, exact=True).click()
        await expect(page.locator("#bucket-id")).to_have_text(public_id)
        if viewport is WIDE:
            await cells_line_up(page, "#files")
        await screenshot(page, f"public-bucket-{name}")

        await sign_in(page, served, "alice")
        if viewport is WIDE:
            await cells_line_up(page, "#buckets")
        await page.goto(f"{served.url}/ui/#/b/{public_id}/")
        await expect(page.locator("#bucket-id")).to_have_text(public_id)
        await page.get_by_role("button", name="Copy bucket ID").click()
        await expect(page.get_by_role("status")).to_have_text("Bucket ID copied")
        assert await page.evaluate("navigator.clipboard.readText()") == public_id
        if viewport is WIDE:
            await cells_line_up(page, "#files")
            await page.goto(f"{served.url}/ui/#/p/{public_id}")
            await cells_line_up(page, "#grants")
        await page.context.close()


async def test_signed_out_the_public_bucket_list_pages_through_every_bucket(browser, served):
    names = {f"paged-{uuid.uuid4().hex[:8]}" for _ in range(3)}
    for name in names:
        create_bucket(served, "alice", name, public=True)
    create_bucket(served, "alice", "paged-private")
    page = await new_page(browser, served)
    await page.goto(f"{served.url}/ui/")
    await page.evaluate("sessionStorage.setItem('sagestore.bucketPageSize', '2')")
    await page.reload()
    rows = page.locator("#buckets tbody tr")
    seen: list[str] = []
    for _ in range(100):
        await expect(rows.first).to_be_visible()
        assert await rows.count() <= 2
        seen += [await link.inner_text() for link in await page.locator("#buckets tbody a").all()]
        following = page.get_by_role("link", name="Next page")
        if not await following.count():
            break
        await following.click()
        await expect(page.get_by_role("link", name="First page")).to_be_visible()
        await expect(page.locator("#buckets tbody a", has_text=seen[-1])).to_have_count(0)
    assert len(seen) == len(set(seen)) and names <= set(seen) and "paged-private" not in seen
    await page.get_by_role("link", name="First page").click()
    await expect(page.get_by_role("link", name="First page")).to_have_count(0)
    assert [await link.inner_text() for link in await page.locator("#buckets tbody a").all()] == seen[:2]
