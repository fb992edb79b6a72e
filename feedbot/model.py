"""The domain model: what an event, its sources, its related events and its topics are.

Plain frozen dataclasses, no I/O and no imports from the rest of feedbot but the
pure :mod:`feedbot.search` (an :class:`EventRecord` carries what the search index
holds of it), so every other package can depend on this one. ``Event.to_json()``
is the event object of the README (the ``data.event`` of a webhook body, without
``url``); ``Event.from_json()`` reads it back (the store keeps events in that form).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import orjson
from unidecode import unidecode

from feedbot.search import index_document, search_document, words_of

_NOT_SLUG = re.compile(r"[^a-z0-9]+")
# The longest topic slug: its feed URL must stay a reasonable URL. Far above any real
# topic (the sample archive's longest is under 60); the parser rejects a page over it.
MAX_SLUG_CHARS = 200


# The common topic names repeat across thousands of events. Few entries: each parse
# worker holds its own, and 65,536 of them (an archive of 87,000 topics fills
# that) took 17 MB of each; an uncached name costs 3-20 us.
@lru_cache(maxsize=4096)
def slugify(name: str) -> str:
    """The topic slug of a name, as README: "The archive format" describes it.

    ``"Côte d'Ivoire"`` -> ``"cote-d-ivoire"``; ``"Straße"`` -> ``"strasse"``.
    May return ``""`` for a name with no letters or digits at all.
    """
    ascii_name = name if name.isascii() else unidecode(name)
    return _NOT_SLUG.sub("-", ascii_name.lower()).strip("-")


class RelatedKind(StrEnum):
    FOLLOW_UP = "follow_up"
    BACKGROUND = "background"


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    slug: str

    @classmethod
    def named(cls, name: str) -> Topic:
        return cls(name=name, slug=slugify(name))


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    url: str


@dataclass(frozen=True, slots=True)
class Related:
    id: str
    date: date
    title: str
    contexts: tuple[str, ...]
    kind: RelatedKind


@dataclass(frozen=True, slots=True)
class Event:
    """One archive page, parsed.

    ``id`` is the page's path under ``news/`` without its extension
    (``2007/07/9/lal-masjid-siege-...``); it never changes.
    """

    id: str
    date: date
    story: str | None
    title: str
    sources: tuple[Source, ...] = ()
    related: tuple[Related, ...] = ()
    topics: tuple[Topic, ...] = field(default=())

    @property
    def topic_slugs(self) -> tuple[str, ...]:
        return tuple(topic.slug for topic in self.topics)

    def follow_ups(self) -> tuple[Related, ...]:
        return tuple(r for r in self.related if r.kind is RelatedKind.FOLLOW_UP)

    def background(self) -> tuple[Related, ...]:
        return tuple(r for r in self.related if r.kind is RelatedKind.BACKGROUND)

    def map_text(self, clean: Callable[[str], str]) -> Event:
        """A copy with every display string (story, title, source names and URLs,
        related titles and contexts, topic names) passed through ``clean``. Ids,
        dates and slugs are left alone: receivers match on them."""
        return replace(
            self,
            story=None if self.story is None else clean(self.story),
            title=clean(self.title),
            sources=tuple(Source(clean(s.name), clean(s.url)) for s in self.sources),
            related=tuple(
                replace(r, title=clean(r.title), contexts=tuple(clean(c) for c in r.contexts))
                for r in self.related
            ),
            topics=tuple(Topic(clean(t.name), t.slug) for t in self.topics),
        )

    def to_json(self) -> dict[str, Any]:
        """The event object (README: "The archive format")."""
        return {
            "id": self.id,
            "date": self.date.isoformat(),
            "story": self.story,
            "title": self.title,
            "sources": [{"name": s.name, "url": s.url} for s in self.sources],
            "related": [
                {
                    "id": r.id,
                    "date": r.date.isoformat(),
                    "title": r.title,
                    "contexts": list(r.contexts),
                    "kind": r.kind.value,
                }
                for r in self.related
            ],
            "topics": [{"name": t.name, "slug": t.slug} for t in self.topics],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        return cls(
            id=data["id"],
            date=date.fromisoformat(data["date"]),
            story=data["story"],
            title=data["title"],
            sources=tuple(Source(s["name"], s["url"]) for s in data["sources"]),
            related=tuple(
                Related(
                    id=r["id"],
                    date=date.fromisoformat(r["date"]),
                    title=r["title"],
                    contexts=tuple(r["contexts"]),
                    kind=RelatedKind(r["kind"]),
                )
                for r in data["related"]
            ),
            topics=tuple(Topic(t["name"], t["slug"]) for t in data["topics"]),
        )

    def canonical_json(self) -> str:
        """The event object as compact JSON, the same text for the same event."""
        return canonical_json(self.to_json())

    @classmethod
    def from_canonical_json(cls, text: str | bytes) -> Event:
        """The event whose :meth:`canonical_json` is ``text`` (as the store keeps it)."""
        return cls.from_json(orjson.loads(text))

    def content_hash(self) -> str:
        """A digest of everything a reader sees of the event.

        Two parses of pages that differ only in noise (CRLF, BOM, blank lines,
        trailing spaces) hash the same, so ``updated`` moves only on real changes.
        """
        return content_hash(self.canonical_json())


def is_web_url(url: str) -> bool:
    """Whether an archive-given URL may become a link: http(s) only, never
    ``javascript:``, ``data:`` or a relative path."""
    return urlsplit(url.strip()).scheme.lower() in ("http", "https")


def event_key(event_id: str) -> int:
    """A 64-bit integer standing for an event id in the store's link tables.

    Derived from the id alone (no lookup, the same on every replica), and eight
    bytes instead of the id's ~150 in every index row; a collision among 64-bit
    hashes is vanishingly unlikely at archive sizes (about 1e-9 at 100 million).
    """
    digest = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def canonical_json(data: Any) -> str:
    """Compact JSON with characters beyond ASCII left as they are.

    orjson writes exactly what ``json.dumps(data, ensure_ascii=False,
    separators=(",", ":"))`` does (content hashes stored by either match), four
    times faster; only a lone surrogate, which no parsed page holds, needs the
    standard library.
    """
    try:
        return orjson.dumps(data).decode()
    except orjson.JSONEncodeError:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def content_hash(canonical_json: str) -> str:
    return hashlib.blake2b(canonical_json.encode(), digest_size=16).hexdigest()


def search_text(event: Event) -> str:
    """What the search index holds of ``event``: its words
    (:func:`feedbot.search.search_document`) and its topics' tokens
    (:func:`feedbot.search.index_document`)."""
    return index_document(_search_document(event), event.topic_slugs)


def _search_document(event: Event) -> str:
    return search_document(
        event.title, event.story, [t.name for t in event.topics], [s.name for s in event.sources]
    )


@lru_cache(maxsize=1024)
def event_words(event: Event) -> frozenset[str]:
    """The words search finds ``event`` by (:func:`feedbot.search.search_document`),
    for a subscription that wants events holding certain words. Kept for the
    last events asked: a batch asks once per subscription."""
    return frozenset(_search_document(event).split())


def holds_keyword(held: frozenset[str], keyword: str) -> bool:
    """Whether an event whose :func:`event_words` are ``held`` holds ``keyword``:
    each of its words, whole (``"red mosque"``: both words, anywhere in it)."""
    words = keyword_words(keyword)
    return bool(words) and all(word in held for word in words)


@lru_cache(maxsize=4096)
def keyword_words(keyword: str) -> tuple[str, ...]:
    """The words of a subscription's keyword, normalised as search normalises."""
    return tuple(words_of(keyword))


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the store knows it: when it was first seen, when it last changed.

    ``updated`` moves only when the event's content hash changes, so feed readers
    see an entry as updated only when something they can read changed.
    """

    event: Event
    first_seen: datetime
    updated: datetime


class AlertKind(StrEnum):
    """What a delivery is about. For the first three, what happened to an event
    that a subscription may be told about: the webhook ``type`` is
    ``event.<kind>``, and a subscription's ``events`` lists the kinds it wants
    (default: created only; see :data:`EVENT_KINDS`). A digest subscription gets
    one ``digest.created`` per period instead; the operator gets notices."""

    CREATED = "created"  # a new event
    UPDATED = "updated"  # a stored event's content changed (it keeps its id)
    DELETED = "deleted"  # an event left the archive (a tombstone)
    DIGEST = "digest"  # one period's new events, for a digest subscription
    NOTICE = "notice"  # an operator notice (NoticeKind)


# The kinds a subscription's ``events`` may name.
EVENT_KINDS = (AlertKind.CREATED, AlertKind.UPDATED, AlertKind.DELETED)
DIGEST_TYPE = "digest.created"
# The most events one digest lists; the rest are "and N more", behind a feed link.
DIGEST_MAX_EVENTS = 50


@dataclass(frozen=True, slots=True)
class DigestItem:
    """One event of a digest and the subscription's topics it matched."""

    event: Event
    matched_topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Digest:
    """One period's new events for one digest subscription.

    ``items`` are newest first (event date, then first seen), at most
    :data:`DIGEST_MAX_EVENTS`; ``total`` counts every event of the period, so
    ``more`` are left out. ``feed_url`` is the feed that holds them all (the
    subscription's topic feed, or the feed of every event)."""

    period_start: datetime
    period_end: datetime
    items: tuple[DigestItem, ...]
    total: int
    feed_url: str

    @property
    def more(self) -> int:
        return self.total - len(self.items)

    def by_topic(self) -> list[tuple[Topic | None, tuple[DigestItem, ...]]]:
        """The items grouped under the first topic each matched (None: under no
        topic), groups in the order of their newest item, items newest first."""
        groups: dict[str, list[DigestItem]] = {}
        names: dict[str, Topic] = {}
        for item in self.items:
            slug = item.matched_topics[0] if item.matched_topics else ""
            groups.setdefault(slug, []).append(item)
            if slug and slug not in names:
                named = next((t for t in item.event.topics if t.slug == slug), None)
                names[slug] = named or Topic(slug, slug)
        return [(names.get(slug), tuple(group)) for slug, group in groups.items()]


