"""The documents feedbot publishes, rendered once per change and served from memory.

This module owns the step from the store to finished bytes: one page of a feed
(:func:`load_feed_page`, :meth:`FeedPage.render`), the OPML list, the HTML topic
list and an event's HTML page (:func:`render_opml_document`,
:func:`render_topics_page`, :func:`render_event_page`), each as a
:class:`Document` carrying its body, a precompressed gzip body, strong ETags and
its Last-Modified. The web app and ``feedbot feeds export`` both go through these
functions, which is what makes an exported file byte-identical to the served one.
The HTML pages live here rather than in the web package because the export
writes the topic list too, and nothing below ``web`` may import it.

Identity (README: "Identity"). Page 1 of a feed tells of the events removed from
it in the last ``feeds.tombstone_days`` (RFC 6721 tombstones, in Atom). Related
links that name an alias (a reworded page's old or new path) lead to the event
kept under its first id, in entries and on event pages alike.

:class:`FeedCache` keeps the documents the app has been asked for. Ingestion
calls :meth:`FeedCache.invalidate` with the slugs whose feeds changed (a removal
too: it names the removed event's topics); the next request for one of those
renders it again, once however many requests arrive together. A page showing a
tombstone is rendered again once the oldest one it shows has run its time.
Memory is bounded: only requested documents are kept, least recently used first
out, under a byte budget. A document is kept per base URL its links
are rooted at (the web app may root them at each request's Host), for at most
``max_bases`` bases at once, so one Host never sees another's links.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, NamedTuple, cast

from feedbot.clock import utc_now
from feedbot.errors import FeedbotError
from feedbot.feeds._text import safe_event, xml_safe
from feedbot.feeds.content import by_date
from feedbot.feeds.render import etag, render_feed, render_opml
from feedbot.feeds.spec import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_TOMBSTONE_DAYS,
    Deleted,
    FeedSpec,
    feed_updated,
    utc,
)
from feedbot.feeds.templates import jinja_environment
from feedbot.feeds.urls import OPML_MEDIA_TYPE, FeedFormat, event_url, feed_url, topic_page_url
from feedbot.model import Related, StoredEvent, Topic, is_web_url
from feedbot.store import Removed, Store, TopicCount

HTML_MEDIA_TYPE = "text/html; charset=utf-8"
TOPICS_TEMPLATE = "topics.html"
EVENT_TEMPLATE = "event.html"
REMOVED_TEMPLATE = "removed.html"
FILTER_SCRIPT = "filter.js"


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


# -- rendering, shared by the app and the export ---------------------------------


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
) -> FeedPage:
    """Page ``page`` of the feed of topic ``slug`` (of every event when ``None``).

    ``topic`` and ``total`` save a query each when the caller already knows them.
    Page 1 tells of the events removed from the feed in the ``tombstone_days``
    before ``now`` (default: the current time).
    Raises :class:`UnknownTopic`, or :class:`~feedbot.feeds.PageOutOfRange`
    before any event is read.
    """
    if slug is None:
        spec = FeedSpec.all_events(base_url, page_size=page_size)
    else:
        if topic is None:
            topic = await store.topic(slug)
            if topic is None:
                raise UnknownTopic(slug)
        spec = FeedSpec.for_topic(topic, base_url, page_size=page_size)
    if total is None:
        total = await store.count_events(slug)
    spec.check_page(page, total)
    events = await resolve_related(
        store, await store.events_page(slug, offset=spec.offset(page), limit=page_size)
    )
    deleted: tuple[Deleted, ...] = ()
    stale_after = None
    if page == 1 and tombstone_days > 0:
        keep = timedelta(days=tombstone_days)
        now = utc_now() if now is None else now
        found = [Deleted(t.id, t.deleted_at) for t in await store.tombstones(slug, now - keep)]
        # Shown while younger than tombstone_days: gone at the very moment it is due.
        deleted = tuple(d for d in found if d.when + keep > now)
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


def filter_script() -> str:
    """The topic page's inline filter script, as the page embeds it (for a CSP hash)."""
    return jinja_environment().get_template(FILTER_SCRIPT).render()


