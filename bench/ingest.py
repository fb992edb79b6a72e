"""Ingestion benchmark: cold ingest, re-poll and peak memory on a synthetic archive.

    python bench/ingest.py --events 100000 [--json]

Writes the archive under bench/.cache/ when it is missing (bench/make_archive.py),
then measures:

- cold ingest: ``feedbot poll`` (its own process, as an operator's first start runs
  it) into a new SQLite file: read, parse, store; timed from its start to its exit,
  with the peak RSS of its whole process tree (it and its parse workers, sampled),
  and the store's size on disk per event;
- then, in this process: re-poll, a poll when nothing changed, first in a fresh
  Ingestor that must load its marks from the store (a new process's first poll),
  then in the same one (the daemon's case), walked fully (every day folder looked
  at) and light (new days and the recent ones: what the daemon's scheduled polls do
  while its folder watch is in place); the peak RSS of this process after those;
- feed render: the Atom feed (page 1) of the busiest topic (most events) and of the
  median topic (by event count), asked for 50 times each from the web app as the
  daemon builds it (``make_feed_cache``, ``WebServer``) on 127.0.0.1 over the store the
  cold ingest built, by an aiohttp client in this process: p50 and p99 (nearest rank;
  of 50, the p99 is the slowest). No setting turns the feed cache off, so before each
  request the topic is invalidated (``FeedCache.invalidate``, what the daemon does
  after a poll that changed it, untimed): each timed request renders the feed anew,
  which the bench checks in ``cache.stats.renders``. ``feed_render_p99_ms`` is the
  higher of the two p99s;
- first feed after a new page: a new page naming the busiest topic, written (as
  bench/make_archive.py writes pages) into a new day folder after the archive's last
  day, ingested by the same Ingestor in a poll of that day (what the daemon's folder
  watch does), the topic's cached feed invalidated with the poll's changed topics as
  the daemon does; then the first request of that feed is timed, and checked to be a
  render holding the new entry. The median of 5, each with its own page. The folders
  made are removed afterwards (and their parent's mtime put back): the cached
  archive stays as it was;
- for reference, markdown-it-py tokenizing the same pages (already in memory),
  i.e. what a general Markdown parser costs before any extraction or storage.

Prints a table and, last, one JSON object (``peak_rss_tree_mb``: the ingesting
process and its parse workers together; ``peak_rss_mb``: this process, read before the
feeds are served). Targets (issue 17, at any archive size): >= 10,000 events/s
cold, <= 50 ms re-poll, <= 250 MB for the process tree; at 1,000,000 events, a feed
render p99 <= 20 ms and the first feed after a new page <= 50 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from array import array
from datetime import date, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import aiohttp  # noqa: E402
import psutil  # noqa: E402
from _stats import percentile  # noqa: E402
from make_archive import _Event, _render, _Rng, _summary, make_archive  # noqa: E402

from feedbot.archive.local import LocalArchiveSource  # noqa: E402
from feedbot.factory import make_feed_cache  # noqa: E402
from feedbot.feeds.cache import FeedCache  # noqa: E402
from feedbot.feeds.urls import event_urn  # noqa: E402
from feedbot.ingest import Ingestor  # noqa: E402
from feedbot.loop import run as run_on_feedbots_loop  # noqa: E402
from feedbot.settings import Settings  # noqa: E402
from feedbot.store import Store  # noqa: E402
from feedbot.web import WebServer  # noqa: E402

FEED_RENDERS = 50
NEW_PAGES = 5
_ATOM = "{http://www.w3.org/2005/Atom}"


def archive_for(events: int) -> Path:
    root = HERE / ".cache" / f"archive-{events}"
    done = root / ".complete"
    if not done.exists():
        print(f"writing a synthetic archive of {events} events to {root} ...", file=sys.stderr)
        make_archive(root, events=events, seed=1)
        done.write_text(str(events))
    return root


class TreeRss:
    """The peak resident memory of a process and all its children together (the
    parse workers), sampled every 50 ms by a thread: what the machine must hold
    for an ingest, which a process's own ``ru_maxrss`` does not say."""

    def __init__(self, pid: int) -> None:
        self.peak = 0
        self._process = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            total = 0
            with contextlib.suppress(psutil.Error):
                for process in (self._process, *self._process.children(recursive=True)):
                    with contextlib.suppress(psutil.Error):
                        total += process.memory_info().rss
            self.peak = max(self.peak, total)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cold_ingest(root: Path, db: Path) -> dict[str, float]:
    """``feedbot poll`` into a new store, as an operator's first start runs it: its
    own process (and parse workers), timed from start to exit, memory sampled."""
    environment = {
        **os.environ,
        "FEEDBOT_ARCHIVE__SOURCE": str(root),
        "FEEDBOT_STORE__URL": f"sqlite:///{db}",
    }
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "feedbot", "poll"],
        env=environment,
        cwd=HERE.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    with TreeRss(process.pid) as tree:
        out, _ = process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"feedbot poll failed ({process.returncode}): {out}")
    summary = re.search(r"(\d+) new, \d+ updated, \d+ unchanged, (\d+) rejected", out)
    assert summary is not None, out
    new, rejected = map(int, summary.groups())
    return {
        "events": new,
        "rejected": rejected,
        "cold_s": seconds,
        "cold_events_per_s": new / seconds,
        "peak_rss_tree_mb": tree.peak / 2**20,
        # The WAL is checkpointed into the file when the last connection closes.
        "bytes_per_event": sum(f.stat().st_size for f in db.parent.glob(db.name + "*")) / new,
    }


