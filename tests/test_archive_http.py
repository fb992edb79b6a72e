"""HttpArchiveSource against a real aiohttp server on loopback.

The server serves a small archive written into ``tmp_path`` with ETag and
Last-Modified validators and 304 answers, counts every request by path and
status, tracks how many requests are in flight at once, and can be told to
answer a path with an error, a slow answer or a streamed body. The source gets
a fixed clock and a sleep that records the backoff delays without waiting.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from feedbot.archive.http import HttpArchiveSource, archive_policy
from feedbot.archive.source import PollBatch
from feedbot.errors import ArchiveError, ConfigError
from feedbot.factory import make_source as make_daemon_source
from feedbot.settings import ArchiveSettings, Settings, load_settings

NOW = datetime(2007, 7, 10, 12, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[1]
SEED_SLUG = (
    "lal-masjid-siege-an-attempt-to-negotiate-a-peaceful-end-to-the-seven-day-standoff-"
    "at-islamabad-s-red-mosque-ends-without-any-progress"
)
SEED_PATH = f"news/2007/07/9/{SEED_SLUG}.md"


def seed_bytes() -> bytes:
    for candidate in (
        REPO / "tests" / "data" / "seed.md",
        REPO.parent / "shared" / "seeds" / "000_ffb26b68fc8d7c51.txt",
    ):
        if candidate.exists():
            return candidate.read_bytes()
    return page_text("2007/07/9", SEED_SLUG, "Lal Masjid siege: talks end without progress.")


def page_text(day: str, slug: str, title: str) -> bytes:
    year, month, dom = day.split("/")
    return (
        f"Formats: [HTML](/news/{day}/{slug}.html)  [JSON](/news/{day}/{slug}.json)\n\n"
        f"### [{year}-{month}-{dom}](/news/{day}/index.md)\n\n"
        f"#  {title}\n\n### Sources:\n\n1. [Example](https://example.org/{slug})\n"
    ).encode()


# -- the server -------------------------------------------------------------------


@dataclass
class ArchiveServer:
    root: Path
    url: str = ""
    requests: Counter[tuple[str, int]] = field(default_factory=Counter)
    # path -> what to do on its next requests: a status code, or "slow"
    script: dict[str, list[int | str]] = field(default_factory=dict)
    retry_after: dict[str, str] = field(default_factory=dict)
    fail_everything: int | None = None
    streamed: set[str] = field(default_factory=set)  # sent chunked, no Content-Length
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location of a 302
    delay: float = 0.0
    slow_seconds: float = 2.0
    in_flight: int = 0
    max_in_flight: int = 0

    def count(self, path: str, status: int | None = None) -> int:
        return sum(n for (p, s), n in self.requests.items() if p == path and status in (None, s))

    def statuses(self) -> set[int]:
        return {status for _path, status in self.requests}

    def write(self, path: str, body: bytes | str, *, mtime_step: int = 0) -> None:
        file = self.root / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(body.encode() if isinstance(body, str) else body)
        if mtime_step:  # a new Last-Modified even within the file system's resolution
            stat = file.stat()
            os.utime(file, (stat.st_atime, stat.st_mtime + mtime_step))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path.lstrip("/")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            response = await self._answer(request, path)
        finally:
            self.in_flight -= 1
        self.requests[(path, response.status)] += 1
        return response

    async def _answer(self, request: web.Request, path: str) -> web.StreamResponse:
        if self.fail_everything is not None:
            return web.Response(status=self.fail_everything)
        if path in self.redirects:
            return web.Response(status=302, headers={"Location": self.redirects[path]})
        queued = self.script.get(path)
        if queued:
            action = queued.pop(0)
            if action == "slow":
                await asyncio.sleep(self.slow_seconds)
            elif isinstance(action, int):
                headers = (
                    {"Retry-After": self.retry_after.pop(path)} if path in self.retry_after else {}
                )
                return web.Response(status=action, headers=headers)
        file = self.root / path
        if not file.is_file():
            return web.Response(status=404)
        body = file.read_bytes()
        mtime = int(file.stat().st_mtime)
        headers = {
            "ETag": f'"{hashlib.sha1(body).hexdigest()[:16]}"',
            "Last-Modified": formatdate(mtime, usegmt=True),
        }
        if _not_modified(request, headers["ETag"], mtime):
            return web.Response(status=304, headers=headers)
        if path in self.streamed:
            response = web.StreamResponse(headers=headers)
            response.enable_chunked_encoding()
            await response.prepare(request)
            for start in range(0, len(body), 32 * 1024):
                await response.write(body[start : start + 32 * 1024])
            await response.write_eof()
            return response
        return web.Response(body=body, headers=headers, content_type="text/markdown")


def _not_modified(request: web.Request, etag: str, mtime: int) -> bool:
    if (tags := request.headers.get("If-None-Match")) is not None:
        return any(tag.strip() in (etag, "*") for tag in tags.split(","))
    if (since := request.headers.get("If-Modified-Since")) is not None:
        return mtime <= parsedate_to_datetime(since).timestamp()
    return False


async def _serve(root: Path) -> AsyncIterator[ArchiveServer]:
    served = ArchiveServer(root)
    app = web.Application()
    app.router.add_get("/{tail:.*}", served.handle)
    # handler_cancellation: a client that timed out must not keep a slow handler alive.
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    served.url = f"http://127.0.0.1:{port}/"
    yield served
    await runner.cleanup()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ArchiveServer]:
    async for served in _serve(tmp_path / "site"):
        yield served


@pytest.fixture
async def elsewhere(tmp_path: Path) -> AsyncIterator[ArchiveServer]:
    """Another origin (another port) serving the same pages: redirects must not reach it."""
    async for served in _serve(tmp_path / "site"):
        yield served


@pytest.fixture
def site(server: ArchiveServer) -> ArchiveServer:
    """The server with a few days of archive; 2007/07/8 has no index (404)."""
    other = "second-day-talks-resume"
    server.write(SEED_PATH, seed_bytes())
    server.write(f"news/2007/07/9/{other}.md", page_text("2007/07/9", other, "Talks resume."))
    server.write(
        "news/2007/07/9/index.md",
        f"# 2007-07-9\n\n"
        f"1. [Lal Masjid siege](/news/2007/07/9/{SEED_SLUG}.md)\n"
        f'2. <a href="news/2007/07/9/{other}.md">Talks resume</a>\n'
        f"3. [again, absolute]({server.url}news/2007/07/9/{other}.md)\n"
        "[previous day](/news/2007/07/8/index.md) [next day](/news/2007/07/10/index.md)\n"
        "[elsewhere](https://mirror.example/news/2007/07/9/foreign-page.md)\n"
        "[a follow-up on another day](/news/2007/07/10/storming-of-the-mosque.md)\n",
    )
    for slug in ("storming-of-the-mosque", "ghazi-confirmed-dead"):
        server.write(f"news/2007/07/10/{slug}.md", page_text("2007/07/10", slug, slug))
    server.write(
        "news/2007/07/10/index.md",
        "* /news/2007/07/10/storming-of-the-mosque.md\n"
        "* /news/2007/07/10/ghazi-confirmed-dead.md\n",
    )
    server.write("news/2007/06/20/old-event.md", page_text("2007/06/20", "old-event", "Old."))
    server.write("news/2007/06/20/index.md", "[Old](/news/2007/06/20/old-event.md)\n")
    # Beyond the 30-day backfill: must never be asked for.
    server.write("news/2007/05/1/ancient.md", page_text("2007/05/1", "ancient", "Ancient."))
    server.write("news/2007/05/1/index.md", "[Ancient](/news/2007/05/1/ancient.md)\n")
    return server


ALL_PAGES = {
    "news/2007/06/20/old-event.md",
    SEED_PATH,
    "news/2007/07/9/second-day-talks-resume.md",
    "news/2007/07/10/storming-of-the-mosque.md",
    "news/2007/07/10/ghazi-confirmed-dead.md",
}


# -- the source -------------------------------------------------------------------


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
async def make_source(
    server: ArchiveServer, sleeps: list[float]
) -> AsyncIterator[Callable[..., HttpArchiveSource]]:
    made: list[HttpArchiveSource] = []

    async def record_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)

    def make(**options: Any) -> HttpArchiveSource:
        options.setdefault("base_url", server.url)
        options.setdefault("clock", lambda: NOW)
        options.setdefault("sleep", record_sleep)
        source = HttpArchiveSource(**options)
        made.append(source)
        return source

    yield make
    for source in made:
        await source.aclose()


async def poll(
    source: HttpArchiveSource, marks: dict[str, str], days: Collection[str] | None = None
) -> list[PollBatch]:
    """One poll; like the ingest pipeline, fold every batch's marks into ``marks``."""
    batches = []
    async for batch in source.poll(dict(marks), days=days):
        marks.update(batch.marks)
        batches.append(batch)
    return batches