def render_topics_page(
    counts: Sequence[TopicCount], base_url: str, notice: str | None = None
) -> Document:
    """The HTML list of topics (``/topics``, exported as ``index.html``), with a
    ``notice`` on top when the archive cannot be read (served, never cached)."""
    base = base_url.rstrip("/")
    rows = [
        {
            "slug": c.topic.slug,
            "name": xml_safe(c.topic.name) or c.topic.slug,
            "events": c.events,
            "last_date": c.last_date,
            "feeds": _feed_links(base, c.topic.slug),
        }
        for c in counts
    ]
    html = (
        jinja_environment()
        .get_template(TOPICS_TEMPLATE)
        .render(
            base=base,
            title="Topics",
            notice=notice,
            topics=rows,
            all_feeds=_feed_links(base, None),
            opml_url=f"{base}/topics.opml",
            # Autodiscovery for every topic would bloat the head of a page with
            # thousands of topics; readers offer the first few, so list a few.
            discover=rows[:10],
        )
    )
    return Document.of(html.encode("utf-8"), HTML_MEDIA_TYPE)


def render_event_page(stored: StoredEvent, base_url: str) -> Document:
    """The HTML page of one event (``/events/<id>``); not cached, it is one query."""
    base = base_url.rstrip("/")
    event = safe_event(stored.event)

    def related(items: Iterable[Related]) -> list[dict[str, object]]:
        return [
            {
                "date": r.date.isoformat(),
                "text": r.title or r.id,
                "url": event_url(base, r.id),
                "contexts": r.contexts,
            }
            for r in items
        ]

    html = (
        jinja_environment()
        .get_template(EVENT_TEMPLATE)
        .render(
            base=base,
            title=event.title or event.id,
            date=event.date.isoformat(),
            story=event.story,
            event_id=xml_safe(event.id),
            sources=[
                # Autoescaping cannot make a javascript: URL harmless; only
                # http(s) sources become links.
                {"text": s.name or s.url, "url": s.url if is_web_url(s.url) else None}
                for s in event.sources
            ],
            follow_ups=related(by_date(event.follow_ups())),
            background=related(by_date(event.background())),
            topics=[
                {
                    "name": t.name or t.slug,
                    "page": topic_page_url(base, t.slug),
                    "feeds": _feed_links(base, t.slug),
                }
                for t in event.topics
            ],
        )
    )
    return Document.of(html.encode("utf-8"), HTML_MEDIA_TYPE, stored.updated)


def render_removed_page(removed: Removed, base_url: str) -> Document:
    """The HTML body of the 410 answer for a removed event (``/events/<id>``): that
    it left the archive, and when."""
    when = utc(removed.deleted_at)
    html = (
        jinja_environment()
        .get_template(REMOVED_TEMPLATE)
        .render(
            base=base_url.rstrip("/"),
            title="Removed",
            event_id=xml_safe(removed.event.event.id),
            removed=when.isoformat(timespec="seconds"),
            removed_day=when.date().isoformat(),
        )
    )
    return Document.of(html.encode("utf-8"), HTML_MEDIA_TYPE, when)


def _feed_links(base_url: str, slug: str | None) -> dict[str, str]:
    return {fmt.value: feed_url(base_url, slug, fmt) for fmt in FeedFormat}


# -- the cache --------------------------------------------------------------------

_ALL = "*"  # scope of the feed of every event; never a slug (slugs are [a-z0-9-])
_META = "#"  # scope of what lists topics: the topic list, its page, the OPML


class _Key(NamedTuple):
    scope: str
    kind: str  # "feed", "opml", "topics", "counts"
    fmt: str = ""
    page: int = 0
    base: str = ""  # the base URL of the links inside; "" for what holds none


@dataclass(slots=True)
class _Entry:
    value: object
    size: int
    born: float


@dataclass(frozen=True, slots=True)
class _TopicIndex:
    counts: tuple[TopicCount, ...]
    by_slug: dict[str, TopicCount]


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    renders: int = 0
    invalidations: int = 0


