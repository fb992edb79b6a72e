"""A real browser for checking feedbot's pages: Debian's ``chromium``, driven
headless by Playwright, with axe-core judging accessibility.

This module owns finding the tools (chromium on the ``PATH``, or
``FEEDBOT_TEST_CHROMIUM``; axe-core as ``make axe`` installs it from
``tests/axe/package-lock.json``), launching chromium so that it talks to
loopback only, the sample-archive daemon the browser tests and
``docs/screenshots.py`` both look at, and :func:`visit`: one URL at one viewport
gives its status, the console errors it caused (a violation of the pages' strict
Content-Security-Policy is one of them), whether it is wider than the window,
the texts of chosen elements and axe-core's violations.

Where chromium, axe-core or Playwright is missing, :func:`require` skips with
the reason and how to install it; with ``CI`` set it fails instead, so CI never
passes by skipping the browser tests.

Playwright's async API, not its sync one: the daemon under test is an asyncio
subprocess and the tests run on pytest-asyncio's loop, and the sync API refuses
to run inside a running event loop (it drives its own). The async API shares
the tests' loop, so one test awaits the daemon and the browser alike.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.conftest import PATIENCE, REPO, copy_sample_archive
from tests.daemons import Daemon, feedbot_run, write_config

if TYPE_CHECKING:
    from playwright.async_api import Browser, ConsoleMessage, Page, Request, ViewportSize

AXE = REPO / "tests" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = os.environ.get("FEEDBOT_TEST_CHROMIUM") or shutil.which("chromium")

# What the sample archive (examples/archive) holds, for the pages to look at: a
# topic with more events than fit one feed page, a word in many of its events'
# titles, and one event of that topic with sources, related events and topics.
TOPIC = "japan"
WORD = "fukushima"
EVENT = (
    "2011/03/12/fukushima-daiichi-nuclear-disaster-a-hydrogen-explosion-blows-apart-the-"
    "outer-building-of-reactor-1-at-the-fukushima-daiichi-plant-and-the-e"
)

# The flags that start chromium headless here as root: no sandbox (root), no
# GPU, no QUIC, and none of the background traffic to Google (first-run, sync,
# component updates). The resolver rule makes every host name unresolvable but
# loopback's, so nothing the browser does can reach another machine; the
# daemons under test bind 127.0.0.1.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
)
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

# Chromium 156 still runs a feed's <?xml-stylesheet?> XSLT but, XSLT being
# deprecated, puts this element (a red popover) into the result. It is the
# browser's, not the page's: axe skips it, screenshots leave it out, and the CSP
# violations it causes (its inline styles and handler, under the feed's strict
# policy: seven console errors) are not the page's either. Turning it off is no
# option: Chromium honours only the last --disable-features, and Playwright
# passes its own list (features that would otherwise reach out to Google).
XSLT_BANNER = "xslt-warning-banner"
_DROP_XSLT_BANNER = f"document.querySelectorAll({XSLT_BANNER!r}).forEach((e) => e.remove())"
# Run before any of the page's own code, in every document of the context
# (an XSLT result too): notes, for each CSP violation in the order the console
# reports them, whether the banner caused it (events inside its shadow tree
# reach the document retargeted to it).
_WATCH_CSP = f"""
window.__cspByBanner = [];
document.addEventListener("securitypolicyviolation", (event) => {{
  const target = event.target;
  window.__cspByBanner.push(Boolean(target && target.closest && target.closest({XSLT_BANNER!r})));
}}, true);
"""
_CSP_CONSOLE = "Content Security Policy"

# Impacts that fail a page; axe's "moderate" and "minor" are reported, not failed.
SERIOUS = ("serious", "critical")


@dataclass(frozen=True)
class Viewport:
    name: str
    width: int
    height: int

    def __str__(self) -> str:
        return self.name

    @property
    def size(self) -> ViewportSize:
        return {"width": self.width, "height": self.height}


DESKTOP = Viewport("desktop", 1280, 800)
# A plain narrow window, not Playwright's mobile emulation: with ``is_mobile`` a
# page that overflows (or lacks the viewport meta tag) is zoomed out to fit,
# which is exactly what hides the overflow this width is here to catch.
PHONE = Viewport("phone", 375, 740)
VIEWPORTS = (DESKTOP, PHONE)


def unavailable(*, axe: bool = True) -> str | None:
    """Why the browser tests cannot run here (without ``axe``: why no page can be
    loaded at all), or None."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[test]')"
    if CHROMIUM is None:
        return "chromium is not installed (Debian: apt-get install chromium)"
    if axe and not AXE.is_file():
        return (
            f"axe-core is not installed at {AXE.relative_to(REPO)} (make axe: npm ci in tests/axe)"
        )
    return None


