"""The delivery worker against real receivers on loopback; clock and randomness injected."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from feedbot.model import DeliveryStatus, Event, EventRecord, Subscription
from feedbot.notify.deliver import Deliverer, DelivererSettings, Request
from feedbot.notify.retry import RetryPolicy
from feedbot.notify.ssrf import make_connector
from feedbot.store import Delivery, DeliveryJob, Store
from tests.conftest import PATIENCE, Clock
from tests.receivers import held, running_receiver, status

T0 = datetime(2026, 11, 27, 12, tzinfo=UTC)


def plain_request(job: DeliveryJob, attempted_at: datetime) -> Request:
    body = json.dumps({"event": job.event.id}).encode()
    return Request(
        body,
        {
            "content-type": "application/json",
            "webhook-id": job.delivery.id,
            "webhook-timestamp": str(int(attempted_at.timestamp())),
        },
    )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def subscribe(store: Store, url: str, clock: Clock) -> Subscription:
    return await store.subscriptions.add(Subscription(id="", url=url), now=clock())


async def new_events(store: Store, clock: Clock, *ids: str) -> None:
    events = [Event(id=i, date=date(2026, 11, 27), story=None, title=f"Event {i}") for i in ids]
    await store.write_batch(
        new=[EventRecord.of(e) for e in events],
        changed=[],
        marks_={},
        rejected={},
        accepted_paths=[],
        now=clock(),
    )


def deliverer(store: Store, session: aiohttp.ClientSession, clock: Clock, **settings) -> Deliverer:
    return Deliverer(
        store.outbox,
        session,
        plain_request,
        settings=DelivererSettings(idle_poll=0.05, **settings),
        policy=RetryPolicy(jitter=0),
        clock=clock,
        rng=random.Random(1),
    )


def delivered_count(store: Store, n: int):
    """A predicate for run_until: ``n`` deliveries are done."""

    async def predicate() -> bool:
        return await store.outbox.count(DeliveryStatus.DONE) == n

    return predicate


def attempts_are(store: Store, n: int):
    """A predicate for run_until: the (only) delivery has had ``n`` attempts."""

    async def predicate() -> bool:
        return (await store.outbox.deliveries())[0].attempts == n

    return predicate


async def until(predicate, seconds: float = PATIENCE) -> None:
    async with asyncio.timeout(seconds):
        while not await predicate():
            await asyncio.sleep(0.02)


async def run_until(
    worker: Deliverer, predicate, seconds: float = PATIENCE, *, grace: float = 0
) -> None:
    """Run ``worker`` until ``predicate`` holds; then stop it, giving the attempts
    in flight ``grace`` seconds to end (the rest are cut off)."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await until(predicate, seconds)
    finally:
        stop.set()
        await task
        await worker.drain(grace)


async def one_attempt(store: Store, session, clock: Clock, answer) -> Delivery:
    """One event to one subscriber whose receiver answers with ``answer``: the
    delivery after its first attempt."""
    async with running_receiver() as receiver:
        receiver.answer = answer
        await subscribe(store, receiver.url, clock)
        await new_events(store, clock, "2026/11/27/a")
        await run_until(deliverer(store, session, clock), attempts_are(store, 1))
    (delivery,) = await store.outbox.deliveries()
    return delivery


async def test_delivers_and_records_the_attempt(store: Store, session, clock: Clock) -> None:
    async with running_receiver() as receiver:
        await subscribe(store, receiver.url, clock)
        await new_events(store, clock, "2026/11/27/a")
        worker = deliverer(store, session, clock)

        async def delivered() -> bool:
            return await store.outbox.count(DeliveryStatus.DONE) == 1

        await run_until(worker, delivered)
    (delivery,) = await store.outbox.deliveries()
    assert receiver.received[0].headers["webhook-id"] == delivery.id
    assert json.loads(receiver.bodies[0]) == {"event": "2026/11/27/a"}
    (attempt,) = await store.outbox.attempts_of(delivery.id)
    assert attempt["status"] == 204 and attempt["error"] is None


