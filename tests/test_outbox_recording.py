"""Recording delivery attempts (``Outbox.finish_attempts``): what it asks of the
store, which bounds how long it holds SQLite's write lock, and the claims it
judges a batch by."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event as sqlalchemy_event

from feedbot.model import DeliveryStatus, Event, Subscription
from feedbot.store import AttemptReport, Store
from tests.conftest import T0, write_events

LEASE = timedelta(seconds=60)


async def store_events(store: Store, count: int, now: datetime = T0) -> None:
    events = [
        Event(id=f"2026/11/27/e{n:03d}", date=date(2026, 11, 27), story=None, title=f"Event {n}")
        for n in range(count)
    ]
    await write_events(store, now, new=events)


def done(at: datetime = T0) -> AttemptReport:
    return AttemptReport(at, 5, 204, None, DeliveryStatus.DONE)


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(f"sqlite:///{tmp_path / 'feedbot.db'}")
    yield opened
    await opened.close()


@contextmanager
def statements(store: Store) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements (and their parameters) the store runs in the block."""
    seen: list[tuple[str, Any]] = []
    engine = store.outbox._db.engine.sync_engine

    def record(_conn: Any, _cursor: Any, sql: str, parameters: Any, _ctx: Any, many: bool) -> None:
        seen.append((sql, parameters[0] if many else parameters))

    sqlalchemy_event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sqlalchemy_event.remove(engine, "before_cursor_execute", record)


async def test_a_batch_is_judged_by_looking_its_deliveries_up(
    sqlite_store: Store, tmp_path: Path
) -> None:
    """The claims of a batch are checked by the deliveries' ids, never by walking
    the due index: with thousands of deliveries queued, that walk held SQLite's
    write lock through every one of them at each recording."""
    store = sqlite_store
    await store.subscriptions.add(Subscription(id="", url="https://hooks.example.org/a"), now=T0)
    await store_events(store, 40)
    jobs = await store.outbox.claim_due(now=T0, limit=10, worker="w", lease=LEASE)
    with statements(store) as seen:
        lost = await store.outbox.finish_attempts([(job.delivery, done()) for job in jobs])
    assert lost == frozenset()
    assert await store.outbox.count(DeliveryStatus.DONE) == 10
    reads = [(sql, parameters) for sql, parameters in seen if sql.lstrip().startswith("SELECT")]
    assert reads
    with sqlite3.connect(tmp_path / "feedbot.db") as plain:
        for sql, parameters in reads:
            plan = " / ".join(
                row[3] for row in plain.execute(f"EXPLAIN QUERY PLAN {sql}", parameters)
            )
            assert "ix_deliveries_due" not in plan, (sql, plan)


async def test_successes_of_healthy_subscriptions_leave_them_untouched(
    sqlite_store: Store,
) -> None:
    """A subscription's row is written only when its health changes: a batch of
    successes to subscriptions that were not failing writes no subscription."""
    store = sqlite_store
    for name in "ab":
        await store.subscriptions.add(
            Subscription(id="", url=f"https://hooks.example.org/{name}"), now=T0
        )
    await store_events(store, 3)
    jobs = await store.outbox.claim_due(now=T0, limit=10, worker="w", lease=LEASE)
    with statements(store) as seen:
        await store.outbox.finish_attempts([(job.delivery, done()) for job in jobs])
    assert await store.outbox.count(DeliveryStatus.DONE) == 6
    assert not [sql for sql, _ in seen if "UPDATE subscriptions" in sql]


async def test_a_success_ends_a_failing_streak(store: Store) -> None:
    await store.subscriptions.add(Subscription(id="", url="https://hooks.example.org/a"), now=T0)
    await store_events(store, 2)
    first, second = await store.outbox.claim_due(now=T0, limit=2, worker="w", lease=LEASE)
    failed = AttemptReport(T0, 5, 503, "HTTP 503", DeliveryStatus.PENDING, T0 + LEASE)
    await store.outbox.finish_attempts([(first.delivery, failed)])
    assert await store.outbox.failing_since(first.subscription.id) == T0
    await store.outbox.finish_attempts([(second.delivery, done(T0 + timedelta(seconds=1)))])
    assert await store.outbox.failing_since(first.subscription.id) is None


async def test_each_delivery_is_judged_by_the_claim_it_was_read_with(store: Store) -> None:
    """A batch may hold deliveries of several claims. One whose lease ran out and
    that the same worker claimed again since, with another delivery, is under
    that other delivery's claim now, not under the one it was read with: its
    answer is late, and changes nothing."""
    await store.subscriptions.add(Subscription(id="", url="https://hooks.example.org/a"), now=T0)
    await store.subscriptions.add(Subscription(id="", url="https://hooks.example.org/b"), now=T0)
    await store_events(store, 1)
    stale, other = await store.outbox.claim_due(now=T0, limit=2, worker="w", lease=LEASE)
    await store.outbox.release(other.delivery.id)
    later = T0 + LEASE + timedelta(seconds=1)
    again = await store.outbox.claim_due(now=later, limit=2, worker="w", lease=LEASE)
    by_id = {job.delivery.id: job for job in again}
    assert set(by_id) == {stale.delivery.id, other.delivery.id}
    fresh = by_id[other.delivery.id]
    lost = await store.outbox.finish_attempts(
        [(stale.delivery, done(later)), (fresh.delivery, done(later))]
    )
    assert lost == {stale.delivery.id}
    recorded = await store.outbox.delivery(other.delivery.id)
    still_claimed = await store.outbox.delivery(stale.delivery.id)
    assert recorded is not None and recorded.status is DeliveryStatus.DONE
    assert still_claimed is not None and still_claimed.status is DeliveryStatus.PENDING
    assert still_claimed.claim_expires == by_id[stale.delivery.id].delivery.claim_expires
    assert await store.outbox.attempts_of(stale.delivery.id) == []
