"""The deliverer claims again for the slots a claim's attempts freed together, not
for each attempt as it ends, and records their results together."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from feedbot.model import DeliveryStatus, Event, Subscription
from feedbot.notify.deliver import Deliverer, DelivererSettings, Request
from feedbot.notify.retry import RetryPolicy
from feedbot.store import Claim, DeliveryJob, Store
from tests.conftest import PATIENCE, Clock, write_events
from tests.receivers import running_receiver

T0 = datetime(2026, 11, 27, 12, tzinfo=UTC)
SLOW_CLAIM = 3.0  # seconds the first claim takes: how long the next one may gather


def plain_request(job: DeliveryJob, attempted_at: datetime) -> Request:
    assert job.event is not None
    body = json.dumps({"event": job.event.id}).encode()
    return Request(body, {"content-type": "application/json", "webhook-id": job.delivery.id})


class WatchedOutbox:
    """The store's outbox, the first claim slowed down; what each claim took and
    each recording held is kept."""

    def __init__(self, store: Store) -> None:
        self.outbox = store.outbox
        self.claimed: list[int] = []
        self.recorded: list[int] = []

    async def claim(self, **kwargs: Any) -> Claim:
        claim = await self.outbox.claim(**kwargs)
        if not self.claimed:
            await asyncio.sleep(SLOW_CLAIM)  # a busy store
        self.claimed.append(len(claim.jobs))
        return claim

    async def finish_attempts(self, results: Any) -> frozenset[str]:
        self.recorded.append(len(results))
        lost: frozenset[str] = await self.outbox.finish_attempts(results)
        return lost


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def until(predicate: Any) -> None:
    async with asyncio.timeout(PATIENCE):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_slots_freed_by_one_claims_attempts_are_claimed_together(
    store: Store, session: aiohttp.ClientSession, clock: Clock
) -> None:
    """Four attempts of one claim answer one after the other: the next claim takes
    the four slots they freed at once, and one transaction records the four."""
    gates = [asyncio.Event() for _ in range(8)]

    async def one_at_a_time(_request: web.Request, n: int) -> web.StreamResponse:
        await gates[n - 1].wait()
        return web.Response(status=204)

    async with running_receiver() as receiver:
        receiver.answer = one_at_a_time
        await store.subscriptions.add(Subscription(id="", url=receiver.url), now=clock())
        events = [
            Event(id=f"2026/11/27/e{n}", date=date(2026, 11, 27), story=None, title=f"E{n}")
            for n in range(8)
        ]
        await write_events(store, clock(), new=events)
        outbox = WatchedOutbox(store)
        worker = Deliverer(
            outbox,  # type: ignore[arg-type]
            session,
            plain_request,
            settings=DelivererSettings(per_subscription=4, idle_poll=PATIENCE),
            policy=RetryPolicy(jitter=0),
            clock=clock,
            rng=random.Random(1),
        )
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        try:
            await until(lambda: len(receiver.received) == 4)
            assert outbox.claimed == [4]
            gates[0].set()
            await until(lambda: worker.in_flight == 3)
            for gate in gates[1:4]:
                gate.set()
            await until(lambda: len(receiver.received) == 8)
            assert outbox.claimed[:2] == [4, 4]
            for gate in gates[4:]:
                gate.set()

            async def all_done() -> bool:
                return await store.outbox.count(DeliveryStatus.DONE) == 8

            async with asyncio.timeout(PATIENCE):
                while not await all_done():
                    await asyncio.sleep(0.02)
        finally:
            stop.set()
            await running
            await worker.drain(PATIENCE)
    assert outbox.recorded[0] == 4
