"""Reading the archive from an ``http://`` or ``https://`` base URL (README: "Your own archive").

This module owns :class:`HttpArchiveSource`: which day index pages a poll asks
for, how event links are found in them, conditional GET, the size caps, timeouts,
bounded concurrency, batching by bytes, redirects, the retry policy, which
addresses archive requests may reach, and the marks it leaves for the next poll.
Like every source it never parses a page and never touches the store.

Marks (keys start with ``http:``, values are compact JSON):

- ``http:news/2007/07/9/index.md`` and ``http:news/2007/07/9/<slug>.md`` ->
  ``{"e": ETag, "h": digest of the body, "m": Last-Modified}``, absent fields
  left out. ``{}`` means "fetch it in full next time" (after a failure).
  A day's index mark is written only when every page it links was fetched, in
  the day's last batch, so an index 304 always means "every page of this day is
  already known".
- ``http:poll`` -> ``{"day": "2007/07/9"}``: the last day a complete poll
  covered. Without it the poll is a first poll and backfills; after downtime it
  widens the window so that no day goes unseen.

What a poll fetches, oldest day first:

- the index of every day in the window: today and the ``lookback_days - 1``
  days before it, stretched back to cover the days since the last poll, and
  ``backfill_days`` on a first poll (also the cap on that stretch). Indexes are
  read a few days ahead of the day being fetched, not all at once, and only
  their links are kept;
- index 200: the first ``max_index_links`` pages it links of that day,
  conditionally; index 304: the pages of that day known from the marks, as
  many, conditionally, so an edited page is seen while its day is in the window;
  index 404: an empty day. A day with more links than that is a problem of its
  index, so its index mark is held back and the rest is never silently lost;
- a page whose body digest did not change is not offered again (a server that
  ignores conditional requests costs bandwidth, not ingest work);
- the links of an index read with 200 (within the cap) are the day's listing
  (``PollBatch.listed``, in the day's first batch): a stored event of that day
  whose page it no longer links has left the archive. A 304, a 404 or a failure
  lists nothing: no evidence either way.

Batches: a day's pages are handed on as they arrive, in batches whose page
bodies add up to at most ``batch_bytes`` (at least one page each); a day has one
batch or more, a batch never spans two days. The source holds the batch being
filled and at most ``max_concurrency`` bodies in flight (the pipeline holds one
or two earlier batches), whatever the size of a day: no new request starts
while a batch waits to be taken.

Redirects are followed by hand, at most ``_MAX_REDIRECTS`` hops and only to the
archive's own origin (scheme, host, port): a redirect elsewhere fails that page
or index with a reason before anything is asked of the other origin, so it can
neither reach another host nor slip past the filter on other-host links.

Addresses: the source's own connector applies a :class:`TargetPolicy` (see
:func:`archive_policy`) when it resolves and connects, as the notifier's SSRF
guard does: an archive named by a public host cannot be resolved to a loopback,
private or metadata address. An archive configured at such an address (an IP
literal, or ``localhost``) may reach that address; ``allow_private`` opens the
private kinds for an archive reached by name on the operator's own network.

Retries: 5xx, 429, timeouts, dropped connections and truncated bodies are tried
again up to ``retries`` times, after ``backoff * 2**n`` seconds or the
server's Retry-After, both capped at ``max_backoff``. Other answers, refused
redirects and refused addresses are final. A page that still fails is a
:class:`PageProblem`; when no day index at all can be read (or the host cannot
be reached) the poll raises :class:`ArchiveError`.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import logging
import re
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from ipaddress import IPv4Address, IPv4Network, IPv6Network, ip_address, ip_network

import aiohttp
from aiohttp.abc import AbstractResolver
from multidict import CIMultiDictProxy
from yarl import URL

from feedbot.archive.source import PageProblem, PollBatch, RawPage
from feedbot.clock import utc_now
from feedbot.errors import ArchiveError
from feedbot.headers import parse_retry_after
from feedbot.notify.ssrf import GuardedConnector, TargetPolicy, classify, refusal_of

log = logging.getLogger(__name__)

_MARK_PREFIX = "http:"
_POLL_MARK = _MARK_PREFIX + "poll"  # never clashes with a page: those start with "news/"
_CHUNK_BYTES = 64 * 1024
# A static archive moves a page once at most (http -> https is another origin
# anyway); more hops than this is a loop or someone stalling us.
_MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_SHOWN = 200  # characters of a hostile Location shown in a reason
_LOOPBACK = (IPv4Network("127.0.0.0/8"), IPv6Network("::1/128"))
_NOT_URL = r"\s\"'<>()\[\]"
# An event link anywhere in an index, whatever its markup (markdown, HTML, bare).
# Found in two linear steps, the path first, then the scheme and host in the few
# characters before it: one regex spanning both is quadratic on a long token,
# and an index may be binary junk.
_EVENT_PATH = re.compile(
    r"\bnews/(?P<year>\d{4})/(?P<month>\d{2})/(?P<day>\d{1,2})/"
    rf"(?P<slug>[^/?#{_NOT_URL}]+)\.md(?![^?#{_NOT_URL}])"
)
_URL_HEAD = re.compile(rf"[^{_NOT_URL}]*")
_ORIGIN = re.compile(rf"(?:https?:)?//(?P<authority>[^/{_NOT_URL}]+)")
_MAX_URL_HEAD = 512  # no archive base URL is longer
_DAY_KEY = re.compile(r"^\s*(\d{4})/(\d{1,2})/(\d{1,2})\s*$")
_SPACES = re.compile(r"\s+")


def _default_user_agent() -> str:
    try:
        return f"feedbot/{version('feedbot')}"
    except PackageNotFoundError:
        return "feedbot"


def day_key(day: date) -> str:
    """The archive's folder key of a day: ``2007/07/9`` (no leading zero on the day)."""
    return f"{day.year:04d}/{day.month:02d}/{day.day}"


