"""Health and metrics endpoints: ``/healthz``, ``/readyz`` and ``/metrics``.

``/healthz`` says the process is alive and does no I/O: a container
HEALTHCHECK or a liveness probe restarts the process only when it is wedged.

``/readyz`` says whether this instance is doing its job, in a few cheap queries
(bounded by :data:`READY_TIMEOUT`): the store answers, the last poll (from the
store, so every replica sees the poller's) did not fail, and one completed
within ``3 × archive.poll_interval`` (a process that just started gets that
long plus :data:`START_GRACE` for its first poll). The body is the same JSON on
200 and 503, with the outbox backlog and a ``reasons`` list, empty when ready.
The daemon may add reasons of its own (it is shutting down) through a
:data:`ReadinessProbe`.

``/metrics`` is the Prometheus exposition of the daemon's
:class:`~feedbot.metrics.Metrics`, with the outbox backlog read at scrape time;
a store that does not answer drops the backlog series rather than failing the
scrape.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import hdrs, web

from feedbot.errors import FeedbotError
from feedbot.metrics import CONTENT_TYPE, Metrics
from feedbot.model import DeliveryStatus
from feedbot.notify.formats import iso_utc
from feedbot.redact import redact
from feedbot.settings import Settings
from feedbot.store import PollRecord, Store

log = logging.getLogger(__name__)

ReadinessProbe = Callable[[], Sequence[str]]
"""Extra reasons this process is not ready (empty when it is), from the daemon."""

READY_TIMEOUT = 3.0  # seconds the store gets to answer /readyz or a scrape
START_GRACE = 60.0  # seconds added to the first poll's deadline after a start
STALE_POLLS = 3  # polls missed before the last one counts as too old
_NO_STORE: dict[str, str] = {hdrs.CACHE_CONTROL: "no-store"}


@dataclass(frozen=True, slots=True)
class Readiness:
    """What ``/readyz`` reports."""

    store_error: str | None
    last_poll: PollRecord | None
    backlog: dict[str, int] | None
    reasons: list[str]
    now: datetime

    @property
    def ready(self) -> bool:
        return not self.reasons

    def as_json(self) -> dict[str, Any]:
        poll: dict[str, Any] | None = None
        if self.last_poll is not None:
            poll = {
                "status": self.last_poll.status,
                "finished_at": iso_utc(self.last_poll.finished_at),
                "age_seconds": round(poll_age(self.last_poll, self.now), 1),
                "new": self.last_poll.new,
                "updated": self.last_poll.updated,
                "rejected": self.last_poll.rejected,
                "error": None if self.last_poll.error is None else redact(self.last_poll.error),
            }
        return {
            "ready": self.ready,
            "store": "ok" if self.store_error is None else "unreachable",
            "last_poll": poll,
            "backlog": self.backlog,
            "reasons": [redact(reason) for reason in self.reasons],
        }


def poll_age(poll: PollRecord, now: datetime) -> float:
    """Seconds since ``poll`` ended (0 for a clock that ran backwards)."""
    return max(0.0, (now - poll.finished_at).total_seconds())


def poll_reasons(
    last_poll: PollRecord | None, *, now: datetime, uptime: float, poll_interval: float
) -> list[str]:
    """Why the polling is not healthy: the last poll failed, or none completed
    within ``STALE_POLLS × poll_interval`` (plus ``START_GRACE`` after a start)."""
    if last_poll is not None and last_poll.status != "ok":
        age = poll_age(last_poll, now)
        return [f"the last poll failed {age:.0f} s ago: {last_poll.error or 'no reason recorded'}"]
    deadline = STALE_POLLS * poll_interval
    if uptime <= deadline + START_GRACE:
        return []  # just started: the first poll may still be running
    if last_poll is None:
        return [f"no poll has completed since the start {uptime:.0f} s ago"]
    age = poll_age(last_poll, now)
    if age > deadline:
        return [
            f"no poll has completed for {age:.0f} s (archive.poll_interval is {poll_interval:g} s)"
        ]
    return []


def archive_notice(last_poll: PollRecord | None) -> str | None:
    """What the topic page tells a reader when the last poll could not read the
    archive (a folder not mounted yet, a site down), or None."""
    if last_poll is None or last_poll.status == "ok":
        return None
    return (
        f"The archive could not be read: {redact(last_poll.error or 'no reason recorded')}. "
        "These feeds hold what was read before; feedbot keeps polling and fills them "
        "in once the archive can be read (see /readyz)."
    )


async def check_readiness(
    store: Store,
    *,
    poll_interval: float,
    uptime: float,
    now: datetime,
    extra: Sequence[str] = (),
) -> Readiness:
    """The store's answer (a ping, the last poll, two counts) and the verdict."""
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await store.ping()
            last_poll = await store.last_poll()
            backlog = {
                status.value: await store.outbox.count(status)
                for status in (DeliveryStatus.PENDING, DeliveryStatus.FAILED)
            }
    except TimeoutError:
        error = f"the store did not answer within {READY_TIMEOUT:g} s"
        return Readiness(error, None, None, [error, *extra], now)
    except FeedbotError as exc:
        error = f"the store is unreachable: {exc}"
        return Readiness(error, None, None, [error, *extra], now)
    reasons = poll_reasons(last_poll, now=now, uptime=uptime, poll_interval=poll_interval)
    return Readiness(None, last_poll, backlog, [*reasons, *extra], now)


def add_routes(
    app: web.Application,
    settings: Settings,
    store: Store,
    metrics: Metrics,
    readiness: ReadinessProbe | None = None,
) -> None:
    """Register ``/healthz``, ``/readyz`` and ``/metrics`` on ``app``."""
    routes = _HealthRoutes(settings, store, metrics, readiness)

    async def started(_app: web.Application) -> None:
        routes.started = time.monotonic()

    app.on_startup.append(started)
    app.router.add_get("/healthz", routes.healthz)
    app.router.add_get("/readyz", routes.readyz)
    app.router.add_get("/metrics", routes.metrics_page)


class _HealthRoutes:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        metrics: Metrics,
        readiness: ReadinessProbe | None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.readiness = readiness
        self.started = time.monotonic()

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok\n", headers=_NO_STORE)

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        extra = list(self.readiness()) if self.readiness is not None else []
        report = await check_readiness(
            self.store,
            poll_interval=self.settings.archive.poll_interval,
            uptime=time.monotonic() - self.started,
            now=datetime.now(UTC),
            extra=extra,
        )
        if not report.ready:
            log.warning("not ready: %s", redact("; ".join(report.reasons)))
        return web.Response(
            status=200 if report.ready else 503,
            text=json.dumps(report.as_json(), indent=2) + "\n",
            content_type="application/json",
            headers=_NO_STORE,
        )

    async def metrics_page(self, request: web.Request) -> web.StreamResponse:
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await self.metrics.refresh(self.store)
        except (FeedbotError, TimeoutError) as exc:
            # A stale backlog would look healthy: drop it, serve the rest.
            self.metrics.backlog.clear()
            log.warning("metrics: outbox backlog unavailable: %s", str(exc) or "timed out")
        return web.Response(
            body=self.metrics.exposition(),
            headers={hdrs.CONTENT_TYPE: CONTENT_TYPE, **_NO_STORE},
        )
