"""``/healthz``, ``/readyz`` and ``/metrics`` through real HTTP on loopback.

The web server runs on port 0 over a real SQLite store filled by the real
ingestor from an archive folder; a poll failure is a real one (the folder
removed), an unreachable store a real one (closed, its folder gone). The
daemon's wiring (its metrics, its poll) is checked with an in-process
:class:`~feedbot.daemon.Daemon`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict
from prometheus_client.parser import text_string_to_metric_families

from feedbot.archive.local import LocalArchiveSource
from feedbot.daemon import Daemon
from feedbot.factory import make_source
from feedbot.feeds.cache import FeedCache
from feedbot.ingest import Ingestor
from feedbot.metrics import CONTENT_TYPE, Metrics
from feedbot.settings import Settings
from feedbot.store import PollRecord, Store
from feedbot.web import WebServer
from feedbot.web.app import METRICS, feed_format
from feedbot.web.health import START_GRACE, Readiness, poll_reasons
from tests.conftest import PATIENCE, write_page

INTERVAL = 300.0


@dataclass
class Reply:
    status: int
    headers: CIMultiDict[str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class Served:
    server: WebServer
    store: Store
    ingestor: Ingestor
    metrics: Metrics
    archive: Path
    session: aiohttp.ClientSession

    async def get(self, path: str, **headers: str) -> Reply:
        async with self.session.get(self.server.url + path, headers=headers) as response:
            return Reply(response.status, CIMultiDict(response.headers), await response.text())

    async def poll(self) -> None:
        result = await self.ingestor.poll()
        self.metrics.record_poll(result, ended_at=datetime.now(UTC).timestamp())


def settings(archive: Path, db: Path) -> Settings:
    return Settings(
        archive={"source": str(archive), "poll_interval": INTERVAL, "watch": False},
        store={"url": f"sqlite:///{db}"},
        server={"host": "127.0.0.1", "port": 0, "base_url": "http://feeds.test"},
    )


@pytest.fixture
async def served(tmp_path: Path, archive: Path) -> AsyncIterator[Served]:
    db_dir = tmp_path / "db"
    config = settings(archive, db_dir / "feedbot.db")
    store = await Store.open(config.store.url)
    metrics = Metrics()
    server = WebServer(config, store, FeedCache(store, config.public_base_url), metrics=metrics)
    await server.start()
    ingestor = Ingestor(store, LocalArchiveSource(archive))
    try:
        async with aiohttp.ClientSession() as session:
            yield Served(server, store, ingestor, metrics, archive, session)
    finally:
        await server.stop()
        await store.close()


# -- /healthz ------------------------------------------------------------------------------


async def test_healthz(served: Served) -> None:
    reply = await served.get("/healthz")
    assert (reply.status, reply.text) == (200, "ok\n")
    assert reply.headers["Cache-Control"] == "no-store"


# -- /readyz -------------------------------------------------------------------------------


async def test_readyz_before_the_first_poll_is_ready_within_the_grace(served: Served) -> None:
    reply = await served.get("/readyz")
    assert reply.status == 200, reply.text
    assert reply.json == {
        "ready": True,
        "store": "ok",
        "last_poll": None,
        "backlog": {"pending": 0, "failed": 0},
        "reasons": [],
    }


async def test_readyz_after_a_poll(served: Served) -> None:
    await served.poll()
    reply = await served.get("/readyz")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.json
    assert body["ready"] is True and body["reasons"] == []
    poll = body["last_poll"]
    assert poll["status"] == "ok" and poll["error"] is None and poll["new"] == 1
    assert 0 <= poll["age_seconds"] < 5
    assert body["backlog"] == {"pending": 0, "failed": 0}


async def test_readyz_says_the_archive_is_unreachable_after_a_failed_poll(
    served: Served,
) -> None:
    await served.poll()
    moved = served.archive.with_name("moved-away")
    served.archive.rename(moved)
    with pytest.raises(Exception, match="archive folder"):
        await served.poll()
    reply = await served.get("/readyz")
    assert reply.status == 503
    body = reply.json
    assert body["ready"] is False and body["store"] == "ok"
    assert body["last_poll"]["status"] == "failed"
    (reason,) = body["reasons"]
    assert reason.startswith("the last poll failed")
    assert f"archive folder {served.archive} not found" in reason
    assert body["backlog"] == {"pending": 0, "failed": 0}

    moved.rename(served.archive)  # the archive is back: the next poll makes it ready
    await served.poll()
    assert (await served.get("/readyz")).status == 200


async def test_readyz_when_the_store_is_unreachable(served: Served, tmp_path: Path) -> None:
    await served.poll()
    await served.store.close()
    shutil.rmtree(tmp_path / "db")  # SQLite would reopen the file: take it away
    reply = await served.get("/readyz")
    assert reply.status == 503
    body = reply.json
    assert body["ready"] is False and body["store"] == "unreachable"
    assert body["last_poll"] is None and body["backlog"] is None
    (reason,) = body["reasons"]
    assert reason.startswith("the store is unreachable")
    # Liveness does not depend on the store, and a scrape still answers.
    assert (await served.get("/healthz")).status == 200
    scrape = await served.get("/metrics")
    assert scrape.status == 200
    assert "feedbot_polls_total" in scrape.text
    assert "feedbot_outbox_backlog{" not in scrape.text  # no stale numbers


async def test_readyz_adds_the_process_reasons(tmp_path: Path, archive: Path) -> None:
    reasons: list[str] = []

    def probe() -> Sequence[str]:
        return reasons

    config = settings(archive, tmp_path / "feedbot.db")
    store = await Store.open(config.store.url)
    server = WebServer(config, store, FeedCache(store, config.public_base_url), readiness=probe)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(server.url + "/readyz") as response:
                assert response.status == 200
            reasons.append("shutting down")
            async with session.get(server.url + "/readyz") as response:
                assert response.status == 503
                assert (await response.json())["reasons"] == ["shutting down"]
            # Built without a Metrics of its own, the app scrapes its own registry.
            async with session.get(server.url + "/metrics") as response:
                assert response.status == 200
                assert "feedbot_outbox_backlog" in await response.text()
    finally:
        await server.stop()
        await store.close()


def record(status: str, finished: datetime, error: str | None = None) -> PollRecord:
    return PollRecord(finished, finished, status, 0, 0, 0, 0, error)


def test_poll_staleness_rules() -> None:
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    ago = lambda seconds: now - timedelta(seconds=seconds)  # noqa: E731
    settled = 3 * INTERVAL + START_GRACE + 1  # uptime past the start grace
    check = lambda poll, uptime: poll_reasons(  # noqa: E731
        poll, now=now, uptime=uptime, poll_interval=INTERVAL
    )
    assert check(record("ok", ago(10)), settled) == []
    assert check(record("ok", ago(3 * INTERVAL - 1)), settled) == []
    (stale,) = check(record("ok", ago(3 * INTERVAL + 1)), settled)
    assert stale == "no poll has completed for 901 s (archive.poll_interval is 300 s)"
    assert check(record("ok", ago(86400)), 10) == []  # just restarted: the first poll runs
    assert check(None, 10) == []
    assert check(None, settled) == [f"no poll has completed since the start {settled:.0f} s ago"]
    (failed,) = check(record("failed", ago(30), "archive http://x unreachable"), 10)
    assert failed == "the last poll failed 30 s ago: archive http://x unreachable"
    assert check(record("ok", now + timedelta(seconds=5)), settled) == []  # clock skew


def test_readiness_json_hides_url_passwords() -> None:
    error = "https://reader:hunter2@archive.example/news/: HTTP 503"
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    report = Readiness(None, record("failed", now, error), {}, [f"poll failed: {error}"], now)
    text = json.dumps(report.as_json())
    assert "hunter2" not in text and "https://reader:***@archive.example" in text


# -- /metrics ------------------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_metrics_count_polls_feed_requests_and_backlog(served: Served) -> None:
    await served.poll()
    first = await served.get("/feeds/all.atom")
    assert first.status == 200
    again = await served.get("/feeds/all.atom", **{"If-None-Match": first.headers["ETag"]})
    assert again.status == 304
    assert (await served.get("/feeds/topics/no-such-topic.rss")).status == 404
    assert (await served.get("/feeds/topics/bad.xml")).status == 404
    assert (await served.get("/topics")).status == 200
    assert (await served.get("/topics.opml")).status == 200
    assert (await served.get("/feeds/all.json?page=x")).status == 400

    scrape = await served.get("/metrics")
    assert scrape.status == 200
    assert scrape.headers["Content-Type"] == CONTENT_TYPE  # Prometheus text format
    text = scrape.text
    assert 'feedbot_polls_total{status="ok"} 1.0' in text
    assert 'feedbot_feed_requests_total{format="atom",status="304"} 1.0' in text
    assert "feedbot_outbox_backlog" in text
    found = samples(text)
    requests = "feedbot_feed_requests_total"
    assert found[(requests, (("format", "atom"), ("status", "200")))] == 1
    assert found[(requests, (("format", "rss"), ("status", "404")))] == 1
    assert found[(requests, (("format", "other"), ("status", "404")))] == 1
    assert found[(requests, (("format", "html"), ("status", "200")))] == 1
    assert found[(requests, (("format", "opml"), ("status", "200")))] == 1
    assert found[(requests, (("format", "json"), ("status", "400")))] == 1
    assert found[("feedbot_outbox_backlog", (("status", "pending"),))] == 0
    assert found[("feedbot_pages_total", (("result", "new"),))] == 1
    # Health, metrics and API requests are not feed requests.
    assert sum(v for (name, _), v in found.items() if name == requests) == 7


def test_feed_format_labels() -> None:
    assert feed_format("/feeds/all.atom") == "atom"
    assert feed_format("/feeds/topics/flood.json") == "json"
    assert feed_format("/feeds/topics/flood.xml") == "other"
    assert feed_format("/topics.opml") == "opml"
    assert feed_format("/") == "html" and feed_format("/events/2020/01/1/x") == "html"
    for path in ("/healthz", "/readyz", "/metrics", "/api/v1/subscriptions", "/favicon.ico"):
        assert feed_format(path) is None


# -- the daemon's wiring -------------------------------------------------------------------


async def test_the_daemon_serves_its_own_metrics_and_readiness(
    tmp_path: Path, archive: Path
) -> None:
    write_page(archive, "2026/11/27", "second", "A second event")
    config = settings(archive, tmp_path / "daemon.db")
    store = await Store.open(config.store.url)
    daemon = Daemon(config, store, make_source(config))
    assert daemon.web.app[METRICS] is daemon.metrics
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(PATIENCE):
            # The start-up poll: counted in /metrics once it has ended (after the
            # store has recorded it for /readyz).
            text = ""
            while 'feedbot_polls_total{status="ok"} 1.0' not in text:
                await asyncio.sleep(0.02)
                async with session.get(daemon.web.url + "/metrics") as response:
                    text = await response.text()
            async with session.get(daemon.web.url + "/readyz") as response:
                body = await response.json()
            assert response.status == 200 and body["last_poll"]["new"] == 2
            assert 'feedbot_pages_total{result="new"} 2.0' in text
    finally:
        await daemon.stop()
        await store.close()
