"""Three ``feedbot run`` replicas on one PostgreSQL database and one archive.

500 new events for 10 subscriptions: every alert arrives, none twice under two
webhook-ids; the polling replica is killed with SIGKILL mid-burst and another
takes the role over once its lease runs out; afterwards every replica serves the
same feed bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from feedbot.store.store import async_url
from tests.conftest import write_page
from tests.daemons import Daemon, day_key, feedbot_run, until, until_async

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.e2e]

EVENTS = 500
SUBSCRIPTIONS = 10
LEASE = 3


def config(tmp_path: Path, archive: Path, pg_url: str, hook: str, n: int) -> Path:
    subscriptions = "".join(
        f'[[subscriptions]]\nurl = "{hook}/{i}"\ntopics = ["*"]\n' for i in range(SUBSCRIPTIONS)
    )
    path = tmp_path / f"replica{n}.toml"
    path.write_text(
        f"""
[archive]
source = "{archive}"
poll_interval = 3600
[store]
url = "{pg_url}"
lease_seconds = {LEASE}
[server]
host = "127.0.0.1"
port = 0
base_url = "http://feeds.example.org"
shutdown_timeout = 3
[notify]
allow_private_targets = true
# A claim lasts 3 x timeout: the killed replica's come back 15 s after the kill.
timeout = 5
per_host = 32
{subscriptions}""",
        encoding="utf-8",
    )
    return path


async def poller_pid(pg_url: str) -> int | None:
    engine = create_async_engine(async_url(pg_url))
    try:
        async with engine.connect() as connection:
            row = await connection.execute(
                text("SELECT holder FROM leases WHERE name = 'poller' AND expires_at > now()")
            )
            holder = row.scalar_one_or_none()
    finally:
        await engine.dispose()
    return None if holder is None else int(holder.split(":")[1])


async def test_three_replicas_share_the_work(tmp_path: Path, archive: Path, pg_url: str) -> None:
    # After the first poll every new page alerts whatever its date: these are
    # only plausible ones, taken from the test's start.
    today = datetime.now(UTC).date()
    day, next_day = day_key(today), day_key(today + timedelta(days=1))
    received: list[tuple[str, str, str]] = []  # (path, webhook-id, event id)

    async def hook(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        received.append((request.path, request.headers["webhook-id"], body["data"]["event"]["id"]))
        await asyncio.sleep(0.005)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook/{n}", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook_url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"

    replicas: dict[int, Daemon] = {}  # by pid
    async with AsyncExitStack() as stack, aiohttp.ClientSession() as session:
        stack.push_async_callback(runner.cleanup)
        for n in range(3):
            path = config(tmp_path, archive, pg_url, hook_url, n)
            daemon = await stack.enter_async_context(feedbot_run(path))
            replicas[daemon.pid] = daemon
        stack.push_async_callback(stop_all, replicas)  # first on the way out

        async def polled() -> bool:
            for daemon in replicas.values():
                if await daemon.metric(session, "feedbot_polls_total", status="ok") >= 1:
                    return True
            return False

        await until_async(polled)  # the first poll of the seed archive: quiet (backfill 0)
        assert received == []
        first_poller = await poller_pid(pg_url)
        assert first_poller in replicas

        for i in range(EVENTS):
            write_page(archive, day, f"e{i:03d}", f"Event {i}", story="Burst")
        expected = {f"{day}/e{i:03d}" for i in range(EVENTS)}
        deadline = time.monotonic() + 120
        while len(received) < EVENTS * SUBSCRIPTIONS // 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        killed = replicas.pop(first_poller)
        os.kill(first_poller, signal.SIGKILL)
        await killed.wait()

        # Another replica takes the poller role over once the lease runs out.
        async def taken_over() -> bool:
            return await poller_pid(pg_url) in replicas

        await until_async(taken_over, what="another replica polls")

        # Pages written after the kill are picked up by the new poller.
        write_page(archive, next_day, "after", "After the kill", story="Burst")
        expected.add(f"{next_day}/after")

        def every_alert_arrived() -> bool:
            per_sub = {(path, event) for path, _wid, event in received}
            return len(per_sub) == len(expected) * SUBSCRIPTIONS

        await until(every_alert_arrived, seconds=180, what="every alert arrived")

        by_alert: dict[tuple[str, str], set[str]] = {}
        for path, webhook_id, event in received:
            by_alert.setdefault((path, event), set()).add(webhook_id)
        assert {event for _path, event in by_alert} == expected
        assert len(by_alert) == len(expected) * SUBSCRIPTIONS  # every alert arrived
        assert all(len(ids) == 1 for ids in by_alert.values())  # repeats keep their id
        repeats = len(received) - len(by_alert)
        # Only alerts sent but not yet recorded by the killed replica may repeat:
        # at most its max_in_flight (64) in flight plus one batch awaiting its commit.
        assert repeats <= 2 * 64, repeats

        # Every surviving replica serves byte-identical feeds, once each has heard
        # of the last changes (a notification from the poller).
        for feed in ("/feeds/all.atom", "/feeds/topics/burst.atom", "/topics.opml"):
            served = partial(same_bytes, session, list(replicas.values()), feed)
            await until_async(served, what=f"{feed} the same on every replica")


async def same_bytes(session: aiohttp.ClientSession, replicas: list[Daemon], feed: str) -> bool:
    bodies = set()
    for daemon in replicas:
        async with session.get(daemon.url + feed) as response:
            assert response.status == 200, feed
            bodies.add(await response.read())
    return len(bodies) == 1


async def stop_all(replicas: dict[int, Daemon]) -> None:
    """SIGTERM every replica still running, and wait for each (killed on the way
    out, by feedbot_run, if it does not end)."""
    for daemon in replicas.values():
        if daemon.process.returncode is None:
            daemon.process.send_signal(signal.SIGTERM)
    for daemon in replicas.values():
        with contextlib.suppress(TimeoutError):
            await daemon.wait()
