"""Roles under a lease and change notifications, on the real PostgreSQL server
(and the SQLite fallbacks: one process holds every role, nothing is sent)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest

from feedbot.model import Event, EventRecord, Topic
from feedbot.store import Store
from feedbot.store.replicas import Change

T0 = datetime(2026, 11, 27, 12, tzinfo=UTC)


async def test_sqlite_always_holds_and_never_listens(tmp_path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 'one.db'}")
    try:
        assert not store.replicas.shared
        assert await store.replicas.hold("poller", "a", timedelta(seconds=5))
        assert await store.replicas.hold("poller", "b", timedelta(seconds=5))
        await store.replicas.listen(lambda change: None)
    finally:
        await store.close()


@pytest.fixture
async def two_stores(pg_url: str):
    first, second = await Store.open(pg_url), await Store.open(pg_url)
    yield first, second
    await first.close()
    await second.close()


async def test_one_holder_at_a_time_and_takeover_after_the_lease(two_stores) -> None:
    first, second = two_stores
    # A lease far longer than the steps below can take, however loaded the machine.
    lease = timedelta(seconds=60)
    assert await first.replicas.hold("poller", "a", lease)
    assert not await second.replicas.hold("poller", "b", lease)
    assert await first.replicas.hold("poller", "a", lease)  # renewal
    assert await second.replicas.holder("poller") == "a"
    # "a" renews once more, for a moment, and then stops renewing: it died.
    assert await first.replicas.hold("poller", "a", timedelta(milliseconds=100))
    async with asyncio.timeout(30):  # until the database's clock is past the lease
        while await second.replicas.holder("poller") is not None:
            await asyncio.sleep(0.02)
    assert await second.replicas.hold("poller", "b", lease)
    assert not await first.replicas.hold("poller", "a", lease)


async def test_release_hands_over_at_once(two_stores) -> None:
    first, second = two_stores
    assert await first.replicas.hold("poller", "a", timedelta(seconds=60))
    await first.replicas.release("poller", "a")
    assert await second.replicas.hold("poller", "b", timedelta(seconds=60))


async def test_changes_reach_the_other_replicas_on_commit(two_stores) -> None:
    writer, reader = two_stores
    seen: list[Change] = []
    await reader.replicas.listen(seen.append)
    event = Event(
        id="2026/11/27/a",
        date=date(2026, 11, 27),
        story=None,
        title="A",
        topics=(Topic.named("Floods"),),
    )
    await writer.write_batch(
        new=[EventRecord.of(event)], changed=[], marks_={}, rejected={}, accepted_paths=[], now=T0
    )
    async with asyncio.timeout(30):
        while not seen:
            await asyncio.sleep(0.02)
    assert seen == [Change(topics=frozenset({"floods"}), alerts=0)]


def test_a_huge_change_is_sent_as_all_topics() -> None:
    change = Change(topics=frozenset(f"topic-{i}" for i in range(2000)), alerts=3)
    assert Change.parse(change.payload()) == Change(all_topics=True, alerts=3)
