"""Replaying deliveries: an answer for each one asked for, on every backend."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from feedbot.model import DeliveryStatus, Subscription
from feedbot.store import AttemptReport, Store, delivery_id
from feedbot.store.outbox import ReplayOutcome, ReplayResult
from tests.test_outbox import LEASE, T0, event, store_new, sub


@dataclass(frozen=True)
class Scene:
    """One delivery in each state a replay can meet, by name."""

    failed: str  # failed, its subscription active
    pending: str
    done: str
    disabled: str  # failed: its subscription was disabled by a 410
    removed: str  # failed: its subscription was removed
    held: str  # pending, its subscription paused
    disabled_subscription: Subscription


async def build_scene(store: Store) -> Scene:
    """Subscriptions a (active), b (disabled by a 410), c (removed), d (paused),
    each alerted about its own events, the deliveries brought to their states."""
    subs = {
        name: await store.subscriptions.add(
            sub(f"https://hooks.example.org/{name}", topics=(name,)), now=T0
        )
        for name in "abcd"
    }
    events = {
        "failed": event("2026/11/27/a1", "a"),
        "pending": event("2026/11/27/a2", "a"),
        "done": event("2026/11/27/a3", "a"),
        "disabled": event("2026/11/27/b1", "b"),
        "removed": event("2026/11/27/c1", "c"),
        "held": event("2026/11/27/d1", "d"),
    }
    assert await store_new(store, *events.values()) == 6
    ids = {name: delivery_id(subs[e.id.split("/")[-1][0]].id, e.id) for name, e in events.items()}
    jobs = {
        job.delivery.id: job
        for job in await store.outbox.claim_due(now=T0, limit=10, worker="w", lease=LEASE)
    }
    assert set(jobs) == set(ids.values())

    def report(outcome: DeliveryStatus, disable: str | None = None) -> AttemptReport:
        http_status = 200 if outcome is DeliveryStatus.DONE else 500
        return AttemptReport(T0, 5, http_status, None, outcome, disable_subscription=disable)

    await store.outbox.finish_attempt(jobs[ids["failed"]].delivery, report(DeliveryStatus.FAILED))
    await store.outbox.finish_attempt(jobs[ids["done"]].delivery, report(DeliveryStatus.DONE))
    await store.outbox.finish_attempt(
        jobs[ids["disabled"]].delivery,
        report(DeliveryStatus.FAILED, disable="HTTP 410 Gone"),
    )
    for name in ("pending", "removed", "held"):
        await store.outbox.release(ids[name])
    assert await store.subscriptions.remove(subs["c"].id, now=T0)
    await store.subscriptions.update(
        replace(subs["d"], active=False, disabled_reason="paused by the operator")
    )
    disabled = await store.subscriptions.get(subs["b"].id)
    assert disabled is not None and not disabled.active
    return Scene(**ids, disabled_subscription=disabled)


async def status(store: Store, delivery: str) -> DeliveryStatus:
    found = await store.outbox.delivery(delivery)
    assert found is not None
    return found.status


async def test_each_delivery_asked_for_gets_its_answer_in_order(store: Store) -> None:
    scene = await build_scene(store)
    asked = [
        scene.failed,
        scene.pending,
        scene.done,
        scene.disabled,
        scene.removed,
        scene.held,
        "msg_nope",
        scene.failed,  # asked twice: answered once
    ]
    results = await store.outbox.replay(asked, now=T0 + timedelta(minutes=1))
    assert [(r.delivery_id, r.outcome) for r in results] == [
        (scene.failed, ReplayOutcome.QUEUED),
        (scene.pending, ReplayOutcome.ALREADY_PENDING),
        (scene.done, ReplayOutcome.ALREADY_DELIVERED),
        (scene.disabled, ReplayOutcome.SUBSCRIPTION_DISABLED),
        (scene.removed, ReplayOutcome.SUBSCRIPTION_REMOVED),
        (scene.held, ReplayOutcome.ALREADY_PENDING),
        ("msg_nope", ReplayOutcome.NO_SUCH_DELIVERY),
    ]
    by_id = {r.delivery_id: r for r in results}
    assert by_id[scene.disabled] == ReplayResult(
        scene.disabled,
        ReplayOutcome.SUBSCRIPTION_DISABLED,
        scene.disabled_subscription.id,
        "HTTP 410 Gone",
    )
    assert by_id[scene.held].subscription_disabled == "paused by the operator"
    assert by_id[scene.pending].subscription_disabled is None
    assert by_id[scene.pending].next_attempt_at == T0
    assert [r.queued for r in results].count(True) == 1

    # Only the one queued changed; the disabled one is not left pending for ever.
    assert await status(store, scene.failed) is DeliveryStatus.PENDING
    assert await status(store, scene.disabled) is DeliveryStatus.FAILED
    assert await status(store, scene.removed) is DeliveryStatus.FAILED
    due = await store.outbox.claim_due(
        now=T0 + timedelta(minutes=1), limit=10, worker="w2", lease=LEASE
    )
    # The held one waits for its subscription; the replayed one starts afresh.
    assert {job.delivery.id: job.delivery.attempts for job in due} == {
        scene.failed: 0,
        scene.pending: 0,
    }


async def test_replaying_every_failed_one_answers_for_each(store: Store) -> None:
    scene = await build_scene(store)
    results = await store.outbox.replay(now=T0)
    # A removed subscription's are left out: nothing can send them any more.
    assert {r.delivery_id: r.outcome for r in results} == {
        scene.failed: ReplayOutcome.QUEUED,
        scene.disabled: ReplayOutcome.SUBSCRIPTION_DISABLED,
    }
    # Once the subscription is on again, its failed delivery is queued.
    await store.subscriptions.update(replace(scene.disabled_subscription, active=True))
    (result,) = await store.outbox.replay([scene.disabled], now=T0)
    assert result.outcome is ReplayOutcome.QUEUED
    assert await status(store, scene.disabled) is DeliveryStatus.PENDING
    assert await store.outbox.replay(now=T0) == []
    (removed,) = await store.outbox.replay([scene.removed], now=T0)
    assert removed.outcome is ReplayOutcome.SUBSCRIPTION_REMOVED