def _parse_day_key(key: str) -> date:
    match = _DAY_KEY.match(key)
    try:
        if match is None:
            raise ValueError
        return date(*(int(part) for part in match.groups()))
    except ValueError:
        raise ValueError(f"not a day key (YYYY/MM/D): {key!r}") from None


def _index_path(day: date) -> str:
    return f"news/{day_key(day)}/index.md"


def _one_line(text: object) -> str:
    return _SPACES.sub(" ", str(text)).strip()


def _origin(url: URL) -> tuple[str, str, int | None]:
    return url.scheme.lower(), (url.host or "").lower(), url.port


def archive_policy(base_url: str, *, allow_private: bool = False) -> TargetPolicy:
    """Which addresses requests to the archive at ``base_url`` may reach.

    A host that is a non-public IP literal may reach exactly that address, and
    ``localhost`` (RFC 6761) the loopback networks: the operator chose them. Any
    other name is taken as public: it may not resolve to a non-public address
    unless ``allow_private`` (never to cloud metadata, multicast or unspecified).
    """
    host = URL(base_url).host or ""
    allowed: tuple[IPv4Network | IPv6Network, ...] = ()
    try:
        literal = ip_address(host)
    except ValueError:
        if host.lower().rstrip(".") == "localhost" or host.lower().endswith(".localhost"):
            allowed = _LOOPBACK
    else:
        if classify(literal) is not None:
            bits = 32 if isinstance(literal, IPv4Address) else 128
            allowed = (ip_network((int(literal), bits)),)
    return TargetPolicy(allow_private=allow_private, allow_cidrs=allowed)


