"""event.created, event.updated and event.deleted in the store, on every backend:
who gets which, their webhook-ids, their bodies, and a store from before alert
kinds upgraded in place with its deliveries kept."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from inspect import isawaitable
from pathlib import Path

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
)
from sqlalchemy.ext.asyncio import create_async_engine

from feedbot.cli import main
from feedbot.errors import ConfigError
from feedbot.loop import run as run_async
from feedbot.model import AlertKind, DeliveryStatus, Event, EventRecord, Subscription
from feedbot.notify.formats import render_payload
from feedbot.notify.outbound import RequestFactory, config_subscriptions
from feedbot.notify.ssrf import TargetPolicy
from feedbot.settings import SubscriptionSettings
from feedbot.store import AttemptReport, Delivery, DeliveryJob, Store, delivery_id
from feedbot.store.outbox import queue_alerts
from feedbot.store.schema import SCHEMA_VERSION, UTCDateTime, metadata
from feedbot.store.store import async_url
from tests.test_outbox import event, store_new

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)
CREATED, UPDATED, DELETED = AlertKind.CREATED, AlertKind.UPDATED, AlertKind.DELETED


def sub(url: str, *events: AlertKind, topics=("*",)) -> Subscription:
    return Subscription(id="", url=url, topics=tuple(topics), events=events or (CREATED,))


async def store_changed(store: Store, *events: Event, now: datetime) -> int:
    """Write ``events`` as changed content of stored ones (ingest's ``changed``)."""
    result = await store.write_batch(
        new=[],
        changed=[EventRecord.of(e) for e in events],
        marks_={},
        rejected={},
        accepted_paths=[],
        now=now,
    )
    return result.alerts


async def claim_all(store: Store, now: datetime):
    """Every due delivery, claimed and then recorded as delivered (a 200)."""
    jobs = await store.outbox.claim_due(now=now, limit=100, worker="w", lease=LEASE)
    await store.outbox.finish_attempts(
        [(job.delivery, AttemptReport(now, 1, 200, None, DeliveryStatus.DONE)) for job in jobs]
    )
    return jobs


def body_of(job) -> dict:
    payload = render_payload(
        "json",
        job.event,
        base_url="https://feeds.example",
        matched_topics=job.delivery.matched_topics,
        in_reply_to=job.delivery.in_reply_to,
        timestamp=job.delivery.created_at,
        kind=job.delivery.kind,
        previous_title=job.delivery.previous_title,
    )
    return json.loads(payload.body)


async def test_an_opted_in_subscription_gets_event_updated_with_the_previous_title(
    store: Store,
) -> None:
    updates = await store.subscriptions.add(
        sub("https://updates.example/", CREATED, UPDATED), now=T0
    )
    created_only = await store.subscriptions.add(sub("https://created.example/"), now=T0)
    first = event("2020/01/1/a", "Flood", title="A flood in Dhaka")
    assert await store_new(store, first) == 2
    for job in await claim_all(store, T0):
        assert job.delivery.kind is CREATED
        assert job.delivery.id == delivery_id(job.subscription.id, first.id)
        assert body_of(job)["type"] == "event.created"

    reworded = replace(first, title="Floods in Dhaka kill 12")
    later = T0 + timedelta(minutes=5)
    # Through ingest's "changed" path: the created-only subscription gets nothing.
    assert await store_changed(store, reworded, now=later) == 1
    jobs = await claim_all(store, later)
    assert [(j.subscription.id, j.delivery.kind, j.delivery.seq) for j in jobs] == [
        (updates.id, UPDATED, 1)
    ]
    (job,) = jobs
    assert job.delivery.id == delivery_id(updates.id, first.id, UPDATED, 1)
    assert job.delivery.in_reply_to == ()  # an update replies to nothing
    body = body_of(job)
    assert body["type"] == "event.updated"
    assert body["data"]["event"]["title"] == "Floods in Dhaka kill 12"
    assert body["data"]["event"]["id"] == first.id
    assert body["data"]["previous"] == {"title": "A flood in Dhaka"}
    assert not [
        d
        for d in await store.outbox.deliveries()
        if d.subscription_id == created_only.id and d.kind is not CREATED
    ]

    # A second change is a second alert, with its own webhook-id and its own
    # previous title; the first keeps its id across a retry.
    again = replace(first, title="Floods in Dhaka kill 20")
    even_later = later + timedelta(minutes=5)
    assert await store_changed(store, again, now=even_later) == 1
    updates_sent = sorted(
        (d for d in await store.outbox.deliveries() if d.kind is UPDATED), key=lambda d: d.seq
    )
    assert [(d.id, d.seq, d.previous_title) for d in updates_sent] == [
        (delivery_id(updates.id, first.id, UPDATED, 1), 1, "A flood in Dhaka"),
        (delivery_id(updates.id, first.id, UPDATED, 2), 2, "Floods in Dhaka kill 12"),
    ]


async def test_each_update_is_sent_with_the_event_as_that_update_left_it(store: Store) -> None:
    await store.subscriptions.add(sub("https://u.example/", UPDATED), now=T0)
    first = event("2020/01/1/a", title="One")
    await store_new(store, first)
    await store_changed(store, replace(first, title="Two"), now=T0 + timedelta(seconds=1))
    await store_changed(store, replace(first, title="Three"), now=T0 + timedelta(seconds=2))
    jobs = sorted(await claim_all(store, T0 + timedelta(seconds=3)), key=lambda j: j.delivery.seq)
    assert [(j.event.title, j.delivery.previous_title) for j in jobs] == [
        ("Two", "One"),
        ("Three", "Two"),
    ]


async def test_event_deleted_goes_to_subscriptions_that_opted_in(store: Store) -> None:
    deletions = await store.subscriptions.add(
        sub("https://deleted.example/", DELETED, topics=("flood",)), now=T0
    )
    await store.subscriptions.add(sub("https://created.example/"), now=T0)
    await store.subscriptions.add(sub("https://updated.example/", CREATED, UPDATED), now=T0)
    gone = event("2020/01/1/a", "Flood", title="Last words")
    other = event("2020/01/2/b", "Fire")
    await store_new(store, gone, other)
    async with store._db.transaction() as connection:  # as the store's writer calls it
        queued = await queue_alerts(
            store._db, connection, [], now=T0, deleted=[gone, EventRecord.of(other)]
        )
    assert queued == 1
    deleted = [d for d in await store.outbox.deliveries() if d.kind is DELETED]
    assert [(d.subscription_id, d.event_id, d.id) for d in deleted] == [
        (deletions.id, gone.id, delivery_id(deletions.id, gone.id, DELETED, 1))
    ]
    # Sent with the event as it was when removed, whatever its row says by then.
    await store_changed(store, replace(gone, title="Words after"), now=T0 + timedelta(seconds=1))
    jobs = await claim_all(store, T0 + timedelta(seconds=2))
    (job,) = [j for j in jobs if j.delivery.kind is DELETED]
    body = body_of(job)
    assert body["type"] == "event.deleted"
    assert body["data"]["event"]["title"] == "Last words"
    assert "previous" not in body["data"]


async def test_queue_alerts_takes_updates_directly(store: Store) -> None:
    # The writer's API (feedbot.store.store calls it inside its transaction).
    updates = await store.subscriptions.add(sub("https://u.example/", UPDATED), now=T0)
    await store.subscriptions.add(sub("https://c.example/"), now=T0)
    changed = event("2020/01/1/a", title="New words")
    async with store._db.transaction() as connection:
        queued = await queue_alerts(
            store._db, connection, [], now=T0, updated=[(EventRecord.of(changed), "Old words")]
        )
    assert queued == 1
    (delivery,) = await store.outbox.deliveries()
    assert (delivery.subscription_id, delivery.kind, delivery.previous_title) == (
        updates.id,
        UPDATED,
        "Old words",
    )


async def test_subscription_events_are_stored_and_read_back(store: Store) -> None:
    added = await store.subscriptions.add(sub("https://a.example/", DELETED, UPDATED), now=T0)
    assert (await store.subscriptions.get(added.id)).events == (DELETED, UPDATED)
    changed = await store.subscriptions.update(replace(added, events=(CREATED,)))
    assert changed.events == (CREATED,)


# -- a store written before alert kinds ----------------------------------------------------

# The subscriptions and deliveries tables as schema version 4 made them (the last
# version before alert kinds), frozen here: an upgrade must start from exactly this.
_V4 = MetaData()
Table(
    "subscriptions",
    _V4,
    Column("id", String(40), primary_key=True),
    Column("url", Text, nullable=False),
    Column("topics", Text, nullable=False),
    Column("format", Text, nullable=False),
    Column("secret", Text),
    Column("keywords", Text, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("origin", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("failing_since", UTCDateTime),
    Column("disabled_reason", Text),
)
Table(
    "deliveries",
    _V4,
    Column("id", String(40), primary_key=True),
    Column("subscription_id", String(40), nullable=False),
    Column("event_id", String(512), nullable=False),
    Column("matched_topics", Text, nullable=False),
    Column("in_reply_to", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_attempt_at", UTCDateTime),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("done_at", UTCDateTime),
    Column("claimed_by", String(64)),
    Column("claim_expires", UTCDateTime),
    UniqueConstraint("subscription_id", "event_id", name="uq_deliveries_subscription_event"),
    Index("ix_deliveries_due", "status", "next_attempt_at"),
    Index("ix_deliveries_event", "event_id"),
)


async def test_a_store_from_before_alert_kinds_keeps_its_deliveries(store_url: str) -> None:
    # A store at schema version 4: made by today's code, its two tables then
    # replaced by their version 4 forms holding a subscription and its deliveries.
    made = await Store.open(store_url)
    await made.close()
    sid = "sub_0123456789abcdef"
    pending_event = "2020/01/1/a"
    done_event = "2020/01/2/b"
    engine = create_async_engine(async_url(store_url))
    try:
        async with engine.begin() as connection:
            for name in ("deliveries", "subscriptions"):
                await connection.run_sync(lambda c, n=name: metadata.tables[n].drop(c))
            await connection.run_sync(_V4.create_all)
            await connection.execute(
                _V4.tables["subscriptions"].insert(),
                [
                    {
                        "id": sid,
                        "url": "https://old.example/",
                        "topics": '["*"]',
                        "format": "json",
                        "secret": None,
                        "keywords": "[]",
                        "active": True,
                        "origin": "api",
                        "created_at": T0,
                    }
                ],
            )
            await connection.execute(
                _V4.tables["deliveries"].insert(),
                [
                    {
                        "id": delivery_id(sid, event_id),
                        "subscription_id": sid,
                        "event_id": event_id,
                        "matched_topics": "[]",
                        "in_reply_to": in_reply_to,
                        "status": status,
                        "attempts": attempts,
                        "created_at": T0,
                        "next_attempt_at": T0,
                        "done_at": T0 if status == "done" else None,
                    }
                    for event_id, status, attempts, in_reply_to in [
                        (done_event, "done", 1, "[]"),
                        (pending_event, "pending", 0, f'["{done_event}"]'),
                    ]
                ],
            )
            await connection.exec_driver_sql(
                "UPDATE meta SET value = '4' WHERE key = 'schema_version'"
            )
    finally:
        await engine.dispose()

    upgraded = await Store.open(store_url)
    try:
        assert await upgraded.schema_version() == SCHEMA_VERSION
        (old_sub,) = await upgraded.subscriptions.all()
        assert (old_sub.id, old_sub.events) == (sid, (CREATED,))
        kept = sorted(await upgraded.outbox.deliveries(), key=lambda d: d.event_id)
        assert [(d.id, d.event_id, d.status, d.kind, d.seq, d.in_reply_to) for d in kept] == [
            (delivery_id(sid, pending_event), pending_event, DeliveryStatus.PENDING, CREATED, 0,
             (done_event,)),
            (delivery_id(sid, done_event), done_event, DeliveryStatus.DONE, CREATED, 0, ()),
        ]  # fmt: skip
        assert kept[0].id == "msg_6e73edc7dc09ce8dbe356bd1"  # as version 4 derived it
        # The events arrive: the pending alert is sent under its old webhook-id, and
        # no second created alert is queued for either event.
        assert await store_new(upgraded, event(pending_event), event(done_event)) == 0
        (job,) = await claim_all(upgraded, T0)
        assert job.delivery.id == delivery_id(sid, pending_event)
        assert job.event.id == pending_event
        # The wider unique key: an update of the same pair is another alert.
        await upgraded.subscriptions.update(replace(old_sub, events=(CREATED, UPDATED)))
        changed = event(pending_event, title="Reworded")
        assert await store_changed(upgraded, changed, now=T0 + timedelta(seconds=1)) == 1
        # The rebuilt table has its indexes again.
        async with upgraded._db.transaction() as connection:
            indexes = await connection.run_sync(
                lambda c: {i["name"] for i in inspect(c).get_indexes("deliveries")}
            )
        assert {"ix_deliveries_due", "ix_deliveries_event"} <= indexes
    finally:
        await upgraded.close()


# -- the events key in the config file and the CLI -------------------------------------------


def test_a_bad_events_key_in_the_config_stops_with_a_line_naming_it(tmp_path: Path, capsys) -> None:
    for value, expected in [
        ('["created", "nope"]', "unknown alert kind 'nope'"),
        ('"created"', "Input should be a valid list"),
        ("[]", "give at least one"),
    ]:
        path = tmp_path / "bad.toml"
        path.write_text(f'[[subscriptions]]\nurl = "https://h.example/"\nevents = {value}\n')
        assert main(["--config", str(path), "config", "check"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert "bad value for 'subscriptions[0].events'" in err and expected in err, err


def test_config_subscriptions_carry_their_events() -> None:
    entries = [
        SubscriptionSettings(url="https://a.example/"),
        SubscriptionSettings(url="https://b.example/", events=["deleted", "updated"]),
    ]
    built = config_subscriptions(entries, TargetPolicy.build())
    assert [s.events for s in built] == [(CREATED,), (UPDATED, DELETED)]


def test_config_subscriptions_carry_their_keywords_and_exclusions() -> None:
    entries = [
        SubscriptionSettings(url="https://a.example/", keywords=["flood"], exclude=["drill"])
    ]
    (built,) = config_subscriptions(entries, TargetPolicy.build())
    assert (built.keywords, built.exclude) == (("flood",), ("drill",))
    with pytest.raises(ConfigError, match=r"subscriptions\[0\]\.exclude: '\?\?' has no letters"):
        config_subscriptions(
            [SubscriptionSettings(url="https://a.example/", exclude=["??"])], TargetPolicy.build()
        )


async def test_reconcile_updates_a_config_subscriptions_events(store: Store) -> None:
    wanted = Subscription(id="", url="https://a.example/", origin="config")
    assert await store.subscriptions.reconcile_config([wanted], now=T0) == (1, 0, 0)
    more = replace(wanted, events=(CREATED, DELETED))
    assert await store.subscriptions.reconcile_config([more], now=T0) == (0, 1, 0)
    (stored,) = await store.subscriptions.all()
    assert stored.events == (CREATED, DELETED)
    fewer = replace(more, exclude=("drill",))
    assert await store.subscriptions.reconcile_config([fewer], now=T0) == (0, 1, 0)
    (stored,) = await store.subscriptions.all()
    assert stored.exclude == ("drill",)


def test_cli_subscriptions_add_takes_events(tmp_path: Path, capsys) -> None:
    config = tmp_path / "feedbot.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "cli.db"}"\n', encoding="utf-8")
    base = ["--config", str(config), "subscriptions"]
    assert main([*base, "add", "https://h.example/", "--events", "updated, created"]) == 0
    capsys.readouterr()
    assert main([*base, "add", "https://h.example/"]) == 0
    capsys.readouterr()
    assert main([*base, "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert ["events=created,updated" in line for line in listing] == [True, False]
    assert ["events=created " in line for line in listing] == [False, True]
    assert main([*base, "add", "https://h.example/", "--events", "created,renamed"]) == 2
    err = capsys.readouterr().err
    assert "events: unknown alert kind 'renamed'" in err, err


def test_cli_subscriptions_add_takes_keywords_and_exclusions(tmp_path: Path, capsys) -> None:
    db = tmp_path / "cli.db"
    config = tmp_path / "feedbot.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{db}"\n', encoding="utf-8")
    add = ["--config", str(config), "subscriptions", "add", "https://h.example/"]
    assert main([*add, "--keyword", "flood", "--exclude", "drill", "--exclude", "test run"]) == 0
    capsys.readouterr()
    assert main([*add, "--exclude", "***"]) == 2
    assert "exclude: '***' has no letters or digits" in capsys.readouterr().err

    async def stored() -> Subscription:
        store = await Store.open(f"sqlite:///{db}")
        try:
            (only,) = await store.subscriptions.all()
            return only
        finally:
            await store.close()

    subscription = run_async(stored())
    assert (subscription.keywords, subscription.exclude) == (("flood",), ("drill", "test run"))


async def test_an_operator_template_sees_the_kind_and_the_previous_title(tmp_path: Path) -> None:
    # A template serves every kind; the previous title exists only in an update.
    template = tmp_path / "alert.json.j2"
    template.write_text(
        '{"type": {{ type | tojson }}, "title": {{ event.title | tojson }},'
        ' "was": {{ (data.previous.title if data.previous is defined else none) | tojson }}}\n',
        encoding="utf-8",
    )
    subscription = Subscription(
        id="sub_t", url="https://t.example/", format=f"template:{template}", events=(UPDATED,)
    )
    factory = RequestFactory("https://feeds.example")
    try:
        bodies = []
        for kind, previous in [(UPDATED, "Old words"), (DELETED, None), (CREATED, None)]:
            delivery = Delivery(
                id=delivery_id("sub_t", "2020/01/1/a", kind, 0 if kind is CREATED else 1),
                subscription_id="sub_t",
                event_id="2020/01/1/a",
                matched_topics=(),
                in_reply_to=(),
                status=DeliveryStatus.PENDING,
                attempts=0,
                created_at=T0,
                next_attempt_at=T0,
                last_attempt_at=None,
                last_status=None,
                last_error=None,
                kind=kind,
                seq=0 if kind is CREATED else 1,
                previous_title=previous,
            )
            job = DeliveryJob(delivery, subscription, event("2020/01/1/a", title="New words"))
            request = factory(job, T0)
            if isawaitable(request):  # rendered in a worker process
                request = await request
            bodies.append(json.loads(request.body))
    finally:
        closing = getattr(factory, "aclose", None)
        if closing is not None:
            await closing()
    assert bodies == [
        {"type": "event.updated", "title": "New words", "was": "Old words"},
        {"type": "event.deleted", "title": "New words", "was": None},
        {"type": "event.created", "title": "New words", "was": None},
    ]
