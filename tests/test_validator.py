"""Every kind of document the daemon serves passes the W3C Feed Validator (SPEC §6
"Entries"), and every Atom document RFC 4287's RELAX NG grammar.

The validator is the W3C's own code run offline: ``../shared/tools/validate-feed URL``
beside the repository (CI has it), level AA, which fetches the URL from a real
web server on loopback and checks the media type and self link too. A finding of
any kind -- error or warning -- fails the test, with the validator's report.
The grammar (:mod:`tests.atom_grammar`) checks the same served Atom bodies.

One archive holds the sample archive and pages made to trip a feed writer up:
markup-like text in titles, stories, source names and contexts; control
characters; right-to-left text and direction marks; a title of 2,000 characters;
and an event removed from it (missing on two polls), so the feeds it was in
carry an RFC 6721 tombstone. A second, empty store serves a feed with no
entries. Each validator run is a process of its own (about a second on an idle
machine, mostly its start), so the URLs are one of each kind of document rather
than every topic (the hostile pages are on page 1 of the all-events feeds, the
sample archive's on the others), two at a time.

The one exception: the validator knows no RFC 6721 namespace, and says "Use of
unknown namespace" of any document declaring it (feedvalidator/base.py logs
``UnknownNamespace``, a warning, for every namespace missing from its fixed list;
the element itself it accepts). So the documents holding a tombstone are served
on their own (the other server shows no tombstones, ``feeds.tombstone_days = 0``)
and may have that one finding, for that namespace, and nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from lxml import etree

from feedbot.archive.local import LocalArchiveSource
from feedbot.feeds._feedgen import TOMBSTONES_NS
from feedbot.feeds.cache import FeedCache
from feedbot.feeds.urls import event_urn
from feedbot.ingest import Ingestor
from feedbot.settings import Settings
from feedbot.store import Removed, Store
from feedbot.web import WebServer
from tests.atom_grammar import atom_grammar
from tests.conftest import REPO, Clock, copy_sample_archive, write_page

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
GONE = "2024/01/5/gone"
# What the validator says of the RFC 6721 namespace (see the module's docstring).
UNKNOWN_TOMBSTONES = f"Use of unknown namespace: {TOMBSTONES_NS}"


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
    for slug in ("gone", "stays"):
        write_page(root, "2024/01/5", slug, f"The {slug} one <of two> & more.", story="Two & one")


async def serve(store: Store, clock: Clock, *, tombstone_days: int) -> WebServer:
    settings = Settings(
        server={"host": "127.0.0.1", "port": 0},
        feeds={"page_size": PAGE_SIZE, "tombstone_days": tombstone_days},
    )
    cache = FeedCache(
        store,
        settings.public_base_url,
        page_size=PAGE_SIZE,
        tombstone_days=tombstone_days,
        now=clock,
        websub=True,  # every document names the hub, as the daemon's do
    )
    web = WebServer(settings, store, cache)
    await web.start()
    return web


@dataclass
class Served:
    full: WebServer  # no tombstones shown
    tombstones: WebServer  # the same store, tombstones shown
    bare: WebServer  # an empty store
    total: int


@pytest.fixture
async def servers(tmp_path: Path, clock: Clock) -> AsyncIterator[Served]:
    archive = copy_sample_archive(tmp_path / "archive")
    write_hostile_pages(archive)
    store = await Store.open(f"sqlite:///{tmp_path / 'feedbot.db'}", clock=clock)
    empty = await Store.open(f"sqlite:///{tmp_path / 'empty.db'}", clock=clock)
    ingestor = Ingestor(store, LocalArchiveSource(archive, clock=clock, settle_ms=0), clock=clock)
    result = await ingestor.poll()
    assert (result.rejected, result.unsettled) == ({}, {})
    # Removed: missing on one poll, and on a later one.
    (archive / "news" / f"{GONE}.md").unlink()
    for _ in range(2):
        clock.advance(60)
        await ingestor.poll()
    assert isinstance(await store.lookup_event(GONE), Removed)
    servers = Served(
        full=await serve(store, clock, tombstone_days=0),
        tombstones=await serve(store, clock, tombstone_days=30),
        bare=await serve(empty, clock, tombstone_days=30),
        total=await store.count_events(),
    )
    try:
        yield servers
    finally:
        for server in (servers.full, servers.tombstones, servers.bare):
            await server.stop()
        await store.close()
        await empty.close()


async def validate(url: str, slots: asyncio.Semaphore, *, tombstones: bool = False) -> str | None:
    """The validator's report on ``url``, or None when it found nothing (in a
    document holding ``tombstones``: nothing but the unknown namespace)."""
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
    findings = report.splitlines()
    if tombstones and len(findings) == 1 and findings[0].endswith(": " + UNKNOWN_TOMBSTONES):
        return None
    return f"{url} (exit {process.returncode}):\n{report}"


def served_urls(servers: Served) -> tuple[list[str], list[str]]:
    """The URLs of one of each kind of document: those without a tombstone, and
    those with one."""
    last = -(-servers.total // PAGE_SIZE)
    assert last > 2
    paths = [
        "/feeds/all.atom",
        "/feeds/all.rss",
        "/feeds/all.atom?page=2",
        f"/feeds/all.rss?page={last}",
        "/topics.opml",
        "/feeds/topics/b-bold-b-story.atom",  # markup in the feed's own title
        "/feeds/topics/b-bold-b-story.rss",
        # Searches: hits with markup, in a topic; words from several pages.
        "/feeds/search.atom?q=alert&topic=b-bold-b-story",
        "/feeds/search.rss?q=AT%26T+script",
        "/feeds/search.atom?q=story",
        "/feeds/search.rss?q=%D7%A9%D7%9C%D7%95%D7%9D",
    ]
    plain = [servers.full.url + path for path in paths]
    plain += [servers.bare.url + "/feeds/all.atom", servers.bare.url + "/topics.opml"]
    # The removed event's feeds: every event's, and its topic's (one entry left).
    plain += [servers.tombstones.url + "/feeds/topics/two-one.rss"]
    tombstoned = [
        servers.tombstones.url + f"/feeds/{feed}.atom" for feed in ("all", "topics/two-one")
    ]
    return plain, tombstoned


async def test_every_kind_of_served_document_has_no_errors_or_warnings(servers: Served) -> None:
    plain, tombstoned = served_urls(servers)
    # First alone: it may have to build the validator's venv.
    slots = asyncio.Semaphore(2)
    first = await validate(plain[0], slots)
    reports = [
        first,
        *await asyncio.gather(
            *(validate(url, slots) for url in plain[1:]),
            *(validate(url, slots, tombstones=True) for url in tombstoned),
        ),
    ]

    findings = [report for report in reports if report is not None]
    assert not findings, "\n\n".join(findings)


async def test_served_atom_documents_pass_the_rfc_4287_grammar(servers: Served) -> None:
    plain, tombstoned = served_urls(servers)
    grammar = atom_grammar()
    checked = 0
    async with aiohttp.ClientSession() as session:
        for url in [*plain, *tombstoned]:
            if ".atom" not in url:
                continue
            async with session.get(url) as response:
                assert response.status == 200, url
                document = etree.fromstring(await response.read())
            assert grammar.validate(document), f"{url}: {grammar.error_log}"
            checked += 1
        assert checked == 8
        # The tombstones are there to be checked: where RFC 4287 allows them.
        async with session.get(tombstoned[1]) as response:
            document = etree.fromstring(await response.read())
        refs = [e.get("ref") for e in document.iter(f"{{{TOMBSTONES_NS}}}deleted-entry")]
        assert refs == [event_urn(GONE)]