def pages_of(batches: list[PollBatch]) -> dict[str, bytes]:
    return {page.path: page.body for batch in batches for page in batch.pages}


def problems_of(batches: list[PollBatch]) -> dict[str, str]:
    return {problem.path: problem.reason for batch in batches for problem in batch.problems}


# -- tests ------------------------------------------------------------------------


async def test_first_poll_backfills_then_everything_is_304(
    site: ArchiveServer, make_source: Callable[..., HttpArchiveSource]
) -> None:
    source = make_source()
    assert source.description == site.url
    marks: dict[str, str] = {}

    batches = await poll(source, marks)

    assert pages_of(batches) == {path: (site.root / path).read_bytes() for path in ALL_PAGES}
    assert pages_of(batches)[SEED_PATH] == seed_bytes()
    assert problems_of(batches) == {}
    # One batch per day with something in it, oldest first, each with its own marks.
    assert [sorted(p.path for p in b.pages) for b in batches] == [
        ["news/2007/06/20/old-event.md"],
        sorted([SEED_PATH, "news/2007/07/9/second-day-talks-resume.md"]),
        ["news/2007/07/10/ghazi-confirmed-dead.md", "news/2007/07/10/storming-of-the-mosque.md"],
    ]
    assert "http:news/2007/07/9/index.md" in batches[1].marks
    assert set(batches[1].marks) >= {f"http:{p}" for p in pages_of(batches[1:2])}
    assert batches[-1].marks["http:poll"] == '{"day":"2007/07/10"}'
    seed_mark = marks[f"http:{SEED_PATH}"]
    assert json.loads(seed_mark).keys() == {"e", "m", "h"} and '", "' not in seed_mark
    # The 30-day window (2007/06/11 to 2007/07/10), every index once; each page once,
    # though the 9th links one of its pages twice; no other host, no other day.
    assert site.count("news/2007/06/11/index.md", 404) == 1
    assert site.count("news/2007/06/10/index.md") == 0
    assert site.count("news/2007/05/1/ancient.md") == site.count("news/2007/05/1/index.md") == 0
    assert site.count("news/2007/07/9/second-day-talks-resume.md") == 1
    assert site.count("news/2007/07/9/foreign-page.md") == 0
    assert sum(site.requests.values()) == 30 + len(ALL_PAGES)

    site.requests.clear()
    assert await poll(source, marks) == []
    # Window now: the 3 days up to today. Known pages re-checked, all 304.
    assert site.statuses() == {304, 404}
    assert site.count("news/2007/07/8/index.md", 404) == 1
    assert site.count("news/2007/07/9/index.md", 304) == 1
    assert site.count(SEED_PATH, 304) == 1
    assert site.count("news/2007/07/10/ghazi-confirmed-dead.md", 304) == 1
    assert site.count("news/2007/06/20/index.md") == 0


