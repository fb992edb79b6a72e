"""Delivery: the one way a Deliverer is built, and worker processes for more cores.

:class:`DeliveryConfig` holds everything a Deliverer needs, as plain values that
cross a process boundary; :func:`open_session` and :func:`build_deliverer` turn it
into the real thing, the same way in the daemon and in a worker.

With ``notify.workers = N``, ``feedbot run`` starts N :class:`DeliveryWorkers`
processes, each running its own Deliverer on its own event loop, ClientSession
and store connection, as replicas do on PostgreSQL: each claims due deliveries
(under SQLite's write lock, or skipping rows locked on PostgreSQL, so no two
claim the same one), sends them and records the attempts. The daemon process then polls,
stores and serves feeds and no longer delivers itself. One socket pair per
worker carries wake-ups one way (SQLite has no LISTEN/NOTIFY: the daemon says
when it has queued alerts) and attempt outcomes the other, so ``/metrics`` counts
every delivery.

Nothing is lost. A worker that dies is replaced (one that dies as it starts, over
and over, is given up and logged); the deliveries it had claimed are claimable
again when its lease runs out and are sent again with the same webhook-id. When
the daemon stops, it closes its end of each socket: the worker lets its attempts
in flight finish (up to the grace period) and exits. When the daemon dies (kill -9
included), the workers end at once (feedbot/processes.py): the next daemon
releases every claim it finds on SQLite, which is only right if no worker of the
last run still sends. Attempts they had in flight are sent again, with the same
webhook-id.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import pickle
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import aiohttp

from feedbot.logs import LogFormat, setup_logging
from feedbot.loop import run
from feedbot.model import DeliveryStatus
from feedbot.notify.deliver import Deliverer, DelivererSettings
from feedbot.notify.retry import RetryPolicy
from feedbot.notify.ssrf import TargetPolicy, make_connector
from feedbot.processes import die_with_parent
from feedbot.store import AttemptReport, DeliveryJob, Store

if TYPE_CHECKING:
    from feedbot.notify.render_workers import TemplateLimits

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("!I")
# Workers that die within _SHORT_LIFE seconds of starting, more than _QUICK_DEATHS
# times in a row, are broken, not unlucky: they are not replaced.
_SHORT_LIFE = 10.0
_QUICK_DEATHS = 3
_START_TIMEOUT = 60.0  # seconds for a worker to import, open the store and start


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """What a Deliverer is built from (the daemon makes it from the settings)."""

    store_url: str
    base_url: str
    settings: DelivererSettings
    policy: RetryPolicy
    allow_private: bool = False
    allow_cidrs: tuple[str, ...] = ()
    log_level: str = "info"
    log_format: LogFormat = "auto"
    grace: float = 10.0  # seconds for attempts in flight when a worker stops
    templates: TemplateLimits | None = None  # of operator templates; None: the defaults
    apprise_workers: int = 4  # Apprise notifications sent at once

    @classmethod
    def lease_for(cls, lease_seconds: float, timeout: float) -> timedelta:
        """A claim must outlast an attempt, or another worker sends it too."""
        return timedelta(seconds=max(lease_seconds, 3 * timeout))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What /metrics needs of one attempt, small enough to cross a socket."""

    status: DeliveryStatus
    subscription_id: str
    seconds: float  # from queued to answered

    @classmethod
    def of(cls, job: DeliveryJob, report: AttemptReport) -> Outcome:
        waited = (report.attempted_at - job.delivery.created_at).total_seconds()
        return cls(report.outcome, job.subscription.id, waited + report.latency_ms / 1000)


def open_session(config: DeliveryConfig) -> aiohttp.ClientSession:
    connector = make_connector(
        allow_private=config.allow_private,
        allow_cidrs=list(config.allow_cidrs),
        limit=config.settings.max_in_flight,
    )
    return aiohttp.ClientSession(connector=connector)


def build_deliverer(
    config: DeliveryConfig,
    store: Store,
    session: aiohttp.ClientSession,
    *,
    worker_id: str,
    on_attempt: Callable[[DeliveryJob, AttemptReport], None] | None = None,
) -> Deliverer:
    # Imported here: the request factory brings the payload templates, which the
    # parent of worker processes never renders.
    from feedbot.notify.apprise_target import AppriseSender
    from feedbot.notify.outbound import RequestFactory

    policy = TargetPolicy.build(allow_private=config.allow_private, allow_cidrs=config.allow_cidrs)
    return Deliverer(
        store.outbox,
        session,
        RequestFactory(config.base_url, config.templates),
        settings=config.settings,
        policy=config.policy,
        worker_id=worker_id,
        rng=random.Random(),
        on_attempt=on_attempt,
        apprise=AppriseSender(
            max_workers=config.apprise_workers, timeout=config.settings.timeout, policy=policy
        ),
    )


