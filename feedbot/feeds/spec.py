"""What a feed is: :class:`FeedSpec`, and how its events split into pages.

A feed lists its events newest first -- event date descending, then the time
feedbot first saw the event descending, then event id ascending (``ORDER BY date
DESC, first_seen DESC, id ASC`` in SQL) -- in pages of ``page_size``. Page 1
holds the newest; page N holds entries ``(N-1)*page_size`` onwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from feedbot.clock import EPOCH
from feedbot.errors import FeedbotError
from feedbot.feeds import urls
from feedbot.model import StoredEvent, Topic
from feedbot.search import SearchQuery

DEFAULT_PAGE_SIZE = 50
DEFAULT_TOMBSTONE_DAYS = 30
"""How long a removed event's RFC 6721 tombstone stays in its feeds (``feeds.tombstone_days``)."""

FeedKind = Literal["all", "topic", "search"]


class PageOutOfRange(FeedbotError, LookupError):
    """A feed page number below 1 or past the last page (the web layer's 404)."""

    def __init__(self, page: int, pages: int) -> None:
        super().__init__(f"page {page} does not exist; the feed has {pages} page(s)")
        self.page = page
        self.pages = pages


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """One feed: every event (``kind="all"``), one topic's (``kind="topic"``), or
    the events that hold every word of a search (``kind="search"``).

    ``base_url`` is the public root (``https://feeds.example.org``), with or
    without a trailing slash; it only shapes links, never ids.
    """

    kind: FeedKind
    slug: str | None
    title: str
    base_url: str
    page_size: int = DEFAULT_PAGE_SIZE
    query: SearchQuery | None = None
    websub: bool = False
    """Whether the feed names the WebSub hub (``{base_url}/websub``)."""

    def __post_init__(self) -> None:
        if self.kind == "topic" and not self.slug:
            raise ValueError("a topic feed needs a slug")
        if self.kind != "topic" and self.slug is not None:
            raise ValueError(f"the {self.kind} feed takes no slug")
        if (self.kind == "search") != (self.query is not None):
            raise ValueError("a search feed, and only a search feed, needs a query")
        if self.kind not in ("all", "topic", "search"):
            raise ValueError(f"unknown feed kind {self.kind!r}")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an absolute http(s) URL: {self.base_url!r}")
        if self.page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {self.page_size}")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))

    @classmethod
    def all_events(
        cls,
        base_url: str,
        *,
        title: str = "All events in the archive",
        page_size: int = DEFAULT_PAGE_SIZE,
        websub: bool = False,
    ) -> FeedSpec:
        return cls("all", None, title, base_url, page_size, websub=websub)

    @classmethod
    def for_topic(
        cls,
        topic: Topic,
        base_url: str,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        websub: bool = False,
    ) -> FeedSpec:
        return cls("topic", topic.slug, topic.name, base_url, page_size, websub=websub)

    @classmethod
    def for_search(
        cls,
        query: SearchQuery,
        base_url: str,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        websub: bool = False,
    ) -> FeedSpec:
        title = f"Search: {query.text}"
        if query.topics:
            title += f" (in {', '.join(query.topics)})"
        return cls("search", None, title, base_url, page_size, query, websub)

    @property
    def description(self) -> str:
        if self.query is not None:
            return f"Events holding every word of \u201c{self.query.text}\u201d, newest first"
        if self.kind == "all":
            return "Every event in the archive, newest first"
        return f"Events about {self.title}, newest first"

    @property
    def feed_id(self) -> str:
        if self.query is not None:
            return urls.search_feed_urn(self.query)
        return urls.feed_urn(self.slug)

    @property
    def hub_url(self) -> str | None:
        return urls.hub_url(self.base_url) if self.websub else None

    @property
    def html_url(self) -> str:
        if self.query is not None:
            return urls.search_page_url(self.base_url, self.query)
        return urls.topic_page_url(self.base_url, self.slug)

    def url(self, fmt: urls.FeedFormat = urls.FeedFormat.ATOM, page: int = 1) -> str:
        if self.query is not None:
            return urls.search_feed_url(self.base_url, self.query, fmt, page)
        return urls.feed_url(self.base_url, self.slug, fmt, page)

    def page_count(self, total: int) -> int:
        """How many pages ``total`` events fill; an empty feed still has page 1."""
        if total < 0:
            raise ValueError(f"total must not be negative, not {total}")
        return max(1, -(-total // self.page_size))

    def check_page(self, page: int, total: int) -> None:
        """Raise :class:`PageOutOfRange` unless ``page`` exists for ``total`` events."""
        pages = self.page_count(total)
        if not 1 <= page <= pages:
            raise PageOutOfRange(page, pages)

    def offset(self, page: int) -> int:
        """How many events precede ``page`` (the SQL ``OFFSET``)."""
        return (page - 1) * self.page_size


@dataclass(frozen=True, slots=True)
class Deleted:
    """An event removed from a feed, as the feed tells its readers (an RFC 6721
    ``at:deleted-entry`` in Atom): which entry, and when it was removed."""

    event_id: str
    when: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "when", utc(self.when))


def order_key(stored: StoredEvent) -> tuple[int, int, str]:
    """Sort key for feed order: newest date first, then the latest first seen,
    then event id ascending."""
    seen = (utc(stored.first_seen) - EPOCH) // timedelta(microseconds=1)
    return (-stored.event.date.toordinal(), -seen, stored.event.id)


def newest_first(events: Iterable[StoredEvent]) -> list[StoredEvent]:
    return sorted(events, key=order_key)


def feed_updated(events: Iterable[StoredEvent], deleted: Iterable[Deleted] = ()) -> datetime | None:
    """A feed's ``updated`` (and HTTP Last-Modified): its latest change, in UTC --
    an entry's ``updated``, or the removal of an event it tells of; ``None`` when
    there is neither (the caller knows a real time for that: when the store began)."""
    return max((*(utc(e.updated) for e in events), *(d.when for d in deleted)), default=None)


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; naive datetimes are a bug in the caller, not a guess here."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: feeds need aware UTC times")
    return moment.astimezone(UTC)
