"""What lets several replicas share one PostgreSQL store: roles under a lease,
and change notifications between processes.

- :meth:`Replicas.hold` takes or renews a named role (the poller) for a lease;
  a holder that stops renewing, because it died or lost the database, loses
  the role when the lease runs out, and another replica takes it over. Times
  come from the database's clock, so replicas on skewed machines agree.
- :meth:`Replicas.publish` sends a change (topics whose feeds changed, alerts
  queued) with PostgreSQL ``NOTIFY`` inside the writing transaction, so it is
  delivered on commit or not at all; :meth:`Replicas.listen` hands changes from
  other replicas to a callback on one dedicated connection.

On SQLite, which serves one process, every role is held and nothing is sent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Interval, func, literal, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from feedbot.clock import EPOCH
from feedbot.store._db import Database
from feedbot.store.schema import leases

log = logging.getLogger(__name__)

CHANNEL = "feedbot_changes"
_MAX_PAYLOAD = 7000  # PostgreSQL's NOTIFY payload limit is 8000 bytes


@dataclass(frozen=True, slots=True)
class Change:
    topics: frozenset[str] = field(default_factory=frozenset)
    all_topics: bool = False  # too many to name: every feed may have changed
    alerts: int = 0

    def payload(self) -> str:
        text = json.dumps({"topics": sorted(self.topics), "alerts": self.alerts})
        if len(text) > _MAX_PAYLOAD:
            text = json.dumps({"all_topics": True, "alerts": self.alerts})
        return text

    @classmethod
    def parse(cls, payload: str) -> Change:
        data = json.loads(payload)
        return cls(
            topics=frozenset(data.get("topics", ())),
            all_topics=bool(data.get("all_topics")),
            alerts=int(data.get("alerts", 0)),
        )


class Replicas:
    """Reached as ``store.replicas``."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._listener: AsyncConnection | None = None

    @property
    def shared(self) -> bool:
        return self._db.backend == "postgresql"

    async def hold(self, role: str, holder: str, lease: timedelta) -> bool:
        """Take or renew ``role`` for ``holder``; whether ``holder`` now has it."""
        if not self.shared:
            return True
        now = func.now()
        expires = now + literal(lease, Interval())
        async with self._db.transaction() as connection:
            await self._db.insert_rows(
                connection,
                leases,
                [{"name": role, "holder": holder, "expires_at": EPOCH}],
                keys=["name"],
                on_conflict="ignore",
            )
            result = await connection.execute(
                update(leases)
                .where(
                    leases.c.name == role,
                    (leases.c.holder == holder) | (leases.c.expires_at < now),
                )
                .values(holder=holder, expires_at=expires)
            )
            return bool(result.rowcount)

    async def release(self, role: str, holder: str) -> None:
        """Give ``role`` up at once (a clean shutdown), so another replica need not
        wait out the lease."""
        if not self.shared:
            return
        async with self._db.transaction() as connection:
            await connection.execute(
                update(leases)
                .where(leases.c.name == role, leases.c.holder == holder)
                .values(expires_at=EPOCH)
            )

    async def holder(self, role: str) -> str | None:
        async with self._db.read() as connection:
            return (
                await connection.execute(
                    select(leases.c.holder).where(
                        leases.c.name == role, leases.c.expires_at > func.now()
                    )
                )
            ).scalar_one_or_none()

    async def publish(self, connection: AsyncConnection, change: Change) -> None:
        """Announce ``change`` to the other replicas when ``connection``'s
        transaction commits."""
        if self.shared and (change.topics or change.all_topics or change.alerts):
            await connection.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": CHANNEL, "payload": change.payload()},
            )

    async def listen(self, callback: Callable[[Change], None]) -> None:
        """Call ``callback`` with every change another replica publishes, until
        :meth:`close`. A no-op on SQLite."""
        if not self.shared or self._listener is not None:
            return
        connection = await self._db.engine.connect()
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection  # an asyncpg connection

        def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            try:
                callback(Change.parse(payload))
            except (ValueError, TypeError):
                log.warning("ignoring a malformed change notification: %.200s", payload)

        await driver.add_listener(CHANNEL, on_notify)
        self._listener = connection

    async def close(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.close()
