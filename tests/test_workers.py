"""Delivery worker processes (notify.workers): real processes, a real SQLite file,
real receivers on loopback.

This process stores the events and wakes the workers, as the daemon does; the
workers claim, send and record. Checked: every alert arrives once and verifies
with the ``standardwebhooks`` library, and every attempt reaches this process's
metrics; a worker killed mid-burst costs no alert (what it had claimed is sent
again, same webhook-id, once its lease runs out) and is replaced; workers that
die as they start are given up.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from standardwebhooks import Webhook

from feedbot.model import DeliveryStatus, Event, EventRecord, Subscription
from feedbot.notify import workers as workers_module
from feedbot.notify.deliver import DelivererSettings
from feedbot.notify.retry import RetryPolicy
from feedbot.notify.workers import DeliveryConfig, DeliveryWorkers, Outcome
from feedbot.store import Store
from tests.conftest import PATIENCE
from tests.receivers import Receiver, running_receiver

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def config(
    store_url: str, *, lease: float = 2.0, timeout: float = 5.0, **overrides: object
) -> DeliveryConfig:
    """``lease``: short by default, so that a dead worker's claims come back within
    the test. A test that counts each alert once gives a live worker all the time
    a loaded machine may take instead (an attempt's timeout, a claim's lease)."""
    settings = DelivererSettings(
        max_in_flight=32,
        per_host=32,
        timeout=timeout,
        idle_poll=0.05,
        lease=timedelta(seconds=lease),
    )
    values: dict[str, object] = {
        "store_url": store_url,
        "base_url": "https://feedbot.example",
        "settings": settings,
        "policy": RetryPolicy(schedule=(0.2, 0.2, 0.2), jitter=0),
        "allow_private": True,
        "grace": 5.0,
    }
    values.update(overrides)
    return DeliveryConfig(**values)  # type: ignore[arg-type]


async def burst(store: Store, receiver: Receiver, events: int, subscribers: int) -> None:
    now = datetime.now(UTC)
    for n in range(subscribers):
        await store.subscriptions.add(
            Subscription(id="", url=f"{receiver.url}?s={n}", secret=SECRET), now=now
        )
    records = [
        EventRecord.of(
            Event(id=f"2026/11/27/e{i}", date=date(2026, 11, 27), story=None, title=f"E{i}")
        )
        for i in range(events)
    ]
    await store.write_batch(
        new=records, changed=[], marks_={}, rejected={}, accepted_paths=[], now=now
    )


async def until_done(store: Store, expected: int, seconds: float = PATIENCE) -> None:
    async with asyncio.timeout(seconds):
        while await store.outbox.count(DeliveryStatus.DONE) < expected:
            await asyncio.sleep(0.05)


async def test_every_alert_arrives_once_verifies_and_is_counted(
    store: Store, store_url: str
) -> None:
    outcomes: list[Outcome] = []
    workers = DeliveryWorkers(
        2,
        config(store_url, lease=PATIENCE, timeout=PATIENCE / 3),
        worker_id="test",
        on_outcome=outcomes.append,
    )
    await workers.start()
    try:
        async with running_receiver() as receiver:
            await burst(store, receiver, events=30, subscribers=4)
            workers.wake()
            await until_done(store, 120)
    finally:
        await workers.stop()
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == len(set(ids)) == 120
    for received in receiver.received:
        assert Webhook(SECRET).verify(received.body, received.headers)["type"] == "event.created"
    recorded = await store.outbox.deliveries(limit=200)
    assert all(d.status is DeliveryStatus.DONE and d.attempts == 1 for d in recorded)
    assert len(outcomes) == 120 and all(o.status is DeliveryStatus.DONE for o in outcomes)
    assert workers.running == 0


async def test_a_killed_worker_costs_no_alert_and_is_replaced(
    store: Store, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    workers = DeliveryWorkers(2, config(store_url), worker_id="test")
    await workers.start()
    victim = workers._workers[0].process
    try:
        async with running_receiver() as receiver:

            async def slow(_request: web.Request, _n: int) -> web.StreamResponse:
                await asyncio.sleep(0.1)
                return web.Response(status=204)

            receiver.answer = slow
            await burst(store, receiver, events=40, subscribers=2)
            workers.wake()
            async with asyncio.timeout(PATIENCE):
                while len(receiver.received) < 10:
                    await asyncio.sleep(0.01)
            os.kill(victim.pid, signal.SIGKILL)
            await until_done(store, 80)
            async with asyncio.timeout(PATIENCE):  # a replacement starts after a pause
                while workers.running < 2:
                    await asyncio.sleep(0.05)
    finally:
        await workers.stop()
    assert not victim.is_alive()
    assert "exited" in caplog.text
    # Every alert arrived (a webhook-id stands for one subscription and one event),
    # and each verifies; the killed worker's may have arrived twice, never differently.
    webhook_ids = set()
    for received in receiver.received:
        Webhook(SECRET).verify(received.body, received.headers)
        webhook_ids.add(received.headers["webhook-id"])
    assert len(webhook_ids) == 80


async def test_workers_that_keep_dying_are_given_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A log level no logger knows makes every worker process fail as it starts,
    # before it opens the store (so one backend is enough). Starting a Python
    # process takes seconds on a loaded machine: how long one takes to die must
    # not decide whether it died "as it started".
    monkeypatch.setattr(workers_module, "_SHORT_LIFE", 10 * PATIENCE)
    unopened = f"sqlite:///{tmp_path / 'workers.db'}"
    broken = DeliveryWorkers(2, config(unopened, log_level="no-such-level"), worker_id="test")
    await broken.start()
    try:
        async with asyncio.timeout(2 * PATIENCE):  # eight worker starts, two at a time
            while broken.running or "not starting another" not in caplog.text:
                await asyncio.sleep(0.1)
    finally:
        await broken.stop()
