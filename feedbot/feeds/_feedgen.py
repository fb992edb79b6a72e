"""Atom and RSS 2.0 documents, written with feedgen.

The only module that imports feedgen: its getter/setter API stays in here, fed
from a :class:`~feedbot.feeds._view.FeedView`. Output is deterministic: the
generator element carries no version, ``updated``/``lastBuildDate`` come from the
view (never "now"), and entries keep the view's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from feedgen.feed import FeedGenerator

from feedbot.feeds._view import AUTHOR, GENERATOR, EntryView, FeedView

_ATOM_NS = "http://www.w3.org/2005/Atom"


def atom_document(view: FeedView) -> bytes:
    """RFC 4287 Atom, with RFC 5005 paging links."""
    fg = _generator(view, "application/atom+xml")
    fg.link([{"href": href, "rel": rel} for rel, href in view.paging])
    body: bytes = fg.atom_str(pretty=True, encoding="UTF-8", xml_declaration=True)
    return body


def rss_document(view: FeedView) -> bytes:
    """RSS 2.0; paging links go in as ``atom:link`` elements, as RFC 5005 allows."""
    fg = _generator(view, "application/rss+xml")
    body: bytes = fg.rss_str(pretty=True, encoding="UTF-8", xml_declaration=True)
    return body


def _generator(view: FeedView, self_type: str) -> Any:
    fg = FeedGenerator()
    fg.id(view.id)
    fg.title(view.title)
    fg.subtitle(view.description)
    fg.updated(view.updated)  # also RSS lastBuildDate
    fg.author(name=AUTHOR)
    fg.generator(GENERATOR)
    fg.link(href=view.self_url, rel="self", type=self_type)
    # Last, because feedgen takes the RSS channel <link> from the last link added.
    fg.link(href=view.html_url, rel="alternate", type="text/html")
    fg.register_extension("feedbot", partial(_FeedExtension, view.paging), _EntryExtension)
    for entry in view.entries:
        _add_entry(fg, entry)
    return fg


def _add_entry(fg: Any, entry: EntryView) -> None:
    fe = fg.add_entry(order="append")
    fe.id(entry.id)  # also the RSS guid, isPermaLink="false"
    fe.title(entry.title)
    fe.published(entry.published)  # also RSS pubDate
    fe.updated(entry.updated)
    fe.link(href=entry.url, rel="alternate", type="text/html")
    fe.content(entry.content_html, type="html")
    if entry.categories:
        fe.category([{"term": c.term, "label": c.label} for c in entry.categories])


class _FeedExtension:
    """feedgen feed extension (duck-typed): RSS gets the paging links Atom has.

    feedgen writes only the self link into an RSS channel.
    """

    def __init__(self, links: Sequence[tuple[str, str]]) -> None:
        self._links = links

    def extend_ns(self) -> dict[str, str]:
        return {}  # feedgen already declares the atom prefix in RSS

    def extend_rss(self, rss: Any) -> Any:
        channel = rss.find("channel")
        for rel, href in self._links:
            channel.append(channel.makeelement(f"{{{_ATOM_NS}}}link", {"rel": rel, "href": href}))
        return rss

    def extend_atom(self, feed: Any) -> Any:
        return feed


class _EntryExtension:
    """feedgen entry extension (duck-typed): an Atom entry link says what it is.

    feedgen 1.0 drops ``rel`` and ``type`` from entry links; a link without ``rel``
    means "alternate" in Atom, but readers and validators do better when told.
    """

    def extend_ns(self) -> dict[str, str]:
        return {}

    def extend_rss(self, item: Any) -> Any:
        return item

    def extend_atom(self, entry: Any) -> Any:
        for link in entry.iterfind("link"):
            if link.get("rel") is None:
                link.set("rel", "alternate")
                link.set("type", "text/html")
        return entry
