"""The WebSub hub's rules (W3C WebSub Recommendation), without I/O.

feedbot is its own hub: every feed names ``{base_url}/websub``, and a reader's
subscription request there is checked here (:func:`parse_hub_request`) before
anything is stored or fetched. What this module owns:

- which URLs are topics: exactly the feeds this instance serves (every event's, a
  topic's, a search's, in Atom, RSS or JSON Feed), named by their canonical URL
  (:class:`FeedTopic`), so a subscription and the ``rel="self"`` of the feed it
  follows are one string;
- the request's fields (mode, topic, callback, lease, secret) and their limits;
- the ``X-Hub-Signature`` of a push (:func:`hub_signature`) and the ``Link``
  header of a feed (:func:`link_header`).

Verification of intent, storing the subscription and pushing content are the web
layer's and the notifier's; a push is an ordinary delivery of the outbox, with
the subscription's format ``websub``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import parse_qsl, urlsplit

from feedbot.errors import RequestError
from feedbot.feeds.urls import HUB_PATH, FeedFormat, feed_url, search_feed_url
from feedbot.model import WEBSUB_FORMAT, WEBSUB_ORIGIN
from feedbot.search import BadQuery, SearchQuery

__all__ = [
    "HUB_PATH",
    "WEBSUB_FORMAT",
    "WEBSUB_ORIGIN",
    "FeedTopic",
    "HubMode",
    "HubRequest",
    "HubRequestError",
    "LeaseLimits",
]

MAX_SECRET_BYTES = 199  # "less than 200 bytes" (WebSub 5.1)
DEFAULT_LEASE_SECONDS = 10 * 86400
_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_FEED_PATH = re.compile(r"/feeds/(?:(all)|topics/([^/]+)|(search))\.(atom|rss|json)")


class HubMode(StrEnum):
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"


class HubRequestError(RequestError):
    """A request to the hub it cannot take: ``field`` is the ``hub.*`` parameter."""


@dataclass(frozen=True, slots=True)
class FeedTopic:
    """A feed as a WebSub topic: its format, and whose events it holds -- every
    event's (no slug, no query), one topic's (``slug``) or a search's (``query``)."""

    fmt: FeedFormat
    slug: str | None = None
    query: SearchQuery | None = None

    def url(self, base_url: str) -> str:
        """The feed's canonical URL: the ``rel="self"`` of its page 1."""
        if self.query is not None:
            return search_feed_url(base_url, self.query, self.fmt)
        return feed_url(base_url, self.slug, self.fmt)

    @property
    def path(self) -> str:
        """The canonical URL without the base: what a subscription stores."""
        return self.url("")

    @property
    def topics(self) -> tuple[str, ...]:
        """The topic slugs whose events it holds (``*``: any)."""
        if self.slug is not None:
            return (self.slug,)
        if self.query is not None and self.query.topics:
            return self.query.topics
        return ("*",)

    @property
    def words(self) -> tuple[str, ...]:
        """The words every event of it holds (a search's)."""
        return self.query.words if self.query is not None else ()


def parse_feed_path(path_and_query: str) -> FeedTopic:
    """The feed of a URL path with its query (``/feeds/topics/x.atom``), page 1
    only: a subscription follows a feed, not one of its older pages."""
    path, _, query_string = path_and_query.partition("?")
    match = _FEED_PATH.fullmatch(path)
    if match is None:
        raise HubRequestError("hub.topic", "not a feed of this hub (/feeds/...atom, .rss or .json)")
    every, slug, search, extension = match.groups()
    fmt = FeedFormat(extension)
    params = parse_qsl(query_string, keep_blank_values=True)
    if any(name == "page" for name, _ in params):
        raise HubRequestError("hub.topic", "subscribe to a feed's first page (no ?page=)")
    if search:
        try:
            query = SearchQuery.parse(
                next((v for n, v in params if n == "q"), ""),
                [v for n, v in params if n == "topic"],
            )
        except BadQuery as exc:
            raise HubRequestError("hub.topic", f"a search feed whose {exc}") from None
        return FeedTopic(fmt, query=query)
    if params:
        raise HubRequestError("hub.topic", "this feed takes no query parameters")
    if slug is not None and not _SLUG.fullmatch(slug):
        raise HubRequestError("hub.topic", f"{slug!r} is not a topic slug")
    return FeedTopic(fmt, slug=None if every else slug)


