"""The web app, through real HTTP on loopback: feeds, pages, caching and bad input.

Every test runs the real :class:`~feedbot.web.WebServer` on port 0 over a real
SQLite store filled by the real ingestor from a copy of the sample archive, and
talks to it with aiohttp's client; feedparser reads the feeds back.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import date
from email.utils import format_datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import feedparser
import pytest
import pytest_asyncio
from multidict import CIMultiDict
from yarl import URL

from feedbot.archive.local import LocalArchiveSource
from feedbot.errors import StorageError
from feedbot.feeds import FeedFormat, PageOutOfRange, render_opml
from feedbot.feeds.cache import FeedCache, UnknownTopic
from feedbot.feeds.documents import opml_chunks
from feedbot.ingest import Ingestor
from feedbot.model import Event, EventRecord, Related, RelatedKind, Source, StoredEvent, Topic
from feedbot.search import SearchQuery, words_of
from feedbot.settings import Settings
from feedbot.store import Store, TopicCount
from feedbot.web import WebServer
from feedbot.web.http import accepts_gzip
from tests.conftest import PATIENCE, Clock, copy_sample_archive
from tests.receivers import Reply

BASE = "http://feeds.test"  # links use base_url, never the Host the client used
PAGE_SIZE = 5
FORMATS = ("atom", "rss", "json")
ATOM = "{http://www.w3.org/2005/Atom}"
XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass
class Served:
    server: WebServer
    store: Store
    cache: FeedCache
    ingestor: Ingestor
    archive: Path
    clock: Clock
    session: aiohttp.ClientSession

    async def get(self, path: str, method: str = "GET", **headers: str) -> Reply:
        """``path`` sent as is (no normalisation); identity encoding unless asked."""
        headers = {"Accept-Encoding": "identity", **headers}
        url = URL(self.server.url + path, encoded=True)
        async with self.session.request(method, url, headers=headers) as response:
            return Reply(response.status, CIMultiDict(response.headers), await response.read())

    async def topics(self) -> list[tuple[str, int]]:
        return [(c.topic.slug, c.events) for c in await self.store.topic_counts()]


def settings(page_size: int = PAGE_SIZE) -> Settings:
    return Settings(
        server={"host": "127.0.0.1", "port": 0, "base_url": BASE},
        feeds={"page_size": page_size},
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sample archive and a store ingested from it, built once per module;
    each test works on copies."""
    root = tmp_path_factory.mktemp("sample")
    archive = copy_sample_archive(root / "archive")
    db = root / "feedbot.db"
    store = await Store.open(f"sqlite:///{db}")
    clock = Clock()
    await Ingestor(store, LocalArchiveSource(archive, clock=clock), clock=clock).poll()
    await store.close()
    return archive, db


@pytest.fixture
async def served(tmp_path: Path, sample: tuple[Path, Path]) -> AsyncIterator[Served]:
    archive = tmp_path / "archive"
    shutil.copytree(sample[0], archive)
    shutil.copy(sample[1], tmp_path / "feedbot.db")
    clock = Clock()
    store = await Store.open(f"sqlite:///{tmp_path / 'feedbot.db'}")
    ingestor = Ingestor(store, LocalArchiveSource(archive, clock=clock), clock=clock)
    config = settings()
    cache = FeedCache(store, config.public_base_url, page_size=config.feeds.page_size)
    server = WebServer(config, store, cache, access_log=False)
    await server.start()
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            yield Served(server, store, cache, ingestor, archive, clock, session)
    finally:
        await server.stop()
        await store.close()


def feed_path(slug: str | None, fmt: str = "atom", page: int = 1) -> str:
    path = "/feeds/all" if slug is None else f"/feeds/topics/{slug}"
    return f"{path}.{fmt}" + ("" if page == 1 else f"?page={page}")


class _LiveMarkup(HTMLParser):
    """Collects what would run or load in a browser: script-ish elements, event
    handler attributes, javascript: URLs."""

    DANGEROUS = frozenset({"script", "img", "iframe", "object", "embed", "svg", "b"})

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.DANGEROUS:
            self.found.append(tag)
        for name, value in attrs:
            if name.startswith("on") or (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"{tag} {name}={value}")


def live_markup(html: str) -> list[str]:
    parser = _LiveMarkup()
    parser.feed(html)
    parser.close()
    return parser.found


# -- every feed, read by real parsers ------------------------------------------


async def test_every_feed_parses_with_feedparser_and_json(served: Served) -> None:
    topics = await served.topics()
    total = await served.store.count_events()
    assert len(topics) > 20
    for slug, count in [(None, total), *topics]:
        for fmt in FORMATS:
            reply = await served.get(feed_path(slug, fmt))
            assert reply.status == 200, (slug, fmt)
            assert reply.headers["Content-Type"] == FeedFormat(fmt).media_type
            if fmt == "json":
                document = json.loads(reply.body)
                assert document["version"] == "https://jsonfeed.org/version/1.1"
                assert len(document["items"]) == min(count, PAGE_SIZE)
                continue
            parsed = feedparser.parse(reply.body)
            assert parsed.bozo == 0, (slug, fmt, parsed.get("bozo_exception"))
            assert parsed.version == ("atom10" if fmt == "atom" else "rss20")
            assert len(parsed.entries) == min(count, PAGE_SIZE)


