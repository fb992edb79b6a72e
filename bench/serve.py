"""Serving benchmark: a cached 50-entry topic feed from the app, against nginx.

    python bench/serve.py [--events 100000] [--json] [--duration 5]

Builds (once, cached under bench/.cache/) a synthetic archive and a SQLite store
ingested from it, then measures in one run:

- render: one topic feed (page 1, Atom) from the store, and page 1 of every
  topic feed of the archive, through the same code the cache uses;
- wrk (Debian ``wrk``) against the app on loopback (this process, access log
  off), for the 50-entry feed of the busiest topic: plain, with ``If-None-Match``
  (304s), and with ``Accept-Encoding: gzip`` (the precompressed body);
- wrk against nginx (Debian ``nginx``, run in the foreground with a temporary
  config) serving that feed's exported file, checked byte-identical first;
- search: wrk for one cached search feed (a common word), and the latency of
  ``--searches`` uncached search feeds fetched one at a time, each a query not
  asked before (words of random events' titles: one word, two words of one
  title, one word within one of the event's topics). Target: p99 <= 50 ms.

nginx runs ``--nginx-workers`` worker processes (default 1: the same one core
the single-process app gets). Prints a table, then one JSON line with
``feed_rps``, ``feed_304_rps``, ``nginx_rps``, ``search_rps``,
``search_uncached_p50_ms``/``p99``/``max`` and the render times. Targets:
``feed_rps >= 0.25 * nginx_rps``; ``search_uncached_p99_ms <= 50``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _stats import percentile  # noqa: E402
from ingest import archive_for  # noqa: E402

from feedbot.archive.local import LocalArchiveSource  # noqa: E402
from feedbot.feeds import FeedFormat  # noqa: E402
from feedbot.feeds.cache import FeedCache, load_feed_page  # noqa: E402
from feedbot.feeds.urls import search_feed_url  # noqa: E402
from feedbot.ingest import Ingestor  # noqa: E402
from feedbot.loop import run as run_on_feedbots_loop  # noqa: E402
from feedbot.search import SearchQuery, words_of  # noqa: E402
from feedbot.settings import Settings  # noqa: E402
from feedbot.store import Store, TopicCount  # noqa: E402
from feedbot.web import WebServer  # noqa: E402

PAGE_SIZE = 50
_RPS = re.compile(r"Requests/sec:\s+([0-9.]+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+([0-9]+)")
_SOCKET_ERRORS = re.compile(r"Socket errors:.*")


async def store_for(events: int) -> Store:
    """A store ingested from the synthetic archive, kept between runs."""
    root = archive_for(events)
    db = HERE / ".cache" / f"serve-store-{events}.db"
    done = db.with_suffix(".complete")
    if not done.exists():
        for stale in db.parent.glob(db.name + "*"):
            stale.unlink()
        print(f"ingesting {root} into {db} ...", file=sys.stderr)
        store = await Store.open(f"sqlite:///{db}")
        await Ingestor(store, LocalArchiveSource(root, lookback_days=1)).poll()
        await store.close()
        done.write_text(str(events))
    return await Store.open(f"sqlite:///{db}")


async def render_times(
    store: Store, counts: list[TopicCount], base: str, *, every_topic: bool
) -> dict[str, float]:
    async def render(count: TopicCount) -> bytes:
        page = await load_feed_page(
            store, base, count.topic.slug, page_size=PAGE_SIZE, topic=count.topic
        )
        return page.render(FeedFormat.ATOM).body

    busiest = counts[0] if counts[0].events >= PAGE_SIZE else max(counts, key=lambda c: c.events)
    one = []
    for _ in range(7):
        started = time.perf_counter()
        await render(busiest)
        one.append(time.perf_counter() - started)
    times = {"render_one_topic_ms": statistics.median(one) * 1000, "topics": float(len(counts))}
    if every_topic:
        started = time.perf_counter()
        for count in counts:
            await render(count)
        times["render_all_topics_s"] = time.perf_counter() - started
    return times


async def search_queries(store: Store, count: int, seed: int = 7) -> list[SearchQuery]:
    """``count`` distinct queries that each find something: words of the titles of
    random events, alone, in pairs, or with one of the event's topics."""
    rng = random.Random(seed)
    total = await store.count_events()
    queries: dict[str, SearchQuery] = {}
    while len(queries) < count:
        (stored,) = await store.events_page(offset=rng.randrange(total), limit=1)
        words = [w for w in words_of(stored.event.title) if len(w) > 3] or ["the"]
        shape = len(queries) % 3
        if shape == 0:
            query = SearchQuery((rng.choice(words),))
        elif shape == 1:
            query = SearchQuery(tuple(dict.fromkeys(rng.sample(words, min(2, len(words))))))
        else:
            topic = rng.choice(stored.event.topics).slug if stored.event.topics else ""
            query = SearchQuery((rng.choice(words),), (topic,) if topic else ())
        queries.setdefault(query.key, query)
    return list(queries.values())


