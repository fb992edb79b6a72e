"""Subscriptions in the store: adding, changing, switching on and off, removing,
and making the config file's subscriptions the stored ones (:meth:`reconcile_config`).

The queue of their deliveries is :mod:`feedbot.store.outbox`'s; it reads
subscriptions through :func:`subscription_of`. What a subscription's end does to
its queue is here (:func:`fail_pending`): removing or disabling one fails its
pending deliveries in the same transaction.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import case, delete, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from feedbot.errors import ConfigError, FeedbotError, NotFoundError
from feedbot.model import (
    CONFIG_DISABLED,
    OPERATOR_ID,
    OPERATOR_ORIGIN,
    WEBSUB_FORMAT,
    WEBSUB_ORIGIN,
    AlertKind,
    DeliveryStatus,
    Subscription,
)
from feedbot.store._db import Database
from feedbot.store.schema import attempts, deliveries, digest_items, subscriptions


def new_subscription_id() -> str:
    return "sub_" + secrets.token_hex(8)


class Subscriptions:
    """The stored subscriptions. Reached as ``store.subscriptions`` (and, for the
    callers that know it, through ``store.outbox``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, subscription: Subscription, *, now: datetime) -> Subscription:
        """Store a new subscription; ConflictError when its id (or, for one of the
        config, its URL) is taken."""
        stored = _with_created(subscription, now)
        async with self._db.transaction() as connection:
            await connection.execute(subscriptions.insert().values(_subscription_row(stored)))
        return stored

    async def update(self, subscription: Subscription) -> Subscription:
        """Store every field of ``subscription`` but its creation time, and return
        it as stored; NotFoundError when it is not there (removed meanwhile)."""
        async with self._db.transaction() as connection:
            return await _update_subscription(connection, subscription)

    async def set_active(
        self, subscription_id: str, active: bool, *, reason: str | None = None
    ) -> Subscription:
        """Switch a subscription on, its disabled reason and failure streak cleared,
        or off with ``reason`` (one it was switched off with already stays). Either
        way its queue is kept, and nothing else of it is written: a change made
        meanwhile by another connection stays. NotFoundError when it is not there."""
        values: dict[str, Any] = (
            {"active": True, "disabled_reason": None, "failing_since": None}
            if active
            else {
                "active": False,
                # Both read the row as it was before this update.
                "disabled_reason": case(
                    (subscriptions.c.active, literal(reason)),
                    else_=func.coalesce(subscriptions.c.disabled_reason, literal(reason)),
                ),
            }
        )
        async with self._db.transaction() as connection:
            await connection.execute(
                update(subscriptions).where(subscriptions.c.id == subscription_id).values(values)
            )
            return await _stored(connection, subscription_id)

    async def remove(self, subscription_id: str, *, now: datetime) -> bool:
        """Delete a subscription; its pending deliveries fail with a reason."""
        async with self._db.transaction() as connection:
            return await self._remove(connection, subscription_id, now)

    async def _remove(
        self, connection: AsyncConnection, subscription_id: str, now: datetime
    ) -> bool:
        result = await connection.execute(
            delete(subscriptions).where(subscriptions.c.id == subscription_id)
        )
        await fail_pending(connection, subscription_id, "subscription removed", now)
        await connection.execute(
            delete(digest_items).where(digest_items.c.subscription_id == subscription_id)
        )
        return bool(result.rowcount)

    async def get(self, subscription_id: str) -> Subscription | None:
        async with self._db.read() as connection:
            row = (
                (
                    await connection.execute(
                        select(subscriptions).where(subscriptions.c.id == subscription_id)
                    )
                )
                .mappings()
                .first()
            )
        return None if row is None else subscription_of(row)

    # -- readers subscribed through the WebSub hub ----------------------------------

    async def websub_subscribe(
        self,
        *,
        callback: str,
        feed: str,
        topics: Sequence[str],
        words: Sequence[str],
        secret: str | None,
        lease_expires: datetime,
        now: datetime,
        max_per_host: int,
    ) -> Subscription:
        """Store a verified WebSub subscription of ``callback`` to ``feed``, or
        renew the one there (its lease and secret, switched on again). Raises
        :class:`WebSubLimitReached` when the callback's host holds ``max_per_host``
        subscriptions already."""
        async with self._db.transaction() as connection:
            found = (
                (
                    await connection.execute(
                        select(subscriptions).where(
                            subscriptions.c.origin == WEBSUB_ORIGIN,
                            subscriptions.c.url == callback,
                            subscriptions.c.feed == feed,
                        )
                    )
                )
                .mappings()
                .first()
            )
            if found is not None:
                renewed = replace(
                    subscription_of(found),
                    secret=secret,
                    lease_expires=lease_expires,
                    active=True,
                    disabled_reason=None,
                )
                return await _update_subscription(connection, renewed)
            await _check_room(connection, callback, max_per_host)
            created = _with_created(
                Subscription(
                    id="",
                    url=callback,
                    topics=tuple(topics),
                    format=WEBSUB_FORMAT,
                    secret=secret,
                    origin=WEBSUB_ORIGIN,
                    events=(AlertKind.CREATED, AlertKind.UPDATED),
                    feed=feed,
                    words=tuple(words),
                    lease_expires=lease_expires,
                ),
                now,
            )
            await connection.execute(subscriptions.insert().values(_subscription_row(created)))
            return created

    async def websub_unsubscribe(self, callback: str, feed: str, *, now: datetime) -> bool:
        """End the WebSub subscription of ``callback`` to ``feed``, if there is one."""
        async with self._db.transaction() as connection:
            ids = (
                await connection.execute(
                    select(subscriptions.c.id).where(
                        subscriptions.c.origin == WEBSUB_ORIGIN,
                        subscriptions.c.url == callback,
                        subscriptions.c.feed == feed,
                    )
                )
            ).scalars()
            removed = False
            for subscription_id in list(ids):
                removed |= await self._remove(connection, subscription_id, now)
            return removed

    async def expire_websub(self, now: datetime) -> int:
        """Remove the WebSub subscriptions whose lease ended; their pending pushes
        fail ("lease expired"). Returns how many."""
        async with self._db.transaction() as connection:
            ids = list(
                (
                    await connection.execute(
                        select(subscriptions.c.id).where(
                            subscriptions.c.origin == WEBSUB_ORIGIN,
                            subscriptions.c.lease_expires <= now,
                        )
                    )
                ).scalars()
            )
            for subscription_id in ids:
                await connection.execute(
                    delete(subscriptions).where(subscriptions.c.id == subscription_id)
                )
                await fail_pending(connection, subscription_id, "lease expired", now)
            return len(ids)

    async def websub_room(self, callback: str, max_per_host: int) -> None:
        """Raise :class:`WebSubLimitReached` when the host of ``callback`` holds
        ``max_per_host`` WebSub subscriptions."""
        async with self._db.read() as connection:
            await _check_room(connection, callback, max_per_host)

    async def websub_counts(self, now: datetime) -> dict[str, int]:
        """WebSub subscriptions by state (:data:`WEBSUB_STATES`)."""
        # Two columns of the subscriptions alone (no attempts): /metrics asks on
        # every scrape.
        query = select(subscriptions.c.active, subscriptions.c.lease_expires).where(
            subscriptions.c.origin == WEBSUB_ORIGIN
        )
        counts = dict.fromkeys(WEBSUB_STATES, 0)
        async with self._db.read() as connection:
            for active, lease_expires in await connection.execute(query):
                counts[websub_state(bool(active), lease_expires, now)] += 1
        return counts

    async def websub_list(self) -> list[WebSubListing]:
        """Every WebSub subscription with its last delivery attempt, oldest first."""
        last = (
            select(
                attempts.c.subscription_id,
                func.max(attempts.c.id).label("last_id"),
            )
            .group_by(attempts.c.subscription_id)
            .subquery()
        )
        query = (
            select(subscriptions, attempts.c.attempted_at, attempts.c.status.label("answer"))
            .outerjoin(last, last.c.subscription_id == subscriptions.c.id)
            .outerjoin(attempts, attempts.c.id == last.c.last_id)
            .where(subscriptions.c.origin == WEBSUB_ORIGIN)
            .order_by(subscriptions.c.created_at, subscriptions.c.id)
        )
        async with self._db.read() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [
            WebSubListing(subscription_of(row), row["attempted_at"], row["answer"]) for row in rows
        ]

    async def all(self) -> list[Subscription]:
        """Every subscription, oldest first (but the operator's: :meth:`operator`)."""
        async with self._db.read() as connection:
            rows = await connection.execute(
                select(subscriptions)
                .where(subscriptions.c.origin != OPERATOR_ORIGIN)
                .order_by(subscriptions.c.created_at, subscriptions.c.id)
            )
            return [subscription_of(row) for row in rows.mappings()]

    async def operator(self) -> Subscription | None:
        """Where the operator's notices go (``notify.operator``), if anywhere."""
        return await self.get(OPERATOR_ID)

    async def reconcile_operator(self, wanted: Subscription | None, *, now: datetime) -> None:
        """Make ``wanted`` (the config's ``notify.operator``, built as a subscription
        that matches no event) the stored operator subscription, or remove it.
        A changed URL or format is a new one: switched on, its failures forgotten;
        an unchanged one keeps its state (a 410 disabled it until enabled)."""
        async with self._db.transaction() as connection:
            await self._lock_config_subscriptions(connection)
            row = (
                (
                    await connection.execute(
                        select(subscriptions).where(subscriptions.c.id == OPERATOR_ID)
                    )
                )
                .mappings()
                .first()
            )
            have = None if row is None else subscription_of(row)
            if wanted is None:
                if have is not None:
                    await self._remove(connection, OPERATOR_ID, now)
                return
            want = replace(wanted, id=OPERATOR_ID, origin=OPERATOR_ORIGIN, topics=())
            if have is None:
                stored = _with_created(want, now)
                await connection.execute(subscriptions.insert().values(_subscription_row(stored)))
            elif (have.url, have.format, have.secret) != (want.url, want.format, want.secret):
                await _update_subscription(connection, replace(want, created_at=have.created_at))

    async def reconcile_config(
        self, wanted: Sequence[Subscription], *, now: datetime
    ) -> tuple[int, int, int]:
        """Make the config file's subscriptions the stored ones of origin "config",
        matched by URL: add the new, update the changed, remove the dropped.
        Returns (added, updated, removed).

        One transaction, begun by taking a lock that every reconcile takes: replicas
        starting together reconcile one after the other, and each after the first
        finds the rows stored and changes nothing. (Without it, each read "no row
        for this URL" and added one: three stores made two or three rows for one
        URL in 10 rounds of 10.) ``config_url_key`` holds the rule besides.
        """
        _refuse_repeated_urls(wanted)
        added = updated = removed = 0
        async with self._db.transaction() as connection:
            await self._lock_config_subscriptions(connection)
            rows = await connection.execute(
                select(subscriptions).where(subscriptions.c.origin == "config")
            )
            existing = {row["url"]: subscription_of(row) for row in rows.mappings()}
            for want in wanted:
                have = existing.pop(want.url, None)
                if have is None:
                    stored = _with_created(
                        replace(want, id=want.id or new_subscription_id(), origin="config"), now
                    )
                    await connection.execute(
                        subscriptions.insert().values(_subscription_row(stored))
                    )
                    added += 1
                elif (
                    have.topics,
                    have.format,
                    have.secret,
                    have.keywords,
                    have.exclude,
                    have.events,
                    have.digest,
                    have.digest_at,
                    have.timezone,
                ) != (
                    want.topics,
                    want.format,
                    want.secret,
                    want.keywords,
                    want.exclude,
                    want.events,
                    want.digest,
                    want.digest_at,
                    want.timezone,
                ):
                    await _update_subscription(
                        connection,
                        replace(
                            have,
                            topics=want.topics,
                            format=want.format,
                            secret=want.secret,
                            keywords=want.keywords,
                            exclude=want.exclude,
                            events=want.events,
                            digest=want.digest,
                            digest_at=want.digest_at,
                            timezone=want.timezone,
                            shown_url=want.shown_url,
                        ),
                    )
                    updated += 1
                if (
                    have is not None
                    and have.active != want.active
                    and (not want.active or have.disabled_reason == CONFIG_DISABLED)
                ):
                    # ``active`` in the file switches it; it does not switch on one
                    # that a 410 or its failures switched off.
                    await connection.execute(
                        update(subscriptions)
                        .where(subscriptions.c.id == have.id)
                        .values(
                            active=want.active,
                            disabled_reason=want.disabled_reason,
                            failing_since=None,
                        )
                    )
                    updated += 1
            for gone in existing.values():
                await self._remove(connection, gone.id, now)
                removed += 1
        return added, updated, removed

    async def _lock_config_subscriptions(self, connection: AsyncConnection) -> None:
        """Wait for, then hold until the transaction ends, the lock of reconciling
        (on SQLite a write transaction holds the file's write lock from its start)."""
        if self._db.backend == "postgresql":
            await connection.execute(select(func.pg_advisory_xact_lock(_RECONCILE_LOCK)))


