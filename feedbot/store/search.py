"""Full-text search in the store: keeping the index of events' words, and querying it.

This module owns the SQL of search (:mod:`feedbot.search` owns what a word and a
query are; :mod:`feedbot.store.schema` the index's tables and their migration).
:class:`SearchIndex` is what :class:`~feedbot.store.Store` delegates to: it writes
index rows in the caller's transaction, so an event and its words are stored,
changed, removed and brought back together, and it answers
:meth:`~feedbot.store.Store.search_events` and
:meth:`~feedbot.store.Store.count_search`.

The index holds exactly the events in the feeds: a removed event's row is taken
out when it is removed and put back when it returns. A count is then the index's
own count (a few milliseconds for a word in most events on SQLite), with no look
at the events table, which a filter on ``deleted_at`` would need for every match.

No user text is ever query syntax: only normalised words and topic slugs reach
a query (SearchQuery.searchable), and each is quoted all the same, for FTS5
(``"w"``) or as a tsquery lexeme (``'w'``), its quotes and backslashes escaped.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from feedbot.model import Event, StoredEvent
from feedbot.search import SearchQuery, topic_token
from feedbot.store._db import Database, chunks
from feedbot.store.schema import SEARCH_ROW, SEARCH_ROW_NAMES, events

# The two ways to a page of results (SearchIndex.events): sorting every match
# costs about 1.8 us a match on SQLite and 4 us on PostgreSQL (each is looked up
# in events by key); walking the feed newest first costs about 1.3 us (SQLite)
# and 2.9 us (PostgreSQL) an event walked, and finds a page after about
# (offset + limit) * feed / matches events. Walking is cheaper when
# matches ** 2 > WALK_RATIO * (offset + limit) * feed, on both backends alike:
# at 100,000 events, for a first page, above about 1,900 matches, where either
# plan takes 3-8 ms. Far from it, the wrong plan is slow: for a word in 184
# events the walk took 36 ms and sorting 0.2 ms; for one in 73,000, sorting
# took 130 ms and the walk 8 ms.
WALK_RATIO = 0.7
_WALK_BUDGET = 3  # times the estimated walk, before giving up on it and sorting
_FEED_ORDER_E = "e.date DESC, e.first_seen DESC, e.id"  # Store.events_page's order


class SearchIndex:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._sqlite = db.backend == "sqlite"
        self._row_sql = SEARCH_ROW[db.backend]

    # -- writing, in the caller's transaction --------------------------------------

    async def put(self, connection: AsyncConnection, texts: Iterable[tuple[int, str]]) -> None:
        """Index each (events.key, events.search) pair: events in the feeds whose
        rows hold that text, and which are not in the index."""
        rows = sorted(texts)  # key order: consecutive inserts share index pages
        await self._db.execute_many(connection, self._row_sql, SEARCH_ROW_NAMES, rows)

    async def drop(self, connection: AsyncConnection, keys: Collection[int]) -> None:
        """Take the events of ``keys`` out of the index (those not in it: nothing).

        Call it before their rows change or leave the feeds: on SQLite, FTS5
        reads the words to take out from the row (schema.event_search), and a
        row that is no longer in the feeds is not in the index."""
        column = "rowid" if self._sqlite else "key"
        statement = text(f"DELETE FROM event_search WHERE {column} IN :keys").bindparams(
            bindparam("keys", expanding=True)
        )
        for chunk in chunks(sorted(keys)):
            await connection.execute(statement, {"keys": chunk})

    # -- reading ---------------------------------------------------------------------

    async def count(self, query: SearchQuery) -> int:
        """How many events in the feeds ``query`` matches."""
        if not query.searchable:
            return 0
        async with self._db.read() as connection:
            await self._plan_settings(connection)
            return await self._count(connection, query)

    async def events(self, query: SearchQuery, *, offset: int, limit: int) -> list[StoredEvent]:
        """The events ``query`` matches, in feed order (date descending, the
        latest first seen first, then id), ``limit`` of them after the first
        ``offset``.

        Two plans (measured on 100,000 events: module comment at WALK_RATIO).
        Few matches: look each up in events and sort them. Many: walk the feed
        newest first and keep the matches, which finds a page after about
        ``(offset + limit) * feed / matches`` events. Only whether the matches
        outnumber the crossover is counted (a count that stops there). A walk
        goes ``_WALK_BUDGET`` times as far as that estimate at most: matches
        bunched in older events (a word of one year's news) end it early, and
        the page is sorted after all."""
        if not query.searchable or limit <= 0:
            return []
        offset = max(offset, 0)
        wanted = offset + limit
        async with self._db.read() as connection:
            await self._plan_settings(connection)
            feed = await self._feed_size(connection)
            crossover = max(math.isqrt(int(WALK_RATIO * wanted * feed)), wanted)
            found = await self._count(connection, query, cap=crossover + 1)
            if found <= offset:
                return []
            keys: list[int] | None = None
            if found > crossover:
                budget = _WALK_BUDGET * wanted * feed // crossover
                keys = await self._walk(connection, query, offset, limit, budget)
                if len(keys) < limit:
                    keys = None
            if keys is None:
                keys = await self._sort(connection, query, offset, limit)
            return await self._stored(connection, keys)

    async def _plan_settings(self, connection: AsyncConnection) -> None:
        """On PostgreSQL, for this read transaction only: no parallel workers
        (starting them took 10-15 ms, longer than these queries take without
        them), and no sequential scan of event_search (for a word in most
        events the planner preferred testing every row's words, 48 ms at
        100,000 events, to reading the GIN index, 18 ms)."""
        if not self._sqlite:
            await connection.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
            await connection.execute(text("SET LOCAL enable_seqscan = off"))

    async def _count(
        self, connection: AsyncConnection, query: SearchQuery, *, cap: int | None = None
    ) -> int:
        """How many events ``query`` matches; with ``cap``, no more than ``cap``
        (counting stops there)."""
        sql, params = self._matches(query)
        if cap is not None:
            sql += " LIMIT :cap"
            params["cap"] = cap
        found = await connection.execute(text(f"SELECT count(*) FROM ({sql}) AS hits"), params)
        return int(found.scalar_one())

    def _matches(self, query: SearchQuery) -> tuple[str, dict[str, Any]]:
        """A SELECT of the keys of the events ``query`` matches (column ``key``),
        and its parameters. Every word, and any of the topics (their tokens in
        the index: feedbot.search.topic_token)."""
        topics = [topic_token(slug) for slug in query.topics]
        if self._sqlite:
            match = " AND ".join(_phrase(w) for w in query.words)
            if topics:
                match += " AND (" + " OR ".join(_phrase(t) for t in topics) + ")"
            sql = "SELECT rowid AS key FROM event_search WHERE event_search MATCH :match"
        else:
            match = " & ".join(_lexeme(w) for w in query.words)
            if topics:
                match += " & (" + " | ".join(_lexeme(t) for t in topics) + ")"
            sql = "SELECT key FROM event_search WHERE words @@ CAST(:match AS tsquery)"
        return sql, {"match": match}

    async def _feed_size(self, connection: AsyncConnection) -> int:
        """About how many events the store holds, cheaply: the largest rowid of
        events on SQLite (rows are numbered as they come), the planner's
        estimate on PostgreSQL (a count until the table was first analysed)."""
        if self._sqlite:
            sql = "SELECT max(rowid) FROM events"
        else:
            sql = "SELECT reltuples::bigint FROM pg_class WHERE oid = 'events'::regclass"
        size = (await connection.execute(text(sql))).scalar()
        if not self._sqlite and (size is None or size < 0):
            size = (await connection.execute(text("SELECT count(*) FROM events"))).scalar()
        return max(int(size or 0), 1)

    async def _walk(
        self, connection: AsyncConnection, query: SearchQuery, offset: int, limit: int, budget: int
    ) -> list[int]:
        """The keys of one page of matches among about the newest ``budget``
        events, in feed order: the feed walked newest first along
        ix_events_date_id, each event looked up among the matches, stopping
        at the page's last one. On SQLite the matches are gathered once into a
        temporary index ("+" keeps SQLite from driving the loop from them
        instead); PostgreSQL looks each event up in event_search by key.

        The budget is a date to stop at (the date of the budget-th newest event,
        read along the same index): a LIMIT on the walked rows would have to
        read them all before the ORDER BY above it could return."""
        matches, params = self._matches(query)
        since = (
            await connection.execute(
                text("SELECT date FROM events ORDER BY date DESC LIMIT 1 OFFSET :budget"),
                {"budget": budget},
            )
        ).scalar()
        key = "+e.key" if self._sqlite else "e.key"
        sql = (
            f"SELECT e.key FROM events AS e WHERE {key} IN ({matches})"
            " AND e.deleted_at IS NULL AND e.date >= :since"
            f" ORDER BY {_FEED_ORDER_E} LIMIT :limit OFFSET :offset"
        )
        params.update(since=since or "", limit=limit, offset=offset)
        return [key for (key,) in await connection.execute(text(sql), params)]

    async def _sort(
        self, connection: AsyncConnection, query: SearchQuery, offset: int, limit: int
    ) -> list[int]:
        """The keys of one page of matches, in feed order: every match looked up
        in events by key, then sorted (CROSS JOIN fixes that order of the loops
        on SQLite; MATERIALIZED keeps PostgreSQL from walking the feed
        instead, which it would, in parallel, for a few thousand matches)."""
        matches, params = self._matches(query)
        if self._sqlite:
            sql = f"SELECT e.key FROM ({matches}) AS hits CROSS JOIN events AS e"
        else:
            sql = f"WITH hits AS MATERIALIZED ({matches}) SELECT e.key FROM hits JOIN events AS e"
        # Removed events are not in the index; the filter is the events table's
        # word on it all the same.
        sql += (
            " ON e.key = hits.key WHERE e.deleted_at IS NULL"
            f" ORDER BY {_FEED_ORDER_E} LIMIT :limit OFFSET :offset"
        )
        params.update(limit=limit, offset=offset)
        return [key for (key,) in await connection.execute(text(sql), params)]

    async def _stored(self, connection: AsyncConnection, keys: list[int]) -> list[StoredEvent]:
        if not keys:
            return []
        query = select(events.c.key, events.c.body, events.c.first_seen, events.c.updated)
        rows = await connection.execute(query.where(events.c.key.in_(keys)))
        by_key = {key: (body, first_seen, updated) for key, body, first_seen, updated in rows}
        return [_stored_event(*by_key[key]) for key in keys]


def _phrase(word: str) -> str:
    """``word`` as one FTS5 string (a phrase of one token): in double quotes,
    double quotes doubled."""
    return '"' + word.replace('"', '""') + '"'


def _lexeme(word: str) -> str:
    """``word`` as one quoted tsquery lexeme: in quotes, quotes doubled,
    backslashes escaped; no operator, weight or prefix marker."""
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def _stored_event(body: str, first_seen: Any, updated: Any) -> StoredEvent:
    return StoredEvent(Event.from_canonical_json(body), first_seen, updated)
