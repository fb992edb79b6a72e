"""The one place where the archive, the parser and the store meet.

:func:`decide` is the pure core: given freshly parsed events and the content
hashes the store already holds, it says which events are new, which changed and
how many are unchanged. :class:`Ingestor` is the thin shell around it: it pulls
batches from an archive source, parses them off the event loop, asks the store
for the hashes, and writes each batch (events, marks, rejections) in one
transaction, so a crash mid-poll costs nothing but re-reading a batch.

Every page is judged alone: whatever goes wrong with one page (a parse error, a
file that cannot be read, even a bug in the parser) rejects that page with its
reason and the poll goes on. A page that changed while it was read is left, with
its day's mark, for a later poll.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from feedbot.archive.pages import ParsedPages, Rejection, parse_pages
from feedbot.archive.parse import DEFAULT_LIMITS, ParseLimits
from feedbot.archive.source import ArchiveSource, PollBatch, RawPage
from feedbot.clock import utc_now
from feedbot.errors import FeedbotError
from feedbot.identity import (
    Decision,
    Departures,
    Plan,
    day_prefix,
    decide,
    departures,
    page_id,
    plan,
)
from feedbot.loop import start_worker
from feedbot.model import Event, EventRecord
from feedbot.store import PollRecord, Store, WriteResult

log = logging.getLogger(__name__)

__all__ = ["Decision", "Ingestor", "PollResult", "decide"]

# Longest a poll waits for pages being written to settle before it reads their days
# once more (the source says when they will have: archive.settle_ms after a write).
SETTLE_WAIT = 2.0


@dataclass(slots=True)
class PollResult:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    # The unchanged of the batches that hold a day read again in this poll (a page
    # in it was being written), so that each of its pages counts once.
    unchanged_ids: set[str] = field(default_factory=set, repr=False)
    rejected: dict[str, str] = field(default_factory=dict)  # path -> reason
    changed_topics: set[str] = field(default_factory=set)  # slugs whose feeds changed
    alerts: int = 0  # deliveries queued
    renamed: int = 0  # of the updated: events read from a new page (a reworded one)
    missing: int = 0  # events whose page left the archive: removed if still gone next poll
    removed: int = 0  # events removed (missing since an earlier poll)
    # Days left for a later poll because a page in them is being written, and when
    # it should have settled (a page that changed while it was read: now).
    unsettled: dict[str, datetime] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        waiting = f", {len(self.unsettled)} days left for a page being written" * bool(
            self.unsettled
        )
        gone = f", {self.missing} missing" * bool(self.missing) + (
            f", {self.removed} removed" * bool(self.removed)
        )
        return (
            f"{self.new} new, {self.updated} updated, {self.unchanged} unchanged, "
            f"{len(self.rejected)} rejected{gone}{waiting}"
        )


@dataclass(frozen=True, slots=True)
class _Read:
    """One read of the archive within a poll: what its batches are stored with."""

    alert_since: date | None
    progress: Callable[[int], None] | None
    store_empty: bool = False  # the store held no event when the read began
    reread: bool = False  # days the first read left for a page being written


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
        limits: ParseLimits = DEFAULT_LIMITS,
        on_stored: Callable[[WriteResult], None] | None = None,
    ) -> None:
        """``on_stored`` is called with what each stored batch changed, as soon as
        it is committed: a long poll's alerts go out and its feeds change while it
        goes on, not when it ends."""
        self.store = store
        self.limits = limits
        self.backfill_days = backfill_days
        self.source = source
        self._clock = clock
        self._marks: dict[str, str] | None = None
        self._synced = False
        self._holds_events = False  # once true, for good: a removed event keeps its row
        # What was last logged about each rejected page: a page is logged again only
        # when its reason or its bytes change, not on every poll that reads it.
        self._reported: dict[str, tuple[str, str]] = {}
        self._on_stored = on_stored
        self._hurried: set[str] = set()  # days for the poll under way to read next

    def hurry(self, days: Collection[str]) -> None:
        """Have the poll under way read ``days`` between two of its batches, before
        the rest of its walk: a page written during a long poll (a first ingest)
        is stored and alerted then, not when the walk is over. A poll that has
        stored its last batch reads them no more: call it only while a poll runs,
        and poll those days afterwards if :meth:`hurried` still holds them."""
        self._hurried.update(days)

    @property
    def hurried(self) -> frozenset[str]:
        """The days handed to :meth:`hurry` that no poll has read yet."""
        return frozenset(self._hurried)

    def forget_marks(self) -> None:
        """Reload the source marks from the store on the next poll (another replica
        may have polled since they were read)."""
        self._marks = None

    async def poll(
        self,
        *,
        days: Collection[str] | None = None,
        progress: Callable[[int], None] | None = None,
        full: bool = True,
    ) -> PollResult:
        """One ingestion pass. Raises :class:`~feedbot.errors.ArchiveError` when the
        archive cannot be read at all; a bad page is only counted and logged.
        ``full=False`` lets the source pass over what only a watch of the archive
        would see change (a local folder's older months, see
        :meth:`~feedbot.archive.local.LocalArchiveSource.poll`).

        Days holding a page being written are waited for (until the source says
        the page will have settled, at most :data:`SETTLE_WAIT` seconds) and read
        once more; a page still being written then is left in ``unsettled``."""
        started = self._clock()
        result = PollResult()
        if days is not None:
            self._hurried.difference_update(days)
        try:
            if self._marks is None:
                self._marks = await self.store.load_marks()
            if not self._holds_events:
                self._holds_events = await self.store.holds_events()
            alert_since = await self._alert_since(started)
            first = _Read(alert_since, progress, store_empty=not self._holds_events)
            async with _Parser(self.limits) as parser:
                await self._pass(parser, days, result, first, full=full)
                if result.unsettled:
                    waiting, result.unsettled = result.unsettled, {}
                    wait = (max(waiting.values()) - self._clock()).total_seconds()
                    await asyncio.sleep(min(max(wait, 0.0), SETTLE_WAIT))
                    again = PollResult()
                    # The first read may have stored pages of those days.
                    second = replace(first, store_empty=False, reread=True)
                    await self._pass(parser, set(waiting), again, second)
                    result.unchanged += len(again.unchanged_ids - result.unchanged_ids)
                    result.new += again.new
                    result.updated += again.updated
                    result.rejected.update(again.rejected)
                    result.changed_topics |= again.changed_topics
                    result.alerts += again.alerts
                    result.renamed += again.renamed
                    result.missing += again.missing
                    result.unsettled = again.unsettled
            await self._remove_missing(started, days, result)
        except FeedbotError as exc:
            await self._record(started, result, error=str(exc))
            raise
        except Exception as exc:
            # A bug outside any one page: the poll is recorded as failed, so /readyz
            # tells, before the caller logs the traceback.
            await self._record(started, result, error=f"internal error: {exc!r}")
            raise
        await self._record(started, result, error=None)
        if alert_since is not None and days is None:
            await self.store.mark_initial_sync_done(self._clock())
        return result

    async def _pass(
        self,
        parser: _Parser,
        days: Collection[str] | None,
        result: PollResult,
        read: _Read,
        *,
        full: bool = True,
    ) -> None:
        assert self._marks is not None
        # A pipeline of one: batch N is parsed (in worker processes when large)
        # while batch N-1 is being stored.
        parsed_batch: tuple[PollBatch, ParsedPages] | None = None
        async for batch in self.source.poll(self._marks, days=days, full=full):
            parsing = asyncio.ensure_future(parser.parse(batch.pages))
            try:
                if parsed_batch is not None:
                    await self._store(*parsed_batch, result, read)
                if self._hurried:
                    await self._read_hurried(parser, result, read)
                    # Those pages are in the store now: the rest of the walk may
                    # offer them again and must find them there.
                    read = replace(read, store_empty=False)
            finally:
                parsed = await parsing
            parsed_batch = (batch, parsed)
        if parsed_batch is not None:
            await self._store(*parsed_batch, result, read)

    async def _read_hurried(self, parser: _Parser, result: PollResult, read: _Read) -> None:
        """Read and store the days handed to :meth:`hurry` (one pass of them)."""
        assert self._marks is not None
        days, self._hurried = self._hurried, set()
        log.debug("reading %d day(s) written during the poll", len(days))
        hurried = replace(read, store_empty=False)
        async for batch in self.source.poll(self._marks, days=days):
            await self._store(batch, await parser.parse(batch.pages), result, hurried)

    async def _store(
        self,
        batch: PollBatch,
        parsed: ParsedPages,
        result: PollResult,
        read: _Read,
    ) -> None:
        assert self._marks is not None
        events = parsed.events
        rejected = parsed.rejected | {p.path: Rejection(p.reason) for p in batch.problems}
        marks = batch.marks
        result.unsettled.update(batch.unsettled)
        changing = set(parsed.changing)
        if changing:
            # Their days keep their old marks: the next poll of them offers them again.
            held = {page.day for page in batch.pages if page.path in changing}
            held_marks = {batch.day_marks.get(day) for day in held}
            marks = {key: value for key, value in marks.items() if key not in held_marks}
            for day in held:
                result.unsettled.setdefault(day, self._clock())
        accepted = [
            page.path
            for page in batch.pages
            if page.path not in rejected and page.path not in changing
        ]
        decision = await self._identify(events, batch.listed, store_empty=read.store_empty)
        reasons = {path: why.reason for path, why in rejected.items()}
        written = await self.store.write_batch(
            new=decision.new,
            changed=decision.changed,
            marks_=marks,
            rejected=reasons,
            accepted_paths=accepted,
            now=self._clock(),
            alert_since=read.alert_since,
            moved=decision.moved,
            missing=decision.missing,
            present=decision.present,
        )
        self._marks.update(marks)
        self._report(rejected, accepted)
        result.new += len(decision.new)
        result.updated += len(decision.changed)
        result.unchanged += len(decision.unchanged)
        if batch.unsettled or changing or read.reread:
            result.unchanged_ids.update(decision.unchanged)
        result.renamed += decision.renamed
        result.missing += len(decision.missing)
        result.rejected.update(reasons)
        result.changed_topics |= written.topics
        result.alerts += written.alerts
        if self._on_stored is not None and (decision.new or decision.changed or written.alerts):
            self._on_stored(written)
        if read.progress is not None:
            read.progress(len(batch.pages) + len(batch.problems))

    async def _identify(
        self,
        events: Sequence[EventRecord],
        listed: Mapping[str, frozenset[str]],
        *,
        store_empty: bool,
    ) -> Plan:
        """Ask the store what :func:`feedbot.identity.plan` needs for this batch:
        what it knows of the pages read, its events in the days listed completely
        (one query for the batch's days, none on a first ingest's empty days
        beyond that), and, only when a page is new, the events it may succeed.
        A store that held no event when the read began knows none of them."""
        if store_empty:
            return plan(events, {}, Departures((), ()), {})
        known = await self.store.identities(e.id for e in events)
        present: dict[str, frozenset[str]] = {}
        for day, paths in listed.items():
            # A folder spelled unlike an id (2007/7/09) may share its ids' prefix
            # with another folder: its listing alone is no evidence of absence.
            if (prefix := day_prefix(day)) is not None:
                present[prefix] = frozenset(page_id(path) for path in paths)
        departed = Departures((), ())
        if present:
            stored = await self.store.listed_events(present)
            departed = departures(stored, frozenset().union(*present.values()))
        candidates: dict[str, tuple[Event, str]] = {}
        if any(e.id not in known for e in events):
            candidates = await self.store.departed(departed.gone)
        return plan(events, known, departed, candidates)

    async def _remove_missing(
        self, started: datetime, days: Collection[str] | None, result: PollResult
    ) -> None:
        """Remove the events missing since a poll before this one (of ``days``,
        when the poll was limited to them): they were gone on two polls."""
        prefixes = None
        if days is not None:
            prefixes = {p for day in days if (p := day_prefix(day)) is not None}
            if not prefixes:
                return
        removed = await self.store.remove_missing(
            before=started, now=self._clock(), prefixes=prefixes
        )
        result.removed += removed.removed
        result.changed_topics |= removed.topics
        result.alerts += removed.alerts

    def _report(self, rejected: Mapping[str, Rejection], accepted: Sequence[str]) -> None:
        """Log each rejected page once per reason and version of its bytes."""
        if self._reported:
            for path in accepted:
                self._reported.pop(path, None)
        for path, why in rejected.items():
            seen = (why.reason, why.version)
            if self._reported.get(path) == seen:
                continue
            self._reported[path] = seen
            if why.trace is None:
                log.warning("page rejected: %s: %s", path, why.reason, extra={"path": path})
            else:
                log.error(
                    "page rejected: %s: %s\n%s",
                    path,
                    why.reason,
                    why.trace.rstrip(),
                    extra={"path": path},
                )

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
    (a first ingest) go to worker processes, because parsing is CPU-bound Python
    and a thread would only contend for the GIL with the store. One core is left
    to this process, which stores the batches: storing costs more than parsing
    (on 2 cores one worker parses faster than the store takes the events), and
    each worker more holds its own interpreter and batch in memory. The pool
    starts on the first large batch and ends with the poll.
    """

    LARGE = 256  # pages

    def __init__(self, limits: ParseLimits) -> None:
        self._limits = limits
        self._pool: ProcessPoolExecutor | None = None
        self._workers = max(1, (os.cpu_count() or 1) - 1)

    async def __aenter__(self) -> _Parser:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def parse(self, pages: Sequence[RawPage]) -> ParsedPages:
        if len(pages) < self.LARGE:
            return await asyncio.to_thread(parse_pages, pages, self._limits)
        if self._pool is None:
            # spawn: never fork a process that runs threads (aiosqlite's); and the
            # workers' parent is this process, so they can end with it (processes.py).
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                max_workers=self._workers, mp_context=context, initializer=start_worker
            )
        loop = asyncio.get_running_loop()
        # Slices of at most LARGE pages: a worker then holds a slice's bytes and
        # events at a time, not a whole batch's.
        share = min(-(-len(pages) // self._workers), self.LARGE)
        slices = [pages[start : start + share] for start in range(0, len(pages), share)]
        results = await asyncio.gather(
            *(loop.run_in_executor(self._pool, parse_pages, part, self._limits) for part in slices)
        )
        parsed = ParsedPages([], {}, [])
        for part in results:
            parsed.events.extend(part.events)
            parsed.rejected.update(part.rejected)
            parsed.changing.extend(part.changing)
        return parsed
