"""The WebSub hub's own edge cases: the request rules (pure), the subscription
endpoint and verification of intent over real HTTP on loopback, what a batch
queues for readers' subscriptions and their leases (on every backend), and the
body and signature of a push. A third-party subscriber drives the whole path
against a real daemon in tests/test_websub_e2e.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from feedbot.feeds.cache import FeedCache
from feedbot.feeds.urls import FeedFormat
from feedbot.model import AlertKind, DeliveryStatus
from feedbot.notify.push import push_request
from feedbot.search import SearchQuery
from feedbot.settings import Settings
from feedbot.store import AttemptReport, Store
from feedbot.web import WebServer
from feedbot.web.app import HUB
from feedbot.websub import (
    FeedTopic,
    HubMode,
    HubRequestError,
    LeaseLimits,
    parse_feed_path,
    parse_hub_request,
)
from tests.conftest import PATIENCE
from tests.daemons import until
from tests.test_outbox import event, store_new

BASE = "https://feeds.example.org"
ATOM = "{http://www.w3.org/2005/Atom}"
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


# -- the rules (pure) -----------------------------------------------------------------


def form(**fields: str) -> dict[str, str]:
    base = {
        "hub.mode": "subscribe",
        "hub.topic": f"{BASE}/feeds/topics/islamabad.atom",
        "hub.callback": "https://reader.example.net/push/1?user=7",
    }
    return {**base, **{f"hub.{key}": value for key, value in fields.items()}}


def test_a_request_names_a_feed_of_this_hub_by_its_canonical_url() -> None:
    request = parse_hub_request(form(), BASE)
    assert request.mode is HubMode.SUBSCRIBE
    assert request.topic == FeedTopic(FeedFormat.ATOM, slug="islamabad")
    assert request.topic_url == f"{BASE}/feeds/topics/islamabad.atom"
    assert request.callback == "https://reader.example.net/push/1?user=7"
    assert request.lease_seconds == LeaseLimits().default
    search = parse_hub_request(form(topic=f"{BASE}/feeds/search.rss?q=Red+MOSQUE!"), BASE)
    assert search.topic_url == f"{BASE}/feeds/search.rss?q=red%20mosque"
    assert search.topic.words == ("red", "mosque")
    assert search.topic.topics == ("*",)
    every = parse_hub_request(form(topic=f"{BASE.upper()}/feeds/all.json"), BASE)
    assert (every.topic.topics, every.topic.fmt) == (("*",), FeedFormat.JSON)


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"mode": "publish"}, "hub.mode", "subscribe or unsubscribe"),
        ({"topic": "https://elsewhere.example.org/feeds/all.atom"}, "hub.topic", "not a feed"),
        ({"topic": "http://feeds.example.org/feeds/all.atom"}, "hub.topic", "not a feed"),
        ({"topic": f"{BASE}/topics/islamabad"}, "hub.topic", "not a feed"),
        ({"topic": f"{BASE}/feeds/all.atom?page=2"}, "hub.topic", "first page"),
        ({"topic": f"{BASE}/feeds/search.atom?q="}, "hub.topic", "empty"),
        ({"topic": f"{BASE}/feeds/topics/Not_A_Slug.atom"}, "hub.topic", "slug"),
        ({"callback": ""}, "hub.callback", "missing"),
        ({"lease_seconds": "ten"}, "hub.lease_seconds", "whole number"),
        ({"secret": "x" * 200}, "hub.secret", "less than 200 bytes"),
    ],
)
def test_a_request_the_hub_cannot_take_names_the_field(
    fields: dict[str, str], field: str, reason: str
) -> None:
    with pytest.raises(HubRequestError) as caught:
        parse_hub_request(form(**fields), BASE)
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_leases_are_granted_within_the_limits() -> None:
    limits = LeaseLimits(default=100, minimum=10, maximum=1000)
    assert limits.grant(None) == 100
    assert limits.grant(5) == 10
    assert limits.grant(500) == 500
    assert limits.grant(10**9) == 1000
    request = parse_hub_request(form(lease_seconds="3"), BASE, limits)
    assert request.lease_seconds == 10
    assert request.lease_end(T0) == T0 + timedelta(seconds=10)


def test_the_feed_of_a_stored_subscription_reads_back() -> None:
    topic = FeedTopic(FeedFormat.RSS, query=SearchQuery.parse("floods", ["pakistan"]))
    assert parse_feed_path(topic.path) == topic
    assert topic.topics == ("pakistan",)


# -- the endpoint, over HTTP --------------------------------------------------------


@dataclass
class Callback:
    """A reader's callback on loopback: answers verifications as told, keeps what
    it is sent."""

    echo: bool = True
    url: str = ""
    verifications: list[dict[str, str]] = field(default_factory=list)
    pushes: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        if request.method == "GET":
            self.verifications.append(dict(request.query))
            challenge = request.query.get("hub.challenge", "")
            return web.Response(text=challenge if self.echo else "no")
        self.pushes.append((dict(request.headers), await request.read()))
        return web.Response(status=204)


@dataclass
class Hub:
    server: WebServer
    store: Store
    callback: Callback
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return self.server.url

    async def post(self, **fields: str) -> tuple[int, str]:
        data = {
            "hub.mode": "subscribe",
            "hub.topic": f"{self.url}/feeds/topics/islamabad.atom",
            "hub.callback": self.callback.url,
            **{f"hub.{key}": value for key, value in fields.items()},
        }
        async with self.session.post(self.url + "/websub", data=data) as response:
            return response.status, await response.text()

    async def settled(self) -> None:
        """Every verification the hub started has ended."""
        hub = self.server.app[HUB]
        await until(lambda: hub.verifying == 0, what="the verifications")


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    callback = Callback()
    app = web.Application()
    app.router.add_route("*", "/cb", callback.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    callback.url = f"http://127.0.0.1:{port}/cb?reader=7"
    settings = Settings(
        server={"host": "127.0.0.1", "port": 0},
        notify={"allow_private_targets": True},
        websub={"max_per_host": 2, "min_lease_seconds": 60},
    )
    store = await Store.open(f"sqlite:///{tmp_path / 'hub.db'}")
    cache = FeedCache(store, settings.public_base_url, websub=True)
    server = WebServer(settings, store, cache, access_log=False)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Hub(server, store, callback, session)
    finally:
        await server.stop()
        await store.close()
        await runner.cleanup()


async def test_a_subscription_is_stored_once_the_callback_echoes_the_challenge(
    hub: Hub,
) -> None:
    status, text = await hub.post(lease_seconds="120", secret="s3cret")
    assert status == 202, text
    await hub.settled()
    (asked,) = hub.callback.verifications
    assert asked["reader"] == "7"  # the callback's own query is kept
    assert asked["hub.mode"] == "subscribe"
    assert asked["hub.topic"] == f"{hub.url}/feeds/topics/islamabad.atom"
    assert asked["hub.lease_seconds"] == "120"
    assert len(asked["hub.challenge"]) >= 32
    (entry,) = await hub.store.subscriptions.websub_list()
    subscription = entry.subscription
    assert (subscription.url, subscription.feed) == (
        hub.callback.url,
        "/feeds/topics/islamabad.atom",
    )
    assert subscription.topics == ("islamabad",)
    assert subscription.secret == "s3cret"
    first_lease = subscription.lease_expires
    assert first_lease is not None

    # Again: the same subscription, its lease renewed, with a new challenge.
    status, _ = await hub.post(lease_seconds="600")
    assert status == 202
    await hub.settled()
    assert hub.callback.verifications[1]["hub.challenge"] != asked["hub.challenge"]
    (renewed,) = await hub.store.subscriptions.websub_list()
    assert renewed.subscription.id == subscription.id
    assert renewed.subscription.lease_expires is not None
    assert renewed.subscription.lease_expires > first_lease

    # Unsubscribing is verified too; a callback that does not confirm keeps it.
    hub.callback.echo = False
    await hub.post(mode="unsubscribe")
    await hub.settled()
    assert len(await hub.store.subscriptions.websub_list()) == 1
    hub.callback.echo = True
    await hub.post(mode="unsubscribe")
    await hub.settled()
    assert await hub.store.subscriptions.websub_list() == []


async def test_a_callback_that_does_not_echo_the_challenge_is_not_subscribed(hub: Hub) -> None:
    hub.callback.echo = False
    status, _ = await hub.post()
    assert status == 202
    await hub.settled()
    assert len(hub.callback.verifications) == 1
    assert await hub.store.subscriptions.websub_list() == []


async def test_requests_the_hub_cannot_take_are_400s_that_say_why(hub: Hub) -> None:
    status, text = await hub.post(topic="https://elsewhere.example.org/feeds/all.atom")
    assert status == 400
    assert "hub.topic" in text
    status, text = await hub.post(callback="ftp://127.0.0.1/cb")
    assert (status, "hub.callback" in text) == (400, True)
    status, text = await hub.post(callback="http://user:pw@127.0.0.1/cb")
    assert (status, "hub.callback" in text) == (400, True)
    assert hub.callback.verifications == []


async def test_a_callback_host_may_hold_only_so_many_subscriptions(hub: Hub) -> None:
    for slug in ("islamabad", "brexit"):
        await hub.post(topic=f"{hub.url}/feeds/topics/{slug}.atom")
    await hub.settled()
    assert len(await hub.store.subscriptions.websub_list()) == 2
    status, text = await hub.post(topic=f"{hub.url}/feeds/topics/india.atom")
    assert status == 429
    assert "127.0.0.1" in text


async def test_feeds_name_the_hub_and_themselves(hub: Hub) -> None:
    path = "/feeds/all.atom"
    async with hub.session.get(hub.url + path) as response:
        link = response.headers["Link"]
    assert link == f'<{hub.url}/websub>; rel="hub", <{hub.url}{path}>; rel="self"'


async def test_a_private_callback_is_refused_unless_allowed(tmp_path: Path) -> None:
    settings = Settings(server={"host": "127.0.0.1", "port": 0})
    store = await Store.open(f"sqlite:///{tmp_path / 'hub.db'}")
    server = WebServer(settings, store, FeedCache(store, settings.public_base_url))
    await server.start()
    try:
        data = {
            "hub.mode": "subscribe",
            "hub.topic": f"{server.url}/feeds/all.atom",
            "hub.callback": "http://127.0.0.1:9/cb",
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(server.url + "/websub", data=data) as response,
        ):
            assert response.status == 400
            assert "hub.callback" in await response.text()
    finally:
        await server.stop()
        await store.close()


# -- what a batch queues for readers, and leases (every backend) ---------------------


async def subscribe(store: Store, feed: str, *, lease: timedelta, callback: str) -> str:
    topic = parse_feed_path(feed)
    subscription = await store.subscriptions.websub_subscribe(
        callback=callback,
        feed=topic.path,
        topics=topic.topics,
        words=topic.words,
        secret=None,
        lease_expires=T0 + lease,
        now=T0,
        max_per_host=10,
    )
    return subscription.id


async def test_a_batch_queues_pushes_for_the_feeds_it_changes_until_the_lease_ends(
    store: Store,
) -> None:
    hour = timedelta(hours=1)
    topic_feed = await subscribe(
        store, "/feeds/topics/floods.atom", lease=hour, callback="https://a.example/1"
    )
    search_feed = await subscribe(
        store, "/feeds/search.json?q=river%20dam", lease=hour, callback="https://a.example/2"
    )
    await store_new(
        store,
        event("2026/11/1/one", "floods", title="The river rises"),
        event("2026/11/1/two", "drought", title="A dam on the river opens"),
        event("2026/11/1/three", "elections", title="Polls close"),
        now=T0,
    )
    jobs = await store.outbox.claim_due(now=T0, limit=100, worker="w", lease=LEASE)
    pushed = {(job.subscription.id, job.event.id) for job in jobs}
    assert pushed == {(topic_feed, "2026/11/1/one"), (search_feed, "2026/11/1/two")}
    assert all(job.event_updated is not None for job in jobs)
    await store.outbox.finish_attempts(
        [(job.delivery, AttemptReport(T0, 1, 204, None, DeliveryStatus.DONE)) for job in jobs]
    )

    # Past its lease a subscription gets nothing, swept or not; the sweep removes it.
    later = T0 + 2 * hour
    await store_new(store, event("2026/11/2/four", "floods", title="The river falls"), now=later)
    assert await store.outbox.claim_due(now=later, limit=100, worker="w", lease=LEASE) == []
    counts = await store.subscriptions.websub_counts(later)
    assert counts == {"active": 0, "expired": 2, "disabled": 0}
    assert await store.subscriptions.expire_websub(later) == 2
    assert await store.subscriptions.websub_list() == []


# -- the push itself --------------------------------------------------------------------


async def test_a_push_is_the_feed_document_holding_the_entry_signed_with_the_secret(
    store: Store,
) -> None:
    await store.subscriptions.websub_subscribe(
        callback="https://reader.example.net/push",
        feed="/feeds/topics/floods.atom",
        topics=("floods",),
        words=(),
        secret="s3cret",
        lease_expires=T0 + timedelta(days=1),
        now=T0,
        max_per_host=10,
    )
    await store_new(store, event("2026/11/1/one", "floods", title="The river rises"), now=T0)
    (job,) = await store.outbox.claim_due(now=T0, limit=10, worker="w", lease=LEASE)
    request = push_request(job, BASE)
    assert request.headers["Content-Type"] == "application/atom+xml; charset=utf-8"
    expected = hmac.new(b"s3cret", request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Hub-Signature"] == f"sha256={expected}"
    self_url = f"{BASE}/feeds/topics/floods.atom"
    assert request.headers["Link"] == f'<{BASE}/websub>; rel="hub", <{self_url}>; rel="self"'
    feed = ET.fromstring(request.body)
    links = {link.get("rel"): link.get("href") for link in feed.iter(f"{ATOM}link")}
    assert (links["self"], links["hub"]) == (self_url, f"{BASE}/websub")
    (entry,) = feed.iter(f"{ATOM}entry")
    assert entry.findtext(f"{ATOM}title") == "The river rises"
    assert job.subscription.events == (AlertKind.CREATED, AlertKind.UPDATED)


async def test_verifications_in_flight_end_with_the_server(hub: Hub) -> None:
    # A callback that takes the request and never answers: closing the hub (as
    # the server's shutdown does) must not wait on it.
    stalled = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        stalled.set()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        status, _ = await hub.post(callback=f"http://127.0.0.1:{port}/slow")
        assert status == 202
        await asyncio.wait_for(stalled.wait(), PATIENCE)
        assert hub.server.app[HUB].verifying == 1
        await asyncio.wait_for(hub.server.app[HUB].close(), PATIENCE)
        assert hub.server.app[HUB].verifying == 0
        assert await hub.store.subscriptions.websub_list() == []
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
