"""Atom and RSS 2.0 documents, written with feedgen.

The only module that imports feedgen: its getter/setter API stays in here, fed
from a :class:`~feedbot.feeds._view.FeedView`. Output is deterministic: the
generator element carries no version, ``updated``/``lastBuildDate`` come from the
view (never "now"), and entries keep the view's order.

Text that a reader could take for markup. Archive titles are plain text, and may
hold ``<`` or ``&`` (``"<script>"``, ``"AT&T"``). Each format says what such text
is in its own way, chosen so that readers show the text as written and the W3C
Feed Validator has nothing to warn about:

- Atom: a text construct holding ``<`` or ``&`` is written as ``type="html"``
  with the text HTML-escaped (RFC 4287 section 3.1.1.2), which says outright
  that no markup is meant; other text stays ``type="text"`` (the default).
- RSS 2.0 has no type attribute and readers treat titles and descriptions as
  HTML, so a title (or the channel description) holding ``<`` or ``&`` is
  HTML-escaped, and written with hexadecimal character references (``&#x26;``)
  as the RSS Advisory Board's RSS Profile recommends for such characters.
- Names that no format lets declare as HTML -- author names, category labels --
  are plain text that the validator still warns about when they look like an
  HTML end tag (``</b>``), an entity (``&amp;``) or an ``<e-mail address>``.
  Only in such a name are ``<``, ``>`` and ``&`` shown as the look-alikes
  ``‹``, ``›`` and ``＆`` (:func:`plain`); JSON Feed keeps the text as it is.

Removed events. An Atom page that tells of removed events carries an RFC 6721
``at:deleted-entry`` for each (``ref`` the entry id, ``when`` the removal),
written by a feedgen extension (:class:`_Tombstones`) before the entries, where
RFC 4287's grammar puts extension elements of a feed. The tombstones namespace
is declared only in a document that holds one.
"""

from __future__ import annotations

import html
import html.entities
import re
from collections.abc import Sequence
from functools import partial
from typing import Any

from feedgen.ext.base import BaseExtension
from feedgen.feed import FeedGenerator

from feedbot.feeds._view import AUTHOR, GENERATOR, DeletedView, EntryView, FeedView

_ATOM_NS = "http://www.w3.org/2005/Atom"
_DC_NS = "http://purl.org/dc/elements/1.1/"
TOMBSTONES_NS = "http://purl.org/atompub/tombstones/1.0"  # RFC 6721
_MARKUP_LIKE = re.compile("[<&]")
_TEXT_CONSTRUCTS = ("title", "subtitle", "summary", "rights")
# A text-only <title> as lxml writes it (it never writes a raw "<" in text).
_RSS_TITLE = re.compile(rb"<title>([^<]*)</title>")
_RSS_CHANNEL_DESCRIPTION = re.compile(rb"<description>([^<]*)</description>")
_HEX_REFERENCES = {b"&amp;": b"&#x26;", b"&lt;": b"&#x3C;", b"&gt;": b"&#x3E;"}
_XML_ESCAPE = re.compile(rb"&(?:amp|lt|gt);")


def atom_document(view: FeedView) -> bytes:
    """RFC 4287 Atom, with RFC 5005 paging links."""
    fg = _generator(view, "application/atom+xml")
    fg.link([{"href": href, "rel": rel} for rel, href in view.paging])
    body: bytes = fg.atom_str(pretty=True, encoding="UTF-8", xml_declaration=True)
    return _with_stylesheet(body, view.stylesheet_url)


def rss_document(view: FeedView) -> bytes:
    """RSS 2.0; paging links go in as ``atom:link`` elements, as RFC 5005 allows."""
    fg = _generator(view, "application/rss+xml")
    body: bytes = fg.rss_str(pretty=True, encoding="UTF-8", xml_declaration=True)
    # Item descriptions are HTML and stay as lxml escapes them; only the
    # channel's own description (before the first item) is text made HTML.
    head, item, items = body.partition(b"<item>")
    head = _RSS_CHANNEL_DESCRIPTION.sub(partial(_hex_references, b"description"), head, count=1)
    body = _RSS_TITLE.sub(partial(_hex_references, b"title"), head + item + items)
    return _with_stylesheet(body, view.stylesheet_url)


