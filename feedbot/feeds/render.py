"""The public rendering functions: one feed page in, document bytes out.

Pure and deterministic -- no clock, no I/O, no store: the same arguments always
give the same bytes, so :func:`etag` of the body is a valid strong validator.
``events`` is one page (at most ``spec.page_size`` events, in any order; they are
sorted newest first here); ``total`` is the size of the whole feed, for paging.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial

from feedbot.feeds._feedgen import atom_document, rss_document
from feedbot.feeds._jsonfeed import json_feed_document
from feedbot.feeds._opml import opml_document
from feedbot.feeds._view import FeedView, build_view
from feedbot.feeds.spec import Deleted, FeedSpec
from feedbot.feeds.urls import FeedFormat
from feedbot.model import StoredEvent, Topic


def render_feed(
    fmt: FeedFormat,
    spec: FeedSpec,
    events: Sequence[StoredEvent],
    page: int,
    total: int,
    *,
    updated: datetime | None = None,
    deleted: Sequence[Deleted] = (),
) -> bytes:
    """Page ``page`` of ``spec``'s feed in ``fmt``: what a route serving
    ``<feed>.<ext>`` calls.

    ``deleted`` are events removed from the feed that it should tell of: an RFC
    6721 ``at:deleted-entry`` each in Atom, nothing in RSS and JSON Feed (which
    can only leave an entry out).
    The feed's ``updated`` is the latest ``updated`` of ``events`` and removal
    of ``deleted`` unless ``updated`` is given; a page with neither needs it given
    (a ValueError otherwise: no made-up date such as 1970 reaches a reader).
    Raises :class:`~feedbot.feeds.spec.PageOutOfRange` for a page that does not exist.
    """
    view = build_view(spec, events, page, total, fmt, updated=updated, deleted=deleted)
    return _DOCUMENTS[fmt](view)


_DOCUMENTS: dict[FeedFormat, Callable[[FeedView], bytes]] = {
    FeedFormat.ATOM: atom_document,
    FeedFormat.RSS: rss_document,
    FeedFormat.JSON: json_feed_document,
}

# One format each, for callers that know theirs.
render_atom = partial(render_feed, FeedFormat.ATOM)
render_rss = partial(render_feed, FeedFormat.RSS)
render_json_feed = partial(render_feed, FeedFormat.JSON)


def render_opml(
    topics: Sequence[tuple[Topic, int]], base_url: str, *, title: str = "feedbot topics"
) -> bytes:
    """OPML 2.0 listing the Atom feed of every ``(topic, event count)``, in the given order."""
    return opml_document(topics, base_url, title)


def etag(body: bytes) -> str:
    """A strong HTTP entity tag for ``body``: its quoted BLAKE2b-128 digest."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