@dataclass(frozen=True, slots=True)
class _Mark:
    """What is remembered of one fetched page; see the module docstring."""

    etag: str | None = None
    last_modified: str | None = None
    digest: str | None = None

    @classmethod
    def load(cls, value: str | None) -> _Mark | None:
        if value is None:
            return None
        try:
            data = json.loads(value)
        except ValueError:
            return _Mark()  # unreadable: known, but fetched in full
        if not isinstance(data, dict):
            return _Mark()
        fields = (data.get("e"), data.get("m"), data.get("h"))
        return cls(*(field if isinstance(field, str) else None for field in fields))

    def dump(self) -> str:
        data = {"e": self.etag, "m": self.last_modified, "h": self.digest}
        return json.dumps(
            {k: v for k, v in data.items() if v is not None}, separators=(",", ":"), sort_keys=True
        )

    def request_headers(self) -> dict[str, str]:
        headers = {}
        if self.etag is not None:
            headers["If-None-Match"] = self.etag
        if self.last_modified is not None:
            headers["If-Modified-Since"] = self.last_modified
        return headers


class _Outcome(enum.Enum):
    OK = enum.auto()
    NOT_MODIFIED = enum.auto()
    MISSING = enum.auto()
    FAILED = enum.auto()


@dataclass(frozen=True, slots=True)
class _Fetched:
    path: str
    outcome: _Outcome
    body: bytes = b""
    etag: str | None = None
    last_modified: str | None = None
    digest: str | None = None  # of ``body``, with OK
    reason: str = ""
    unreachable: bool = False  # the host itself could not be reached
    error: Exception | None = None  # the aiohttp error behind ``reason``, for chaining


@dataclass(frozen=True, slots=True)
class _Index:
    """A day's index as a poll keeps it: the answer without its body, the pages
    to fetch, and why some were left out."""

    fetched: _Fetched
    pages: tuple[str, ...] = ()
    problem: str | None = None
    # The day's key -> every page of the day, when the index was read whole (a
    # 200 within the link cap): the day's listing (PollBatch.listed).
    listed: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Retry:
    reason: str
    retry_after: float | None = None
    unreachable: bool = False
    error: Exception | None = None