async def fail_pending(
    connection: AsyncConnection, subscription_id: str, reason: str, now: datetime
) -> None:
    """Fail the pending deliveries of a subscription that is removed or disabled,
    with ``reason``: nothing will send them (a replay can, once it is on again)."""
    await connection.execute(
        update(deliveries)
        .where(
            deliveries.c.subscription_id == subscription_id,
            deliveries.c.status == DeliveryStatus.PENDING.value,
        )
        .values(
            status=DeliveryStatus.FAILED.value,
            last_error=reason,
            claimed_by=None,
            claim_expires=None,
            last_attempt_at=now,
        )
    )


WEBSUB_STATES = ("active", "expired", "disabled")


@dataclass(frozen=True, slots=True)
class WebSubListing:
    """A reader's WebSub subscription, and how its last push attempt went."""

    subscription: Subscription
    last_attempt_at: datetime | None
    last_status: int | None  # the HTTP status; None when no answer came or none was tried

    def state(self, now: datetime) -> str:
        """``active``, ``expired`` (its lease ended; the sweep will remove it) or
        ``disabled`` (a 410, or failures past ``notify.disable_after``)."""
        return websub_state(self.subscription.active, self.subscription.lease_expires, now)


def websub_state(active: bool, lease_expires: datetime | None, now: datetime) -> str:
    """One of :data:`WEBSUB_STATES` (see :meth:`WebSubListing.state`)."""
    if not active:
        return "disabled"
    return "expired" if lease_expires is not None and lease_expires <= now else "active"