class DeliveryWorkers:
    """``count`` worker processes delivering from the store of ``config``."""

    def __init__(
        self,
        count: int,
        config: DeliveryConfig,
        *,
        worker_id: str,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("at least one delivery worker")
        self.count = count
        self.config = config
        self.worker_id = worker_id
        self._on_outcome = on_outcome
        self._workers: list[_Worker] = []
        self._stopping = False
        self._started = 0
        self._quick_deaths = 0

    @property
    def running(self) -> int:
        return len(self._workers)

    async def start(self) -> None:
        """Start the workers; return when each is delivering (or has died trying)."""
        for _ in range(self.count):
            await self._spawn()
        await asyncio.wait([w.ready for w in self._workers], timeout=_START_TIMEOUT)

    def wake(self) -> None:
        """New deliveries were queued: every worker looks at the outbox now."""
        for worker in self._workers:
            if not worker.writer.is_closing():
                worker.writer.write(b"w")

    async def stop(self) -> None:
        """Tell every worker to stop; wait for its attempts in flight (up to the
        grace period), then end it."""
        self._stopping = True
        workers = list(self._workers)
        for worker in workers:
            if worker.writer.can_write_eof() and not worker.writer.is_closing():
                worker.writer.write_eof()
        if workers:
            await asyncio.wait([w.reading for w in workers], timeout=self.config.grace + 5)
        for worker in workers:
            if worker.process.is_alive():
                worker.process.terminate()
            await asyncio.to_thread(worker.process.join, 5)
            worker.reading.cancel()
            worker.writer.close()

    async def _spawn(self) -> None:
        self._started += 1
        ours, theirs = socket.socketpair()
        process = multiprocessing.get_context("spawn").Process(
            target=_worker_main,
            args=(theirs, self.config, f"{self.worker_id}/w{self._started}"),
            name=f"feedbot-deliver-{self._started}",
            daemon=True,
        )
        process.start()
        theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        worker = _Worker(process, writer)
        worker.reading = asyncio.create_task(self._read(worker, reader), name=process.name)
        self._workers.append(worker)

    async def _read(self, worker: _Worker, reader: asyncio.StreamReader) -> None:
        try:
            while (outcomes := await _read_frame(reader)) is not None:
                if not worker.ready.done():
                    worker.ready.set_result(None)  # the first frame says it is delivering
                if self._on_outcome is not None:
                    for outcome in outcomes:
                        self._on_outcome(outcome)
        except (OSError, asyncio.IncompleteReadError, pickle.UnpicklingError) as exc:
            log.error("lost the connection to %s: %s", worker.process.name, exc)
        if not worker.ready.done():
            worker.ready.set_result(None)
        self._workers.remove(worker)
        worker.writer.close()
        if self._stopping:
            return
        await asyncio.to_thread(worker.process.join, 5)
        lived = time.monotonic() - worker.started
        self._quick_deaths = self._quick_deaths + 1 if lived < _SHORT_LIFE else 0
        name, code = worker.process.name, worker.process.exitcode
        if self._quick_deaths > _QUICK_DEATHS:
            log.error(
                "delivery worker %s exited (code %s), the %dth in a row within %g s of "
                "starting: not starting another (%d left)",
                name,
                code,
                self._quick_deaths,
                _SHORT_LIFE,
                len(self._workers),
            )
            return
        log.error("delivery worker %s exited (code %s); starting another", name, code)
        await asyncio.sleep(min(lived, 1.0))  # one that dies at once is not restarted in a loop
        if not self._stopping:
            await self._spawn()


@dataclass(eq=False)
class _Worker:
    process: Any  # multiprocessing's spawn-context Process
    writer: asyncio.StreamWriter
    reading: asyncio.Task[None] = field(init=False)
    started: float = field(default_factory=time.monotonic)
    ready: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def _write_frame(writer: asyncio.StreamWriter, items: list[Any]) -> None:
    data = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(_LENGTH.pack(len(data)) + data)


async def _read_frame(reader: asyncio.StreamReader) -> list[Any] | None:
    """The next frame, or None when the other side has closed."""
    try:
        header = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    (length,) = _LENGTH.unpack(header)
    items: list[Any] = pickle.loads(await reader.readexactly(length))
    return items


# -- the worker process ----------------------------------------------------------------


def _worker_main(connection: socket.socket, config: DeliveryConfig, worker_id: str) -> None:
    die_with_parent()
    setup_logging(config.log_level, config.log_format)
    run(_deliver(connection, config, worker_id))


async def _deliver(connection: socket.socket, config: DeliveryConfig, worker_id: str) -> None:
    """Deliver until the daemon closes its end (or is gone), then drain and exit."""
    reader, writer = await asyncio.open_unix_connection(sock=connection)
    store = await Store.open(config.store_url)
    outcomes: list[Outcome] = []
    loop = asyncio.get_running_loop()

    def send_outcomes() -> None:
        ready, outcomes[:] = list(outcomes), []
        if ready and not writer.is_closing():
            _write_frame(writer, ready)

    def record(job: DeliveryJob, report: AttemptReport) -> None:
        if not outcomes:
            loop.call_soon(send_outcomes)  # one frame per batch of recorded attempts
        outcomes.append(Outcome.of(job, report))

    try:
        async with open_session(config) as session:
            deliverer = build_deliverer(
                config, store, session, worker_id=worker_id, on_attempt=record
            )
            stop = asyncio.Event()
            delivering = asyncio.create_task(deliverer.run(stop))
            _write_frame(writer, [])  # ready
            try:
                while await reader.read(1024):  # each byte: alerts were queued
                    deliverer.wake()
            except OSError:
                pass  # the daemon is gone
            stop.set()
            await delivering
            await deliverer.drain(config.grace)
        send_outcomes()
        if not writer.is_closing():
            await writer.drain()
    except OSError:
        pass  # the daemon is gone: unrecorded attempts are sent again after the lease
    finally:
        writer.close()
        await store.close()