async def test_content_types_and_cache_headers(served: Served) -> None:
    expected = {
        "/feeds/all.atom": "application/atom+xml; charset=utf-8",
        "/feeds/topics/islamabad.rss": "application/rss+xml; charset=utf-8",
        "/feeds/topics/islamabad.json": "application/feed+json; charset=utf-8",
        "/topics.opml": "text/x-opml; charset=utf-8",
        "/topics": "text/html; charset=utf-8",
    }
    for path, media_type in expected.items():
        reply = await served.get(path)
        assert reply.status == 200
        assert reply.headers["Content-Type"] == media_type
        assert reply.headers["Cache-Control"] == "public, max-age=300"
        # Atom and RSS go to browsers as application/xml (see test_site).
        xml = path.endswith((".atom", ".rss"))
        assert reply.headers["Vary"] == ("Accept, " if xml else "") + "Accept-Encoding"
        assert re.fullmatch(r'"[0-9a-f]{32}"', reply.headers["ETag"])
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
    feed = await served.get("/feeds/all.atom")
    newest = max(e.updated for e in await served.store.events_page(limit=PAGE_SIZE))
    assert feed.headers["Last-Modified"] == format_datetime(newest.replace(microsecond=0), True)


async def test_healthz(served: Served) -> None:
    reply = await served.get("/healthz")
    assert (reply.status, reply.text) == (200, "ok\n")


# -- HTTP: conditional GET, gzip, HEAD -------------------------------------------


async def test_if_none_match_gives_304_without_body(served: Served) -> None:
    first = await served.get("/feeds/topics/islamabad.atom")
    tag = first.headers["ETag"]
    again = await served.get("/feeds/topics/islamabad.atom", **{"If-None-Match": tag})
    assert again.status == 304
    assert again.body == b""
    assert again.headers["ETag"] == tag
    assert again.headers["Cache-Control"] == "public, max-age=300"
    listed = await served.get(
        "/feeds/topics/islamabad.atom", **{"If-None-Match": f'"other", W/{tag}'}
    )
    assert listed.status == 304  # If-None-Match compares weakly, in a list
    assert (await served.get("/feeds/all.atom", **{"If-None-Match": "*"})).status == 304
    other = await served.get("/feeds/topics/islamabad.atom", **{"If-None-Match": '"nope"'})
    assert (other.status, other.body) == (200, first.body)


async def test_if_modified_since_only_without_if_none_match(served: Served) -> None:
    first = await served.get("/feeds/all.rss")
    since = first.headers["Last-Modified"]
    assert (await served.get("/feeds/all.rss", **{"If-Modified-Since": since})).status == 304
    earlier = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert (await served.get("/feeds/all.rss", **{"If-Modified-Since": earlier})).status == 200
    both = await served.get(
        "/feeds/all.rss", **{"If-Modified-Since": since, "If-None-Match": '"stale"'}
    )
    assert both.status == 200  # If-None-Match wins


async def test_gzip_when_asked(served: Served) -> None:
    plain = await served.get("/feeds/all.atom")
    zipped = await served.get("/feeds/all.atom", **{"Accept-Encoding": "br, gzip;q=0.8"})
    assert "Content-Encoding" not in plain.headers
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.headers["Vary"] == "Accept, Accept-Encoding"
    assert gzip.decompress(zipped.body) == plain.body
    assert len(zipped.body) < len(plain.body) / 3
    # The gzip representation has its own strong tag; either revalidates.
    assert zipped.headers["ETag"] != plain.headers["ETag"]
    for tag in (zipped.headers["ETag"], plain.headers["ETag"]):
        reply = await served.get(
            "/feeds/all.atom", **{"Accept-Encoding": "gzip", "If-None-Match": tag}
        )
        assert reply.status == 304
    refused = await served.get("/feeds/all.atom", **{"Accept-Encoding": "gzip;q=0, *"})
    assert "Content-Encoding" not in refused.headers
    wildcard = await served.get("/feeds/all.atom", **{"Accept-Encoding": "*"})
    assert wildcard.headers["Content-Encoding"] == "gzip"


async def test_head_sends_the_headers_of_get_and_no_body(served: Served) -> None:
    for path in ("/feeds/all.atom", "/topics", "/topics.opml"):
        get = await served.get(path)
        head = await served.get(path, method="HEAD")
        assert head.status == 200
        assert head.body == b""
        assert head.headers["ETag"] == get.headers["ETag"]
        assert head.headers["Content-Type"] == get.headers["Content-Type"]
        if path == "/topics.opml":  # streamed: no length is known before the body
            assert get.headers["Transfer-Encoding"] == "chunked"
            assert "Content-Length" not in head.headers
        else:
            assert head.headers["Content-Length"] == str(len(get.body))
    head = await served.get("/feeds/all.atom", method="HEAD", **{"Accept-Encoding": "gzip"})
    assert head.headers["Content-Encoding"] == "gzip"


