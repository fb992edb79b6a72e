"""The durable delivery outbox: queueing alerts, claiming, finishing, replaying
and listing deliveries.

Who gets which alert is decided by :func:`feedbot.alerts.plan_alerts` (pure); this
module loads its inputs and records the answer. :func:`queue_alerts` runs inside
the transaction that stores the events, so an event is never stored without its
alerts queued. The deliverer then claims due deliveries under a lease (``FOR
UPDATE SKIP LOCKED`` on PostgreSQL, so replicas share the queue), and reports each
attempt back through :meth:`Outbox.finish_attempt`. The subscriptions themselves
are :mod:`feedbot.store.subscriptions`'.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Select,
    and_,
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from feedbot.alerts import PlannedDelivery, changes_of, plan_alerts
from feedbot.alerts import delivery_id as delivery_id  # re-exported: store.delivery_id
from feedbot.digest import DigestSchedule
from feedbot.model import (
    DIGEST_MAX_EVENTS,
    OPERATOR_ORIGIN,
    AlertKind,
    DeliveryStatus,
    Digest,
    DigestItem,
    Event,
    EventRecord,
    Notice,
    NoticeKind,
    Subscription,
    event_key,
)
from feedbot.store._db import Database, PlainSql, chunks
from feedbot.store.schema import (
    UTCDateTime,
    attempts,
    deliveries,
    digest_items,
    event_links,
    events,
    subscriptions,
)
from feedbot.store.subscriptions import fail_pending, subscription_of


@dataclass(frozen=True, slots=True)
class Delivery:
    """One queued alert, as listings and the deliverer see it."""

    id: str
    subscription_id: str
    event_id: str
    matched_topics: tuple[str, ...]
    in_reply_to: tuple[str, ...]
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    # The claim it was read under, if any (worker, end of lease): an attempt is
    # recorded only while its delivery is still under that claim.
    claimed_by: str | None = None
    claim_expires: datetime | None = None
    kind: AlertKind = AlertKind.CREATED  # its webhook type is event.<kind>
    seq: int = 0  # the n-th alert of its kind about its event (0: created)
    previous_title: str | None = None  # of an update: the title before it


@dataclass(frozen=True, slots=True)
class DeliveryJob:
    """A claimed delivery with everything needed to send it."""

    delivery: Delivery
    subscription: Subscription
    event: Event | None  # None for a digest or a notice
    subscription_failing_since: datetime | None = None  # its first failure since a success
    # When the store last changed the event (its feed entry's ``updated``); the
    # time its alert was queued for an event no longer stored.
    event_updated: datetime | None = None
    # A digest's events (its ``feed_url`` is left to who knows the base URL), or
    # an operator notice.
    digest: Digest | None = None
    notice: Notice | None = None


# Asked, in claim order, whether a due delivery of (subscription id, its URL) may
# be claimed now; the deliverer answers from what it has in flight.
Admit = Callable[[str, str], bool]


@dataclass(frozen=True, slots=True)
class Claim:
    """What one claim took, and when to look again."""

    jobs: tuple[DeliveryJob, ...]
    # ``limit`` was reached (or a replica was claiming some of those chosen): more
    # may be claimable now.
    more: bool = False
    # When the next retry is due, if ``more`` is False; None: none is waiting.
    next_due: datetime | None = None


@dataclass(frozen=True, slots=True)
class AttemptReport:
    """What one attempt came to, as the deliverer decided it."""

    attempted_at: datetime
    latency_ms: int
    status: int | None  # HTTP status; None when no answer came
    error: str | None
    outcome: DeliveryStatus  # DONE, PENDING (retry at next_attempt_at) or FAILED
    next_attempt_at: datetime | None = None
    disable_subscription: str | None = None  # a reason, to disable it (410, disable_after)


class ReplayOutcome(StrEnum):
    """What a replay did with one delivery."""

    QUEUED = "queued"
    ALREADY_PENDING = "already pending"
    ALREADY_DELIVERED = "already delivered"
    SUBSCRIPTION_DISABLED = "subscription disabled"
    SUBSCRIPTION_REMOVED = "subscription removed"
    NO_SUCH_DELIVERY = "no such delivery"


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """The answer of :meth:`Outbox.replay` for one delivery."""

    delivery_id: str
    outcome: ReplayOutcome
    subscription_id: str | None = None
    # Why the subscription is off, when it is (a pending delivery waits for it too).
    subscription_disabled: str | None = None
    next_attempt_at: datetime | None = None  # of a delivery already pending

    @property
    def queued(self) -> bool:
        return self.outcome is ReplayOutcome.QUEUED


def _replay_result(row: Any) -> ReplayResult:
    """What a replay does with the delivery of ``row`` (a delivery joined to its
    subscription, if there still is one)."""
    status = DeliveryStatus(row.status)
    removed = row.subscription_found is None
    disabled = None if removed or row.active else (row.disabled_reason or "disabled")
    if status is DeliveryStatus.DONE:
        outcome = ReplayOutcome.ALREADY_DELIVERED
    elif status is DeliveryStatus.PENDING:
        outcome = ReplayOutcome.ALREADY_PENDING
    elif removed:
        outcome = ReplayOutcome.SUBSCRIPTION_REMOVED
    elif disabled is not None:
        outcome = ReplayOutcome.SUBSCRIPTION_DISABLED
    else:
        outcome = ReplayOutcome.QUEUED
    return ReplayResult(
        row.id,
        outcome,
        row.subscription_id,
        disabled,
        row.next_attempt_at if status is DeliveryStatus.PENDING else None,
    )


async def queue_alerts(
    db: Database,
    connection: AsyncConnection,
    new: Sequence[EventRecord],
    *,
    now: datetime,
    updated: Sequence[tuple[EventRecord, str]] = (),
    deleted: Sequence[Event | EventRecord] = (),
) -> int:
    """Queue the alerts of one batch, inside the transaction that stores it:
    ``event.created`` for the ``new`` events, ``event.updated`` for the events of
    ``updated`` (each with the title it had before), ``event.deleted`` for the
    ``deleted`` ones (as last stored), to every active subscription that wants
    that kind and matches the event. :func:`feedbot.alerts.plan_alerts` decides
    who gets what; this loads its inputs and writes its answer. Returns how many
    deliveries were queued."""
    if not (new or updated or deleted):
        return 0
    # A WebSub subscription whose lease ended gets nothing, swept away or not yet.
    leased = or_(subscriptions.c.lease_expires.is_(None), subscriptions.c.lease_expires > now)
    rows = (
        await connection.execute(
            select(subscriptions).where(
                subscriptions.c.active, leased, subscriptions.c.origin != OPERATOR_ORIGIN
            )
        )
    ).mappings()
    active = [subscription_of(row) for row in rows]
    wanted = {kind for subscription in active for kind in subscription.events}
    changes = changes_of(
        [record.to_event() for record in new] if AlertKind.CREATED in wanted else [],
        [(record.to_event(), previous) for record, previous in updated]
        if AlertKind.UPDATED in wanted
        else [],
        [_as_event(gone) for gone in deleted] if AlertKind.DELETED in wanted else [],
    )
    if not changes:
        return 0
    created = [c.event.id for c in changes if c.kind is AlertKind.CREATED]
    links = await _links_to(connection, created)
    asked = {c.event.id for c in changes}
    for change in changes:
        if change.kind is AlertKind.CREATED:
            asked.update(r.id for r in change.event.related)
            asked.update(links.get(change.event.id, ()))
    alerted = await _alerted(connection, asked, [s.id for s in active])
    planned = plan_alerts(changes, active, links, alerted)
    # A digest subscription's events wait in their period, not in the queue.
    periods = {s.id: schedule for s in active if (schedule := _schedule_of(s)) is not None}
    if periods:
        planned = await _hold_for_digests(connection, planned, periods, now)
    bodies = {
        **{(AlertKind.UPDATED, r.id): r.body for r, _previous in updated},
        **{(AlertKind.DELETED, g.id): _body(g) for g in deleted},
    }
    plain: list[tuple[Any, ...]] = []  # created alerts, as _QUEUE_NAMES
    kinds: list[dict[str, Any]] = []  # updates and removals
    as_json = _JsonLists()  # an event's subscribers mostly share its lists
    for delivery in planned:
        matched_topics = as_json(delivery.matched_topics)
        in_reply_to = as_json(delivery.in_reply_to)
        if delivery.kind is AlertKind.CREATED:
            # kind, seq, previous_title and event_body: the columns' defaults. (A
            # first ingest queues thousands; each column costs on every row.)
            plain.append(
                (
                    delivery.id,
                    delivery.subscription_id,
                    delivery.event_id,
                    matched_topics,
                    in_reply_to,
                    DeliveryStatus.PENDING.value,
                    0,
                    now,
                    now,
                )
            )
            continue
        kinds.append(
            {
                "id": delivery.id,
                "subscription_id": delivery.subscription_id,
                "event_id": delivery.event_id,
                "matched_topics": matched_topics,
                "in_reply_to": in_reply_to,
                "status": DeliveryStatus.PENDING.value,
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
                "kind": delivery.kind.value,
                "seq": delivery.sequence,
                "previous_title": delivery.previous_title,
                "event_body": bodies[(delivery.kind, delivery.event_id)],
            }
        )
    await db.bulk_insert(connection, deliveries, _QUEUE_NAMES, plain)
    if kinds:
        await connection.execute(deliveries.insert(), kinds)
    return len(planned)


# A created alert's columns, inserted through the driver's executemany
# (Database.bulk_insert): SQLAlchemy's executemany converts every parameter of
# every row in Python, which cost a first ingest more than SQLite's own work.
_QUEUE_NAMES = (
    "id",
    "subscription_id",
    "event_id",
    "matched_topics",
    "in_reply_to",
    "status",
    "attempts",
    "created_at",
    "next_attempt_at",
)


class _JsonLists:
    """The JSON text of tuples of strings, each distinct one encoded once."""

    def __init__(self) -> None:
        self._done: dict[tuple[str, ...], str] = {}

    def __call__(self, items: tuple[str, ...]) -> str:
        text = self._done.get(items)
        if text is None:
            text = self._done[items] = json.dumps(list(items))
        return text


def _schedule_of(subscription: Subscription) -> DigestSchedule | None:
    return DigestSchedule.parse(subscription.digest, subscription.digest_at, subscription.timezone)


async def _hold_for_digests(
    connection: AsyncConnection,
    planned: list[PlannedDelivery],
    periods: Mapping[str, DigestSchedule],
    now: datetime,
) -> list[PlannedDelivery]:
    """Write the new events that ``planned`` brings to digest subscriptions into
    their open period (``digest_items``), and return the rest: what is queued
    one by one. A digest lists new events only (build_subscription refuses other
    kinds with a digest)."""
    held = [p for p in planned if p.subscription_id in periods]
    if held:
        rows = [
            {
                "subscription_id": p.subscription_id,
                "event_id": p.event_id,
                "period_end": periods[p.subscription_id].period_containing(now)[1],
                "matched_topics": json.dumps(list(p.matched_topics)),
                "queued_at": now,
            }
            for p in held
            if p.kind is AlertKind.CREATED
        ]
        if rows:
            await connection.execute(digest_items.insert(), rows)
    return [p for p in planned if p.subscription_id not in periods]


def _as_event(gone: Event | EventRecord) -> Event:
    return gone if isinstance(gone, Event) else gone.to_event()


def _body(gone: Event | EventRecord) -> str:
    return gone.canonical_json() if isinstance(gone, Event) else gone.body


async def _links_to(connection: AsyncConnection, event_ids: Sequence[str]) -> dict[str, set[str]]:
    """For each of ``event_ids``, the ids of stored events whose related lists name it."""
    found: dict[str, set[str]] = {}
    by_key = {event_key(event_id): event_id for event_id in event_ids}
    for keys in chunks(by_key):
        rows = await connection.execute(
            select(event_links.c.target_key, events.c.id)
            .join(events, events.c.key == event_links.c.event_key)
            .where(event_links.c.target_key.in_(keys))
        )
        for target, source in rows:
            found.setdefault(by_key[target], set()).add(source)
    return found


async def _alerted(
    connection: AsyncConnection, event_ids: Iterable[str], subscription_ids: list[str]
) -> dict[tuple[str, str], dict[AlertKind, int]]:
    """What each of ``subscription_ids`` was alerted about ``event_ids`` before
    (the ``already_alerted`` of :func:`~feedbot.alerts.plan_alerts`): a created
    alert counts 1 (its sequence is 0), an update or removal its highest sequence."""
    alerted: dict[tuple[str, str], dict[AlertKind, int]] = {}
    for chunk in chunks(event_ids):
        rows = await connection.execute(
            select(
                deliveries.c.subscription_id,
                deliveries.c.event_id,
                deliveries.c.kind,
                deliveries.c.seq,
            ).where(
                deliveries.c.event_id.in_(chunk),
                deliveries.c.subscription_id.in_(subscription_ids),
            )
        )
        for subscription_id, event_id, kind, seq in rows:
            per_kind = alerted.setdefault((subscription_id, event_id), {})
            alert = _KINDS[kind]
            per_kind[alert] = max(per_kind.get(alert, 0), seq or 1)
        # An event in a digest (sent or open) was announced to its subscription.
        held = await connection.execute(
            select(digest_items.c.subscription_id, digest_items.c.event_id).where(
                digest_items.c.event_id.in_(chunk),
                digest_items.c.subscription_id.in_(subscription_ids),
            )
        )
        for subscription_id, event_id in held:
            alerted.setdefault((subscription_id, event_id), {})[AlertKind.CREATED] = 1
    return alerted


_KINDS = {kind.value: kind for kind in AlertKind}


class Outbox:
    """The deliveries. Reached as ``store.outbox``."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._turns = _Turns()

    # -- deliveries ----------------------------------------------------------------

    async def claim_due(
        self, *, now: datetime, limit: int, worker: str, lease: timedelta
    ) -> list[DeliveryJob]:
        """Claim up to ``limit`` due deliveries for ``lease`` (see :meth:`claim`)."""
        return list((await self.claim(now=now, limit=limit, worker=worker, lease=lease)).jobs)

    async def claim(
        self,
        *,
        now: datetime,
        limit: int,
        worker: str,
        lease: timedelta,
        per_subscription: int | None = None,
        room: Mapping[str, int] | None = None,
        admit: Admit | None = None,
    ) -> Claim:
        """Claim up to ``limit`` due deliveries for ``lease``; a claim whose lease ran
        out (its worker died) is claimable again.

        A subscription takes at most ``room[id]`` of them (absent: ``per_subscription``;
        None: no cap), and only those ``admit(subscription_id, url)`` accepts; the
        rest stay unclaimed, untouched. Due deliveries are read oldest first, and
        taken round the subscriptions: each one's oldest, then each one's second,
        and so on. A subscription that can take no more is left out of the rest
        of the reading, so a long queue of one never hides another's alerts. When
        the due deliveries ran out before ``limit`` was reached, the answer says
        when the next one becomes due.

        The round starts with the subscription whose turn it is, not with the
        oldest delivery (see :class:`_Turns`): when ``limit`` is reached before
        every subscription with a due delivery has had one, the next claims go on
        with the others, and a subscription whose deliveries lie behind what was
        read (behind another's backlog) is found by looking there now and then,
        and takes its turn with its oldest. So one subscription's backlog cannot
        hold back another's fresh alert; each subscription's own deliveries are
        still taken oldest first.
        """
        if limit <= 0:
            return Claim(())
        cap = limit if per_subscription is None else per_subscription
        left = {sid: min(n, cap) for sid, n in (room or {}).items()}
        taken: list[str] = []
        served: set[str] = set()
        turns = self._turns
        async with self._db.transaction() as connection:
            # SQLite has no SKIP LOCKED: its write transaction holds the write lock
            # from its start, so another process's claim waits instead of choosing
            # the same rows.
            read = max(limit, _READ_AHEAD)
            lost = False
            unread = False  # a reading stopped at ``read`` rows: some due ones were not read
            passed_over = False  # ``limit`` was reached with some read ones left
            while len(taken) < limit and not lost:
                full = [sid for sid, n in left.items() if n <= 0]
                rows = list(await connection.execute(_due(now, full, read)))
                queues = _queues(rows)
                if len(rows) == read:
                    unread = True
                    if turns.passed_over and turns.time_to_look(now):
                        started = time.perf_counter()
                        await turns.look(connection, now, rows[-1].next_attempt_at, queues)
                        turns.looked(now, time.perf_counter() - started)
                order = turns.order(queues, {sid for sid, n in left.items() if n <= 0})
                for sid in order[: limit - len(taken)]:
                    if sid not in queues:  # found by the last look, beyond this reading
                        since = turns.beyond.pop(sid)
                        first = (await connection.execute(_first_due(now, sid, since))).first()
                        if first is not None:
                            queues[sid] = [first]
                chosen: list[str] = []
                for row in _round_robin(queues, order):
                    if len(taken) + len(chosen) == limit:
                        passed_over = True
                        break
                    if left.get(row.subscription_id, cap) <= 0:
                        continue
                    if admit is None or admit(row.subscription_id, row.url):
                        chosen.append(row.id)
                        served.add(row.subscription_id)
                        left[row.subscription_id] = left.get(row.subscription_id, cap) - 1
                    else:
                        left[row.subscription_id] = 0
                if chosen and self._db.backend != "sqlite":
                    # Locked only now, not as they are read (most are only read):
                    # one being claimed by another replica is left to it.
                    locked = await _lock(connection, chosen, now)
                    lost = len(locked) < len(chosen)
                    chosen = [i for i in chosen if i in locked]
                if chosen:
                    # Claimed at once: the next reading passes over them.
                    await connection.execute(
                        update(deliveries)
                        .where(deliveries.c.id.in_(chosen))
                        .values(claimed_by=worker, claim_expires=now + lease)
                    )
                    taken.extend(chosen)
                if len(rows) < read:
                    break  # every due delivery was read
            turns.claimed(served, passed_over=passed_over and unread)
            more = len(taken) == limit or lost
            next_due = None if more else await _next_due(connection, now)
            jobs = await self._jobs(connection, taken) if taken else []
        return Claim(tuple(jobs), more, next_due)

    async def _jobs(self, connection: AsyncConnection, ids: list[str]) -> list[DeliveryJob]:
        """The jobs of the deliveries ``ids``, in that order."""
        # Read after the claim, not with UPDATE ... RETURNING: with Python 3.11's
        # sqlite3 its statement can keep the write lock past the commit
        # (tests/test_deliver.py caught it).
        by_delivery: dict[str, Delivery] = {}
        kept: dict[str, str] = {}  # delivery id -> the event as its alert saw it
        for row in await connection.execute(
            select(*_DELIVERY_COLUMNS, deliveries.c.event_body).where(deliveries.c.id.in_(ids))
        ):
            by_delivery[row.id] = _delivery(row)
            if row.event_body is not None:
                kept[row.id] = row.event_body
        claimed = [by_delivery[i] for i in ids]
        unkept = {d.event_id for d in claimed if d.id not in kept and d.kind not in _SUMMARIES}
        bodies: dict[str, str] = {}
        stamps: dict[str, datetime] = {}
        for event_id, body, updated in await connection.execute(
            select(events.c.id, events.c.body, events.c.updated).where(
                events.c.id.in_({d.event_id for d in claimed})
            )
        ):
            stamps[event_id] = updated
            if event_id in unkept:
                bodies[event_id] = body
        subscribers = (
            await connection.execute(
                select(subscriptions).where(
                    subscriptions.c.id.in_({d.subscription_id for d in claimed})
                )
            )
        ).mappings()
        by_id = {row["id"]: (subscription_of(row), row["failing_since"]) for row in subscribers}
        decoded = {event_id: Event.from_canonical_json(body) for event_id, body in bodies.items()}
        jobs = []
        for delivery in claimed:
            subscription, failing_since = by_id[delivery.subscription_id]
            body = kept.get(delivery.id)
            if delivery.kind is AlertKind.DIGEST:
                digest = _digest_of(json.loads(body or "{}"))
                jobs.append(DeliveryJob(delivery, subscription, None, failing_since, digest=digest))
                continue
            if delivery.kind is AlertKind.NOTICE:
                notice = _notice_of(json.loads(body or "{}"), delivery.created_at)
                jobs.append(DeliveryJob(delivery, subscription, None, failing_since, notice=notice))
                continue
            event = Event.from_canonical_json(body) if body else decoded[delivery.event_id]
            updated = stamps.get(delivery.event_id, delivery.created_at)
            jobs.append(DeliveryJob(delivery, subscription, event, failing_since, updated))
        return jobs

    async def finish_attempt(self, delivery: Delivery, report: AttemptReport) -> bool:
        """Record one attempt and its outcome, and release the claim. False when the
        claim was lost (see :meth:`finish_attempts`): nothing was recorded."""
        return not await self.finish_attempts([(delivery, report)])

    async def finish_attempts(
        self, results: Sequence[tuple[Delivery, AttemptReport]]
    ) -> frozenset[str]:
        """Record many attempts in one transaction (the deliverer batches them: one
        commit per attempt would cap throughput at the disk's flush rate).

        An attempt counts only while its delivery is still under the claim it was
        read with (``Delivery.claimed_by`` and ``claim_expires``). A worker whose
        lease ran out may find its delivery claimed by another, finished, failed by
        a removal or replayed: its late answer would overwrite a later one, so it
        changes nothing. (A lapsed claim that nobody took over still counts: its
        answer is the latest there is.) Returns the ids of the deliveries whose
        claim was lost, nothing recorded for them.
        """
        if not results:
            return frozenset()
        async with self._db.transaction() as connection:
            # Judge and write as one (on SQLite under the write lock from the start).
            held, failing = await _claims_held(connection, [delivery for delivery, _ in results])
            lost = frozenset(d.id for d, _ in results if d.id not in held)
            results = [(d, r) for d, r in results if d.id in held]
            await self._db.bulk_insert(
                connection,
                attempts,
                ("delivery_id", "subscription_id", "attempted_at", "status", "latency_ms", "error"),
                [
                    (
                        delivery.id,
                        delivery.subscription_id,
                        report.attempted_at,
                        report.status,
                        report.latency_ms,
                        report.error,
                    )
                    for delivery, report in results
                ],
            )
            await self._db.execute_many(
                connection,
                _FINISH,
                (
                    "delivery",
                    "outcome",
                    "attempted_at",
                    "http_status",
                    "error",
                    "done_at",
                    "next_at",
                ),
                [
                    (
                        delivery.id,
                        report.outcome.value,
                        report.attempted_at,
                        report.status,
                        report.error,
                        report.attempted_at if report.outcome is DeliveryStatus.DONE else None,
                        report.next_attempt_at,
                    )
                    for delivery, report in results
                ],
            )
            await _record_health(connection, results, failing)
            await _queue_notices(connection, results)
            for delivery, report in results:
                if report.disable_subscription:
                    await connection.execute(
                        update(subscriptions)
                        .where(subscriptions.c.id == delivery.subscription_id)
                        .values(active=False, disabled_reason=report.disable_subscription)
                    )
                    await fail_pending(
                        connection,
                        delivery.subscription_id,
                        f"subscription disabled: {report.disable_subscription}",
                        report.attempted_at,
                    )
        return lost

    async def close_digests(self, now: datetime) -> int:
        """Queue the digest of every period that is over at ``now``: one delivery
        per subscription and period, listing its events that are still stored
        (newest first, at most :data:`DIGEST_MAX_EVENTS`, with the count of all),
        and nothing for a period whose events are all gone. Returns how many
        digests were queued.

        Each period's events become its digest in one transaction, under the
        lock of their rows: run by several replicas at once, or again after a
        crash, each event goes out in one digest, once. (An event a slower
        replica files into a period already closed makes a second, small digest
        of that period, with a webhook-id of its own.)"""
        queued = 0
        async with self._db.transaction() as connection:
            due = await connection.execute(
                select(digest_items.c.subscription_id, digest_items.c.period_end)
                .join(subscriptions, subscriptions.c.id == digest_items.c.subscription_id)
                .where(digest_items.c.delivery_id.is_(None), digest_items.c.period_end <= now)
                .group_by(digest_items.c.subscription_id, digest_items.c.period_end)
                .order_by(digest_items.c.period_end)
            )
            for subscription_id, period_end in list(due):
                queued += await _close_period(connection, subscription_id, period_end, now)
        return queued

    async def release_all_claims(self) -> int:
        """Drop every claim: for a single-process store at start-up, where any
        claim left is a dead process's, so its deliveries need not wait out the lease."""
        async with self._db.transaction() as connection:
            result = await connection.execute(
                update(deliveries)
                .where(deliveries.c.claimed_by.is_not(None))
                .values(claimed_by=None, claim_expires=None)
            )
            return int(result.rowcount)

    async def release(self, delivery_id: str) -> None:
        """Give a claimed delivery back unattempted."""
        async with self._db.transaction() as connection:
            await connection.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id)
                .values(claimed_by=None, claim_expires=None)
            )

    async def failing_since(self, subscription_id: str) -> datetime | None:
        async with self._db.read() as connection:
            return (
                await connection.execute(
                    select(subscriptions.c.failing_since).where(
                        subscriptions.c.id == subscription_id
                    )
                )
            ).scalar_one_or_none()

    async def deliveries(
        self, *, status: DeliveryStatus | None = None, limit: int = 100
    ) -> list[Delivery]:
        query = (
            select(*_DELIVERY_COLUMNS)
            .order_by(deliveries.c.created_at.desc(), deliveries.c.id)
            .limit(limit)
        )
        if status is not None:
            query = query.where(deliveries.c.status == status.value)
        async with self._db.read() as connection:
            return [_delivery(row) for row in await connection.execute(query)]

    async def delivery(self, delivery_id: str) -> Delivery | None:
        """One delivery by id (its webhook-id), or None."""
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    select(*_DELIVERY_COLUMNS).where(deliveries.c.id == delivery_id)
                )
            ).first()
        return None if row is None else _delivery(row)

    async def count(self, status: DeliveryStatus) -> int:
        async with self._db.read() as connection:
            return int(
                (
                    await connection.execute(
                        select(func.count()).where(deliveries.c.status == status.value)
                    )
                ).scalar_one()
            )

    async def replay(
        self, ids: Iterable[str] | None = None, *, now: datetime
    ) -> list[ReplayResult]:
        """Put failed deliveries (those of ``ids``, or every failed one) back in the
        queue, due now, with a fresh retry schedule; their webhook-id stays the same.

        Answers for each delivery asked for, in the order asked (oldest first for
        every failed one): queued, or why not. A failed delivery of a disabled or
        removed subscription is left failed: queued, it would wait for ever. Every
        failed one leaves out those of removed subscriptions, which nothing can
        send any more (asked for by id, they are answered)."""
        wanted = None if ids is None else list(dict.fromkeys(ids))
        judged = (
            select(
                deliveries.c.id,
                deliveries.c.status,
                deliveries.c.subscription_id,
                deliveries.c.next_attempt_at,
                subscriptions.c.id.label("subscription_found"),
                subscriptions.c.active,
                subscriptions.c.disabled_reason,
            )
            .select_from(
                deliveries.outerjoin(
                    subscriptions, subscriptions.c.id == deliveries.c.subscription_id
                )
            )
            .order_by(deliveries.c.created_at, deliveries.c.id)
            .with_for_update(of=deliveries)
        )
        async with self._db.transaction() as connection:
            # Judge and update under the write lock, as claim does, so that no claim
            # or attempt changes a delivery in between (on SQLite held from the start).
            rows: list[Any] = []
            if wanted is None:
                failed = deliveries.c.status == DeliveryStatus.FAILED.value
                still_subscribed = subscriptions.c.id.is_not(None)
                rows.extend(await connection.execute(judged.where(failed, still_subscribed)))
            else:
                for chunk in chunks(wanted):
                    rows.extend(await connection.execute(judged.where(deliveries.c.id.in_(chunk))))
            found = {row.id: _replay_result(row) for row in rows}
            queued = [r.delivery_id for r in found.values() if r.queued]
            for chunk in chunks(queued):
                await connection.execute(
                    update(deliveries)
                    .where(deliveries.c.id.in_(chunk))
                    .values(
                        status=DeliveryStatus.PENDING.value,
                        attempts=0,
                        next_attempt_at=now,
                        claimed_by=None,
                        claim_expires=None,
                    )
                )
        if wanted is None:
            return list(found.values())
        return [
            found.get(wanted_id) or ReplayResult(wanted_id, ReplayOutcome.NO_SUCH_DELIVERY)
            for wanted_id in wanted
        ]

    async def attempts_of(self, delivery_id: str) -> list[dict[str, Any]]:
        async with self._db.read() as connection:
            rows = await connection.execute(
                select(attempts)
                .where(attempts.c.delivery_id == delivery_id)
                .order_by(attempts.c.id)
            )
            return [dict(row) for row in rows.mappings()]