async def search_latencies(base: str, queries: list[SearchQuery]) -> list[float]:
    """Seconds each search feed took to arrive, asked one at a time (each is new
    to the app's cache: an uncached query)."""
    took = []
    async with aiohttp.ClientSession(headers={"Accept-Encoding": "identity"}) as session:
        for query in queries:
            started = time.perf_counter()
            async with session.get(search_feed_url(base, query)) as response:
                response.raise_for_status()
                await response.read()
            took.append(time.perf_counter() - started)
    return took


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wrk(url: str, args: argparse.Namespace, *headers: str) -> float:
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s"]
    for header in headers:
        command += ["-H", header]
    process = await asyncio.create_subprocess_exec(
        *command, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out = (await process.communicate())[0].decode()
    match = _RPS.search(out)
    if process.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed:\n{out}")
    for problem in (_NON_2XX.search(out), _SOCKET_ERRORS.search(out)):
        if problem is not None:
            print(f"warning: {url} {list(headers)}: {problem[0]}", file=sys.stderr)
    return float(match.group(1))


def write_site(site: Path, path: str, body: bytes) -> None:
    """The file as ``feedbot feeds export`` writes it, readable by nginx workers."""
    file = site / path.lstrip("/")
    file.parent.mkdir(parents=True)
    file.write_bytes(body)
    for folder, _, _ in os.walk(site.parent):
        Path(folder).chmod(0o755)  # nginx workers may run as another user


NGINX_CONF = """\
daemon off;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
user {user};
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ application/atom+xml atom; }}
    default_type application/octet-stream;
    charset_types application/atom+xml;
    charset utf-8;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ add_header Cache-Control "public, max-age=300"; }}
    }}
}}
"""


async def start_nginx(
    prefix: Path, root: Path, workers: int
) -> tuple[asyncio.subprocess.Process, int]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
    conf = prefix / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(prefix=prefix, root=root, port=port, workers=workers, user=user)
    )
    process = await asyncio.create_subprocess_exec(
        nginx, "-c", str(conf), "-p", str(prefix), stderr=asyncio.subprocess.PIPE
    )
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if process.returncode is not None:
                raise RuntimeError("nginx did not start") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return process, port
    raise RuntimeError("nginx did not start listening")


