"""Every id and URL feedbot publishes, in one place.

Ids are ``urn:uuid:`` URNs (RFC 9562 version 5, name-based) of the event id or
topic slug alone, never of the host, base URL, title or time, so a reader never
sees an entry twice after a move. Version 5 UUIDs are valid URNs that readers and
the W3C Feed Validator accept whatever characters the event id holds, and need no
domain name that feedbot would have to own (as ``tag:`` URIs would, RFC 4151).
URLs are ``base_url`` plus a fixed path; the web layer routes the same paths:

===============================================  ==============================
``/feeds/all.<ext>[?page=N]``                    every event (``ext``: atom, rss, json)
``/feeds/topics/<slug>.<ext>[?page=N]``          one topic's events
``/feeds/search.<ext>?q=..[&topic=..][&page=N]`` the events holding every word
``/[?page=N]``                                   the latest events (HTML)
``/topics[?q=..][&page=N]``                      the HTML topic list (filtered)
``/topics/<slug>[?page=N]``                      one topic's events (HTML)
``/search?q=..[&topic=..][&page=N]``             search results (HTML)
``/events/<event id>``                           the HTML page of one event
``/feed.xsl``, ``/site.css``                     the feeds' stylesheet, the pages' style
===============================================  ==============================

Page 1 of a feed has no ``page`` parameter, so the URL people subscribe to is the
one that carries the newest entries. A search URL names the query in its
normalised form (:class:`~feedbot.search.SearchQuery`): the words as matched, the
topics sorted, so one query has one URL and one feed id however it was typed.

With no ``server.base_url`` configured, the web app roots each response's links at
the ``Host`` its request named (:func:`base_from_host`), so a container listening
on 0.0.0.0 still hands out links its readers can follow.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import uuid
from enum import StrEnum
from urllib.parse import quote, urlencode

from feedbot.search import SearchQuery

# The namespace of every id feedbot mints: uuid5(NAMESPACE_URL,
# "https://feedbot.invalid/ns/entries"). Fixed for ever: changing it, or the names
# below, would show every entry to every reader again.
ID_NAMESPACE = uuid.UUID("30c3a90a-e620-5800-8288-3ed7c7ac027d")
# RFC 3986 pchar plus "/", so ordinary ids stay readable; everything else is
# percent-encoded (lone surrogates too, which UTF-8 cannot otherwise carry).
_PATH_SAFE = "/:@!$&'()*+,;=~"


class FeedFormat(StrEnum):
    """A feed format, named by its file extension."""

    ATOM = "atom"
    RSS = "rss"
    JSON = "json"

    @property
    def media_type(self) -> str:
        return _MEDIA_TYPES[self]


_MEDIA_TYPES = {
    FeedFormat.ATOM: "application/atom+xml; charset=utf-8",
    FeedFormat.RSS: "application/rss+xml; charset=utf-8",
    FeedFormat.JSON: "application/feed+json; charset=utf-8",
}
OPML_MEDIA_TYPE = "text/x-opml; charset=utf-8"


# RFC 3986 host = IP-literal / IPv4address / reg-name. A reg-name may also hold
# sub-delims and percent-escapes; no real Host does, and a link built from one
# would be odd at best, so only unreserved characters are taken (an IPv4
# address is one such name). 253: the longest DNS name.
_REG_NAME = re.compile(r"[A-Za-z0-9._~-]{1,253}")
_PORT = re.compile(r"[0-9]{0,5}")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _quote(text: str) -> str:
    return quote(text, safe=_PATH_SAFE, errors="surrogatepass")


def _base(base_url: str) -> str:
    return base_url.rstrip("/")


def _uuid5_urn(name: str) -> str:
    # uuid.uuid5 itself, but encoding with surrogatepass: an id read from a file
    # name that is not UTF-8 may hold lone surrogates, and still needs an id.
    digest = hashlib.sha1(ID_NAMESPACE.bytes + name.encode("utf-8", "surrogatepass"))
    return uuid.UUID(bytes=digest.digest()[:16], version=5).urn


def event_urn(event_id: str) -> str:
    """The Atom id / RSS guid / JSON Feed id of an event's entry."""
    return _uuid5_urn("event:" + event_id)


def feed_urn(slug: str | None) -> str:
    """The id of the feed of topic ``slug``, or of every event when ``None``."""
    return _uuid5_urn("feed:all" if slug is None else "feed:topic:" + slug)


