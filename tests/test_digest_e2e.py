"""Digests through ``feedbot run``: a daemon killed with -9 in the middle of a
digest period still sends that period's digest, once, when it is back.

The period is a short one (seconds, counted from the epoch), so the test waits
for the daemon's own signals: the events filed into the open period (read from
its store as another process would), the digest at the receiver, the delivery
recorded as done. Nothing waits on a sleep.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from standardwebhooks import Webhook

from feedbot.notify.signing import new_secret
from tests.conftest import write_page
from tests.daemons import day_key, feedbot_run, until
from tests.daemons import write_config as daemon_config
from tests.receivers import running_receiver

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

PERIOD = 10  # seconds: the shortest digest period there is


def store_rows(tmp_path: Path, query: str) -> list[tuple[object, ...]]:
    """Rows of the daemon's SQLite store, read beside it (read-only)."""
    with sqlite3.connect(f"file:{tmp_path / 'daemon.db'}?mode=ro", uri=True) as connection:
        return connection.execute(query).fetchall()


async def test_kill_9_during_a_digest_period_still_sends_the_digest_once(
    tmp_path: Path, archive: Path
) -> None:
    today = day_key(datetime.now(UTC).date())
    secret = new_secret()
    async with running_receiver() as receiver, aiohttp.ClientSession() as session:
        config = daemon_config(
            tmp_path,
            archive,
            {"url": receiver.url, "topics": ["*"], "digest": PERIOD, "secret": secret},
            digest_check_seconds=0.2,
        )
        async with feedbot_run(config) as daemon:
            await daemon.first_poll(session)
            await daemon.watching(session)
            for n in range(3):
                write_page(archive, today, f"digest-{n}", f"Digest event {n}", story="Floods")
            # Filed into the open period, in the transaction that stored them.
            await until(
                lambda: len(store_rows(tmp_path, "SELECT event_id FROM digest_items")) == 3,
                what="three events in the open digest period",
            )
            open_before = store_rows(
                tmp_path, "SELECT count(*) FROM digest_items WHERE delivery_id IS NULL"
            )
            os.kill(daemon.pid, signal.SIGKILL)
            await daemon.wait()
        # Killed with the period open (or, on a slow machine, just after it ended
        # but before a look closed it): nothing was sent either way.
        assert open_before == [(3,)]
        assert receiver.received == []

        async with feedbot_run(config):

            def delivered() -> bool:
                done = store_rows(tmp_path, "SELECT status FROM deliveries WHERE kind = 'digest'")
                return done == [("done",)]

            await until(delivered, what="the digest delivered")
        assert store_rows(
            tmp_path, "SELECT count(*) FROM digest_items WHERE delivery_id IS NULL"
        ) == [(0,)]

    [received] = receiver.received  # once
    payload = Webhook(secret).verify(received.body, received.headers)
    assert payload["type"] == "digest.created"
    data = payload["data"]
    assert [event["id"] for event in data["events"]] == [
        f"{today}/digest-{n}" for n in (2, 1, 0)
    ] or sorted(event["id"] for event in data["events"]) == [
        f"{today}/digest-{n}" for n in range(3)
    ]
    assert data["total"] == 3 and data["more"] == 0
    start = datetime.fromisoformat(data["period"]["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(data["period"]["end"].replace("Z", "+00:00"))
    assert (end - start).total_seconds() == PERIOD
    assert int(end.timestamp()) % PERIOD == 0
    assert json.loads(received.body)["data"]["feed_url"].endswith("/feeds/all.atom")
