"""Three ``feedbot run`` replicas on one PostgreSQL database and one archive.

500 new events for 10 subscriptions: every alert arrives, none twice under two
webhook-ids; the polling replica is killed with SIGKILL mid-burst and another
takes the role over within the lease; afterwards every replica serves the same
feed bytes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import create_async_engine

from feedbot.store.store import async_url
from tests.conftest import write_page
from tests.test_daemon import free_port, wait_healthy

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

EVENTS = 500
SUBSCRIPTIONS = 10
LEASE = 3


def config(tmp_path: Path, archive: Path, pg_url: str, hook: str, port: int, n: int) -> Path:
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
port = {port}
base_url = "http://feeds.example.org"
shutdown_timeout = 3
[notify]
allow_private_targets = true
timeout = 2
per_host = 32
{subscriptions}""",
        encoding="utf-8",
    )
    return path


async def poller_pid(pg_url: str) -> int | None:
    engine = create_async_engine(async_url(pg_url))
    try:
        async with engine.connect() as connection:
            from sqlalchemy import text

            row = await connection.execute(
                text("SELECT holder FROM leases WHERE name = 'poller' AND expires_at > now()")
            )
            holder = row.scalar_one_or_none()
    finally:
        await engine.dispose()
    return None if holder is None else int(holder.split(":")[1])


async def test_three_replicas_share_the_work(tmp_path: Path, archive: Path, pg_url: str) -> None:
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

    ports = [free_port() for _ in range(3)]
    processes: dict[int, asyncio.subprocess.Process] = {}

    async def start(n: int) -> None:
        path = config(tmp_path, archive, pg_url, hook_url, ports[n], n)
        with (tmp_path / f"replica{n}.log").open("w") as log:
            process = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "feedbot", "--config", str(path), "--log-format", "text"),
                "run",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        processes[n] = process
        await wait_healthy(ports[n], process)

    try:
        for n in range(3):
            await start(n)
        await asyncio.sleep(1.5)  # first poll of the seed archive: quiet (backfill 0)
        assert received == []
        first_poller = await poller_pid(pg_url)
        assert first_poller in {p.pid for p in processes.values()}

        for i in range(EVENTS):
            write_page(archive, "2026/11/27", f"e{i:03d}", f"Event {i}", story="Burst")
        expected = {f"2026/11/27/e{i:03d}" for i in range(EVENTS)}
        deadline = time.monotonic() + 60
        while len(received) < EVENTS * SUBSCRIPTIONS // 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        killed_at = time.monotonic()
        os.kill(first_poller, signal.SIGKILL)
        dead = next(n for n, p in processes.items() if p.pid == first_poller)
        await processes.pop(dead).wait()

        # Another replica takes the poller role within the lease.
        takeover = None
        while time.monotonic() - killed_at < LEASE + 3:
            pid = await poller_pid(pg_url)
            if pid in {p.pid for p in processes.values()}:
                takeover = time.monotonic() - killed_at
                break
            await asyncio.sleep(0.1)
        assert takeover is not None, "no replica took the poller role over"
        assert takeover <= LEASE + 1.5

        # Pages written after the kill are picked up by the new poller.
        write_page(archive, "2026/11/28", "after", "After the kill", story="Burst")
        expected.add("2026/11/28/after")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            per_sub = {(path, event) for path, _wid, event in received}
            if len(per_sub) == len(expected) * SUBSCRIPTIONS:
                break
            await asyncio.sleep(0.1)

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

        # Every surviving replica serves byte-identical feeds.
        await asyncio.sleep(0.5)
        async with aiohttp.ClientSession() as session:
            for feed in ("/feeds/all.atom", "/feeds/topics/burst.atom", "/topics.opml"):
                bodies = set()
                for n in processes:
                    async with session.get(f"http://127.0.0.1:{ports[n]}{feed}") as response:
                        assert response.status == 200, feed
                        bodies.add(await response.read())
                assert len(bodies) == 1, f"{feed} differs between replicas"
    finally:
        for process in processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
        await runner.cleanup()