async def test_changed_and_added_pages_are_fetched_again(
    site: ArchiveServer, make_source: Callable[..., HttpArchiveSource]
) -> None:
    source = make_source()
    marks: dict[str, str] = {}
    await poll(source, marks)
    edited = "news/2007/07/9/second-day-talks-resume.md"
    site.write(edited, page_text("2007/07/9", "second-day-talks-resume", "Edited."), mtime_step=5)
    added = "news/2007/07/10/a-late-event.md"
    site.write(added, page_text("2007/07/10", "a-late-event", "Late."))
    index = (site.root / "news/2007/07/10/index.md").read_text()
    site.write("news/2007/07/10/index.md", index + f"* /{added}\n", mtime_step=5)
    before = marks[f"http:{edited}"]

    batches = await poll(source, marks)

    # The 9th's index is unchanged (304), yet its edited page is seen; the 10th's
    # index changed and brings the new page; unchanged pages stay 304.
    assert pages_of(batches) == {
        edited: (site.root / edited).read_bytes(),
        added: (site.root / added).read_bytes(),
    }
    assert site.count("news/2007/07/9/index.md", 304) == 1
    assert site.count(SEED_PATH, 304) == 1
    assert marks[f"http:{edited}"] != before


async def test_5xx_is_retried_with_backoff_and_retry_after(
    site: ArchiveServer, make_source: Callable[..., HttpArchiveSource], sleeps: list[float]
) -> None:
    site.script[SEED_PATH] = [503, 500]
    site.retry_after[SEED_PATH] = "3600"  # with the 503: honoured, capped at max_backoff
    site.script["news/2007/07/10/index.md"] = [502]
    site.retry_after["news/2007/07/10/index.md"] = "2"

    batches = await poll(make_source(max_backoff=20), {})

    assert problems_of(batches) == {}
    assert pages_of(batches).keys() == ALL_PAGES
    assert sorted(sleeps) == [1.0, 2.0, 20.0]  # 503 (Retry-After), 500, 502 (Retry-After)
    assert site.count(SEED_PATH, 500) == site.count(SEED_PATH, 503) == 1
    assert site.count(SEED_PATH, 200) == 1


