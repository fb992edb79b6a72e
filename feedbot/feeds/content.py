"""The HTML body of an event's feed entry: rendered from ``templates/entry.html``.

Archive text is untrusted, so the template is autoescaped *and* its output is run
through nh3 with a short allow-list: even a template mistake cannot let a script,
an event handler or a ``javascript:`` link through. Links are absolute http(s)
only and carry ``rel="nofollow noopener"``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import nh3

from feedbot.feeds import urls
from feedbot.feeds._text import safe_event, xml_safe
from feedbot.feeds.templates import jinja_environment
from feedbot.model import Event, Related

TEMPLATE = "entry.html"

_CLEANER = nh3.Cleaner(
    tags={"a", "p", "ul", "ol", "li", "h3", "h4", "strong", "em", "time", "span"},
    clean_content_tags={"script", "style"},
    attributes={"a": {"href"}, "time": {"datetime"}},
    link_rel="nofollow noopener",
    url_schemes={"http", "https"},
    url_relative="deny",
    strip_comments=True,
)


@dataclass(frozen=True, slots=True)
class _Link:
    """What the template shows of a source, a related event or a topic."""

    text: str
    url: str
    date: str | None = None


def sanitize_html(html: str) -> str:
    """``html`` reduced to the entry allow-list, and XML-safe."""
    return xml_safe(_CLEANER.clean(html))


def summary(event: Event) -> str:
    """The event's title without a leading "<story>:" (the story is shown beside it).

    ``"Lal Masjid siege: An attempt..."`` under story "Lal Masjid siege" is
    ``"An attempt..."``; a title that does not start with its story, or is
    nothing but it, is kept whole."""
    story = (event.story or "").strip()
    if story:
        head, colon, rest = event.title.partition(":")
        if colon and head.strip().casefold() == story.casefold() and rest.strip():
            return rest.strip()
    return event.title


def by_date(related: Iterable[Related]) -> list[Related]:
    """``related`` oldest first; events of one day keep the archive's order."""
    return sorted(related, key=lambda r: r.date)


@lru_cache(maxsize=8192)
def entry_html(event: Event, base_url: str) -> str:
    """The sanitized HTML content of ``event``'s entry, links rooted at ``base_url``.

    Memoized on the (immutable) event itself: one event sits in the all-events
    feed and in every topic feed it belongs to, each in three formats, and a
    changed event is a different key."""
    event = safe_event(event)
    html = (
        jinja_environment()
        .get_template(TEMPLATE)
        .render(
            date=event.date.isoformat(),
            story=event.story,
            summary=summary(event),
            sources=[_Link(s.name or s.url, s.url) for s in event.sources],
            follow_ups=[_related(r, base_url) for r in by_date(event.follow_ups())],
            background=[_related(r, base_url) for r in by_date(event.background())],
            topics=[_Link(t.name, urls.topic_page_url(base_url, t.slug)) for t in event.topics],
        )
    )
    return sanitize_html(html)


def _related(related: Related, base_url: str) -> _Link:
    return _Link(
        related.title or related.id, urls.event_url(base_url, related.id), related.date.isoformat()
    )
