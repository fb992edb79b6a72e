"""Every kind of document the daemon serves passes the W3C Feed Validator (SPEC §6 "Entries").

The validator is the W3C's own code run offline: ``../shared/tools/validate-feed URL``
beside the repository (CI has it), level AA, which fetches the URL from a real
web server on loopback and checks the media type and self link too. A finding of
any kind -- error or warning -- fails the test, with the validator's report.

One archive holds the sample archive and pages made to trip a feed writer up:
markup-like text in titles, stories, source names and contexts; control
characters; right-to-left text and direction marks; a title of 2,000 characters.
A second, empty store serves a feed with no entries. Each validator run is a
process of its own (a few seconds), so the URLs are one of each kind of document
rather than every topic (the hostile pages are on page 1 of the all-events feeds,
the sample archive's on the others), two at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from feedbot.archive.local import LocalArchiveSource
from feedbot.feeds.cache import FeedCache
from feedbot.ingest import Ingestor
from feedbot.settings import Settings
from feedbot.store import Store
from feedbot.web import WebServer
from tests.conftest import REPO, copy_sample_archive, write_page

VALIDATOR = REPO.parent / "shared" / "tools" / "validate-feed"
pytestmark = pytest.mark.skipif(
    not VALIDATOR.is_file(),
    reason=f"the W3C Feed Validator is not at {VALIDATOR} (CI has ../shared/tools)",
)
PAGE_SIZE = 20
# The first run builds the validator's venv (pip install from PyPI).
VALIDATOR_PATIENCE = 600.0

MARKUP = "<script>alert(1)</script> & AT&T &amp; </b> <i>x</i> ]]> &#x3C;"
LONG_TITLE = "A very long title: " + "word " * 395 + "end."


def write_hostile_pages(root: Path) -> None:
    """Pages dated after the sample archive's newest, so page 1 of every feed has them."""
    markup = write_page(
        root,
        "2024/01/1",
        "markup",
        MARKUP,
        story="<b>Bold</b> & story",
        related=[("2024/01/2/control", f"Related {MARKUP}", ["<Ctx> & </i>", "Café"])],
    )
    text = markup.read_text(encoding="utf-8")
    markup.write_text(
        text.replace(
            "1. [Example](https://example.org/markup)",
            "1. [Example](https://example.org/markup)\n"
            "2. [Fox & <News> </b> &amp;](https://example.org/?a=1&b=2)\n"
            "3. [<someone@example.org>](https://example.org/mail)",
        ),
        encoding="utf-8",
    )
    write_page(
        root,
        "2024/01/2",
        "control",
        "Bell \x07 escape \x1b delete \x7f next line \x85 end \ufffe",
        story="Control\x01 story",
    )
    write_page(
        root,
        "2024/01/3",
        "rtl",
        "\u200f\u202eمرحبا بالعالم — שלום עולם \u200e mixed \u2067isolate\u2069",
        story="שלום",
        related=[("2024/01/1/markup", "back \u200f", ["مرحبا"])],
    )
    write_page(root, "2024/01/4", "long", LONG_TITLE, story="Long story")


async def serve(store: Store) -> WebServer:
    settings = Settings(server={"host": "127.0.0.1", "port": 0}, feeds={"page_size": PAGE_SIZE})
    web = WebServer(
        settings, store, FeedCache(store, settings.public_base_url, page_size=PAGE_SIZE)
    )
    await web.start()
    return web


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[tuple[WebServer, WebServer, int]]:
    archive = copy_sample_archive(tmp_path / "archive")
    write_hostile_pages(archive)
    store = await Store.open(f"sqlite:///{tmp_path / 'feedbot.db'}")
    empty = await Store.open(f"sqlite:///{tmp_path / 'empty.db'}")
    result = await Ingestor(store, LocalArchiveSource(archive)).poll()
    assert result.rejected == {}
    full, bare = await serve(store), await serve(empty)
    try:
        yield full, bare, await store.count_events()
    finally:
        await full.stop()
        await bare.stop()
        await store.close()
        await empty.close()


async def validate(url: str, slots: asyncio.Semaphore) -> str | None:
    """The validator's report on ``url``, or None when it found nothing."""
    async with slots:
        process = await asyncio.create_subprocess_exec(
            str(VALIDATOR),
            url,
            "AA",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(process.communicate(), VALIDATOR_PATIENCE)
    report = out.decode(errors="replace").strip()
    if process.returncode == 0 and report == "No errors or warnings":
        return None
    return f"{url} (exit {process.returncode}):\n{report}"


async def test_every_kind_of_served_document_has_no_errors_or_warnings(
    servers: tuple[WebServer, WebServer, int],
) -> None:
    full, bare, total = servers
    last = -(-total // PAGE_SIZE)
    assert last > 2
    paths = [
        "/feeds/all.atom",
        "/feeds/all.rss",
        "/feeds/all.atom?page=2",
        f"/feeds/all.rss?page={last}",
        "/topics.opml",
        "/feeds/topics/b-bold-b-story.atom",  # markup in the feed's own title
        "/feeds/topics/b-bold-b-story.rss",
    ]
    urls = [full.url + path for path in paths]
    urls += [bare.url + "/feeds/all.atom", bare.url + "/topics.opml"]
    # First alone: it may have to build the validator's venv.
    slots = asyncio.Semaphore(2)
    first = await validate(urls[0], slots)
    reports = [first, *await asyncio.gather(*(validate(url, slots) for url in urls[1:]))]

    findings = [report for report in reports if report is not None]
    assert not findings, "\n\n".join(findings)
