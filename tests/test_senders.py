"""Sender processes (notify.senders): real processes, real receivers on loopback.

The Deliverer claims and records in this process; a SenderPool's processes make
the signed requests. Checked: every alert arrives once and verifies with the
``standardwebhooks`` library; a sender killed mid-burst costs no alert (the
daemon makes its unanswered attempts itself, same webhook-id) and is replaced;
senders that die as they start are given up while alerts still go out; and a
frame carries jobs and reports across unchanged.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks import Webhook

from feedbot.model import (
    DeliveryStatus,
    Event,
    EventRecord,
    Related,
    RelatedKind,
    Source,
    Subscription,
    Topic,
)
from feedbot.notify.deliver import Deliverer, DelivererSettings
from feedbot.notify.outbound import RequestFactory
from feedbot.notify.retry import RetryPolicy
from feedbot.notify.senders import SenderConfig, SenderPool, _read_frame, _write_frame
from feedbot.store import AttemptReport, Delivery, DeliveryJob, Store
from tests.receivers import Receiver, running_receiver

pytestmark = pytest.mark.slow

BASE_URL = "https://feedbot.example"
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
# Retries come quickly, so a lost attempt is made again within the test.
POLICY = RetryPolicy(schedule=(0.2, 0.2, 0.2), jitter=0)
SETTINGS = DelivererSettings(max_in_flight=32, per_host=32, timeout=5.0, idle_poll=0.05)


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[Store]:
    opened = await Store.open(f"sqlite:///{tmp_path / 'senders.db'}")
    yield opened
    await opened.close()


@pytest.fixture
async def pool() -> AsyncIterator[SenderPool]:
    started = SenderPool(
        2, SenderConfig(base_url=BASE_URL, settings=SETTINGS, policy=POLICY, allow_private=True)
    )
    await started.start()
    yield started
    await started.close(5)


async def burst(store: Store, receiver: Receiver, events: int, subscribers: int) -> None:
    now = datetime.now(UTC)
    for n in range(subscribers):
        await store.outbox.add_subscription(
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


async def deliver_all(store: Store, pool: SenderPool, expected: int, seconds: float) -> None:
    async with aiohttp.ClientSession() as session:
        deliverer = Deliverer(
            store.outbox,
            session,
            RequestFactory(BASE_URL),
            settings=SETTINGS,
            policy=POLICY,
            sender=pool,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(deliverer.run(stop))
        try:
            async with asyncio.timeout(seconds):
                while await store.outbox.count(DeliveryStatus.DONE) < expected:
                    await asyncio.sleep(0.05)
        finally:
            stop.set()
            await task
            await deliverer.drain(5)


async def test_every_alert_arrives_once_and_verifies(store: Store, pool: SenderPool) -> None:
    async with running_receiver() as receiver:
        await burst(store, receiver, events=30, subscribers=4)
        await deliver_all(store, pool, expected=120, seconds=30)
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == len(set(ids)) == 120
    for received in receiver.received:
        payload = Webhook(SECRET).verify(received.body, received.headers)
        assert payload["type"] == "event.created"
    recorded = await store.outbox.deliveries(limit=200)
    assert all(d.status is DeliveryStatus.DONE and d.attempts == 1 for d in recorded)


async def test_a_killed_sender_costs_no_alert_and_is_replaced(
    store: Store, pool: SenderPool, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_receiver() as receiver:

        async def slow(_request: web.Request, _n: int) -> web.StreamResponse:
            await asyncio.sleep(0.1)
            return web.Response(status=204)

        receiver.answer = slow
        await burst(store, receiver, events=40, subscribers=2)
        victim = pool._senders[0].process

        async def kill_when_busy() -> None:
            while len(receiver.received) < 10:
                await asyncio.sleep(0.01)
            os.kill(victim.pid, signal.SIGKILL)

        killer = asyncio.create_task(kill_when_busy())
        await deliver_all(store, pool, expected=80, seconds=60)
        await killer
    assert not victim.is_alive()
    async with asyncio.timeout(10):  # a replacement starts after a pause
        while len(pool._senders) < 2:
            await asyncio.sleep(0.05)
    assert victim not in [s.process for s in pool._senders]
    assert "exited" in caplog.text
    # Every alert arrived (a webhook-id stands for one subscription and one event),
    # and each verifies; the killed sender's may have arrived twice, never differently.
    webhook_ids = set()
    for received in receiver.received:
        Webhook(SECRET).verify(received.body, received.headers)
        webhook_ids.add(received.headers["webhook-id"])
    assert len(webhook_ids) == 80


async def test_senders_that_keep_dying_are_given_up_and_the_daemon_sends(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    # A log level no logger knows makes every sender process fail as it starts.
    broken = SenderPool(
        2,
        SenderConfig(
            base_url=BASE_URL, settings=SETTINGS, policy=POLICY, log_level="no-such-level"
        ),
    )
    await broken.start()
    try:
        async with running_receiver() as receiver:
            await burst(store, receiver, events=5, subscribers=2)
            await deliver_all(store, broken, expected=10, seconds=30)
            async with asyncio.timeout(30):
                while broken._senders or "not starting another" not in caplog.text:
                    await asyncio.sleep(0.1)
    finally:
        await broken.close(5)
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 10


async def test_a_frame_carries_jobs_and_reports_unchanged() -> None:
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    event = Event(
        id="2026/11/27/a",
        date=date(2026, 11, 27),
        story="Story",
        title="Title <b>",
        sources=(Source("S", "https://s.example/1"),),
        related=(
            Related("2026/11/26/b", date(2026, 11, 26), "B", ("Ctx",), RelatedKind.BACKGROUND),
        ),
        topics=(Topic.named("Story"), Topic.named("Ctx")),
    )
    job = DeliveryJob(
        Delivery(
            id="msg_1",
            subscription_id="sub_1",
            event_id=event.id,
            matched_topics=("story",),
            in_reply_to=("2026/11/26/b",),
            status=DeliveryStatus.PENDING,
            attempts=2,
            created_at=now,
            next_attempt_at=now,
            last_attempt_at=now,
            last_status=500,
            last_error="HTTP 500",
        ),
        Subscription(id="sub_1", url="https://r.example/h", secret=SECRET),
        event,
        now,
    )
    report = AttemptReport(now, 12, 503, "HTTP 503", DeliveryStatus.PENDING, now, None)
    ours, theirs = socket.socketpair()
    _reader, writer = await asyncio.open_unix_connection(sock=ours)
    their_reader, their_writer = await asyncio.open_unix_connection(sock=theirs)
    try:
        _write_frame(writer, [job, job])
        _write_frame(writer, [("msg_1", report)])
        assert await _read_frame(their_reader) == [job, job]
        assert await _read_frame(their_reader) == [("msg_1", report)]
        writer.close()
        assert await _read_frame(their_reader) is None  # closed: the end, not an error
    finally:
        writer.close()
        their_writer.close()