async def test_a_page_failing_every_attempt_is_a_problem_and_tried_again_next_poll(
    site: ArchiveServer, make_source: Callable[..., HttpArchiveSource], sleeps: list[float]
) -> None:
    site.script[SEED_PATH] = [500] * 4
    source = make_source()
    marks: dict[str, str] = {}

    batches = await poll(source, marks)

    assert problems_of(batches) == {
        SEED_PATH: "HTTP 500 Internal Server Error (gave up after 4 attempts)"
    }
    assert sleeps == [0.5, 1.0, 2.0]
    assert pages_of(batches).keys() == ALL_PAGES - {SEED_PATH}
    # The day's index mark is held back, so the next poll reads the index again
    # and the page is offered once it answers.
    assert "http:news/2007/07/9/index.md" not in marks
    site.requests.clear()
    assert pages_of(await poll(source, marks)) == {SEED_PATH: seed_bytes()}
    assert site.count("news/2007/07/9/index.md", 200) == 1
    assert "http:news/2007/07/9/index.md" in marks


async def test_a_slow_page_times_out_is_retried_then_reported(
    site: ArchiveServer, make_source: Callable[..., HttpArchiveSource], sleeps: list[float]
) -> None:
    site.script[SEED_PATH] = ["slow", "slow"]

    batches = await poll(make_source(timeout=0.2, retries=1), {})

    assert problems_of(batches) == {SEED_PATH: "timed out after 0.2 s (gave up after 2 attempts)"}
    assert sleeps == [0.5]
    assert pages_of(batches).keys() == ALL_PAGES - {SEED_PATH}


async def test_an_oversized_page_is_a_problem_and_the_rest_arrive(
    site: ArchiveServer, make_source: Callable[..., HttpArchiveSource]
) -> None:
    big, streamed = "news/2007/07/10/huge.md", "news/2007/07/10/huge-streamed.md"
    site.write(big, b"x" * (1_048_576 + 1))
    site.write(streamed, b"y" * (3 * 1_048_576))
    site.streamed.add(streamed)
    index = (site.root / "news/2007/07/10/index.md").read_text()
    site.write("news/2007/07/10/index.md", index + f"* /{big}\n* /{streamed}\n")

    batches = await poll(make_source(), {})

    assert problems_of(batches) == {
        big: "larger than 1048576 bytes",
        streamed: "larger than 1048576 bytes",
    }
    assert pages_of(batches).keys() == ALL_PAGES
    assert batches[-1].marks[f"http:{big}"] == "{}"  # fetched in full next time
    assert "http:news/2007/07/10/index.md" not in batches[-1].marks


async def test_exactly_the_cap_is_accepted(
    site: ArchiveServer, make_source: Callable[..., HttpArchiveSource]
) -> None:
    path = "news/2007/07/10/exactly-the-cap.md"
    site.write(path, b"z" * 1000)
    site.write("news/2007/07/10/index.md", f"[cap](/{path})")
    site.streamed.add(path)

    batches = await poll(make_source(max_page_bytes=1000), {}, days=["2007/07/10"])

    assert pages_of(batches) == {path: b"z" * 1000}


async def test_concurrency_is_bounded(
    site: ArchiveServer, make_source: Callable[..., HttpArchiveSource]
) -> None:
    links = []
    for n in range(20):
        path = f"news/2007/07/10/event-{n}.md"
        site.write(path, page_text("2007/07/10", f"event-{n}", f"Event {n}."))
        links.append(f"[{n}](/{path})")
    site.write("news/2007/07/10/index.md", "\n".join(links))
    site.delay = 0.02

    batches = await poll(make_source(max_concurrency=3), {})

    assert len(pages_of(batches)) == 20 + len(ALL_PAGES) - 2
    assert site.max_in_flight == 3


async def test_an_unreachable_host_raises_one_clear_line(
    make_source: Callable[..., HttpArchiveSource], sleeps: list[float]
) -> None:
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/archive/"

    with pytest.raises(ArchiveError) as raised:
        await poll(make_source(base_url=url), {})

    message = str(raised.value)
    assert message.startswith(f"cannot read the archive at {url}: ")
    assert "cannot connect" in message and "\n" not in message
    assert isinstance(raised.value.__cause__, aiohttp.ClientConnectorError)
    # Only the newest index was tried (every retry, none really waited), not all 30.
    assert sleeps == [0.5, 1.0, 2.0]
    assert "news/2007/07/10/index.md: cannot connect" in message


async def test_every_index_failing_raises(
    site: ArchiveServer, make_source: Callable[..., HttpArchiveSource]
) -> None:
    site.fail_everything = 503

    with pytest.raises(ArchiveError, match=r"index\.md: HTTP 503 Service Unavailable"):
        await poll(make_source(retries=0), {})


