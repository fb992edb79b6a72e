"""The event store: SQLAlchemy 2 (asyncio) over SQLite (default) or PostgreSQL.

One :class:`Store` per process. Writes that belong together (a batch of events, the
topics and links they bring, the source marks that say they were read) happen in
one transaction, so a crash leaves either all of a batch or none of it. Database
errors leave this module as :class:`~feedbot.errors.StorageError` with the cause
chained; nothing above the store sees SQLAlchemy's exceptions.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, event, func, or_, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from feedbot.clock import utc_now
from feedbot.errors import StorageError
from feedbot.identity import Known, Listed
from feedbot.model import Event, EventRecord, StoredEvent, Topic, event_key
from feedbot.search import SearchQuery, topic_words
from feedbot.store import schema
from feedbot.store._db import Database, chunks
from feedbot.store.outbox import Outbox, queue_alerts
from feedbot.store.replicas import Change, Replicas
from feedbot.store.schema import (
    LAST_STAMP_KEY,
    STAMP_TICK,
    aliases,
    event_links,
    event_topics,
    events,
    marks,
    meta,
    polls,
    rejections,
    topic_stats,
    topics,
)
from feedbot.store.search import SearchIndex
from feedbot.store.subscriptions import Subscriptions
from feedbot.store.topic_list import TopicCount, TopicList, TopicTally


@dataclass(frozen=True, slots=True)
class WriteResult:
    # Slugs of every topic whose feed changed: the topics of the new and changed
    # events, and those a changed event no longer has.
    topics: set[str]
    alerts: int  # deliveries queued
    removed: int = 0  # events removed (remove_missing)


@dataclass(frozen=True, slots=True)
class Moved:
    """What :meth:`Store.lookup_event` finds for an alias: the page at that id is
    the event kept under ``kept_id`` (README: "Identity")."""

    kept_id: str


@dataclass(frozen=True, slots=True)
class Removed:
    """What :meth:`Store.lookup_event` finds for a removed event (a tombstone): the
    event as it was last stored, and when it was removed."""

    event: StoredEvent
    deleted_at: datetime


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A removed event, for the feeds' RFC 6721 ``at:deleted-entry``."""

    id: str
    deleted_at: datetime
    topics: tuple[str, ...]  # the slugs of the topics it had


Lookup = StoredEvent | Moved | Removed | None


@dataclass(frozen=True, slots=True)
class PollRecord:
    started_at: datetime
    finished_at: datetime
    status: str
    new: int
    updated: int
    unchanged: int
    rejected: int
    error: str | None = None


