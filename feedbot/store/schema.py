"""The store's tables, column types and schema migrations (SQLite and PostgreSQL alike).

Events are kept whole as their event JSON (``body``) beside the columns
that queries need: the date for ordering, the content hash that decides whether
``updated`` moves, the text the full-text index holds (``search``), and the topic
and link tables that feeds and alerts select on. ``event_topics`` repeats the
event date so a topic feed is one index range scan; ``topic_stats`` is
``event_topics`` counted by topic, kept in step; ``event_search`` is the
full-text index.

Migrations are ordered steps; ``meta.schema_version`` records how many have run.
A step adds to the schema (columns with defaults, tables, keys; one replaced a
unique key with a wider one), so a newer feedbot upgrades in place at start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Constraint,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    bindparam,
    column,
    delete,
    func,
    insert,
    inspect,
    select,
    table,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.schema import AddConstraint, CreateTable

from feedbot.model import DeliveryStatus, Event, search_text
from feedbot.search import topic_words
from feedbot.store._db import PlainSql


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on every backend.

    SQLite keeps no offset, so values are normalised to UTC before they are
    written and marked UTC when they are read back.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: feedbot stores aware UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
LAST_STAMP_KEY = "last_event_stamp"  # meta: the latest first_seen/updated handed out
STAMP_TICK = timedelta(microseconds=1)  # between two events' stamps

events = Table(
    "events",
    metadata,
    Column("id", String(512), primary_key=True),
    Column("date", String(10), nullable=False),  # ISO date: sorts as text on both backends
    Column("story", Text),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),  # the event JSON (Event.to_json)
    Column("content_hash", String(64), nullable=False),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("updated", UTCDateTime, nullable=False),
    Column("key", BigInteger, nullable=False),  # model.event_key(id): the link tables' key
    # Identity (README: "Identity"). The page the event is read from now, when it is
    # not the page of its id (a reworded page: one of its aliases); NULL otherwise.
    Column("path", String(512)),
    # When a complete listing of its day first lacked its page (that batch's write):
    # still in every feed; removed by a poll that starts later and finds it still gone.
    Column("missing_since", UTCDateTime),
    Column("deleted_at", UTCDateTime),  # a tombstone: out of every feed and count
    # model.search_text: what the full-text index (event_search, below) holds of it.
    Column("search", Text),
    Index("ix_events_date_id", "date", "id"),
    Index("ix_events_key", "key", unique=True),
)

# Both are partial: a first ingest writes no entry into them.
events_missing = Index(
    "ix_events_missing",
    events.c.missing_since,
    sqlite_where=events.c.missing_since.is_not(None),
    postgresql_where=events.c.missing_since.is_not(None),
)
events_deleted = Index(
    "ix_events_deleted",
    events.c.deleted_at,
    sqlite_where=events.c.deleted_at.is_not(None),
    postgresql_where=events.c.deleted_at.is_not(None),
)

# The pages an event was read from under another id (a reworded page's new path):
# the alias resolves to the event's first id, forever. Aliases are compared in byte
# order on every backend (a day's aliases are a range: see _identity).
aliases = Table(
    "aliases",
    metadata,
    Column(
        "alias",
        String(512).with_variant(String(512, collation="C"), "postgresql"),
        primary_key=True,
    ),
    Column("key", BigInteger, nullable=False, unique=True),  # model.event_key(alias)
    Column("event_id", String(512), nullable=False, index=True),
    Column("created_at", UTCDateTime, nullable=False),
)

topics = Table(
    "topics",
    metadata,
    Column("slug", String(255), primary_key=True),
    Column("name", Text, nullable=False),
    Column("first_seen", UTCDateTime, nullable=False),
    # What the topic list's filter matches: feedbot.search.topic_words(name, slug).
    Column("words", Text, nullable=False, server_default=""),
)

# The key is the topic feed's order, so a feed page is one range scan and each
# row costs one B-tree. Rows of a changed event are found through the topics and
# date its stored body names, so no index on event_key is needed.
event_topics = Table(
    "event_topics",
    metadata,
    Column("slug", String(255), primary_key=True),
    Column("date", String(10), primary_key=True),
    Column("event_key", BigInteger, primary_key=True),
    Column("position", Integer, nullable=False),
    sqlite_with_rowid=False,  # the key is the row: one B-tree per row, not two
)

# The topic list (/topics, the OPML): each topic's count of events in the feeds
# and its newest event's date, that is event_topics grouped by slug, kept in step
# by every write of event_topics in the same transaction
# (feedbot.store.topic_list). A topic with no event in the feeds has no row. The
# list reads a page of it in its order (ix_topic_stats_recent), or a topic by its
# slug, instead of grouping every event of the store.
topic_stats = Table(
    "topic_stats",
    metadata,
    Column("slug", String(255), primary_key=True),
    Column("events", Integer, nullable=False),
    Column("last_date", String(10), nullable=False),  # ISO date, as event_topics.date
)
topic_stats_recent = Index(
    "ix_topic_stats_recent", topic_stats.c.last_date.desc(), topic_stats.c.slug
)
# meta: a number bumped by every write that changes topic_stats (the OPML's validator).
TOPICS_VERSION_KEY = "topics_version"

# Which events name which others in their Related list; the reverse lookup tells
# an alert which earlier events a new one continues.
event_links = Table(
    "event_links",
    metadata,
    Column("event_key", BigInteger, primary_key=True),
    Column("target_key", BigInteger, primary_key=True),  # the target may not exist yet
    Column("kind", String(16), nullable=False),
    Index("ix_event_links_target", "target_key"),
    sqlite_with_rowid=False,
)

# Checkpoints of archive sources (day folder fingerprints, ETags): opaque strings.
marks = Table(
    "marks",
    metadata,
    Column("key", String(600), primary_key=True),
    Column("value", Text, nullable=False),
)

polls = Table(
    "polls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False),  # "ok" or "failed"
    Column("new", Integer, nullable=False),
    Column("updated", Integer, nullable=False),
    Column("unchanged", Integer, nullable=False),
    Column("rejected", Integer, nullable=False),
    Column("error", Text),
)

# Pages the last poll that read them could not use; cleared when a page parses again.
rejections = Table(
    "rejections",
    metadata,
    Column("path", String(600), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("seen_at", UTCDateTime, nullable=False),
)


subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("url", Text, nullable=False),
    Column("topics", Text, nullable=False),  # JSON list of slugs, or ["*"]
    Column("format", Text, nullable=False),
    Column("secret", Text),
    Column("keywords", Text, nullable=False),  # JSON list
    Column("active", Boolean, nullable=False),
    Column("origin", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("failing_since", UTCDateTime),  # first failure since the last success
    Column("disabled_reason", Text),
    # JSON list of the alert kinds it wants (model.AlertKind values)
    Column("events", Text, nullable=False, server_default='["created"]'),
    # A reader's subscription through the WebSub hub: the feed it follows (its
    # canonical path and query), the words a search feed's events hold (JSON
    # list), and when its lease ends.
    Column("feed", Text),
    Column("words", Text, nullable=False, server_default="[]"),
    Column("lease_expires", UTCDateTime),
    # JSON list of keywords none of which an event it gets may hold
    Column("exclude", Text, nullable=False, server_default="[]"),
    # A digest subscription's period ("hourly", "daily", "weekly" or seconds),
    # when a daily or weekly one closes ("HH:MM") and in which zone (feedbot.digest).
    Column("digest", String(16)),
    Column("digest_at", String(5)),
    Column("timezone", String(64)),
    Column("shown_url", Text),  # the URL with its secrets hidden, if it holds any
)

# A config file's subscriptions are matched by URL, so there is one row per URL,
# however many replicas reconcile at once. API and CLI subscriptions may share a
# URL (with other topics or another format), as they always could.
config_url_key = Index(
    "uq_subscriptions_config_url",
    subscriptions.c.origin,
    subscriptions.c.url,
    unique=True,
    sqlite_where=subscriptions.c.origin == "config",
    postgresql_where=subscriptions.c.origin == "config",
)

# The outbox. A row is written in the transaction that stores its event, so no
# alert is ever lost between "stored" and "queued". ``id`` is the webhook-id:
# derived from subscription, event, kind and sequence (feedbot.alerts.delivery_id),
# it stays the same across every retry and replay, and the unique key stops two
# writers from queueing one alert twice. ``kind`` is created, updated or deleted
# (model.AlertKind); ``seq`` numbers the alerts of one kind about one event to one
# subscription (0 for created, which comes once). An update or removal keeps the
# event as it was then in ``event_body`` (the event's row moves on, or goes).
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("subscription_id", String(40), nullable=False),
    Column("event_id", String(512), nullable=False),
    Column("matched_topics", Text, nullable=False),  # JSON list
    Column("in_reply_to", Text, nullable=False),  # JSON list of event ids
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_attempt_at", UTCDateTime),
    Column("last_status", Integer),  # HTTP status of the last attempt
    Column("last_error", Text),
    Column("done_at", UTCDateTime),
    Column("claimed_by", String(64)),
    Column("claim_expires", UTCDateTime),
    Column("kind", String(16), nullable=False, server_default="created"),
    Column("seq", Integer, nullable=False, server_default="0"),
    Column("previous_title", Text),  # of an update: the title before it
    Column("event_body", Text),  # of an update or removal: the event JSON it is about
    UniqueConstraint("subscription_id", "event_id", "kind", "seq", name="uq_deliveries_alert"),
    Index("ix_deliveries_due", "status", "next_attempt_at"),
    Index("ix_deliveries_event", "event_id"),
)

# The events a digest subscription's open periods hold. A row is written in the
# transaction that stores its event (as a delivery is for other subscriptions),
# with the end of the period it falls in; when that period is over, the rows
# become one delivery of kind "digest" (its id in ``delivery_id``) in one
# transaction, so a digest is queued once, with every event of its period, however
# the daemon stops and however many replicas close periods at once. Rows stay:
# an event is in one digest of a subscription, ever (the primary key).
digest_items = Table(
    "digest_items",
    metadata,
    Column("subscription_id", String(40), primary_key=True),
    Column("event_id", String(512), primary_key=True),
    Column("period_end", UTCDateTime, nullable=False),
    Column("matched_topics", Text, nullable=False),  # JSON list
    Column("queued_at", UTCDateTime, nullable=False),
    Column("delivery_id", String(40)),  # the digest it went out in; None while open
    Index("ix_digest_items_open", "delivery_id", "period_end"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", String(40), nullable=False, index=True),
    Column("subscription_id", String(40), nullable=False),
    Column("attempted_at", UTCDateTime, nullable=False),
    Column("status", Integer),  # HTTP status, None when no answer came
    Column("latency_ms", Integer, nullable=False),
    Column("error", Text),
)


# Roles that one replica at a time holds (the poller), each under a lease that
# its holder renews; a holder that dies loses the role when the lease runs out.
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)


# The full-text index (feedbot.search; written and queried by feedbot.store.search):
# what events.search holds of every event in the feeds (a removed event's row is
# taken out, and put back when it returns), keyed by events.key. That text is the
# event's words, normalised by feedbot.search.words_of, and its topics' tokens,
# one space between them; neither database splits it any other way, so both match
# exactly the same words whatever their locale and Unicode tables.
#
# SQLite: an FTS5 table whose content is events.search (through the view
# event_search_source: the events in the feeds), rowid = events.key. FTS5 keeps
# no copy of the text: its own content table, keyed by hashed keys, made every
# batch of a first ingest rewrite pages all over it (1.8 s more for 100,000
# events). FTS5 reads the text back from the view to take a row's words out, so
# a row leaves the index before its events row changes or is removed
# (feedbot.store.search.SearchIndex.drop). Tokenizer "ascii": it splits on ASCII
# punctuation and space only and takes every other character as part of a word,
# so each normalised word is exactly one token (unicode61 would split a word at a
# mark, or at a letter newer than its Unicode 6.1 tables, and a word of two tokens
# is a phrase, which detail=none refuses). detail=none and columnsize=0: the index
# keeps which rows hold a word and nothing more, all that whole-word AND queries
# need.
#
# PostgreSQL: this table, the text as a tsvector made with array_to_tsvector (no
# text parser, no stemming, no stop words), under a GIN index.
event_search = Table(
    "event_search",
    metadata,
    Column("key", BigInteger, primary_key=True),
    Column("words", Text().with_variant(TSVECTOR(), "postgresql"), nullable=False),
    Index("ix_event_search_words", "words", postgresql_using="gin"),
)
SQLITE_EVENT_SEARCH = (
    "CREATE VIEW event_search_source AS"
    " SELECT key, search AS words FROM events WHERE deleted_at IS NULL",
    "CREATE VIRTUAL TABLE event_search USING fts5(words,"
    " content='event_search_source', content_rowid='key',"
    " detail=none, columnsize=0, tokenize='ascii')",
)
# One row of the index: its key and its text (events.search).
SEARCH_ROW = {
    "sqlite": PlainSql("INSERT INTO event_search (rowid, words) VALUES ({key}, {words})"),
    "postgresql": PlainSql(
        "INSERT INTO event_search (key, words)"
        " VALUES ({key}, array_to_tsvector(string_to_array({words}, ' ')))"
    ),
}
SEARCH_ROW_NAMES = ("key", "words")


def _create(*tables: Table) -> Callable[[Connection], None]:
    def step(connection: Connection) -> None:
        metadata.create_all(connection, tables=list(tables), checkfirst=True)

    return step


def _one_config_subscription_per_url(connection: Connection) -> None:
    """Add :data:`config_url_key`. Stores written before it may hold several config
    rows for one URL (replicas that reconciled at once): the oldest stays, the
    others go as if removed from the config, their pending deliveries failed with
    the reason."""
    rows = connection.execute(
        select(subscriptions.c.id, subscriptions.c.url)
        .where(subscriptions.c.origin == "config")
        .order_by(subscriptions.c.created_at, subscriptions.c.id)
    )
    kept: dict[str, str] = {}
    for subscription_id, url in rows.all():
        first = kept.setdefault(url, subscription_id)
        if first == subscription_id:
            continue
        connection.execute(
            update(deliveries)
            .where(
                deliveries.c.subscription_id == subscription_id,
                deliveries.c.status == DeliveryStatus.PENDING.value,
            )
            .values(
                status=DeliveryStatus.FAILED.value,
                last_error=f"subscription removed: a duplicate of {first} (same config URL)",
                claimed_by=None,
                claim_expires=None,
            )
        )
        connection.execute(delete(subscriptions).where(subscriptions.c.id == subscription_id))
    config_url_key.create(connection, checkfirst=True)


def _alert_kinds(connection: Connection) -> None:
    """Give :data:`subscriptions` its ``events`` column (every subscription stored
    before wants created alerts only, as it got before); give :data:`deliveries`
    its ``kind``, ``seq``, ``previous_title`` and ``event_body`` columns, and the
    unique key over subscription, event, kind and sequence in place of the one
    over subscription and event (which allowed one alert per pair). Every
    delivery stored before is an ``event.created`` one, sequence 0: its
    webhook-id is unchanged.

    PostgreSQL alters the table in place. SQLite cannot drop a constraint, so the
    table is rebuilt as SQLite's documentation for ALTER TABLE describes (create
    the new table, copy the rows, drop the old one, rename the new one, create its
    indexes); no other table, view or trigger refers to it. A store created by
    this version has the columns from its create step already: nothing to do."""
    inspector = inspect(connection)
    if "events" not in {c["name"] for c in inspector.get_columns(subscriptions.name)}:
        connection.execute(
            text(
                "ALTER TABLE subscriptions ADD COLUMN events TEXT DEFAULT '[\"created\"]' NOT NULL"
            )
        )
    have = {c["name"] for c in inspector.get_columns(deliveries.name)}
    if "kind" in have:
        return
    if connection.dialect.name == "postgresql":
        connection.execute(
            text(
                "ALTER TABLE deliveries"
                " ADD COLUMN kind VARCHAR(16) DEFAULT 'created' NOT NULL,"
                " ADD COLUMN seq INTEGER DEFAULT 0 NOT NULL,"
                " ADD COLUMN previous_title TEXT,"
                " ADD COLUMN event_body TEXT,"
                " DROP CONSTRAINT uq_deliveries_subscription_event"
            )
        )
        connection.execute(AddConstraint(_constraint(deliveries, "uq_deliveries_alert")))
        return
    rebuilt = deliveries.to_metadata(MetaData(), name="deliveries_rebuilt")
    connection.execute(CreateTable(rebuilt))  # the table alone: indexes come last
    kept = [c.name for c in deliveries.c if c.name in have]
    old = table(deliveries.name, *(column(name) for name in kept))
    connection.execute(insert(rebuilt).from_select(kept, select(*old.c)))
    connection.execute(text("DROP TABLE deliveries"))
    connection.execute(text("ALTER TABLE deliveries_rebuilt RENAME TO deliveries"))
    for index in sorted(deliveries.indexes, key=lambda i: str(i.name)):
        index.create(connection)


def _constraint(of: Table, name: str) -> Constraint:
    return next(c for c in of.constraints if c.name == name)


def _identity(connection: Connection) -> None:
    """Event identity (README: "Identity"): the events' ``path``, ``missing_since``
    and ``deleted_at``, their partial indexes, the ``aliases`` table, and on
    PostgreSQL an index on ``id`` in byte order, for the range of one day's ids
    (``2007/07/9/`` up to ``2007/07/90``), which a database collation other than
    C may not sort as bytes."""
    present = {column["name"] for column in inspect(connection).get_columns("events")}
    for added in (events.c.path, events.c.missing_since, events.c.deleted_at):
        if added.name not in present:
            kind = added.type.compile(dialect=connection.dialect)
            connection.execute(text(f"ALTER TABLE events ADD COLUMN {added.name} {kind}"))
    events_missing.create(connection, checkfirst=True)
    events_deleted.create(connection, checkfirst=True)
    metadata.create_all(connection, tables=[aliases], checkfirst=True)
    if connection.dialect.name == "postgresql":
        connection.execute(
            text('CREATE INDEX IF NOT EXISTS ix_events_id_bytes ON events (id COLLATE "C")')
        )


def _distinct_updated(connection: Connection) -> None:
    """Give every event an ``updated`` of its own (README: "Subscribing in a
    reader"). A store written before each event got its own microsecond holds the
    events of a batch under one time, which the Feed Validator reports and readers
    cannot order. In (updated, id) order, an event not after the one before is
    moved to one microsecond after it: the order stays, and a time moves by no
    more microseconds than events shared it. The last stamp handed out follows. A
    store without ties is left as it is."""
    rows = connection.execute(
        select(events.c.id, events.c.updated).order_by(events.c.updated, events.c.id)
    )
    changes: list[dict[str, object]] = []
    last: datetime | None = None
    for event_id, updated in rows.all():
        if last is not None and updated <= last:
            updated = last + STAMP_TICK
            changes.append({"moved": event_id, "stamp": updated})
        last = updated
    if not changes or last is None:
        return
    move = (
        update(events).where(events.c.id == bindparam("moved")).values(updated=bindparam("stamp"))
    )
    for start in range(0, len(changes), 10_000):
        connection.execute(move, changes[start : start + 10_000])
    handed_out = connection.execute(
        select(meta.c.value).where(meta.c.key == LAST_STAMP_KEY)
    ).scalar_one_or_none()
    if handed_out is not None and datetime.fromisoformat(handed_out) < last:
        connection.execute(
            update(meta).where(meta.c.key == LAST_STAMP_KEY).values(value=last.isoformat())
        )


def _search_index(connection: Connection) -> None:
    """Full-text search: give every event its ``search`` text (computed from its
    body, a chunk at a time, so memory stays bounded whatever the store's size),
    then build the index (:data:`event_search`) of those in the feeds. Run again,
    it builds the index over."""
    if "search" not in {column["name"] for column in inspect(connection).get_columns("events")}:
        connection.execute(text("ALTER TABLE events ADD COLUMN search TEXT"))
    chunk = select(events.c.id, events.c.body).where(events.c.search.is_(None))
    fill = update(events).where(events.c.id == bindparam("event_id"))
    last: str | None = None
    while True:
        query = chunk if last is None else chunk.where(events.c.id > last)
        rows = connection.execute(query.order_by(events.c.id).limit(_SEARCH_FILL_CHUNK)).all()
        if not rows:
            break
        texts = [
            {"event_id": event_id, "search": search_text(Event.from_canonical_json(body))}
            for event_id, body in rows
        ]
        connection.execute(fill.values(search=bindparam("search")), texts)
        last = rows[-1].id
    if connection.dialect.name == "sqlite":
        connection.execute(text("DROP TABLE IF EXISTS event_search"))
        connection.execute(text("DROP VIEW IF EXISTS event_search_source"))
        for statement in SQLITE_EVENT_SEARCH:
            connection.execute(text(statement))
        # FTS5 reads every row of its content (the events in the feeds).
        connection.execute(text("INSERT INTO event_search (event_search) VALUES ('rebuild')"))
    else:
        event_search.create(connection, checkfirst=True)
        connection.execute(delete(event_search))
        connection.execute(
            text(
                "INSERT INTO event_search (key, words)"
                " SELECT key, array_to_tsvector(string_to_array(search, ' '))"
                " FROM events WHERE deleted_at IS NULL"
            )
        )


_SEARCH_FILL_CHUNK = 2000  # events read and given their text at a time


def _websub(connection: Connection) -> None:
    """Give :data:`subscriptions` the columns of WebSub subscriptions (``feed``,
    ``words``, ``lease_expires``); every subscription stored before is a webhook
    one: no feed, no words, no lease. A store created by this version has them."""
    present = {c["name"] for c in inspect(connection).get_columns(subscriptions.name)}
    for added in ("feed", "words", "lease_expires"):
        if added in present:
            continue
        column_ = subscriptions.c[added]
        kind = column_.type.compile(dialect=connection.dialect)
        default = " DEFAULT '[]' NOT NULL" if added == "words" else ""
        connection.execute(text(f"ALTER TABLE subscriptions ADD COLUMN {added} {kind}{default}"))


def _exclude(connection: Connection) -> None:
    """Give :data:`subscriptions` its ``exclude`` column: every subscription stored
    before excludes nothing."""
    present = {c["name"] for c in inspect(connection).get_columns(subscriptions.name)}
    if "exclude" not in present:
        connection.execute(
            text("ALTER TABLE subscriptions ADD COLUMN exclude TEXT DEFAULT '[]' NOT NULL")
        )


def _digests(connection: Connection) -> None:
    """Give :data:`subscriptions` the digest keys (none before: one alert per
    event) and make :data:`digest_items`."""
    present = {c["name"] for c in inspect(connection).get_columns(subscriptions.name)}
    for added in ("digest", "digest_at", "timezone", "shown_url"):
        if added not in present:
            kind = subscriptions.c[added].type.compile(dialect=connection.dialect)
            connection.execute(text(f"ALTER TABLE subscriptions ADD COLUMN {added} {kind}"))
    metadata.create_all(connection, tables=[digest_items], checkfirst=True)


def _topic_stats(connection: Connection) -> None:
    """The topic list (:data:`topic_stats`): give :data:`topics` its ``words``
    (worked out from each name and slug, a chunk at a time), and make and fill
    ``topic_stats`` from event_topics, grouped by slug as the list was read
    before it (the events in the feeds: a removed event has no event_topics
    rows). Run again, it fills the table over."""
    if "words" not in {c["name"] for c in inspect(connection).get_columns(topics.name)}:
        connection.execute(text("ALTER TABLE topics ADD COLUMN words TEXT DEFAULT '' NOT NULL"))
    chunk = select(topics.c.slug, topics.c.name).where(topics.c.words == "")
    fill = update(topics).where(topics.c.slug == bindparam("topic")).values(words=bindparam("w"))
    last: str | None = None
    while True:
        query = chunk if last is None else chunk.where(topics.c.slug > last)
        rows = connection.execute(query.order_by(topics.c.slug).limit(_TOPIC_FILL_CHUNK)).all()
        if not rows:
            break
        connection.execute(
            fill, [{"topic": slug, "w": topic_words(name, slug)} for slug, name in rows]
        )
        last = rows[-1].slug
    metadata.create_all(connection, tables=[topic_stats], checkfirst=True)
    connection.execute(delete(topic_stats))
    grouped = (
        select(event_topics.c.slug, func.count(), func.max(event_topics.c.date))
        .join(topics, topics.c.slug == event_topics.c.slug)
        .group_by(event_topics.c.slug)
    )
    connection.execute(insert(topic_stats).from_select(["slug", "events", "last_date"], grouped))


_TOPIC_FILL_CHUNK = 2000  # topics given their words at a time


# Append new steps; never edit or reorder a released one.
MIGRATIONS: list[Callable[[Connection], None]] = [
    _create(events, topics, event_topics, event_links, marks, polls, rejections),
    _create(subscriptions, deliveries, attempts),
    _create(leases),
    _one_config_subscription_per_url,
    _alert_kinds,
    _identity,
    _distinct_updated,
    _search_index,
    _websub,
    _exclude,
    _digests,
    _topic_stats,
]

SCHEMA_VERSION = len(MIGRATIONS)