async def measure(root: Path, db: Path) -> dict[str, float]:
    cold = cold_ingest(root, db)
    store = await Store.open(f"sqlite:///{db}")
    assert await store.count_events() == cold["events"]

    # A new process's first poll: it loads the source's marks from the store.
    ingestor = Ingestor(store, LocalArchiveSource(root, lookback_days=1))
    started = time.perf_counter()
    again = await ingestor.poll()
    fresh_ms = (time.perf_counter() - started) * 1000
    assert again.new == again.updated == 0, again.summary

    warm_ms = []
    for _ in range(5):
        started = time.perf_counter()
        again = await ingestor.poll()
        warm_ms.append((time.perf_counter() - started) * 1000)
        assert again.new == again.updated == 0, again.summary

    light_ms = []
    for _ in range(5):
        started = time.perf_counter()
        again = await ingestor.poll(full=False)
        light_ms.append((time.perf_counter() - started) * 1000)
        assert again.new == again.updated == 0, again.summary

    # Before the web app and its documents add to it: the ingest's own figure.
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        feeds = await measure_feeds(root, store, ingestor)
    finally:
        await store.close()
    return {
        **cold,
        "repoll_ms": statistics.median(warm_ms),
        "repoll_light_ms": statistics.median(light_ms),
        "repoll_fresh_process_ms": fresh_ms,
        "peak_rss_mb": peak_rss_mb,
        **feeds,
    }


