"""Fairness and idleness of delivery, on every backend: limits per subscription as
well as per host, claims that go round the subscriptions, and a deliverer that
sleeps when nothing can be sent (real receivers on loopback, real stores)."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web

from feedbot.model import DeliveryStatus, Event, EventRecord, Subscription
from feedbot.notify.deliver import Deliverer, DelivererSettings, Request
from feedbot.notify.retry import RetryPolicy
from feedbot.store import AttemptReport, Claim, DeliveryJob, Store
from tests.conftest import Clock
from tests.daemons import PATIENCE

T0 = datetime(2026, 11, 27, 12, tzinfo=UTC)
LEASE = timedelta(seconds=600)


def plain_request(job: DeliveryJob, attempted_at: datetime) -> Request:
    body = json.dumps({"event": job.event.id}).encode()
    return Request(body, {"content-type": "application/json", "webhook-id": job.delivery.id})


@dataclass
class Host:
    """One receiver on one host:port: ``/hang/N`` answers nothing until the test
    ends, ``/ok`` answers 204 at once. Requests are counted by path."""

    url: str = ""
    received: Counter[str] = field(default_factory=Counter)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def hanging(self) -> int:
        return sum(n for path, n in self.received.items() if path.startswith("/hang/"))


@asynccontextmanager
async def running_host() -> AsyncIterator[Host]:
    host = Host()

    async def hang(request: web.Request) -> web.StreamResponse:
        await request.read()
        host.received[request.path] += 1
        await host.release.wait()
        return web.Response(status=204)

    async def ok(request: web.Request) -> web.StreamResponse:
        await request.read()
        host.received[request.path] += 1
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hang/{n}", hang)
    app.router.add_post("/ok", ok)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield host
    finally:
        host.release.set()
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def subscribe(store: Store, url: str, now: datetime) -> Subscription:
    return await store.subscriptions.add(Subscription(id="", url=url), now=now)


async def new_events(store: Store, now: datetime, *ids: str) -> None:
    events = [Event(id=i, date=date(2026, 11, 27), story=None, title=f"Event {i}") for i in ids]
    await store.write_batch(
        new=[EventRecord.of(e) for e in events],
        changed=[],
        marks_={},
        rejected={},
        accepted_paths=[],
        now=now,
    )


def event_ids(prefix: str, n: int) -> list[str]:
    return [f"2026/11/27/{prefix}{i}" for i in range(n)]


async def until(predicate: Callable[[], Awaitable[bool]], what: Callable[[], str]) -> None:
    """Wait for ``predicate``; fail after PATIENCE seconds, saying ``what()`` was seen."""
    try:
        async with asyncio.timeout(PATIENCE):
            while not await predicate():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {PATIENCE:g} s: {what()}") from None


def deliverer(store: Store, session: aiohttp.ClientSession, clock: Clock, **settings) -> Deliverer:
    # Receivers hang until the test ends: no attempt may time out before. Nothing
    # polls either: only wake-ups (and due times) may make the deliverer look again.
    return Deliverer(
        store.outbox,
        session,
        plain_request,
        settings=DelivererSettings(timeout=3600, idle_poll=3600, **settings),
        policy=RetryPolicy(jitter=0),
        clock=clock,
        rng=random.Random(1),
    )


@asynccontextmanager
async def running(worker: Deliverer) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task
        await worker.drain(0)


def count_claims(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[Claim]:
    """Every claim the outbox answers from now on, in order."""
    claims: list[Claim] = []
    claim = store.outbox.claim

    async def counted(**kwargs) -> Claim:
        answer = await claim(**kwargs)
        claims.append(answer)
        return answer

    monkeypatch.setattr(store.outbox, "claim", counted)
    return claims


# -- the deliverer ----------------------------------------------------------------------


async def test_hanging_subscriptions_on_a_host_delay_no_other_there(
    store: Store, session, clock: Clock
) -> None:
    settings = DelivererSettings()  # the defaults: per_host 8, per_subscription 4
    async with running_host() as host:
        for n in range(4):
            await subscribe(store, f"{host.url}/hang/{n}", clock())
        healthy = await subscribe(store, f"{host.url}/ok", clock())
        await new_events(store, clock(), *event_ids("e", 8))
        worker = deliverer(store, session, clock)

        async def healthy_has_all_while_the_others_hang() -> bool:
            # Recorded too: an answer arrives before its result is written.
            return (
                host.received["/ok"] == 8
                and host.hanging() >= 4
                and await store.outbox.count(DeliveryStatus.DONE) == 8
            )

        async with running(worker):
            await until(
                healthy_has_all_while_the_others_hang,
                lambda: f"the healthy one's 8 alerts; received {dict(host.received)}",
            )
            done = await store.outbox.deliveries(status=DeliveryStatus.DONE)
            assert {d.subscription_id for d in done} == {healthy.id}
            # The hanging ones hold their own slots, no more.
            hanging = {p: n for p, n in host.received.items() if p != "/ok"}
            assert len(hanging) == 4, hanging
            assert max(hanging.values()) <= settings.per_subscription
            assert host.hanging() <= settings.per_host


async def test_a_deliverer_with_only_hanging_receivers_sleeps(
    store: Store, session, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    claims = count_claims(store, monkeypatch)
    async with running_host() as host:
        for n in range(3):
            await subscribe(store, f"{host.url}/hang/{n}", clock())
        await new_events(store, clock(), *event_ids("e", 10))
        worker = deliverer(store, session, clock, max_in_flight=16, per_host=2)

        async def asleep_with_one_each() -> bool:
            return worker.idle and host.hanging() == 3

        async with running(worker):
            # Each subscription sends one (its first goes whatever the host's
            # load); the rest cannot be sent, so they are not claimed, and the
            # deliverer sleeps instead of claiming them over and over.
            await until(
                asleep_with_one_each,
                lambda: (
                    f"asleep with one request each: {len(claims)} claims, "
                    f"received {dict(host.received)}"
                ),
            )
            settled = len(claims)
            assert settled <= 2, claims
            for _ in range(10):
                seen = len(claims)
                worker.wake()

                async def looked_and_asleep_again(seen: int = seen) -> bool:
                    return len(claims) > seen and worker.idle

                await until(looked_and_asleep_again, lambda: f"{len(claims)} claims")
            assert len(claims) == settled + 10  # one look per wake-up
            assert all(claim.jobs == () for claim in claims[1:])
            assert host.hanging() == 3
        assert await store.outbox.count(DeliveryStatus.PENDING) == 30


# -- the outbox's side ------------------------------------------------------------------


async def test_claims_go_round_the_subscriptions(store: Store) -> None:
    busy = await subscribe(store, "https://busy.example/hook", T0)
    await new_events(store, T0, *event_ids("old", 6))
    quiet = await subscribe(store, "https://quiet.example/hook", T0)
    await new_events(store, T0 + timedelta(seconds=1), "2026/11/27/new")
    # The busy one's six are older, yet the quiet one's is among the first two.
    jobs = await store.outbox.claim_due(
        now=T0 + timedelta(seconds=1), limit=2, worker="w", lease=LEASE
    )
    assert [j.subscription.id for j in jobs] == [busy.id, quiet.id]
    assert jobs[0].event.id.startswith("2026/11/27/old")


async def test_a_claim_keeps_to_each_subscriptions_room(store: Store) -> None:
    first = await subscribe(store, "https://a.example/hook", T0)
    second = await subscribe(store, "https://b.example/hook", T0)
    third = await subscribe(store, "https://c.example/hook", T0)
    await new_events(store, T0, *event_ids("e", 5))
    asked: list[tuple[str, str]] = []

    def admit(subscription_id: str, url: str) -> bool:
        asked.append((subscription_id, url))
        return subscription_id != third.id

    claim = await store.outbox.claim(
        now=T0,
        limit=50,
        worker="w",
        lease=LEASE,
        per_subscription=3,
        room={first.id: 1, second.id: 0},
        admit=admit,
    )
    assert Counter(j.subscription.id for j in claim.jobs) == {first.id: 1}
    # One refusal is enough: a subscription refused is not asked again.
    assert Counter(s for s, _url in asked) == {first.id: 1, third.id: 1}
    assert ("https://c.example/hook", third.id) in {(url, s) for s, url in asked}
    # What was not admitted is not claimed: another worker may take it at once.
    other = await store.outbox.claim_due(now=T0, limit=50, worker="other", lease=LEASE)
    assert len(other) == 3 * 5 - 1


async def test_a_claim_tells_when_the_next_delivery_is_due(store: Store) -> None:
    await subscribe(store, "https://a.example/hook", T0)
    await new_events(store, T0, "2026/11/27/a", "2026/11/27/b")
    retry, held = (await store.outbox.claim(now=T0, limit=2, worker="w", lease=LEASE)).jobs
    await store.outbox.finish_attempt(
        retry.delivery,
        AttemptReport(T0, 5, 503, "HTTP 503", DeliveryStatus.PENDING, T0 + timedelta(minutes=5)),
    )
    # Nothing is due: the next look is at the retry (the other claim's end is
    # left to the deliverer's idle_poll).
    for worker in ("w", "x"):
        assert await store.outbox.claim(now=T0, limit=2, worker=worker, lease=LEASE) == Claim(
            (), False, T0 + timedelta(minutes=5)
        )
    later = T0 + timedelta(minutes=6)
    (again,) = (await store.outbox.claim(now=later, limit=2, worker="x", lease=LEASE)).jobs
    assert again.delivery.id == retry.delivery.id
    assert held.delivery.id != retry.delivery.id
    assert (await store.outbox.claim(now=later, limit=2, worker="y", lease=LEASE)).next_due is None