# -- caching follows ingestion -----------------------------------------------------


async def feed_etags(served: Served) -> dict[str | None, str]:
    tags: dict[str | None, str] = {}
    for slug in [None, *(slug for slug, _ in await served.topics())]:
        tags[slug] = (await served.get(feed_path(slug))).headers["ETag"]
    return tags


async def test_changing_one_event_changes_exactly_the_etags_of_its_feeds(served: Served) -> None:
    # The newest event is on page 1 of every feed that holds it.
    newest = (await served.store.events_page(limit=1))[0].event
    before = await feed_etags(served)
    assert await feed_etags(served) == before  # stable while nothing changes

    day = newest.id.rsplit("/", 1)[0]
    page = served.archive / "news" / f"{newest.id}.md"
    text = page.read_text(encoding="utf-8")
    page.write_text(text.replace(newest.title[:40], "Revised: " + newest.title[:40], 1))
    served.clock.advance(3600)
    result = await served.ingestor.poll(days={day})
    assert result.updated == 1
    assert result.changed_topics == set(newest.topic_slugs)
    served.cache.invalidate(result.changed_topics)

    after = await feed_etags(served)
    changed = {slug for slug in before if before[slug] != after[slug]}
    assert changed == {None, *newest.topic_slugs}
    feed = feedparser.parse((await served.get(feed_path(newest.topic_slugs[0]))).body)
    assert feed.entries[0].title.startswith("Revised: ")


async def test_concurrent_requests_after_invalidation_render_once(served: Served) -> None:
    path = "/feeds/topics/islamabad.atom"
    await served.get(path)
    served.cache.invalidate({"islamabad"})
    reads: list[object] = []
    events_page = served.store.events_page

    async def counted(*args: Any, **kwargs: Any) -> list[StoredEvent]:
        reads.append(args)
        return await events_page(*args, **kwargs)

    served.store.events_page = counted  # type: ignore[method-assign]
    replies = await asyncio.gather(*(served.get(path) for _ in range(20)))
    assert {r.status for r in replies} == {200}
    assert len({r.body for r in replies}) == 1
    assert len(reads) == 1


async def test_invalidation_during_a_render_is_not_lost(served: Served) -> None:
    cache = served.cache
    started, release = asyncio.Event(), asyncio.Event()
    events_page = served.store.events_page

    async def slow_events_page(*args: Any, **kwargs: Any) -> list[StoredEvent]:
        started.set()
        await release.wait()
        return await events_page(*args, **kwargs)

    served.store.events_page = slow_events_page  # type: ignore[method-assign]
    try:
        render = asyncio.create_task(cache.feed("islamabad"))
        await asyncio.wait_for(started.wait(), PATIENCE)
        cache.invalidate({"islamabad"})  # the store changed while it was read
        release.set()
        await asyncio.wait_for(render, PATIENCE)
    finally:
        served.store.events_page = events_page  # type: ignore[method-assign]
    renders = cache.stats.renders
    await cache.feed("islamabad")
    assert cache.stats.renders > renders  # the stale render was not kept


async def test_the_cache_is_bounded_least_recently_used_first(served: Served) -> None:
    one = await served.cache.feed("islamabad")
    cache = FeedCache(served.store, BASE, page_size=PAGE_SIZE, max_bytes=int(one.size * 2.5))
    await cache.feed("islamabad")
    await cache.feed("brexit")
    await cache.feed("islamabad")  # now the most recently used
    await cache.feed("india")
    assert cache.size <= cache.max_bytes
    renders = cache.stats.renders
    await cache.feed("islamabad")
    assert cache.stats.renders == renders  # kept
    await cache.feed("brexit")
    assert cache.stats.renders == renders + 1  # evicted first


async def test_searches_are_kept_up_to_a_count_and_forgotten_on_any_change(
    served: Served,
) -> None:
    cache = FeedCache(served.store, BASE, page_size=PAGE_SIZE, max_searches=2)
    await cache.feed("islamabad")
    kept = len(cache)  # the topic feed and the topic list it was named from
    queries = [SearchQuery.parse(q) for q in ("mosque", "siege", "attacks")]
    for query in queries:
        await cache.search_feed(query)
    assert len(cache) == kept + 2  # and the two latest searches
    renders = cache.stats.renders
    await cache.search_feed(queries[2])
    await cache.search_feed(queries[1])
    await cache.feed("islamabad")
    assert cache.stats.renders == renders
    await cache.search_feed(queries[0])
    assert cache.stats.renders == renders + 1  # pushed out by the others

    # A new event may match any search: a change to any topic drops them all.
    cache.invalidate({"brexit"})
    await cache.feed("islamabad")
    assert cache.stats.renders == renders + 1
    await cache.search_feed(queries[0])
    assert cache.stats.renders == renders + 2


