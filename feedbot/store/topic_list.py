"""The topic list: each topic's count of events in the feeds and its newest date,
kept in step with the events, and read a page, a topic or a chunk at a time.

This module owns the SQL of :data:`~feedbot.store.schema.topic_stats` (the schema
module owns the table, and the migration that fills it for a store written
before it). The store notes every ``event_topics`` row it inserts or deletes --
a new or changed event's rows, the rows a changed event had, a removed event's,
a revived event's -- in a :class:`TopicTally`, and :meth:`TopicList.apply` folds
the tally into ``topic_stats`` in the same transaction. So at every commit the
table holds exactly what grouping ``event_topics`` by slug gives (what the list
was read as before it, a query of 1.3 to 1.8 s at 1,000,000 events): a count
moves by the rows written, a newest date that may have gone down (a row of the
topic left) is read again from ``event_topics``, one seek of its key.

What reads it: ``/topics`` (a page in list order, most recently active first,
then by slug, optionally filtered by words), a topic's feed and page (one topic
by its slug), the OPML (the list in slug order, a chunk after another), the 404
of an unknown topic (every name, to find the closest), and the OPML's validator
(:meth:`TopicList.version`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Select, bindparam, func, literal, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from feedbot.model import Topic
from feedbot.store._db import Database, PlainSql, chunks
from feedbot.store.schema import TOPICS_VERSION_KEY, meta, topic_stats, topics


@dataclass(frozen=True, slots=True)
class TopicCount:
    """A topic of the list: how many events in the feeds have it, and the newest's date."""

    topic: Topic
    events: int
    last_date: str  # ISO date of the topic's newest event


class TopicTally:
    """The ``event_topics`` rows one write transaction inserted and deleted,
    counted by (slug, date): a row deleted and inserted again (a changed event
    that kept its topics and date) nets out."""

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows: Counter[tuple[str, str]] = Counter()

    def added(self, rows: Iterable[tuple[str, str]]) -> None:
        """Note rows inserted, as (slug, date) pairs."""
        self._rows.update(rows)  # counted in C: a first ingest notes millions

    def removed(self, slug: str, date: str) -> None:
        self._rows[(slug, date)] -= 1

    def changes(self) -> dict[str, TopicChange]:
        """What the noted rows change, by slug."""
        moved: Counter[str] = Counter()
        latest: dict[str, str] = {}
        shrunk: set[str] = set()
        for (slug, date), rows in self._rows.items():
            if rows > 0:
                moved[slug] += rows
                if date > latest.get(slug, ""):
                    latest[slug] = date
            elif rows < 0:
                moved[slug] += rows
                shrunk.add(slug)
        return {
            slug: TopicChange(moved[slug], latest.get(slug, ""), slug in shrunk) for slug in moved
        }


class TopicChange(NamedTuple):
    events: int  # rows more (or fewer)
    latest: str  # the newest date of a row inserted; "" for none
    shrunk: bool  # a row left: the newest date is read again


# A topic's count moves by the rows written; its date moves up to the newest
# inserted (a date that may have gone down is read again after; a topic that only
# lost rows passes "", which never wins). CASE rather than max()/GREATEST(), which
# the two databases spell differently.
_FOLD = PlainSql(
    "INSERT INTO topic_stats (slug, events, last_date) VALUES ({slug}, {events}, {last_date})"
    " ON CONFLICT (slug) DO UPDATE SET events = topic_stats.events + excluded.events,"
    " last_date = CASE WHEN excluded.last_date > topic_stats.last_date"
    " THEN excluded.last_date ELSE topic_stats.last_date END"
)
_FOLD_NAMES = ("slug", "events", "last_date")
_EMPTIED = text("DELETE FROM topic_stats WHERE slug IN :slugs AND events <= 0").bindparams(
    bindparam("slugs", expanding=True)
)
_REDATED = text(
    "UPDATE topic_stats SET last_date ="
    " (SELECT max(date) FROM event_topics WHERE event_topics.slug = topic_stats.slug)"
    " WHERE slug IN :slugs"
).bindparams(bindparam("slugs", expanding=True))

_LISTED = (topic_stats.c.slug, topics.c.name, topic_stats.c.events, topic_stats.c.last_date)
_LIST_ORDER = (topic_stats.c.last_date.desc(), topic_stats.c.slug)


