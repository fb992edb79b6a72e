"""The topic list (``topic_stats``), on every backend: kept in step with the events
by every write the store makes, read a page, a topic or a chunk at a time, and
filled by its migration for a store written before it.

The oracle is what the list was read as before it: ``event_topics`` joined with
``topics``, grouped by slug. After any sequence of batches (new and changed
events, pages gone missing and back, removals, revivals, renames), the table
must equal it row for row.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from feedbot.model import Event, Source, Topic
from feedbot.search import TopicFilter
from feedbot.store import Store
from feedbot.store.schema import (
    SCHEMA_VERSION,
    TOPICS_VERSION_KEY,
    _topic_stats,
    event_topics,
    meta,
    topics,
)
from tests.conftest import T0, schema_before
from tests.conftest import write_events as write

IDS = [f"2007/07/{day}/event-{n}" for day, n in itertools.product((8, 9), range(4))]
NAMES = ["Floods", "floods", "Côte d'Ivoire", "Dams", "Rivers", "Red Mosque"]
DAYS = [date(2007, 7, 8), date(2007, 7, 9), date(2008, 1, 1)]


def ev(
    eid: str, names: tuple[str, ...] = ("Floods",), day: date = DAYS[0], title: str = ""
) -> Event:
    # One topic per slug, the first spelling, as the parser makes them.
    chosen = {t.slug: t for t in reversed([Topic.named(n) for n in names])}
    return Event(
        id=eid,
        date=day,
        story=None,
        title=title or f"Event {eid}",
        sources=(Source("Example", "https://example.org/" + eid),),
        topics=tuple(reversed(chosen.values())),
    )


async def grouped(store: Store) -> list[tuple[str, str, int, str]]:
    """The oracle: event_topics grouped by slug, as the list was read before."""
    last = func.max(event_topics.c.date)
    query = (
        select(topics.c.slug, topics.c.name, func.count(), last)
        .join(event_topics, event_topics.c.slug == topics.c.slug)
        .group_by(topics.c.slug, topics.c.name)
        .order_by(last.desc(), topics.c.slug)
    )
    async with store._db.read() as connection:
        return [(s, n, int(c), d) for s, n, c, d in await connection.execute(query)]


async def listed(store: Store) -> list[tuple[str, str, int, str]]:
    return [(c.topic.slug, c.topic.name, c.events, c.last_date) for c in await store.topic_counts()]


async def assert_in_step(store: Store) -> None:
    expected = await grouped(store)
    assert await listed(store) == expected
    assert await store.topic_list.count() == len(expected)
    for slug, name, count, last_date in expected:
        assert await store.count_events(slug) == count
        one = await store.topic_list.one(slug)
        assert one is not None and (one.topic.name, one.events, one.last_date) == (
            name,
            count,
            last_date,
        )
    # Pages and chunks are slices of the same list.
    page = [c.topic.slug for c in await store.topic_list.page(offset=1, limit=2)]
    assert page == [slug for slug, *_ in expected][1:3]
    chunked = [c.topic.slug for c in await store.topic_list.after(None, 2)]
    while chunked and (more := await store.topic_list.after(chunked[-1], 2)):
        chunked += [c.topic.slug for c in more]
    assert chunked == sorted(slug for slug, *_ in expected)


# -- kept in step: any sequence of writes -----------------------------------------


@dataclass
class World:
    """What the examples of one run share: the store is not reset between them
    (the list must equal the oracle whatever the store held before), so times
    keep moving on and aliases are never reused."""

    now: datetime = T0
    aliases: itertools.count[int] = field(default_factory=itertools.count)

    def tick(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture
def world() -> World:
    return World()


_event = st.tuples(
    st.sampled_from(IDS),
    st.lists(st.sampled_from(NAMES), min_size=0, max_size=3).map(tuple),
    st.sampled_from(DAYS),
)
STEP = st.one_of(
    # One batch: events written (new, or changed when stored, removed or not),
    # pages that left a complete listing, pages there again.
    st.tuples(
        st.just("batch"),
        st.lists(_event, max_size=3, unique_by=lambda e: e[0]),
        st.lists(st.sampled_from(IDS), max_size=2),
        st.lists(st.sampled_from(IDS), max_size=2),
    ),
    st.tuples(st.just("remove")),  # the missing events go: tombstones
    st.tuples(st.just("rename"), _event),  # a reworded page: an alias, the kept event changed
    st.tuples(st.just("reword"), st.sampled_from(IDS)),  # same topics and date, new title
)


async def run(store: Store, world: World, step: tuple[Any, ...]) -> None:
    kind = step[0]
    if kind == "remove":
        now = world.tick()
        await store.remove_missing(before=now + timedelta(seconds=1), now=now)
        return
    if kind == "reword":
        stored = await store.get_event(step[1])
        if stored is not None:
            names = tuple(t.name for t in stored.event.topics)
            reworded = ev(stored.event.id, names, stored.event.date, f"Reworded at {world.now}")
            await write(store, world.tick(), changed=[reworded])
        return
    if kind == "rename":
        eid, names, day = step[1]
        if eid not in await store.identities([eid]):
            return
        alias = f"2007/07/9/alias-{next(world.aliases)}"
        await write(store, world.tick(), changed=[ev(eid, names, day)], moved={alias: eid})
        return
    _, written, missing, present = step
    known = await store.identities([eid for eid, _, _ in written])
    new = [ev(eid, names, day) for eid, names, day in written if eid not in known]
    changed = [ev(eid, names, day) for eid, names, day in written if eid in known]
    await write(store, world.tick(), new=new, changed=changed, missing=missing, present=present)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(STEP, min_size=1, max_size=8))
async def test_the_list_is_event_topics_grouped_after_any_writes(
    store: Store, world: World, steps: list[tuple[Any, ...]]
) -> None:
    for step in steps:
        await run(store, world, step)
        await assert_in_step(store)


# -- reading ---------------------------------------------------------------------------


async def test_a_page_is_most_recently_active_first_and_a_filter_matches_word_beginnings(
    store: Store,
) -> None:
    await write(
        store,
        new=[
            ev("2007/07/8/a", ("Côte d'Ivoire", "Floods"), DAYS[0]),
            ev("2007/07/9/b", ("Red Mosque", "Москва"), DAYS[1]),
            ev("2008/01/1/c", ("Mosquito nets",), DAYS[2]),
        ],
    )

    async def slugs(q: str, **page: int) -> list[str]:
        words = TopicFilter.parse(q).words
        return [c.topic.slug for c in await store.topic_list.page(words, **page)]

    assert await slugs("") == ["mosquito-nets", "moskva", "red-mosque", "cote-d-ivoire", "floods"]
    assert await slugs("", offset=1, limit=2) == ["moskva", "red-mosque"]
    assert await slugs("mosq") == ["mosquito-nets", "red-mosque"]  # word beginnings
    assert await slugs("MOSQUE red") == ["red-mosque"]  # every word, case aside
    assert await slugs("cote") == ["cote-d-ivoire"]  # accents aside
    assert await slugs("ivoire") == ["cote-d-ivoire"]  # any word of the name
    assert await slugs("osque") == []  # not the middle of a word
    assert await slugs("москва") == ["moskva"] and await slugs("mosk") == ["moskva"]  # or slug
    assert await slugs("%") == await slugs("")  # no words: every topic
    assert await store.topic_list.count(("mosq",)) == 2
    assert await store.topic_list.count(("zzz",)) == 0
    assert await store.topic_list.count() == 5
    assert await store.topic_list.one("nope") is None
    chunks = [[c.topic.slug for c in chunk] async for chunk in store.topic_list.chunks(2)]
    assert chunks == [["cote-d-ivoire", "floods"], ["moskva", "mosquito-nets"], ["red-mosque"]]


async def test_like_wildcards_in_a_filter_word_match_only_themselves(store: Store) -> None:
    await write(store, new=[ev("2007/07/8/a", ("Floods",))])
    for word in ("%", "_", "fl%", "f_oods", "/", "\\"):
        assert await store.topic_list.page((word,)) == [], word


async def test_the_version_moves_when_the_list_changes_only(store: Store) -> None:
    assert await store.topic_list.version() == 0
    await write(store, new=[ev("2007/07/8/a", ("Floods",))])
    first = await store.topic_list.version()
    assert first > 0
    # Another title, the same topics and date: the list is as it was.
    await write(store, T0 + timedelta(minutes=1), changed=[ev("2007/07/8/a", title="Reworded")])
    await write(store, T0 + timedelta(minutes=2), missing=["2007/07/8/a"])
    assert await store.topic_list.version() == first
    await store.remove_missing(before=T0 + timedelta(hours=1), now=T0 + timedelta(minutes=3))
    assert await store.topic_counts() == []
    assert await store.topic_list.version() > first


# -- the migration ---------------------------------------------------------------------


async def test_migrating_a_store_fills_the_list_from_its_events(store_url: str) -> None:
    store = await Store.open(store_url)
    try:
        await write(
            store,
            new=[
                ev("2007/07/8/a", ("Floods", "Dams"), DAYS[0]),
                ev("2007/07/9/b", ("Floods",), DAYS[1]),
                ev("2008/01/1/c", ("Côte d'Ivoire", "Rivers"), DAYS[2]),
            ],
        )
        await write(store, T0 + timedelta(minutes=1), missing=["2008/01/1/c"])
        await store.remove_missing(before=T0 + timedelta(hours=1), now=T0 + timedelta(minutes=2))
        expected = await grouped(store)
        assert [slug for slug, *_ in expected] == ["floods", "dams"]
        # Back to the schema before the list: no topic_stats, no topics.words.
        async with store._db.engine.begin() as connection:
            await connection.execute(text("DROP TABLE topic_stats"))
            await connection.execute(text("ALTER TABLE topics DROP COLUMN words"))
            await connection.execute(meta.delete().where(meta.c.key == TOPICS_VERSION_KEY))
            await schema_before(connection, _topic_stats)
    finally:
        await store.close()
    store = await Store.open(store_url)
    try:
        assert await store.schema_version() == SCHEMA_VERSION
        assert await listed(store) == expected
        await assert_in_step(store)
        # Every topic's words were worked out, those of removed events' too.
        found = await store.topic_list.page(("cote",))
        assert found == []  # its only event is removed: not listed
        await write(store, T0 + timedelta(minutes=3), present=["2008/01/1/c"])
        assert [c.topic.slug for c in await store.topic_list.page(("cote",))] == ["cote-d-ivoire"]
        await assert_in_step(store)
    finally:
        await store.close()
