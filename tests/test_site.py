"""The site people browse, search and subscribe from, on a real daemon: the latest
events, topic pages, search (HTML and feeds), event pages and feeds a browser
renders through their XSLT -- once over SQLite and once over PostgreSQL.

One ``feedbot run`` per backend serves a copy of the sample archive, plus one page
the test writes into it (dated the test's own day) that continues the seed event.
What each page must list is worked out from the archive's pages with the parser
(the oracle), or from the feed of the same events (the order of equal dates is
the store's to decide, and the feed and the page must agree on it).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import pytest_asyncio
from lxml import etree

from feedbot.archive.parse import parse_page
from feedbot.model import Event
from feedbot.search import SearchQuery, search_document
from tests.conftest import PG_URL, copy_sample_archive, reset_postgres, write_page
from tests.daemons import Daemon, day_key, feedbot_run, until_async, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SEED_ID = (
    "2007/07/9/lal-masjid-siege-an-attempt-to-negotiate-a-peaceful-end-to-the-seven-day-"
    "standoff-at-islamabad-s-red-mosque-ends-without-any-progress"
)
MARKER = "Quokkaquest"  # a word no sample page holds
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
_EVENT_LINK = re.compile(r'<h3><a href="([^"]+)">')


@dataclass
class Site:
    daemon: Daemon
    session: aiohttp.ClientSession
    events: dict[str, Event]  # the archive's pages, parsed: the oracle
    later_id: str  # the page the test wrote

    @property
    def url(self) -> str:
        return self.daemon.url

    async def get(self, path: str, **headers: str) -> tuple[int, Any, str]:
        async with self.session.get(self.url + path, headers=headers) as response:
            return response.status, response.headers, await response.text()

    async def json_feed(self, path: str) -> list[str]:
        """Every event id of a JSON feed, following its pages."""
        ids: list[str] = []
        url: str | None = self.url + path
        while url is not None:
            async with self.session.get(url) as response:
                assert response.status == 200, (url, await response.text())
                document = await response.json(content_type=None)
            ids += [item["_feedbot"]["event_id"] for item in document["items"]]
            url = document.get("next_url")
        return ids


def parse_archive(root: Path) -> dict[str, Event]:
    pages = sorted(p for p in (root / "news").rglob("*.md") if p.name != "index.md")
    events = [parse_page(p.read_bytes(), p.relative_to(root).as_posix()) for p in pages]
    return {event.id: event for event in events}


def holds(event: Event, query: SearchQuery) -> bool:
    document = search_document(
        event.title,
        event.story,
        (t.name for t in event.topics),
        (s.name for s in event.sources),
    ).split()
    in_topics = not query.topics or bool(set(query.topics) & set(event.topic_slugs))
    return in_topics and all(word in document for word in query.words)


def event_links(html: str) -> list[str]:
    return [unescape(href) for href in _EVENT_LINK.findall(html)]


@pytest_asyncio.fixture(
    scope="module",
    loop_scope="module",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
async def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Site]:
    root = tmp_path_factory.mktemp(f"site-{request.param}")
    archive = copy_sample_archive(root / "archive")
    config = write_config(root, archive)
    if request.param == "postgresql":
        reason = await reset_postgres()
        if reason is not None:
            pytest.skip(reason)
        text = config.read_text(encoding="utf-8")
        sqlite_url = f"sqlite:///{root / 'daemon.db'}"
        config.write_text(text.replace(f'"{sqlite_url}"', f'"{PG_URL}"'), encoding="utf-8")
    async with feedbot_run(config) as daemon, aiohttp.ClientSession() as session:
        await daemon.first_poll(session)
        await daemon.watching(session)
        today = datetime.now(UTC).date()
        slug = "quokkaquest-talks-resume"
        write_page(
            archive,
            day_key(today),
            slug,
            f"Lal Masjid siege: {MARKER} talks resume years after the siege.",
            story="Lal Masjid siege",
            related=[(SEED_ID, "The talks at the Red Mosque", ["background"])],
        )
        found = Site(daemon, session, parse_archive(archive), f"{day_key(today)}/{slug}")

        async def ingested() -> bool:
            return found.later_id in await found.json_feed(f"/feeds/search.json?q={MARKER}")

        await until_async(ingested, what="the written page in the search feed")
        yield found


# -- the latest events ------------------------------------------------------------


async def test_home_lists_the_latest_events_paged_as_the_feed_of_every_event(
    site: Site,
) -> None:
    every = await site.json_feed("/feeds/all.json")
    assert every[0] == site.later_id
    assert set(every) == set(site.events)
    status, headers, html = await site.get("/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    shown = event_links(html)
    assert shown == [f"{site.url}/events/{quote(i, safe='/')}" for i in every[:50]]
    # A search box, the feeds of every event (and their autodiscovery), the OPML.
    assert 'action="' + site.url + '/search"' in html
    for fmt in ("atom", "rss", "json"):
        assert f'href="{site.url}/feeds/all.{fmt}"' in html
    assert (
        f'<link rel="alternate" type="application/atom+xml" title="All events" href="{site.url}/feeds/all.atom">'
        in html
    )
    assert f'href="{site.url}/topics.opml"' in html
    # Each event: its date and its topics, linking to their pages.
    newest = site.events[site.later_id]
    assert f'<time datetime="{newest.date.isoformat()}">' in html
    assert f'<a href="{site.url}/topics/lal-masjid-siege">Lal Masjid siege</a>' in html

    status, _, second = await site.get("/?page=2")
    assert status == 200
    assert event_links(second) == [f"{site.url}/events/{quote(i, safe='/')}" for i in every[50:100]]
    assert f'href="{site.url}/" rel="prev"' in second or f'href="{site.url}/?page=1"' in second
    assert (await site.get("/?page=99"))[0] == 404
    assert (await site.get("/?page=two"))[0] == 400


# -- topics -----------------------------------------------------------------------


async def test_a_topic_page_lists_its_events_feeds_and_related_topics(site: Site) -> None:
    slug = "lal-masjid-siege"
    ids = await site.json_feed(f"/feeds/topics/{slug}.json")
    assert ids == sorted(ids, key=lambda i: site.events[i].date, reverse=True)
    assert {i for i, e in site.events.items() if slug in e.topic_slugs} == set(ids)
    status, _, html = await site.get(f"/topics/{slug}")
    assert status == 200
    assert event_links(html) == [f"{site.url}/events/{quote(i, safe='/')}" for i in ids[:50]]
    atom = f"{site.url}/feeds/topics/{slug}.atom"
    # Autodiscovery of each format, and the one line to paste into a reader.
    for kind, fmt in (("atom+xml", "atom"), ("rss+xml", "rss"), ("feed+json", "json")):
        assert re.search(
            rf'<link rel="alternate" type="application/{re.escape(kind)}" title="[^"]*" '
            rf'href="{re.escape(site.url)}/feeds/topics/{slug}\.{fmt}">',
            html,
        )
    subscribe = re.search(r'<p id="subscribe">(.*?)</p>', html, re.S)
    assert subscribe is not None and atom in subscribe.group(1)
    # Related: the topic that most often appears with it, linked to its page.
    together: dict[str, int] = {}
    for event_id in ids:
        for other in site.events[event_id].topic_slugs:
            if other != slug:
                together[other] = together.get(other, 0) + 1
    top = max(together, key=lambda other: (together[other], [-ord(c) for c in other]))
    related = html[html.index("Related topics") :]
    assert f'href="{site.url}/topics/{top}"' in related
    # The topic list links here.
    _, _, topics = await site.get("/topics")
    assert f'<a href="{site.url}/topics/{slug}">' in topics

    status, _, text = await site.get("/topics/lal-masjid-seige")
    assert status == 404
    assert "lal-masjid-siege" in text
    assert (await site.get("/topics/Not_A_Slug"))[0] == 404


# -- search -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "topics"),
    [
        ("mosque", ()),
        ("Red MOSQUE", ()),  # case folded, all words
        ("attacks", ("2008-mumbai-attacks",)),
        ("Tōhoku", ()),  # diacritics folded
        (MARKER, ()),
    ],
)
async def test_a_search_feed_holds_every_event_with_all_the_words_newest_first(
    site: Site, q: str, topics: tuple[str, ...]
) -> None:
    query = SearchQuery.parse(q, topics)
    expected = {i for i, event in site.events.items() if holds(event, query)}
    assert expected, "the oracle finds nothing: pick another query"
    params = f"q={quote(q)}" + "".join(f"&topic={t}" for t in topics)
    found = await site.json_feed(f"/feeds/search.json?{params}")
    assert set(found) == expected
    assert len(found) == len(expected)
    dates = [site.events[i].date for i in found]
    assert dates == sorted(dates, reverse=True)
    for fmt in ("atom", "rss"):
        status, headers, body = await site.get(f"/feeds/search.{fmt}?{params}")
        assert status == 200
        assert headers["Content-Type"] == f"application/{fmt}+xml; charset=utf-8"
        assert '<?xml-stylesheet type="text/xsl"' in body
    # And as a page, which offers the feed of the query.
    status, _, html = await site.get(f"/search?{params}")
    assert status == 200
    assert len(event_links(html)) == min(len(expected), 50)
    subscribe = re.search(r'<p id="subscribe">(.*?)</p>', html, re.S)
    assert subscribe is not None
    assert f"{site.url}/feeds/search.atom?q=" in unescape(subscribe.group(1))


async def test_a_search_feed_has_one_id_per_normalised_query_and_answers_304(
    site: Site,
) -> None:
    def feed_id(body: bytes) -> str:
        return str(etree.fromstring(body).findtext("{http://www.w3.org/2005/Atom}id"))

    bodies = []
    for path in (
        "/feeds/search.atom?q=red+mosque",
        "/feeds/search.atom?q=%20Red%20%20MOSQUE!",
        "/feeds/search.atom?q=mosque+red",
        "/feeds/search.atom?q=red+mosque&topic=lal-masjid-siege",
    ):
        async with site.session.get(site.url + path) as response:
            assert response.status == 200
            bodies.append((await response.read(), response.headers["ETag"]))
    ids = [feed_id(body) for body, _ in bodies]
    assert ids[0] == ids[1]
    assert len({ids[0], ids[2], ids[3]}) == 3
    async with site.session.get(
        site.url + "/feeds/search.atom?q=red+mosque", headers={"If-None-Match": bodies[0][1]}
    ) as response:
        assert response.status == 304


@pytest.mark.parametrize(
    ("q", "reason"),
    [
        ("", "the query is empty"),
        ("   ", "the query is empty"),
        ("x" * 201, "longer than 200 characters"),
        ("!!! ???", "no letters or digits"),
    ],
)
async def test_a_query_that_cannot_run_is_a_400_that_says_why(
    site: Site, q: str, reason: str
) -> None:
    status, headers, html = await site.get(f"/search?q={quote(q)}")
    assert status == 400
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert reason in html
    assert '<input type="search" id="q"' in html  # the form, to try again
    status, _, text = await site.get(f"/feeds/search.atom?q={quote(q)}")
    assert status == 400
    assert reason in text
    status, _, text = await site.get("/feeds/search.rss?q=a&topic=Not%20a%20slug")
    assert status == 400
    assert "is not a topic slug" in text


# -- event pages ------------------------------------------------------------------


async def test_an_event_page_lists_the_later_events_that_refer_to_it(site: Site) -> None:
    status, _, html = await site.get(f"/events/{SEED_ID}")
    assert status == 200
    later = html[html.index("Later events that refer to this") :]
    assert f'href="{site.url}/events/{site.later_id}"' in later
    # Its topics link to their pages; follow-ups and background in date order.
    assert f'<a href="{site.url}/topics/lal-masjid-siege">' in html
    for section in ("Follow-ups", "Background"):
        if f"<h2>{section}</h2>" in html:
            items = html.split(f"<h2>{section}</h2>", 1)[1].split("</ul>", 1)[0]
            days = re.findall(r'<time datetime="([0-9-]+)">', items)
            assert days == sorted(days)


# -- feeds in a browser -------------------------------------------------------------


async def test_feeds_name_their_xslt_which_turns_them_into_a_page(site: Site) -> None:
    status, headers, xsl = await site.get("/feed.xsl")
    assert status == 200
    assert headers["Content-Type"].startswith("text/xsl")
    transform = etree.XSLT(etree.fromstring(xsl.encode("utf-8")))
    for path, title in (
        ("/feeds/all.atom", "All events in the archive"),
        ("/feeds/topics/lal-masjid-siege.rss", "Lal Masjid siege"),
    ):
        # A feed reader gets the feed's own type; a browser, XML it applies the XSLT to.
        _, as_reader, body = await site.get(path, Accept="application/atom+xml, */*")
        assert as_reader["Content-Type"].startswith(("application/atom+xml", "application/rss+xml"))
        _, as_browser, same = await site.get(path, Accept=BROWSER)
        assert as_browser["Content-Type"] == "application/xml; charset=utf-8"
        assert "Accept" in as_browser["Vary"]
        assert same == body
        assert f'<?xml-stylesheet type="text/xsl" href="{site.url}/feed.xsl"?>' in body
        page = transform(etree.fromstring(body.encode("utf-8")))
        assert page.getroot().findtext(".//h1") == title
        subscribe = page.getroot().find(".//*[@id='subscribe']")
        assert subscribe is not None
        assert f"{site.url}{path}" in "".join(subscribe.itertext())
    status, headers, _ = await site.get("/site.css")
    assert status == 200
    assert headers["Content-Type"] == "text/css; charset=utf-8"