def require() -> None:
    """Skip the calling test (or fixture) when the tools are missing; fail under CI."""
    reason = unavailable()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser tests: {reason}", pytrace=False)
    pytest.skip(reason)


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Headless chromium, closed on the way out. Call :func:`require` first."""
    from playwright.async_api import async_playwright

    assert CHROMIUM is not None
    async with async_playwright() as playwright:
        # Playwright gives each launch a fresh, temporary user-data-dir.
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=PATIENCE * 1000
        )
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def sample_daemon(folder: Path, port: int = 0) -> AsyncIterator[Daemon]:
    """``feedbot run`` on a copy of the sample archive in ``folder``, listening on
    loopback ``port`` (0: any free one), once its first poll has stored every page
    (so every page the tests ask for exists)."""
    archive = copy_sample_archive(folder / "archive")
    config = write_config(folder, archive, port=port)
    async with feedbot_run(config) as daemon, aiohttp.ClientSession() as session:
        await daemon.first_poll(session)
        yield daemon


@dataclass
class Visit:
    """What one load of a page at one viewport showed."""

    url: str
    viewport: Viewport
    status: int | None
    content_type: str = ""  # document.contentType: text/html for a feed shown through XSLT
    errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)
    width: int = 0  # document.documentElement.scrollWidth
    window: int = 0  # window.innerWidth
    texts: dict[str, list[str]] = field(default_factory=dict)
    violations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def overflows(self) -> bool:
        return self.width > self.window

    def problems(self, status: int = 200) -> list[str]:
        """Everything wrong with the page, one line each (an empty list: nothing):
        another status than ``status``, console errors (CSP violations among
        them), requests to anywhere but loopback, horizontal overflow, and axe
        violations of impact serious or critical."""
        found = [] if self.status == status else [f"status {self.status}, not {status}"]
        found += self.errors
        found += [f"request to another host: {url}" for url in self.foreign_requests]
        if self.overflows:
            found.append(
                f"overflows: {self.width} px wide in a {self.window} px window (scrolls sideways)"
            )
        if serious := self.serious():
            found.append("axe-core, serious or critical:\n" + self.describe(serious))
        return found

    def serious(self) -> list[dict[str, Any]]:
        """axe's violations of impact serious or critical."""
        return [v for v in self.violations if v.get("impact") in SERIOUS]

    def describe(self, violations: Iterable[dict[str, Any]] | None = None) -> str:
        """axe's violations (all of them by default) as lines a failing assertion
        can show: rule, impact, what it means, and the nodes it found (CSS
        selectors and their HTML)."""
        lines = []
        for violation in self.violations if violations is None else violations:
            lines.append(
                f"  {violation['id']} [{violation.get('impact')}]: {violation['help']} "
                f"({violation['helpUrl']})"
            )
            for node in violation["nodes"]:
                lines.append(f"    {node['target']}: {node['html'][:200]}")
        return "\n".join(lines)


def _is_noise(message: ConsoleMessage, url: str) -> bool:
    """Console errors that are no fault of the page: the favicon the browser asks
    for on its own, and the load of the page itself when its status is not 2xx
    (the status is checked on its own)."""
    where = message.location.get("url", "")
    failed_load = message.text.startswith("Failed to load resource")
    return failed_load and (urlsplit(where).path == "/favicon.ico" or where == url)