@dataclass(frozen=True, slots=True)
class LeaseLimits:
    """``hub.lease_seconds`` as the hub grants it: ``default`` when none is asked
    for, else what was asked, within ``minimum`` and ``maximum``."""

    default: int = DEFAULT_LEASE_SECONDS
    minimum: int = 3600
    maximum: int = 30 * 86400

    def grant(self, asked: int | None) -> int:
        wanted = self.default if asked is None else asked
        return max(self.minimum, min(self.maximum, wanted))


@dataclass(frozen=True, slots=True)
class HubRequest:
    """A subscription request, checked: ``topic_url`` is the canonical URL of
    ``topic`` under the hub's base, ``lease_seconds`` the lease granted."""

    mode: HubMode
    topic: FeedTopic
    topic_url: str
    callback: str
    lease_seconds: int
    secret: str | None

    def lease_end(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.lease_seconds)


def parse_hub_request(
    form: Mapping[str, str], base_url: str, limits: LeaseLimits = LeaseLimits()
) -> HubRequest:
    """The request of a ``POST /websub`` form, whose topic must be a feed served
    under ``base_url`` (scheme, host and port alike). The callback is only read
    here; whether feedbot may reach it is the caller's to check (the webhook URL
    rules and the SSRF guard). Raises :class:`HubRequestError`."""
    raw_mode = form.get("hub.mode", "")
    try:
        mode = HubMode(raw_mode)
    except ValueError:
        raise HubRequestError("hub.mode", "must be subscribe or unsubscribe") from None
    topic_url = form.get("hub.topic", "").strip()
    if not topic_url:
        raise HubRequestError("hub.topic", "missing")
    base = urlsplit(base_url.rstrip("/"))
    parts = urlsplit(topic_url)
    if (parts.scheme.lower(), parts.netloc.lower()) != (base.scheme, base.netloc.lower()) or (
        base.path and not parts.path.startswith(base.path + "/")
    ):
        raise HubRequestError(
            "hub.topic", f"not a feed of this hub: its feeds are under {base_url.rstrip('/')}/"
        )
    path = parts.path[len(base.path) :]
    topic = parse_feed_path(path + (f"?{parts.query}" if parts.query else ""))
    callback = form.get("hub.callback", "").strip()
    if not callback:
        raise HubRequestError("hub.callback", "missing")
    raw_lease = form.get("hub.lease_seconds", "").strip()
    asked = None
    if raw_lease:
        if not raw_lease.isdigit() or len(raw_lease) > 12:
            raise HubRequestError("hub.lease_seconds", "must be a whole number of seconds")
        asked = int(raw_lease)
    secret = form.get("hub.secret")
    if secret is not None and len(secret.encode("utf-8")) > MAX_SECRET_BYTES:
        raise HubRequestError("hub.secret", f"must be less than {MAX_SECRET_BYTES + 1} bytes")
    return HubRequest(
        mode=mode,
        topic=topic,
        topic_url=topic.url(base_url),
        callback=callback,
        lease_seconds=limits.grant(asked),
        secret=secret or None,
    )


def hub_signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature`` of a push: ``sha256=`` and the hex HMAC-SHA256 of the
    body keyed with the subscriber's ``hub.secret``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def link_header(hub_url: str, self_url: str) -> str:
    """The ``Link`` header every feed (and every push) carries: the hub, and the
    feed's own URL."""
    return f'<{hub_url}>; rel="hub", <{self_url}>; rel="self"'
