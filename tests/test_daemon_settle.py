"""The daemon, in this process, with pages being written and pages that cannot be read:
a page being written is read once it has settled (one reading poll however many
writes the watch reports), and bad pages are counted in ``/readyz``, never the end
of a poll or of the watch.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from feedbot.archive.local import LocalArchiveSource
from feedbot.clock import utc_now
from feedbot.daemon import Daemon
from feedbot.ingest import PollResult
from feedbot.settings import Settings
from feedbot.store import Store
from tests.conftest import copy_sample_archive, write_page
from tests.daemons import until, until_async
from tests.test_poison_pages import write_bad_name_page, write_mixed_marks_page

SETTLE_MS = 100
DAY = "2007/07/12"


class _PinnableClock:
    """The source's clock: the real one, or pinned to a moment the test chooses
    (just after a page was written, so that the page is still being written)."""

    def __init__(self) -> None:
        self.pinned: datetime | None = None

    def __call__(self) -> datetime:
        return self.pinned or utc_now()


class _ScriptedWatch(LocalArchiveSource):
    """The local source with the file-system watch replaced by what the test says
    the watch saw (the real watch is tested in test_archive_local.py)."""

    def __init__(self, root: Path, clock: Callable[[], datetime]) -> None:
        super().__init__(root, settle_ms=SETTLE_MS, clock=clock)
        self.seen: asyncio.Queue[set[str]] = asyncio.Queue()

    async def changed_days(self, stop: asyncio.Event | None = None) -> AsyncIterator[set[str]]:
        while True:
            yield await self.seen.get()


def settings(archive: Path, db: Path, *, watch: bool) -> Settings:
    return Settings(
        archive={
            "source": str(archive),
            "poll_interval": 3600,
            "watch": watch,
            "settle_ms": SETTLE_MS,
        },
        store={"url": f"sqlite:///{db}"},
        server={"host": "127.0.0.1", "port": 0, "base_url": "http://feeds.test"},
    )


Poll = tuple[str, frozenset[str] | None, PollResult]  # task name, days, result


async def running(
    tmp_path: Path, source: LocalArchiveSource, *, watch: bool
) -> tuple[Daemon, Store, list[Poll]]:
    config = settings(source.root, tmp_path / "daemon.db", watch=watch)
    store = await Store.open(config.store.url)
    daemon = Daemon(config, store, source)
    polls: list[Poll] = []
    ingest = daemon.ingestor.poll

    async def recorded(**kwargs: object) -> PollResult:
        result = await ingest(**kwargs)  # type: ignore[arg-type]
        task = asyncio.current_task()
        days = kwargs.get("days")
        polls.append(
            (task.get_name() if task else "", frozenset(days) if days else None, result)  # type: ignore[arg-type]
        )
        return result

    daemon.ingestor.poll = recorded  # type: ignore[method-assign]
    await daemon.start()
    return daemon, store, polls


def written_just_now(page: Path, clock: _PinnableClock) -> None:
    """Pin the source's clock 10 ms after ``page`` was last written."""
    mtime = page.stat().st_mtime_ns
    clock.pinned = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=mtime // 1000 + 10_000)


async def test_a_day_waiting_for_a_page_being_written_is_polled_once_it_has_settled(
    tmp_path: Path, archive: Path
) -> None:
    clock = _PinnableClock()
    daemon, store, polls = await running(
        tmp_path, LocalArchiveSource(archive, settle_ms=SETTLE_MS, clock=clock), watch=False
    )
    try:
        await until(lambda: len(polls) >= 1)  # the start-up poll
        page = write_page(archive, DAY, "late", "A page still being written")
        written_just_now(page, clock)
        first = await daemon.poll({DAY})
        assert first is not None and first.new == 0 and set(first.unsettled) == {DAY}
        clock.pinned = None  # the writer is done
        # Polled again by the daemon itself: archive.poll_interval is an hour away.
        await until(lambda: _reading(polls) != [])
        assert _reading(polls) == ["settled-poll"]
        assert await _stored(store, f"{DAY}/late")
    finally:
        await daemon.stop()
        await store.close()