async def measure(args: argparse.Namespace) -> dict[str, float | str]:
    store = await store_for(args.events)
    result: dict[str, float | str] = {"events": float(await store.count_events())}
    try:
        counts = await store.topic_counts()
        base = "http://127.0.0.1"
        result.update(await render_times(store, counts, base, every_topic=not args.no_render_all))
        topic = next((c for c in counts if c.events >= PAGE_SIZE), counts[0])
        result["topic"] = topic.topic.slug

        settings = Settings(
            server={"host": "127.0.0.1", "port": 0, "base_url": base},
            feeds={"page_size": PAGE_SIZE},
        )
        cache = FeedCache(store, base, page_size=PAGE_SIZE)
        server = WebServer(settings, store, cache, access_log=False)
        await server.start()
        with tempfile.TemporaryDirectory() as tmp:
            prefix = Path(tmp)
            path = f"/feeds/topics/{topic.topic.slug}.atom"
            document = await cache.feed(topic.topic.slug)
            write_site(prefix / "site", path, document.body)
            nginx, nginx_port = await start_nginx(prefix, prefix / "site", args.nginx_workers)
            try:
                app_url = server.url + path
                nginx_url = f"http://127.0.0.1:{nginx_port}{path}"
                identity = {"Accept-Encoding": "identity"}
                async with aiohttp.ClientSession(headers=identity) as session:
                    bodies = []
                    for url in (app_url, nginx_url):
                        async with session.get(url) as response:
                            response.raise_for_status()
                            bodies.append(await response.read())
                if bodies[0] != bodies[1]:
                    raise RuntimeError("nginx and the app serve different bytes")
                result["body_bytes"] = float(len(bodies[0]))
                result["entries"] = float(min(topic.events, PAGE_SIZE))
                result["feed_rps"] = await wrk(app_url, args)
                result["feed_304_rps"] = await wrk(app_url, args, f"If-None-Match: {document.etag}")
                result["feed_gzip_rps"] = await wrk(app_url, args, "Accept-Encoding: gzip")
                result["nginx_rps"] = await wrk(nginx_url, args)
                queries = await search_queries(store, args.searches + 1)
                common = search_feed_url(server.url, SearchQuery(("the",)))
                result["search_rps"] = await wrk(common, args)
                await search_latencies(server.url, queries[:1])  # a first query warms up
                took = await search_latencies(server.url, queries[1:])
                took.sort()
                result["search_uncached_p50_ms"] = percentile(took, 0.50) * 1000
                result["search_uncached_p99_ms"] = percentile(took, 0.99) * 1000
                result["search_uncached_max_ms"] = max(took) * 1000
            finally:
                nginx.terminate()
                await nginx.wait()
        await server.stop()
    finally:
        await store.close()
    result["feed_to_nginx"] = float(result["feed_rps"]) / float(result["nginx_rps"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument(
        "--json", action="store_true", help="end with one JSON line (always printed)"
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--nginx-workers", type=int, default=1)
    parser.add_argument("--searches", type=int, default=300, help="uncached search queries")
    parser.add_argument(
        "--no-render-all",
        action="store_true",
        help="skip rendering every topic feed (minutes on 100,000 events)",
    )
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"{tool} is not installed (Debian: apt-get install {tool})")

    result = run_on_feedbots_loop(measure(args))
    rows = [
        ("events in the store", f"{result['events']:,.0f}", ""),
        ("topics", f"{result['topics']:,.0f}", ""),
        ("render one topic feed (50 entries)", f"{result['render_one_topic_ms']:.1f} ms", ""),
        (
            "render every topic feed, page 1",
            f"{result['render_all_topics_s']:.1f} s" if "render_all_topics_s" in result else "-",
            "Atom, one after the other",
        ),
        ("feed body", f"{result['body_bytes']:,.0f} B", f"{result['entries']:.0f} entries"),
        ("app: feed req/s", f"{result['feed_rps']:,.0f}", ">= 0.25 x nginx"),
        ("app: 304 req/s", f"{result['feed_304_rps']:,.0f}", "If-None-Match"),
        ("app: gzip req/s", f"{result['feed_gzip_rps']:,.0f}", "precompressed"),
        (
            "nginx: same file req/s",
            f"{result['nginx_rps']:,.0f}",
            f"{args.nginx_workers} worker(s)",
        ),
        ("app / nginx", f"{result['feed_to_nginx']:.2f}", ">= 0.25"),
        ("app: search feed req/s", f"{result['search_rps']:,.0f}", 'cached, q="the"'),
        (
            "search feed, uncached: p50",
            f"{result['search_uncached_p50_ms']:.1f} ms",
            f"{args.searches} new queries, one at a time",
        ),
        ("search feed, uncached: p99", f"{result['search_uncached_p99_ms']:.1f} ms", "<= 50 ms"),
        ("search feed, uncached: max", f"{result['search_uncached_max_ms']:.1f} ms", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>12}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>12}  {note}")
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