async def test_retry_on_schedule_with_the_same_webhook_id(
    store: Store, session, clock: Clock
) -> None:
    async with running_receiver() as receiver:
        receiver.answer = status(500, body=b"database down")
        await subscribe(store, receiver.url, clock)
        await new_events(store, clock, "2026/11/27/a")
        worker = deliverer(store, session, clock)

        async def attempted() -> bool:
            return len((await store.outbox.deliveries())[0].last_error or "") > 0

        await run_until(worker, attempted)
        (delivery,) = await store.outbox.deliveries()
        assert delivery.status is DeliveryStatus.PENDING
        assert delivery.last_error == "HTTP 500 Internal Server Error: database down"
        assert delivery.next_attempt_at == T0 + timedelta(seconds=5)
        # Not due yet: nothing is sent. A second event's delivery, due now, gives
        # the worker its chance: once that one is done and every attempt in
        # flight has ended, the first has still not been sent again.
        receiver.answer = None
        clock.advance(4)
        await new_events(store, clock, "2026/11/27/b")
        await run_until(worker, delivered_count(store, 1), grace=PATIENCE)
        assert [json.loads(body)["event"] for body in receiver.bodies] == [
            "2026/11/27/a",
            "2026/11/27/b",
        ]
        clock.advance(1)
        await run_until(worker, delivered_count(store, 2))
    assert [json.loads(body)["event"] for body in receiver.bodies] == [
        "2026/11/27/a",
        "2026/11/27/b",
        "2026/11/27/a",
    ]
    assert receiver.received[2].headers["webhook-id"] == delivery.id


async def test_retry_after_is_honoured(store: Store, session, clock: Clock) -> None:
    delivery = await one_attempt(store, session, clock, status(429, {"Retry-After": "600"}))
    assert delivery.next_attempt_at == T0 + timedelta(seconds=600)


async def test_schedule_runs_out_into_the_failed_list(store: Store, session, clock: Clock) -> None:
    async with running_receiver() as receiver:
        receiver.answer = status(503)
        await subscribe(store, receiver.url, clock)
        await new_events(store, clock, "2026/11/27/a")
        worker = Deliverer(
            store.outbox,
            session,
            plain_request,
            settings=DelivererSettings(idle_poll=0.02),
            policy=RetryPolicy(schedule=(5, 60), jitter=0),
            clock=clock,
        )
        for expected_attempts in (1, 2, 3):
            await run_until(worker, attempts_are(store, expected_attempts))
            clock.advance(3600)
    (delivery,) = await store.outbox.deliveries()
    assert delivery.status is DeliveryStatus.FAILED
    assert len(receiver.received) == 3


async def test_gone_disables_the_subscription(store: Store, session, clock: Clock) -> None:
    async with running_receiver() as receiver:
        receiver.answer = status(410)
        subscription = await subscribe(store, receiver.url, clock)
        await new_events(store, clock, "2026/11/27/a")

        async def failed() -> bool:
            return await store.outbox.count(DeliveryStatus.FAILED) == 1

        await run_until(deliverer(store, session, clock), failed)
    stored = await store.subscriptions.get(subscription.id)
    assert stored is not None and not stored.active
    assert stored.disabled_reason == "the receiver answered 410 Gone"


async def test_redirects_are_not_followed(store: Store, session, clock: Clock) -> None:
    delivery = await one_attempt(
        store, session, clock, status(302, {"Location": "http://127.0.0.1:1/elsewhere"})
    )
    assert "redirect to http://127.0.0.1:1/elsewhere not followed" in (delivery.last_error or "")


async def _huge(_request: web.Request, _n: int) -> web.StreamResponse:
    return web.Response(status=500, body=b"\xff\x00" * 5_000_000)


async def _hang_up(request: web.Request, _n: int) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.close()
    return web.Response(status=204)


async def _garbage(request: web.Request, _n: int) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.write(b"NOT HTTP AT ALL\r\n\r\n")
    request.transport.close()
    return web.Response(status=204)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (_huge, "HTTP 500 Internal Server Error"),
        (_hang_up, "ServerDisconnectedError"),
        (_garbage, "ClientResponseError"),
    ],
)
async def test_bad_answers_are_recorded_failures(
    store: Store, session, clock: Clock, answer, expected: str
) -> None:
    delivery = await one_attempt(store, session, clock, answer)
    assert delivery.status is DeliveryStatus.PENDING
    assert expected in (delivery.last_error or ""), delivery.last_error
    assert len(delivery.last_error or "") < 400


async def test_a_hanging_receiver_delays_no_other(store: Store, session, clock: Clock) -> None:
    released = asyncio.Event()
    async with running_receiver() as slow, running_receiver() as fast:
        slow.answer = held(released)
        await subscribe(store, slow.url, clock)
        await subscribe(store, fast.url, clock)
        await new_events(store, clock, *[f"2026/11/27/e{i}" for i in range(40)])
        worker = deliverer(store, session, clock, max_in_flight=16, per_host=4, timeout=300)

        async def fast_has_all_while_slow_hangs() -> bool:
            return len(fast.received) == 40 and len(slow.received) >= 4

        # The slow receiver answers nothing until the end of the test: every fast
        # delivery goes through while it holds its host's slots, and no more.
        await run_until(worker, fast_has_all_while_slow_hangs)
        assert len(slow.received) == 4


