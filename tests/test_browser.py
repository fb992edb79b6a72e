"""feedbot's pages and feeds in a real browser (issue 14): headless chromium,
driven by Playwright, loads what a running daemon serves from the sample archive.

Every HTML page, at desktop (1280 px) and phone (375 px) width, must answer its
status, log no console error (a violation of its strict Content-Security-Policy
is one), ask nothing of any host but loopback, not scroll sideways, and have no
axe-core violation of impact serious or critical. The Atom and RSS feeds carry
an ``<?xml-stylesheet?>`` XSLT: the browser must render them as a page of the
same standard whose ``h1`` holds the feed's title and whose ``#subscribe``
element holds the feed's own URL, to paste into a reader.

One daemon and one browser serve the whole module (its tests share the module's
event loop); each page is loaded in fresh browser contexts (tests/browser.py).
A last test checks the checker: a page made to break each rule must break them.
Without chromium or axe-core the module skips, saying how to install them; with
``CI`` set it fails instead.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from tests.browser import (
    EVENT,
    PHONE,
    TOPIC,
    VIEWPORTS,
    WORD,
    Viewport,
    chromium,
    require,
    sample_daemon,
    visit,
)
from tests.daemons import Daemon

if TYPE_CHECKING:
    from playwright.async_api import Browser

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

ATOM = "{http://www.w3.org/2005/Atom}"

# Each HTML page the daemon serves, with the status it must answer.
PAGES = [
    pytest.param("/", 200, id="home"),  # the latest events, paged, with a search box
    pytest.param("/topics", 200, id="topics"),
    pytest.param(f"/topics/{TOPIC}", 200, id="topic"),
    pytest.param(f"/search?q={WORD}", 200, id="search"),
    pytest.param("/search?q=", 400, id="search-empty"),  # a page that says why
    pytest.param(f"/events/{EVENT}", 200, id="event"),
]
FEEDS = [
    pytest.param("/feeds/all.atom", id="all.atom"),
    pytest.param(f"/feeds/topics/{TOPIC}.rss", id="topic.rss"),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    require()
    async with chromium() as launched:
        yield launched


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def daemon(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Daemon]:
    require()  # no daemon to start where the browser tests are skipped
    async with sample_daemon(tmp_path_factory.mktemp("browser")) as running:
        yield running


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=str)
@pytest.mark.parametrize(("path", "status"), PAGES)
async def test_a_page_is_clean_in_a_real_browser(
    browser: Browser, daemon: Daemon, path: str, status: int, viewport: Viewport
) -> None:
    seen = await visit(browser, daemon.url + path, viewport)
    problems = seen.problems(status)
    assert not problems, "\n".join([f"{seen.url} at {viewport}:", *problems])


async def feed_title(url: str) -> str:
    """The title the feed at ``url`` gives itself (Atom's feed/title, RSS's channel/title)."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, url
        root = ET.fromstring(await response.read())
    title = root.findtext(f"{ATOM}title") or root.findtext("channel/title")
    assert title, f"{url} has no title"
    return title


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=str)
@pytest.mark.parametrize("path", FEEDS)
async def test_a_feed_reads_as_a_page_through_its_stylesheet(
    browser: Browser, daemon: Daemon, path: str, viewport: Viewport
) -> None:
    url = daemon.url + path
    title = await feed_title(url)
    seen = await visit(browser, url, viewport, texts=("h1", "#subscribe"))
    problems = []
    if seen.content_type != "text/html":
        # Chromium shows an application/atom+xml or rss+xml document as text, and
        # leaves an empty document where the stylesheet's load was refused.
        problems.append(f"not rendered through its stylesheet: the document is {seen.content_type}")
    problems += seen.problems(200)
    if not any(title in h1 for h1 in seen.texts["h1"]):
        problems.append(f"no h1 holds the title {title!r}; the h1s: {seen.texts['h1']}")
    if not any(url in text for text in seen.texts["#subscribe"]):
        problems.append(f"no #subscribe holds {url}; it says {seen.texts['#subscribe']}")
    assert not problems, "\n".join([f"{url} at {viewport}:", *problems])


# A page that breaks each rule: an inline script its CSP forbids, an element wider
# than a phone, a button with no name (axe: button-name, critical).
BROKEN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Broken</title></head>
<body><main><h1>Broken</h1>
<script>document.title = "ran";</script>
<div style="width: 900px">wide</div>
<button></button>
</main></body></html>"""


async def test_the_checker_sees_a_broken_page(browser: Browser) -> None:
    async def broken(request: web.Request) -> web.Response:
        return web.Response(
            text=BROKEN,
            content_type="text/html",
            headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
        )

    app = web.Application()
    app.router.add_get("/", broken)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        seen = await visit(browser, f"http://{host}:{port}/", PHONE)
    finally:
        await runner.cleanup()
    problems = seen.problems(200)
    assert any("Content Security Policy" in problem for problem in seen.errors), problems
    assert seen.overflows and seen.window == PHONE.width, problems
    assert "button-name" in {violation["id"] for violation in seen.serious()}, problems