class WebSubLimitReached(FeedbotError):
    """A callback host holds as many WebSub subscriptions as it may."""

    def __init__(self, host: str, limit: int) -> None:
        super().__init__(f"{host} holds {limit} subscriptions, the most one callback host may")
        self.host = host
        self.limit = limit

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.host, self.limit))


async def _check_room(connection: AsyncConnection, callback: str, max_per_host: int) -> None:
    """Raise :class:`WebSubLimitReached` when the host of ``callback`` holds
    ``max_per_host`` WebSub subscriptions. Hosts are compared in Python: a URL's
    host is not a column, and the hub's subscriptions are few."""
    host = _host(callback)
    callbacks = await connection.execute(
        select(subscriptions.c.url).where(subscriptions.c.origin == WEBSUB_ORIGIN)
    )
    if sum(_host(url) == host for url in callbacks.scalars()) >= max_per_host:
        raise WebSubLimitReached(host, max_per_host)


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _with_created(subscription: Subscription, now: datetime) -> Subscription:
    return replace(
        subscription,
        id=subscription.id or new_subscription_id(),
        created_at=subscription.created_at or now,
    )


# The advisory lock that reconciling the config's subscriptions holds (PostgreSQL;
# the schema migration holds 7261001).
_RECONCILE_LOCK = 7261002