class FeedCache:
    """Rendered documents of one store, kept until ingestion changes them.

    ``max_bytes`` caps the memory held by bodies (plain plus gzip). ``max_age``
    (seconds) re-renders entries older than that on their next request: for
    replicas on PostgreSQL, where another process may ingest and this one is not
    told; ``None`` keeps entries until :meth:`invalidate`.

    Documents are rooted at ``base_url`` unless a request names another base;
    ``max_bases`` bounds how many bases have documents kept at once (the least
    recently asked for loses its documents first), so requests naming ever new
    hosts cannot grow the cache or push out more than their share.

    Feeds tell of removals for ``tombstone_days``; ``now`` (UTC) says when a
    tombstone has run its time, and with it the page that shows it.
    """

    def __init__(
        self,
        store: Store,
        base_url: str,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        max_bytes: int = 64 * 1024 * 1024,
        max_age: float | None = None,
        max_bases: int = 16,
        clock: Callable[[], float] = time.monotonic,
        tombstone_days: int = DEFAULT_TOMBSTONE_DAYS,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.base_url = base_url.rstrip("/")
        self.max_bases = max_bases
        self.page_size = page_size
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.tombstone_days = tombstone_days
        self.stats = CacheStats()
        self._clock = clock
        self._now = now
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()
        self._bytes = 0
        self._inflight: dict[_Key, asyncio.Task[Any]] = {}
        self._bases: OrderedDict[str, None] = OrderedDict()  # least recently used first
        # Bumped by every invalidation of a scope: a render that started before
        # it finishes with old data and must not be kept.
        self._epochs: dict[str, int] = {}

    # -- what the app asks for ----------------------------------------------------

    async def feed(
        self,
        slug: str | None,
        fmt: FeedFormat = FeedFormat.ATOM,
        page: int = 1,
        *,
        base_url: str | None = None,
    ) -> Document:
        """Page ``page`` of a topic's feed (every event's when ``slug`` is None),
        its links rooted at ``base_url`` (default: the cache's).

        Raises :class:`UnknownTopic` or :class:`~feedbot.feeds.PageOutOfRange`.
        """
        scope = _ALL if slug is None else slug
        key = _Key(scope, "feed", FeedFormat(fmt).value, page, self._base(base_url))
        return cast(Document, await self._get(key))

    async def opml(self, *, base_url: str | None = None) -> Document:
        return cast(Document, await self._get(_Key(_META, "opml", base=self._base(base_url))))

    async def topics_page(self, *, base_url: str | None = None) -> Document:
        return cast(Document, await self._get(_Key(_META, "topics", base=self._base(base_url))))

    def _base(self, base_url: str | None) -> str:
        return self.base_url if base_url is None else base_url.rstrip("/")

    async def topic_counts(self) -> tuple[TopicCount, ...]:
        """Every topic with its count, most recently active first."""
        return (await self._topic_index()).counts

    async def _topic_index(self) -> _TopicIndex:
        return cast(_TopicIndex, await self._get(_Key(_META, "counts")))

    # -- what ingestion tells it --------------------------------------------------

    def invalidate(self, slugs: Iterable[str]) -> None:
        """Forget the feeds of ``slugs``, and always the all-events feed and the
        topic lists (a new event may change any of them)."""
        scopes = {*slugs, _ALL, _META}
        self.stats.invalidations += 1
        for scope in scopes:
            self._epochs[scope] = self._epochs.get(scope, 0) + 1
        for key in [k for k in self._entries if k.scope in scopes]:
            self._bytes -= self._entries.pop(key).size
        # Renders in flight keep serving the requests that wait on them, but new
        # requests must not join them: they read the store before the change.
        for key in [k for k in self._inflight if k.scope in scopes]:
            del self._inflight[key]

    def clear(self) -> None:
        """Forget everything (for example after a restore of the store)."""
        self.invalidate({key.scope for key in (*self._entries, *self._inflight)})

    async def refresh(self, slugs: Iterable[str]) -> int:
        """:meth:`invalidate`, then render again at once every document of those
        scopes that was cached, so readers polling hot feeds never wait on a
        render. Returns how many were rendered; a failed one is left to the next
        request."""
        scopes = {*slugs, _ALL, _META}
        hot = [key for key in self._entries if key.scope in scopes]
        self.invalidate(slugs)
        results = await asyncio.gather(*(self._get(key) for key in hot), return_exceptions=True)
        return sum(not isinstance(r, BaseException) for r in results)

    @property
    def size(self) -> int:
        """Bytes held by cached bodies."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    # -- machinery ----------------------------------------------------------------

    async def _get(self, key: _Key) -> object:
        if key.base:
            self._use_base(key.base)
        entry = self._entries.get(key)
        if entry is not None:
            if self._fresh(entry):
                self._entries.move_to_end(key)
                self.stats.hits += 1
                return entry.value
            self._bytes -= self._entries.pop(key).size
        task = self._inflight.get(key)
        if task is None:
            self.stats.renders += 1
            task = asyncio.create_task(self._make(key), name=f"render {key}")
            self._inflight[key] = task
            task.add_done_callback(partial(self._settle, key, self._epochs.get(key.scope, 0)))
        # shield: one impatient client going away must not cancel the render the
        # other waiters share.
        return await asyncio.shield(task)

    def _fresh(self, entry: _Entry) -> bool:
        if self.max_age is not None and self._clock() - entry.born > self.max_age:
            return False
        if isinstance(entry.value, Document) and entry.value.stale_after is not None:
            return self._now() < entry.value.stale_after
        return True

    def _use_base(self, base: str) -> None:
        if base in self._bases:
            self._bases.move_to_end(base)
            return
        self._bases[base] = None
        while len(self._bases) > self.max_bases:
            evicted, _ = self._bases.popitem(last=False)
            for key in [k for k in self._entries if k.base == evicted]:
                self._bytes -= self._entries.pop(key).size

    def _settle(self, key: _Key, epoch: int, task: asyncio.Task[Any]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if task.cancelled() or task.exception() is not None:
            return  # errors reach the waiters; nothing is cached
        if self._epochs.get(key.scope, 0) != epoch:
            return
        if key.base and key.base not in self._bases:
            return  # its base was pushed out while it rendered
        value = task.result()
        size = value.size if isinstance(value, Document) else 0
        if size > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.size
        self._entries[key] = _Entry(value, size, self._clock())
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.size

    def _make(self, key: _Key) -> Coroutine[Any, Any, object]:
        if key.kind == "feed":
            slug = None if key.scope == _ALL else key.scope
            return self._render_feed(slug, key.fmt, key.page, key.base)
        if key.kind == "counts":
            return self._load_counts()
        if key.kind == "opml":
            return self._render_listing(render_opml_document, key.base)
        if key.kind == "topics":
            return self._render_listing(render_topics_page, key.base)
        raise ValueError(f"unknown cache key {key}")

    async def _render_feed(self, slug: str | None, fmt: str, page: int, base: str) -> Document:
        topic, total = None, None
        if slug is not None:
            # The cached topic list already knows the name and the count: one
            # query per render instead of three.
            known = (await self._topic_index()).by_slug.get(slug)
            if known is not None:
                topic, total = known.topic, known.events
        loaded = await load_feed_page(
            self.store,
            base,
            slug,
            page,
            page_size=self.page_size,
            topic=topic,
            total=total,
            tombstone_days=self.tombstone_days,
            now=self._now(),
        )
        # On the event loop, not in a thread: feedgen's RSS writer calls
        # locale.setlocale, which is process-wide and not thread-safe.
        return loaded.render(FeedFormat(fmt))

    async def _load_counts(self) -> _TopicIndex:
        counts = tuple(await self.store.topic_counts())
        return _TopicIndex(counts, {c.topic.slug: c for c in counts})

    async def _render_listing(
        self, render: Callable[[Sequence[TopicCount], str], Document], base: str
    ) -> Document:
        return render(await self.topic_counts(), base)