def _with_stylesheet(body: bytes, href: str) -> bytes:
    """``body`` with an ``<?xml-stylesheet?>`` processing instruction after its XML
    declaration: a browser shows the document through that XSLT as a page, and
    feed readers, which do not apply stylesheets, ignore it. lxml can write a
    processing instruction only inside the root element, where it would do
    nothing, so it goes into the serialised bytes."""
    declaration, newline, rest = body.partition(b"\n")
    if not declaration.startswith(b"<?xml ") or not newline:
        raise ValueError("feedgen wrote no XML declaration line")
    pi = f'<?xml-stylesheet type="text/xsl" href="{html.escape(href, quote=True)}"?>'
    return declaration + newline + pi.encode("utf-8") + newline + rest


def _hex_references(tag: bytes, element: re.Match[bytes]) -> bytes:
    text = _XML_ESCAPE.sub(lambda m: _HEX_REFERENCES[m.group()], element.group(1))
    return b"<%s>%s</%s>" % (tag, text, tag)


def _rss_text(text: str) -> str:
    return html.escape(text, quote=False) if _MARKUP_LIKE.search(text) else text


# What the validator takes for markup in plain text: an end tag, an entity
# (named, or numeric), an e-mail address in angle brackets.
_END_TAG = re.compile(r"</\w+>")
_ENTITY = re.compile(r"&(#?\w+)")
_BRACKETED_ADDRESS = re.compile(r"<[^<>@\s]+@[^<>\s]+>")
_LOOK_ALIKES = str.maketrans({"<": "\u2039", ">": "\u203a", "&": "\uff06"})


def plain(text: str) -> str:
    """``text``, or when it looks like markup, with look-alike characters for
    ``<``, ``>`` and ``&``: for names that no format can declare as text."""
    entity = any(
        name in html.entities.name2codepoint or name == "apos" or not name.isalpha()
        for name in _ENTITY.findall(text)
    )
    if entity or _END_TAG.search(text) or _BRACKETED_ADDRESS.search(text):
        return text.translate(_LOOK_ALIKES)
    return text


def _generator(view: FeedView, self_type: str) -> Any:
    rss = self_type == "application/rss+xml"
    fg = FeedGenerator()
    fg.id(view.id)
    fg.title(_rss_text(view.title) if rss else view.title)
    fg.subtitle(_rss_text(view.description) if rss else view.description)
    fg.updated(view.updated)  # also RSS lastBuildDate
    fg.author(name=AUTHOR)
    fg.generator(GENERATOR)
    fg.link(href=view.self_url, rel="self", type=self_type)
    if view.hub_url is not None and not rss:
        fg.link(href=view.hub_url, rel="hub")
    # Last, because feedgen takes the RSS channel <link> from the last link added.
    fg.link(href=view.html_url, rel="alternate", type="text/html")
    fg.register_extension(
        "feedbot_atom", _AtomFeedExtension, _AtomEntryExtension, atom=True, rss=False
    )
    fg.register_extension(
        "feedbot_rss",
        partial(
            _RssFeedExtension,
            (*(() if view.hub_url is None else (("hub", view.hub_url),)), *view.paging),
        ),
        _RssEntryExtension,
        atom=False,
        rss=True,
    )
    if view.deleted and not rss:
        fg.register_extension(
            "feedbot_tombstones", partial(_Tombstones, view.deleted), None, atom=True, rss=False
        )
    for entry in view.entries:
        _add_entry(fg, entry, rss=rss)
    return fg