async def test_a_burst_of_writes_to_one_page_gives_one_reading_poll_after_they_settle(
    tmp_path: Path, archive: Path
) -> None:
    clock = _PinnableClock()
    source = _ScriptedWatch(archive, clock)
    daemon, store, polls = await running(tmp_path, source, watch=True)
    try:
        source.seen.put_nowait(set())  # the watch is in place: a full poll
        await until(lambda: len(polls) >= 2)  # that one and the start-up poll
        page = write_page(archive, DAY, "burst", "A page written in five goes")
        whole = page.read_bytes()
        for end in range(1, 6):  # five writes, each reported by the watch
            page.write_bytes(whole[: len(whole) * end // 5])
            source.seen.put_nowait({DAY})
        written_just_now(page, clock)
        await until(lambda: source.seen.empty() and len(polls) >= 3)
        await until(lambda: not daemon._poll_lock.locked())
        watched = [result for name, days, result in polls if name == "watch" and days == {DAY}]
        assert len(watched) == 1 and watched[0].new == 0  # the others waited for it
        clock.pinned = None  # the writes are over
        await until(lambda: _reading(polls) != [])
        assert _reading(polls) == ["settled-poll"]
        stored = await store.get_event(f"{DAY}/burst")
        assert stored is not None and len(stored.event.sources) == 1  # the whole page
    finally:
        await daemon.stop()
        await store.close()


def _reading(polls: list[Poll]) -> list[str]:
    """The tasks of the polls of DAY that stored its page (once they returned)."""
    return [name for name, days, result in polls if days == {DAY} and result.new]


async def _stored(store: Store, event_id: str) -> bool:
    return await store.get_event(event_id) is not None


async def test_readyz_counts_the_poison_pages_and_the_daemon_keeps_polling(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = copy_sample_archive(tmp_path / "sample")
    day = sorted(p.parent for p in (root / "news").glob("*/*/*/*.md"))[0]
    key = day.relative_to(root / "news").as_posix()
    write_mixed_marks_page(root, key)
    write_bad_name_page(root, key)
    pages = sum(1 for p in (root / "news").glob("*/*/*/*.md") if p.name != "index.md")
    source = _ScriptedWatch(root, utc_now)
    with caplog.at_level(logging.WARNING):
        daemon, store, polls = await running(tmp_path, source, watch=True)
        try:
            await until(lambda: len(polls) >= 1)
            async with (
                aiohttp.ClientSession() as session,
                session.get(daemon.web.url + "/readyz") as response,
            ):
                body = await response.json()
            assert response.status == 200 and body["ready"] is True
            poll = body["last_poll"]
            assert poll["status"] == "ok" and poll["rejected"] in (1, 2)
            assert poll["new"] + poll["rejected"] == pages
            # The watch goes on: a page written next is stored.
            write_page(root, key, "next", "The next page")
            os.utime(root / "news" / key / "next.md", (0, 0))  # long settled
            source.seen.put_nowait({key})
            await until_async(lambda: _stored(store, f"{key}/next"))
        finally:
            await daemon.stop()
            await store.close()
    assert not [r for r in caplog.records if "watch failed" in r.getMessage()]


class _BrokenSource(LocalArchiveSource):
    """A source with a bug: every poll raises something that is no FeedbotError."""

    async def poll(self, marks, *, days=None, full=True):  # type: ignore[no-untyped-def, override]
        raise RuntimeError("a bug in the source")
        yield  # pragma: no cover - makes this an async generator


async def test_a_poll_failing_on_a_bug_is_recorded_logged_and_retried(
    tmp_path: Path, archive: Path, caplog: pytest.LogCaptureFixture
) -> None:
    daemon, store, _polls = await running(tmp_path, _BrokenSource(archive), watch=False)
    try:
        with caplog.at_level(logging.ERROR, logger="feedbot.daemon"):
            assert await daemon.poll() is None  # logged, not raised
        failed = await store.last_poll()
        assert failed is not None and failed.status == "failed"
        assert failed.error == "internal error: RuntimeError('a bug in the source')"
        logged = [r for r in caplog.records if r.getMessage().startswith("poll failed")]
        assert logged and logged[-1].exc_info is not None  # with its traceback
        job = daemon._scheduler.get_job("poll")
        assert job is not None and job.next_run_time < utc_now() + timedelta(seconds=60)
    finally:
        await daemon.stop()
        await store.close()


async def test_pages_written_during_a_long_poll_are_handed_to_it_and_the_watch_goes_on(
    tmp_path: Path, archive: Path
) -> None:
    """While a poll runs (a first ingest can take minutes), the watch hands the
    days it sees to that poll instead of waiting for it to end; what the poll can
    no longer read is polled as soon as it ends."""
    source = _ScriptedWatch(archive, utc_now)
    daemon, store, polls = await running(tmp_path, source, watch=True)
    try:
        source.seen.put_nowait(set())  # the watch is in place: a full poll
        await until(lambda: len(polls) >= 2)
        later = "2007/07/13"
        async with daemon._poll_lock:  # a poll under way
            for day in (DAY, later):
                write_page(archive, day, "late", "Written during a long poll")
                source.seen.put_nowait({day})
            await until(lambda: daemon.ingestor.hurried == {DAY, later})
            assert source.seen.empty() and len(polls) == 2
        await until(lambda: len(polls) == 3)
        name, days, result = polls[-1]
        assert (name, days, result.new) == ("hurried-poll", frozenset({DAY, later}), 2)
        assert not daemon.ingestor.hurried
    finally:
        await daemon.stop()
        await store.close()


async def test_a_watch_set_up_again_during_a_long_poll_asks_for_a_full_poll_after_it(
    tmp_path: Path, archive: Path
) -> None:
    source = _ScriptedWatch(archive, utc_now)
    daemon, store, polls = await running(tmp_path, source, watch=True)
    try:
        source.seen.put_nowait(set())
        await until(lambda: len(polls) >= 2)
        async with daemon._poll_lock:  # a poll under way
            write_page(archive, DAY, "late", "Written before the watch was in place")
            source.seen.put_nowait(set())  # the watch is in place again
            source.seen.put_nowait({"2007/07/13"})  # and goes on
            await until(lambda: daemon.ingestor.hurried == {"2007/07/13"})
        await until(lambda: any(name == "watch-started-poll" for name, _, _ in polls))
        assert await _stored(store, f"{DAY}/late")
    finally:
        await daemon.stop()
        await store.close()
