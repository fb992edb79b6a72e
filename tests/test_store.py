"""The store, run against every backend (SQLite file and the PostgreSQL server)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from feedbot.archive.parse import parse_page
from feedbot.errors import StorageError
from feedbot.model import Event, EventRecord, Topic
from feedbot.store import PollRecord, Store
from feedbot.store.schema import SCHEMA_VERSION
from tests.conftest import Clock, seed_bytes

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)


def seed_event() -> Event:
    return parse_page(seed_bytes(), "news/2007/07/9/lal-masjid-siege.md")


def simple(event_id: str, day: date, *topics: str) -> Event:
    return Event(
        id=event_id,
        date=day,
        story=None,
        title=f"Event {event_id}",
        topics=tuple(Topic.named(t) for t in topics),
    )


async def write(store: Store, *, new=(), changed=(), marks=None, rejected=None, now=T0) -> set[str]:
    result = await store.write_batch(
        new=[EventRecord.of(e) for e in new],
        changed=[EventRecord.of(e) for e in changed],
        marks_=marks or {},
        rejected=rejected or {},
        accepted_paths=[],
        now=now,
    )
    return result.topics


async def test_new_store_is_at_current_schema_version(store: Store) -> None:
    assert await store.schema_version() == SCHEMA_VERSION


async def test_reopening_migrates_nothing_and_keeps_data(store_url: str) -> None:
    first = await Store.open(store_url)
    await write(first, new=[seed_event()])
    await first.close()
    second = await Store.open(store_url)
    try:
        assert await second.count_events() == 1
    finally:
        await second.close()


async def test_event_round_trips_whole_with_aware_times(store: Store) -> None:
    event = seed_event()
    await write(store, new=[event])
    stored = await store.get_event(event.id)
    assert stored is not None
    assert stored.event == event
    assert stored.first_seen == T0 and stored.first_seen.tzinfo is not None
    assert stored.updated == T0


async def test_changed_event_moves_updated_but_not_first_seen(store: Store) -> None:
    event = seed_event()
    await write(store, new=[event])
    edited = replace(event, title=event.title + " (edited)", topics=event.topics[:1])
    affected = await write(store, changed=[edited], now=T1)
    assert affected == {"lal-masjid-siege", "islamabad", "red-mosque"}  # two topics lost it
    stored = await store.get_event(event.id)
    assert stored is not None
    assert stored.event.title.endswith("(edited)")
    assert (stored.first_seen, stored.updated) == (T0, T1)
    assert await store.count_events("red-mosque") == 0  # the topic links were replaced
    assert await store.count_events("lal-masjid-siege") == 1


async def test_content_hashes_only_for_known_ids(store: Store) -> None:
    event = seed_event()
    await write(store, new=[event])
    hashes = await store.content_hashes([event.id, "2001/01/1/unknown"])
    assert hashes == {event.id: event.content_hash()}


async def test_content_hashes_of_many_ids_in_chunks(store: Store) -> None:
    events = [simple(f"2020/01/1/e{i}", date(2020, 1, 1)) for i in range(1200)]
    await write(store, new=events)
    hashes = await store.content_hashes(e.id for e in events)
    assert len(hashes) == 1200


async def test_topic_feed_pages_newest_first(store: Store) -> None:
    events = [simple(f"2020/01/{d}/e", date(2020, 1, d), "Flood", "Other") for d in range(1, 8)]
    events.append(simple("2020/01/9/x", date(2020, 1, 9), "Other"))
    await write(store, new=events)
    page1 = await store.events_page("flood", limit=3)
    page3 = await store.events_page("flood", offset=6, limit=3)
    assert [s.event.date.day for s in page1] == [7, 6, 5]
    assert [s.event.date.day for s in page3] == [1]
    assert await store.count_events("flood") == 7
    everything = await store.events_page(limit=100)
    assert [s.event.date.day for s in everything] == [9, 7, 6, 5, 4, 3, 2, 1]


async def test_topic_counts_most_recently_active_first(store: Store) -> None:
    await write(
        store,
        new=[
            simple("2020/01/1/a", date(2020, 1, 1), "Old topic", "Busy"),
            simple("2021/01/1/b", date(2021, 1, 1), "Busy"),
            simple("2022/01/1/c", date(2022, 1, 1), "Côte d'Ivoire"),
        ],
    )
    counts = await store.topic_counts()
    assert [(c.topic.slug, c.events) for c in counts] == [
        ("cote-d-ivoire", 1),
        ("busy", 2),
        ("old-topic", 1),
    ]
    assert counts[0].topic.name == "Côte d'Ivoire"
    assert await store.topic("busy") == Topic("Busy", "busy")
    assert await store.topic("nope") is None


async def test_first_spelling_of_a_topic_keeps_its_name(store: Store) -> None:
    await write(store, new=[simple("2020/01/1/a", date(2020, 1, 1), "Red Mosque")])
    await write(store, new=[simple("2020/01/2/b", date(2020, 1, 2), "red mosque")], now=T1)
    topic = await store.topic("red-mosque")
    assert topic is not None and topic.name == "Red Mosque"


async def test_marks_and_rejections_persist_and_clear(store: Store) -> None:
    await write(store, marks={"local:2007/07/9": "1:abc"}, rejected={"news/x.md": "no date"})
    await write(store, marks={"local:2007/07/9": "2:def"})
    assert await store.load_marks() == {"local:2007/07/9": "2:def"}
    assert await store.rejections() == {"news/x.md": "no date"}
    await store.write_batch(
        new=[], changed=[], marks_={}, rejected={}, accepted_paths=["news/x.md"], now=T1
    )
    assert await store.rejections() == {}


async def test_poll_records(store: Store, clock: Clock) -> None:
    assert await store.last_poll() is None
    record = PollRecord(T0, T1, "failed", 0, 0, 0, 0, "archive folder /x not found")
    await store.record_poll(record)
    assert await store.last_poll() == record


async def test_a_failed_batch_stores_nothing(store: Store) -> None:
    event = seed_event()
    await write(store, new=[event])
    with pytest.raises(StorageError):
        # The same id again violates the primary key: the whole batch is undone.
        await write(store, new=[simple("2020/01/1/ok", date(2020, 1, 1)), event], marks={"k": "v"})
    assert await store.count_events() == 1
    assert await store.load_marks() == {}


async def test_unreachable_database_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match=r"unreachable|refused|connect"):
        await Store.open("postgresql://nobody@127.0.0.1:1/none")


async def test_bad_url_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match=r"store\.url"):
        await Store.open("not a url")
