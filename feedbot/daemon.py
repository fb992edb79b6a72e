"""Wires the archive source, the store and the poll schedule under one lifecycle.

``feedbot run`` and ``feedbot poll`` both come through here. The daemon runs one
APScheduler 3.x job that polls every ``archive.poll_interval`` seconds (never two
at once, with jitter) and, for a local folder, a file-system watch that polls
just the changed day folders within a fraction of a second. Both go through one
lock, so a watch-triggered poll and a scheduled one never overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from feedbot.archive.local import LocalArchiveSource
from feedbot.archive.source import ArchiveSource
from feedbot.errors import ArchiveError, FeedbotError
from feedbot.ingest import Ingestor, PollResult
from feedbot.settings import Settings
from feedbot.store import Store

log = logging.getLogger(__name__)

_RETRY_DELAYS = (5.0, 15.0, 60.0, 300.0)  # after a failed poll, before poll_interval resumes


def _utc_now() -> datetime:
    return datetime.now(UTC)


def make_source(settings: Settings, clock: Callable[[], datetime] = _utc_now) -> ArchiveSource:
    archive = settings.archive
    if archive.is_url:
        from feedbot.archive.http import HttpArchiveSource

        return HttpArchiveSource(
            base_url=archive.source,
            lookback_days=archive.lookback_days,
            backfill_days=archive.backfill_days,
            max_concurrency=archive.max_concurrency,
            timeout=archive.timeout,
            max_page_bytes=archive.max_page_bytes,
            clock=clock,
        )
    return LocalArchiveSource(
        Path(archive.source),
        lookback_days=archive.lookback_days,
        max_page_bytes=archive.max_page_bytes,
        clock=clock,
    )


class Daemon:
    def __init__(self, settings: Settings, store: Store, source: ArchiveSource) -> None:
        self.settings = settings
        self.store = store
        self.source = source
        self.ingestor = Ingestor(store, source)
        self._poll_lock = asyncio.Lock()
        self._failures = 0
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()

    async def poll(self, days: set[str] | None = None) -> PollResult | None:
        """One poll, serialised with every other; failures are logged, not raised."""
        async with self._poll_lock:
            try:
                result = await self.ingestor.poll(days=days)
            except FeedbotError as exc:
                self._failures += 1
                delay = _RETRY_DELAYS[min(self._failures, len(_RETRY_DELAYS)) - 1]
                delay = min(delay, self.settings.archive.poll_interval)
                log.error(
                    "poll failed (attempt %d, retrying in %.0f s): %s", self._failures, delay, exc
                )
                self._reschedule(delay)
                return None
        if self._failures:
            log.info("poll recovered after %d failed attempts", self._failures)
            self._failures = 0
        log.info(
            "poll of %s: %s",
            "days " + ", ".join(sorted(days)) if days else "archive",
            result.summary,
        )
        return result

    def _reschedule(self, delay: float) -> None:
        job = self._scheduler.get_job("poll")
        if job is not None:
            job.modify(next_run_time=_utc_now() + timedelta(seconds=delay))

    async def _scheduled_poll(self) -> None:
        await self.poll()

    async def _watch(self) -> None:
        assert isinstance(self.source, LocalArchiveSource)
        while not self._stop.is_set():
            try:
                async for days in self.source.changed_days(stop=self._stop):
                    await self.poll(days)
            except ArchiveError as exc:
                log.warning("watch unavailable, polling only: %s", exc)
            except Exception:
                log.exception("watch failed; restarting it")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=5)

    async def start(self) -> None:
        archive = self.settings.archive
        self._scheduler.add_job(
            self._scheduled_poll,
            "interval",
            seconds=archive.poll_interval,
            jitter=archive.poll_jitter or None,
            id="poll",
            max_instances=1,
            coalesce=True,
            next_run_time=_utc_now(),  # the first poll at once
        )
        self._scheduler.start()
        if archive.watch and isinstance(self.source, LocalArchiveSource):
            self._tasks.append(asyncio.create_task(self._watch(), name="watch"))
        log.info(
            "feedbot running: archive %s, store %s", self.source.description, self.store.backend
        )

    async def stop(self) -> None:
        self._stop.set()
        self._scheduler.shutdown(wait=False)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        async with self._poll_lock:  # let a running poll finish its batch
            await self.source.aclose()

    async def run_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        await self.start()
        try:
            await stopping.wait()
            log.info("stopping")
        finally:
            await self.stop()