def event_url(base_url: str, event_id: str) -> str:
    """The public HTML page of an event."""
    return f"{_base(base_url)}/events/{_quote(event_id)}"


def search_feed_urn(query: SearchQuery) -> str:
    """The id of the search feed of ``query`` (its normalised form: one id per query)."""
    return _uuid5_urn("feed:search:" + query.key)


def feed_url(
    base_url: str, slug: str | None, fmt: FeedFormat = FeedFormat.ATOM, page: int = 1
) -> str:
    """The URL of one page of a feed; page 1 is the bare, subscribable URL."""
    path = "/feeds/all" if slug is None else f"/feeds/topics/{_quote(slug)}"
    return f"{_base(base_url)}{path}.{fmt.value}{_page_query(page)}"


def search_feed_url(
    base_url: str, query: SearchQuery, fmt: FeedFormat = FeedFormat.ATOM, page: int = 1
) -> str:
    """The URL of one page of the search feed of ``query``."""
    return f"{_base(base_url)}/feeds/search.{fmt.value}?{_search_query(query, page)}"


def search_page_url(base_url: str, query: SearchQuery, page: int = 1) -> str:
    """The HTML results of ``query``."""
    return f"{_base(base_url)}/search?{_search_query(query, page)}"


def _search_query(query: SearchQuery, page: int) -> str:
    pairs = [("q", query.text), *(("topic", slug) for slug in query.topics)]
    if page != 1:
        pairs.append(("page", str(page)))
    return urlencode(pairs, quote_via=quote)


def _page_query(page: int) -> str:
    return "" if page == 1 else f"?page={page}"


def home_url(base_url: str, page: int = 1) -> str:
    """The latest events (``/``), the page the feed of every event is the feed *of*."""
    return f"{_base(base_url)}/{_page_query(page)}"


def topics_url(base_url: str, page: int = 1, query: str = "") -> str:
    """One page of the HTML list of every topic, or of those a filter (its
    normalised ``query``: :class:`~feedbot.search.TopicFilter`) keeps."""
    pairs = [("q", query)] if query else []
    if page != 1:
        pairs.append(("page", str(page)))
    return f"{_base(base_url)}/topics" + (f"?{urlencode(pairs, quote_via=quote)}" if pairs else "")


def topic_page_url(base_url: str, slug: str | None, page: int = 1) -> str:
    """The HTML page a feed is the feed *of*: a topic's events, or for ``None``
    (every event) the latest events."""
    if slug is None:
        return home_url(base_url, page)
    return f"{_base(base_url)}/topics/{_quote(slug)}{_page_query(page)}"


HUB_PATH = "/websub"


def hub_url(base_url: str) -> str:
    """The WebSub hub every feed names (``rel="hub"``)."""
    return _base(base_url) + HUB_PATH


STYLESHEET_PATH = "/feed.xsl"
SITE_CSS_PATH = "/site.css"


def stylesheet_url(base_url: str) -> str:
    """The XSLT that lets a browser show a feed as a page (``<?xml-stylesheet?>``)."""
    return _base(base_url) + STYLESHEET_PATH


def base_from_host(host: str, scheme: str = "http") -> str | None:
    """``scheme://host[:port]`` for a request's ``Host`` header, lowercased and
    without the scheme's default port; ``None`` when the header is not a
    ``host[:port]`` of the URL grammar (a path, user info, a bad port, an IPv6
    address without brackets), so the caller falls back to a configured URL."""
    if host.startswith("["):
        literal, bracket, port = host[1:].partition("]")
        # No zone ids ("%eth0"): they mean nothing off this machine.
        if "%" in literal:
            return None
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return None
        if not bracket or (port and not port.startswith(":")):
            return None
        name, port = f"[{literal}]", port[1:]
    else:
        name, _, port = host.partition(":")
        if _REG_NAME.fullmatch(name) is None:
            return None
    if _PORT.fullmatch(port) is None or (port and int(port) > 65535):
        return None
    if port == _DEFAULT_PORTS.get(scheme):
        port = ""
    return f"{scheme}://{name.lower()}" + (f":{int(port)}" if port else "")


def is_wildcard_host(host: str) -> bool:
    """Whether listening on ``host`` means every address (``0.0.0.0``, ``::``):
    an address that no reader can reach, so no base for links."""
    try:
        return not host or ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False
