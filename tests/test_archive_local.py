"""The local folder source: incremental walks and the file-system watch."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from feedbot.archive.local import LocalArchiveSource
from feedbot.archive.source import PollBatch
from feedbot.daemon import FULL_WALK_INTERVAL, needs_full_walk
from feedbot.ingest import Ingestor
from feedbot.store import Store
from tests.conftest import Clock, write_page


async def collect(source: LocalArchiveSource, marks: dict[str, str], **kwargs: object) -> PollBatch:
    merged = PollBatch()
    async for batch in source.poll(marks, **kwargs):  # type: ignore[arg-type]
        merged.pages += batch.pages
        merged.problems += batch.problems
        merged.marks.update(batch.marks)
    marks.update(merged.marks)
    return merged


async def test_first_walk_reads_every_page_but_no_index(archive: Path, clock: Clock) -> None:
    write_page(archive, "2007/07/10", "storm", "Storm")
    (archive / "news/2007/07/10/index.md").write_text("- [Storm](/news/2007/07/10/storm.md)\n")
    batch = await collect(LocalArchiveSource(archive, clock=clock), {})
    assert sorted(p.path for p in batch.pages) == [
        "news/2007/07/10/storm.md",
        "news/2007/07/9/lal-masjid-siege-an-attempt-to-negotiate-a-peaceful-end-to-the-seven-day-"
        "standoff-at-islamabad-s-red-mosque-ends-without-any-progress.md",
    ]
    assert set(batch.marks) == {"local:2007/07/10", "local:2007/07/9", "local-month:2007/07"}


async def test_unchanged_old_days_are_not_even_listed(archive: Path, clock: Clock) -> None:
    source = LocalArchiveSource(archive, clock=clock)
    marks: dict[str, str] = {}
    await collect(source, marks)
    # An in-place edit of an old page does not change its folder: the walk skips
    # it (the watch is what catches such edits).
    page = next((archive / "news/2007/07/9").glob("*.md"))
    page.write_bytes(page.read_bytes() + b"\n")
    assert (await collect(source, marks)).pages == []
    # A new page changes the folder: the day is read again.
    write_page(archive, "2007/07/9", "second", "Second")
    assert len((await collect(source, marks)).pages) == 2


async def test_recent_days_catch_in_place_edits(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 11, 27, 12, tzinfo=UTC))
    path = write_page(tmp_path, "2026/11/26", "today", "Yesterday's news")
    source = LocalArchiveSource(tmp_path, lookback_days=3, clock=clock)
    marks: dict[str, str] = {}
    await collect(source, marks)
    folder_mtime = path.parent.stat().st_mtime_ns
    path.write_text(path.read_text() + "\n", encoding="utf-8")
    os.utime(path, ns=(folder_mtime + 10**9, folder_mtime + 10**9))
    assert [p.path for p in (await collect(source, marks)).pages] == ["news/2026/11/26/today.md"]


async def test_a_light_walk_passes_over_unchanged_months(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 11, 27, 12, tzinfo=UTC))
    write_page(tmp_path, "2020/03/5", "old", "Old")
    write_page(tmp_path, "2025/01/9", "older", "Older")
    write_page(tmp_path, "2026/11/27", "today", "Today")
    source = LocalArchiveSource(tmp_path, lookback_days=3, clock=clock, settle_ms=0)
    marks: dict[str, str] = {}
    await collect(source, marks)  # a full walk: every month marked
    assert {key for key in marks if key.startswith("local-month:")} == {
        "local-month:2020/03",
        "local-month:2025/01",
        "local-month:2026/11",
    }
    light = await collect(source, marks, full=False)
    assert light.pages == [] and "gone" not in light.marks.values()  # nothing left the archive

    # A new page in an old day changes its day folder, not its month's: only a full
    # walk (or the watch, which the daemon walks light with) sees it.
    write_page(tmp_path, "2020/03/5", "second", "Second")
    assert (await collect(source, marks, full=False)).pages == []
    # A new day changes its month: a light walk reads that month's changed days.
    write_page(tmp_path, "2020/03/6", "new-day", "New day")
    assert {p.path for p in (await collect(source, marks, full=False)).pages} == {
        "news/2020/03/5/old.md",
        "news/2020/03/5/second.md",
        "news/2020/03/6/new-day.md",
    }
    # The recent days are read on every walk, light or not.
    write_page(tmp_path, "2026/11/27", "later", "Later")
    assert {p.path for p in (await collect(source, marks, full=False)).pages} == {
        "news/2026/11/27/later.md",
        "news/2026/11/27/today.md",
    }
    # A full walk still finds an old day's change.
    write_page(tmp_path, "2025/01/9", "edit", "Edit")
    assert len((await collect(source, marks, full=False)).pages) == 0
    assert len((await collect(source, marks)).pages) == 2


async def test_oversized_page_is_a_problem_not_a_failure(archive: Path, clock: Clock) -> None:
    big = archive / "news/2007/07/9/huge.md"
    big.write_bytes(b"x" * 5000)
    batch = await collect(LocalArchiveSource(archive, max_page_bytes=4096, clock=clock), {})
    assert [p.path for p in batch.problems] == ["news/2007/07/9/huge.md"]
    assert "larger than 4096 bytes" in batch.problems[0].reason
    assert len(batch.pages) == 1


async def test_a_page_gone_or_grown_after_the_listing_is_rejected(
    archive: Path, clock: Clock, tmp_path: Path
) -> None:
    write_page(archive, "2007/07/9", "gone", "Gone")
    grown = write_page(archive, "2007/07/9", "grown", "Grown")
    source = LocalArchiveSource(archive, max_page_bytes=4096, clock=clock)
    batch = await collect(source, {})
    (archive / "news/2007/07/9/gone.md").unlink()
    grown.write_bytes(b"x" * 5000)
    store = await Store.open(f"sqlite:///{tmp_path / 'local.db'}")
    try:
        rejected = (await Ingestor(store, _Offering(batch)).poll()).rejected
    finally:
        await store.close()
    assert rejected["news/2007/07/9/gone.md"] == "cannot read: No such file or directory"
    assert rejected["news/2007/07/9/grown.md"] == "larger than 4096 bytes"


class _Offering:
    """A source that offers one batch already listed (the files may have changed since)."""

    description = "a listed batch"

    def __init__(self, batch: PollBatch) -> None:
        self.batch = batch

    async def poll(self, marks, *, days=None, full=True):  # type: ignore[no-untyped-def]
        yield self.batch

    async def aclose(self) -> None:
        return None


async def test_watch_names_the_changed_day(archive: Path, clock: Clock) -> None:
    source = LocalArchiveSource(archive, clock=clock)
    stop = asyncio.Event()
    seen: list[set[str]] = []

    ready = asyncio.Event()

    async def watch() -> None:
        async for days in source.changed_days(stop=stop):
            if not ready.is_set():
                assert days == set()  # the watch is in place
                ready.set()
                continue
            seen.append(days)
            stop.set()

    task = asyncio.create_task(watch())
    await asyncio.wait_for(ready.wait(), timeout=30)
    write_page(archive, "2007/07/12", "new", "New page")
    await asyncio.wait_for(task, timeout=30)
    assert seen == [{"2007/07/12"}]


async def test_watch_sees_a_page_in_a_brand_new_month(tmp_path: Path, clock: Clock) -> None:
    write_page(tmp_path, "2007/07/9", "first", "First")
    source = LocalArchiveSource(tmp_path, clock=clock)
    stop = asyncio.Event()
    ready = asyncio.Event()
    seen: set[str] = set()

    async def watch() -> None:
        async for days in source.changed_days(stop=stop):
            ready.set()  # the first (empty) yield: the watch is in place
            seen.update(days)
            if "2026/12/1" in seen:
                stop.set()

    task = asyncio.create_task(watch())
    await asyncio.wait_for(ready.wait(), timeout=30)
    # Folder and page in one go: the page may come before the watch on the folder.
    write_page(tmp_path, "2026/12/1", "new-month", "A page in a new month")
    await asyncio.wait_for(task, timeout=30)
    assert "2026/12/1" in seen


# -- pages being written --------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WRITTEN_NS = 1_790_000_000_123_456_000  # a page's mtime, set by the tests below


def _written(path: Path, ns: int = _WRITTEN_NS) -> datetime:
    """Date ``path`` at ``ns``; return that moment as the poll's clock sees it."""
    os.utime(path, ns=(ns, ns))
    return _EPOCH + timedelta(microseconds=ns // 1000)


async def _walk(source: LocalArchiveSource, marks: dict[str, str], **kwargs: object) -> PollBatch:
    merged = PollBatch()
    async for batch in source.poll(marks, **kwargs):  # type: ignore[arg-type]
        merged.pages += batch.pages
        merged.problems += batch.problems
        merged.marks.update(batch.marks)
        merged.day_marks.update(batch.day_marks)
        merged.unsettled.update(batch.unsettled)
    marks.update(merged.marks)
    return merged


async def test_a_page_modified_within_the_settle_time_waits_and_holds_its_days_mark(
    tmp_path: Path,
) -> None:
    settled = write_page(tmp_path, "2007/07/10", "settled", "Written a while ago")
    fresh = write_page(tmp_path, "2007/07/10", "fresh", "Being written")
    _written(settled, _WRITTEN_NS - 10**9)
    written_at = _written(fresh)
    clock = Clock(written_at + timedelta(milliseconds=40))
    source = LocalArchiveSource(tmp_path, settle_ms=100, clock=clock)
    marks: dict[str, str] = {}
    batch = await _walk(source, marks)
    assert [p.path for p in batch.pages] == ["news/2007/07/10/settled.md"]
    assert batch.unsettled == {"2007/07/10": written_at + timedelta(milliseconds=100)}
    assert marks == {}  # the day's mark stays: the next poll lists it again
    clock.advance(0.06)  # 100 ms since the write: settled
    batch = await _walk(source, marks)
    assert sorted(p.path for p in batch.pages) == [
        "news/2007/07/10/fresh.md",
        "news/2007/07/10/settled.md",
    ]
    assert batch.unsettled == {} and set(marks) == {"local:2007/07/10", "local-month:2007/07"}
    assert (await _walk(source, marks)).pages == []


async def test_a_page_dated_ahead_is_read_and_settle_0_waits_for_nothing(tmp_path: Path) -> None:
    page = write_page(tmp_path, "2007/07/10", "ahead", "Dated ahead of the clock")
    written_at = _written(page)
    # A file server's clock a little ahead: still being written; far ahead: read.
    near = LocalArchiveSource(tmp_path, clock=Clock(written_at - timedelta(milliseconds=50)))
    assert (await _walk(near, {})).pages == []
    far = LocalArchiveSource(tmp_path, clock=Clock(written_at - timedelta(hours=1)))
    assert len((await _walk(far, {})).pages) == 1
    eager = LocalArchiveSource(tmp_path, settle_ms=0, clock=Clock(written_at))
    assert len((await _walk(eager, {})).pages) == 1


async def test_a_page_whose_size_changed_since_the_listing_waits_for_the_next_poll(
    tmp_path: Path,
) -> None:
    clock = Clock()
    other = write_page(tmp_path, "2007/07/10", "other", "Another page")
    growing = write_page(tmp_path, "2007/07/10", "growing", "Being written")
    for page in (other, growing):
        _written(page, (clock() - _EPOCH) // timedelta(microseconds=1) * 1000 - 10**10)
    batch = await _walk(LocalArchiveSource(tmp_path, clock=clock), {})
    with growing.open("ab") as page:
        page.write(b"\n### Related:\n")  # the writer goes on after the listing
    store = await Store.open(f"sqlite:///{tmp_path / 'local.db'}")
    try:
        result = await Ingestor(store, _Offering(batch), clock=clock).poll()
        assert (result.new, result.rejected) == (1, {})
        assert result.unsettled == {"2007/07/10": clock()}
        assert await store.get_event("2007/07/10/growing") is None
        assert "local:2007/07/10" not in await store.load_marks()
    finally:
        await store.close()


def test_the_daemon_walks_light_only_while_watching_and_fully_each_interval() -> None:
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    assert needs_full_walk(False, now, now)  # no watch: every poll walks fully
    assert needs_full_walk(True, None, now)  # the watch just started
    assert not needs_full_walk(True, now - timedelta(minutes=59), now)
    assert needs_full_walk(True, now - FULL_WALK_INTERVAL, now)
