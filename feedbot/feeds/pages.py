"""feedbot's HTML pages, and the static files its pages and feeds use.

The latest events (``/``), a page of the topic list, a topic's page, search
results, an event's page and the 410 page of a removed one, each rendered from a Jinja2
template in ``templates/`` (autoescaped: archive text is text) into a
:class:`~feedbot.feeds.documents.Document`. The pages live here rather than in
the web package because the export writes the topic list too, and nothing below
``web`` may import it. The style is one file (``/site.css``) shared with the
feeds' XSLT (``/feed.xsl``), so the pages need no inline style.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from feedbot.feeds._text import safe_event, xml_safe
from feedbot.feeds.content import by_date
from feedbot.feeds.documents import HTML_MEDIA_TYPE, Document, FeedPage, TopicsPage
from feedbot.feeds.spec import utc
from feedbot.feeds.templates import jinja_environment
from feedbot.feeds.urls import (
    FeedFormat,
    event_url,
    feed_url,
    home_url,
    search_feed_url,
    search_page_url,
    topic_page_url,
    topics_url,
)
from feedbot.model import Event, Related, StoredEvent, Topic, is_web_url
from feedbot.search import MAX_QUERY_CHARS
from feedbot.store import Removed

TOPICS_TEMPLATE = "topics.html"
EVENT_TEMPLATE = "event.html"
REMOVED_TEMPLATE = "removed.html"
HOME_TEMPLATE = "home.html"
TOPIC_TEMPLATE = "topic.html"
SEARCH_TEMPLATE = "search.html"
FILTER_SCRIPT = "filter.js"
SITE_CSS = "site.css"
FEED_STYLESHEET = "feed.xsl"
CSS_MEDIA_TYPE = "text/css; charset=utf-8"
# What browsers fetch an <?xml-stylesheet?> as; application/xslt+xml is not
# taken by all of them.
XSL_MEDIA_TYPE = "text/xsl; charset=utf-8"
RELATED_TOPICS = 12
RELATED_FROM = 200
"""How many of a topic's latest events its related topics are counted over."""


def filter_script() -> str:
    """The topic page's inline filter script, as the page embeds it (for a CSP hash)."""
    return jinja_environment().get_template(FILTER_SCRIPT).render()


def render_topics_page(listing: TopicsPage, notice: str | None = None) -> Document:
    """One page of the HTML list of topics (``/topics``; page 1 is exported as
    ``index.html``): its topics with their counts, feed links and feed
    autodiscovery, the filter box, and a pager; a ``notice`` on top when the
    archive cannot be read (served, never cached)."""
    base = listing.base_url
    query = listing.query.text
    rows = [
        {
            "slug": c.topic.slug,
            "name": xml_safe(c.topic.name) or c.topic.slug,
            "events": c.events,
            "last_date": c.last_date,
            "page": topic_page_url(base, c.topic.slug),
            "feeds": _feed_links(base, c.topic.slug),
        }
        for c in listing.counts
    ]
    page, pages = listing.page, listing.pages
    title = "Topics" + (f": {query}" if query else "") + (f", page {page}" if page > 1 else "")
    body = _render(
        TOPICS_TEMPLATE,
        base=base,
        title=title,
        notice=notice,
        topics=rows,
        total=listing.total,
        q=query,
        pager={
            "page": page,
            "pages": pages,
            "previous": topics_url(base, page - 1, query) if page > 1 else None,
            "next": topics_url(base, page + 1, query) if page < pages else None,
        },
        all_feeds=_feed_links(base, None),
        opml_url=f"{base}/topics.opml",
    )
    return Document.of(body, HTML_MEDIA_TYPE)


def render_event_page(
    stored: StoredEvent, base_url: str, referrers: Sequence[StoredEvent] = ()
) -> Document:
    """The HTML page of one event (``/events/<id>``); not cached, it is two
    queries. ``referrers``: stored events whose related links name this one;
    those its own lists already show are left out."""
    base = base_url.rstrip("/")
    event = safe_event(stored.event)
    shown = {r.id for r in event.related} | {event.id}
    referring = sorted(
        (safe_event(r.event) for r in referrers if r.event.id not in shown),
        key=lambda e: (e.date, e.id),
    )
    day = event.date

    def refer(items: Iterable[Event]) -> list[dict[str, object]]:
        return [
            {
                "date": e.date.isoformat(),
                "text": e.title or e.id,
                "url": event_url(base, e.id),
                "contexts": (),
            }
            for e in items
        ]

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
            later=refer(e for e in referring if e.date >= day),
            earlier=refer(e for e in referring if e.date < day),
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


# -- lists of events: the latest, a topic's, a search's ---------------------------


