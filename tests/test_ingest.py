"""What is new and what changed (pure), and whole polls of a local archive into a store."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from feedbot.archive import local
from feedbot.archive.local import LocalArchiveSource
from feedbot.errors import ArchiveError
from feedbot.ingest import Ingestor, decide
from feedbot.model import Event, EventRecord
from feedbot.store import Store, WriteResult
from tests.conftest import Clock, write_page


def event(event_id: str, title: str = "t") -> EventRecord:
    return EventRecord.of(Event(id=event_id, date=date(2020, 1, 1), story=None, title=title))


def test_decide_splits_new_changed_unchanged() -> None:
    a, b, c = event("a"), event("b"), event("c")
    known = {"a": a.content_hash, "b": "stale-hash"}
    decision = decide([a, b, c], known)
    assert decision.new == (c,)
    assert decision.changed == (b,)
    assert decision.unchanged == ("a",)


def test_decide_keeps_the_last_of_duplicate_ids() -> None:
    first, second = event("a", "first"), event("a", "second")
    assert decide([first, second], {}).new == (second,)


async def test_first_poll_stores_every_event_and_rejects_bad_pages(
    store: Store, archive: Path, clock: Clock
) -> None:
    write_page(archive, "2007/07/10", "storm", "Forces storm the mosque", story="Lal Masjid siege")
    (archive / "news" / "2007" / "07" / "10" / "broken.md").write_bytes(b"\x00\xff junk")
    ingestor = Ingestor(store, LocalArchiveSource(archive, clock=clock), clock=clock)
    result = await ingestor.poll()
    assert (result.new, result.updated, result.unchanged) == (2, 0, 0)
    assert list(result.rejected) == ["news/2007/07/10/broken.md"]
    assert await store.count_events("lal-masjid-siege") == 2
    assert await store.rejections() == result.rejected
    last = await store.last_poll()
    assert last is not None and (last.status, last.new, last.rejected) == ("ok", 2, 1)


async def test_second_poll_reads_nothing_when_nothing_changed(
    store: Store, archive: Path, clock: Clock
) -> None:
    ingestor = Ingestor(store, LocalArchiveSource(archive, clock=clock), clock=clock)
    await ingestor.poll()
    again = await ingestor.poll()
    assert (again.new, again.updated, again.unchanged, again.rejected) == (0, 0, 0, {})


async def test_new_page_is_new_and_rewrite_with_same_content_is_unchanged(
    store: Store, archive: Path, clock: Clock
) -> None:
    ingestor = Ingestor(store, LocalArchiveSource(archive, clock=clock), clock=clock)
    await ingestor.poll()
    write_page(archive, "2007/07/10", "storm", "Forces storm the mosque")
    result = await ingestor.poll()
    assert (result.new, result.updated, result.unchanged) == (1, 0, 0)
    # Same content with CRLF line ends and a BOM, atomically replaced: not an update.
    path = archive / "news/2007/07/10/storm.md"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    os.replace(tmp, path)
    result = await ingestor.poll()
    assert (result.new, result.updated, result.unchanged) == (0, 0, 1)


async def test_changed_page_is_updated_and_moves_updated_time(
    store: Store, archive: Path, clock: Clock
) -> None:
    ingestor = Ingestor(store, LocalArchiveSource(archive, clock=clock), clock=clock)
    write_page(archive, "2007/07/10", "storm", "Forces storm the mosque")
    await ingestor.poll()
    clock.advance(3600)
    path = write_page(archive, "2007/07/10", "storm", "Forces storm the mosque, ending the siege")
    result = await ingestor.poll(days={"2007/07/10"})  # as the watch would ask
    assert result.updated == 1
    stored = await store.get_event("2007/07/10/storm")
    assert stored is not None and stored.updated > stored.first_seen
    assert path.exists()


async def test_a_new_process_resumes_from_stored_marks(
    store_url: str, archive: Path, clock: Clock
) -> None:
    first = await Store.open(store_url)
    await Ingestor(first, LocalArchiveSource(archive, clock=clock), clock=clock).poll()
    await first.close()
    second = await Store.open(store_url)
    try:
        result = await Ingestor(
            second, LocalArchiveSource(archive, clock=clock), clock=clock
        ).poll()
        assert (result.new, result.unchanged) == (0, 0)
    finally:
        await second.close()


async def test_missing_archive_fails_the_poll_and_is_recorded(
    store: Store, tmp_path: Path, clock: Clock
) -> None:
    ingestor = Ingestor(store, LocalArchiveSource(tmp_path / "nowhere", clock=clock), clock=clock)
    with pytest.raises(ArchiveError, match="nowhere"):
        await ingestor.poll()
    last = await store.last_poll()
    assert last is not None and last.status == "failed" and "nowhere" in (last.error or "")


def _date(path: Path, when: datetime) -> None:
    """Set ``path``'s mtime to ``when`` (the tests' clock, not the real one)."""
    ns = (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
    os.utime(path, ns=(ns, ns))


async def test_a_half_written_page_is_not_taken_as_an_update(
    store: Store, archive: Path, clock: Clock
) -> None:
    page = write_page(archive, "2007/07/10", "storm", "Forces storm the mosque")
    _date(page, clock() - timedelta(hours=1))
    source = LocalArchiveSource(archive, settle_ms=100, clock=clock)
    ingestor = Ingestor(store, source, clock=clock)
    assert (await ingestor.poll()).new == 2
    whole = page.read_bytes()
    # A writer rewrites the page in place and has written up to its summary.
    page.write_bytes(whole[: whole.index(b"### Sources:")])
    _date(page, clock() - timedelta(milliseconds=30))
    cut = await ingestor.poll(days={"2007/07/10"})  # as the watch asks, at once
    assert (cut.new, cut.updated, cut.rejected) == (0, 0, {})
    assert cut.unsettled == {"2007/07/10": clock() + timedelta(milliseconds=70)}
    stored = await store.get_event("2007/07/10/storm")
    assert stored is not None and len(stored.event.sources) == 1
    page.write_bytes(whole.replace(b"storm the mosque", b"storm the mosque at dawn"))
    _date(page, clock() - timedelta(milliseconds=20))
    clock.advance(0.1)  # the writer is done
    done = await ingestor.poll(days={"2007/07/10"})
    assert (done.updated, done.unsettled) == (1, {})
    stored = await store.get_event("2007/07/10/storm")
    assert stored is not None and stored.event.title.endswith("at dawn")
    assert len(stored.event.sources) == 1


async def test_a_day_read_twice_in_one_poll_counts_each_page_once(
    store: Store, archive: Path, clock: Clock
) -> None:
    day = "2007/07/10"
    pages = [write_page(archive, day, slug, title) for slug, title in (("a", "A"), ("b", "B"))]
    for page in pages:
        _date(page, clock() - timedelta(hours=1))
    ingestor = Ingestor(store, LocalArchiveSource(archive, settle_ms=100, clock=clock), clock=clock)
    await ingestor.poll()
    # Page a rewritten with the same bytes just now: the poll reads b, waits for a
    # to settle (the clock moves on once the first read is stored) and reads the
    # day again, a and b.
    pages[0].write_bytes(pages[0].read_bytes())
    _date(pages[0], clock() - timedelta(milliseconds=30))
    result = await ingestor.poll(days={day}, progress=lambda _pages: clock.advance(1))
    assert (result.new, result.updated, result.unchanged, result.unsettled) == (0, 0, 2, {})


async def test_a_rejected_page_is_warned_about_once_per_reason_and_content(
    store: Store, archive: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    broken = archive / "news" / "2007" / "07" / "9" / "broken.md"
    broken.write_bytes(b"\x00\xff junk")
    ingestor = Ingestor(store, LocalArchiveSource(archive, clock=clock), clock=clock)

    async def poll_and_warnings(*, touch: bool = True) -> tuple[dict[str, str], list[str]]:
        if touch:  # another page of the day changes: the whole day is read again
            write_page(archive, "2007/07/9", "other", f"Other, version {len(caplog.records)}")
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="feedbot.ingest"):
            result = await ingestor.poll(days={"2007/07/9"})
        return result.rejected, [r.getMessage() for r in caplog.records]

    path = "news/2007/07/9/broken.md"
    binary = "binary data, not a text page"
    assert await poll_and_warnings() == ({path: binary}, [f"page rejected: {path}: {binary}"])
    # Read again, still counted, not warned about again.
    assert await poll_and_warnings() == ({path: binary}, [])
    assert await poll_and_warnings() == ({path: binary}, [])
    last = await store.last_poll()
    assert last is not None and last.rejected == 1
    # Other bytes, the same reason: warned again (someone edited it).
    broken.write_bytes(b"\x00\xfe other junk")
    assert await poll_and_warnings() == ({path: binary}, [f"page rejected: {path}: {binary}"])
    # Another reason: warned again.
    broken.write_text("# A summary but no date\n", encoding="utf-8")
    rejected, warnings = await poll_and_warnings()
    assert rejected[path].startswith("no date line") and len(warnings) == 1
    # Fixed, then broken again the same way: warned again.
    broken.unlink()
    write_page(archive, "2007/07/9", "broken", "Fixed")
    assert await poll_and_warnings() == ({}, [])
    broken.write_text("# A summary but no date\n", encoding="utf-8")
    rejected, warnings = await poll_and_warnings()
    assert len(warnings) == 1


def test_a_parse_worker_imports_neither_the_store_nor_the_web_app() -> None:
    """A first ingest's worker processes import what they run (parse_pages), in
    interpreters of their own: the store's and the web app's libraries would cost
    each worker tens of MB for nothing."""
    probe = (
        "import sys, feedbot.archive.pages, feedbot.loop;"
        "print(sorted(m for m in ('sqlalchemy', 'aiohttp', 'feedgen', 'jinja2', 'apprise')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "day", ["2020/01/09", "2020/01/05"], ids=["a new day", "a day the walk reads later"]
)
async def test_days_hurried_during_a_long_poll_are_stored_between_its_batches(
    store: Store, tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch, day: str
) -> None:
    """A page written during a first ingest (minutes long on a large archive) is
    stored, and its alert queued, right after the batch being stored, not when
    the walk is over; the rest of the walk finds it stored."""
    monkeypatch.setattr(local, "_PAGES_PER_BATCH", 2)
    archive = tmp_path / "walk"
    for n in range(1, 6):
        for slug in ("a", "b"):
            write_page(archive, f"2020/01/0{n}", f"{slug}{n}", f"Event {slug}{n}")
    batches: list[set[str]] = []

    def stored(written: WriteResult) -> None:
        if not batches:  # the first batch is stored: a page is written meanwhile
            write_page(archive, day, "late", "Written late", story="Hurried")
            ingestor.hurry({day})
        batches.append(written.topics)

    ingestor = Ingestor(
        store, LocalArchiveSource(archive, clock=clock), clock=clock, on_stored=stored
    )
    result = await ingestor.poll()
    assert (result.new, result.rejected) == (11, {})
    assert ["hurried" in topics for topics in batches][:2] == [False, True]
    assert len(batches) > 3  # the walk went on after it
    assert await store.count_events("hurried") == 1 and not ingestor.hurried