def async_url(url: str) -> str:
    """The SQLAlchemy async URL for a user-facing ``sqlite:///`` or ``postgresql://`` URL."""
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url.removeprefix("sqlite:")
    if url.startswith("postgresql:"):
        return "postgresql+asyncpg:" + url.removeprefix("postgresql:")
    return url


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` store URL; None for any other store, or for a
    URL that is not one (:meth:`Store.open` says what is wrong with it)."""
    try:
        return _sqlite_file(make_url(async_url(url)))
    except ArgumentError:
        return None


def _sqlite_file(sa_url: URL) -> Path | None:
    if sa_url.get_backend_name() != "sqlite" or sa_url.database in (None, "", ":memory:"):
        return None
    return Path(sa_url.database or "")


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self._db = Database(engine)
        self.backend = self._db.backend
        self.subscriptions = Subscriptions(self._db)
        self.outbox = Outbox(self._db)
        self.replicas = Replicas(self._db)
        self._search = SearchIndex(self._db)
        self.topic_list = TopicList(self._db)

    @classmethod
    async def open(cls, url: str, *, clock: Callable[[], datetime] = utc_now) -> Store:
        """Connect, and create or upgrade the schema (``clock`` dates a new store)."""
        try:
            sa_url = make_url(async_url(url))
        except ArgumentError as exc:
            raise StorageError(f"store.url {url!r} is not a database URL: {exc}") from exc
        file = _sqlite_file(sa_url)
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
        try:
            # A ping before each checkout finds dropped network connections; a
            # SQLite file has none to drop.
            pre_ping = sa_url.get_backend_name() != "sqlite"
            engine = create_async_engine(sa_url, pool_pre_ping=pre_ping)
        except (SQLAlchemyError, ImportError) as exc:
            raise StorageError(f"store.url {url!r}: {exc}") from exc
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        store = cls(engine)
        try:
            await store._migrate(clock())
        except BaseException:
            await engine.dispose()
            raise
        return store

    async def close(self) -> None:
        await self.replicas.close()
        await self._db.engine.dispose()

    async def _migrate(self, now: datetime) -> None:
        async with self._db.transaction() as connection:
            if self.backend == "postgresql":
                # Replicas starting together must not migrate twice.
                await connection.execute(text("SELECT pg_advisory_xact_lock(7261001)"))
            await connection.run_sync(lambda c: schema.metadata.create_all(c, tables=[meta]))
            row = await connection.execute(
                select(meta.c.value).where(meta.c.key == "schema_version")
            )
            current = int(row.scalar_one_or_none() or 0)
            if current > schema.SCHEMA_VERSION:
                raise StorageError(
                    f"the database schema is version {current}, newer than this feedbot "
                    f"understands ({schema.SCHEMA_VERSION}); upgrade feedbot"
                )
            for step in schema.MIGRATIONS[current:]:
                await connection.run_sync(step)
            if current != schema.SCHEMA_VERSION:
                await self._db.insert_rows(
                    connection,
                    meta,
                    [{"key": "schema_version", "value": str(schema.SCHEMA_VERSION)}],
                    keys=["key"],
                    on_conflict="update",
                )
            # When the store began (for a store made before this key, when it
            # was first opened since): the ``updated`` of a feed with no entries.
            await self._db.insert_rows(
                connection,
                meta,
                [{"key": "created_at", "value": now.isoformat()}],
                keys=["key"],
                on_conflict="ignore",
            )

    async def created_at(self) -> datetime:
        """When this store was created (or first opened by a feedbot that records it)."""
        async with self._db.read() as connection:
            row = await connection.execute(select(meta.c.value).where(meta.c.key == "created_at"))
            return datetime.fromisoformat(row.scalar_one())

    async def schema_version(self) -> int:
        async with self._db.read() as connection:
            row = await connection.execute(
                select(meta.c.value).where(meta.c.key == "schema_version")
            )
            return int(row.scalar_one())

    async def ping(self) -> None:
        async with self._db.read() as connection:
            await connection.execute(select(1))

    # -- ingestion ---------------------------------------------------------------

    async def load_marks(self) -> dict[str, str]:
        async with self._db.read() as connection:
            rows = await connection.execute(select(marks.c.key, marks.c.value))
            return {key: value for key, value in rows}

    async def content_hashes(self, ids: Iterable[str]) -> dict[str, str]:
        """The stored content hash of each of ``ids`` that the store knows (an
        alias: of the event it is kept under)."""
        return {i: known.content_hash for i, known in (await self.identities(ids)).items()}

    async def identities(self, ids: Iterable[str]) -> dict[str, Known]:
        """What the store knows of each of ``ids`` (page ids) that it knows: the
        event of that id, or the one it is an alias of; removed events included."""
        found: dict[str, Known] = {}
        async with self._db.transaction() as connection:
            for chunk in chunks(list(ids)):
                kept = {
                    alias: event_id
                    for alias, event_id in await connection.execute(
                        select(aliases.c.alias, aliases.c.event_id).where(
                            aliases.c.alias.in_(chunk)
                        )
                    )
                }
                wanted = {kept.get(i, i) for i in chunk}
                rows = await connection.execute(
                    select(*_KNOWN_COLUMNS).where(events.c.id.in_(sorted(wanted)))
                )
                by_id = {row[0]: _known(row) for row in rows}
                for i in chunk:
                    if (known := by_id.get(kept.get(i, i))) is not None:
                        found[i] = known
        return found

    async def listed_events(self, prefixes: Collection[str]) -> list[Listed]:
        """Every stored event, removed ones included, whose page lies under one of
        ``prefixes`` (``"2007/07/9/"``: the days a poll listed completely): the
        events of those days read from their own page, and the events read from an
        alias there. One range of the id index per day, in few queries."""
        found: list[Listed] = []
        ordered = sorted(set(prefixes))
        async with self._db.transaction() as connection:
            for start in range(0, len(ordered), _DAYS_PER_QUERY):
                chunk = ordered[start : start + _DAYS_PER_QUERY]
                own = select(
                    events.c.id, events.c.path, events.c.missing_since, events.c.deleted_at
                ).where(
                    or_(*(self._prefixed(events.c.id, prefix) for prefix in chunk)),
                    events.c.path.is_(None),
                )
                found.extend(
                    Listed(event_id, event_id, missing, deleted)
                    for event_id, _path, missing, deleted in await connection.execute(own)
                )
                moved = (
                    select(events.c.id, events.c.path, events.c.missing_since, events.c.deleted_at)
                    .join(aliases, aliases.c.event_id == events.c.id)
                    .where(
                        or_(*(_prefixed(aliases.c.alias, prefix) for prefix in chunk)),
                        events.c.path == aliases.c.alias,
                    )
                )
                found.extend(Listed(*row) for row in await connection.execute(moved))
        return found

    def _prefixed(self, column: Any, prefix: str) -> ColumnElement[bool]:
        """``column`` starts with ``prefix`` (which ends in ``/``), as a range of its
        index: the ids from ``2007/07/9/`` up to, not including, ``2007/07/90``.
        On PostgreSQL ``events.id`` is compared in byte order, through its index
        of that order (the database's collation may sort ``/`` elsewhere)."""
        if self.backend == "postgresql" and column is events.c.id:
            column = column.collate("C")
        return _prefixed(column, prefix)

    async def departed(self, ids: Collection[str]) -> dict[str, tuple[Event, str]]:
        """The events of ``ids`` and every other event missing from the archive but
        not removed: id -> (the event as stored, its content hash). What a new page
        may be the successor of."""
        found: dict[str, tuple[Event, str]] = {}
        async with self._db.transaction() as connection:
            missing = select(events.c.id, events.c.body, events.c.content_hash).where(
                events.c.missing_since.is_not(None), events.c.deleted_at.is_(None)
            )
            for event_id, body, digest in await connection.execute(missing):
                found[event_id] = (Event.from_canonical_json(body), digest)
            for chunk in chunks(sorted(set(ids) - set(found))):
                rows = await connection.execute(
                    select(events.c.id, events.c.body, events.c.content_hash).where(
                        events.c.id.in_(chunk)
                    )
                )
                for event_id, body, digest in rows:
                    found[event_id] = (Event.from_canonical_json(body), digest)
        return found

    async def write_batch(
        self,
        *,
        new: Sequence[EventRecord],
        changed: Sequence[EventRecord],
        marks_: Mapping[str, str],
        rejected: Mapping[str, str],
        accepted_paths: Sequence[str],
        now: datetime,
        alert_since: date | None = None,
        moved: Mapping[str, str] | None = None,
        missing: Collection[str] = (),
        present: Collection[str] = (),
    ) -> WriteResult:
        """Store one batch of ingestion in one transaction: new and changed events
        with their topics and links, what became of the events' pages, the alerts
        the batch brings (dated on or after ``alert_since``, or all when it is
        ``None``), the source marks, and the pages' rejections.

        Identity (README: "Identity"; :mod:`feedbot.identity` decides it):
        ``moved`` maps page ids to the event each is now read from (a reworded
        page: its id becomes an alias of the kept id, and links to it lead to
        the kept event); ``missing`` events' pages left a complete listing (they
        stay in the feeds until :meth:`remove_missing`); ``present`` events'
        pages are there again (a removed one comes back under its id). Changed
        events are present too.

        Alerts: ``event.created`` for new events, ``event.updated`` (with the
        title before) for changed ones.

        Each new or changed event is stamped (``first_seen``/``updated``) with its
        own moment: ``now``, one microsecond later for each event before it in
        the batch (new ones first, in the given order), and always after every
        stamp written before (:meth:`_next_stamps`). No two events share one, so
        no feed document holds two entries with the same ``updated``."""
        affected = {slug for e in (*new, *changed) for slug, _name in e.topics}
        tally = TopicTally()  # the event_topics rows this batch writes
        async with self._db.transaction() as connection:
            stamps: list[datetime] = []
            if new or changed:
                stamps = await self._next_stamps(connection, now, len(new) + len(changed))
            previous_titles: dict[str, str] = {}
            if changed:
                # Out of the search index while their rows still hold the words
                # it has of them (SearchIndex.drop).
                await self._search.drop(connection, [record.key for record in changed])
                before, previous_titles = await self._forget_topics_and_links(
                    connection, changed, tally
                )
                affected |= before
                for record, stamp in zip(changed, stamps[len(new) :], strict=True):
                    await connection.execute(
                        events.update()
                        .where(events.c.id == record.id)
                        .values(
                            {
                                **dict(zip(_EVENT_COLUMNS, _event_values(record), strict=True)),
                                "updated": stamp,
                                "missing_since": None,
                                "deleted_at": None,
                            }
                        )
                    )
            if new:
                await self._db.bulk_insert(
                    connection,
                    events,
                    (*_EVENT_COLUMNS, "first_seen", "updated"),
                    [
                        (*_event_values(e), stamp, stamp)
                        for e, stamp in zip(new, stamps, strict=False)
                    ],
                )
            # Into the search index with their rows (a changed one's old words
            # were taken out before its row changed).
            await self._search.put(connection, [(r.key, r.search) for r in (*new, *changed)])
            if moved:
                affected |= await self._move(connection, moved, now)
            both = [*new, *changed]
            topic_names = {slug: name for e in both for slug, name in e.topics}
            if topic_names:
                await self._add_topics(connection, topic_names.items(), now)
                rows = [
                    (slug, e.date, e.key, i)
                    for e in both
                    for i, (slug, _name) in enumerate(e.topics)
                ]
                await self._db.bulk_insert(
                    connection, event_topics, ("slug", "date", "event_key", "position"), rows
                )
                tally.added((slug, day) for slug, day, _key, _position in rows)
            links = [(e.key, target, kind) for e in both for target, kind in e.links]
            if links and await self._any_alias(connection):
                kept = await self._kept_keys(connection, {target for _, target, _ in links})
                # One link per pair, whichever spelling of the target it named.
                unique = {
                    (source, kept.get(target, target)): kind for source, target, kind in links
                }
                links = [(source, target, kind) for (source, target), kind in unique.items()]
            await self._db.bulk_insert(
                connection, event_links, ("event_key", "target_key", "kind"), links
            )
            if missing:
                await self._set_missing(connection, missing, now)
            changed_ids = {record.id for record in changed}
            back = [event_id for event_id in present if event_id not in changed_ids]
            if back:
                affected |= await self._restore(connection, back, now, tally)
            if marks_:
                await self._db.insert_rows(
                    connection,
                    marks,
                    [{"key": k, "value": v} for k, v in marks_.items()],
                    keys=["key"],
                    on_conflict="update",
                )
            for chunk in chunks(accepted_paths):
                await connection.execute(delete(rejections).where(rejections.c.path.in_(chunk)))
            if rejected:
                await self._db.insert_rows(
                    connection,
                    rejections,
                    [{"path": p, "reason": r, "seen_at": now} for p, r in rejected.items()],
                    keys=["path"],
                    on_conflict="update",
                )
            await self.topic_list.apply(connection, tally)
            cutoff = None if alert_since is None else alert_since.isoformat()
            alerts = await queue_alerts(
                self._db,
                connection,
                [r for r in new if cutoff is None or r.date >= cutoff],
                now=now,
                updated=[
                    (r, previous_titles[r.id])
                    for r in changed
                    if cutoff is None or r.date >= cutoff
                ],
            )
            await self.replicas.publish(connection, Change(frozenset(affected), alerts=alerts))
        return WriteResult(affected, alerts)

    async def _move(
        self, connection: AsyncConnection, moved: Mapping[str, str], now: datetime
    ) -> set[str]:
        """Each event of ``moved`` (page id -> kept id) is now read from that page:
        the page id becomes an alias of the kept one (for good), and the links
        stored to the alias lead to the kept event. Returns the topics of the
        events whose links moved: their entries now link elsewhere."""
        linking: set[int] = set()
        new_aliases = {page: kept for page, kept in moved.items() if page != kept}
        await self._db.insert_rows(
            connection,
            aliases,
            [
                {"alias": page, "key": event_key(page), "event_id": kept, "created_at": now}
                for page, kept in sorted(new_aliases.items())
            ],
            keys=["alias"],
            on_conflict="ignore",
        )
        for page, kept in sorted(moved.items()):
            await connection.execute(
                events.update()
                .where(events.c.id == kept)
                .values(path=None if page == kept else page, missing_since=None)
            )
        for page, kept in sorted(new_aliases.items()):
            alias_key, kept_key = event_key(page), event_key(kept)
            rows = await connection.execute(
                select(event_links.c.event_key, event_links.c.kind).where(
                    event_links.c.target_key == alias_key
                )
            )
            retargeted = [
                {"event_key": source, "target_key": kept_key, "kind": kind} for source, kind in rows
            ]
            linking.update(row["event_key"] for row in retargeted)
            if retargeted:
                await self._db.insert_rows(
                    connection,
                    event_links,
                    retargeted,
                    keys=["event_key", "target_key"],
                    on_conflict="ignore",
                )
                await connection.execute(
                    delete(event_links).where(event_links.c.target_key == alias_key)
                )
        topics_of_linking: set[str] = set()
        for chunk in chunks(sorted(linking)):
            bodies = await connection.execute(
                select(events.c.body).where(events.c.key.in_(chunk), events.c.deleted_at.is_(None))
            )
            for (body,) in bodies:
                topics_of_linking.update(Event.from_canonical_json(body).topic_slugs)
        return topics_of_linking

    @staticmethod
    async def _any_alias(connection: AsyncConnection) -> bool:
        return (await connection.execute(select(aliases.c.key).limit(1))).first() is not None

    @staticmethod
    async def _kept_keys(connection: AsyncConnection, keys: Collection[int]) -> dict[int, int]:
        """The link key of the kept event of each of ``keys`` that is an alias's."""
        found: dict[int, int] = {}
        for chunk in chunks(sorted(keys)):
            rows = await connection.execute(
                select(aliases.c.key, aliases.c.event_id).where(aliases.c.key.in_(chunk))
            )
            found.update({key: event_key(kept) for key, kept in rows})
        return found

    @staticmethod
    async def _set_missing(
        connection: AsyncConnection, ids: Collection[str], now: datetime
    ) -> None:
        for chunk in chunks(sorted(ids)):
            await connection.execute(
                events.update()
                .where(
                    events.c.id.in_(chunk),
                    events.c.missing_since.is_(None),
                    events.c.deleted_at.is_(None),
                )
                .values(missing_since=now)
            )

    async def _restore(
        self, connection: AsyncConnection, ids: Sequence[str], now: datetime, tally: TopicTally
    ) -> set[str]:
        """Events whose pages are there again: no longer missing, and a removed one
        back in its feeds as it was stored (its topic rows noted in ``tally``).
        Returns the topics whose feeds change."""
        affected: set[str] = set()
        for chunk in chunks(sorted(ids)):
            rows = (
                await connection.execute(
                    select(events.c.body, events.c.key, events.c.search).where(
                        events.c.id.in_(chunk), events.c.deleted_at.is_not(None)
                    )
                )
            ).all()
            revived = [Event.from_canonical_json(body) for body, _key, _search in rows]
            texts = [(key, search) for _body, key, search in rows]
            await connection.execute(
                events.update()
                .where(events.c.id.in_(chunk))
                .values(missing_since=None, deleted_at=None)
            )
            if not revived:
                continue
            # Back in the search index, which remove_missing took them out of.
            await self._search.put(connection, texts)
            await self._add_topics(
                connection, ((t.slug, t.name) for e in revived for t in e.topics), now
            )
            wanted = {
                (t.slug, e.date.isoformat(), event_key(e.id)): i
                for e in revived
                for i, t in enumerate(e.topics)
            }
            # A removed event's rows left with it; any still there stay as they are.
            there = await self._topic_rows(connection, wanted)
            fresh = [(*row, i) for row, i in wanted.items() if row not in there]
            await self._db.bulk_insert(
                connection, event_topics, ("slug", "date", "event_key", "position"), fresh
            )
            tally.added((slug, day) for slug, day, _key, _position in fresh)
            affected.update(slug for e in revived for slug in e.topic_slugs)
        return affected

    async def _add_topics(
        self, connection: AsyncConnection, named: Iterable[tuple[str, str]], now: datetime
    ) -> None:
        """Store the topics (slug, name) not stored yet: the first spelling of a
        slug names it for good."""
        names = dict(named)
        await self._db.insert_rows(
            connection,
            topics,
            [
                {"slug": slug, "name": name, "first_seen": now, "words": topic_words(name, slug)}
                for slug, name in names.items()
            ],
            keys=["slug"],
            on_conflict="ignore",
        )

    @staticmethod
    async def _topic_rows(
        connection: AsyncConnection, rows: Collection[tuple[str, str, int]]
    ) -> set[tuple[str, str, int]]:
        """Which of ``rows`` (slug, date, event key) event_topics holds."""
        found: set[tuple[str, str, int]] = set()
        for chunk in chunks(sorted(rows)):
            # Seeks of the key's slug and date (a superset), narrowed here.
            query = select(
                event_topics.c.slug, event_topics.c.date, event_topics.c.event_key
            ).where(
                event_topics.c.slug.in_({slug for slug, _, _ in chunk}),
                event_topics.c.date.in_({day for _, day, _ in chunk}),
                event_topics.c.event_key.in_({key for _, _, key in chunk}),
            )
            found.update(tuple(row) for row in await connection.execute(query))
        return found & set(rows)

    async def remove_missing(
        self, *, before: datetime, now: datetime, prefixes: Collection[str] | None = None
    ) -> WriteResult:
        """Remove every event missing since before ``before`` (the start of the poll
        calling this: a poll after the one that found it gone) and not back since:
        it leaves every feed and count, :meth:`lookup_event` says
        :class:`Removed`, and subscriptions that want it get ``event.deleted``.
        With ``prefixes`` (``"2007/07/9/"``), only events whose page lay under
        one of them. Its row, aliases and links stay: a page that comes back
        revives it under the same id."""
        due = and_(events.c.missing_since < before, events.c.deleted_at.is_(None))
        # Asked first without the write lock: on almost every poll nothing is due.
        async with self._db.read() as connection:
            if (await connection.execute(select(events.c.id).where(due).limit(1))).first() is None:
                return WriteResult(set(), 0)
        query = select(events.c.id, events.c.path, events.c.body).where(due)
        async with self._db.transaction() as connection:
            gone = [
                Event.from_canonical_json(body)
                for event_id, path, body in await connection.execute(query)
                if prefixes is None or (path or event_id).startswith(tuple(prefixes))
            ]
            if not gone:
                return WriteResult(set(), 0)
            affected: set[str] = set()
            tally = TopicTally()
            for event in gone:
                affected.update(event.topic_slugs)
                await self._drop_topic_rows(connection, event, tally)
            # Out of search as out of the feeds (_restore puts them back), while
            # their rows still say they are in the feeds (SearchIndex.drop).
            await self._search.drop(connection, [event_key(event.id) for event in gone])
            for chunk in chunks([event.id for event in gone]):
                await connection.execute(
                    events.update().where(events.c.id.in_(chunk)).values(deleted_at=now)
                )
            await self.topic_list.apply(connection, tally)
            alerts = await queue_alerts(self._db, connection, [], now=now, deleted=gone)
            await self.replicas.publish(connection, Change(frozenset(affected), alerts=alerts))
        return WriteResult(affected, alerts, removed=len(gone))

    async def _next_stamps(
        self, connection: AsyncConnection, now: datetime, count: int
    ) -> list[datetime]:
        """``count`` consecutive microseconds from ``now``, or from just after the
        last stamp handed out when that is later (a batch stamped before may
        reach past ``now``, or the clock may have stepped back). The last one is
        kept in ``meta`` (read in this transaction, so a poller taking over from
        another replica continues after it); a store written before that key
        existed starts after its latest ``updated``."""
        row = await connection.execute(select(meta.c.value).where(meta.c.key == LAST_STAMP_KEY))
        last_text = row.scalar_one_or_none()
        if last_text is not None:
            last: datetime | None = datetime.fromisoformat(last_text)
        else:
            last = (await connection.execute(select(func.max(events.c.updated)))).scalar()
        first = now if last is None else max(now, last + STAMP_TICK)
        stamps = [first + i * STAMP_TICK for i in range(count)]
        await self._db.insert_rows(
            connection,
            meta,
            [{"key": LAST_STAMP_KEY, "value": stamps[-1].isoformat()}],
            keys=["key"],
            on_conflict="update",
        )
        return stamps

    async def _forget_topics_and_links(
        self, connection: AsyncConnection, changed: Sequence[EventRecord], tally: TopicTally
    ) -> tuple[set[str], dict[str, str]]:
        """Delete the topic rows (noted in ``tally``) and links of events about to
        be rewritten; return the topics they had and their titles (by id)."""
        previous: set[str] = set()
        titles: dict[str, str] = {}
        ids = [record.id for record in changed]
        for chunk in chunks(ids):
            rows = await connection.execute(select(events.c.body).where(events.c.id.in_(chunk)))
            for (body,) in rows:
                old = Event.from_canonical_json(body)
                previous.update(old.topic_slugs)
                titles[old.id] = old.title
                await self._drop_topic_rows(connection, old, tally)
            await connection.execute(
                delete(event_links).where(
                    event_links.c.event_key.in_([event_key(i) for i in chunk])
                )
            )
        return previous, titles

    @staticmethod
    async def _drop_topic_rows(
        connection: AsyncConnection, event: Event, tally: TopicTally
    ) -> None:
        """Delete ``event``'s topic rows, found through the topics and date its
        body names; note in ``tally`` those there were (a removed event has none)."""
        day = event.date.isoformat()
        for slug in event.topic_slugs:
            result = await connection.execute(
                delete(event_topics).where(
                    event_topics.c.slug == slug,
                    event_topics.c.date == day,
                    event_topics.c.event_key == event_key(event.id),
                )
            )
            if result.rowcount:
                tally.removed(slug, day)

    async def initial_sync_done(self) -> bool:
        """Whether a first poll of the archive has completed (see ``notify.backfill_days``)."""
        async with self._db.read() as connection:
            row = await connection.execute(select(meta.c.value).where(meta.c.key == "initial_sync"))
            return row.scalar_one_or_none() is not None

    async def mark_initial_sync_done(self, now: datetime) -> None:
        async with self._db.transaction() as connection:
            await self._db.insert_rows(
                connection,
                meta,
                [{"key": "initial_sync", "value": now.isoformat()}],
                keys=["key"],
                on_conflict="ignore",
            )

    async def record_poll(self, record: PollRecord) -> None:
        async with self._db.transaction() as connection:
            await connection.execute(polls.insert().values(asdict(record)))

    async def last_poll(self) -> PollRecord | None:
        async with self._db.read() as connection:
            row = (
                (await connection.execute(select(polls).order_by(polls.c.id.desc()).limit(1)))
                .mappings()
                .first()
            )
        if row is None:
            return None
        return PollRecord(**{f.name: row[f.name] for f in fields(PollRecord)})

    async def rejections(self) -> dict[str, str]:
        async with self._db.read() as connection:
            rows = await connection.execute(select(rejections.c.path, rejections.c.reason))
            return {path: reason for path, reason in rows}

    # -- reading -----------------------------------------------------------------

    async def holds_events(self) -> bool:
        """Whether any event is stored, removed ones included."""
        async with self._db.read() as connection:
            found = await connection.execute(select(events.c.id).limit(1))
            return found.first() is not None

    async def count_events(self, topic: str | None = None) -> int:
        """How many events (of ``topic``) the feeds hold: removed ones are not counted."""
        if topic is None:
            # All rows less the removed ones, both counted on an index (a filter on
            # deleted_at would read every row).
            every = select(func.count()).select_from(events).scalar_subquery()
            removed = (
                select(func.count())
                .select_from(events)
                .where(events.c.deleted_at.is_not(None))
                .scalar_subquery()
            )
            query = select(every - removed)
        else:
            # The topic list counts the events in the feeds (topic_stats).
            query = select(topic_stats.c.events).where(topic_stats.c.slug == topic)
        async with self._db.read() as connection:
            return int((await connection.execute(query)).scalar_one_or_none() or 0)

    async def get_event(self, event_id: str) -> StoredEvent | None:
        """The event stored under ``event_id``; None for an alias or a removed one
        (:meth:`lookup_event` tells them apart)."""
        found = await self.lookup_event(event_id)
        return found if isinstance(found, StoredEvent) else None

    async def lookup_event(self, event_id: str) -> Lookup:
        """What ``/events/<event_id>`` shows: the event, an alias of one
        (:class:`Moved`), a removed one (:class:`Removed`), or None."""
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    select(
                        events.c.body, events.c.first_seen, events.c.updated, events.c.deleted_at
                    ).where(events.c.id == event_id)
                )
            ).first()
            if row is None:
                kept = (
                    await connection.execute(
                        select(aliases.c.event_id).where(aliases.c.alias == event_id)
                    )
                ).scalar_one_or_none()
                return None if kept is None else Moved(kept)
        stored = _stored(row[:3])
        return stored if row.deleted_at is None else Removed(stored, row.deleted_at)

    async def kept_ids(self, ids: Iterable[str]) -> dict[str, str]:
        """The kept id of each of ``ids`` that is an alias (a related link may name
        a page by its old or its new path: both lead to the kept event)."""
        found: dict[str, str] = {}
        async with self._db.read() as connection:
            for chunk in chunks(sorted(set(ids))):
                rows = await connection.execute(
                    select(aliases.c.alias, aliases.c.event_id).where(aliases.c.alias.in_(chunk))
                )
                found.update({alias: kept for alias, kept in rows})
        return found

    async def tombstones(self, topic: str | None, since: datetime) -> list[Tombstone]:
        """Events removed at or after ``since`` (of ``topic``, when given), the
        latest removal first."""
        query = (
            select(events.c.id, events.c.deleted_at, events.c.body)
            .where(events.c.deleted_at >= since)
            .order_by(events.c.deleted_at.desc(), events.c.id)
        )
        async with self._db.read() as connection:
            rows = (await connection.execute(query)).all()
        found = []
        for event_id, deleted_at, body in rows:
            slugs = Event.from_canonical_json(body).topic_slugs
            if topic is None or topic in slugs:
                found.append(Tombstone(event_id, deleted_at, slugs))
        return found

    async def events_page(
        self, topic: str | None = None, *, offset: int = 0, limit: int = 50
    ) -> list[StoredEvent]:
        """Events newest first (date descending, then the latest first seen, then
        id), optionally of one topic; removed events are left out."""
        query = select(events.c.body, events.c.first_seen, events.c.updated)
        if topic is None:
            query = query.where(events.c.deleted_at.is_(None)).order_by(
                events.c.date.desc(), events.c.first_seen.desc(), events.c.id
            )
        else:
            # A removed event's topic rows are gone.
            query = (
                query.join(event_topics, event_topics.c.event_key == events.c.key)
                .where(event_topics.c.slug == topic)
                .order_by(event_topics.c.date.desc(), events.c.first_seen.desc(), events.c.id)
            )
        query = query.offset(offset).limit(limit)
        async with self._db.read() as connection:
            return [_stored(row) for row in await connection.execute(query)]

    async def search_events(
        self, query: SearchQuery, *, offset: int = 0, limit: int = 50
    ) -> list[StoredEvent]:
        """The events in the feeds that ``query`` matches (every word of it as a
        whole word of the title, story, topic names or source names; one of its
        topics, when it names some), in feed order as :meth:`events_page`:
        date descending, then the latest first seen, then id."""
        return await self._search.events(query, offset=offset, limit=limit)

    async def count_search(self, query: SearchQuery) -> int:
        """How many events :meth:`search_events` finds for ``query`` in all."""
        return await self._search.count(query)

    async def topic_counts(self) -> list[TopicCount]:
        """Every topic with its event count, most recently active first (the whole
        topic list; :attr:`topic_list` reads it a page or a topic at a time)."""
        return await self.topic_list.every()

    async def referring_events(self, event_id: str, *, limit: int = 100) -> list[StoredEvent]:
        """Stored events whose related links name ``event_id`` (links to an alias
        were pointed at the kept id when it became one), oldest first; removed
        events are left out."""
        query = (
            select(events.c.body, events.c.first_seen, events.c.updated)
            .join(event_links, event_links.c.event_key == events.c.key)
            .where(
                event_links.c.target_key == event_key(event_id),
                events.c.deleted_at.is_(None),
            )
            .order_by(events.c.date, events.c.id)
            .limit(limit)
        )
        async with self._db.read() as connection:
            return [_stored(row) for row in await connection.execute(query)]

    async def topic(self, slug: str) -> Topic | None:
        async with self._db.read() as connection:
            name = (
                await connection.execute(select(topics.c.name).where(topics.c.slug == slug))
            ).scalar_one_or_none()
        return None if name is None else Topic(name=name, slug=slug)


_EVENT_COLUMNS = ("id", "key", "date", "story", "title", "body", "content_hash", "search")
_KNOWN_COLUMNS = (
    events.c.id,
    events.c.content_hash,
    events.c.path,
    events.c.missing_since,
    events.c.deleted_at,
)
_DAYS_PER_QUERY = 100  # ranges OR-ed in one query


def _event_values(record: EventRecord) -> tuple[Any, ...]:
    """The values of ``_EVENT_COLUMNS`` for ``record``."""
    return (
        record.id,
        record.key,
        record.date,
        record.story,
        record.title,
        record.body,
        record.content_hash,
        record.search,
    )


def _known(row: Any) -> Known:
    event_id, digest, path, missing_since, deleted_at = row
    return Known(event_id, digest, path or event_id, missing_since, deleted_at)


def _prefixed(column: Any, prefix: str) -> ColumnElement[bool]:
    # "/" is followed by "0" in byte order.
    return and_(column >= prefix, column < prefix[:-1] + "0")


def _stored(row: Any) -> StoredEvent:
    body, first_seen, updated = row
    return StoredEvent(
        event=Event.from_canonical_json(body), first_seen=first_seen, updated=updated
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the web app read while a poll writes; NORMAL is durable across a
    # process crash (only a power loss can cost the last commits).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    # 48 MiB of page cache a connection (the default is 2 MiB): a first ingest
    # inserts into indexes far larger than that, and every miss is a read; more
    # would take the first ingest's process tree past 250 MB.
    cursor.execute("PRAGMA cache_size=-49152")
    cursor.close()
