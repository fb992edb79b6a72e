"""Finished documents, and the step from the store to them for feeds and lists.

A :class:`Document` is one response body in both encodings with its validators.
:func:`load_feed_page` reads one page of a feed (every event, a topic's, or a
search's) from the store as a :class:`FeedPage`, whose :meth:`FeedPage.render`
makes the document; :func:`load_topics_page` reads one page of the topic list
(:mod:`.pages` renders it), and :func:`opml_chunks` writes the OPML of every
topic a chunk of topics at a time, never whole. The web app (through
:mod:`.cache`) and ``feedbot feeds export`` both go through here, which is what
makes an exported file byte-identical to the served one.

Identity (README: "Identity"). Page 1 of a topic's or every event's feed tells
of the events removed from it in the last ``feeds.tombstone_days`` (RFC 6721
tombstones, in Atom); a search feed only leaves them out. Related links that
name an alias (a reworded page's old or new path) lead to the event kept under
its first id.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from feedbot import __version__
from feedbot.clock import utc_now
from feedbot.errors import FeedbotError
from feedbot.feeds._opml import OPML_TAIL, opml_head, opml_no_topics, opml_outlines
from feedbot.feeds.render import etag, render_feed
from feedbot.feeds.spec import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_TOMBSTONE_DAYS,
    Deleted,
    FeedSpec,
    PageOutOfRange,
    feed_updated,
)
from feedbot.feeds.urls import FeedFormat
from feedbot.model import StoredEvent, Topic
from feedbot.search import SearchQuery, TopicFilter
from feedbot.store import Store, TopicCount

HTML_MEDIA_TYPE = "text/html; charset=utf-8"


class UnknownTopic(FeedbotError, LookupError):
    """No topic has this slug (the web layer's 404)."""

    def __init__(self, slug: str) -> None:
        super().__init__(f"no topic {slug!r}")
        self.slug = slug


@dataclass(frozen=True, slots=True)
class Document:
    """One finished response body, in both encodings, with its validators.

    ``etag`` is the strong ETag of ``body``; ``gzip_etag`` that of the gzip
    representation, which is a different byte sequence and so, strictly, needs a
    tag of its own (RFC 9110 section 8.8.3). ``stale_after``: when the document
    goes out of date with no change in the store (a tombstone it shows expires).
    """

    body: bytes
    gzip_body: bytes
    etag: str
    gzip_etag: str
    media_type: str
    last_modified: datetime | None
    stale_after: datetime | None = None

    @classmethod
    def of(
        cls,
        body: bytes,
        media_type: str,
        last_modified: datetime | None = None,
        *,
        stale_after: datetime | None = None,
    ) -> Document:
        tag = etag(body)
        return cls(
            body=body,
            # mtime=0: the same body always compresses to the same bytes.
            gzip_body=gzip.compress(body, compresslevel=6, mtime=0),
            etag=tag,
            gzip_etag=tag[:-1] + '-gzip"',
            media_type=media_type,
            last_modified=last_modified,
            stale_after=stale_after,
        )

    @property
    def size(self) -> int:
        return len(self.body) + len(self.gzip_body)


@dataclass(frozen=True, slots=True)
class FeedPage:
    """One page of one feed as read from the store: everything a render needs."""

    spec: FeedSpec
    events: Sequence[StoredEvent]
    page: int
    total: int
    updated: datetime
    """The newest entry's ``updated`` or removal's; for a page with neither, when
    the store began."""
    deleted: tuple[Deleted, ...] = ()
    """The events removed from the feed that the page tells of (page 1 only)."""
    stale_after: datetime | None = None
    """When the oldest of ``deleted`` is due to leave the page."""

    def render(self, fmt: FeedFormat) -> Document:
        body = render_feed(
            fmt,
            self.spec,
            self.events,
            self.page,
            self.total,
            updated=self.updated,
            deleted=self.deleted,
        )
        return Document.of(body, fmt.media_type, self.updated, stale_after=self.stale_after)


async def load_feed_page(
    store: Store,
    base_url: str,
    slug: str | None,
    page: int = 1,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    topic: Topic | None = None,
    total: int | None = None,
    tombstone_days: int = DEFAULT_TOMBSTONE_DAYS,
    now: datetime | None = None,
    query: SearchQuery | None = None,
    websub: bool = False,
) -> FeedPage:
    """Page ``page`` of the feed of topic ``slug`` (of every event when ``None``),
    or with ``query`` (and no slug), of that search; with ``websub``, it names
    the hub.

    ``topic`` and ``total`` save a query each when the caller already knows them.
    Page 1 of a topic's or every event's feed tells of the events removed from it
    in the ``tombstone_days`` before ``now`` (default: the current time).
    Raises :class:`UnknownTopic`, or :class:`~feedbot.feeds.PageOutOfRange`
    before any event is read.
    """
    if query is not None:
        spec = FeedSpec.for_search(query, base_url, page_size=page_size, websub=websub)
        tombstone_days = 0
    elif slug is None:
        spec = FeedSpec.all_events(base_url, page_size=page_size, websub=websub)
    else:
        if topic is None:
            topic = await store.topic(slug)
            if topic is None:
                raise UnknownTopic(slug)
        spec = FeedSpec.for_topic(topic, base_url, page_size=page_size, websub=websub)
    if total is None:
        total = await (store.count_search(query) if query else store.count_events(slug))
    spec.check_page(page, total)
    offset = spec.offset(page)
    if query is not None:
        found = await store.search_events(query, offset=offset, limit=page_size)
    else:
        found = await store.events_page(slug, offset=offset, limit=page_size)
    events = await resolve_related(store, found)
    deleted: tuple[Deleted, ...] = ()
    stale_after = None
    if page == 1 and tombstone_days > 0:
        keep = timedelta(days=tombstone_days)
        now = utc_now() if now is None else now
        found_gone = [Deleted(t.id, t.deleted_at) for t in await store.tombstones(slug, now - keep)]
        # Shown while younger than tombstone_days: gone at the very moment it is due.
        deleted = tuple(d for d in found_gone if d.when + keep > now)
        stale_after = min((d.when + keep for d in deleted), default=None)
    updated = feed_updated(events, deleted)
    if updated is None:
        updated = await store.created_at()
    return FeedPage(spec, events, page, total, updated, deleted, stale_after)


async def resolve_related(store: Store, events: Sequence[StoredEvent]) -> list[StoredEvent]:
    """``events`` with every related link that names an alias pointed at the kept
    event's id (one query for them all)."""
    named = {r.id for stored in events for r in stored.event.related}
    kept = await store.kept_ids(named) if named else {}
    if not kept:
        return list(events)
    return [
        replace(
            stored,
            event=replace(
                stored.event,
                related=tuple(replace(r, id=kept.get(r.id, r.id)) for r in stored.event.related),
            ),
        )
        for stored in events
    ]


# -- the topic list: its pages and its OPML ---------------------------------------

TOPICS_PAGE_SIZE = 200
"""Topics on a page of ``/topics``."""
OPML_CHUNK = 1000
"""Topics read (in one short read) and written at a time into the OPML."""
OPML_TITLE = "feedbot topics"


@dataclass(frozen=True, slots=True)
class TopicsPage:
    """One page of the topic list (``/topics``) as read from the store: most
    recently active first, ``page_size`` a page, of the topics ``query`` keeps."""

    base_url: str
    counts: Sequence[TopicCount]
    page: int
    total: int
    """How many topics the list (as filtered) holds, on every page."""
    page_size: int
    query: TopicFilter

    @property
    def pages(self) -> int:
        """How many pages the list fills; an empty list still has page 1."""
        return max(1, -(-self.total // self.page_size))


async def load_topics_page(
    store: Store,
    base_url: str,
    page: int = 1,
    query: TopicFilter | None = None,
    *,
    page_size: int = TOPICS_PAGE_SIZE,
) -> TopicsPage:
    """Page ``page`` of the topic list, filtered by ``query`` when given. Raises
    :class:`~feedbot.feeds.PageOutOfRange` before any topic is read."""
    query = query or TopicFilter()
    total = await store.topic_list.count(query.words)
    pages = max(1, -(-total // page_size))
    if not 1 <= page <= pages:
        raise PageOutOfRange(page, pages)
    counts = await store.topic_list.page(
        query.words, offset=(page - 1) * page_size, limit=page_size
    )
    return TopicsPage(base_url.rstrip("/"), counts, page, total, page_size, query)


async def opml_chunks(
    store: Store, base_url: str, *, chunk: int = OPML_CHUNK
) -> AsyncIterator[bytes]:
    """The OPML of every topic's feed (:func:`~feedbot.feeds.render_opml` of the
    topic list in slug order), a piece at a time: the head, then the outlines of
    ``chunk`` topics per piece as each chunk is read, then the tail. Each chunk
    is its own short read from where the last one ended, so no connection is held
    while a slow client takes a piece; a topic the list held throughout is listed
    once, whatever is written meanwhile (the order is by slug, which no write
    moves)."""
    yield opml_head(OPML_TITLE)
    empty = True
    async for counts in store.topic_list.chunks(chunk):
        yield opml_outlines([(c.topic, c.events) for c in counts], base_url)
        empty = False
    if empty:
        yield opml_no_topics(base_url)
    yield OPML_TAIL


async def opml_etag(store: Store, base_url: str) -> str:
    """The strong ETag of the OPML that :func:`opml_chunks` would write now, from
    the topic list's version rather than the bytes (which are never all in one
    place): the same store, list version, base URL and feedbot give the same
    bytes."""
    state = "\n".join(
        (
            "opml",
            __version__,
            (await store.created_at()).isoformat(),
            str(await store.topic_list.version()),
            base_url.rstrip("/"),
        )
    )
    return etag(state.encode("utf-8"))