async def test_one_failing_index_is_a_problem_of_its_day(
    site: ArchiveServer, make_source: Callable[..., HttpArchiveSource]
) -> None:
    site.script["news/2007/07/9/index.md"] = [403]

    batches = await poll(make_source(), {})

    assert problems_of(batches) == {"news/2007/07/9/index.md": "HTTP 403 Forbidden"}
    assert pages_of(batches).keys() == ALL_PAGES - {
        SEED_PATH,
        "news/2007/07/9/second-day-talks-resume.md",
    }


async def test_an_index_404_is_an_empty_day(
    site: ArchiveServer, make_source: Callable[..., HttpArchiveSource]
) -> None:
    marks: dict[str, str] = {}

    assert await poll(make_source(), marks, days=["2007/7/08"]) == []
    assert site.count("news/2007/07/8/index.md", 404) == 1
    assert marks == {}  # a limited poll is not a completed poll


async def test_days_limit_the_poll_to_those_days(
    site: ArchiveServer, make_source: Callable[..., HttpArchiveSource]
) -> None:
    batches = await poll(make_source(), {}, days=["2007/06/20", "2007/05/1"])

    assert pages_of(batches).keys() == {"news/2007/05/1/ancient.md", "news/2007/06/20/old-event.md"}
    assert {path for path, _status in site.requests} == {
        "news/2007/05/1/index.md",
        "news/2007/05/1/ancient.md",
        "news/2007/06/20/index.md",
        "news/2007/06/20/old-event.md",
    }


async def test_a_page_linked_but_missing_is_a_problem(
    site: ArchiveServer, make_source: Callable[..., HttpArchiveSource]
) -> None:
    index = (site.root / "news/2007/07/10/index.md").read_text()
    site.write("news/2007/07/10/index.md", index + "* /news/2007/07/10/not-yet.md\n")

    batches = await poll(make_source(), {})

    assert problems_of(batches) == {"news/2007/07/10/not-yet.md": "HTTP 404 Not Found"}


async def test_after_downtime_the_missed_days_are_polled(
    site: ArchiveServer, make_source: Callable[..., HttpArchiveSource]
) -> None:
    marks = {"http:poll": '{"day":"2007/06/25"}'}

    await poll(make_source(), marks)

    asked = {path for path, _status in site.requests if path.endswith("index.md")}
    assert "news/2007/06/23/index.md" in asked and "news/2007/06/22/index.md" not in asked
    assert len(asked) == 18  # 2007/06/23 to 2007/07/10
    assert marks["http:poll"] == '{"day":"2007/07/10"}'


async def test_an_injected_session_is_used_and_left_open(
    site: ArchiveServer, make_source: Callable[..., HttpArchiveSource]
) -> None:
    async with aiohttp.ClientSession() as session:
        source = make_source(session=session, user_agent="feedbot-test/1")
        batches = await poll(source, {}, days=["2007/07/10"])
        await source.aclose()
        assert not session.closed
    assert len(pages_of(batches)) == 2


async def test_an_owned_session_is_closed_by_aclose(
    site: ArchiveServer, make_source: Callable[..., HttpArchiveSource]
) -> None:
    source = make_source()
    await poll(source, {}, days=["2007/07/10"])
    session = source._session
    assert session is not None
    await source.aclose()
    assert session.closed


@pytest.mark.parametrize("url", ["ftp://example.org/", "/srv/archive", "http:///nohost"])
def test_a_base_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(ArchiveError, match="not an http"):
        HttpArchiveSource(url)


# -- memory: batches, index links -------------------------------------------------


def write_day(server: ArchiveServer, day: str, count: int, size: int) -> list[str]:
    """``count`` pages of ``size`` bytes on ``day``, linked from its index, in order."""
    paths = []
    for n in range(count):
        path = f"news/{day}/event-{n}.md"
        head = page_text(day, f"event-{n}", f"Event {n}.")
        server.write(path, head + b"x" * (size - len(head)))
        paths.append(path)
    server.write(f"news/{day}/index.md", "".join(f"* [{n}](/{p})\n" for n, p in enumerate(paths)))
    return paths