def _event_rows(events: Iterable[StoredEvent], base: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for stored in events:
        event = safe_event(stored.event)
        rows.append(
            {
                "date": event.date.isoformat(),
                "story": event.story,
                "title": event.title or event.id,
                "url": event_url(base, event.id),
                "topics": [
                    {"name": t.name or t.slug, "url": topic_page_url(base, t.slug)}
                    for t in event.topics
                ],
            }
        )
    return rows


def _pager(loaded: FeedPage, url: Callable[[int], str]) -> dict[str, object]:
    pages = loaded.spec.page_count(loaded.total)
    return {
        "page": loaded.page,
        "pages": pages,
        "previous": url(loaded.page - 1) if loaded.page > 1 else None,
        "next": url(loaded.page + 1) if loaded.page < pages else None,
    }


def _render(template: str, **context: object) -> bytes:
    return jinja_environment().get_template(template).render(**context).encode("utf-8")


def render_home_page(loaded: FeedPage, notice: str | None = None) -> Document:
    """The latest events (``/``): page ``loaded.page`` of the feed of every event."""
    base = loaded.spec.base_url
    body = _render(
        HOME_TEMPLATE,
        base=base,
        title="Latest events",
        notice=notice,
        total=loaded.total,
        events=_event_rows(loaded.events, base),
        pager=_pager(loaded, lambda n: home_url(base, n)),
        feeds=_feed_links(base, None),
        opml_url=f"{base}/topics.opml",
    )
    return Document.of(body, HTML_MEDIA_TYPE, loaded.updated)


def related_topics(slug: str, events: Iterable[StoredEvent], limit: int) -> list[Topic]:
    """The topics other than ``slug`` that appear most often among ``events``,
    most often first (then by slug)."""
    counts: Counter[str] = Counter()
    names: dict[str, Topic] = {}
    for stored in events:
        for topic in stored.event.topics:
            if topic.slug != slug:
                counts[topic.slug] += 1
                names.setdefault(topic.slug, topic)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [names[other] for other, _ in ranked[:limit]]


def render_topic_page(
    loaded: FeedPage, related: Sequence[Topic], last_date: str | None = None
) -> Document:
    """A topic's page (``/topics/<slug>``): page ``loaded.page`` of its events,
    its feeds, and ``related`` topics."""
    spec = loaded.spec
    assert spec.slug is not None
    base = spec.base_url
    name = xml_safe(spec.title) or spec.slug
    body = _render(
        TOPIC_TEMPLATE,
        base=base,
        title=name,
        name=name,
        total=loaded.total,
        last_date=last_date,
        events=_event_rows(loaded.events, base),
        pager=_pager(loaded, lambda n: topic_page_url(base, spec.slug, n)),
        feeds=_feed_links(base, spec.slug),
        related=[
            {"name": xml_safe(t.name) or t.slug, "url": topic_page_url(base, t.slug)}
            for t in related
        ],
    )
    return Document.of(body, HTML_MEDIA_TYPE, loaded.updated)


def render_search_page(loaded: FeedPage) -> Document:
    """Search results (``/search``): page ``loaded.page`` of the events holding
    every word of the query, and the query's feeds."""
    query = loaded.spec.query
    assert query is not None
    base = loaded.spec.base_url
    body = _render(
        SEARCH_TEMPLATE,
        base=base,
        title=f"Search: {query.text}",
        q=query.text,
        words=query.text,
        topics=query.topics,
        error=None,
        total=loaded.total,
        events=_event_rows(loaded.events, base),
        pager=_pager(loaded, lambda n: search_page_url(base, query, n)),
        feeds={fmt.value: search_feed_url(base, query, fmt) for fmt in FeedFormat},
    )
    return Document.of(body, HTML_MEDIA_TYPE, loaded.updated)


def render_search_refusal(base_url: str, q: str, reason: str) -> bytes:
    """The body of the 400 answer to a query that cannot be run: the form again,
    with ``q`` as typed (cut to the length allowed), and why."""
    return _render(
        SEARCH_TEMPLATE,
        base=base_url.rstrip("/"),
        title="Search",
        q=xml_safe(q[:MAX_QUERY_CHARS]),
        words="",
        topics=(),
        error=reason,
        feeds=None,
    )


# -- static files -------------------------------------------------------------------


def site_css() -> Document:
    """``/site.css``: the style of the pages and of the feeds' XSLT."""
    return Document.of(_source(SITE_CSS).encode("utf-8"), CSS_MEDIA_TYPE)


def feed_stylesheet(base_url: str) -> Document:
    """``/feed.xsl``: the XSLT a browser shows an Atom or RSS feed through, as a
    page in the site's style that says how to subscribe. Its links are rooted at
    ``base_url`` (an XSLT cannot know its own address)."""
    body = jinja_environment().get_template(FEED_STYLESHEET).render(base=base_url.rstrip("/"))
    return Document.of(body.encode("utf-8"), XSL_MEDIA_TYPE)


def _source(name: str) -> str:
    environment = jinja_environment()
    assert environment.loader is not None
    return environment.loader.get_source(environment, name)[0]