def _add_entry(fg: Any, entry: EntryView, *, rss: bool) -> None:
    fe = fg.add_entry(order="append")
    fe.id(entry.id)  # also the RSS guid, isPermaLink="false"
    fe.title(_rss_text(entry.title) if rss else entry.title)
    fe.published(entry.published)  # also RSS pubDate
    fe.updated(entry.updated)
    # Names only: RSS <author> must be an e-mail address, so RSS gets dc:creator.
    authors = tuple(plain(name) for name in entry.authors)
    fe.author([{"name": name} for name in authors])
    fe.feedbot_rss.authors = authors
    fe.link(href=entry.url, rel="alternate", type="text/html")
    fe.content(entry.content_html, type="html")
    if entry.categories:
        fe.category([{"term": c.term, "label": plain(c.label)} for c in entry.categories])


def _declare_html(parent: Any) -> None:
    """Atom text constructs among ``parent``'s children that hold ``<`` or ``&``
    become ``type="html"``, their text HTML-escaped: the same text, said to be
    no markup."""
    for name in _TEXT_CONSTRUCTS:
        for element in parent.iterfind(name):
            text = element.text or ""
            if element.get("type", "text") == "text" and _MARKUP_LIKE.search(text):
                element.set("type", "html")
                element.text = html.escape(text, quote=False)


class _AtomFeedExtension:
    """feedgen feed extension (duck-typed) for Atom documents."""

    def extend_ns(self) -> dict[str, str]:
        return {}

    def extend_atom(self, feed: Any) -> Any:
        _declare_html(feed)
        return feed


class _AtomEntryExtension:
    """feedgen entry extension (duck-typed) for Atom entries.

    feedgen 1.0 drops ``rel`` and ``type`` from entry links; a link without ``rel``
    means "alternate" in Atom, but readers and validators do better when told.
    """

    def extend_ns(self) -> dict[str, str]:
        return {}

    def extend_atom(self, entry: Any) -> Any:
        for link in entry.iterfind("link"):
            if link.get("rel") is None:
                link.set("rel", "alternate")
                link.set("type", "text/html")
        _declare_html(entry)
        return entry


class _Tombstones(BaseExtension):  # type: ignore[misc]
    """feedgen feed extension: an RFC 6721 ``at:deleted-entry`` per removed event.

    feedgen calls ``extend_atom`` before it appends the entries, so the
    tombstones come first, as RFC 4287's grammar wants a feed's extension elements.
    """

    def __init__(self, deleted: Sequence[DeletedView]) -> None:
        self._deleted = deleted

    def extend_ns(self) -> dict[str, str]:
        return {"at": TOMBSTONES_NS}

    def extend_atom(self, feed: Any) -> Any:
        for gone in self._deleted:
            # As feedgen writes atom:updated: RFC 3339, with the offset.
            attributes = {"ref": gone.ref, "when": gone.when.isoformat()}
            feed.append(feed.makeelement(f"{{{TOMBSTONES_NS}}}deleted-entry", attributes))
        return feed


class _RssFeedExtension:
    """feedgen feed extension (duck-typed): RSS gets the hub and paging links Atom
    has, as ``atom:link`` elements.

    feedgen writes only the self link into an RSS channel.
    """

    def __init__(self, links: Sequence[tuple[str, str]]) -> None:
        self._links = links

    def extend_ns(self) -> dict[str, str]:
        # feedgen already declares the atom prefix in RSS.
        return {"dc": _DC_NS}

    def extend_rss(self, rss: Any) -> Any:
        channel = rss.find("channel")
        for rel, href in self._links:
            channel.append(channel.makeelement(f"{{{_ATOM_NS}}}link", {"rel": rel, "href": href}))
        return rss


class _RssEntryExtension:
    """feedgen entry extension (duck-typed): an item's authors as ``dc:creator``."""

    def __init__(self) -> None:
        self.authors: tuple[str, ...] = ()

    def extend_ns(self) -> dict[str, str]:
        return {}

    def extend_rss(self, item: Any) -> Any:
        for name in self.authors:
            creator = item.makeelement(f"{{{_DC_NS}}}creator", {})
            creator.text = name
            item.append(creator)
        return item
