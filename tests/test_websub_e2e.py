"""feedbot's WebSub hub against a real third-party subscriber (issue 15), end to end.

What this module owns: the hub's contract as a reader's software sees it, over
real sockets, with a real ``feedbot run`` on a copy of the sample archive and its
folder watch. The subscriber is flask-websub's (:mod:`tests.websub_subscriber`,
its own process): its code discovers the hub, sends the subscription request,
answers the verification and checks ``X-Hub-Signature``; the tests only drive
it and read what it recorded. feedbot sits behind a TLS-terminating proxy
(:mod:`tests.tls_front`, ``server.base_url`` set to it), because flask-websub
sends a ``hub.secret`` only to an HTTPS hub.

One daemon serves the module's tests, each on a topic of its own; the kill -9
test runs its own (it kills it). Pages are dated the test's own day and written
once the folder watch is in place, so they are ingested within a second. Nothing
sleeps: an absence ("not pushed") is checked after a later push to another
subscription of the same topic (a sentinel) has arrived, so the ingest that
would have pushed it is known to be done.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import feedparser
import pytest
import pytest_asyncio
from aiohttp import web

from feedbot.model import slugify
from tests.conftest import PATIENCE, copy_sample_archive, write_page
from tests.daemons import Daemon, day_key, feedbot_run, until, until_async, write_config
from tests.tls_front import TlsFront, running_tls_front
from tests.websub_subscriber import Push, Subscription, WebSubSubscriber, running_subscriber

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

LONG_LEASE = 3600
# Short retries: a push refused while the subscriber is "down" is tried again
# within a second once it is back, instead of the default five seconds, then
# minutes. Long enough a list that a slow machine does not run it out.
RETRIES = [0.5] * 20 + [2.0] * 50
_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?([^";,\s]+)"?')


def websub_config(folder: Path, archive: Path, base_url: str) -> Path:
    """The daemon's config: :func:`write_config`'s, its links rooted at the TLS
    proxy (``server.base_url``), leases as short as a second and swept every half
    second, so an expiry is seen within the test."""
    path = write_config(folder, archive, retry_schedule=RETRIES)
    text = path.read_text(encoding="utf-8")
    # write_config takes no [server] or [websub] keys: add them to its tables.
    text = text.replace("[server]\n", f"[server]\nbase_url = {json.dumps(base_url)}\n", 1)
    text += "\n[websub]\nmin_lease_seconds = 1\nsweep_seconds = 0.5\n"
    path.write_text(text, encoding="utf-8")
    return path


def links(value: str | None) -> dict[str, str]:
    """A ``Link`` header's targets by relation (repeated headers arrive joined)."""
    return {rel: url for url, rel in _LINK.findall(value or "")}


def _tail(log: str, lines: int = 60) -> str:
    return "\n".join(log.splitlines()[-lines:])


def titles(push: Push) -> list[str]:
    """The titles of the entries of the feed document a push carried (feedparser
    reads Atom and RSS; a JSON Feed is read as JSON)."""
    if "json" in (push.header("Content-Type") or ""):
        return [item.get("title", "") for item in json.loads(push.body).get("items", [])]
    return [entry.get("title", "") for entry in feedparser.parse(push.body).entries]


def _described(pushes: list[Push]) -> str:
    """What a subscription was sent, for a failure message."""
    return "\n".join(
        f"  {p.status} accepted={p.accepted} held={p.held} "
        f"{p.header('Content-Type')} {p.body[:200]!r}"
        for p in pushes
    )