class NoticeKind(StrEnum):
    """What an operator notice (``notify.operator``) is about; its webhook ``type``."""

    SUBSCRIPTION_DISABLED = "subscription.disabled"
    DELIVERY_EXHAUSTED = "delivery.exhausted"


@dataclass(frozen=True, slots=True)
class Notice:
    """An operator notice: a subscription was disabled (410, failures for too
    long, a broken template), or a delivery ran out of retries and is in the
    failed list. ``subscription_url`` is already redacted."""

    kind: NoticeKind
    occurred_at: datetime
    subscription_id: str
    subscription_url: str
    subscription_format: str
    reason: str
    delivery_id: str | None = None  # of delivery.exhausted
    event_id: str | None = None
    attempts: int | None = None
    last_status: int | None = None  # the last answer's HTTP status, if any
    last_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``data`` of the notice's JSON body."""
        data: dict[str, Any] = {
            "subscription": {
                "id": self.subscription_id,
                "url": self.subscription_url,
                "format": self.subscription_format,
            },
            "reason": self.reason,
            "last_response": {"status": self.last_status, "error": self.last_error},
        }
        if self.delivery_id is not None:
            data["delivery"] = {
                "id": self.delivery_id,
                "event_id": self.event_id,
                "attempts": self.attempts,
            }
        return data

    @classmethod
    def from_json(cls, kind: str, occurred_at: datetime, data: dict[str, Any]) -> Notice:
        delivery = data.get("delivery") or {}
        return cls(
            kind=NoticeKind(kind),
            occurred_at=occurred_at,
            subscription_id=data["subscription"]["id"],
            subscription_url=data["subscription"]["url"],
            subscription_format=data["subscription"]["format"],
            reason=data["reason"],
            delivery_id=delivery.get("id"),
            event_id=delivery.get("event_id"),
            attempts=delivery.get("attempts"),
            last_status=data["last_response"]["status"],
            last_error=data["last_response"]["error"],
        )


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its first or next attempt
    DONE = "done"  # a 2xx arrived
    FAILED = "failed"  # the retry schedule ran out, or the subscription went away