async def measure_feeds(root: Path, store: Store, ingestor: Ingestor) -> dict[str, float]:
    """The feed figures (module docstring), from the app the daemon would serve."""
    settings = Settings(server={"host": "127.0.0.1", "port": 0})
    cache = make_feed_cache(settings, store)
    server = WebServer(settings, store, cache, access_log=False)
    counts = sorted(await store.topic_counts(), key=lambda c: (c.events, c.topic.slug))
    busiest, median = counts[-1], counts[len(counts) // 2]
    result = {
        "busiest_topic_events": float(busiest.events),
        "median_topic_events": float(median.events),
    }
    await server.start()
    try:
        # identity: the client's gunzip is no part of the server's work.
        async with aiohttp.ClientSession(
            server.url, headers={"Accept-Encoding": "identity"}
        ) as session:
            # Templates compile and the connection opens on a first request: not
            # what each feed request costs.
            async with session.get("/feeds/all.atom") as response:
                response.raise_for_status()
            for name, count in (("busiest", busiest), ("median", median)):
                took = []
                for _ in range(FEED_RENDERS):
                    cache.invalidate([count.topic.slug])
                    took.append((await fetch_render(session, cache, count.topic.slug))[0])
                took.sort()
                result[f"feed_render_{name}_p50_ms"] = percentile(took, 0.50)
                result[f"feed_render_{name}_p99_ms"] = percentile(took, 0.99)
            result["feed_render_p99_ms"] = max(
                result["feed_render_busiest_p99_ms"], result["feed_render_median_p99_ms"]
            )
            result["first_feed_after_new_page_ms"] = await first_feed_after_new_page(
                root, ingestor, cache, session, busiest.topic.name, busiest.topic.slug
            )
    finally:
        await server.stop()
    return result


async def fetch_render(
    session: aiohttp.ClientSession, cache: FeedCache, slug: str
) -> tuple[float, bytes]:
    """Milliseconds to fetch the topic's Atom feed, and its body; the app must have
    rendered it for this request (a cache hit would time nothing of the render)."""
    renders = cache.stats.renders
    started = time.perf_counter()
    async with session.get(f"/feeds/topics/{slug}.atom") as response:
        response.raise_for_status()
        body = await response.read()
    took = (time.perf_counter() - started) * 1000
    assert cache.stats.renders == renders + 1, f"{slug}: served from the cache"
    return took, body


async def first_feed_after_new_page(
    root: Path,
    ingestor: Ingestor,
    cache: FeedCache,
    session: aiohttp.ClientSession,
    story: str,
    slug: str,
) -> float:
    took = []
    made: list[tuple[Path, os.stat_result]] = []  # folders made, with their parent's stat
    last = last_day(root / "news")
    try:
        for n in range(1, NEW_PAGES + 1):
            # The old feed is cached, as a topic readers poll would have it.
            async with session.get(f"/feeds/topics/{slug}.atom") as response:
                response.raise_for_status()
            day = last + timedelta(days=n)
            event_id = write_page(root, day, story, seed=n, made=made)
            polled = await ingestor.poll(days={event_id.rpartition("/")[0]}, full=False)
            assert polled.new == 1 and not polled.rejected, polled.summary
            cache.invalidate(polled.changed_topics)  # as the daemon does after a poll
            ms, body = await fetch_render(session, cache, slug)
            newest = ET.fromstring(body).find(f"{_ATOM}entry/{_ATOM}id")
            assert newest is not None and newest.text == event_urn(event_id), "a stale feed"
            took.append(ms)
    finally:
        for folder, parent in reversed(made):
            shutil.rmtree(folder)
            os.utime(folder.parent, ns=(parent.st_atime_ns, parent.st_mtime_ns))
    return statistics.median(took)


def last_day(news: Path) -> date:
    """The archive's last day, from its folder names (news/YYYY/MM/D)."""
    folder, parts = news, []
    for _ in range(3):
        folder = max((p for p in folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        parts.append(int(folder.name))
    return date(*parts)


def write_page(
    root: Path, day: date, story: str, *, seed: int, made: list[tuple[Path, os.stat_result]]
) -> str:
    """One event page of ``story`` on ``day``, and the day's index, as
    bench/make_archive.py writes them; returns the event id. The topmost folder it
    makes goes into ``made`` (with its parent's stat) for the caller to remove."""
    rng = _Rng(seed)
    folder = f"news/{day.year}/{day.month:02d}/{day.day}"
    places, people, orgs = ["Benchford"], ["Ana Müller"], ["Benchford Metro"]
    event = _Event(day, folder, 0, f"{story}: {_summary(rng, places, people, orgs)}", ())
    # A story of one event: the page relates to none (every related link must exist).
    first = array("I", [0])
    page = _render(rng, 0, event, event.slug, [event], {0: first}, first, [story], [], places)
    top = root / folder
    while not top.parent.exists():
        top = top.parent
    parent = top.parent.stat()
    (root / folder).mkdir(parents=True)  # never a folder that was there: it is removed after
    made.append((top, parent))
    (root / folder / f"{event.slug}.md").write_text(page, encoding="utf-8")
    index = f"# {day.isoformat()}\n\n- [{event.summary}](/{folder}/{event.slug}.md)\n"
    (root / folder / "index.md").write_text(index, encoding="utf-8")
    return f"{folder.removeprefix('news/')}/{event.slug}"


def markdown_it_reference(root: Path) -> dict[str, float]:
    from markdown_it import MarkdownIt

    pages = [
        p.read_text(encoding="utf-8")
        for p in (root / "news").glob("*/*/*/*.md")
        if p.name != "index.md"
    ]
    md = MarkdownIt()
    started = time.perf_counter()
    for text in pages:
        md.parse(text)
    seconds = time.perf_counter() - started
    return {"markdown_it_tokenize_s": seconds, "markdown_it_pages_per_s": len(pages) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument(
        "--json", action="store_true", help="end with one JSON line (always printed)"
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the markdown-it-py reference (minutes)"
    )
    args = parser.parse_args()

    root = archive_for(args.events)
    with tempfile.TemporaryDirectory() as tmp:
        result = run_on_feedbots_loop(measure(root, Path(tmp) / "bench.db"))
    if not args.no_reference:
        result.update(markdown_it_reference(root))

    rows = [
        ("events stored", f"{result['events']:,.0f}", ""),
        ("cold ingest", f"{result['cold_s']:.1f} s", ""),
        ("cold events/s", f"{result['cold_events_per_s']:,.0f}", ">= 10,000"),
        ("re-poll, same process, full walk", f"{result['repoll_ms']:.0f} ms", ""),
        ("re-poll, same process, light", f"{result['repoll_light_ms']:.0f} ms", "<= 50 ms"),
        ("re-poll, fresh process", f"{result['repoll_fresh_process_ms']:.0f} ms", ""),
        (
            "peak RSS, cold ingest's process tree",
            f"{result['peak_rss_tree_mb']:.0f} MB",
            "<= 250 MB",
        ),
        ("store on disk per event", f"{result['bytes_per_event']:,.0f} B", ""),
        ("peak RSS, re-polling process", f"{result['peak_rss_mb']:.0f} MB", ""),
    ]
    for name in ("busiest", "median"):
        events = f"{result[f'{name}_topic_events']:,.0f} events"
        rows += [
            (
                f"feed render, {name} topic: p50",
                f"{result[f'feed_render_{name}_p50_ms']:.1f} ms",
                events,
            ),
            (
                f"feed render, {name} topic: p99",
                f"{result[f'feed_render_{name}_p99_ms']:.1f} ms",
                "<= 20 ms at 1M",
            ),
        ]
    rows.append(
        (
            "first feed after a new page",
            f"{result['first_feed_after_new_page_ms']:.1f} ms",
            "<= 50 ms at 1M",
        )
    )
    if not args.no_reference:
        rows += [
            (
                "markdown-it-py tokenize only",
                f"{result['markdown_it_tokenize_s']:.1f} s",
                "reference",
            ),
            ("markdown-it-py pages/s", f"{result['markdown_it_pages_per_s']:,.0f}", "reference"),
        ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>12}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>12}  {target}")
    print(json.dumps({k: round(v, 2) for k, v in result.items()}))


if __name__ == "__main__":
    main()
