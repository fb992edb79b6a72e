"""The one place where the archive, the parser and the store meet.

:func:`decide` is the pure core: given freshly parsed events and the content
hashes the store already holds, it says which events are new, which changed and
how many are unchanged. :class:`Ingestor` is the thin shell around it: it pulls
batches from an archive source, parses them off the event loop, asks the store
for the hashes, and writes each batch (events, marks, rejections) in one
transaction, so a crash mid-poll costs nothing but re-reading a batch.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from feedbot.archive.parse import parse_page
from feedbot.archive.source import ArchiveSource, PollBatch, RawPage
from feedbot.clock import utc_now
from feedbot.errors import FeedbotError, ParseError
from feedbot.loop import pace_collector
from feedbot.model import EventRecord
from feedbot.store import PollRecord, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Decision:
    new: tuple[EventRecord, ...]
    changed: tuple[EventRecord, ...]
    unchanged: int


def decide(parsed: Iterable[EventRecord], known_hashes: Mapping[str, str]) -> Decision:
    """Split ``parsed`` into new, changed and unchanged events.

    The same id twice in one batch keeps the last one read.
    """
    latest = {record.id: record for record in parsed}
    new: list[EventRecord] = []
    changed: list[EventRecord] = []
    unchanged = 0
    for record in latest.values():
        known = known_hashes.get(record.id)
        if known is None:
            new.append(record)
        elif known != record.content_hash:
            changed.append(record)
        else:
            unchanged += 1
    return Decision(tuple(new), tuple(changed), unchanged)


@dataclass(slots=True)
class PollResult:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: dict[str, str] = field(default_factory=dict)  # path -> reason
    changed_topics: set[str] = field(default_factory=set)  # slugs whose feeds changed
    alerts: int = 0  # deliveries queued

    @property
    def summary(self) -> str:
        return (
            f"{self.new} new, {self.updated} updated, {self.unchanged} unchanged, "
            f"{len(self.rejected)} rejected"
        )


class Ingestor:
    """Runs polls of one archive source into one store. Not re-entrant: the
    scheduler guarantees one poll at a time."""

    def __init__(
        self,
        store: Store,
        source: ArchiveSource,
        *,
        clock: Callable[[], datetime] = utc_now,
        backfill_days: int = 0,
    ) -> None:
        self.store = store
        self.backfill_days = backfill_days
        self.source = source
        self._clock = clock
        self._marks: dict[str, str] | None = None
        self._synced = False

    def forget_marks(self) -> None:
        """Reload the source marks from the store on the next poll (another replica
        may have polled since they were read)."""
        self._marks = None

    async def poll(
        self,
        *,
        days: Collection[str] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> PollResult:
        """One ingestion pass. Raises :class:`~feedbot.errors.ArchiveError` when the
        archive cannot be read at all; a bad page is only counted and logged."""
        started = self._clock()
        result = PollResult()
        try:
            if self._marks is None:
                self._marks = await self.store.load_marks()
            alert_since = await self._alert_since(started)
            # A pipeline of one: batch N is parsed (in worker processes when large)
            # while batch N-1 is being stored.
            parsed_batch: tuple[PollBatch, list[EventRecord], dict[str, str]] | None = None
            async with _Parser() as parser:
                async for batch in self.source.poll(self._marks, days=days):
                    parsing = asyncio.ensure_future(parser.parse(batch.pages))
                    try:
                        if parsed_batch is not None:
                            await self._store(*parsed_batch, result, alert_since, progress)
                    finally:
                        parsed, rejected = await parsing
                    parsed_batch = (batch, parsed, rejected)
                if parsed_batch is not None:
                    await self._store(*parsed_batch, result, alert_since, progress)
        except FeedbotError as exc:
            await self._record(started, result, error=str(exc))
            raise
        await self._record(started, result, error=None)
        if alert_since is not None and days is None:
            await self.store.mark_initial_sync_done(self._clock())
        return result

    async def _store(
        self,
        batch: PollBatch,
        parsed: list[EventRecord],
        rejected: dict[str, str],
        result: PollResult,
        alert_since: date | None,
        progress: Callable[[int], None] | None,
    ) -> None:
        assert self._marks is not None
        rejected.update({p.path: p.reason for p in batch.problems})
        decision = decide(parsed, await self.store.content_hashes(e.id for e in parsed))
        written = await self.store.write_batch(
            new=decision.new,
            changed=decision.changed,
            marks_=batch.marks,
            rejected=rejected,
            accepted_paths=[page.path for page in batch.pages if page.path not in rejected],
            now=self._clock(),
            alert_since=alert_since,
        )
        self._marks.update(batch.marks)
        for path, reason in rejected.items():
            log.warning("page rejected: %s: %s", path, reason, extra={"path": path})
        result.new += len(decision.new)
        result.updated += len(decision.changed)
        result.unchanged += decision.unchanged
        result.rejected.update(rejected)
        result.changed_topics |= written.topics
        result.alerts += written.alerts
        if progress is not None:
            progress(len(batch.pages) + len(batch.problems))

    async def _alert_since(self, now: datetime) -> date | None:
        """Until a first full poll has completed, alert only events dated within
        ``backfill_days``, so a first start on a full archive floods nobody."""
        if self._synced or await self.store.initial_sync_done():
            self._synced = True  # it stays done: no need to ask the store each poll
            return None
        return now.date() - timedelta(days=self.backfill_days)

    async def _record(self, started: datetime, result: PollResult, error: str | None) -> None:
        record = PollRecord(
            started_at=started,
            finished_at=self._clock(),
            status="ok" if error is None else "failed",
            new=result.new,
            updated=result.updated,
            unchanged=result.unchanged,
            rejected=len(result.rejected),
            error=error,
        )
        try:
            await self.store.record_poll(record)
        except FeedbotError:
            if error is None:
                raise
            log.exception("could not record the failed poll")  # the original error wins


class _Parser:
    """Parses batches of pages off the event loop.

    Small batches (a watch event, a re-poll) are parsed in a thread. Large ones
    (a first ingest) go to worker processes, one per core, because parsing is
    CPU-bound Python and a thread would only contend for the GIL with the store.
    The pool starts on the first large batch and ends with the poll.
    """

    LARGE = 256  # pages

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._workers = os.cpu_count() or 1

    async def __aenter__(self) -> _Parser:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def parse(self, pages: Sequence[RawPage]) -> tuple[list[EventRecord], dict[str, str]]:
        if len(pages) < self.LARGE:
            return await asyncio.to_thread(_parse_all, pages)
        if self._pool is None:
            # forkserver: never fork a process that runs threads (aiosqlite's).
            context = multiprocessing.get_context("forkserver")
            self._pool = ProcessPoolExecutor(
                max_workers=self._workers, mp_context=context, initializer=pace_collector
            )
        loop = asyncio.get_running_loop()
        share = -(-len(pages) // self._workers)  # one slice per worker, rounded up
        slices = [pages[start : start + share] for start in range(0, len(pages), share)]
        results = await asyncio.gather(
            *(loop.run_in_executor(self._pool, _parse_all, part) for part in slices)
        )
        parsed = [event for events, _ in results for event in events]
        rejected = {path: reason for _, bad in results for path, reason in bad.items()}
        return parsed, rejected


# Files read at once by each parser. Reading is the slow part when the archive is
# not in the page cache (a first start after a reboot): one read at a time leaves
# the disk idle between requests. Measured with bench/ingest.py after dropping the
# page cache: 4,468 events/s reading one file at a time.
_READERS = 8


def _parse_all(pages: Sequence[RawPage]) -> tuple[list[EventRecord], dict[str, str]]:
    parsed: list[EventRecord] = []
    rejected: dict[str, str] = {}
    with ThreadPoolExecutor(_READERS) if len(pages) > _READERS else nullcontext() as readers:
        contents = readers.map(_content, pages) if readers else map(_content, pages)
        for page, content in zip(pages, contents, strict=True):
            try:
                if isinstance(content, ParseError):
                    raise content
                parsed.append(EventRecord.of(parse_page(content, page.path)))
            except ParseError as exc:
                rejected[page.path] = exc.reason
    return parsed, rejected


def _content(page: RawPage) -> bytes | ParseError:
    """The page's bytes, or why it could not be read (raised where it is parsed)."""
    try:
        return page.read()
    except ParseError as exc:
        return exc