# Deliveries that are not about one event: their body is all in ``event_body``.
_SUMMARIES = (AlertKind.DIGEST, AlertKind.NOTICE)


async def _close_period(
    connection: AsyncConnection, subscription_id: str, period_end: datetime, now: datetime
) -> int:
    """Turn the open items of one subscription's period into its digest delivery
    (see :meth:`Outbox.close_digests`); 1 if one was queued."""
    open_items = (
        select(digest_items.c.event_id, digest_items.c.matched_topics, digest_items.c.queued_at)
        .where(
            digest_items.c.subscription_id == subscription_id,
            digest_items.c.period_end == period_end,
            digest_items.c.delivery_id.is_(None),
        )
        .with_for_update()
    )
    items = {row.event_id: row for row in await connection.execute(open_items)}
    if not items:
        return 0  # another replica closed it meanwhile
    subscription = subscription_of(
        (
            await connection.execute(
                select(subscriptions).where(subscriptions.c.id == subscription_id)
            )
        )
        .mappings()
        .one()
    )
    stored: list[tuple[Event, datetime]] = []
    for chunk in chunks(list(items)):
        rows = await connection.execute(
            select(events.c.body, events.c.first_seen).where(
                events.c.id.in_(chunk), events.c.deleted_at.is_(None)
            )
        )
        stored.extend((Event.from_canonical_json(body), seen) for body, seen in rows)
    stored.sort(key=lambda pair: (pair[0].date, pair[1], pair[0].id), reverse=True)
    schedule = _schedule_of(subscription)
    start = (
        schedule.period_containing(period_end - _INSTANT)[0]
        if schedule is not None
        else min(row.queued_at for row in items.values())
    )
    marker = f"digest:{period_end.isoformat()}"
    delivery = ""
    if stored:
        # Usually 0; more only for a late event of a period already closed.
        seq = (
            await connection.execute(
                select(func.count()).where(
                    deliveries.c.subscription_id == subscription_id,
                    deliveries.c.event_id == marker,
                )
            )
        ).scalar_one()
        delivery = delivery_id(subscription_id, marker, AlertKind.DIGEST, seq)
        snapshot = {
            "start": start.isoformat(),
            "end": period_end.isoformat(),
            "total": len(stored),
            "items": [
                {
                    "event": event.to_json(),
                    "matched_topics": json.loads(items[event.id].matched_topics),
                }
                for event, _seen in stored[:DIGEST_MAX_EVENTS]
            ],
        }
        await connection.execute(
            deliveries.insert().values(
                id=delivery,
                subscription_id=subscription_id,
                event_id=marker,
                matched_topics="[]",
                in_reply_to="[]",
                status=DeliveryStatus.PENDING.value,
                attempts=0,
                created_at=now,
                next_attempt_at=now,
                kind=AlertKind.DIGEST.value,
                seq=seq,
                event_body=json.dumps(snapshot, ensure_ascii=False),
            )
        )
    # An empty period (its events all removed since) is closed with nothing sent.
    for chunk in chunks(list(items)):
        await connection.execute(
            update(digest_items)
            .where(
                digest_items.c.subscription_id == subscription_id,
                digest_items.c.event_id.in_(chunk),
            )
            .values(delivery_id=delivery)
        )
    return 1 if stored else 0