async def test_a_large_day_flows_in_batches_within_the_byte_budget(
    server: ArchiveServer, make_source: Callable[..., HttpArchiveSource]
) -> None:
    page_cap, budget, concurrency = 64 * 1024, 1024 * 1024, 4
    paths = write_day(server, "2007/07/10", 200, page_cap - 1000)
    source = make_source(max_page_bytes=page_cap, batch_bytes=budget, max_concurrency=concurrency)
    batches: list[PollBatch] = []
    answered_at_yield: list[int] = []

    async for batch in source.poll({}, days=["2007/07/10"]):
        answered_at_yield.append(sum(1 for p, _s in server.requests if p in paths))
        batches.append(batch)

    assert problems_of(batches) == {}
    assert pages_of(batches).keys() == set(paths)
    held = [sum(len(page.body) for page in batch.pages) for batch in batches]
    assert max(held) <= budget
    assert len(batches) >= 200 * (page_cap - 1000) // budget + 1
    # Pages flow: the first batch is handed on while most of the day is unfetched,
    # with no more than the pages in flight fetched beyond it.
    assert answered_at_yield[0] <= len(batches[0].pages) + concurrency
    # Each page's mark travels with the page; the day's index mark only with the
    # last batch, once every page of the day is in.
    for batch in batches:
        assert {f"http:{page.path}" for page in batch.pages} <= batch.marks.keys()
    assert [("http:news/2007/07/10/index.md" in b.marks) for b in batches] == [False] * (
        len(batches) - 1
    ) + [True]


def test_the_budget_holds_at_least_a_page() -> None:
    with pytest.raises(ValueError, match="batch_bytes"):
        HttpArchiveSource("http://127.0.0.1/", max_page_bytes=2048, batch_bytes=2047)


async def test_an_index_linking_too_many_pages_is_read_up_to_the_cap_and_reported(
    server: ArchiveServer, make_source: Callable[..., HttpArchiveSource]
) -> None:
    paths = write_day(server, "2007/07/10", 30, 600)
    source = make_source(max_index_links=10)
    marks: dict[str, str] = {}

    batches = await poll(source, marks, days=["2007/07/10"])

    assert pages_of(batches).keys() == set(paths[:10])
    assert {p for p, _s in server.requests} == {"news/2007/07/10/index.md", *paths[:10]}
    reason = "lists more than 10 event pages of its day; only the first 10 were read"
    assert problems_of(batches) == {"news/2007/07/10/index.md": reason}
    # Held back: the next poll reads the index again and reports the day again.
    assert "http:news/2007/07/10/index.md" not in marks
    assert problems_of(await poll(source, marks, days=["2007/07/10"])) == {
        "news/2007/07/10/index.md": reason
    }


async def test_an_oversized_index_is_a_problem_of_its_day(
    server: ArchiveServer, make_source: Callable[..., HttpArchiveSource]
) -> None:
    write_day(server, "2007/07/10", 3, 600)
    server.write("news/2007/07/10/index.md", b"* /news/2007/07/10/event-0.md\n" * 100)
    server.write("news/2007/07/9/index.md", "* /news/2007/07/9/nothing.md\n")
    server.write("news/2007/07/9/nothing.md", page_text("2007/07/9", "nothing", "Nothing."))

    batches = await poll(make_source(max_page_bytes=1024), {}, days=["2007/07/9", "2007/07/10"])

    assert problems_of(batches) == {"news/2007/07/10/index.md": "larger than 1024 bytes"}
    assert server.count("news/2007/07/10/event-0.md") == 0


# -- redirects --------------------------------------------------------------------


async def test_a_redirect_to_another_origin_is_refused_before_asking_it(
    site: ArchiveServer,
    elsewhere: ArchiveServer,
    make_source: Callable[..., HttpArchiveSource],
    sleeps: list[float],
) -> None:
    port = site.url.rsplit(":", 1)[1].rstrip("/")
    page = "news/2007/07/10/storming-of-the-mosque.md"
    site.redirects[page] = f"{elsewhere.url}{page}"
    site.redirects[SEED_PATH] = f"http://localhost:{port}/{SEED_PATH}"  # same port, other host
    site.redirects["news/2007/06/20/index.md"] = f"{elsewhere.url}news/2007/06/20/index.md"

    batches = await poll(make_source(), {})

    assert problems_of(batches) == {
        page: f"HTTP 302 Found to another origin refused: {elsewhere.url}{page}",
        SEED_PATH: f"HTTP 302 Found to another origin refused: http://localhost:{port}/{SEED_PATH}",
        "news/2007/06/20/index.md": (
            f"HTTP 302 Found to another origin refused: {elsewhere.url}news/2007/06/20/index.md"
        ),
    }
    assert elsewhere.requests == Counter()
    assert site.count(page) == site.count(SEED_PATH) == 1  # the 302 only
    assert site.count("news/2007/06/20/old-event.md") == 0
    assert sleeps == []  # final, not retried


