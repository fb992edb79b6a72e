"""Wires the archive, the store, the feeds, the web app and the notifier under one lifecycle.

``feedbot run`` comes through :class:`Daemon`. Start-up is ordered: the config
file's subscriptions are reconciled, the web server binds (a port in use stops
start-up), the delivery worker starts, then the poll schedule (APScheduler 3.x:
every ``archive.poll_interval`` seconds, never two at once, with jitter) and,
for a local folder, the file-system watch that polls just the changed days
within a fraction of a second. Every poll goes through one lock.

Shutdown (SIGTERM or SIGINT) runs the other way: no new polls or claims, the
running poll is given a moment and then cancelled (its batch is one transaction,
so nothing is half-stored), deliveries in flight get up to
``server.shutdown_timeout`` seconds, then the web server and the store close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta

import aiohttp
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from feedbot import __version__
from feedbot.archive.local import LocalArchiveSource
from feedbot.archive.source import ArchiveSource
from feedbot.clock import utc_now
from feedbot.errors import ArchiveError, FeedbotError, StorageError
from feedbot.factory import (
    delivery_config,
    make_feed_cache,
    make_ingestor,
    target_policy,
    template_limits,
)
from feedbot.feeds.urls import is_wildcard_host
from feedbot.ingest import PollResult
from feedbot.logs import current_logging
from feedbot.metrics import Metrics
from feedbot.notify.deliver import Deliverer
from feedbot.notify.outbound import config_subscriptions, operator_subscription
from feedbot.notify.workers import DeliveryWorkers, build_deliverer, open_session
from feedbot.settings import Settings
from feedbot.store import Store, WriteResult
from feedbot.store.replicas import Change
from feedbot.web.server import WebServer

log = logging.getLogger(__name__)

_RETRY_DELAYS = (5.0, 15.0, 60.0, 300.0)  # after a failed poll, before poll_interval resumes
# While the folder watch is in place, scheduled polls walk the archive light (new
# days and recent ones: feedbot.archive.local); a full walk, which also finds
# edits in older days that a watch could have missed, at most this long apart.
FULL_WALK_INTERVAL = timedelta(hours=1)


def alert_links_warning(settings: Settings) -> str | None:
    """What is wrong with the links in alerts, if anything: feeds and pages take
    their links from each request's Host when ``server.base_url`` is unset, but an
    alert answers no request, and a wildcard listen address is no place to link to."""
    server = settings.server
    if server.base_url or not is_wildcard_host(server.host):
        return None
    return (
        f"server.base_url is unset and server.host {server.host} is every address: "
        f"links in alerts will point at {settings.public_base_url}, which no receiver "
        "can follow; set server.base_url (FEEDBOT_SERVER__BASE_URL) to the URL readers "
        "reach feedbot at"
    )


def needs_full_walk(watching: bool, last_full_walk: datetime | None, now: datetime) -> bool:
    """Whether a poll of the whole archive walks it fully (see
    :data:`FULL_WALK_INTERVAL`): always without the folder watch, else once in
    that interval."""
    return not watching or last_full_walk is None or now - last_full_walk >= FULL_WALK_INTERVAL


class Daemon:
    def __init__(self, settings: Settings, store: Store, source: ArchiveSource) -> None:
        self.settings = settings
        self.store = store
        self.source = source
        self.policy = target_policy(settings)
        self.ingestor = make_ingestor(settings, store, source, on_stored=self._stored)
        self.cache = make_feed_cache(settings, store)
        self.metrics = Metrics()
        self.web = WebServer(
            settings, store, self.cache, metrics=self.metrics, readiness=self._not_ready
        )
        self.deliverer: Deliverer | None = None
        self.last_poll: PollResult | None = None
        self._session: aiohttp.ClientSession | None = None
        self.workers: DeliveryWorkers | None = None  # notify.workers processes, when set
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._is_poller = False
        self._watching = False  # the folder watch is in place
        self._last_full_walk: datetime | None = None
        self._poll_lock = asyncio.Lock()
        self._poll_task: asyncio.Task[object] | None = None
        self._failures = 0
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        # Days holding a page still being written, polled again once it has settled.
        self._settling: set[str] = set()
        self._settle_timer: asyncio.TimerHandle | None = None
        self._settle_polls: set[asyncio.Task[None]] = set()
        self._settle_rounds = 0  # settle polls in a row that found a page still written

    def _not_ready(self) -> list[str]:
        """Reasons of this process for ``/readyz`` to fail, beyond the store's."""
        return ["shutting down"] if self._stop.is_set() else []

    # -- polling ---------------------------------------------------------------------

    async def poll(
        self, days: set[str] | None = None, *, hurried: bool = False
    ) -> PollResult | None:
        """One poll, serialised with every other; failures are logged, not raised.
        Only the replica holding the poller role polls. ``hurried``: of the days
        handed to a poll under way that it did not read (:meth:`_hurry`)."""
        if self._stop.is_set() or not self._is_poller:
            return None
        async with self._poll_lock:
            if hurried:
                days = set(self.ingestor.hurried)
                if not days:
                    return None
            self._poll_task = asyncio.current_task()
            started = utc_now()
            full = days is None and needs_full_walk(self._watching, self._last_full_walk, started)
            try:
                result = await self.ingestor.poll(days=days, full=full)
            except Exception as exc:  # a bug too: logged with its traceback, and retried
                self.metrics.record_poll(None, ended_at=time.time())
                self._failures += 1
                delay = _RETRY_DELAYS[min(self._failures, len(_RETRY_DELAYS)) - 1]
                delay = min(delay, self.settings.archive.poll_interval)
                log.error(
                    "poll failed (attempt %d, retrying in %.0f s): %s",
                    self._failures,
                    delay,
                    exc,
                    exc_info=not isinstance(exc, FeedbotError),
                )
                self._reschedule(delay)
                return None
            finally:
                self._poll_task = None
        if full:
            self._last_full_walk = started
        if self._failures:
            log.info("poll recovered after %d failed attempts", self._failures)
            self._failures = 0
        self.last_poll = result
        self.metrics.record_poll(result, ended_at=time.time())
        # The all-events feed changes with any stored or removed event, topics or not.
        changed = result.new or result.updated or result.removed
        if result.changed_topics or changed:
            self.cache.invalidate(result.changed_topics)
        if result.alerts:
            self._wake_deliverers()
        if result.unsettled:
            self._poll_when_settled(result.unsettled)
        if changed or result.missing or result.rejected or days is None:
            where = "days " + ", ".join(sorted(days)) if days else "archive"
            log.info("poll of %s: %s, %d alerts queued", where, result.summary, result.alerts)
        return result

    async def _keep_poller_role(self) -> None:
        """Take or renew the poller role (always ours on SQLite). A replica that
        just took it over polls at once, from the marks now in the store."""
        lease = timedelta(seconds=self.settings.store.lease_seconds)
        try:
            holding = await self.store.replicas.hold("poller", self.worker_id, lease)
        except FeedbotError as exc:
            log.error("cannot renew the poller role: %s", exc)
            holding = False
        if holding and not self._is_poller:
            if self.store.replicas.shared:
                log.info("this replica is now the poller", extra={"worker": self.worker_id})
            self.ingestor.forget_marks()
            self._is_poller = True
            # However late it starts (a busy start-up blocks the loop): never dropped.
            self._scheduler.add_job(
                self._scheduled_poll, id="takeover-poll", misfire_grace_time=None
            )
        elif not holding and self._is_poller:
            log.warning("this replica lost the poller role", extra={"worker": self.worker_id})
            self._is_poller = False

    def _stored(self, written: WriteResult) -> None:
        """A batch of the poll under way is stored: its feeds change, its alerts
        go out now (a first ingest's batches come for minutes)."""
        self.cache.invalidate(written.topics)
        if written.alerts:
            self._wake_deliverers()

    def _hurry(self, days: set[str]) -> None:
        """Pages were written in ``days`` while a poll runs, which may take minutes
        (a first ingest): it reads them between two of its batches, and whatever
        it no longer can is polled as soon as it ends."""
        self.ingestor.hurry(days)
        self._poll_later("hurried-poll", self._poll_hurried)

    def _poll_later(self, name: str, poll: Callable[[], Coroutine[None, None, None]]) -> None:
        """Start a task ``name`` running ``poll``, which waits for the poll under way
        to end (unless such a task is waiting already)."""
        if any(task.get_name() == name for task in self._settle_polls):
            return
        task = asyncio.create_task(poll(), name=name)
        self._settle_polls.add(task)
        task.add_done_callback(self._settle_polls.discard)

    async def _poll_hurried(self) -> None:
        while self.ingestor.hurried and not self._stop.is_set():
            if await self.poll(hurried=True) is None:
                return  # failed (retried by the schedule), or not the poller any more

    def _on_change(self, change: Change) -> None:
        """Another replica stored something: drop stale feeds, look at the outbox."""
        if change.all_topics:
            self.cache.clear()
        elif change.topics:
            self.cache.invalidate(change.topics)
        if change.alerts:
            self._wake_deliverers()

    def _wake_deliverers(self) -> None:
        if self.deliverer is not None:
            self.deliverer.wake()
        if self.workers is not None:
            self.workers.wake()

    def _reschedule(self, delay: float) -> None:
        job = self._scheduler.get_job("poll")
        if job is not None:
            job.modify(next_run_time=utc_now() + timedelta(seconds=delay))

    async def _expire_websub(self) -> None:
        """Remove the WebSub subscriptions whose lease has run out (none is pushed
        to after its lease in any case: the alerts of a batch skip them)."""
        try:
            expired = await self.store.subscriptions.expire_websub(utc_now())
        except StorageError as exc:
            log.warning("websub: expired leases not swept: %s", exc)
            return
        if expired:
            log.info("websub: %d subscription(s) expired", expired)

    async def _close_digests(self) -> None:
        """Queue the digests of the periods that ended (run by every replica: a
        period's digest is queued once whoever closes it)."""
        try:
            closed = await self.store.outbox.close_digests(utc_now())
        except StorageError as exc:
            log.warning("digests: ended periods not closed: %s", exc)
            return
        if closed:
            log.info("digests: %d queued", closed)
            self._wake_deliverers()

    async def _scheduled_poll(self) -> None:
        await self.poll()

    def _poll_when_settled(self, unsettled: dict[str, datetime]) -> None:
        """Poll ``unsettled`` days once their pages have settled, not a poll
        interval later. A page written on and on is looked at less and less often."""
        self._settling.update(unsettled)
        archive = self.settings.archive
        backoff = archive.settle_ms / 1000 * (2 ** min(self._settle_rounds, 16) - 1)
        due = (min(unsettled.values()) - utc_now()).total_seconds()
        wait = min(max(due, backoff, 0.005), archive.poll_interval)
        loop = asyncio.get_running_loop()
        if self._settle_timer is not None:
            if self._settle_timer.when() <= loop.time() + wait:
                return
            self._settle_timer.cancel()
        self._settle_timer = loop.call_later(wait, self._settled)

    def _settled(self) -> None:
        self._settle_timer = None
        days, self._settling = self._settling, set()
        if self._stop.is_set() or not days:
            return
        task = asyncio.create_task(self._poll_settled(days), name="settled-poll")
        self._settle_polls.add(task)
        task.add_done_callback(self._settle_polls.discard)

    async def _poll_settled(self, days: set[str]) -> None:
        self._settle_rounds += 1
        result = await self.poll(days)
        if result is None or not result.unsettled:
            self._settle_rounds = 0

    async def _watch(self) -> None:
        assert isinstance(self.source, LocalArchiveSource)
        unavailable = ""  # the reason last logged; a missing folder is tried every 5 s
        while not self._stop.is_set():
            try:
                async for days in self.source.changed_days(stop=self._stop):
                    self.metrics.archive_watch.set(1)
                    self._watching = True
                    if unavailable:
                        log.info("watch of %s in place again", self.source.description)
                        unavailable = ""
                    if days and days <= self._settling:
                        continue  # a page still being written: polled once it settles
                    if not days:
                        # The watch just started: what changed before it was in
                        # place only a full walk finds.
                        self._last_full_walk = None
                    if self._poll_lock.locked():
                        # A poll is under way, maybe for minutes: the watch goes on.
                        if days:
                            self._hurry(days)
                        else:
                            self._poll_later("watch-started-poll", self._scheduled_poll)
                        continue
                    await self.poll(days or None)  # empty: the watch just started
            except ArchiveError as exc:
                self.metrics.archive_watch.set(0)
                self._watching = False
                if str(exc) != unavailable:
                    log.warning("watch unavailable, polling only: %s", exc)
                unavailable = str(exc)
            except Exception:
                self.metrics.archive_watch.set(0)
                self._watching = False
                log.exception("watch failed; restarting it")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=5)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        settings = self.settings
        wanted = config_subscriptions(
            settings.subscriptions, self.policy, template_limits(settings)
        )
        added, updated, removed = await self.store.subscriptions.reconcile_config(
            wanted, now=utc_now()
        )
        if added or updated or removed:
            log.info(
                "subscriptions from the config: %d added, %d updated, %d removed",
                added,
                updated,
                removed,
            )
        await self.store.subscriptions.reconcile_operator(
            operator_subscription(settings, self.policy), now=utc_now()
        )
        if self.store.backend == "sqlite":
            # One daemon per SQLite file: claims left over are a crashed run's (its
            # delivery workers, if any, start after this).
            released = await self.store.outbox.release_all_claims()
            if released:
                log.info("%d deliveries claimed by a previous run are queued again", released)
        await self.web.start()

        notify = settings.notify
        level, log_format = current_logging()
        delivery = delivery_config(settings, log_level=level, log_format=log_format)
        if notify.workers:
            self.workers = DeliveryWorkers(
                notify.workers,
                delivery,
                worker_id=self.worker_id,
                on_outcome=self.metrics.record_outcome,
            )
            await self.workers.start()
        else:
            self._session = open_session(delivery)
            self.deliverer = build_deliverer(
                delivery,
                self.store,
                self._session,
                worker_id=self.worker_id,
                on_attempt=self.metrics.record_attempt,
            )
            self._tasks.append(asyncio.create_task(self.deliverer.run(self._stop), name="deliver"))

        await self.store.replicas.listen(self._on_change)
        await self._keep_poller_role()
        self._scheduler.add_job(
            self._keep_poller_role,
            "interval",
            seconds=settings.store.lease_seconds / 3,
            id="poller-role",
            max_instances=1,
            coalesce=True,
        )
        if settings.websub.enabled:
            self._scheduler.add_job(
                self._expire_websub,
                "interval",
                seconds=settings.websub.sweep_seconds,
                id="websub-leases",
                max_instances=1,
                coalesce=True,
            )
        # At once too: periods that ended while no daemon ran go out now.
        self._scheduler.add_job(
            self._close_digests,
            "interval",
            seconds=notify.digest_check_seconds,
            next_run_time=utc_now(),
            misfire_grace_time=None,
            id="digests",
            max_instances=1,
            coalesce=True,
        )
        archive = settings.archive
        self._scheduler.add_job(
            self._scheduled_poll,
            "interval",
            seconds=archive.poll_interval,
            jitter=archive.poll_jitter or None,
            id="poll",
            max_instances=1,
            coalesce=True,
        )
        self._scheduler.start()
        if archive.watch and isinstance(self.source, LocalArchiveSource):
            self._tasks.append(asyncio.create_task(self._watch(), name="watch"))
        log.info(
            "feedbot %s running: archive %s, store %s, feeds at %s",
            __version__,
            self.source.description,
            self.store.backend,
            self.web.url,
        )
        unreachable = alert_links_warning(settings)
        if unreachable:
            log.warning("%s", unreachable)

    async def stop(self) -> None:
        grace = self.settings.server.shutdown_timeout
        self._stop.set()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        running_poll = self._poll_task
        if running_poll is not None:
            # A batch in progress is one transaction: cancelling loses nothing.
            done, _ = await asyncio.wait({running_poll}, timeout=min(1.0, grace))
            if not done:
                running_poll.cancel()
                await asyncio.gather(running_poll, return_exceptions=True)
        for task in self._tasks:
            if task.get_name() == "watch":
                task.cancel()
        if self._settle_timer is not None:
            self._settle_timer.cancel()
        for task in self._settle_polls:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._settle_polls, return_exceptions=True)
        if self.deliverer is not None:
            cut = await self.deliverer.drain(grace)
            if cut:
                log.warning("%d deliveries cut off by shutdown; they will be retried", cut)
        if self.workers is not None:
            await self.workers.stop()
        await self.web.stop()
        if self._is_poller:
            with contextlib.suppress(FeedbotError):
                await self.store.replicas.release("poller", self.worker_id)
        if self._session is not None:
            await self._session.close()
        await self.source.aclose()

    async def run_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        try:
            await self.start()
            await stopping.wait()
            log.info("stopping")
        finally:
            await self.stop()