def _digest(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def _status_text(response: aiohttp.ClientResponse) -> str:
    return f"HTTP {response.status} {response.reason or ''}".strip()


class HttpArchiveSource:
    """An archive served over HTTP(S) in the layout of README: "The archive format".

    ``policy`` (default: :func:`archive_policy` of ``base_url``) and ``resolver``
    (default: aiohttp's) apply to the session the source makes itself, which
    owns the resolver; an injected ``session`` is used as it is.
    """

    def __init__(
        self,
        base_url: str,
        *,
        lookback_days: int = 3,
        backfill_days: int = 30,
        max_concurrency: int = 8,
        timeout: float = 10.0,
        max_page_bytes: int = 1_048_576,
        batch_bytes: int = 33_554_432,
        max_index_links: int = 1000,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        session: aiohttp.ClientSession | None = None,
        policy: TargetPolicy | None = None,
        resolver: AbstractResolver | None = None,
        user_agent: str | None = None,
    ) -> None:
        base = URL(base_url)
        if base.scheme not in ("http", "https") or not base.host or base.query or base.fragment:
            raise ArchiveError(f"{base_url}: not an http:// or https:// archive base URL")
        for name, value in (
            ("lookback_days", lookback_days),
            ("backfill_days", backfill_days),
            ("max_concurrency", max_concurrency),
            ("max_page_bytes", max_page_bytes),
            ("max_index_links", max_index_links),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        if batch_bytes < max_page_bytes:
            # Else one page could not fit in a batch, which must hold at least one.
            raise ValueError(f"batch_bytes ({batch_bytes}) is below max_page_bytes")
        if retries < 0 or timeout <= 0 or backoff < 0 or max_backoff < 0:
            raise ValueError("retries, backoff and max_backoff must be >= 0, timeout > 0")
        # Pages are joined onto the base as strings, so the base must end in "/".
        self._base = str(base) if str(base).endswith("/") else f"{base}/"
        self._base_url = URL(self._base)
        self.lookback_days = lookback_days
        self.backfill_days = max(backfill_days, lookback_days)
        self.max_page_bytes = max_page_bytes
        self.batch_bytes = batch_bytes
        self.max_index_links = max_index_links
        self.retries = retries
        self._max_concurrency = max_concurrency
        self._backoff = float(backoff)
        self._max_backoff = float(max_backoff)
        # sock_connect makes an unanswered connect a ConnectionTimeoutError, which
        # tells "host unreachable" apart from "page slow".
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=timeout)
        self._clock = clock
        self._sleep = sleep
        # One semaphore per source, so concurrent polls share the bound too.
        self._slots = asyncio.Semaphore(max_concurrency)
        self._session = session
        self._owns_session = session is None
        self.policy = policy if policy is not None else archive_policy(self._base)
        self._resolver = resolver
        self._headers = {"User-Agent": user_agent or _default_user_agent()}

    @property
    def description(self) -> str:
        shown = self._base_url
        if shown.password is not None:
            shown = shown.with_password("***")
        return str(shown)

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def poll(
        self, marks: Mapping[str, str], *, days: Collection[str] | None = None, full: bool = True
    ) -> AsyncIterator[PollBatch]:
        """Yield the batches of each day of the window (or of ``days``, exactly
        those days whatever the window), oldest day first; days with nothing new
        are skipped."""
        today = self._today()
        if days is not None:
            window = sorted({_parse_day_key(key) for key in days})
        else:
            window = self._window(marks, today)
        if not window:
            return
        session = self._client()
        # The newest index goes first, alone: if the host refuses connections or its
        # name does not resolve, one request (and its retries) says so, instead of
        # every day of a backfill hammering a host that is down.
        newest = await self._fetch_index(session, window[-1], marks)
        if newest.fetched.unreachable:
            raise self._unreadable(newest.fetched) from newest.fetched.error
        upcoming = iter(window[:-1])
        ahead: deque[asyncio.Task[_Index]] = deque()
        # The problems of failed indexes wait until one index is read: if none
        # can be, the poll fails as a whole instead.
        waiting: list[PollBatch] = []
        read_one = False
        missing = 0
        try:
            for position in range(len(window)):
                last = position == len(window) - 1
                if last:
                    index = newest
                else:
                    while (
                        len(ahead) < self._max_concurrency
                        and (next_day := next(upcoming, None)) is not None
                    ):
                        ahead.append(
                            asyncio.create_task(self._fetch_index(session, next_day, marks))
                        )
                    index = await ahead.popleft()
                closing = {_POLL_MARK: _poll_mark(today)} if last and days is None else {}
                if index.fetched.outcome is _Outcome.FAILED:
                    batch = PollBatch(
                        problems=[PageProblem(index.fetched.path, index.fetched.reason)]
                    )
                    for key, value in closing.items():
                        _set_mark(batch.marks, marks, key, value)
                    if read_one:
                        yield batch
                    else:
                        waiting.append(batch)
                    continue
                read_one = True
                for batch in waiting:
                    yield batch
                waiting.clear()
                missing += index.fetched.outcome is _Outcome.MISSING
                async with aclosing(self._poll_day(session, index, marks, closing)) as batches:
                    async for batch in batches:
                        yield batch
        finally:
            for task in ahead:
                task.cancel()
            if ahead:
                await asyncio.wait(ahead)
        if not read_one:
            raise self._unreadable(newest.fetched) from newest.fetched.error
        if missing == len(window) > 1:
            log.warning("%s: no day index found for %d days", self.description, len(window))

    # -- which days ---------------------------------------------------------------

    def _today(self) -> date:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the clock must return timezone-aware datetimes")
        return now.astimezone(UTC).date()

    def _window(self, marks: Mapping[str, str], today: date) -> list[date]:
        oldest = today - timedelta(days=self.backfill_days - 1)
        last = _last_polled(marks.get(_POLL_MARK))
        if last is None:
            start = oldest
        else:
            # Look back from the last polled day as well as from today, so the days
            # that passed while feedbot was down are not skipped (up to backfill_days).
            # A last day in the future (the clock went back) counts as today.
            start = max(oldest, min(last, today) - timedelta(days=self.lookback_days - 1))
        return [start + timedelta(days=n) for n in range((today - start).days + 1)]

    # -- the day indexes ----------------------------------------------------------

    async def _fetch_index(
        self, session: aiohttp.ClientSession, day: date, marks: Mapping[str, str]
    ) -> _Index:
        fetched = await self._fetch(session, _index_path(day), marks)
        cap = self.max_index_links
        if fetched.outcome is _Outcome.OK:
            pages = self._links(fetched.body, day, cap + 1)
            over = f"lists more than {cap} event pages of its day; only the first {cap} were read"
        elif fetched.outcome is _Outcome.NOT_MODIFIED:
            pages = _known_pages(marks, day)
            over = f"more than {cap} pages of its day are known; only the first {cap} were read"
        else:
            return _Index(fetched)
        problem = over if len(pages) > cap else None
        # What a 200 links is the day's listing; a 304 says nothing new, and the
        # known pages it names are not a listing (a removed page stays in them).
        whole = fetched.outcome is _Outcome.OK and problem is None
        listed = {day_key(day): frozenset(pages)} if whole else {}
        # Only the links are kept: a day's index may be as large as a page.
        return _Index(replace(fetched, body=b""), tuple(pages[:cap]), problem, listed)

    def _unreadable(self, fetched: _Fetched) -> ArchiveError:
        return ArchiveError(
            f"cannot read the archive at {self.description}: {fetched.path}: {fetched.reason}"
        )

    # -- one day ------------------------------------------------------------------

    async def _poll_day(
        self,
        session: aiohttp.ClientSession,
        index: _Index,
        marks: Mapping[str, str],
        closing: Mapping[str, str],
    ) -> AsyncGenerator[PollBatch]:
        """The day's pages in batches of at most ``batch_bytes``, as they arrive;
        the last batch carries the index mark (if the whole day was read) and
        the ``closing`` marks."""
        batch = PollBatch()
        if index.problem is not None:
            batch.problems.append(PageProblem(index.fetched.path, index.problem))
        # In the day's first batch: before any page of the day is stored.
        batch.listed.update(index.listed)
        held = 0
        complete = True
        paths = iter(index.pages)
        running: set[asyncio.Task[_Fetched]] = set()
        try:
            while True:
                while (
                    len(running) < self._max_concurrency and (path := next(paths, None)) is not None
                ):
                    running.add(asyncio.create_task(self._fetch(session, path, marks)))
                if not running:
                    break
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    fetched = task.result()
                    page = self._changed_page(fetched, marks)
                    if (
                        page is not None
                        and batch.pages
                        and held + len(page.body) > self.batch_bytes
                    ):
                        complete = complete and not batch.problems
                        yield batch
                        batch, held = PollBatch(), 0
                    if page is not None:
                        batch.pages.append(page)
                        held += len(page.body)
                    self._take(batch, fetched, marks)
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.wait(running)
        if complete and not batch.problems:
            self._remember(batch, index.fetched, marks)
        for key, value in closing.items():
            _set_mark(batch.marks, marks, key, value)
        if batch.pages or batch.problems or batch.marks or batch.listed:
            yield batch

    @staticmethod
    def _changed_page(fetched: _Fetched, marks: Mapping[str, str]) -> RawPage | None:
        """The page to offer: fetched, and new or changed since its mark."""
        if fetched.outcome is not _Outcome.OK:
            return None
        old = _Mark.load(marks.get(_MARK_PREFIX + fetched.path))
        if old is not None and old.digest == fetched.digest:
            return None
        return RawPage(fetched.path, fetched.body)

    def _take(self, batch: PollBatch, fetched: _Fetched, marks: Mapping[str, str]) -> None:
        """The problem or the mark that ``fetched`` leaves in ``batch``."""
        if fetched.outcome in (_Outcome.FAILED, _Outcome.MISSING):
            batch.problems.append(PageProblem(fetched.path, fetched.reason))
            # Forget the validators: the next poll fetches the page in full and
            # offers it again, so the ingest pipeline can clear the problem.
            _set_mark(batch.marks, marks, _MARK_PREFIX + fetched.path, _Mark().dump())
            return
        self._remember(batch, fetched, marks)

    def _remember(self, batch: PollBatch, fetched: _Fetched, marks: Mapping[str, str]) -> None:
        key = _MARK_PREFIX + fetched.path
        old = _Mark.load(marks.get(key)) or _Mark()
        if fetched.outcome is _Outcome.OK:
            new = _Mark(fetched.etag, fetched.last_modified, fetched.digest)
        elif fetched.outcome is _Outcome.NOT_MODIFIED:
            # A 304 may carry fresher validators; the body, hence the digest, is unchanged.
            new = _Mark(
                fetched.etag or old.etag, fetched.last_modified or old.last_modified, old.digest
            )
        else:
            return
        _set_mark(batch.marks, marks, key, new.dump())

    def _links(self, body: bytes, day: date, limit: int) -> list[str]:
        """The event pages of ``day`` that its index links to, in order, once
        each, at most ``limit`` of them."""
        text = body.decode("utf-8", errors="replace")
        found: dict[str, None] = {}
        for match in _EVENT_PATH.finditer(text):
            before = text[max(0, match.start() - _MAX_URL_HEAD) : match.start()]
            head = _URL_HEAD.match(before[::-1])
            origin = _ORIGIN.search(head[0][::-1]) if head else None
            if origin is not None and not self._same_host(origin["authority"]):
                continue
            try:
                linked = date(int(match["year"]), int(match["month"]), int(match["day"]))
            except ValueError:
                continue
            # Only this day's pages: other days are found through their own index.
            if linked != day or match["slug"] == "index":
                continue
            found[f"news/{day_key(day)}/{match['slug']}.md"] = None
            if len(found) >= limit:
                break
        return list(found)

    def _same_host(self, authority: str) -> bool:
        try:
            linked = URL(f"{self._base_url.scheme}://{authority}")
        except ValueError:
            return False
        if (linked.host or "").lower() != (self._base_url.host or "").lower():
            return False
        return linked.explicit_port is None or linked.port == self._base_url.port

    # -- one request, with retries ------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or (self._owns_session and self._session.closed):
            connector = GuardedConnector(self.policy, resolver=self._resolver)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, headers=self._headers
            )
            self._owns_session = True
        return self._session

    async def _fetch(
        self, session: aiohttp.ClientSession, path: str, marks: Mapping[str, str]
    ) -> _Fetched:
        mark = _Mark.load(marks.get(_MARK_PREFIX + path))
        headers = {**self._headers, **(mark.request_headers() if mark else {})}
        url = URL(self._base + path)
        attempts = self.retries + 1
        for attempt in range(attempts):
            # The slot is held per attempt, not across the backoff sleep.
            async with self._slots:
                result = await self._attempt(session, url, path, headers)
            if isinstance(result, _Fetched):
                return result
            if attempt + 1 < attempts:
                delay = self._delay(attempt, result.retry_after)
                log.debug("%s: %s; retrying in %.1f s", url, result.reason, delay)
                await self._sleep(delay)
        tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
        return _Fetched(
            path,
            _Outcome.FAILED,
            reason=f"{result.reason} (gave up after {tries})",
            unreachable=result.unreachable,
            error=result.error,
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self._max_backoff)
        return min(self._backoff * 2.0**attempt, self._max_backoff)

    async def _attempt(
        self, session: aiohttp.ClientSession, url: URL, path: str, headers: Mapping[str, str]
    ) -> _Fetched | _Retry:
        try:
            # Redirects by hand: aiohttp would follow them to any host.
            for _hop in range(_MAX_REDIRECTS + 1):
                async with session.get(
                    url, headers=headers, timeout=self._timeout, allow_redirects=False
                ) as response:
                    if response.status not in _REDIRECTS:
                        return await self._answer(path, response)
                    target = self._redirect(url, response)
                    if isinstance(target, str):
                        return _Fetched(path, _Outcome.FAILED, reason=target)
                    url = target
            return _Fetched(path, _Outcome.FAILED, reason=f"more than {_MAX_REDIRECTS} redirects")
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            if (refusal := refusal_of(exc)) is not None:  # final: the address will not change
                return _Fetched(
                    path, _Outcome.FAILED, reason=str(refusal), unreachable=True, error=exc
                )
            return _Retry(f"cannot connect: {_one_line(exc)}", unreachable=True, error=exc)
        except TimeoutError as exc:
            return _Retry(f"timed out after {self._timeout.total:g} s", error=exc)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            reason = _one_line(exc) or type(exc).__name__
            return _Retry(f"connection failed: {reason}", error=exc)
        except aiohttp.ClientError as exc:  # a bad URL: final
            reason = _one_line(exc) or type(exc).__name__
            return _Fetched(path, _Outcome.FAILED, reason=f"request failed: {reason}", error=exc)

    def _redirect(self, url: URL, response: aiohttp.ClientResponse) -> URL | str:
        """Where a redirect leads, or why it is not followed."""
        location = response.headers.get("Location")
        if not location:
            return f"{_status_text(response)} without a Location"
        shown = _one_line(location)[:_MAX_SHOWN]
        try:
            target = url.join(URL(location)).with_fragment(None)
        except (ValueError, TypeError):
            return f"{_status_text(response)} to {shown!r}: not a URL"
        if _origin(target) != _origin(self._base_url):
            return f"{_status_text(response)} to another origin refused: {shown}"
        return target

    async def _answer(self, path: str, response: aiohttp.ClientResponse) -> _Fetched | _Retry:
        status = response.status
        if status == 304:
            return self._fetched(path, _Outcome.NOT_MODIFIED, response.headers)
        if status in (404, 410):
            return _Fetched(path, _Outcome.MISSING, reason=_status_text(response))
        if status >= 500 or status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock())
            return _Retry(_status_text(response), retry_after)
        if not 200 <= status < 300:
            return _Fetched(path, _Outcome.FAILED, reason=_status_text(response))
        body = await self._read_capped(response)
        if body is None:
            return _Fetched(
                path, _Outcome.FAILED, reason=f"larger than {self.max_page_bytes} bytes"
            )
        return self._fetched(path, _Outcome.OK, response.headers, body)

    @staticmethod
    def _fetched(
        path: str, outcome: _Outcome, headers: CIMultiDictProxy[str], body: bytes = b""
    ) -> _Fetched:
        digest = _digest(body) if outcome is _Outcome.OK else None
        return _Fetched(
            path, outcome, body, headers.get("ETag"), headers.get("Last-Modified"), digest
        )

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes | None:
        """The body, or ``None`` past ``max_page_bytes``; never buffers more than
        the cap plus one chunk."""
        encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
        length = response.content_length
        if not encoded and length is not None and length > self.max_page_bytes:
            return None
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
            size += len(chunk)
            if size > self.max_page_bytes:
                return None
            chunks.append(chunk)
        return b"".join(chunks)


def _last_polled(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        data = json.loads(value)
        return _parse_day_key(data["day"]) if isinstance(data, dict) else None
    except (ValueError, KeyError, TypeError):
        return None


def _known_pages(marks: Mapping[str, str], day: date) -> list[str]:
    """The pages of ``day`` fetched (or tried) before, from their marks."""
    prefix = f"{_MARK_PREFIX}news/{day_key(day)}/"
    return sorted(
        key.removeprefix(_MARK_PREFIX)
        for key in marks
        if key.startswith(prefix)
        and key.endswith(".md")
        and not key.endswith("/index.md")
        and "/" not in key[len(prefix) :]
    )


def _poll_mark(today: date) -> str:
    return json.dumps({"day": day_key(today)}, separators=(",", ":"))


def _set_mark(batch_marks: dict[str, str], marks: Mapping[str, str], key: str, value: str) -> None:
    # Only changed marks travel: a poll where nothing moved yields no batch at all.
    if marks.get(key) != value:
        batch_marks[key] = value