async def test_refresh_renders_the_hot_documents_again(served: Served) -> None:
    await served.cache.feed("islamabad")
    await served.cache.feed("islamabad", FeedFormat.RSS)
    await served.cache.feed("brexit")
    await served.cache.topics_page()
    assert await served.cache.refresh({"islamabad"}) == 3  # two feeds, the topic list
    renders = served.cache.stats.renders
    await served.cache.feed("islamabad")
    await served.cache.feed("brexit")
    assert served.cache.stats.renders == renders


async def test_same_data_same_bytes(served: Served, tmp_path: Path) -> None:
    other = FeedCache(served.store, BASE, page_size=PAGE_SIZE)
    for slug in (None, "islamabad"):
        for fmt in FeedFormat:
            mine = await served.cache.feed(slug, fmt)
            theirs = await other.feed(slug, fmt)
            assert (mine.body, mine.etag, mine.gzip_body) == (
                theirs.body,
                theirs.etag,
                theirs.gzip_body,
            )
    with pytest.raises(UnknownTopic):
        await other.feed("no-such-topic")
    with pytest.raises(PageOutOfRange):
        await other.feed("islamabad", FeedFormat.ATOM, 99)


# -- paging ----------------------------------------------------------------------


async def test_walking_next_visits_every_event_of_a_topic_once(served: Served) -> None:
    slug, count = max(await served.topics(), key=lambda t: t[1])
    assert count > 2 * PAGE_SIZE
    expected = [e.event.id for e in await served.store.events_page(slug, limit=1000)]
    for fmt in ("atom", "rss"):
        seen: list[str] = []
        path: str | None = feed_path(slug, fmt)
        pages = 0
        while path is not None:
            reply = await served.get(path)
            assert reply.status == 200
            parsed = feedparser.parse(reply.body)
            assert parsed.bozo == 0
            seen += [entry.link.removeprefix(f"{BASE}/events/") for entry in parsed.entries]
            links = {link.rel: link.href for link in parsed.feed.links}
            assert links["first"] == f"{BASE}{feed_path(slug, fmt)}"
            path = None
            if "next" in links:
                assert links["next"].startswith(BASE)
                parts = urlsplit(links["next"])
                path = f"{parts.path}?{parts.query}"
            pages += 1
        assert seen == expected, fmt
        assert pages == -(-count // PAGE_SIZE)


async def test_json_feed_pages_through_next_url(served: Served) -> None:
    total = await served.store.count_events()
    seen = 0
    path: str | None = "/feeds/all.json"
    while path is not None:
        document = json.loads((await served.get(path)).body)
        seen += len(document["items"])
        next_url = document.get("next_url")
        path = None if next_url is None else next_url.removeprefix(BASE)
    assert seen == total


async def test_pages_out_of_range_or_malformed(served: Served) -> None:
    total = await served.store.count_events()
    last = -(-total // PAGE_SIZE)
    assert (await served.get(f"/feeds/all.atom?page={last}")).status == 200
    assert (await served.get(f"/feeds/all.atom?page={last + 1}")).status == 404
    assert (await served.get("/feeds/all.atom?page=0")).status == 404
    assert (await served.get("/feeds/topics/islamabad.rss?page=9999")).status == 404
    for bad in ("abc", "-1", "1.5", "", "99999999999999999999"):
        assert (await served.get(f"/feeds/all.atom?page={bad}")).status == 400, bad
    explicit = await served.get("/feeds/all.atom?page=1")
    assert explicit.body == (await served.get("/feeds/all.atom")).body


# -- bad input ---------------------------------------------------------------------


async def test_unknown_topic_is_a_404_naming_the_closest_topics(served: Served) -> None:
    reply = await served.get("/feeds/topics/islamabd.atom")
    assert reply.status == 404
    assert "islamabd" in reply.text
    assert f"{BASE}/feeds/topics/islamabad.atom" in reply.text
    by_name = await served.get("/feeds/topics/mumbai-attacks.rss")
    assert by_name.status == 404
    assert "2008-mumbai-attacks" in by_name.text
    nothing = await served.get("/feeds/topics/zzzzzzzz.json")
    assert nothing.status == 404 and "Closest" not in nothing.text


async def test_the_closest_topics_of_a_slug_are_searched_again_only_when_the_list_changed(
    served: Served,
) -> None:
    searches: list[int] = []
    chunks = served.store.topic_list.chunks

    def counted(size: int) -> AsyncIterator[list[TopicCount]]:
        searches.append(size)
        return chunks(size)

    served.store.topic_list.chunks = counted  # type: ignore[method-assign]
    first = await served.get("/feeds/topics/islamabd.atom")
    for path in ("/feeds/topics/islamabd.rss", "/topics/islamabd"):
        assert (await served.get(path)).text == first.text
    assert len(searches) == 1  # the same unknown slug, the same list
    assert (await served.get("/feeds/topics/islamabadd.atom")).status == 404
    assert len(searches) == 2
    await add_topics(served, 1)  # the list changed: counts may have moved
    again = await served.get("/feeds/topics/islamabd.atom")
    assert len(searches) == 3 and again.text == first.text


BAD_PATHS = [
    "/feeds/topics/..%2F..%2Fetc%2Fpasswd.atom",
    "/feeds/topics/%2e%2e%2f%2e%2e%2fetc%2fpasswd.atom",
    "/feeds/topics/..%5C..%5Cwindows.rss",
    "/feeds/topics/../../etc/passwd.atom",
    "/feeds/topics/UPPER.atom",
    "/feeds/topics/islamabad%00.atom",
    "/feeds/topics/islamabad.atom%00.json",
    "/feeds/topics/-islamabad.atom",
    "/feeds/topics/islamabad--x.atom",
    "/feeds/topics/islamabad.xml",
    "/feeds/topics/islamabad",
    "/feeds/topics/.atom",
    "/feeds/topics/%C3%A9t%C3%A9.atom",
    "/feeds/topics/%ff%fe.atom",
    "/feeds/topics/" + "a" * 5000 + ".atom",
    "/feeds/topics/" + "-".join(["ab"] * 2000) + ".atom",
    "/feeds/all.xml",
    "/events/" + "x/" * 3000,
    "/events/..%2F..%2Fetc%2Fpasswd",
    "/events/2007/07/9/no-such-event",
]


async def test_bad_paths_are_404_never_500(served: Served) -> None:
    for path in BAD_PATHS:
        reply = await served.get(path)
        assert reply.status == 404, (path[:80], reply.text[:200])
        assert "Traceback" not in reply.text


async def test_an_unexpected_error_is_a_plain_500(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("secret internal detail")

    served.cache.feed = broken  # type: ignore[method-assign]
    reply = await served.get("/feeds/all.atom")
    assert reply.status == 500
    assert "Traceback" not in reply.text and "secret" not in reply.text
    assert "RuntimeError" not in reply.text
    assert any("secret internal detail" in (r.exc_text or "") for r in caplog.records)


HOSTILE = "<script>alert(1)</script> \x00\x07\x1b \ufffe ]]> & \x85 Tōhoku <!-- x"


async def add_hostile_event(served: Served) -> Event:
    """An event as hostile as the store can hold: parsing is not the only way in."""
    event = Event(
        id="2030/01/1/hostile",
        date=date(2030, 1, 1),
        story="Evil <b onmouseover=alert(2)>story</b>\x01",
        title=HOSTILE,
        sources=(
            Source("<script>alert(3)</script>", "javascript:alert(4)"),
            Source("Fine \x0c source", "https://example.org/ok?a=1&b=<2>"),
        ),
        related=(
            Related(
                id="2007/07/9/not-in-the-store",
                date=date(2007, 7, 9),
                title='"><script>alert(5)</script>',
                contexts=("<img src=x onerror=alert(6)>", "Islamabad"),
                kind=RelatedKind.BACKGROUND,
            ),
        ),
        topics=(
            Topic(
                "Evil <b onmouseover=alert(2)>story</b>\x01", "evil-b-onmouseover-alert-2-story-b"
            ),
            Topic("<img src=x onerror=alert(6)>", "img-src-x-onerror-alert-6"),
            Topic.named("Islamabad"),
        ),
    )
    await served.store.write_batch(
        new=[EventRecord.of(event)],
        changed=[],
        marks_={},
        rejected={},
        accepted_paths=[],
        now=served.clock(),
    )
    served.cache.invalidate(set(event.topic_slugs))
    return event


async def test_hostile_text_gives_well_formed_xml_and_no_live_script(served: Served) -> None:
    event = await add_hostile_event(served)
    for slug in (None, *event.topic_slugs):
        for fmt in ("atom", "rss"):
            reply = await served.get(feed_path(slug, fmt))
            assert reply.status == 200
            root = ET.fromstring(reply.body)  # well-formed, or this raises
            assert not XML_FORBIDDEN.search(reply.text)
            parsed = feedparser.parse(reply.body)
            assert parsed.bozo == 0
            entry = parsed.entries[0]
            assert entry.link == f"{BASE}/events/2030/01/1/hostile"
            content = entry.content[0].value if fmt == "atom" else entry.description
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content  # shown, as text
            assert live_markup(content) == []
            assert root is not None
        document = json.loads((await served.get(feed_path(slug, "json"))).body)
        assert live_markup(document["items"][0]["content_html"]) == []


async def test_hostile_text_on_the_event_and_topic_pages_is_inert(served: Served) -> None:
    await add_hostile_event(served)
    page = await served.get("/events/2030/01/1/hostile")
    assert page.status == 200
    html = page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert live_markup(html) == []
    assert "javascript:" not in html
    assert not XML_FORBIDDEN.search(html)
    assert "script-src" in page.headers["Content-Security-Policy"]
    topics = await served.get("/topics")
    assert live_markup(topics.text) == ["script"]  # the filter box only


async def test_topics_page(served: Served) -> None:
    reply = await served.get("/topics")
    html = reply.text
    counts = await served.store.topic_counts()
    positions = [html.index(f'<tr id="{c.topic.slug}"') for c in counts]
    assert positions == sorted(positions)  # most recently active first
    for count in counts[:3]:
        row = html[html.index(f'<tr id="{count.topic.slug}"') :].split("</tr>")[0]
        assert f'<td class="n">{count.events}</td>' in row
        assert f'<a href="{BASE}/topics/{count.topic.slug}">' in row
        for fmt in FORMATS:
            assert f'href="{BASE}/feeds/topics/{count.topic.slug}.{fmt}"' in row
    assert (
        f'<link rel="alternate" type="application/atom+xml" title="All events" '
        f'href="{BASE}/feeds/all.atom">' in html
    )
    assert 'id="filter"' in html
    assert f'href="{BASE}/topics.opml"' in html
    # The inline script is allowed by its hash, and nothing else is.
    script = re.search(r"<script>(.*?)</script>", html, re.S)
    assert script is not None
    digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
    assert f"'sha256-{digest}'" in reply.headers["Content-Security-Policy"]


# -- the topic list: paged, filtered ------------------------------------------------

_ROW = re.compile(r'<tr id="([^"]+)"')
_NEXT = re.compile(r'<a href="([^"]+)" rel="next">')


async def add_topics(served: Served, count: int) -> list[str]:
    """``count`` more topics, each with one event (dated after the sample's),
    three events of ``count // 3`` topics each; their slugs."""
    names = [f"Zebra crossing {n:03d}" for n in range(count)]
    per = -(-count // 3)
    events = [
        Event(
            id=f"2030/01/{day}/crossings",
            date=date(2030, 1, day),
            story=None,
            title=f"Crossings {day}",
            topics=tuple(Topic.named(name) for name in names[(day - 1) * per : day * per]),
        )
        for day in (1, 2, 3)
    ]
    result = await served.store.write_batch(
        new=[EventRecord.of(e) for e in events],
        changed=[],
        marks_={},
        rejected={},
        accepted_paths=[],
        now=served.clock(),
    )
    served.cache.invalidate(result.topics)
    return [Topic.named(name).slug for name in names]


async def walk_topics(served: Served, path: str) -> list[list[str]]:
    """The rows of every page of the list from ``path`` on, following its pager."""
    pages: list[list[str]] = []
    next_path: str | None = path
    while next_path is not None:
        reply = await served.get(next_path)
        assert reply.status == 200, (next_path, reply.text[:200])
        pages.append(_ROW.findall(reply.text))
        found = _NEXT.search(reply.text)
        next_path = found.group(1).replace("&amp;", "&").removeprefix(BASE) if found else None
        assert len(pages) < 20
    return pages


async def test_the_topic_list_is_paged_most_recently_active_first(served: Served) -> None:
    await add_topics(served, 450)
    counts = await served.store.topic_counts()
    assert len(counts) == 450 + 61
    pages = await walk_topics(served, "/topics")
    assert [len(page) for page in pages] == [200, 200, 111]
    assert [slug for page in pages for slug in page] == [c.topic.slug for c in counts]
    first, last = await served.get("/topics"), await served.get("/topics?page=3")
    assert "511 topics, most recently active first, page 1 of 3." in first.text
    assert 'rel="prev"' not in first.text and 'rel="next"' not in last.text
    assert f'<a href="{BASE}/topics?page=2" rel="prev">' in last.text
    assert "<h1>Topics, page 3</h1>" in last.text
    # Feed links and autodiscovery for every topic on the page shown, no other.
    head = last.text.split("</head>")[0]
    discovered = re.findall(
        rf'type="application/atom\+xml" title="[^"]*" href="{BASE}/feeds/topics/([^".]+)\.atom"',
        head,
    )
    assert discovered == pages[2]
    assert (await served.get("/topics?page=1")).body == first.body
    for bad, status in (("4", 404), ("0", 404), ("x", 400), ("-1", 400), ("1e3", 400)):
        reply = await served.get(f"/topics?page={bad}")
        assert reply.status == status, bad
    # A new event's topic goes first at once.
    await served.store.write_batch(
        new=[
            EventRecord.of(
                Event(
                    "2031/01/1/x",
                    date(2031, 1, 1),
                    None,
                    "x",
                    topics=(Topic.named("Abdul Aziz Ghazi"),),
                )
            )
        ],
        changed=[],
        marks_={},
        rejected={},
        accepted_paths=[],
        now=served.clock(),
    )
    served.cache.invalidate({"abdul-aziz-ghazi"})
    assert _ROW.findall((await served.get("/topics")).text)[0] == "abdul-aziz-ghazi"


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("tohoku", ["2011-tohoku-earthquake-and-tsunami", "tohoku"]),  # accents aside
        ("Tōhoku EARTH", ["2011-tohoku-earthquake-and-tsunami"]),  # every word, case aside
        ("egypt", ["egypt", "egyptian-revolution-of-2011"]),  # word beginnings
        ("fuk pref", ["fukushima-prefecture"]),
        ("ptian", []),  # not inside a word
        ("grimsvotn", ["grimsvotn"]),
    ],
)
async def test_the_topic_list_filters_by_the_words_of_names(
    served: Served, q: str, expected: list[str]
) -> None:
    reply = await served.get(f"/topics?q={quote(q)}")
    assert reply.status == 200
    assert _ROW.findall(reply.text) == expected  # in list order
    words = " ".join(words_of(q))
    assert f'value="{words}"' in reply.text  # the box holds the filter
    shown = "topic" if len(expected) == 1 else "topics"
    assert f"{len(expected)} {shown} match “{words}”" in reply.text
    assert (await served.get(f"/topics?q={quote(q)}")).body == reply.body


async def test_a_filtered_list_pages_with_its_filter(served: Served) -> None:
    slugs = await add_topics(served, 450)
    pages = await walk_topics(served, "/topics?q=zebra+CROSS")
    assert [len(page) for page in pages] == [200, 200, 50]
    assert sorted(slug for page in pages for slug in page) == sorted(slugs)
    second = await served.get("/topics?q=zebra+cross&page=2")
    assert f'href="{BASE}/topics?q=zebra%20cross" rel="prev"' in second.text
    assert f'href="{BASE}/topics?q=zebra%20cross&amp;page=3" rel="next"' in second.text
    assert (await served.get("/topics?q=zebra&page=4")).status == 404
    assert (await served.get("/topics?q=nothing-has-this")).status == 200
    assert (await served.get("/topics?q=nothing-has-this&page=2")).status == 404
    # No words is no filter; a filter no query could be is refused.
    assert _ROW.findall((await served.get("/topics?q=%21%21")).text) == _ROW.findall(
        (await served.get("/topics")).text
    )
    too_long = await served.get("/topics?q=" + "a" * 201)
    assert too_long.status == 400 and "q:" in too_long.text
    assert (await served.get("/topics?q=" + "+".join("abcdefghijklm"))).status == 400


async def test_a_new_page_refreshes_its_topics_and_reads_no_whole_list(served: Served) -> None:
    """Ingestion tells the cache which topics changed; the first feed, topic page
    and list page after it read those topics alone, never the whole list."""
    await served.get("/feeds/topics/islamabad.atom")
    await served.get("/topics/islamabad")

    async def whole_list(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the whole topic list was read")

    store = served.store
    store.topic_counts = whole_list  # type: ignore[method-assign]
    store.topic_list.every = whole_list  # type: ignore[method-assign]
    store.topic_list.chunks = whole_list  # type: ignore[method-assign]
    event = Event(
        "2031/01/1/new",
        date(2031, 1, 1),
        None,
        "A new page",
        topics=(Topic.named("Islamabad"), Topic.named("Brand new topic")),
    )
    result = await store.write_batch(
        new=[EventRecord.of(event)],
        changed=[],
        marks_={},
        rejected={},
        accepted_paths=[],
        now=served.clock(),
    )
    served.cache.invalidate(result.topics)
    feed = feedparser.parse((await served.get("/feeds/topics/islamabad.atom")).body)
    assert feed.entries[0].title == "A new page"
    page = await served.get("/topics/islamabad")
    assert "9 events, the latest on" in page.text
    new = await served.get("/feeds/topics/brand-new-topic.json")
    assert [item["title"] for item in new.json["items"]] == ["A new page"]
    listing = await served.get("/topics")
    assert _ROW.findall(listing.text)[:2] == ["brand-new-topic", "islamabad"]


async def test_opml_lists_every_topic_feed(served: Served) -> None:
    reply = await served.get("/topics.opml")
    outlines = ET.fromstring(reply.body).findall("./body/outline")
    topics = sorted(await served.topics())  # by slug: an order no write moves
    assert [o.get("xmlUrl") for o in outlines] == [
        f"{BASE}/feeds/topics/{slug}.atom" for slug, _ in topics
    ]
    assert all(
        o.get("htmlUrl") == f"{BASE}/topics/{s}" and o.get("description") == f"{n} events"
        for o, (s, n) in zip(outlines, topics, strict=True)
        if n > 1
    )


async def test_the_opml_is_streamed_in_both_codings_under_the_list_version(
    served: Served,
) -> None:
    plain = await served.get("/topics.opml")
    assert plain.status == 200
    assert plain.headers["Transfer-Encoding"] == "chunked"
    assert plain.headers["Content-Type"] == "text/x-opml; charset=utf-8"
    assert plain.headers["Cache-Control"] == "public, max-age=300"
    counts = sorted(await served.store.topic_counts(), key=lambda c: c.topic.slug)
    assert plain.body == render_opml([(c.topic, c.events) for c in counts], BASE)
    packed = await served.get("/topics.opml", **{"Accept-Encoding": "gzip"})
    assert packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.body) == plain.body
    tag, gzip_tag = plain.headers["ETag"], packed.headers["ETag"]
    assert gzip_tag == tag[:-1] + '-gzip"'
    for held in (tag, gzip_tag):  # either coding's tag names the same list
        again = await served.get("/topics.opml", **{"If-None-Match": held})
        assert again.status == 304 and again.body == b""
        assert again.headers["ETag"] == tag
    # A change that leaves every topic as it was keeps the tag; one that moves a
    # count changes it.
    newest = (await served.store.events_page(limit=1))[0].event
    await served.store.write_batch(
        new=[],
        changed=[EventRecord.of(replace(newest, title="Reworded"))],
        marks_={},
        rejected={},
        accepted_paths=[],
        now=served.clock(),
    )
    assert (await served.get("/topics.opml")).headers["ETag"] == tag
    await add_topics(served, 3)
    changed = await served.get("/topics.opml", **{"If-None-Match": tag})
    assert changed.status == 200 and changed.headers["ETag"] != tag
    assert len(ET.fromstring(changed.body).findall("./body/outline")) == len(counts) + 3


async def test_the_opml_is_read_a_chunk_of_topics_at_a_time(served: Served) -> None:
    slugs = await add_topics(served, 30)
    reads: list[str | None] = []
    after = served.store.topic_list.after

    async def counted(slug: str | None, limit: int) -> list[TopicCount]:
        reads.append(slug)
        return await after(slug, limit)

    served.store.topic_list.after = counted  # type: ignore[method-assign]
    pieces = [piece async for piece in opml_chunks(served.store, BASE, chunk=25)]
    assert len(reads) == 4 == len(pieces) - 2  # 91 topics: 25 + 25 + 25 + 16
    assert reads[0] is None and reads[1:] == sorted(reads[1:])
    body = b"".join(pieces)
    listed = [o.get("xmlUrl") for o in ET.fromstring(body).findall("./body/outline")]
    assert len(listed) == len(set(listed)) == 61 + len(slugs)


async def test_an_opml_cut_short_by_the_store_is_never_a_whole_document(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise StorageError("store gone")

    served.store.topic_list.after = broken  # type: ignore[method-assign]
    url = URL(served.server.url + "/topics.opml", encoded=True)
    with pytest.raises(aiohttp.ClientPayloadError):
        async with served.session.get(url) as response:
            assert response.status == 200  # the headers went before the failure
            await response.read()
    assert any("store gone" in (r.exc_text or r.getMessage()) for r in caplog.records)


async def test_an_empty_store_has_an_opml_of_the_every_event_feed(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 'feedbot.db'}")
    server = WebServer(settings(), store, FeedCache(store, BASE))
    await server.start()
    try:
        body = await fetch(server.url + "/topics.opml")
        (outline,) = ET.fromstring(body).findall("./body/outline")
        assert outline.get("xmlUrl") == f"{BASE}/feeds/all.atom"
        page = (await fetch(server.url + "/topics")).decode()
        assert "0 topics, most recently active first." in page and "<table" not in page
    finally:
        await server.stop()
        await store.close()


async def test_event_page(served: Served) -> None:
    stored = next(
        s
        for s in await served.store.events_page(limit=1000)
        if s.event.follow_ups() and s.event.background()
    )
    event = stored.event
    reply = await served.get(f"/events/{event.id}")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
    html = reply.text
    for related in event.related:
        assert f'href="{BASE}/events/{related.id}"' in html
    for source in event.sources:
        assert f'href="{source.url}"' in html
    for topic in event.topics:
        for fmt in FORMATS:
            assert f'href="{BASE}/feeds/topics/{topic.slug}.{fmt}"' in html
    assert "<h2>Follow-ups</h2>" in html and "<h2>Background</h2>" in html
    again = await served.get(f"/events/{event.id}", **{"If-None-Match": reply.headers["ETag"]})
    assert again.status == 304


@pytest.mark.parametrize(
    ("header", "gzip_ok"),
    [
        ("", False),
        ("gzip", True),
        ("GZIP", True),
        ("x-gzip", True),
        ("deflate, gzip;q=1.0, *;q=0.5", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("*", True),
        ("*;q=0", False),
        ("br;q=1, identity", False),
        ("gzip;q=bogus", False),
    ],
)
def test_accept_encoding(header: str, gzip_ok: bool) -> None:
    assert accepts_gzip(header) is gzip_ok


async def test_the_server_reports_its_port_and_stops_twice(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 'feedbot.db'}")
    server = WebServer(settings(), store, FeedCache(store, BASE))
    with pytest.raises(RuntimeError):
        _ = server.port
    await server.start()
    try:
        assert server.port > 0
        with pytest.raises(RuntimeError):
            await server.start()
        assert await fetch(server.url + "/healthz") == b"ok\n"
        empty = feedparser.parse(await fetch(server.url + "/feeds/all.atom"))
        assert empty.bozo == 0 and empty.entries == []  # an empty store, a valid feed
    finally:
        await server.stop()
        await server.stop()
        await store.close()


async def fetch(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return await response.read()