async def test_a_subscription_failing_for_days_is_disabled(
    store: Store, session, clock: Clock
) -> None:
    async with running_receiver() as receiver:
        receiver.answer = status(503)
        subscription = await subscribe(store, receiver.url, clock)
        await new_events(store, clock, "2026/11/27/a")
        worker = Deliverer(
            store.outbox,
            session,
            plain_request,
            settings=DelivererSettings(idle_poll=0.02),
            policy=RetryPolicy(schedule=(3600,) * 200, jitter=0, disable_after=timedelta(days=5)),
            clock=clock,
        )
        attempts = 0
        while True:
            attempts += 1

            await run_until(worker, attempts_are(store, attempts))
            if (await store.outbox.deliveries())[0].status is DeliveryStatus.FAILED:
                break
            clock.advance(3600)
    stored = await store.subscriptions.get(subscription.id)
    assert stored is not None and not stored.active
    assert stored.disabled_reason == "failing since 2026-11-27 12:00 UTC"
    assert attempts == 5 * 24 + 1  # hourly attempts until five days had passed


async def test_a_late_answer_under_a_lost_claim_is_not_reported(
    store: Store, session, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker whose lease ran out while its receiver hung, and whose delivery
    another worker then sent, records nothing: it must not report the late answer
    either (as metrics, or as a subscription it disabled)."""
    caplog.set_level(logging.INFO, "feedbot.notify.deliver")
    released = asyncio.Event()

    async def gone_late_then_fine(request: web.Request, n: int) -> web.StreamResponse:
        if n == 1:  # the first request
            await released.wait()
            return web.Response(status=410)
        return web.Response(status=204)

    reported: list[str] = []
    async with running_receiver() as receiver:
        receiver.answer = gone_late_then_fine
        subscription = await subscribe(store, receiver.url, clock)
        await new_events(store, clock, "2026/11/27/a")
        late = Deliverer(
            store.outbox,
            session,
            plain_request,
            settings=DelivererSettings(idle_poll=0.05, timeout=300),
            worker_id="late",
            clock=clock,
            on_attempt=lambda job, _report: reported.append(job.delivery.id),
        )
        stop = asyncio.Event()
        running = asyncio.create_task(late.run(stop))
        await until(lambda: _true(len(receiver.received) == 1))
        stop.set()  # it claims no more; its attempt goes on, hanging
        await running
        clock.advance((DelivererSettings().lease + timedelta(seconds=1)).total_seconds())
        await run_until(deliverer(store, session, clock), delivered_count(store, 1))
        released.set()
        await late.drain(PATIENCE)
    assert "late answer ignored" in caplog.text  # judged, not dropped by drain
    assert reported == []
    assert (await store.subscriptions.get(subscription.id)).active  # type: ignore[union-attr]
    assert "subscription disabled" not in caplog.text


async def _true(value: bool) -> bool:
    return value


async def test_a_target_the_guard_refuses_fails_at_once_with_its_reason(
    store: Store, clock: Clock
) -> None:
    """The SSRF guard's refusal is final (waiting will not make 127.0.0.1 public):
    one attempt, its message as the error, the subscription left on."""
    async with (
        running_receiver() as receiver,
        aiohttp.ClientSession(connector=make_connector()) as guarded,
    ):
        subscription = await subscribe(store, receiver.url, clock)
        await new_events(store, clock, "2026/11/27/a")

        async def failed() -> bool:
            return await store.outbox.count(DeliveryStatus.FAILED) == 1

        await run_until(deliverer(store, guarded, clock), failed)
        assert receiver.received == []
    (delivery,) = await store.outbox.deliveries()
    assert (delivery.attempts, delivery.last_error) == (1, "refused: 127.0.0.1 (loopback)")
    stored = await store.subscriptions.get(subscription.id)
    assert stored is not None and stored.active


class _WordyResolver(AbstractResolver):
    """A resolver whose own failure reads like the guard's refusal."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        raise OSError(f"refused: {host} is not in this resolver's zone")

    async def close(self) -> None:
        pass


async def test_an_error_that_only_reads_like_a_refusal_is_retried(
    store: Store, clock: Clock
) -> None:
    """Whether an attempt was refused is told by the error's type, not by its text."""
    connector = aiohttp.TCPConnector(resolver=_WordyResolver())
    async with aiohttp.ClientSession(connector=connector) as wordy:
        await subscribe(store, "http://receiver.test:9/hook", clock)
        await new_events(store, clock, "2026/11/27/a")
        await run_until(deliverer(store, wordy, clock), attempts_are(store, 1))
    (delivery,) = await store.outbox.deliveries()
    assert delivery.status is DeliveryStatus.PENDING
    assert delivery.next_attempt_at is not None