_INSTANT = timedelta(microseconds=1)


def _digest_of(snapshot: dict[str, Any]) -> Digest:
    return Digest(
        period_start=datetime.fromisoformat(snapshot["start"]),
        period_end=datetime.fromisoformat(snapshot["end"]),
        items=tuple(
            DigestItem(Event.from_json(item["event"]), tuple(item["matched_topics"]))
            for item in snapshot["items"]
        ),
        total=snapshot["total"],
        feed_url="",
    )


def _notice_of(body: dict[str, Any], created_at: datetime) -> Notice:
    return Notice.from_json(body["type"], created_at, body["data"])


async def _queue_notices(
    connection: AsyncConnection, results: Sequence[tuple[Delivery, AttemptReport]]
) -> None:
    """Queue the operator's notices of what ``results`` did: a subscription
    disabled, a delivery in the failed list (not each of those a disabling
    fails). None about the operator's own deliveries: they would feed themselves."""
    ends = [(d, r) for d, r in results if r.outcome is DeliveryStatus.FAILED]
    if not ends:
        return
    operator = (
        await connection.execute(
            select(subscriptions.c.id).where(
                subscriptions.c.origin == OPERATOR_ORIGIN, subscriptions.c.active
            )
        )
    ).scalar_one_or_none()
    if operator is None:
        return
    about_ids = {d.subscription_id for d, _ in ends} - {operator}
    if not about_ids:
        return
    about = {
        row["id"]: subscription_of(row)
        for row in (
            await connection.execute(select(subscriptions).where(subscriptions.c.id.in_(about_ids)))
        ).mappings()
    }
    rows = []
    for delivery, report in ends:
        subscription = about.get(delivery.subscription_id)
        if subscription is None:
            continue
        notice = Notice(
            kind=NoticeKind.SUBSCRIPTION_DISABLED
            if report.disable_subscription
            else NoticeKind.DELIVERY_EXHAUSTED,
            occurred_at=report.attempted_at,
            subscription_id=subscription.id,
            subscription_url=subscription.redacted().url,
            subscription_format=subscription.format,
            reason=report.disable_subscription
            or f"no success after {delivery.attempts + 1} attempts; it is in the failed list",
            delivery_id=None if report.disable_subscription else delivery.id,
            event_id=None if report.disable_subscription else delivery.event_id,
            attempts=None if report.disable_subscription else delivery.attempts + 1,
            last_status=report.status,
            last_error=report.error,
        )
        # A subscription whose receiver is down fails delivery after delivery:
        # the operator hears of the first of each hour, not of every one.
        moment = report.attempted_at.astimezone(UTC)
        when = moment.isoformat() if report.disable_subscription else f"{moment:%Y-%m-%dT%H}"
        marker = f"notice:{notice.kind.value}:{subscription.id}:{when}"
        rows.append(
            {
                "id": delivery_id(operator, marker, AlertKind.NOTICE, 0),
                "subscription_id": operator,
                "event_id": marker,
                "matched_topics": "[]",
                "in_reply_to": "[]",
                "status": DeliveryStatus.PENDING.value,
                "attempts": 0,
                "created_at": report.attempted_at,
                "next_attempt_at": report.attempted_at,
                "kind": AlertKind.NOTICE.value,
                "seq": 0,
                "event_body": json.dumps(
                    {"type": notice.kind.value, "data": notice.to_json()}, ensure_ascii=False
                ),
            }
        )
    unique = {row["id"]: row for row in reversed(rows)}  # the first of each id
    queued = set(
        (
            await connection.execute(select(deliveries.c.id).where(deliveries.c.id.in_(unique)))
        ).scalars()
    )
    fresh = [row for key, row in unique.items() if key not in queued]
    if fresh:
        await connection.execute(deliveries.insert(), fresh)