class TopicList:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- writing, in the caller's transaction --------------------------------------

    async def apply(self, connection: AsyncConnection, tally: TopicTally) -> None:
        """Fold ``tally`` into ``topic_stats``; call it once the transaction has
        written every ``event_topics`` row the tally notes. A topic left with no
        event loses its row; the list's version moves when anything changed."""
        changes = tally.changes()
        if not changes:
            return
        await self._db.execute_many(
            connection,
            _FOLD,
            _FOLD_NAMES,
            sorted((slug, change.events, change.latest) for slug, change in changes.items()),
        )
        shrunk = sorted(slug for slug, change in changes.items() if change.shrunk)
        for chunk in chunks(shrunk):
            await connection.execute(_EMPTIED, {"slugs": chunk})
            await connection.execute(_REDATED, {"slugs": chunk})
        version = await self._version(connection)
        await self._db.insert_rows(
            connection,
            meta,
            [{"key": TOPICS_VERSION_KEY, "value": str(version + 1)}],
            keys=["key"],
            on_conflict="update",
        )

    # -- reading ---------------------------------------------------------------------

    async def every(self) -> list[TopicCount]:
        """Every topic with events in the feeds, in list order (the most recently
        active first, then by slug)."""
        async with self._db.read() as connection:
            rows = await connection.execute(self._joined().order_by(*_LIST_ORDER))
            return [_count(row) for row in rows]

    async def page(
        self, words: Sequence[str] = (), *, offset: int = 0, limit: int = 200
    ) -> list[TopicCount]:
        """``limit`` topics of the list after its first ``offset``, in list order;
        only those with a word beginning with each of ``words`` (see
        :meth:`count`) when some are given.

        The page is cut from topic_stats alone, and only its topics are looked
        up in topics for their names: joined first, every topic skipped by the
        offset was looked up too (10 ms for page 51 of 20,000 topics on SQLite,
        against 0.3)."""
        cut = (
            _kept(words).order_by(*_LIST_ORDER).offset(max(offset, 0)).limit(limit).subquery("cut")
        )
        query = (
            select(cut.c.slug, topics.c.name, cut.c.events, cut.c.last_date)
            .join(topics, topics.c.slug == cut.c.slug)
            .order_by(cut.c.last_date.desc(), cut.c.slug)
        )
        async with self._db.read() as connection:
            return [_count(row) for row in await connection.execute(query)]

    async def count(self, words: Sequence[str] = ()) -> int:
        """How many topics the list holds; with ``words`` (normalised words,
        :func:`feedbot.search.words_of`), how many have, for each, a word of
        their name or slug (``topics.words``) that begins with it."""
        query = select(func.count()).select_from(_kept(words).subquery("kept"))
        async with self._db.read() as connection:
            return int((await connection.execute(query)).scalar_one())

    async def one(self, slug: str) -> TopicCount | None:
        """The topic ``slug`` with its count; None when no event in the feeds has it."""
        async with self._db.read() as connection:
            row = (
                await connection.execute(self._joined().where(topic_stats.c.slug == slug))
            ).first()
        return None if row is None else _count(row)

    async def after(self, slug: str | None, limit: int) -> list[TopicCount]:
        """The first ``limit`` topics in slug order whose slug comes after ``slug``
        (from the first with None): the list a chunk at a time, each chunk one
        short read, so a slow reader of the whole holds no connection."""
        query = self._joined()
        if slug is not None:
            query = query.where(topic_stats.c.slug > slug)
        async with self._db.read() as connection:
            rows = await connection.execute(query.order_by(topic_stats.c.slug).limit(limit))
            return [_count(row) for row in rows]

    async def chunks(self, size: int) -> AsyncIterator[list[TopicCount]]:
        """The whole list in slug order, ``size`` topics at a time (:meth:`after`):
        what holds no connection between two chunks, and never the whole list."""
        after: str | None = None
        while True:
            chunk = await self.after(after, size)
            if chunk:
                yield chunk
            if len(chunk) < size:
                return
            after = chunk[-1].topic.slug

    async def version(self) -> int:
        """A number that moves whenever the list changes (0 for a list never written)."""
        async with self._db.read() as connection:
            return await self._version(connection)

    @staticmethod
    async def _version(connection: AsyncConnection) -> int:
        found = await connection.execute(
            select(meta.c.value).where(meta.c.key == TOPICS_VERSION_KEY)
        )
        return int(found.scalar_one_or_none() or 0)

    @staticmethod
    def _joined() -> Select[Any]:
        return select(*_LISTED).join(topics, topics.c.slug == topic_stats.c.slug)


def _kept(words: Sequence[str]) -> Select[Any]:
    """The rows of topic_stats of the topics with, for each of ``words``, a word
    that begins with it: " " + their words holds " " + the word. The words are
    normalised (letters, digits and marks only); LIKE's wildcards are escaped all
    the same (with "/": the two databases read a backslash in a string literal
    differently). The names are matched first, as a set of slugs: at 20,000
    topics, 9 ms on SQLite, where walking the list in its order and looking each
    topic up took 88."""
    query = select(topic_stats.c.slug, topic_stats.c.events, topic_stats.c.last_date)
    if not words:
        return query
    spaced = literal(" ").concat(topics.c.words)
    matching = select(topics.c.slug)
    for word in words:
        pattern = "% " + word.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"
        matching = matching.where(spaced.like(pattern, escape="/"))
    return query.where(topic_stats.c.slug.in_(matching))


def _count(row: Any) -> TopicCount:
    slug, name, events, last_date = row
    return TopicCount(Topic(name=name, slug=slug), int(events), last_date)