@dataclass
class Hub:
    """A feedbot daemon behind its TLS proxy, the archive it watches, and a
    flask-websub subscriber that trusts the proxy."""

    folder: Path
    archive: Path
    config: Path
    front: TlsFront
    subscriber: WebSubSubscriber
    session: aiohttp.ClientSession
    daemon: Daemon | None = None
    pages: list[str] = field(default_factory=list)

    @property
    def today(self) -> str:
        # Read each time: a module that straddles midnight UTC writes today's pages.
        return day_key(datetime.now(UTC).date())

    def feed_url(self, slug: str) -> str:
        return f"{self.front.url}/feeds/topics/{slug}.atom"

    def write(self, story: str, title: str) -> None:
        """A new page of topic ``story`` titled ``title``, dated today."""
        slug = f"{slugify(title)}-{len(self.pages)}"
        self.pages.append(slug)
        write_page(self.archive, self.today, slug, title, story=story)

    async def fetch(self, url: str) -> tuple[int, str, str]:
        """Status, Content-Type and text of ``url`` through the proxy."""
        async with self.session.get(url, ssl=self.front.client_ssl) as response:
            return response.status, response.headers.get("Content-Type", ""), await response.text()

    async def until(self, predicate: Callable[[], Awaitable[bool]], what: str) -> None:
        """:func:`until_async`, its failure showing the ends of the daemon's and the
        subscriber's logs (the module's daemon outlives a failing test)."""
        try:
            await until_async(predicate, what=what)
        except AssertionError as exc:
            daemon = self.daemon.log if self.daemon is not None else ""
            # The harness's own /control requests are the tests' polling: noise.
            lines = self.subscriber.log.splitlines()
            callbacks = "\n".join(line for line in lines if "/control/" not in line)
            raise AssertionError(
                f"{exc}\n--- feedbot log (end)\n{_tail(daemon)}"
                f"\n--- subscriber log (end)\n{_tail(callbacks)}"
            ) from None

    async def stored(self, story: str, title: str) -> None:
        """Wait until the topic feed of ``story`` shows ``title``: ingested."""

        async def shown() -> bool:
            status, _type, text = await self.fetch(self.feed_url(slugify(story)))
            return status == 200 and title in text

        await self.until(shown, what=f"{title!r} in its topic feed")

    async def topic(self, story: str) -> str:
        """A topic feed to subscribe to (a first page makes it exist): its URL."""
        self.write(story, f"{story}: the first page")
        await self.stored(story, f"{story}: the first page")
        return self.feed_url(slugify(story))

    async def websub_list(self) -> str:
        """What ``feedbot websub list`` prints, as an operator would run it."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "feedbot",
            "--config",
            str(self.config),
            "websub",
            "list",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=PATIENCE)
        assert process.returncode == 0, err.decode()
        return out.decode()

    async def active(self) -> float:
        """``feedbot_websub_subscriptions{state="active"}``: the readers pushed to."""
        assert self.daemon is not None
        return await self.daemon.metric(
            self.session, "feedbot_websub_subscriptions", state="active"
        )

    async def subscribe(self, feed: str, lease_seconds: int = LONG_LEASE) -> Subscription:
        """Subscribe through the library (it makes up the secret: the hub is
        HTTPS), once the hub has it: the library answered the challenge and
        ``feedbot websub list`` shows the callback."""
        subscription = await self.subscriber.subscribe(feed, lease_seconds=lease_seconds)
        await self.verified(subscription)
        await self.listed(subscription)
        return subscription

    async def verified(self, subscription: Subscription, mode: str = "subscribe") -> None:
        async def done() -> bool:
            return (await self.subscriber.state()).verified(subscription, mode)

        await self.until(done, what=f"the hub's verification of {mode}")

    async def listed(self, subscription: Subscription, *, present: bool = True) -> None:
        async def shown() -> bool:
            return (subscription.callback_url in await self.websub_list()) == present

        what = f"the callback {'in' if present else 'gone from'} `feedbot websub list`"
        await self.until(shown, what=what)

    async def pushed(self, subscription: Subscription, title: str) -> Push:
        """The first push to ``subscription`` that the library accepted (its
        signature checked) holding an entry titled ``title``."""
        found: list[Push] = []

        async def arrived() -> bool:
            state = await self.subscriber.state()
            found[:] = [
                p for p in state.pushes_to(subscription) if p.accepted and title in titles(p)
            ]
            return bool(found)

        try:
            await self.until(arrived, what=f"a push of {title!r}")
        except AssertionError as exc:
            sent = (await self.subscriber.state()).pushes_to(subscription)
            raise AssertionError(f"{exc}\n--- pushes to it\n{_described(sent)}") from None
        return found[0]


@asynccontextmanager
async def prepared_hub(folder: Path, session: aiohttp.ClientSession) -> AsyncIterator[Hub]:
    """The proxy, the archive, the config and the subscriber; no daemon yet
    (:func:`serving` starts one, as often as a test needs)."""
    archive = copy_sample_archive(folder / "archive")
    async with running_tls_front(folder) as front:
        config = websub_config(folder, archive, front.url)
        async with running_subscriber(folder, session, ca_file=front.ca_file) as subscriber:
            yield Hub(folder, archive, config, front, subscriber, session)


@asynccontextmanager
async def serving(hub: Hub) -> AsyncIterator[Daemon]:
    """``feedbot run`` on the hub's config and store, reached through the proxy,
    once its folder watch is in place."""
    async with feedbot_run(hub.config) as daemon:
        hub.daemon = daemon
        hub.front.upstream = daemon.url
        await daemon.watching(hub.session)
        yield daemon


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hub(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Hub]:
    async with (
        aiohttp.ClientSession() as session,
        prepared_hub(tmp_path_factory.mktemp("websub"), session) as prepared,
        serving(prepared),
    ):
        yield prepared


async def test_a_subscriber_gets_signed_pushes_of_its_topic_only(hub: Hub) -> None:
    feed = await hub.topic("WebSub Push")
    _status, content_type, _text = await hub.fetch(feed)
    subscription = await hub.subscribe(feed)
    # Discovered by the library from the feed's Link headers.
    assert subscription.hub_url == f"{hub.front.url}/websub"
    assert subscription.topic_url == feed
    state = await hub.subscriber.state()
    [check] = state.verifications_of(subscription)
    assert check["query"]["hub.mode"] == "subscribe"
    assert check["query"]["hub.topic"] == feed
    assert check["query"]["hub.lease_seconds"] == str(LONG_LEASE)
    assert check["status"] == 200
    assert check["answer"] == check["query"]["hub.challenge"]

    hub.write("WebSub Push", "WebSub push: news")
    push = await hub.pushed(subscription, "WebSub push: news")
    assert titles(push) == ["WebSub push: news"], "a push holds the new entries only"
    assert push.header("Content-Type") == content_type
    assert links(push.header("Link")) == {"hub": f"{hub.front.url}/websub", "self": feed}
    signature = push.header("X-Hub-Signature") or ""
    assert signature.startswith("sha256="), push.headers
    assert push.accepted  # flask-websub checked the signature with its secret

    # Another topic's page: ingested, then a sentinel of this topic pushed after it.
    hub.write("WebSub Elsewhere", "WebSub elsewhere: not for it")
    await hub.stored("WebSub Elsewhere", "WebSub elsewhere: not for it")
    hub.write("WebSub Push", "WebSub push: more news")
    await hub.pushed(subscription, "WebSub push: more news")
    received = (await hub.subscriber.state()).pushes_to(subscription)
    assert not any("WebSub elsewhere: not for it" in titles(p) for p in received)
    assert all(p.accepted for p in received), [p.headers for p in received]

    # The library does check: a push signed with another secret is not accepted.
    forged = b'<feed xmlns="http://www.w3.org/2005/Atom"><title>forged</title></feed>'
    async with hub.session.post(
        subscription.callback_url,
        data=forged,
        headers={"Content-Type": content_type, "X-Hub-Signature": "sha256=" + "0" * 64},
    ) as response:
        assert response.status == 200  # WebSub: a subscriber acknowledges, then drops it
    last = (await hub.subscriber.state()).pushes_to(subscription)[-1]
    assert last.body == forged
    assert not last.accepted


async def test_every_kind_of_feed_is_a_topic_pushed_in_its_own_format(hub: Hub) -> None:
    await hub.topic("WebSub Formats")
    feeds = [
        hub.feed_url("websub-formats").replace(".atom", ".rss"),
        hub.feed_url("websub-formats").replace(".atom", ".json"),
        # A search feed: its URL carries the query the hub must match events to.
        f"{hub.front.url}/feeds/search.atom?q=zephyrine",
    ]
    subscriptions = {}
    for feed in feeds:
        _status, content_type, _text = await hub.fetch(feed)
        subscriptions[feed] = (await hub.subscribe(feed), content_type)

    hub.write("WebSub Formats", "WebSub formats: zephyrine")
    for feed, (subscription, content_type) in subscriptions.items():
        assert subscription.topic_url == feed  # the feed's rel="self", as discovered
        push = await hub.pushed(subscription, "WebSub formats: zephyrine")
        assert push.header("Content-Type") == content_type, feed
        assert links(push.header("Link")) == {"hub": f"{hub.front.url}/websub", "self": feed}
        assert push.accepted


async def test_after_unsubscribing_a_callback_gets_no_more_pushes(hub: Hub) -> None:
    feed = await hub.topic("WebSub Leaving")
    leaving = await hub.subscribe(feed)
    staying = await hub.subscribe(feed)
    await hub.subscriber.unsubscribe(leaving)
    await hub.verified(leaving, "unsubscribe")
    await hub.listed(leaving, present=False)
    [_, check] = (await hub.subscriber.state()).verifications_of(leaving)
    assert check["query"]["hub.mode"] == "unsubscribe"
    assert check["answer"] == check["query"]["hub.challenge"]

    hub.write("WebSub Leaving", "WebSub leaving: after")
    await hub.pushed(staying, "WebSub leaving: after")
    assert (await hub.subscriber.state()).pushes_to(leaving) == []


@dataclass
class Impostor:
    """A callback that answers the hub's verification without the challenge."""

    url: str = ""
    checks: list[dict[str, str]] = field(default_factory=list)
    posts: list[bytes] = field(default_factory=list)


