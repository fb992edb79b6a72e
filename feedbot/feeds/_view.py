"""The format-neutral picture of one feed page, which every writer translates.

:func:`build_view` decides everything the formats share -- ids, URLs, order,
RFC 5005 paging links, timestamps, sanitized entry HTML, the removed events it
tells of -- so the Atom, RSS and JSON Feed writers only map fields. Every string
in a view is XML-safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from functools import lru_cache

from feedbot.feeds import urls
from feedbot.feeds._text import safe_event, xml_safe
from feedbot.feeds.content import entry_html
from feedbot.feeds.spec import Deleted, FeedSpec, feed_updated, newest_first, utc
from feedbot.feeds.urls import FeedFormat
from feedbot.model import StoredEvent

AUTHOR = "feedbot"
"""The feed's author, and the author of an entry whose event names no source."""
GENERATOR = "feedbot"


@dataclass(frozen=True, slots=True)
class Category:
    term: str  # the topic slug
    label: str  # the topic name


@dataclass(frozen=True, slots=True)
class EntryView:
    id: str
    event_id: str
    title: str
    url: str
    published: datetime
    updated: datetime
    content_html: str
    categories: tuple[Category, ...]
    authors: tuple[str, ...]
    """The names of the event's sources, or :data:`AUTHOR` when it names none."""


@dataclass(frozen=True, slots=True)
class DeletedView:
    """An entry that left the feed (RFC 6721): its entry id and when."""

    ref: str
    when: datetime


@dataclass(frozen=True, slots=True)
class FeedView:
    id: str
    title: str
    description: str
    html_url: str
    stylesheet_url: str
    """The XSLT a browser shows the document with (Atom and RSS)."""
    hub_url: str | None
    self_url: str
    updated: datetime
    paging: tuple[tuple[str, str], ...]
    """RFC 5005 section 3 ``(rel, href)`` pairs: first, previous, next, last."""
    entries: tuple[EntryView, ...]
    deleted: tuple[DeletedView, ...] = ()
    """Removed events, latest removal first: Atom says so (RFC 6721); RSS and
    JSON Feed have no way to, and only leave the entries out."""

    def link(self, rel: str) -> str | None:
        return next((href for r, href in self.paging if r == rel), None)


def build_view(
    spec: FeedSpec,
    events: Sequence[StoredEvent],
    page: int,
    total: int,
    fmt: FeedFormat,
    *,
    updated: datetime | None = None,
    deleted: Sequence[Deleted] = (),
) -> FeedView:
    spec.check_page(page, total)
    if len(events) > spec.page_size:
        raise ValueError(f"{len(events)} events given for a page of {spec.page_size}")
    newest = feed_updated(events, deleted) if updated is None else utc(updated)
    if newest is None:
        raise ValueError("a feed page with no entries needs its updated time given")
    title = xml_safe(spec.title) or spec.feed_id
    return FeedView(
        id=spec.feed_id,
        title=title,
        description=xml_safe(spec.description),
        html_url=spec.html_url,
        stylesheet_url=urls.stylesheet_url(spec.base_url),
        hub_url=spec.hub_url,
        self_url=spec.url(fmt, page),
        updated=newest,
        paging=_paging(spec, fmt, page, spec.page_count(total)),
        entries=tuple(_entry(stored, spec.base_url) for stored in newest_first(events)),
        deleted=tuple(
            DeletedView(urls.event_urn(d.event_id), d.when)
            for d in sorted(
                sorted(deleted, key=lambda d: d.event_id), key=lambda d: d.when, reverse=True
            )
        ),
    )


def _paging(spec: FeedSpec, fmt: FeedFormat, page: int, pages: int) -> tuple[tuple[str, str], ...]:
    links = [("first", spec.url(fmt, 1))]
    if page > 1:
        links.append(("previous", spec.url(fmt, page - 1)))
    if page < pages:
        links.append(("next", spec.url(fmt, page + 1)))
    links.append(("last", spec.url(fmt, pages)))
    return tuple(links)


# A feed rendered again after a new event (the cache drops the whole document) holds
# the same entries but one. Each is built once: keyed on the whole stored event (its
# content, its updated time, the related links resolved for it) and the base URL,
# so a changed event is built anew. 512 entries: about ten pages of 50 and some 5 MB.
@lru_cache(maxsize=512)
def _entry(stored: StoredEvent, base_url: str) -> EntryView:
    event = safe_event(stored.event)
    return EntryView(
        id=urls.event_urn(event.id),
        event_id=xml_safe(event.id),
        title=event.title or event.id,
        url=urls.event_url(base_url, event.id),
        published=datetime.combine(event.date, time(), tzinfo=UTC),
        updated=utc(stored.updated),
        content_html=entry_html(event, base_url),
        categories=tuple(Category(term=t.slug, label=t.name or t.slug) for t in event.topics),
        authors=tuple(dict.fromkeys(s.name.strip() for s in event.sources if s.name.strip()))
        or (AUTHOR,),
    )
