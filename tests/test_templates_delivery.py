"""Operator templates in delivery, on both backends and in the daemon: a heavy
template renders beside the other subscriptions' alerts, which keep arriving; a
render over the time or memory limit is a failed attempt with the reason, retried;
``template_failures`` of them in a row disable the subscription; and the daemon
answers ``/healthz`` all the while."""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import random
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from feedbot.model import DeliveryStatus, Event, EventRecord, Related, RelatedKind, Subscription
from feedbot.notify.deliver import Deliverer, DelivererSettings
from feedbot.notify.outbound import RequestFactory
from feedbot.notify.render_workers import TemplateLimits
from feedbot.notify.retry import RetryPolicy
from feedbot.store import Delivery, Store
from tests.conftest import PATIENCE, Clock, write_page
from tests.daemons import day_key, feedbot_run, until, until_async, write_config
from tests.receivers import Receiver, running_receiver

BASE = "https://feeds.example/"
# Never ends in a test's time (10**15 turns), and runs only for an event that has
# related events, as real ones do.
ENDLESS = (
    "{% for r in event.related %}{% for i in range(100000) %}{% for j in range(100000) %}"
    "{% for k in range(100000) %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}"
)
LIGHT = '{"title": {{ event.title|tojson }}}'


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


async def subscribe(store: Store, url: str, clock: Clock, format: str = "json") -> Subscription:
    # As the CLI or the config would store it (their test render is tests/test_templates.py's).
    subscription = Subscription(id="", url=url, format=format, origin="cli")
    return await store.subscriptions.add(subscription, now=clock())


async def new_events(store: Store, clock: Clock, *ids: str) -> None:
    related = Related(
        "2026/11/20/rain", date(2026, 11, 20), "Rain", ("Floods",), RelatedKind.BACKGROUND
    )
    events = [
        Event(id=i, date=date(2026, 11, 27), story="Floods", title=f"Event {i}", related=(related,))
        for i in ids
    ]
    await store.write_batch(
        new=[EventRecord.of(e) for e in events],
        changed=[],
        marks_={},
        rejected={},
        accepted_paths=[],
        now=clock(),
        alert_since=None,
    )


def deliverer(
    store: Store, session: aiohttp.ClientSession, clock: Clock, factory: RequestFactory, **settings
) -> Deliverer:
    return Deliverer(
        store.outbox,
        session,
        factory,
        settings=DelivererSettings(idle_poll=0.05, **settings),
        policy=RetryPolicy(jitter=0, schedule=(5.0, 300.0, 1800.0)),
        clock=clock,
        rng=random.Random(1),
    )


def titles(receiver: Receiver) -> list[str]:
    found = []
    for body in receiver.bodies:
        data = json.loads(body)
        found.append(data["title"] if "title" in data else data["data"]["event"]["title"])
    return sorted(found)


async def deliveries_of(store: Store, subscription: Subscription) -> list[Delivery]:
    return [d for d in await store.outbox.deliveries() if d.subscription_id == subscription.id]