@asynccontextmanager
async def running_impostor() -> AsyncIterator[Impostor]:
    impostor = Impostor()

    async def check(request: web.Request) -> web.Response:
        impostor.checks.append(dict(request.query))
        return web.Response(text="not the challenge")  # a 2xx, but another body

    async def post(request: web.Request) -> web.Response:
        impostor.posts.append(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/cb", check)
    app.router.add_post("/cb", post)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    impostor.url = f"http://127.0.0.1:{runner.addresses[0][1]}/cb"
    try:
        yield impostor
    finally:
        await runner.cleanup()


async def test_a_callback_that_does_not_echo_the_challenge_gets_nothing(hub: Hub) -> None:
    feed = await hub.topic("WebSub Impostor")
    async with running_impostor() as impostor:
        form = {
            "hub.mode": "subscribe",
            "hub.topic": feed,
            "hub.callback": impostor.url,
            "hub.lease_seconds": str(LONG_LEASE),
            "hub.secret": secrets.token_hex(16),
        }
        async with hub.session.post(
            f"{hub.front.url}/websub", data=form, ssl=hub.front.client_ssl
        ) as response:
            assert response.status == 202, await response.text()
        await until(lambda: bool(impostor.checks), what="the hub's verification")
        assert impostor.checks[0]["hub.challenge"]
        staying = await hub.subscribe(feed)
        hub.write("WebSub Impostor", "WebSub impostor: news")
        await hub.pushed(staying, "WebSub impostor: news")
        assert impostor.posts == []
        assert impostor.url not in await hub.websub_list()


async def test_an_expired_lease_ends_the_subscription(hub: Hub) -> None:
    feed = await hub.topic("WebSub Lease")
    before = await hub.active()
    short = await hub.subscriber.subscribe(feed, lease_seconds=2)
    await hub.verified(short)
    [check] = (await hub.subscriber.state()).verifications_of(short)
    assert check["query"]["hub.lease_seconds"] == "2"  # within websub.min_lease_seconds = 1

    # Counted while the lease lasts (the metric is read in milliseconds: a two
    # second lease cannot be missed, as it could between runs of the CLI).
    async def counted() -> bool:
        return await hub.active() == before + 1

    await hub.until(counted, what="the subscription in feedbot_websub_subscriptions")

    async def uncounted() -> bool:
        return await hub.active() == before

    await hub.until(uncounted, what="the expired subscription gone from the metric")
    await hub.listed(short, present=False)

    staying = await hub.subscribe(feed)
    hub.write("WebSub Lease", "WebSub lease: after it ran out")
    await hub.pushed(staying, "WebSub lease: after it ran out")
    assert (await hub.subscriber.state()).pushes_to(short) == []


async def test_kill_9_between_ingest_and_push_loses_no_push(tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session, prepared_hub(tmp_path, session) as hub:
        async with serving(hub) as daemon:
            feed = await hub.topic("WebSub Crash")
            subscription = await hub.subscribe(feed)
            # The subscriber is "down": whatever the daemon tries is refused, so
            # the push is still owed when the daemon dies.
            await hub.subscriber.hold(subscription, 503)
            hub.write("WebSub Crash", "WebSub crash: owed")
            await hub.stored("WebSub Crash", "WebSub crash: owed")
            os.kill(daemon.pid, signal.SIGKILL)
            await daemon.wait()
        refused = len((await hub.subscriber.state()).pushes_to(subscription))

        async with serving(hub):  # the same store, a new port behind the same URL
            await hub.subscriber.hold(subscription, None)
            await hub.pushed(subscription, "WebSub crash: owed")
            # A later push is sent after any duplicate the restart could have queued.
            hub.write("WebSub Crash", "WebSub crash: later")
            await hub.pushed(subscription, "WebSub crash: later")

        pushes = (await hub.subscriber.state()).pushes_to(subscription)
        owed = [p for p in pushes if p.accepted and "WebSub crash: owed" in titles(p)]
        assert len(owed) == 1, f"pushed {len(owed)} times ({refused} refused before the kill)"
