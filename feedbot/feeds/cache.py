"""The documents feedbot serves, rendered once per change and served from memory.

:class:`FeedCache` keeps the documents the app has been asked for -- feed pages
(:mod:`.documents`), the HTML pages and the static files (:mod:`.pages`). What it
knows of a topic (its name, count and latest date) it asks the store for, one
topic by its slug (:class:`~feedbot.store.TopicList`, kept in step by ingestion),
so no ingestion makes it read the whole topic list again; the topic list's pages
are cached like the others, save those of a filter (many, each cheap); the OPML
of every topic is never held whole (the web app streams it).
Ingestion calls :meth:`FeedCache.invalidate` with the slugs whose feeds changed
(a removal too: it names the removed event's topics); the next request for one of
those renders it again, once however many requests arrive together. Search
documents depend on every event, so every invalidation drops them all. A page
showing a tombstone is rendered again once the oldest one it shows has run its
time. Memory is bounded: only requested documents are kept, least recently used
first out, under a byte budget, and at most ``max_searches`` search documents, so
queries no one repeats cannot push the hot feeds out. A document is kept per base
URL its links are rooted at (the web app may root them at each request's Host),
for at most ``max_bases`` bases at once, so one Host never sees another's links.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, NamedTuple, cast

from feedbot.clock import utc_now
from feedbot.feeds import pages
from feedbot.feeds.documents import (
    Document,
    FeedPage,
    UnknownTopic,
    load_feed_page,
    load_topics_page,
)
from feedbot.feeds.spec import DEFAULT_PAGE_SIZE, DEFAULT_TOMBSTONE_DAYS
from feedbot.feeds.urls import FeedFormat
from feedbot.search import SearchQuery, TopicFilter
from feedbot.store import Store, TopicCount

__all__ = ["CacheStats", "Document", "FeedCache", "FeedPage", "UnknownTopic", "load_feed_page"]


# -- the cache --------------------------------------------------------------------

_ALL = "*"  # scope of the feed of every event; never a slug (slugs are [a-z0-9-])
_META = "#"  # scope of what lists topics: the topic list's pages
_SEARCH = "?"  # the prefix of a search's scope: "?" + its normalised key
_STATIC = "!"  # scope of the files that no ingestion changes (style, XSLT)


class _Key(NamedTuple):
    scope: str
    # "feed", "topics" (a page of the topic list), "html" (the page of a scope's
    # events), "css", "xsl"
    kind: str
    fmt: str = ""
    page: int = 0
    base: str = ""  # the base URL of the links inside; "" for what holds none
    query: SearchQuery | None = None


@dataclass(slots=True)
class _Entry:
    value: object
    size: int
    born: float


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
        max_searches: int = 256,
        clock: Callable[[], float] = time.monotonic,
        tombstone_days: int = DEFAULT_TOMBSTONE_DAYS,
        now: Callable[[], datetime] = utc_now,
        websub: bool = False,
    ) -> None:
        self.store = store
        self.base_url = base_url.rstrip("/")
        self.max_bases = max_bases
        self.max_searches = max_searches
        self.page_size = page_size
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.tombstone_days = tombstone_days
        self.websub = websub
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

    async def search_feed(
        self,
        query: SearchQuery,
        fmt: FeedFormat = FeedFormat.ATOM,
        page: int = 1,
        *,
        base_url: str | None = None,
    ) -> Document:
        """Page ``page`` of the feed of the events holding every word of ``query``.

        Raises :class:`~feedbot.feeds.PageOutOfRange`."""
        key = _Key(
            _SEARCH + query.key, "feed", FeedFormat(fmt).value, page, self._base(base_url), query
        )
        return cast(Document, await self._get(key))

    async def home_page(self, page: int = 1, *, base_url: str | None = None) -> Document:
        """The latest events (``/``). Raises :class:`~feedbot.feeds.PageOutOfRange`."""
        return cast(Document, await self._get(_Key(_ALL, "html", "", page, self._base(base_url))))

    async def topic_page(
        self, slug: str, page: int = 1, *, base_url: str | None = None
    ) -> Document:
        """A topic's page. Raises :class:`UnknownTopic` or
        :class:`~feedbot.feeds.PageOutOfRange`."""
        return cast(Document, await self._get(_Key(slug, "html", "", page, self._base(base_url))))

    async def search_page(
        self, query: SearchQuery, page: int = 1, *, base_url: str | None = None
    ) -> Document:
        """The HTML results of ``query``. Raises :class:`~feedbot.feeds.PageOutOfRange`."""
        key = _Key(_SEARCH + query.key, "html", "", page, self._base(base_url), query)
        return cast(Document, await self._get(key))

    async def site_css(self) -> Document:
        return cast(Document, await self._get(_Key(_STATIC, "css")))

    async def feed_stylesheet(self, *, base_url: str | None = None) -> Document:
        return cast(Document, await self._get(_Key(_STATIC, "xsl", base=self._base(base_url))))

    async def topics_page(
        self, page: int = 1, query: TopicFilter | None = None, *, base_url: str | None = None
    ) -> Document:
        """Page ``page`` of the topic list, of the topics ``query`` keeps when it
        has words (rendered for each request: filters are many, and a page of
        one costs two short reads). Raises :class:`~feedbot.feeds.PageOutOfRange`."""
        base = self._base(base_url)
        if query is not None and query.words:
            return await self._render_topics(page, query, base)
        return cast(Document, await self._get(_Key(_META, "topics", page=page, base=base)))

    def _base(self, base_url: str | None) -> str:
        return self.base_url if base_url is None else base_url.rstrip("/")

    # -- what ingestion tells it --------------------------------------------------

    def invalidate(self, slugs: Iterable[str]) -> None:
        """Forget the feeds of ``slugs``, and always the all-events feed and the
        topic lists (a new event may change any of them)."""
        searches = {k.scope for k in (*self._entries, *self._inflight) if _is_search(k.scope)}
        scopes = {*slugs, _ALL, _META, *searches}
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
        self.invalidate({key.scope for key in (*self._entries, *self._inflight)} - {_STATIC})

    async def refresh(self, slugs: Iterable[str]) -> int:
        """:meth:`invalidate`, then render again at once every document of those
        scopes that was cached, so readers polling hot feeds never wait on a
        render. Returns how many were rendered; a failed one is left to the next
        request."""
        scopes = {*slugs, _ALL, _META}
        # Searches are many and each is cheap: they wait for their next request.
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
        if _is_search(key.scope):
            searches = [k for k in self._entries if _is_search(k.scope)]
            for evicted_key in searches[: max(0, len(searches) - self.max_searches)]:
                self._bytes -= self._entries.pop(evicted_key).size
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.size

    def _make(self, key: _Key) -> Coroutine[Any, Any, object]:
        if key.kind == "feed":
            slug = None if key.scope == _ALL or key.query is not None else key.scope
            return self._render_feed(slug, key.fmt, key.page, key.base, key.query)
        if key.kind == "html":
            return self._render_page(key)
        if key.kind == "css":
            return _ready(pages.site_css())
        if key.kind == "xsl":
            return _ready(pages.feed_stylesheet(key.base))
        if key.kind == "topics":
            return self._render_topics(key.page, None, key.base)
        raise ValueError(f"unknown cache key {key}")

    async def _render_feed(
        self, slug: str | None, fmt: str, page: int, base: str, query: SearchQuery | None
    ) -> Document:
        loaded = await self._load(slug, page, base, query)
        # On the event loop, not in a thread: feedgen's RSS writer calls
        # locale.setlocale, which is process-wide and not thread-safe.
        return loaded.render(FeedFormat(fmt))

    async def _render_page(self, key: _Key) -> Document:
        if key.query is not None:
            return pages.render_search_page(await self._load(None, key.page, key.base, key.query))
        if key.scope == _ALL:
            return pages.render_home_page(await self._load(None, key.page, key.base, None))
        known = await self.store.topic_list.one(key.scope)
        loaded = await self._load(key.scope, key.page, key.base, None, known)
        latest = await self.store.events_page(key.scope, limit=pages.RELATED_FROM)
        return pages.render_topic_page(
            loaded,
            pages.related_topics(key.scope, latest, pages.RELATED_TOPICS),
            known.last_date if known else None,
        )

    async def _load(
        self,
        slug: str | None,
        page: int,
        base: str,
        query: SearchQuery | None,
        known: TopicCount | None = None,
    ) -> FeedPage:
        topic, total = None, None
        if slug is not None:
            # The topic list knows the name and the count: one read of its key
            # (``known``, when the caller read it) instead of two.
            if known is None:
                known = await self.store.topic_list.one(slug)
            if known is not None:
                topic, total = known.topic, known.events
        return await load_feed_page(
            self.store,
            base,
            slug,
            page,
            page_size=self.page_size,
            topic=topic,
            total=total,
            tombstone_days=self.tombstone_days,
            now=self._now(),
            query=query,
            websub=self.websub,
        )

    async def _render_topics(self, page: int, query: TopicFilter | None, base: str) -> Document:
        return pages.render_topics_page(await load_topics_page(self.store, base, page, query))


def _is_search(scope: str) -> bool:
    return scope.startswith(_SEARCH)


async def _ready(document: Document) -> Document:
    return document