async def _claims_held(
    connection: AsyncConnection, claimed: Sequence[Delivery]
) -> tuple[set[str], set[str]]:
    """The ids of ``claimed`` whose delivery is still under the claim it was read
    with; on PostgreSQL their rows stay locked until the transaction ends, so no
    claim takes them over in between. And of their subscriptions, those whose
    ``failing_since`` is set: the only ones a success has to clear.

    The claims are compared in SQL, the deliveries of each claim (worker and end
    of lease) together, and the status here: with the status in the query, SQLite
    reads through every pending delivery by ``ix_deliveries_due`` instead of
    looking the ids up, holding the write lock all that while."""
    held: set[str] = set()
    failing: set[str] = set()
    for chunk in chunks([d for d in claimed if d.claimed_by]):
        by_claim: dict[tuple[str | None, datetime | None], list[str]] = {}
        for delivery in chunk:
            by_claim.setdefault((delivery.claimed_by, delivery.claim_expires), []).append(
                delivery.id
            )
        ((worker, expires), ids), *others = by_claim.items()
        if not others and expires is not None:  # the usual batch: one claim's deliveries
            rows = await connection.execute(
                _HELD, {"ids": ids, "worker": worker, "expires": expires}
            )
        else:
            under_claims = [
                and_(
                    deliveries.c.id.in_(ids),
                    deliveries.c.claimed_by == worker,
                    deliveries.c.claim_expires == expires,
                )
                for (worker, expires), ids in by_claim.items()
            ]
            rows = await connection.execute(
                _held_columns().where(
                    deliveries.c.id.in_([d.id for d in chunk]), or_(*under_claims)
                )
            )
        for delivery_id_, subscription_id, status, is_failing in rows:
            if status == DeliveryStatus.PENDING.value:
                held.add(delivery_id_)
                if is_failing:
                    failing.add(subscription_id)
    return held, failing


