"""Feeds: rendering Atom, RSS 2.0, JSON Feed 1.1 and OPML from stored events.

The pure rendering layer of the feeds (README: "Using it") -- no web server, no database. The web
app and ``feedbot feeds export`` fetch one page of events from the store and call
these functions; identical inputs give identical bytes.

Layout: :mod:`.spec` (what a feed and its pages are), :mod:`.urls` (every id and
URL), :mod:`.content` (sanitized entry HTML from ``templates/entry.html``),
:mod:`.templates` (the Jinja2 environment), :mod:`.render` (the entry points).
The private writers (``_feedgen`` -- the only importer of feedgen --,
``_jsonfeed``, ``_opml``) translate one format-neutral view (``_view``).
"""

from feedbot.feeds.content import entry_html, sanitize_html
from feedbot.feeds.render import (
    etag,
    render_atom,
    render_feed,
    render_json_feed,
    render_opml,
    render_rss,
)
from feedbot.feeds.spec import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_TOMBSTONE_DAYS,
    Deleted,
    FeedKind,
    FeedSpec,
    PageOutOfRange,
    feed_updated,
    newest_first,
    order_key,
)
from feedbot.feeds.templates import jinja_environment
from feedbot.feeds.urls import (
    OPML_MEDIA_TYPE,
    FeedFormat,
    event_url,
    event_urn,
    feed_url,
    feed_urn,
    topic_page_url,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_TOMBSTONE_DAYS",
    "OPML_MEDIA_TYPE",
    "Deleted",
    "FeedFormat",
    "FeedKind",
    "FeedSpec",
    "PageOutOfRange",
    "entry_html",
    "etag",
    "event_url",
    "event_urn",
    "feed_updated",
    "feed_url",
    "feed_urn",
    "jinja_environment",
    "newest_first",
    "order_key",
    "render_atom",
    "render_feed",
    "render_json_feed",
    "render_opml",
    "render_rss",
    "sanitize_html",
    "topic_page_url",
]