# A reader's subscription through the WebSub hub (feedbot.websub) is stored as a
# subscription of this format and origin.
WEBSUB_FORMAT = "websub"
WEBSUB_ORIGIN = "websub"
# The operator's notices (notify.operator) go through the outbox to a
# subscription of this origin and id, kept from the config; it matches no event.
OPERATOR_ORIGIN = "operator"
OPERATOR_ID = "operator"
# Why a config subscription with ``active = false`` is off (its queue is kept).
CONFIG_DISABLED = "active = false in the config"


@dataclass(frozen=True, slots=True)
class Subscription:
    """A webhook subscriber: where to post, which topics, in what format.

    ``topics`` holds slugs, or ``"*"`` for every event. ``keywords``, when given,
    further require one of them in the event, and ``exclude`` none of them: whole
    words, case and accents aside, over the title, story, topic names and source
    names (what search matches; no patterns). ``events`` are the kinds of alert it
    wants (:class:`AlertKind`).
    """

    id: str
    url: str
    topics: tuple[str, ...] = ("*",)
    format: str = "json"
    secret: str | None = None
    keywords: tuple[str, ...] = ()
    active: bool = True
    origin: str = "api"  # "config", "api" or "cli": config ones are reconciled at start-up
    created_at: datetime | None = None
    disabled_reason: str | None = None
    events: tuple[AlertKind, ...] = (AlertKind.CREATED,)
    # A reader subscribed through the WebSub hub (format "websub"): the feed it
    # follows (path and query under the base URL), the words every event of it
    # holds (a search feed's), and when its lease ends.
    feed: str | None = None
    words: tuple[str, ...] = ()
    lease_expires: datetime | None = None
    exclude: tuple[str, ...] = ()
    # A digest subscription gets one message per period instead of one per event:
    # ``digest`` is "hourly", "daily", "weekly" or a number of seconds; daily and
    # weekly ones close at ``digest_at`` ("HH:MM") in ``timezone`` (IANA name).
    # See feedbot.digest.
    digest: str | None = None
    digest_at: str | None = None
    timezone: str | None = None
    # ``url`` as listings and logs may show it, when it holds secrets (an Apprise
    # URL's password or token): made where the URL is checked, stored beside it.
    shown_url: str | None = None

    def matched_topics(self, event: Event) -> tuple[str, ...] | None:
        """The event's topic slugs this subscription wants, or ``None`` when the
        event is not for it. A ``*`` subscription matches every event, with all
        of its topics (possibly none). ``words``, when given, must all be words
        of the event as search sees them (:func:`feedbot.search.search_document`)."""
        if self.words:
            held = event_words(event)
            if not all(word in held for word in self.words):
                return None
        if self.keywords or self.exclude:
            held = event_words(event)
            if self.keywords and not any(holds_keyword(held, k) for k in self.keywords):
                return None
            if any(holds_keyword(held, k) for k in self.exclude):
                return None
        if "*" in self.topics:
            return event.topic_slugs
        wanted = [slug for slug in event.topic_slugs if slug in self.topics]
        return tuple(wanted) if wanted else None

    def redacted(self) -> Subscription:
        """The same subscription with its secret and the secrets of its URL
        hidden, for logs and listings."""
        return replace(
            self, url=self.shown_url or self.url, secret="whsec_***" if self.secret else None
        )