async def _open(page: Page, url: str, visit: Visit) -> None:
    """Load ``url`` in ``page``, recording what the page does wrong into ``visit``."""
    csp: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not _is_noise(message, url):
            line = f"console: {message.text} ({message.location.get('url')})"
            (csp if _CSP_CONSOLE in message.text else visit.errors).append(line)

    def on_request(request: Request) -> None:
        parts = urlsplit(request.url)  # data: and blob: URLs go nowhere
        if parts.scheme in {"http", "https", "ws", "wss"} and parts.hostname not in LOOPBACK:
            visit.foreign_requests.append(request.url)

    page.on("console", on_console)
    page.on("pageerror", lambda error: visit.errors.append(f"page error: {error}"))
    page.on("request", on_request)
    response = await page.goto(url, wait_until="load")
    visit.status = None if response is None else response.status
    by_banner: list[bool] = await page.evaluate("window.__cspByBanner || []")
    # Only where the watch saw every violation the console reported can it tell
    # which were the banner's; otherwise every one counts against the page.
    if len(by_banner) == len(csp):
        csp = [line for line, banner in zip(csp, by_banner, strict=True) if not banner]
    visit.errors += csp


async def visit(
    browser: Browser,
    url: str,
    viewport: Viewport,
    *,
    texts: Iterable[str] = (),
    axe: bool = True,
) -> Visit:
    """Load ``url`` at ``viewport`` and report on it.

    Two browser contexts, one after the other. The first is an ordinary one: it
    sees the page as a reader's browser does, under the page's own
    Content-Security-Policy, so anything the policy blocks (an inline script or
    style, a foreign resource) shows up as a console error (but for what the
    browser's XSLT banner causes: see :data:`XSLT_BANNER`). It also measures the
    page's width and reads the text of each element matching a selector in
    ``texts``. The second bypasses the policy, only so that axe-core can be
    injected (the policy rightly refuses an unknown script), and runs axe.
    """
    result = Visit(url, viewport, None)
    context = await browser.new_context(viewport=viewport.size)
    try:
        context.set_default_timeout(PATIENCE * 1000)
        await context.add_init_script(_WATCH_CSP)
        page = await context.new_page()
        await _open(page, url, result)
        # documentElement is null where an XSLT stylesheet failed to load.
        result.width, result.window, result.content_type = await page.evaluate(
            "[document.documentElement ? document.documentElement.scrollWidth : 0,"
            " window.innerWidth, document.contentType]"
        )
        for selector in texts:
            result.texts[selector] = [
                " ".join(text.split()) for text in await page.locator(selector).all_text_contents()
            ]
    finally:
        await context.close()
    if axe:
        result.violations = await _axe(browser, url, viewport)
    return result


async def _axe(browser: Browser, url: str, viewport: Viewport) -> list[dict[str, Any]]:
    """axe-core's violations on ``url``, in a context that bypasses its CSP."""
    context = await browser.new_context(viewport=viewport.size, bypass_csp=True)
    try:
        context.set_default_timeout(PATIENCE * 1000)
        page = await context.new_page()
        await page.goto(url, wait_until="load")
        await page.evaluate(_DROP_XSLT_BANNER)
        await page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
        violations: list[dict[str, Any]] = await page.evaluate(
            """async (exclude) => (await axe.run(
                {exclude: exclude}, {resultTypes: ["violations"]})).violations""",
            [[XSLT_BANNER]],
        )
        return violations
    finally:
        await context.close()


async def screenshot(
    browser: Browser, url: str, viewport: Viewport, path: Path, *, needs: str = "h1"
) -> str | None:
    """Write a PNG of what the window shows of ``url`` at ``viewport`` to ``path``;
    None once written, or why not: a status other than 200, or no element matching
    ``needs`` (how a page that is not the one meant is told apart, e.g. a feed the
    browser shows as text rather than through its stylesheet)."""
    context = await browser.new_context(viewport=viewport.size)
    try:
        context.set_default_timeout(PATIENCE * 1000)
        page = await context.new_page()
        response = await page.goto(url, wait_until="load")
        if response is None or response.status != 200:
            return f"status {None if response is None else response.status}"
        if await page.locator(needs).count() == 0:
            return f"no element matching {needs!r}"
        await page.evaluate(_DROP_XSLT_BANNER)
        await page.screenshot(path=path, animations="disabled")
        return None
    finally:
        await context.close()
