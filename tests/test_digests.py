"""Digests in the store, on every backend: a digest subscription's events wait in
their period and become one delivery when it ends, once, whoever closes it."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import timedelta
from inspect import isawaitable
from pathlib import Path

from sqlalchemy import select

from feedbot.model import (
    DIGEST_MAX_EVENTS,
    OPERATOR_ID,
    AlertKind,
    DeliveryStatus,
    Digest,
    DigestItem,
    NoticeKind,
    Subscription,
)
from feedbot.notify.outbound import RequestFactory
from feedbot.store import AttemptReport, Delivery, DeliveryJob, Store
from feedbot.store.schema import digest_items
from tests.conftest import T0
from tests.test_outbox import LEASE, event, store_new

HOUR = timedelta(hours=1)


def digest_sub(url: str = "https://hooks.example.org/d", **kw: object) -> Subscription:
    return Subscription(id="", url=url, digest="hourly", **kw)  # type: ignore[arg-type]


async def claim_all(store: Store, now, worker: str = "w") -> list:
    return list((await store.outbox.claim(now=now, limit=100, worker=worker, lease=LEASE)).jobs)


async def test_a_period_becomes_one_digest_when_it_ends(store: Store) -> None:
    added = await store.subscriptions.add(digest_sub(topics=("flood",)), now=T0)
    plain = await store.subscriptions.add(
        Subscription(id="", url="https://hooks.example.org/p"), now=T0
    )
    queued = await store_new(
        store, event("2020/01/1/a", "Flood"), event("2020/01/2/b", "Flood", "Dhaka"), now=T0
    )
    assert queued == 2  # the plain subscription's alerts; the digest's wait
    assert await store.outbox.close_digests(T0) == 0  # the hour is not over
    jobs = await claim_all(store, T0)
    assert {job.subscription.id for job in jobs} == {plain.id}

    # Later in the same hour: the same period.
    await store_new(store, event("2020/01/3/c", "Flood"), now=T0 + timedelta(minutes=30))
    end = T0 + HOUR  # T0 is on the hour
    assert await store.outbox.close_digests(end - timedelta(microseconds=1)) == 0
    assert await store.outbox.close_digests(end) == 1
    assert await store.outbox.close_digests(end + HOUR) == 0  # never twice

    [job] = [job for job in await claim_all(store, end) if job.subscription.id == added.id]
    assert job.delivery.kind is AlertKind.DIGEST
    assert job.event is None and job.digest is not None
    digest = job.digest
    assert (digest.period_start, digest.period_end) == (T0, end)
    assert digest.total == 3 and digest.more == 0
    # Newest first.
    assert [item.event.id for item in digest.items] == ["2020/01/3/c", "2020/01/2/b", "2020/01/1/a"]
    assert digest.items[1].matched_topics == ("flood",)


async def test_a_new_period_gets_a_digest_of_its_own(store: Store) -> None:
    await store.subscriptions.add(digest_sub(), now=T0)
    await store_new(store, event("2020/01/1/a"), now=T0)
    assert await store.outbox.close_digests(T0 + HOUR) == 1
    await store_new(store, event("2020/01/2/b"), now=T0 + HOUR)
    assert await store.outbox.close_digests(T0 + 2 * HOUR) == 1
    jobs = await claim_all(store, T0 + 2 * HOUR)
    assert [[i.event.id for i in job.digest.items] for job in jobs] == [
        ["2020/01/1/a"],
        ["2020/01/2/b"],
    ]
    assert len({job.delivery.id for job in jobs}) == 2


async def test_an_empty_period_sends_nothing(store: Store) -> None:
    await store.subscriptions.add(digest_sub(topics=("flood",)), now=T0)
    await store_new(store, event("2020/01/1/a", "Quake"), now=T0)  # not for it
    assert await store.outbox.close_digests(T0 + 5 * HOUR) == 0
    assert await claim_all(store, T0 + 5 * HOUR) == []


async def test_a_digest_lists_at_most_its_cap_and_counts_the_rest(store: Store) -> None:
    await store.subscriptions.add(digest_sub(), now=T0)
    many = [event(f"2020/01/{day}/e{n}") for day in range(1, 29) for n in range(3)]
    await store_new(store, *many, now=T0)
    assert await store.outbox.close_digests(T0 + HOUR) == 1
    [job] = await claim_all(store, T0 + HOUR)
    assert job.digest.total == len(many)
    assert len(job.digest.items) == DIGEST_MAX_EVENTS
    assert job.digest.more == len(many) - DIGEST_MAX_EVENTS
    assert job.digest.items[0].event.date.day == 28


async def test_concurrent_closers_queue_each_digest_once(store: Store) -> None:
    """Replicas (here: concurrent calls on one store) close the same periods at once."""
    for n in range(5):
        await store.subscriptions.add(digest_sub(url=f"https://hooks.example.org/{n}"), now=T0)
    await store_new(store, *(event(f"2020/01/{d}/x") for d in range(1, 8)), now=T0)
    results = await asyncio.gather(*(store.outbox.close_digests(T0 + HOUR) for _ in range(4)))
    assert sum(results) == 5
    jobs = await claim_all(store, T0 + HOUR)
    assert len(jobs) == 5
    assert all(job.digest.total == 7 for job in jobs)


async def test_a_removed_subscription_leaves_no_open_period(store: Store) -> None:
    added = await store.subscriptions.add(digest_sub(), now=T0)
    await store_new(store, event("2020/01/1/a"), now=T0)
    await store.subscriptions.remove(added.id, now=T0)
    assert await store.outbox.close_digests(T0 + HOUR) == 0
    async with store._db.read() as connection:
        assert list(await connection.execute(select(digest_items))) == []


async def test_the_digest_webhook_id_is_the_same_on_every_attempt(store: Store) -> None:
    await store.subscriptions.add(digest_sub(), now=T0)
    await store_new(store, event("2020/01/1/a"), now=T0)
    await store.outbox.close_digests(T0 + HOUR)
    [first] = await claim_all(store, T0 + HOUR)
    failed = AttemptReport(T0 + HOUR, 5, 500, "HTTP 500", DeliveryStatus.PENDING, T0 + 2 * HOUR)
    assert await store.outbox.finish_attempt(first.delivery, failed)
    [again] = await claim_all(store, T0 + 2 * HOUR)
    assert again.delivery.id == first.delivery.id
    assert again.digest == first.digest


# -- operator notices ---------------------------------------------------------------


async def operator(store: Store) -> Subscription:
    await store.subscriptions.reconcile_operator(
        Subscription(id="", url="https://ops.example.org/hook"), now=T0
    )
    found = await store.subscriptions.operator()
    assert found is not None and found.id == OPERATOR_ID
    return found


async def test_operator_hears_of_an_exhausted_delivery_and_a_disabled_subscription(
    store: Store,
) -> None:
    await operator(store)
    assert [s.id for s in await store.subscriptions.all()] == []  # not listed
    added = await store.subscriptions.add(
        Subscription(id="", url="https://user:pw@hooks.example.org/a", shown_url="x://***"),
        now=T0,
    )
    await store_new(store, event("2020/01/1/a"), event("2020/01/2/b"), now=T0)
    jobs = await claim_all(store, T0)
    assert {job.subscription.id for job in jobs} == {added.id}  # the operator gets no events
    exhausted = AttemptReport(T0, 7, 503, "HTTP 503 Service Unavailable", DeliveryStatus.FAILED)
    gone = replace(exhausted, status=410, error="HTTP 410 Gone")
    gone = replace(gone, disable_subscription="the receiver answered 410 Gone")
    await store.outbox.finish_attempts([(jobs[0].delivery, exhausted), (jobs[1].delivery, gone)])

    notices = await claim_all(store, T0 + timedelta(seconds=1))
    assert {job.subscription.id for job in notices} == {OPERATOR_ID}
    by_kind = {job.notice.kind: job.notice for job in notices}
    assert set(by_kind) == {NoticeKind.DELIVERY_EXHAUSTED, NoticeKind.SUBSCRIPTION_DISABLED}
    failed = by_kind[NoticeKind.DELIVERY_EXHAUSTED]
    assert failed.delivery_id == jobs[0].delivery.id
    assert (failed.last_status, failed.last_error) == (503, "HTTP 503 Service Unavailable")
    assert failed.subscription_url == "x://***"  # redacted, never the password
    disabled = by_kind[NoticeKind.SUBSCRIPTION_DISABLED]
    assert disabled.reason == "the receiver answered 410 Gone"
    assert disabled.last_status == 410

    # The operator's own failures make no notices (they would feed themselves).
    lost = AttemptReport(T0, 1, 500, "HTTP 500", DeliveryStatus.FAILED)
    await store.outbox.finish_attempts([(job.delivery, lost) for job in notices])
    assert await claim_all(store, T0 + timedelta(seconds=2)) == []


async def test_a_failing_subscription_makes_one_exhausted_notice_an_hour(store: Store) -> None:
    await operator(store)
    await store.subscriptions.add(Subscription(id="", url="https://hooks.example.org/a"), now=T0)
    await store_new(store, *(event(f"2020/01/{d}/a") for d in range(1, 5)), now=T0)
    jobs = await claim_all(store, T0)
    assert len(jobs) == 4
    at = [T0, T0 + timedelta(minutes=20), T0 + timedelta(minutes=59), T0 + HOUR]
    for job, moment in zip(jobs, at, strict=True):
        failed = AttemptReport(moment, 7, 503, "HTTP 503", DeliveryStatus.FAILED)
        await store.outbox.finish_attempts([(job.delivery, failed)])
    notices = await claim_all(store, T0 + 2 * HOUR)
    assert [job.notice.delivery_id for job in notices] == [jobs[0].delivery.id, jobs[3].delivery.id]


async def test_no_operator_no_notices(store: Store) -> None:
    await store.subscriptions.add(Subscription(id="", url="https://hooks.example.org/a"), now=T0)
    await store_new(store, event("2020/01/1/a"), now=T0)
    [job] = await claim_all(store, T0)
    failed = AttemptReport(T0, 7, 503, "HTTP 503", DeliveryStatus.FAILED)
    await store.outbox.finish_attempts([(job.delivery, failed)])
    assert await claim_all(store, T0 + timedelta(seconds=1)) == []


async def test_the_operator_follows_the_config(store: Store) -> None:
    await operator(store)
    await store.subscriptions.reconcile_operator(None, now=T0)
    assert await store.subscriptions.operator() is None


# -- a digest in every format ---------------------------------------------------------


async def test_a_digest_renders_in_every_format(tmp_path: Path) -> None:
    """What the deliverer sends for one digest job, format by format: the json
    body, Slack blocks, a Discord embed, an operator's template (with the json
    body as its context) and an Apprise message."""
    template = tmp_path / "digest.json.j2"
    template.write_text(
        '{"type": {{ type | tojson }}, "n": {{ data.events | length }},'
        ' "feed": {{ data.feed_url | tojson }}}\n',
        encoding="utf-8",
    )
    items = tuple(
        DigestItem(event(f"2020/01/{d}/e", "Flood", title=f"Flood {d} *news*"), ("flood",))
        for d in (3, 2, 1)
    )
    digest = Digest(T0, T0 + HOUR, items, total=5, feed_url="")
    delivery = Delivery(
        id="msg_digest",
        subscription_id="sub_d",
        event_id=f"digest:{(T0 + HOUR).isoformat()}",
        matched_topics=(),
        in_reply_to=(),
        status=DeliveryStatus.PENDING,
        attempts=0,
        created_at=T0 + HOUR,
        next_attempt_at=T0 + HOUR,
        last_attempt_at=None,
        last_status=None,
        last_error=None,
        kind=AlertKind.DIGEST,
    )
    formats = {
        "json": "https://h.example/",
        "slack": "https://hooks.slack.com/services/T/B/X",
        "discord": "https://discord.com/api/webhooks/1/x",
        f"template:{template}": "https://h.example/",
        "apprise": "ntfy://ntfy.example.org/floods?format=markdown",
    }
    factory = RequestFactory("https://feeds.example")
    sent: dict[str, object] = {}
    try:
        for fmt, url in formats.items():
            subscription = Subscription(
                id="sub_d", url=url, format=fmt, topics=("flood",), digest="hourly"
            )
            request = factory(DeliveryJob(delivery, subscription, None, digest=digest), T0 + HOUR)
            if isawaitable(request):
                request = await request
            sent[fmt.split(":")[0]] = request
    finally:
        await factory.aclose()
    feed = "https://feeds.example/feeds/topics/flood.atom"
    body = json.loads(sent["json"].body)
    assert body["type"] == "digest.created" and sent["json"].headers["webhook-id"] == "msg_digest"
    assert [e["id"] for e in body["data"]["events"]] == [
        "2020/01/3/e",
        "2020/01/2/e",
        "2020/01/1/e",
    ]
    assert (body["data"]["total"], body["data"]["more"], body["data"]["feed_url"]) == (5, 2, feed)
    assert json.loads(sent["template"].body) == {"type": "digest.created", "n": 3, "feed": feed}
    slack = sent["slack"].body.decode()
    assert "Flood 3" in slack and feed in slack and "2 more" in slack
    discord = json.loads(sent["discord"].body)["embeds"][0]
    assert "Flood 1" in json.dumps(discord) and "2 more" in json.dumps(discord)
    message = sent["apprise"].message
    assert "Flood 3 \\*news\\*" in message.body  # markdown escaped
    assert feed in message.body and "2 more" in message.body
