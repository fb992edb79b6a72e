"""OPML 2.0 subscription lists (http://opml.org/spec2.opml), for import into readers.

Written a piece at a time -- the head, the outlines of a chunk of topics, the
tail -- so a list of tens of thousands of topics is never one string: the web app
streams it as it reads the topics (:func:`feedbot.feeds.documents.opml_chunks`),
and the pieces joined are :func:`opml_document`. The markup is what
:mod:`xml.etree.ElementTree` writes (indented, attributes in a fixed order),
escaped the same way; it does not refuse characters XML forbids, so every string
is made XML-safe first. The ``text``, ``title`` and ``description`` of OPML 2.0
may hold HTML, so topic names go in HTML-escaped (a name "<b>" is shown as
written, not in bold). No ``dateCreated``: the same topics always give the same
bytes.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from feedbot.feeds._text import xml_safe
from feedbot.feeds.spec import FeedSpec
from feedbot.model import Topic

OPML_TAIL = b"  </body>\n</opml>\n"


def opml_head(title: str) -> bytes:
    """The document up to its first outline."""
    shown = _text(html.escape(xml_safe(title), quote=False))
    return (
        "<?xml version='1.0' encoding='utf-8'?>\n"
        '<opml version="2.0">\n'
        f"  <head>\n    <title>{shown}</title>\n  </head>\n  <body>\n"
    ).encode()


def opml_outlines(topics: Iterable[tuple[Topic, int]], base_url: str) -> bytes:
    """The outlines of ``(topic, event count)``, in the given order."""
    return _outlines((FeedSpec.for_topic(topic, base_url), count) for topic, count in topics)


def opml_no_topics(base_url: str) -> bytes:
    """The body of a list with no topics yet. OPML 2.0: a body holds one or more
    outlines; the one feed there is to subscribe to is every event's."""
    return _outlines([(FeedSpec.all_events(base_url), 0)])


def opml_document(topics: Sequence[tuple[Topic, int]], base_url: str, title: str) -> bytes:
    body = opml_outlines(topics, base_url) if topics else opml_no_topics(base_url)
    return opml_head(title) + body + OPML_TAIL


def _outlines(listed: Iterable[tuple[FeedSpec, int]]) -> bytes:
    lines = []
    for spec, count in listed:
        name = _attribute(html.escape(xml_safe(spec.title) or spec.feed_id, quote=False))
        # "rss": OPML 2.0's type for any feed subscription, Atom included.
        lines.append(
            f'    <outline type="rss" text="{name}" title="{name}"'
            f' description="{count} event{"" if count == 1 else "s"}"'
            f' xmlUrl="{_attribute(spec.url())}" htmlUrl="{_attribute(spec.html_url)}" />\n'
        )
    return "".join(lines).encode()


def _text(value: str) -> str:
    """Character data, escaped as ElementTree escapes it."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attribute(value: str) -> str:
    """An attribute value in double quotes, escaped as ElementTree escapes it."""
    return (
        _text(value)
        .replace('"', "&quot;")
        .replace("\r", "&#13;")
        .replace("\n", "&#10;")
        .replace("\t", "&#09;")
    )