async def test_a_heavy_template_renders_while_the_other_alerts_keep_arriving(
    store: Store, session: aiohttp.ClientSession, clock: Clock, tmp_path: Path
) -> None:
    async with (
        running_receiver() as heavy_hook,
        running_receiver() as json_hook,
        running_receiver() as light_hook,
    ):
        heavy = await subscribe(
            store, heavy_hook.url, clock, f"template:{write(tmp_path, 'heavy.txt', ENDLESS)}"
        )
        await subscribe(store, json_hook.url, clock)
        await subscribe(
            store, light_hook.url, clock, f"template:{write(tmp_path, 'light.json', LIGHT)}"
        )
        await new_events(store, clock, "2026/11/27/a")
        # A time limit the test never reaches: the heavy render goes on throughout.
        factory = RequestFactory(BASE, TemplateLimits(seconds=3600))
        worker = deliverer(store, session, clock, factory)
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        try:
            await until(lambda: titles(json_hook) == titles(light_hook) == ["Event 2026/11/27/a"])
            await until(lambda: factory.rendering == 1, what="the heavy render alone under way")
            # New events while it renders: claimed, rendered (the light template in
            # the other render worker), sent and answered, all on this event loop.
            await new_events(store, clock, "2026/11/27/b", "2026/11/27/c")
            worker.wake()
            everything = [f"Event 2026/11/27/{n}" for n in "abc"]
            await until(lambda: titles(json_hook) == titles(light_hook) == everything)
            # The heavy subscription's alerts wait for its one render at a time.
            stuck = await deliveries_of(store, heavy)
            assert sorted((d.event_id, d.attempts) for d in stuck) == [
                (f"2026/11/27/{n}", 0) for n in "abc"
            ]
            assert factory.rendering == 1
            assert heavy_hook.received == []
        finally:
            stop.set()
            await running
            await worker.drain(0)  # cuts the heavy render off, and ends the render workers
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (ENDLESS, "rendering took over 0.5 s"),
        ("{{ event.title.ljust(10**9) }}", "out of memory"),
        ("\n{{ 'x' * 10**9 }}", "line 2: '*' would make a value of 1000000000 items (max 262144)"),
    ],
    ids=["time", "memory", "size"],
)
async def test_a_template_over_a_limit_fails_its_attempts_then_its_subscription_is_disabled(
    store: Store,
    session: aiohttp.ClientSession,
    clock: Clock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    text: str,
    reason: str,
) -> None:
    path = write(tmp_path, "alert.txt.j2", text)
    caplog.set_level(logging.WARNING, logger="feedbot.notify.deliver")
    async with running_receiver() as bad_hook, running_receiver() as json_hook:
        bad = await subscribe(store, bad_hook.url, clock, f"template:{path}")
        await subscribe(store, json_hook.url, clock)
        await new_events(store, clock, "2026/11/27/a")
        factory = RequestFactory(BASE, TemplateLimits(seconds=0.5, memory_mib=128))
        worker = deliverer(store, session, clock, factory, template_failures=2)
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        try:

            async def attempted(n: int) -> bool:
                return [d.attempts for d in await deliveries_of(store, bad)] == [n]

            # The first failure is an attempt like any other: recorded with its
            # reason and retried on the schedule; the other subscription is served.
            await until_async(lambda: attempted(1))
            (failed,) = await deliveries_of(store, bad)
            error = f"cannot build payload: template {path}{'' if reason.startswith('line') else ':'} {reason}"
            assert (failed.status, failed.last_error, failed.next_attempt_at) == (
                DeliveryStatus.PENDING,
                error,
                clock() + timedelta(seconds=5),
            )
            await until(lambda: titles(json_hook) == ["Event 2026/11/27/a"])
            assert (await store.subscriptions.get(bad.id)).active  # type: ignore[union-attr]

            # The second in a row disables the subscription, with the reason.
            clock.advance(5)
            worker.wake()
            await until_async(lambda: attempted(2))

            async def disabled() -> bool:
                found = await store.subscriptions.get(bad.id)
                return found is not None and not found.active

            await until_async(disabled)
            stopped = await store.subscriptions.get(bad.id)
            assert stopped is not None
            assert (
                stopped.disabled_reason
                == f"its template failed 2 times in a row; the last: {error.removeprefix('cannot build payload: ')}"
            )
            (failed,) = await deliveries_of(store, bad)
            assert failed.status is DeliveryStatus.FAILED
            assert any(
                re.search(r"subscription disabled: its template failed 2 times", r.getMessage())
                for r in caplog.records
            )

            # The others keep flowing.
            await new_events(store, clock, "2026/11/27/b")
            worker.wake()
            await until(lambda: titles(json_hook) == ["Event 2026/11/27/a", "Event 2026/11/27/b"])
            assert bad_hook.received == []
        finally:
            stop.set()
            await running
            await worker.drain(0)
    assert multiprocessing.active_children() == []


# -- the daemon ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.e2e
async def test_the_daemon_stays_responsive_while_a_template_runs_over_its_time(
    tmp_path: Path, archive: Path
) -> None:
    # Heavy only for a flood, which the start-up test render does not show: the
    # daemon starts, and the first flood meets the time limit.
    template = write(
        tmp_path,
        "alert.txt.j2",
        "{% if 'flood' in event.title|lower %}" + ENDLESS + "{% endif %}{{ event.title }}",
    )
    async with (
        running_receiver() as json_hook,
        running_receiver() as template_hook,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PATIENCE)) as session,
    ):
        config = write_config(
            tmp_path,
            archive,
            {"url": json_hook.url},
            {"url": template_hook.url, "format": f"template:{template}"},
            template_timeout=1,
            template_failures=2,
            retry_schedule=[1, 1, 1],
        )
        async with feedbot_run(config) as daemon:
            await daemon.first_poll(session)
            today = day_key(datetime.now(UTC).date())
            write_page(
                archive,
                today,
                "a-flood",
                "A flood in the valley",
                related=[("2007/07/9/rain", "Rain", ["Valley"])],
            )
            disabled = re.compile(r"subscription disabled: its template failed 2 times in a row")
            answered = 0
            async with asyncio.timeout(PATIENCE):
                while not disabled.search(daemon.log):
                    # Each answers, however long the template runs.
                    async with session.get(daemon.url + "/healthz") as response:
                        assert response.status == 200
                    answered += 1
                    await asyncio.sleep(0.05)
            assert answered > 1
            assert "rendering took over 1 s" in daemon.log
            await until(lambda: len(json_hook.received) == 1)
            assert template_hook.received == []

            async def served_again() -> bool:  # another page still goes out
                return len(json_hook.received) == 2

            write_page(archive, today, "a-fair", "A fair in the valley")
            await until_async(served_again)
