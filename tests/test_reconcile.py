"""The config file's subscriptions in the store: one row per URL, however many
stores reconcile at once, on SQLite and PostgreSQL; stores that already hold
duplicates are mended when they are opened."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from feedbot.errors import ConfigError, ConflictError
from feedbot.model import DeliveryStatus, Subscription
from feedbot.store import Store
from feedbot.store.schema import SCHEMA_VERSION, _one_config_subscription_per_url
from tests.conftest import schema_before
from tests.test_outbox import event, store_new

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
STORES = 3
ROUNDS = 10


def config_sub(url: str, topics: tuple[str, ...] = ("*",)) -> Subscription:
    return Subscription(id="", url=url, topics=topics, origin="config")


async def config_rows(store: Store) -> Counter[str]:
    return Counter(s.url for s in await store.subscriptions.all() if s.origin == "config")


@pytest.fixture
async def stores(store_url: str) -> AsyncIterator[list[Store]]:
    """Several stores on one database, each with its own engine: as replicas (or a
    daemon started twice) would be."""
    opened = [await Store.open(store_url) for _ in range(STORES)]
    try:
        yield opened
    finally:
        for store in opened:
            await store.close()


async def test_concurrent_reconciles_leave_one_row_per_url(stores: list[Store]) -> None:
    kept = config_sub("https://hooks.example.org/kept")
    for round_ in range(ROUNDS):
        # Each round: one URL stays, two are new, last round's new ones go, and the
        # one that stays changes its topics every other round.
        topics = ("flood",) if round_ % 2 else ("*",)
        wanted = [
            config_sub(kept.url, topics),
            config_sub(f"https://hooks.example.org/{round_}/a"),
            config_sub(f"https://hooks.example.org/{round_}/b"),
        ]
        counts = await asyncio.gather(
            *(store.subscriptions.reconcile_config(wanted, now=T0) for store in stores)
        )
        rows = await config_rows(stores[0])
        assert rows == Counter(w.url for w in wanted), f"round {round_}: {rows}"
        # One store did the work; the others found it done.
        added = sum(a for a, _, _ in counts)
        removed = sum(r for _, _, r in counts)
        assert (added, removed) == ((3, 0) if round_ == 0 else (2, 2)), counts
        assert sorted(counts)[:-1] == [(0, 0, 0)] * (STORES - 1), counts
        by_url = {s.url: s for s in await stores[1].subscriptions.all()}
        assert by_url[kept.url].topics == topics
    # A later reconcile from any of them keeps it so.
    assert await stores[2].subscriptions.reconcile_config(wanted, now=T0) == (0, 0, 0)
    assert await config_rows(stores[0]) == Counter(w.url for w in wanted)


async def test_a_config_url_is_one_row_but_api_ones_may_repeat(store: Store) -> None:
    await store.subscriptions.add(config_sub("https://a.example/"), now=T0)
    with pytest.raises(ConflictError) as refused:
        await store.subscriptions.add(config_sub("https://a.example/"), now=T0)
    assert refused.value.where and refused.value.reason
    for _ in range(2):
        await store.subscriptions.add(
            Subscription(id="", url="https://a.example/", origin="api"), now=T0
        )
    assert len(await store.subscriptions.all()) == 3


async def test_a_url_listed_twice_in_the_config_is_refused(store: Store) -> None:
    wanted = [
        config_sub("https://a.example/"),
        config_sub("https://b.example/"),
        config_sub("https://a.example/", ("flood",)),
    ]
    with pytest.raises(ConfigError, match=r"^subscriptions\[2\]\.url: .*subscriptions\[0\]"):
        await store.subscriptions.reconcile_config(wanted, now=T0)
    assert await store.subscriptions.all() == []


async def test_opening_a_store_with_duplicates_keeps_the_oldest(store_url: str) -> None:
    # A store written before the unique key, by replicas that reconciled at once.
    old = await Store.open(store_url)
    try:
        async with old._db.transaction() as connection:
            await connection.execute(text("DROP INDEX IF EXISTS uq_subscriptions_config_url"))
            await schema_before(connection, _one_config_subscription_per_url)
        first = await old.subscriptions.add(config_sub("https://a.example/"), now=T0)
        later = T0.replace(second=1)
        twin = await old.subscriptions.add(config_sub("https://a.example/"), now=later)
        other = await old.subscriptions.add(config_sub("https://b.example/"), now=later)
        assert await store_new(old, event("2020/01/1/a")) == 3
    finally:
        await old.close()

    mended = await Store.open(store_url)
    try:
        assert await mended.schema_version() == SCHEMA_VERSION
        assert [s.id for s in await mended.subscriptions.all()] == [first.id, other.id]
        twins = [
            d
            for d in await mended.outbox.deliveries()
            if d.subscription_id == twin.id  # its history stays, failed with the reason
        ]
        assert [(d.status, d.last_error) for d in twins] == [
            (
                DeliveryStatus.FAILED,
                f"subscription removed: a duplicate of {first.id} (same config URL)",
            )
        ]
        assert await mended.outbox.count(DeliveryStatus.PENDING) == 2
        with pytest.raises(ConflictError):
            await mended.subscriptions.add(config_sub("https://a.example/"), now=T0)
        assert await mended.subscriptions.reconcile_config(
            [config_sub("https://a.example/"), config_sub("https://b.example/")], now=T0
        ) == (0, 0, 0)
    finally:
        await mended.close()