def _held_columns() -> Select[Any]:
    """A delivery's id, subscription and status, and whether that subscription is
    failing; the rows locked on PostgreSQL."""
    return (
        select(
            deliveries.c.id,
            deliveries.c.subscription_id,
            deliveries.c.status,
            subscriptions.c.failing_since.is_not(None),
        )
        .select_from(
            deliveries.outerjoin(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
        )
        .with_for_update(of=deliveries)
    )


# The deliveries of ``ids`` still under the claim of ``worker`` that ends at
# ``expires``; made once, its ids one expanding parameter.
_HELD = _held_columns().where(
    deliveries.c.id.in_(bindparam("ids", expanding=True)),
    deliveries.c.claimed_by == bindparam("worker"),
    deliveries.c.claim_expires == bindparam("expires", type_=UTCDateTime()),
)


async def _record_health(
    connection: AsyncConnection,
    results: Sequence[tuple[Delivery, AttemptReport]],
    failing_now: set[str],
) -> None:
    """Set each subscription's ``failing_since`` to its own first failure since its
    last success (its last answer a failure), or clear it (a success) where
    ``failing_now`` says it is set.

    Touch a subscription row only when its health changes: every success writing
    it would make all deliveries of a subscription, across replicas, queue on that
    one row's lock."""
    since: dict[str, datetime | None] = {}  # None: its latest attempt succeeded
    for delivery, report in results:
        key = delivery.subscription_id
        if report.outcome is DeliveryStatus.DONE:
            since[key] = None
        else:
            earlier = since.get(key)
            since[key] = (
                report.attempted_at if earlier is None else min(earlier, report.attempted_at)
            )
    healthy = [key for key, moment in since.items() if moment is None and key in failing_now]
    if healthy:
        await connection.execute(
            update(subscriptions)
            .where(subscriptions.c.id.in_(healthy), subscriptions.c.failing_since.is_not(None))
            .values(failing_since=None)
        )
    failing = [
        {"key": key, "since": moment}
        for key, moment in since.items()
        if moment and key not in failing_now
    ]
    if failing:
        await connection.execute(_FAILING_SINCE, failing)


_ACTIVE = select(subscriptions.c.id).where(subscriptions.c.active)
# Due deliveries read at least per round of a claim: however few slots are free,
# they go round the subscriptions among this many of the oldest (and those found
# behind them by the last look, see _Turns).
_READ_AHEAD = 256
# A claim that had to leave some of what it read for lack of slots, and did not
# read every due delivery, makes the next claim look behind what it reads for the
# subscriptions there: at most this often (seconds), and as that look takes longer
# (a longer backlog behind), less often, for it to cost at most a share of the time.
_LOOK_EVERY = 0.025
_LOOK_SHARE = 0.125
# Subscriptions whose last turn is remembered (the oldest turns are forgotten past it).
_TURNS_KEPT = 100_000


class _Turns:
    """Whose turn it is, among the subscriptions with due deliveries, across the
    claims of one process: fair claiming.

    A claim goes round the subscriptions it read, starting with those served
    longest ago (never served: first), then the oldest delivery first; a
    subscription that took a delivery goes to the back. Taken in the order of
    their oldest delivery instead, a backlog would win every claim that fills its
    ``limit`` (the deliverer's free slots): its subscriptions would always come
    before one whose first alert is newer than all of the backlog, however many
    claims went by.

    A claim reads the oldest due deliveries only (``_READ_AHEAD``, from the due
    index); a subscription whose deliveries are all behind those (behind others'
    backlogs) is not in what it read. When a claim had to leave some of what it
    read and did not read every due delivery, the next one looks behind it
    (:meth:`look`), and the subscriptions found there take their turns with their
    oldest, one each, until the next look. Every due delivery older than the last
    one read was read (the index's order), so behind it is: the others due at that
    same instant (one batch queued them all: which subscriptions they are is kept
    while that instant stays the edge, so a burst of 10,000 is gone through once),
    and those due later (usually few: new alerts; when many, the look is made
    less often). Each process keeps its own turns: replicas on PostgreSQL take
    theirs among what each can lock.
    """

    def __init__(self) -> None:
        self.claims = 0  # claims that took something
        self.served: dict[str, int] = {}  # subscription -> the claim that last took one of its
        self.beyond: dict[str, datetime] = {}  # found by the last look: from when it is due
        self.passed_over = False  # the last claim left some due deliveries for lack of slots
        self._edge: tuple[datetime, frozenset[str]] | None = None
        self._looked_at: datetime | None = None
        self._look_seconds = 0.0

    def time_to_look(self, now: datetime) -> bool:
        if self._looked_at is None or now < self._looked_at:
            return True
        wait = max(_LOOK_EVERY, self._look_seconds / _LOOK_SHARE)
        return (now - self._looked_at).total_seconds() >= wait

    def looked(self, now: datetime, seconds: float) -> None:
        self._looked_at = now
        self._look_seconds = seconds

    async def look(
        self,
        connection: AsyncConnection,
        now: datetime,
        edge: datetime,
        read: Mapping[str, Sequence[Any]],
    ) -> None:
        """Find the subscriptions with deliveries due behind ``edge`` (the time of
        the last delivery read) that are not in ``read``, and from when each is due."""
        # Pending ones, claimed or not: a claim that lapses leaves its delivery
        # where it was, and it is to be taken before the later ones.
        pending = (
            deliveries.c.status == DeliveryStatus.PENDING.value,
            deliveries.c.subscription_id.in_(_ACTIVE),
        )
        if self._edge is None or self._edge[0] != edge:
            # No delivery is queued later at an instant gone by: kept while it is the edge.
            at_edge = await connection.execute(
                select(deliveries.c.subscription_id)
                .distinct()
                .where(*pending, deliveries.c.next_attempt_at == edge)
            )
            self._edge = (edge, frozenset(at_edge.scalars()))
        found = dict.fromkeys(self._edge[1], edge)
        later = await connection.execute(
            select(deliveries.c.subscription_id, func.min(deliveries.c.next_attempt_at))
            .where(
                *pending, deliveries.c.next_attempt_at > edge, deliveries.c.next_attempt_at <= now
            )
            .group_by(deliveries.c.subscription_id)
        )
        for subscription_id, oldest in later:
            found.setdefault(subscription_id, oldest)
        self.beyond = {sid: since for sid, since in found.items() if sid not in read}

    def order(self, queues: Mapping[str, Sequence[Any]], full: set[str]) -> list[str]:
        """The subscriptions of ``queues`` (their due deliveries read, oldest first)
        and those found beyond them, but for ``full``, in turn."""
        oldest = {sid: rows[0].next_attempt_at for sid, rows in queues.items()}
        for sid in list(self.beyond):
            if sid in oldest:
                del self.beyond[sid]  # read this time: its oldest is in ``queues``
            elif sid not in full:
                oldest[sid] = self.beyond[sid]
        return sorted(oldest, key=lambda sid: (self.served.get(sid, 0), oldest[sid]))

    def claimed(self, served: set[str], *, passed_over: bool) -> None:
        self.passed_over = passed_over
        if not served:
            return
        self.claims += 1
        for sid in served:
            self.served[sid] = self.claims
        if len(self.served) > _TURNS_KEPT:
            latest = sorted(self.served.items(), key=lambda item: item[1])
            self.served = dict(latest[len(latest) // 2 :])


def _claimable(now: datetime) -> list[ColumnElement[bool]]:
    """A delivery due at ``now`` and claimed by nobody (or by a worker whose lease ran out)."""
    return [
        deliveries.c.status == DeliveryStatus.PENDING.value,
        deliveries.c.next_attempt_at <= now,
        or_(deliveries.c.claim_expires.is_(None), deliveries.c.claim_expires < now),
    ]


_CANDIDATE = (
    deliveries.c.id,
    deliveries.c.subscription_id,
    subscriptions.c.url,
    deliveries.c.next_attempt_at,
)


def _due(now: datetime, full: list[str], limit: int) -> Select[Any]:
    """The oldest ``limit`` deliveries claimable at ``now``, but for those of
    subscriptions ``full`` and of paused ones (a paused subscription keeps its
    queue; it resumes when reactivated)."""
    due = (
        select(*_CANDIDATE)
        .join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
        .where(*_claimable(now), subscriptions.c.active)
        .order_by(deliveries.c.next_attempt_at)  # what the index gives: no sort
        .limit(limit)
    )
    return due.where(deliveries.c.subscription_id.not_in(full)) if full else due


async def _lock(connection: AsyncConnection, ids: list[str], now: datetime) -> set[str]:
    """Of ``ids``, those still claimable, locked until the transaction ends; those
    another transaction holds are passed over (PostgreSQL)."""
    locked: set[str] = set()
    for chunk in chunks(ids):
        locked.update(
            (
                await connection.execute(
                    select(deliveries.c.id)
                    .where(deliveries.c.id.in_(chunk), *_claimable(now))
                    .with_for_update(skip_locked=True)
                )
            ).scalars()
        )
    return locked


def _first_due(now: datetime, subscription_id: str, since: datetime) -> Select[Any]:
    """The oldest delivery of ``subscription_id`` claimable at ``now``, looked for
    from ``since`` on (its oldest when last looked: the due index is read from
    there, not from the oldest delivery of all)."""
    return (
        select(*_CANDIDATE)
        .join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
        .where(
            *_claimable(now),
            subscriptions.c.active,
            deliveries.c.subscription_id == subscription_id,
            deliveries.c.next_attempt_at >= since,
        )
        .order_by(deliveries.c.next_attempt_at)
        .limit(1)
    )


def _queues(rows: Sequence[Any]) -> dict[str, list[Any]]:
    """``rows`` (oldest first) by subscription, each one's oldest first."""
    queues: dict[str, list[Any]] = {}
    for row in rows:
        queues.setdefault(row.subscription_id, []).append(row)
    return queues


def _round_robin(queues: Mapping[str, Sequence[Any]], order: Sequence[str]) -> list[Any]:
    """The rows of ``queues`` taken round the subscriptions in ``order``: each
    one's first, then each one's second, and so on."""
    return [
        row
        for round_ in itertools.zip_longest(*(queues[sid] for sid in order if sid in queues))
        for row in round_
        if row is not None
    ]


async def _next_due(connection: AsyncConnection, now: datetime) -> datetime | None:
    """When the next retry is due (None: none is waiting). Another worker's claim
    running out is not looked for (no index would find it cheaply): the
    deliverer's idle_poll finds it."""
    due: datetime | None = (
        await connection.execute(
            select(func.min(deliveries.c.next_attempt_at)).where(
                deliveries.c.status == DeliveryStatus.PENDING.value,
                deliveries.c.subscription_id.in_(_ACTIVE),
                deliveries.c.next_attempt_at > now,
            )
        )
    ).scalar_one_or_none()
    return due


# What one attempt does to its delivery: the outcome, the attempt's answer, the
# next try when there is one, and the claim released.
_FINISH = PlainSql(
    "UPDATE deliveries SET status = {outcome}, attempts = attempts + 1,"
    " last_attempt_at = {attempted_at}, last_status = {http_status}, last_error = {error},"
    " done_at = {done_at}, next_attempt_at = COALESCE({next_at}, next_attempt_at),"
    " claimed_by = NULL, claim_expires = NULL"
    " WHERE id = {delivery}",
    types={name: UTCDateTime() for name in ("attempted_at", "done_at", "next_at")},
)

# A subscription's first failure since its last success; a streak already
# running keeps its start.
_FAILING_SINCE = (
    update(subscriptions)
    .where(subscriptions.c.id == bindparam("key"), subscriptions.c.failing_since.is_(None))
    .values(failing_since=bindparam("since", type_=UTCDateTime()))
)

# The columns a Delivery is read from, in the order of its fields.
_DELIVERY_COLUMNS = [deliveries.c[f.name] for f in fields(Delivery)]


def _delivery(row: Sequence[Any]) -> Delivery:
    """A Delivery from a row that starts with ``_DELIVERY_COLUMNS`` (positional:
    the deliverer reads hundreds per claim)."""
    (
        id_,
        subscription_id,
        event_id,
        matched_topics,
        in_reply_to,
        status,
        attempts_made,
        created_at,
        next_attempt_at,
        last_attempt_at,
        last_status,
        last_error,
        claimed_by,
        claim_expires,
        kind,
        seq,
        previous_title,
    ) = row[: len(_DELIVERY_COLUMNS)]
    return Delivery(
        id=id_,
        subscription_id=subscription_id,
        event_id=event_id,
        matched_topics=tuple(json.loads(matched_topics)),
        in_reply_to=tuple(json.loads(in_reply_to)),
        status=DeliveryStatus(status),
        attempts=attempts_made,
        created_at=created_at,
        next_attempt_at=next_attempt_at,
        last_attempt_at=last_attempt_at,
        last_status=last_status,
        last_error=last_error,
        claimed_by=claimed_by,
        claim_expires=claim_expires,
        kind=AlertKind(kind),
        seq=seq,
        previous_title=previous_title,
    )
