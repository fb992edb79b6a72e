"""Subscriptions and the delivery outbox, on every backend; matching is pure."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from feedbot.archive.local import LocalArchiveSource
from feedbot.errors import NotFoundError
from feedbot.ingest import Ingestor
from feedbot.model import (
    DeliveryStatus,
    Event,
    EventRecord,
    Related,
    RelatedKind,
    Source,
    Subscription,
    Topic,
)
from feedbot.store import AttemptReport, Store, delivery_id
from feedbot.store import outbox as outbox_module
from tests.conftest import Clock, write_page

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


def event(event_id: str, *topics: str, title: str = "Something happens", related=()) -> Event:
    return Event(
        id=event_id,
        date=date.fromisoformat("-".join(f"{int(p):02d}" for p in event_id.split("/")[:3])),
        story=None,
        title=title,
        related=tuple(related),
        topics=tuple(Topic.named(t) for t in topics),
    )


def sub(url: str = "https://hooks.example.org/a", topics=("*",), **kw) -> Subscription:
    return Subscription(id="", url=url, topics=tuple(topics), **kw)


async def store_new(store: Store, *events: Event, now: datetime = T0, alert_since=None) -> int:
    result = await store.write_batch(
        new=[EventRecord.of(e) for e in events],
        changed=[],
        marks_={},
        rejected={},
        accepted_paths=[],
        now=now,
        alert_since=alert_since,
    )
    return result.alerts


# -- who gets it (pure) ---------------------------------------------------------------


def test_star_matches_everything_with_all_topics() -> None:
    e = event("2020/01/1/a", "Flood", "Dhaka")
    assert sub().matched_topics(e) == ("flood", "dhaka")
    assert sub().matched_topics(event("2020/01/1/b")) == ()


def test_topic_subscription_matches_only_its_topics() -> None:
    s = sub(topics=("dhaka", "quake"))
    assert s.matched_topics(event("2020/01/1/a", "Flood", "Dhaka")) == ("dhaka",)
    assert s.matched_topics(event("2020/01/1/b", "Flood")) is None


def test_keywords_filter_titles_case_insensitively() -> None:
    s = sub(keywords=("EARTHQUAKE", "tsunami"))
    assert s.matched_topics(event("2020/01/1/a", title="An earthquake strikes")) == ()
    assert s.matched_topics(event("2020/01/1/b", title="Elections held")) is None


def test_keywords_and_exclude_match_whole_words_over_title_story_topics_and_sources() -> None:
    quake = replace(
        event("2020/01/1/a", "Tōhoku", title="The sea wall holds"),
        story="Earthquake in Japan",
        sources=(Source(url="https://example.org/a", name="Kyodo News"),),
    )
    for keyword in ("earthquake", "TOHOKU", "kyodo", "sea wall", "Wall, sea!"):
        assert sub(keywords=(keyword,)).matched_topics(quake) == ("tohoku",), keyword
    # Whole words only: no part of a word, and every word of a keyword.
    for keyword in ("quake", "earth", "sea dam", "news agency"):
        assert sub(keywords=(keyword,)).matched_topics(quake) is None, keyword
    assert sub(keywords=("dam", "kyodo")).matched_topics(quake) == ("tohoku",)  # any of them
    # exclude: none of them, whatever the keywords say.
    assert sub(exclude=("japan",)).matched_topics(quake) is None
    assert sub(exclude=("japanese",)).matched_topics(quake) == ("tohoku",)
    assert sub(keywords=("earthquake",), exclude=("kyodo news",)).matched_topics(quake) is None


def test_redacted_hides_the_secret() -> None:
    assert sub(secret="whsec_abc").redacted().secret == "whsec_***"


# -- the outbox -----------------------------------------------------------------------


async def test_subscriptions_crud(store: Store) -> None:
    added = await store.subscriptions.add(
        sub(secret="whsec_x", keywords=("flood",), exclude=("drill", "test run")), now=T0
    )
    assert added.id.startswith("sub_") and added.created_at == T0
    assert await store.subscriptions.get(added.id) == added
    changed = await store.subscriptions.update(replace(added, topics=("flood",)))
    assert changed.topics == ("flood",)
    assert [s.id for s in await store.subscriptions.all()] == [added.id]
    assert await store.subscriptions.remove(added.id, now=T0)
    assert await store.subscriptions.all() == []


async def test_new_events_queue_one_delivery_per_matching_subscription(store: Store) -> None:
    everything = await store.subscriptions.add(sub("https://a.example/"), now=T0)
    floods = await store.subscriptions.add(sub("https://b.example/", ["flood"]), now=T0)
    await store.subscriptions.add(sub("https://c.example/", ["quake"]), now=T0)
    queued = await store_new(store, event("2020/01/1/a", "Flood"), event("2020/01/2/b", "Fire"))
    assert queued == 3
    pending = await store.outbox.deliveries(status=DeliveryStatus.PENDING)
    assert {(d.subscription_id, d.event_id) for d in pending} == {
        (everything.id, "2020/01/1/a"),
        (everything.id, "2020/01/2/b"),
        (floods.id, "2020/01/1/a"),
    }
    assert all(d.id == delivery_id(d.subscription_id, d.event_id) for d in pending)


async def test_alert_since_limits_alerts_but_not_storage(store: Store) -> None:
    await store.subscriptions.add(sub(), now=T0)
    queued = await store_new(
        store, event("2020/01/1/old"), event("2026/11/27/new"), alert_since=date(2026, 11, 27)
    )
    assert queued == 1
    assert await store.count_events() == 2


async def test_a_subscription_gets_only_events_seen_after_it(store: Store) -> None:
    await store_new(store, event("2020/01/1/before"))
    await store.subscriptions.add(sub(), now=T0)
    await store_new(store, event("2020/01/2/after"))
    assert [d.event_id for d in await store.outbox.deliveries()] == ["2020/01/2/after"]


async def test_in_reply_to_threads_follow_ups_per_subscription(store: Store) -> None:
    mine = await store.subscriptions.add(sub("https://a.example/", ["siege"]), now=T0)
    await store_new(store, event("2007/07/3/clashes", "Siege"))
    others = await store.subscriptions.add(sub("https://b.example/"), now=T0)
    storm = event(
        "2007/07/10/storm",
        "Siege",
        related=[
            Related("2007/07/3/clashes", date(2007, 7, 3), "Clashes", (), RelatedKind.BACKGROUND)
        ],
    )
    # An older page that lists the storm among its follow-ups, stored in the same batch.
    talks = event(
        "2007/07/9/talks",
        "Siege",
        related=[
            Related("2007/07/10/storm", date(2007, 7, 10), "Storm", (), RelatedKind.FOLLOW_UP)
        ],
    )
    await store_new(store, storm, talks)
    by_key = {(d.subscription_id, d.event_id): d for d in await store.outbox.deliveries()}
    assert by_key[(mine.id, "2007/07/10/storm")].in_reply_to == (
        "2007/07/3/clashes",
        "2007/07/9/talks",
    )
    assert by_key[(mine.id, "2007/07/9/talks")].in_reply_to == ()
    assert by_key[(others.id, "2007/07/10/storm")].in_reply_to == ("2007/07/9/talks",)


async def test_claims_are_leased_and_finished(store: Store) -> None:
    s = await store.subscriptions.add(sub(secret="whsec_k"), now=T0)
    await store_new(store, event("2020/01/1/a"), event("2020/01/2/b"))
    jobs = await store.outbox.claim_due(now=T0, limit=10, worker="w1", lease=LEASE)
    assert len(jobs) == 2 and jobs[0].subscription.secret == "whsec_k"
    assert jobs[0].event.id in {"2020/01/1/a", "2020/01/2/b"}
    # Claimed: nobody else gets them until the lease runs out.
    assert await store.outbox.claim_due(now=T0, limit=10, worker="w2", lease=LEASE) == []
    done, retry = jobs
    await store.outbox.finish_attempt(
        done.delivery,
        AttemptReport(T0, 12, 200, None, DeliveryStatus.DONE),
    )
    await store.outbox.finish_attempt(
        retry.delivery,
        AttemptReport(T0, 30, 503, "HTTP 503", DeliveryStatus.PENDING, T0 + timedelta(seconds=5)),
    )
    assert await store.outbox.failing_since(s.id) == T0
    assert await store.outbox.claim_due(now=T0, limit=10, worker="w2", lease=LEASE) == []
    later = await store.outbox.claim_due(
        now=T0 + timedelta(seconds=5), limit=10, worker="w2", lease=LEASE
    )
    assert [j.delivery.id for j in later] == [retry.delivery.id]
    assert later[0].delivery.attempts == 1 and later[0].delivery.last_status == 503
    assert len(await store.outbox.attempts_of(retry.delivery.id)) == 1


async def test_a_dead_workers_claim_is_taken_over(store: Store) -> None:
    await store.subscriptions.add(sub(), now=T0)
    await store_new(store, event("2020/01/1/a"))
    assert await store.outbox.claim_due(now=T0, limit=1, worker="dead", lease=LEASE)
    taken = await store.outbox.claim_due(now=T0 + LEASE * 2, limit=1, worker="alive", lease=LEASE)
    assert len(taken) == 1


async def test_failed_deliveries_replay_with_the_same_id(store: Store) -> None:
    await store.subscriptions.add(sub(), now=T0)
    await store_new(store, event("2020/01/1/a"))
    (job,) = await store.outbox.claim_due(now=T0, limit=1, worker="w", lease=LEASE)
    await store.outbox.finish_attempt(
        job.delivery, AttemptReport(T0, 5, 500, "HTTP 500", DeliveryStatus.FAILED)
    )
    assert await store.outbox.count(DeliveryStatus.FAILED) == 1
    assert [r.queued for r in await store.outbox.replay(now=T0)] == [True]
    (again,) = await store.outbox.claim_due(now=T0, limit=1, worker="w", lease=LEASE)
    assert again.delivery.id == job.delivery.id and again.delivery.attempts == 0


async def test_gone_disables_the_subscription_and_fails_its_queue(store: Store) -> None:
    s = await store.subscriptions.add(sub(), now=T0)
    await store_new(store, event("2020/01/1/a"), event("2020/01/2/b"))
    job, _other = await store.outbox.claim_due(now=T0, limit=1, worker="w", lease=LEASE) + [None]
    await store.outbox.finish_attempt(
        job.delivery,
        AttemptReport(
            T0, 5, 410, "HTTP 410", DeliveryStatus.FAILED, disable_subscription="HTTP 410 Gone"
        ),
    )
    stored = await store.subscriptions.get(s.id)
    assert stored is not None and not stored.active and stored.disabled_reason == "HTTP 410 Gone"
    assert await store.outbox.count(DeliveryStatus.PENDING) == 0
    assert await store_new(store, event("2020/01/3/c")) == 0


async def test_config_subscriptions_are_reconciled_by_url(store: Store) -> None:
    api = await store.subscriptions.add(sub("https://api.example/"), now=T0)
    await store.subscriptions.reconcile_config(
        [sub("https://a.example/"), sub("https://b.example/", ["flood"])], now=T0
    )
    counts = await store.subscriptions.reconcile_config(
        [sub("https://b.example/", ["quake"]), sub("https://c.example/")], now=T0
    )
    assert counts == (1, 1, 1)
    by_url = {s.url: s for s in await store.subscriptions.all()}
    assert set(by_url) == {api.url, "https://b.example/", "https://c.example/"}
    assert by_url["https://b.example/"].topics == ("quake",)


async def test_first_sync_alerts_only_recent_events_then_everything(
    store: Store, tmp_path: Path
) -> None:
    clock = Clock(datetime(2026, 11, 27, 12, tzinfo=UTC))
    await store.subscriptions.add(sub(), now=clock())
    write_page(tmp_path, "2007/07/9", "old", "Old news")
    write_page(tmp_path, "2026/11/26", "yesterday", "Yesterday's news")
    ingestor = Ingestor(
        store, LocalArchiveSource(tmp_path, clock=clock), clock=clock, backfill_days=2
    )
    first = await ingestor.poll()
    assert (first.new, first.alerts) == (2, 1)
    write_page(tmp_path, "2001/09/11", "late", "An old page added later")
    second = await ingestor.poll()
    assert (second.new, second.alerts) == (1, 1)  # after the first sync, any new event


async def test_a_paused_subscription_keeps_its_queue(store: Store) -> None:
    s = await store.subscriptions.add(sub(), now=T0)
    await store_new(store, event("2020/01/1/a"))
    await store.subscriptions.update(replace(s, active=False))
    assert await store.outbox.claim_due(now=T0, limit=10, worker="w", lease=LEASE) == []
    await store.subscriptions.update(replace(s, active=True))
    assert len(await store.outbox.claim_due(now=T0, limit=10, worker="w", lease=LEASE)) == 1


# -- fair claiming --------------------------------------------------------------------


async def backlog_then_fresh(
    store: Store, *, busy: int, backlog: int, fresh: int = 1
) -> tuple[list[Subscription], Subscription]:
    """``busy`` subscriptions with ``backlog`` deliveries due each, one event a
    millisecond from T0; then a quiet subscription, and ``fresh`` more events, a
    second apart from T0 + 1 s, for every subscription."""
    busy_ones = [
        await store.subscriptions.add(sub(f"https://busy{n}.example/"), now=T0) for n in range(busy)
    ]
    for n in range(backlog):
        await store_new(store, event(f"2020/01/1/old{n}"), now=T0 + timedelta(milliseconds=n))
    quiet = await store.subscriptions.add(sub("https://quiet.example/"), now=T0)
    for n in range(fresh):
        await store_new(store, event(f"2020/01/2/fresh{n}"), now=T0 + timedelta(seconds=1 + n))
    return busy_ones, quiet


async def claim_in_turn(store: Store, claims: int, limit: int) -> list[list[tuple[str, str]]]:
    """``claims`` claims of ``limit`` each, a second apart, nothing finished: the
    (subscription, event) of each delivery each one took."""
    taken = []
    for n in range(claims):
        now = T0 + timedelta(seconds=10 + n)
        jobs = await store.outbox.claim_due(now=now, limit=limit, worker="w", lease=LEASE)
        taken.append([(j.subscription.id, j.delivery.event_id) for j in jobs])
    return taken


def each_ones_events(taken: list[list[tuple[str, str]]]) -> dict[str, list[str]]:
    order: dict[str, list[str]] = {}
    for claim in taken:
        for subscription_id, event_id in claim:
            order.setdefault(subscription_id, []).append(event_id)
    return order


async def test_a_backlog_does_not_hold_back_another_subscriptions_fresh_alert(
    store: Store,
) -> None:
    busy, quiet = await backlog_then_fresh(store, busy=3, backlog=5)
    # Two slots a claim for four subscriptions: the claims take turns. In the order
    # of their oldest delivery, the three with a backlog would come first every
    # time, and the quiet one's alert only once their 18 had all been taken.
    taken = await claim_in_turn(store, claims=10, limit=2)
    assert [len(claim) for claim in taken] == [2] * 9 + [1]
    assert all(len({s for s, _ in claim}) == len(claim) for claim in taken)
    assert {s for s, _ in taken[0]} < {b.id for b in busy}
    assert (quiet.id, "2020/01/2/fresh0") in taken[1]
    # Each subscription's own deliveries are still taken oldest first.
    for subscription in busy:
        assert each_ones_events(taken)[subscription.id] == [
            *(f"2020/01/1/old{n}" for n in range(5)),
            "2020/01/2/fresh0",
        ]


async def test_a_subscription_behind_what_a_claim_reads_takes_its_turn(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A claim reads the oldest due deliveries only (here 4): the quiet
    # subscription's are behind 3 x 6 of the others'.
    monkeypatch.setattr(outbox_module, "_READ_AHEAD", 4)
    busy, quiet = await backlog_then_fresh(store, busy=3, backlog=6, fresh=2)
    taken = await claim_in_turn(store, claims=14, limit=2)
    # The first claim left most of the backlog unread: the next looks through every
    # due delivery, finds the quiet one, and gives it its turn, with its oldest.
    assert quiet.id not in {s for s, _ in taken[0]}
    assert (quiet.id, "2020/01/2/fresh0") in taken[1]
    order = each_ones_events(taken)
    assert order[quiet.id] == ["2020/01/2/fresh0", "2020/01/2/fresh1"]
    fresh = ["2020/01/2/fresh0", "2020/01/2/fresh1"]
    for subscription in busy:
        assert order[subscription.id] == [*(f"2020/01/1/old{n}" for n in range(6)), *fresh]
    assert sum(len(claim) for claim in taken) == 3 * 8 + 2


# -- finishing under the claim, health per subscription ----------------------------


async def test_a_lapsed_claim_cannot_overwrite_a_later_result(store: Store) -> None:
    clock = Clock(T0)
    await store.subscriptions.add(sub(), now=clock())
    await store_new(store, event("2020/01/1/a"), now=clock())
    (slow,) = await store.outbox.claim_due(now=clock(), limit=1, worker="slow", lease=LEASE)
    clock.advance(LEASE.total_seconds() + 1)  # the slow worker's lease runs out...
    (fast,) = await store.outbox.claim_due(now=clock(), limit=1, worker="fast", lease=LEASE)
    assert fast.delivery.id == slow.delivery.id  # ...and another worker takes it over
    recorded = await store.outbox.finish_attempt(
        fast.delivery, AttemptReport(clock(), 5, 200, None, DeliveryStatus.DONE)
    )
    clock.advance(1)
    late = AttemptReport(
        clock(), 5, 503, "HTTP 503", DeliveryStatus.PENDING, clock() + timedelta(minutes=5)
    )
    # The slow worker's answer comes in: it changes nothing, and says so.
    lost = await store.outbox.finish_attempts([(slow.delivery, late)])
    stored = await store.outbox.delivery(slow.delivery.id)
    assert stored is not None
    assert (stored.status, stored.attempts, stored.last_status) == (DeliveryStatus.DONE, 1, 200)
    assert [a["status"] for a in await store.outbox.attempts_of(stored.id)] == [200]
    assert await store.outbox.failing_since(fast.subscription.id) is None
    assert (recorded, lost) == (True, {slow.delivery.id})
    assert await store.outbox.finish_attempt(slow.delivery, late) is False


async def test_a_lapsed_claim_nobody_took_over_still_counts(store: Store) -> None:
    clock = Clock(T0)
    await store.subscriptions.add(sub(), now=clock())
    await store_new(store, event("2020/01/1/a"), event("2020/01/2/b"), now=clock())
    slow, other = await store.outbox.claim_due(now=clock(), limit=2, worker="w", lease=LEASE)
    clock.advance(LEASE.total_seconds() + 1)
    # Nobody took the first over: its answer is the latest there is. The other was
    # given back meanwhile: its claim is gone.
    await store.outbox.release(other.delivery.id)
    lost = await store.outbox.finish_attempts(
        [
            (slow.delivery, AttemptReport(clock(), 5, 200, None, DeliveryStatus.DONE)),
            (other.delivery, AttemptReport(clock(), 5, 200, None, DeliveryStatus.DONE)),
        ]
    )
    assert await store.outbox.count(DeliveryStatus.DONE) == 1
    assert await store.outbox.count(DeliveryStatus.PENDING) == 1
    assert lost == {other.delivery.id}


async def test_failing_since_is_each_subscriptions_own(store: Store) -> None:
    subs = {
        name: await store.subscriptions.add(sub(f"https://{name}.example/"), now=T0)
        for name in ("early", "late", "mended")
    }
    await store_new(store, event("2020/01/1/a"), event("2020/01/2/b"))
    jobs = await store.outbox.claim_due(now=T0, limit=10, worker="w", lease=LEASE)
    by_sub: dict[str, list] = {}
    for job in jobs:
        by_sub.setdefault(job.subscription.id, []).append(job)

    def at(seconds: int, outcome: DeliveryStatus = DeliveryStatus.PENDING) -> AttemptReport:
        when = T0 + timedelta(seconds=seconds)
        if outcome is DeliveryStatus.DONE:
            return AttemptReport(when, 5, 200, None, outcome)
        return AttemptReport(when, 5, 503, "HTTP 503", outcome, when + timedelta(minutes=1))

    early, late, mended = (by_sub[subs[name].id] for name in ("early", "late", "mended"))
    # One batch, in the order the answers came.
    assert not await store.outbox.finish_attempts(
        [
            (early[0].delivery, at(1)),
            (mended[0].delivery, at(2)),
            (late[0].delivery, at(9)),
            (early[1].delivery, at(3)),
            (mended[1].delivery, at(4, DeliveryStatus.DONE)),
            (late[1].delivery, at(7)),
        ]
    )
    assert await store.outbox.failing_since(subs["early"].id) == T0 + timedelta(seconds=1)
    assert await store.outbox.failing_since(subs["late"].id) == T0 + timedelta(seconds=7)
    assert await store.outbox.failing_since(subs["mended"].id) is None


async def test_switching_or_changing_a_removed_subscription_is_not_found(store: Store) -> None:
    added = await store.subscriptions.add(sub(), now=T0)
    off = await store.subscriptions.set_active(added.id, False, reason="paused")
    assert (off.active, off.disabled_reason) == (False, "paused")
    # Switched off again, it keeps the reason it was switched off with.
    again = await store.subscriptions.set_active(added.id, False, reason="paused again")
    assert again.disabled_reason == "paused"
    assert await store.subscriptions.set_active(added.id, True) == replace(added, active=True)
    assert await store.subscriptions.remove(added.id, now=T0)
    with pytest.raises(NotFoundError) as gone:
        await store.subscriptions.set_active(added.id, True)
    assert (gone.value.kind, gone.value.key) == ("subscription", added.id)
    with pytest.raises(NotFoundError):
        await store.subscriptions.update(replace(added, topics=("flood",)))
