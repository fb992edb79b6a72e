"""Finished documents, and the step from the store to them for feeds.

A :class:`Document` is one response body in both encodings with its validators.
:func:`load_feed_page` reads one page of a feed (every event, a topic's, or a
search's) from the store as a :class:`FeedPage`, whose :meth:`FeedPage.render`
makes the document; the web app (through :mod:`.cache`) and ``feedbot feeds
export`` both go through here, which is what makes an exported file
byte-identical to the served one.

Identity (README: "Identity"). Page 1 of a topic's or every event's feed tells
of the events removed from it in the last ``feeds.tombstone_days`` (RFC 6721
tombstones, in Atom); a search feed only leaves them out. Related links that
name an alias (a reworded page's old or new path) lead to the event kept under
its first id.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from feedbot.clock import utc_now
from feedbot.errors import FeedbotError
from feedbot.feeds.render import etag, render_feed, render_opml
from feedbot.feeds.spec import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_TOMBSTONE_DAYS,
    Deleted,
    FeedSpec,
    feed_updated,
)
from feedbot.feeds.urls import OPML_MEDIA_TYPE, FeedFormat
from feedbot.model import StoredEvent, Topic
from feedbot.search import SearchQuery
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


def render_opml_document(counts: Sequence[TopicCount], base_url: str) -> Document:
    body = render_opml([(c.topic, c.events) for c in counts], base_url)
    return Document.of(body, OPML_MEDIA_TYPE)