class EventRecord(NamedTuple):
    """An event in the flat form the store writes, computed once where the page is
    parsed (in a worker process on a first ingest, where handing back plain
    strings costs far less than handing back an object graph).

    A NamedTuple rather than a frozen dataclass: just as immutable, and it crosses
    the process boundary as a plain tuple, which pickles several times faster.
    """

    id: str
    key: int  # event_key(id)
    date: str  # ISO date
    story: str | None
    title: str
    body: str  # Event.canonical_json()
    content_hash: str
    topics: tuple[tuple[str, str], ...]  # (slug, name), in order
    links: tuple[tuple[int, str], ...]  # (event_key of a related event, kind), one per id
    search: str  # search_text(event): what the search index holds of it

    @classmethod
    def of(cls, event: Event) -> EventRecord:
        body = event.canonical_json()
        return cls(
            id=event.id,
            key=event_key(event.id),
            date=event.date.isoformat(),
            story=event.story,
            title=event.title,
            body=body,
            content_hash=content_hash(body),
            topics=tuple((t.slug, t.name) for t in event.topics),
            links=tuple({r.id: (event_key(r.id), r.kind.value) for r in event.related}.values()),
            search=search_text(event),
        )

    def to_event(self) -> Event:
        return Event.from_canonical_json(self.body)
