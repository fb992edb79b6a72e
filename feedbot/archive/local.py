"""Reading an archive from a local folder, incrementally, and watching it for changes.

A poll must be cheap on twenty years of archive, so the walk works at the level
of day folders. Each day's mark is ``<folder mtime_ns>:<digest of its pages' names,
sizes and mtimes>``:

- a day folder whose mtime is unchanged is skipped without listing it (adding,
  removing or atomically replacing a page changes the folder's mtime);
- the last ``lookback_days`` days are listed on every poll regardless, because an
  in-place edit of a page changes the page's mtime but not its folder's;
- a listed day whose digest is unchanged yields nothing; otherwise all of its
  pages are offered (a day holds tens of pages, and the ingest pipeline tells new,
  changed and unchanged apart by content hash). The source names the files; the
  parse step reads them, in worker processes on a large poll.
- a listed day whose digest changed is also the day's listing
  (``PollBatch.listed``: every page in it, those being written included), and a
  known day folder that is gone lists no page (its mark then says so, and it is
  not listed again while gone): the ingest pipeline finds there which stored
  events left the archive.

A page modified within ``settle_ms`` of the poll's clock may be half-written: it
is not offered, and its day keeps its old mark (so the next poll lists it again)
and is reported with the time it will have settled, for the daemon to poll it
then. A file whose name is not UTF-8 or holds control characters is a rejected
page, named with those bytes escaped.

The file-system watch (:meth:`LocalArchiveSource.changed_days`) catches edits
anywhere, within a fraction of a second, and names the day folders to re-poll.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from feedbot.archive.source import PageProblem, PollBatch, RawPage, name_problem, shown_name
from feedbot.clock import EPOCH, utc_now
from feedbot.errors import ArchiveError

log = logging.getLogger(__name__)

_MARK_PREFIX = "local:"
_MONTH_PREFIX = "local-month:"  # a month folder's mtime when its days were last walked
# Pages per batch, each stored in one transaction. Two batches are in memory at once
# (one parsed while the other is stored), which bounds a first ingest's memory;
# larger commits, which write each hot index page once per batch, saved no CPU
# beyond this size.
_PAGES_PER_BATCH = 1000
_LISTERS = 8  # day folders listed at once
_DAYS_PER_LISTING = 512  # day folders listed before their batches go on
# The mark of a known day folder that is gone: it is not listed again while gone (a
# folder made again has a real mtime, so it is listed then).
_VANISHED = "gone"
_Listing = tuple[tuple[str, int, int], ...]  # (file name, size, mtime_ns) of each page


@dataclass(frozen=True, slots=True)
class _Day:
    key: str  # "2007/07/9"
    folder: Path
    mark: str | None  # None: a page is still being written, the old mark stays
    pages: _Listing  # empty when only the mark moved
    bad_names: tuple[tuple[str, str], ...] = ()  # (name shown, reason)
    settles_at: datetime | None = None  # when the pages being written will have settled
    # The name of every page in the folder, those being written included; None
    # when only the mark moved (the names are the ones the last poll saw).
    names: frozenset[str] | None = None


# A day folder to list: its key, folder, mtime and previous mark.
_ToList = tuple[str, Path, int, str]


@dataclass(slots=True)
class _Plan:
    """What one walk lists (:meth:`LocalArchiveSource._plan`)."""

    now: datetime
    to_list: list[_ToList] = field(default_factory=list)
    vanished: list[_Day] = field(default_factory=list)  # known day folders that are gone
    months: dict[str, str] = field(default_factory=dict)  # month key -> its mark


def _gone(key: str, folder: Path) -> _Day:
    """A known day folder that is gone: it holds no page."""
    return _Day(key, folder, _VANISHED, (), names=frozenset())


class LocalArchiveSource:
    def __init__(
        self,
        root: Path,
        *,
        lookback_days: int = 3,
        max_page_bytes: int = 1_048_576,
        settle_ms: int = 100,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.root = root
        self.news = root / "news"
        self.lookback_days = lookback_days
        self.max_page_bytes = max_page_bytes
        self.settle_ms = settle_ms
        self._clock = clock

    @property
    def description(self) -> str:
        return str(self.root)

    async def poll(
        self,
        marks: Mapping[str, str],
        *,
        days: Collection[str] | None = None,
        full: bool = True,
    ) -> AsyncIterator[PollBatch]:
        plan = await asyncio.to_thread(self._plan, marks, days, full)
        group: list[_Day] = []
        size = 0
        # Listed a slice at a time, as batches fill: a first walk of a large archive
        # holds one slice of listings, not the whole archive's.
        for first in range(0, len(plan.to_list), _DAYS_PER_LISTING):
            chunk = plan.to_list[first : first + _DAYS_PER_LISTING]
            for day in await asyncio.to_thread(self._listed, chunk, plan.now):
                if day.mark is None:  # a page being written: its month is walked again
                    plan.months.pop(day.key.rpartition("/")[0], None)
                group.append(day)
                size += len(day.pages)
                if size >= _PAGES_PER_BATCH:
                    yield self._batch(group)
                    group, size = [], 0
        group += plan.vanished
        # Month marks go with the last batch: a month is passed over only once
        # every day of it found in this walk has been stored.
        last = self._batch(group)
        last.marks.update({_MONTH_PREFIX + key: mark for key, mark in plan.months.items()})
        if group or plan.months:
            yield last

    async def aclose(self) -> None:
        return None

    async def changed_days(self, stop: asyncio.Event | None = None) -> AsyncIterator[set[str]]:
        """Yield the day keys under which pages were added, changed or removed.

        The first yield is an empty set, as soon as the watch is in place: a page
        written while it was being set up was seen by no one, so the caller polls
        once then. Uses inotify through watchfiles; where that is unavailable
        (some network and container file systems) watchfiles polls the tree.
        """
        import watchfiles  # imported here: only the daemon's watch needs it

        self._require_folder()
        ready = False
        async for changes in watchfiles.awatch(
            self.news,
            stop_event=stop,
            debounce=150,
            step=50,
            rust_timeout=500,
            yield_on_timeout=True,
            recursive=True,
        ):
            days = set().union(*(self._days_under(path) for _change, path in changes))
            if days or not ready:
                ready = True
                yield days

    def _days_under(self, path: str) -> set[str]:
        """The day keys a changed path concerns: its own day for a page, and every
        day below it for a new year, month or day folder, because a page written
        right after its folder was made may come before the watch on that folder."""
        try:
            parts = Path(path).relative_to(self.news).parts
        except ValueError:
            return set()
        numeric = list(itertools.takewhile(str.isdigit, parts[:3]))
        if len(numeric) == 3:
            if len(parts) == 3 or parts[3].endswith(".md"):
                return {"/".join(numeric)}
            return set()
        if len(numeric) < len(parts):
            return set()  # a file beside the day folders: not a page
        folder = self.news.joinpath(*numeric)
        found: set[str] = set()
        for day in folder.glob("/".join(["[0-9]*"] * (3 - len(numeric)))):
            key = "/".join(day.relative_to(self.news).parts)
            if day.is_dir() and all(part.isdigit() for part in key.split("/")):
                found.add(key)
        return found

    # -- the walk (runs in a worker thread) ---------------------------------------

    def _require_folder(self) -> None:
        if not self.news.is_dir():
            what = "not found" if not self.root.exists() else f"has no news/ folder ({self.news})"
            raise ArchiveError(f"archive folder {self.root} {what}")

    def _plan(self, marks: Mapping[str, str], only: Collection[str] | None, full: bool) -> _Plan:
        """What a walk lists: the day folders changed since their marks (all of
        ``only``), the known ones that are gone, and the marks of the month
        folders walked (see :meth:`_day_folders`)."""
        self._require_folder()
        now = self._clock()
        today = now.date()
        plan = _Plan(now)
        if only is not None:
            found = sorted((key, self.news / key) for key in only)
        else:
            found, plan.months = self._day_folders(marks, today, full)
            here = {key for key, _folder in found}
            for mark_key, value in marks.items():
                key = mark_key.removeprefix(_MARK_PREFIX)
                if not mark_key.startswith(_MARK_PREFIX) or key in here or value == _VANISHED:
                    continue
                # A light walk passes over unchanged months: their days are not gone.
                if full or key.rpartition("/")[0] in plan.months:
                    plan.vanished.append(_gone(key, self.news / key))
        for key, folder in found:
            try:
                folder_mtime = folder.stat().st_mtime_ns
            except FileNotFoundError:
                previous = marks.get(_MARK_PREFIX + key)
                if previous is not None and previous != _VANISHED:
                    plan.vanished.append(_gone(key, folder))
                continue
            previous = marks.get(_MARK_PREFIX + key, "")
            recent = _is_recent(key, today, self.lookback_days)
            if only is None and not recent and previous.partition(":")[0] == str(folder_mtime):
                continue
            plan.to_list.append((key, folder, folder_mtime, previous))
        return plan

    def _listed(self, to_list: Sequence[_ToList], now: datetime) -> list[_Day]:
        """The days of ``to_list`` whose listing changed, with their pages."""
        # Listings read every page's inode: several at once keep a disk busy when
        # the archive is not in the page cache (a first start after a reboot).
        with ThreadPoolExecutor(_LISTERS) as listers:
            listings = listers.map(_list_pages, [folder for _, folder, _, _ in to_list])
            changed: list[_Day] = []
            for (key, folder, folder_mtime, previous), (pages, bad, digest) in zip(
                to_list, listings, strict=True
            ):
                mark = f"{folder_mtime}:{digest}"
                if digest == previous.partition(":")[2]:
                    if mark != previous:
                        changed.append(_Day(key, folder, mark, ()))
                    continue
                names = frozenset(name for name, _size, _mtime in pages)
                changed.append(self._settled(_Day(key, folder, mark, pages, bad, names=names), now))
        return changed

    def _settled(self, day: _Day, now: datetime) -> _Day:
        """``day`` without the pages modified within the settle time of ``now`` (in
        either direction: a file server's clock may be a little ahead), and then
        without its new mark. A page dated further ahead is read: its date says
        nothing about when it was written."""
        settle = self.settle_ms * 1_000_000
        now_ns = (now - EPOCH) // timedelta(microseconds=1) * 1000
        fresh = [mtime for _name, _size, mtime in day.pages if abs(now_ns - mtime) < settle]
        if not fresh:
            return day
        settles_at = EPOCH + timedelta(microseconds=-(-(max(fresh) + settle) // 1000))
        pages = tuple(page for page in day.pages if abs(now_ns - page[2]) >= settle)
        return _Day(day.key, day.folder, None, pages, day.bad_names, settles_at, day.names)

    def _day_folders(
        self, marks: Mapping[str, str], today: date, full: bool
    ) -> tuple[list[tuple[str, Path]], dict[str, str]]:
        """Every day folder of the months walked, and each walked month's mark
        (its folder's mtime, read before its days are).

        A full walk walks every month. A light one only the months whose folder
        changed since their mark (a day folder made or removed changes it) and
        those of the recent days: it finds new days and the recent days' edits in
        a few hundred stats, whatever the archive's size, but not an edit to a
        page of an older day (its day folder changes, not its month's). The
        daemon walks light only while its folder watch, which sees those, is in
        place, and fully now and then besides."""
        folders = []
        months: dict[str, str] = {}
        # The months holding a day _is_recent holds recent: its oldest one's and later.
        oldest = today - timedelta(days=self.lookback_days - 1)
        for year in _numeric_dirs(self.news):
            for month in _numeric_dirs(year):
                key = f"{year.name}/{month.name}"
                try:
                    mark = str(month.stat().st_mtime_ns)
                except FileNotFoundError:
                    continue
                recent = (int(year.name), int(month.name)) >= (oldest.year, oldest.month)
                unchanged = marks.get(_MONTH_PREFIX + key) == mark
                if not full and unchanged and not recent:
                    continue
                months[key] = mark
                for day in _numeric_dirs(month):
                    folders.append((f"{key}/{day.name}", day))
        return sorted(folders), months

    def _batch(self, days: list[_Day]) -> PollBatch:
        batch = PollBatch()
        for day in days:
            if day.mark is not None:
                batch.marks[_MARK_PREFIX + day.key] = day.mark
                batch.day_marks[day.key] = _MARK_PREFIX + day.key
            if day.settles_at is not None:
                batch.unsettled[day.key] = day.settles_at
            if day.names is not None:
                batch.listed[day.key] = frozenset(f"news/{day.key}/{name}" for name in day.names)
            for shown, reason in day.bad_names:
                batch.problems.append(PageProblem(f"news/{day.key}/{shown}", reason))
            folder = str(day.folder)
            for name, size, _mtime in day.pages:
                path = f"news/{day.key}/{name}"
                if size > self.max_page_bytes:
                    batch.problems.append(
                        PageProblem(path, f"larger than {self.max_page_bytes} bytes")
                    )
                    continue
                # Read where it is parsed (RawPage.read), which rejects a file that
                # cannot be read, or has grown too large since it was listed, and
                # leaves one whose size moved since for a later poll.
                batch.pages.append(
                    RawPage(
                        path,
                        file=os.path.join(folder, name),
                        max_bytes=self.max_page_bytes,
                        size=size,
                        day=day.key,
                    )
                )
        return batch


def _numeric_dirs(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as entries:
            return [Path(e.path) for e in entries if e.name.isdigit() and e.is_dir()]
    except FileNotFoundError:
        return []


def _list_pages(folder: Path) -> tuple[_Listing, tuple[tuple[str, str], ...], str]:
    """The day's pages, its page files whose names cannot be pages (name shown,
    reason), and a digest of both listings."""
    listing: list[tuple[str, int, int]] = []
    bad: list[tuple[str, str]] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith(".md") and entry.name != "index.md" and entry.is_file():
                    stat = entry.stat()
                    listing.append((entry.name, stat.st_size, stat.st_mtime_ns))
    except FileNotFoundError:
        pass
    listing.sort()
    digest = hashlib.blake2b(repr(listing).encode(), digest_size=12).hexdigest()
    if not all(name.isascii() and name.isprintable() for name, _size, _mtime in listing):
        # Rare, so checked only when a cheap test fails: names beyond ASCII are
        # usually good UTF-8.
        kept = []
        for page in listing:
            if (reason := name_problem(page[0])) is None:
                kept.append(page)
            else:
                bad.append((shown_name(page[0]), reason))
        listing = kept
    return tuple(listing), tuple(bad), digest


def _is_recent(key: str, today: date, lookback_days: int) -> bool:
    try:
        year, month, day = (int(part) for part in key.split("/"))
        return (today - date(year, month, day)).days < lookback_days
    except ValueError:
        return True  # an odd folder name: cheap enough to list every time