async def test_a_redirect_within_the_origin_is_followed_a_few_hops(
    site: ArchiveServer, make_source: Callable[..., HttpArchiveSource]
) -> None:
    moved = "news/2007/07/10/ghazi-confirmed-dead.md"
    site.write(f"moved/{moved}", (site.root / moved).read_bytes())
    site.redirects[moved] = f"/moved/{moved}"
    loop = "news/2007/07/10/storming-of-the-mosque.md"
    site.redirects[loop] = "/loop/b"
    site.redirects["loop/b"] = f"{site.url}{loop}"

    batches = await poll(make_source(), {}, days=["2007/07/10"])

    assert pages_of(batches) == {moved: (site.root / moved).read_bytes()}
    assert problems_of(batches) == {loop: "more than 3 redirects"}
    assert site.count(loop) + site.count("loop/b") == 4


# -- which addresses ---------------------------------------------------------------


class TableResolver(AbstractResolver):
    """Answers names from a table and nothing else: no test ever asks real DNS."""

    def __init__(self, table: dict[str, Sequence[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.table[host]
        ]

    async def close(self) -> None:
        pass


async def test_an_archive_named_publicly_cannot_resolve_to_loopback(
    site: ArchiveServer, make_source: Callable[..., HttpArchiveSource], sleeps: list[float]
) -> None:
    port = site.url.rsplit(":", 1)[1].rstrip("/")
    url = f"http://archive.test:{port}/"
    resolver = TableResolver({"archive.test": ["127.0.0.1"]})

    with pytest.raises(ArchiveError) as raised:
        await poll(make_source(base_url=url, resolver=resolver), {})

    assert str(raised.value) == (
        f"cannot read the archive at {url}: news/2007/07/10/index.md: "
        "refused: archive.test resolves to 127.0.0.1 (loopback)"
    )
    assert resolver.asked == ["archive.test"]
    assert site.requests == Counter()  # refused before a socket existed
    assert sleeps == []  # a refusal is final


async def test_a_private_archive_reached_by_name_needs_allow_private(
    site: ArchiveServer, make_source: Callable[..., HttpArchiveSource]
) -> None:
    port = site.url.rsplit(":", 1)[1].rstrip("/")
    url = f"http://archive.test:{port}/"
    resolver = TableResolver({"archive.test": ["127.0.0.1"]})
    policy = archive_policy(url, allow_private=True)

    batches = await poll(make_source(base_url=url, resolver=resolver, policy=policy), {})

    assert pages_of(batches).keys() == ALL_PAGES


async def test_an_archive_on_localhost_may_reach_loopback(
    site: ArchiveServer, make_source: Callable[..., HttpArchiveSource]
) -> None:
    port = site.url.rsplit(":", 1)[1].rstrip("/")
    resolver = TableResolver({"localhost": ["127.0.0.1"]})

    batches = await poll(make_source(base_url=f"http://localhost:{port}/", resolver=resolver), {})

    assert pages_of(batches).keys() == ALL_PAGES


def test_archive_policy() -> None:
    literal = archive_policy("http://127.0.0.1:8000/archive/")
    assert literal.refusal("127.0.0.1") is None
    assert literal.refusal("127.0.0.2") == "loopback"
    assert literal.refusal("10.0.0.1") == "private"
    v6 = archive_policy("http://[fd00::5]/")
    assert v6.refusal("fd00::5") is None and v6.refusal("fd00::6") == "private"
    local = archive_policy("https://localhost/")
    assert local.refusal("::1") is None and local.refusal("127.0.0.1") is None
    assert local.refusal("10.0.0.1") == "private"
    public = archive_policy("https://archive.example.org/")
    for refused in ("127.0.0.1", "10.0.0.1", "169.254.169.254", "::1"):
        assert public.refusal(refused) is not None, refused
    assert public.refusal("93.184.216.34") is None
    assert archive_policy("http://8.8.8.8/").refusal("127.0.0.1") == "loopback"
    private = archive_policy("https://archive.lan/", allow_private=True)
    assert private.refusal("10.0.0.1") is None
    assert private.refusal("169.254.169.254") == "cloud metadata"


# -- settings ---------------------------------------------------------------------


def test_the_daemon_builds_the_source_from_the_archive_keys(tmp_path: Path) -> None:
    config = tmp_path / "feedbot.toml"
    config.write_text(
        '[archive]\nsource = "http://archive.lan:8000/"\nbatch_bytes = 2097152\n'
        "max_index_links = 50\nallow_private = true\n"
    )
    source = make_daemon_source(load_settings(config))

    assert isinstance(source, HttpArchiveSource)
    assert (source.batch_bytes, source.max_index_links) == (2_097_152, 50)
    assert source.policy == archive_policy("http://archive.lan:8000/", allow_private=True)
    default = make_daemon_source(Settings(archive=ArchiveSettings(source="https://a.example/")))
    assert isinstance(default, HttpArchiveSource)
    assert default.batch_bytes == 32 * 1024 * 1024
    assert default.policy.refusal("10.0.0.1") == "private"


def test_a_budget_below_the_page_cap_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "feedbot.toml"
    config.write_text("[archive]\nmax_page_bytes = 4096\nbatch_bytes = 4095\n")

    with pytest.raises(ConfigError, match=r"'archive\.batch_bytes': 4095: .*max_page_bytes"):
        load_settings(config)


async def test_a_poll_given_up_after_one_batch_leaves_no_request_running(
    server: ArchiveServer, make_source: Callable[..., HttpArchiveSource]
) -> None:
    paths = write_day(server, "2007/07/9", 40, 30_000)
    # The first batch is handed on when the 4th page arrives; the pages after
    # those are still in flight then, and stay so.
    server.slow_seconds = 60
    for path in paths[4:]:
        server.script[path] = ["slow"]
    source = make_source(max_page_bytes=32_768, batch_bytes=100_000, max_concurrency=4)

    async with aclosing(source.poll({}, days=["2007/07/9"])) as batches:
        async for batch in batches:
            assert len(batch.pages) == 3
            break

    left = [t for t in asyncio.all_tasks() if "HttpArchiveSource" in repr(t.get_coro())]
    assert left == []


# -- listings (event identity) ----------------------------------------------------


def listed_of(batches: list[PollBatch]) -> dict[str, frozenset[str]]:
    return {day: paths for batch in batches for day, paths in batch.listed.items()}


async def test_an_index_read_whole_is_its_days_listing_and_nothing_else_is(
    site: ArchiveServer, make_source: Callable[..., HttpArchiveSource]
) -> None:
    source = make_source()
    marks: dict[str, str] = {}
    site.script["news/2007/07/10/index.md"] = [403]
    first = await poll(source, marks)
    # 200: the pages it links of its own day; 404 and a failure list nothing.
    assert listed_of(first) == {
        "2007/06/20": {"news/2007/06/20/old-event.md"},
        "2007/07/9": {SEED_PATH, "news/2007/07/9/second-day-talks-resume.md"},
    }
    # The listing comes no later than the day's pages.
    day9 = next(i for i, b in enumerate(first) if "2007/07/9" in b.listed)
    assert all(not p.path.startswith("news/2007/07/9/") for b in first[:day9] for p in b.pages)
    # 304: no evidence either way.
    assert listed_of(await poll(source, marks)) == {
        "2007/07/10": {
            "news/2007/07/10/storming-of-the-mosque.md",
            "news/2007/07/10/ghazi-confirmed-dead.md",
        }
    }
    assert listed_of(await poll(source, marks)) == {}
    # A page no longer linked is absent from the new listing.
    site.write("news/2007/07/9/index.md", f"[Lal Masjid siege](/{SEED_PATH})\n", mtime_step=5)
    assert listed_of(await poll(source, marks)) == {"2007/07/9": {SEED_PATH}}


async def test_a_capped_index_is_no_listing(
    server: ArchiveServer, make_source: Callable[..., HttpArchiveSource]
) -> None:
    write_day(server, "2007/07/10", 12, 300)
    batches = await poll(make_source(max_index_links=10), {}, days=["2007/07/10"])
    assert listed_of(batches) == {}


async def test_a_page_dropped_from_its_index_is_removed_after_two_polls_and_comes_back(
    site: ArchiveServer, make_source: Callable[..., HttpArchiveSource], tmp_path: Path
) -> None:
    from feedbot.ingest import Ingestor
    from feedbot.store import Removed, Store
    from tests.conftest import Clock

    clock = Clock(NOW)
    store = await Store.open(f"sqlite:///{tmp_path / 'http.db'}")
    try:
        ingestor = Ingestor(store, make_source(clock=clock), clock=clock)
        assert (await ingestor.poll()).new == len(ALL_PAGES)
        other = "news/2007/07/9/second-day-talks-resume.md"
        index = (site.root / "news/2007/07/9/index.md").read_text()
        site.write("news/2007/07/9/index.md", f"[Lal Masjid siege](/{SEED_PATH})\n", mtime_step=5)
        clock.advance(60)
        assert (await ingestor.poll()).missing == 1
        clock.advance(60)
        assert (await ingestor.poll()).removed == 1  # its index is 304 now: still gone
        assert isinstance(await store.lookup_event("2007/07/9/second-day-talks-resume"), Removed)
        # Linked again: the page itself is unchanged (its mark says so), yet it is back.
        site.write("news/2007/07/9/index.md", index, mtime_step=10)
        clock.advance(60)
        back = await ingestor.poll()
        assert (back.new, back.updated) == (0, 0)
        assert site.count(other, 304) >= 1
        assert await store.count_events() == len(ALL_PAGES)
    finally:
        await store.close()