def _refuse_repeated_urls(wanted: Sequence[Subscription]) -> None:
    """A config subscription is known by its URL: two entries with one URL would
    be one row, whose fields flip between them."""
    first: dict[str, int] = {}
    for index, subscription in enumerate(wanted):
        earlier = first.setdefault(subscription.url, index)
        if earlier != index:
            raise ConfigError(
                f"subscriptions[{index}].url: {subscription.url!r} is the URL of "
                f"subscriptions[{earlier}] too; a config subscription is known by its URL, "
                "so give each URL once (several topics go in one entry's topics)"
            )


async def _stored(connection: AsyncConnection, subscription_id: str) -> Subscription:
    row = (
        (
            await connection.execute(
                select(subscriptions).where(subscriptions.c.id == subscription_id)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFoundError("subscription", subscription_id)
    return subscription_of(row)


async def _update_subscription(
    connection: AsyncConnection, subscription: Subscription
) -> Subscription:
    row = _subscription_row(subscription)
    del row["created_at"]
    if subscription.active:
        row["disabled_reason"] = None
        row["failing_since"] = None
    await connection.execute(
        update(subscriptions).where(subscriptions.c.id == subscription.id).values(row)
    )
    # Read back in the same transaction: a removal committed in between is a
    # NotFoundError here, not a row that vanished after "updated".
    return await _stored(connection, subscription.id)


def _subscription_row(subscription: Subscription) -> dict[str, Any]:
    return {
        "id": subscription.id,
        "url": subscription.url,
        "topics": json.dumps(list(subscription.topics)),
        "format": subscription.format,
        "secret": subscription.secret,
        "keywords": json.dumps(list(subscription.keywords)),
        "exclude": json.dumps(list(subscription.exclude)),
        "active": subscription.active,
        "origin": subscription.origin,
        "created_at": subscription.created_at,
        "disabled_reason": subscription.disabled_reason,
        "events": json.dumps([kind.value for kind in subscription.events]),
        "feed": subscription.feed,
        "words": json.dumps(list(subscription.words)),
        "lease_expires": subscription.lease_expires,
        "digest": subscription.digest,
        "digest_at": subscription.digest_at,
        "timezone": subscription.timezone,
        "shown_url": subscription.shown_url,
    }


def subscription_of(row: Any) -> Subscription:
    """A Subscription from a row mapping of the subscriptions table."""
    return Subscription(
        id=row["id"],
        url=row["url"],
        topics=tuple(json.loads(row["topics"])),
        format=row["format"],
        secret=row["secret"],
        keywords=tuple(json.loads(row["keywords"])),
        exclude=tuple(json.loads(row["exclude"])),
        active=bool(row["active"]),
        origin=row["origin"],
        created_at=row["created_at"],
        disabled_reason=row["disabled_reason"],
        events=tuple(AlertKind(kind) for kind in json.loads(row["events"])),
        feed=row["feed"],
        words=tuple(json.loads(row["words"])),
        lease_expires=row["lease_expires"],
        digest=row["digest"],
        digest_at=row["digest_at"],
        timezone=row["timezone"],
        shown_url=row["shown_url"],
    )
