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
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from feedbot.archive.parse import parse_page
from feedbot.archive.source import ArchiveSource, RawPage
from feedbot.errors import FeedbotError, ParseError
from feedbot.model import Event
from feedbot.store import PollRecord, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Decision:
    new: tuple[Event, ...]
    changed: tuple[Event, ...]
    unchanged: int


def decide(parsed: Iterable[Event], known_hashes: Mapping[str, str]) -> Decision:
    """Split ``parsed`` into new, changed and unchanged events.

    The same id twice in one batch keeps the last one read.
    """
    latest = {event.id: event for event in parsed}
    new: list[Event] = []
    changed: list[Event] = []
    unchanged = 0
    for event in latest.values():
        known = known_hashes.get(event.id)
        if known is None:
            new.append(event)
        elif known != event.content_hash():
            changed.append(event)
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


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Ingestor:
    """Runs polls of one archive source into one store. Not re-entrant: the
    scheduler guarantees one poll at a time."""

    def __init__(
        self,
        store: Store,
        source: ArchiveSource,
        *,
        clock: Callable[[], datetime] = _utc_now,
        backfill_days: int = 0,
    ) -> None:
        self.store = store
        self.backfill_days = backfill_days
        self.source = source
        self._clock = clock
        self._marks: dict[str, str] | None = None

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
            async for batch in self.source.poll(self._marks, days=days):
                parsed, rejected = await asyncio.to_thread(_parse_all, batch.pages)
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
                result.changed_topics |= written.topics
                result.alerts += written.alerts
                self._marks.update(batch.marks)
                for path, reason in rejected.items():
                    log.warning("page rejected: %s: %s", path, reason)
                result.new += len(decision.new)
                result.updated += len(decision.changed)
                result.unchanged += decision.unchanged
                result.rejected.update(rejected)
                if progress is not None:
                    progress(len(batch.pages) + len(batch.problems))
        except FeedbotError as exc:
            await self._record(started, result, error=str(exc))
            raise
        await self._record(started, result, error=None)
        if alert_since is not None and days is None:
            await self.store.mark_initial_sync_done(self._clock())
        return result

    async def _alert_since(self, now: datetime) -> date | None:
        """Until a first full poll has completed, alert only events dated within
        ``backfill_days``, so a first start on a full archive floods nobody."""
        if await self.store.initial_sync_done():
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


def _parse_all(pages: Sequence[RawPage]) -> tuple[list[Event], dict[str, str]]:
    parsed: list[Event] = []
    rejected: dict[str, str] = {}
    for page in pages:
        try:
            parsed.append(parse_page(page.body, page.path))
        except ParseError as exc:
            rejected[page.path] = exc.reason
    return parsed, rejected
