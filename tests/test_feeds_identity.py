"""What readers see of event identity (SPEC §6 "Identity"; README: "Identity"):
RFC 6721 tombstones on page 1 of the Atom feeds a removed event was in, for
``feeds.tombstone_days``; ``/events/<alias>`` a 301 to the kept id, a removed
event's page a 410; related links that name an alias lead to the kept event.

Rendering is checked on its own; the rest runs on real stores (every backend)
filled through the store's API, and through the real ingestor, web server and
HTTP over a real archive folder.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import aiohttp
import pytest
from lxml import etree

from feedbot.archive.local import LocalArchiveSource
from feedbot.feeds import FeedFormat, FeedSpec, event_urn, render_feed
from feedbot.feeds.cache import FeedCache, load_feed_page
from feedbot.feeds.spec import Deleted
from feedbot.ingest import Ingestor
from feedbot.model import Event, Related, RelatedKind, Source, StoredEvent, Topic
from feedbot.settings import Settings
from feedbot.store import Moved, Removed, Store
from feedbot.web import WebServer
from tests.conftest import T0, Clock, write_page
from tests.conftest import write_events as write

BASE = "https://feeds.example.org"
ATOM_NS = "http://www.w3.org/2005/Atom"
AT_NS = "http://purl.org/atompub/tombstones/1.0"
T1 = T0 + timedelta(minutes=5)
T2 = T0 + timedelta(minutes=10)
DAYS = 30


def event(event_id: str, *topics: str, related: tuple[str, ...] = ()) -> Event:
    return Event(
        id=event_id,
        date=date(2007, 7, 9),
        story=None,
        title=f"Event {event_id}",
        sources=(Source("Example", f"https://example.org/{event_id}"),),
        related=tuple(
            Related(r, date(2008, 1, 1), f"Later {r}", (), RelatedKind.FOLLOW_UP) for r in related
        ),
        topics=tuple(Topic.named(t) for t in topics),
    )


def tombstones(body: bytes) -> list[tuple[str, str]]:
    root = etree.fromstring(body)
    return [(e.get("ref"), e.get("when")) for e in root.iter(f"{{{AT_NS}}}deleted-entry")]


def entry_ids(body: bytes) -> list[str]:
    root = etree.fromstring(body)
    return [e.findtext(f"{{{ATOM_NS}}}id") for e in root.iter(f"{{{ATOM_NS}}}entry")]


# -- rendering --------------------------------------------------------------------


def test_atom_tells_of_removed_events_before_its_entries() -> None:
    kept = StoredEvent(event("2007/07/9/kept", "Floods"), T0, T0)
    gone = [Deleted("2007/07/9/a", T1), Deleted("2007/07/9/b", T2), Deleted("2007/07/9/c", T2)]
    body = render_feed(FeedFormat.ATOM, FeedSpec.all_events(BASE), [kept], 1, 1, deleted=gone)
    root = etree.fromstring(body)
    # Latest removal first, then by id; the when as RFC 3339 with its offset.
    assert tombstones(body) == [
        (event_urn("2007/07/9/b"), T2.isoformat()),
        (event_urn("2007/07/9/c"), T2.isoformat()),
        (event_urn("2007/07/9/a"), T1.isoformat()),
    ]
    assert root.nsmap["at"] == AT_NS
    # RFC 4287's grammar: a feed's extension elements come before its entries.
    children = [child.tag for child in root]
    assert children.index(f"{{{AT_NS}}}deleted-entry") < children.index(f"{{{ATOM_NS}}}entry")
    assert entry_ids(body) == [event_urn("2007/07/9/kept")]
    # The feed changed when the last event left it.
    assert root.findtext(f"{{{ATOM_NS}}}updated") == T2.isoformat()


def test_a_feed_with_no_removals_declares_no_tombstones() -> None:
    kept = StoredEvent(event("2007/07/9/kept", "Floods"), T0, T0)
    body = render_feed(FeedFormat.ATOM, FeedSpec.all_events(BASE), [kept], 1, 1)
    assert AT_NS.encode() not in body


@pytest.mark.parametrize("fmt", [FeedFormat.RSS, FeedFormat.JSON])
def test_rss_and_json_feed_only_leave_removed_events_out(fmt: FeedFormat) -> None:
    kept = StoredEvent(event("2007/07/9/kept", "Floods"), T0, T0)
    gone = [Deleted("2007/07/9/gone", T2)]
    body = render_feed(fmt, FeedSpec.all_events(BASE), [kept], 1, 1, deleted=gone)
    assert event_urn("2007/07/9/gone").encode() not in body
    assert b"tombstones" not in body
    assert body == render_feed(fmt, FeedSpec.all_events(BASE), [kept], 1, 1, updated=T2)


# -- reading pages from a store ---------------------------------------------------


async def remove(store: Store, event_id: str) -> set[str]:
    """Remove ``event_id`` as two polls would (missing at T1, removed at T2);
    the topics whose feeds changed."""
    await write(store, T1, missing=[event_id])
    return (await store.remove_missing(before=T2, now=T2)).topics


async def test_a_removed_event_is_a_tombstone_on_page_1_of_its_feeds_for_tombstone_days(
    store: Store,
) -> None:
    await write(
        store,
        T0,
        new=[
            event("2007/07/9/a", "Floods", "Dams"),
            event("2007/07/9/b", "Floods"),
            event("2007/07/9/c", "Floods"),
        ],
    )
    assert await remove(store, "2007/07/9/a") == {"floods", "dams"}
    now = T2 + timedelta(days=1)
    due = T2 + timedelta(days=DAYS)
    gone = (Deleted("2007/07/9/a", T2),)

    every = await load_feed_page(store, BASE, None, page_size=1, tombstone_days=DAYS, now=now)
    assert [s.event.id for s in every.events] == ["2007/07/9/c"]
    assert (every.total, every.deleted, every.updated, every.stale_after) == (2, gone, T2, due)
    assert tombstones(every.render(FeedFormat.ATOM).body) == [
        (event_urn("2007/07/9/a"), T2.isoformat())
    ]
    later = await load_feed_page(store, BASE, None, 2, page_size=1, tombstone_days=DAYS, now=now)
    assert (later.deleted, later.stale_after) == ((), None)
    floods = await load_feed_page(store, BASE, "floods", tombstone_days=DAYS, now=now)
    assert floods.deleted == gone
    # A topic left with no event still serves its feed: the tombstone, dated.
    dams = await load_feed_page(store, BASE, "dams", tombstone_days=DAYS, now=now)
    assert (dams.events, dams.total, dams.deleted, dams.updated) == ([], 0, gone, T2)

    await write(store, T0, new=[event("2007/07/9/d", "Quakes")])
    quakes = await load_feed_page(store, BASE, "quakes", tombstone_days=DAYS, now=now)
    assert quakes.deleted == ()
    # Its time run, the tombstone is gone; with no days, there is none.
    expired = await load_feed_page(store, BASE, None, tombstone_days=DAYS, now=due)
    assert expired.deleted == ()
    none = await load_feed_page(store, BASE, None, tombstone_days=0, now=now)
    assert (none.deleted, none.stale_after) == ((), None)


async def test_the_cache_shows_a_removal_once_told_and_drops_its_tombstone_when_due(
    store: Store,
) -> None:
    await write(store, T0, new=[event("2007/07/9/a", "Floods"), event("2007/07/9/b", "Floods")])
    clock = Clock(T2 + timedelta(hours=1))
    cache = FeedCache(store, BASE, tombstone_days=DAYS, now=clock)
    before = await cache.feed("floods")
    assert len(entry_ids(before.body)) == 2
    cache.invalidate(await remove(store, "2007/07/9/a"))
    told = await cache.feed("floods")
    assert tombstones(told.body) == [(event_urn("2007/07/9/a"), T2.isoformat())]
    assert entry_ids(told.body) == [event_urn("2007/07/9/b")]
    assert told.last_modified == T2
    assert (await cache.feed("floods")) is told  # kept while the tombstone is due
    clock.now = T2 + timedelta(days=DAYS)
    after = await cache.feed("floods")  # nothing told the cache: the time did
    assert tombstones(after.body) == []
    assert entry_ids(after.body) == [event_urn("2007/07/9/b")]


async def test_related_links_to_an_alias_lead_to_the_kept_event(store: Store) -> None:
    await write(store, T0, new=[event("2007/07/9/old", "Floods")])
    await write(
        store,
        T1,
        changed=[event("2007/07/9/old", "Floods")],
        moved={"2007/07/9/new": "2007/07/9/old"},
    )
    await write(store, T2, new=[event("2007/07/8/before", "Floods", related=("2007/07/9/new",))])
    page = await load_feed_page(store, BASE, None, tombstone_days=DAYS, now=T2)
    linking = next(s for s in page.events if s.event.id == "2007/07/8/before")
    assert [r.id for r in linking.event.related] == ["2007/07/9/old"]
    body = page.render(FeedFormat.ATOM).body.decode()
    assert f"{BASE}/events/2007/07/9/old" in body
    assert f"{BASE}/events/2007/07/9/new" not in body


# -- the web app over a real archive ----------------------------------------------

DAY = "2007/07/9"
OLD_SLUG = "talks-at-the-red-mosque-end-without-any-progress"
NEW_SLUG = "talks-at-the-red-mosque-end-without-progress"
OLD_ID, NEW_ID = f"{DAY}/{OLD_SLUG}", f"{DAY}/{NEW_SLUG}"
LINKING_ID = "2007/07/8/islamabad-braces"


@dataclass
class Site:
    root: Path
    store: Store
    ingestor: Ingestor
    cache: FeedCache
    clock: Clock
    url: str
    session: aiohttp.ClientSession

    async def poll(self) -> None:
        """A poll, and what the daemon tells the cache after one. Each starts later
        than the last: removal needs a poll after the one that found a page gone."""
        self.clock.advance(60)
        self.cache.invalidate((await self.ingestor.poll()).changed_topics)

    async def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        async with self.session.get(self.url + path, allow_redirects=False) as response:
            return response.status, dict(response.headers), await response.read()


def talks(root: Path, slug: str, title: str) -> Path:
    path = write_page(root, DAY, slug, title, story="Lal Masjid siege")
    # The same source on both spellings: how identity knows them for one event.
    text = path.read_text(encoding="utf-8").replace(
        f"https://example.org/{slug}", "https://example.org/red-mosque-talks"
    )
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
async def site(tmp_path: Path, clock: Clock) -> AsyncIterator[Site]:
    root = tmp_path / "archive"
    (root / "news").mkdir(parents=True)
    store = await Store.open(f"sqlite:///{tmp_path / 'feedbot.db'}", clock=clock)
    ingestor = Ingestor(store, LocalArchiveSource(root, clock=clock, settle_ms=0), clock=clock)
    settings = Settings(server={"host": "127.0.0.1", "port": 0, "base_url": BASE})
    cache = FeedCache(store, BASE, now=clock)
    server = WebServer(settings, store, cache, access_log=False)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Site(root, store, ingestor, cache, clock, server.url, session)
    finally:
        await server.stop()
        await store.close()


async def test_an_alias_redirects_a_removed_event_is_gone_and_links_lead_to_the_kept_id(
    site: Site,
) -> None:
    old = talks(site.root, OLD_SLUG, "Talks at the Red Mosque end without any progress.")
    await site.poll()
    old.unlink()
    talks(site.root, NEW_SLUG, "Talks at the Red Mosque end without progress, officials say.")
    write_page(
        site.root,
        "2007/07/8",
        "islamabad-braces",
        "Islamabad braces for the end of the siege.",
        related=[(NEW_ID, "Talks end.", ["Islamabad"])],
    )
    await site.poll()
    assert await site.store.lookup_event(NEW_ID) == Moved(OLD_ID)

    status, headers, _ = await site.get(f"/events/{NEW_ID}")
    assert (status, headers["Location"]) == (301, f"{BASE}/events/{OLD_ID}")
    status, _, page = await site.get(f"/events/{OLD_ID}")
    assert status == 200 and b"officials say" in page
    # The page linking to the new path links to the kept id, in its page and entry.
    status, _, page = await site.get(f"/events/{LINKING_ID}")
    assert status == 200
    assert f'href="{BASE}/events/{OLD_ID}"'.encode() in page
    assert f"/events/{NEW_ID}".encode() not in page
    _, _, feed = await site.get("/feeds/all.atom")
    assert f"{BASE}/events/{OLD_ID}".encode() in feed
    assert f"/events/{NEW_ID}".encode() not in feed

    # Removed: gone from the archive on two polls.
    (site.root / "news" / DAY / f"{NEW_SLUG}.md").unlink()
    await site.poll()
    await site.poll()
    found = await site.store.lookup_event(OLD_ID)
    assert isinstance(found, Removed)
    status, headers, page = await site.get(f"/events/{OLD_ID}")
    assert status == 410 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert b"removed" in page and found.deleted_at.date().isoformat().encode() in page
    assert b"officials say" not in page  # removed means removed
    assert "script-src" in headers["Content-Security-Policy"]
    # The alias still leads to the kept id, which says it is gone.
    status, headers, _ = await site.get(f"/events/{NEW_ID}")
    assert (status, headers["Location"]) == (301, f"{BASE}/events/{OLD_ID}")

    _, _, atom = await site.get("/feeds/all.atom")
    assert event_urn(OLD_ID) not in entry_ids(atom)
    assert tombstones(atom) == [(event_urn(OLD_ID), found.deleted_at.isoformat())]
    _, _, topic = await site.get("/feeds/topics/lal-masjid-siege.atom")
    assert tombstones(topic) == [(event_urn(OLD_ID), found.deleted_at.isoformat())]
    for fmt in ("rss", "json"):
        _, _, other = await site.get(f"/feeds/all.{fmt}")
        assert event_urn(OLD_ID).encode() not in other

    # Back: the same id, and no tombstone.
    talks(site.root, NEW_SLUG, "Talks at the Red Mosque end without progress, officials say.")
    await site.poll()
    status, _, _ = await site.get(f"/events/{OLD_ID}")
    assert status == 200
    _, _, atom = await site.get("/feeds/all.atom")
    assert event_urn(OLD_ID) in entry_ids(atom) and tombstones(atom) == []
