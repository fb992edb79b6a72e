"""Alert delivery benchmark: one burst through the outbox to a local receiver, beside Apprise.

    python bench/notify.py [--events 200] [--subscriptions 50] [--rounds 1] [--json]
    python bench/notify.py --store postgresql://postgres@127.0.0.1:5432/feedbot_bench --replicas 1,2,3

What it measures, in one run:

- **feedbot on SQLite** (always): 50 signed ``json`` subscriptions, all on one local
  receiver, and a Deliverer running in this process as in ``feedbot run``, keeping
  up to ``--max-in-flight`` (1024) requests open. The
  events are stored with ``Store.write_batch`` in batches (one per archive day), which
  queues their deliveries in the same transaction; each batch's commit time is
  recorded and the deliverer is woken, as ingestion does. It runs until every
  delivery is DONE in the outbox. ``deliveries_per_s`` = deliveries received /
  (last arrival - first commit); ``p50_ms``/``p99_ms`` per delivery = arrival at the
  receiver - commit of its event's batch.
- **feedbot on SQLite with delivery workers** (``--workers 2``, the default; 0 for
  none): the same burst, delivered by ``notify.workers`` worker processes that each
  claim, send and record, while this process stores the events and wakes them, as
  ``feedbot run`` does with that setting (feedbot/notify/workers.py). The JSON headline
  (``deliveries_per_s``, ``ratio``) is this run; ``in_process_*`` is the one above.
- **feedbot's ``apprise`` format** (always; ``--no-apprise`` skips it with the
  Apprise run): the same burst in one process to 50 subscriptions of format
  ``apprise`` whose URLs are ``ntfy://127.0.0.1:PORT/<topic>``, the receiver
  standing in for an ntfy server (it answers as ntfy does). Each attempt renders
  the Apprise message and hands it to Apprise in one of ``--apprise-workers``
  threads (``notify.apprise_workers``), through the same outbox as the webhooks.
- **a bare aiohttp loop** (always; ``--no-bare-loop`` skips it): the ceiling of
  feedbot's delivery on this machine. In this process and on the same event loop, a
  plain aiohttp client loop posts the same signed requests feedbot sends: each
  event's ``json`` body (``render_payload``, rendered once for its subscribers, as
  feedbot does), Standard Webhooks headers (``webhook_headers``, signed per request
  with each subscription's secret) and a webhook-id per subscription and event
  (``delivery_id``, so that the receiver keys them as it keys feedbot's), to 50
  receiver URLs, from ``--max-in-flight`` worker tasks over the burst, through one
  keep-alive ClientSession; no store, no outbox, nothing recorded.
  ``bare_loop_per_s`` = posts received / (last arrival - start); every feedbot run
  reports ``ratio_to_bare_loop``, its deliveries/s over that.
- **Apprise** (always): one ``apprise.Apprise`` object holding the 50 subscriptions
  as ``json://`` URLs to the same receiver, and ``notify()`` of each event's feedbot
  ``json`` body, one event after the other: Apprise posts to the 50 URLs of a call
  from its shared thread pool (``--apprise-mode async_notify`` instead awaits
  ``async_notify()`` of every event at once; slightly slower here). Apprise wraps the
  body in its own JSON envelope, so these are the same number of posts of the same
  bodies to the same receiver, not byte-identical requests.
  ``apprise_deliveries_per_s`` = posts received / (last arrival - start).
- **feedbot on PostgreSQL** (``--store postgresql://... --replicas 1,2,3``): for each
  replica count N, feedbot's tables are dropped (the database is created when
  missing; give the bench a database of its own: the test suite drops the tables of
  ``test`` whenever it runs), and N deliverer processes (each
  with its own Store, ClientSession and worker id) claim from the one outbox
  (``FOR UPDATE SKIP LOCKED`` under a lease) while this process stores the burst.
  Replicas cannot be woken across processes, so they poll the outbox every
  ``--idle-poll`` seconds when idle.

With ``--rounds N`` the SQLite runs and the bare loop are made N times in turn
(in-process, workers, bare loop, in-process, ...): the table shows the median run
of each, and a ratio to the bare loop is the median of each round's own ratio,
taken between runs seconds apart, so that the load of a shared machine, which
moves by minutes, weighs less on it.

For every run it also reports the CPU time of the sending process(es) (all threads),
per delivery, and the machine's busy time split between the sender, the receiver,
PostgreSQL and everything else (psutil), so that a figure can be read against the
load it ran under.

The receiver (bench/_receiver.py) is a keep-alive aiohttp server in its own process,
answering 204 and recording the arrival time of each request by webhook-id (Apprise:
by subscription and title). Every run checks that each delivery arrived exactly
once: ``duplicates`` counts extra arrivals, ``missing`` the ones that never came.

Prints a table and, last, one JSON object. Targets (issue 17): >= 0.8x the bare
loop and >= 6x Apprise.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import aiohttp  # noqa: E402
import psutil  # noqa: E402
from _stats import percentile  # noqa: E402

from feedbot.loop import run as run_on_feedbots_loop  # noqa: E402
from feedbot.model import (  # noqa: E402
    DeliveryStatus,
    Event,
    EventRecord,
    Related,
    RelatedKind,
    Source,
    Subscription,
    Topic,
)
from feedbot.notify.apprise_messages import alert_message  # noqa: E402
from feedbot.notify.apprise_target import parse_apprise_url  # noqa: E402
from feedbot.notify.deliver import MAX_ANSWER_BYTES, Deliverer, DelivererSettings  # noqa: E402
from feedbot.notify.formats import render_payload  # noqa: E402
from feedbot.notify.retry import RetryPolicy  # noqa: E402
from feedbot.notify.signing import webhook_headers  # noqa: E402
from feedbot.notify.workers import (  # noqa: E402
    DeliveryConfig,
    DeliveryWorkers,
    Outcome,
    build_deliverer,
    open_session,
)
from feedbot.store import AttemptReport, DeliveryJob, Store, delivery_id  # noqa: E402
from feedbot.store.subscriptions import new_subscription_id  # noqa: E402

BASE_URL = "https://feedbot.example"
USER_AGENT = "feedbot-bench"
TIMEOUT_S = 10.0  # per request, notify.timeout
TOPICS = [
    "Russo-Ukrainian War",
    "Climate change",
    "Elections",
    "Côte d'Ivoire",
    "Artificial intelligence",
    "Public health",
    "Earthquakes",
    "Central banks",
]


# -- the burst -------------------------------------------------------------------------


def make_events(count: int, per_day: int) -> list[Event]:
    """``count`` synthetic events, ``per_day`` per archive day, with sources,
    topics and (for one in three) a follow-up of an earlier event."""
    start = date(2026, 11, 1)
    made: list[Event] = []
    for n in range(count):
        day = start + timedelta(days=n // per_day)
        related: tuple[Related, ...] = ()
        if n >= 3 and n % 3 == 0:
            earlier = made[n - 3]
            related = (
                Related(
                    earlier.id, earlier.date, earlier.title, ("Follow-up",), RelatedKind.FOLLOW_UP
                ),
            )
        made.append(
            Event(
                id=f"{day.year}/{day.month:02d}/{day.day}/bench-event-{n:05d}",
                date=day,
                story=f"Story {n % 17}",
                title=f"Event {n}: officials announce measures after talks end without agreement",
                sources=tuple(
                    Source(f"Source {k}", f"https://news.example/{n}/{k}") for k in range(3)
                ),
                related=related,
                topics=(
                    Topic.named(TOPICS[n % len(TOPICS)]),
                    Topic.named(TOPICS[(n * 3 + 1) % len(TOPICS)]),
                ),
            )
        )
    return made


def secret_of(n: int) -> str:
    return "whsec_" + base64.b64encode(bytes([n % 256]) * 32).decode("ascii")


def subscription_urls(port: int, run: str, count: int) -> list[str]:
    return [f"http://127.0.0.1:{port}/r/{run}/s{i:03d}" for i in range(count)]


async def add_subscriptions(store: Store, urls: Sequence[str]) -> list[Subscription]:
    now = datetime.now(UTC)
    return [
        await store.subscriptions.add(
            Subscription(id="", url=url, topics=("*",), secret=secret_of(i)), now=now
        )
        for i, url in enumerate(urls)
    ]


async def store_burst(
    store: Store, events: Sequence[Event], per_batch: int, wake: Callable[[], None] | None
) -> dict[str, float]:
    """Store ``events`` in batches; return each event id's commit time (time.time())."""
    records = [EventRecord.of(e) for e in events]
    stored_at: dict[str, float] = {}
    for first in range(0, len(records), per_batch):
        batch = records[first : first + per_batch]
        await store.write_batch(
            new=batch,
            changed=[],
            marks_={},
            rejected={},
            accepted_paths=[],
            now=datetime.now(UTC),
            alert_since=None,
        )
        committed = time.time()
        stored_at.update(dict.fromkeys((r.id for r in batch), committed))
        if wake is not None:
            wake()
    return stored_at


def delivery_config(store_url: str, settings: DelivererSettings) -> DeliveryConfig:
    return DeliveryConfig(
        store_url=store_url,
        base_url=BASE_URL,
        settings=settings,
        policy=RetryPolicy(),
        allow_private=True,
        # As this process logs (nothing below warnings), so that every run does the same.
        log_level="warning",
        grace=5.0,
    )


def deliverer_settings(args: argparse.Namespace, idle_poll: float) -> DelivererSettings:
    return DelivererSettings(
        max_in_flight=args.max_in_flight,
        # Every subscription is on the one receiver (one host:port): let the
        # per-host cap be the global one.
        per_host=args.max_in_flight,
        timeout=TIMEOUT_S,
        idle_poll=idle_poll,
        user_agent=USER_AGENT,
    )


# -- results -----------------------------------------------------------------------------


@dataclass
class RunResult:
    name: str
    expected: int
    received: int
    duplicates: int
    missing: int
    unexpected: int
    seconds: float
    deliveries_per_s: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_s: float | None = None  # CPU time of the sending process(es), all threads
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu_us_per_delivery(self) -> float | None:
        if self.cpu_s is None or not self.received:
            return None
        return self.cpu_s / self.received * 1e6

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "deliveries_per_s": round(self.deliveries_per_s, 1),
            "seconds": round(self.seconds, 2),
            "received": self.received,
            "duplicates": self.duplicates,
            "missing": self.missing,
        }
        if self.cpu_s is not None:
            out["cpu_s"] = round(self.cpu_s, 2)
            out["cpu_us_per_delivery"] = round(self.cpu_us_per_delivery or 0.0)
        if self.p50_ms is not None:
            out["p50_ms"] = round(self.p50_ms, 1)
            out["p99_ms"] = round(self.p99_ms or 0.0, 1)
        out.update(self.extra)
        return out


def analyse(
    name: str,
    stats: dict[str, list[Any]],
    expected: dict[str, str],
    started: float,
    stored_at: dict[str, float] | None,
) -> RunResult:
    """Check exactly-once and compute throughput (and latency when ``stored_at``
    gives each event's commit time). ``expected`` maps a receiver key to its event id."""
    keys: list[str] = stats["keys"]
    times: list[float] = stats["times"]
    counts = Counter(keys)
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    unexpected = sum(1 for k in counts if k not in expected)
    missing = sum(1 for k in expected if k not in counts)
    seconds = (max(times) - started) if times else float("nan")
    result = RunResult(
        name=name,
        expected=len(expected),
        received=len(keys),
        duplicates=duplicates,
        missing=missing,
        unexpected=unexpected,
        seconds=seconds,
        deliveries_per_s=len(keys) / seconds if times else 0.0,
    )
    if stored_at is not None:
        first_arrival: dict[str, float] = {}
        for key, at in zip(keys, times, strict=True):
            first_arrival.setdefault(key, at)
        latencies = sorted(
            (at - stored_at[expected[key]]) * 1000
            for key, at in first_arrival.items()
            if key in expected
        )
        result.p50_ms = statistics.median(latencies) if latencies else float("nan")
        result.p99_ms = percentile(latencies, 0.99)
    return result


# -- where the CPU went ------------------------------------------------------------------------


class CpuWatch:
    """CPU seconds spent during one run by the whole machine, the receiver process and
    the PostgreSQL server's processes (when it runs on this machine), so that the
    report can say what the figures were bounded by, and how much other load there was."""

    def __init__(self, receiver_pid: int) -> None:
        self.receiver_pid = receiver_pid
        self._machine: Any = None
        self._procs: dict[int, float] = {}
        self._wall = 0.0

    def _sample(self) -> dict[int, float]:
        found: dict[int, float] = {}
        for proc in psutil.process_iter(["pid", "name", "cpu_times"]):
            info = proc.info
            if info["pid"] == self.receiver_pid or info["name"] == "postgres":
                times = info["cpu_times"]
                if times is not None:
                    found[info["pid"]] = times.user + times.system
        return found

    def start(self) -> None:
        self._machine = psutil.cpu_times()
        self._procs = self._sample()
        self._wall = time.monotonic()

    def stop(self, sender_cpu_s: float) -> dict[str, float]:
        wall = time.monotonic() - self._wall
        now = psutil.cpu_times()
        procs = self._sample()

        def busy(t: Any) -> float:
            return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))

        machine = busy(now) - busy(self._machine)
        receiver = procs.get(self.receiver_pid, 0.0) - self._procs.get(self.receiver_pid, 0.0)
        postgres = sum(
            cpu - self._procs.get(pid, 0.0)
            for pid, cpu in procs.items()
            if pid != self.receiver_pid
        )
        cores = psutil.cpu_count() or 1
        return {
            "wall_s": round(wall, 2),
            "cores": cores,
            "machine_busy_pct": round(100 * machine / (wall * cores), 1),
            "sender_cpu_s": round(sender_cpu_s, 2),
            "receiver_cpu_s": round(receiver, 2),
            "postgres_cpu_s": round(postgres, 2),
            "other_cpu_s": round(max(0.0, machine - sender_cpu_s - receiver - postgres), 2),
        }


# -- the receiver process ------------------------------------------------------------------


class ReceiverProcess:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "_receiver.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip():
            raise RuntimeError("the receiver did not start")
        self.port = int(line)

    async def stats(self, run: str) -> dict[str, list[Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.port}/stats/{run}") as response,
        ):
            data: dict[str, list[Any]] = await response.json()
            return data

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# -- feedbot, one process on SQLite --------------------------------------------------------


async def feedbot_sqlite(
    args: argparse.Namespace,
    receiver: ReceiverProcess,
    events: Sequence[Event],
    tmp: Path,
    workers: int,
    round_: int = 0,
) -> RunResult:
    """One burst on SQLite: delivered by this process (``workers`` = 0, as ``feedbot
    run`` does by default), or by ``workers`` delivery worker processes while this
    process stores the events and wakes them (``notify.workers``)."""
    run = f"sqlite-workers-{workers}"
    url = f"sqlite:///{tmp / f'{run}-{round_}.db'}"
    store = await Store.open(url)
    subscriptions = await add_subscriptions(
        store, subscription_urls(receiver.port, run, args.subscriptions)
    )
    expected = {delivery_id(s.id, e.id): e.id for s in subscriptions for e in events}
    done = 0
    all_done = asyncio.Event()

    def count(outcome: Outcome) -> None:
        nonlocal done
        if outcome.status is DeliveryStatus.DONE:
            done += 1
            if done >= len(expected):
                all_done.set()

    settings = deliverer_settings(args, idle_poll=1.0)
    config = delivery_config(url, settings)
    pool: DeliveryWorkers | None = None
    deliverer: Deliverer | None = None
    stop = asyncio.Event()
    delivering = None
    async with open_session(config) as session:
        if workers:
            pool = DeliveryWorkers(workers, config, worker_id="bench", on_outcome=count)
            await pool.start()
            wake = pool.wake
        else:
            deliverer = build_deliverer(
                config,
                store,
                session,
                worker_id="bench-sqlite",
                on_attempt=lambda job, report: count(Outcome.of(job, report)),
            )
            delivering = asyncio.create_task(deliverer.run(stop))
            wake = deliverer.wake
        children = [psutil.Process(w.process.pid) for w in pool._workers] if pool else []
        children_cpu = sum(c.cpu_times().user + c.cpu_times().system for c in children)
        watch = CpuWatch(receiver.process.pid)
        watch.start()
        cpu_started = time.process_time()
        stored_at = await store_burst(store, events, args.per_day, wake)
        try:
            await asyncio.wait_for(all_done.wait(), timeout=args.timeout)
        except TimeoutError:
            print(f"{run}: timed out with {done} of {len(expected)} done", file=sys.stderr)
        cpu_s = time.process_time() - cpu_started
        workers_cpu_s = sum(c.cpu_times().user + c.cpu_times().system for c in children)
        workers_cpu_s -= children_cpu
        cpu_s += workers_cpu_s
        machine = watch.stop(cpu_s)
        stop.set()
        if delivering is not None and deliverer is not None:
            await delivering
            await deliverer.drain(5)
        if pool is not None:
            await pool.stop()
    outbox_done = await store.outbox.count(DeliveryStatus.DONE)
    await store.close()
    result = analyse(
        f"feedbot, SQLite, {workers} delivery workers" if workers else "feedbot, SQLite, 1 process",
        await receiver.stats(run),
        expected,
        min(stored_at.values()),
        stored_at,
    )
    result.cpu_s = cpu_s
    if workers:
        result.extra["cpu_s_workers"] = round(workers_cpu_s, 2)
    result.extra["outbox_done"] = outbox_done
    result.extra["cpu"] = machine
    return result


async def feedbot_apprise(
    args: argparse.Namespace, receiver: ReceiverProcess, events: Sequence[Event], tmp: Path
) -> RunResult:
    """The burst to ``apprise`` subscriptions (ntfy:// to the receiver), delivered
    in this process as ``feedbot run`` does."""
    run = "ntfy"
    url = f"sqlite:///{tmp / 'apprise.db'}"
    store = await Store.open(url)
    now = datetime.now(UTC)
    subscriptions = []
    for i in range(args.subscriptions):
        target = parse_apprise_url(f"ntfy://127.0.0.1:{receiver.port}/s{i:03d}?image=no")
        subscriptions.append(
            await store.subscriptions.add(
                Subscription(
                    id="", url=target.url, format="apprise", shown_url=target.redacted_url
                ),
                now=now,
            )
        )
    # The receiver keys an ntfy message by its topic and title: the title each
    # event's message gets.
    target = parse_apprise_url(subscriptions[0].url)
    titles = {
        e.id: alert_message(target, e, base_url=BASE_URL, matched_topics=e.topic_slugs).title
        for e in events
    }
    expected = {f"s{i:03d}/{titles[e.id]}": e.id for i in range(len(subscriptions)) for e in events}
    done = 0
    all_done = asyncio.Event()

    def count(job: DeliveryJob, report: AttemptReport) -> None:
        nonlocal done
        if report.outcome is DeliveryStatus.DONE:
            done += 1
            if done >= len(expected):
                all_done.set()

    config = replace(
        delivery_config(url, deliverer_settings(args, idle_poll=1.0)),
        apprise_workers=args.apprise_workers,
    )
    stop = asyncio.Event()
    async with open_session(config) as session:
        deliverer = build_deliverer(
            config, store, session, worker_id="bench-apprise", on_attempt=count
        )
        delivering = asyncio.create_task(deliverer.run(stop))
        watch = CpuWatch(receiver.process.pid)
        watch.start()
        cpu_started = time.process_time()
        stored_at = await store_burst(store, events, args.per_day, deliverer.wake)
        try:
            await asyncio.wait_for(all_done.wait(), timeout=args.timeout)
        except TimeoutError:
            print(f"apprise format: timed out with {done} of {len(expected)} done", file=sys.stderr)
        cpu_s = time.process_time() - cpu_started
        machine = watch.stop(cpu_s)
        stop.set()
        await delivering
        await deliverer.drain(5)
    await store.close()
    result = analyse(
        f"feedbot, SQLite, 1 process, apprise format (ntfy://, {args.apprise_workers} threads)",
        await receiver.stats(run),
        expected,
        min(stored_at.values()),
        stored_at,
    )
    result.cpu_s = cpu_s
    result.extra["cpu"] = machine
    return result


# -- feedbot, N processes on PostgreSQL ------------------------------------------------------


def replica_main(
    url: str,
    worker_id: str,
    settings: DelivererSettings,
    ready: MpEvent,
    stop: MpEvent,
    results: Any,  # multiprocessing.Queue
) -> None:
    """One deliverer process: its own Store, session and Deliverer, until ``stop``."""
    results.put(run_on_feedbots_loop(_replica(url, worker_id, settings, ready, stop)))


async def _replica(
    url: str, worker_id: str, settings: DelivererSettings, ready: MpEvent, stop: MpEvent
) -> dict[str, Any]:
    store = await Store.open(url)
    outcomes: Counter[str] = Counter()

    def count(_job: DeliveryJob, report: AttemptReport) -> None:
        outcomes[report.outcome.value] += 1

    config = delivery_config(url, settings)
    async with open_session(config) as session:
        deliverer = build_deliverer(config, store, session, worker_id=worker_id, on_attempt=count)
        stopping = asyncio.Event()
        worker = asyncio.create_task(deliverer.run(stopping))
        cpu_started = time.process_time()
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        cpu_s = time.process_time() - cpu_started
        stopping.set()
        await worker
        await deliverer.drain(5)
    await store.close()
    return {"worker": worker_id, "cpu_s": cpu_s, "outcomes": dict(outcomes)}


async def reset_postgres(url: str) -> None:
    """Create the database if it does not exist, and drop feedbot's tables in it."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    from feedbot.store.schema import metadata
    from feedbot.store.store import async_url

    target = make_url(async_url(url))
    server = create_async_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with server.connect() as connection:
            exists = await connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": target.database},
            )
            if not exists:
                quoted = server.dialect.identifier_preparer.quote(target.database or "")
                await connection.execute(text(f"CREATE DATABASE {quoted}"))
    finally:
        await server.dispose()
    engine = create_async_engine(target)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.drop_all)
    finally:
        await engine.dispose()


async def feedbot_postgres(
    args: argparse.Namespace,
    receiver: ReceiverProcess,
    events: Sequence[Event],
    replicas: int,
) -> RunResult:
    run = f"pg{replicas}"
    await reset_postgres(args.store)
    store = await Store.open(args.store)
    subscriptions = await add_subscriptions(
        store, subscription_urls(receiver.port, run, args.subscriptions)
    )
    expected = {delivery_id(s.id, e.id): e.id for s in subscriptions for e in events}

    context = mp.get_context("spawn")
    stop = context.Event()
    results = context.Queue()
    settings = deliverer_settings(args, idle_poll=args.idle_poll)
    readies = []
    processes = []
    for n in range(replicas):
        ready = context.Event()
        process = context.Process(
            target=replica_main,
            args=(args.store, f"bench-replica-{n + 1}", settings, ready, stop, results),
            name=f"replica-{n + 1}",
        )
        process.start()
        readies.append(ready)
        processes.append(process)
    loop = asyncio.get_running_loop()
    for ready in readies:
        if not await loop.run_in_executor(None, ready.wait, 60):
            raise RuntimeError("a replica did not start within 60 s")

    watch = CpuWatch(receiver.process.pid)
    watch.start()
    cpu_started = time.process_time()
    stored_at = await store_burst(store, events, args.per_day, None)
    deadline = time.monotonic() + args.timeout
    done = 0
    while time.monotonic() < deadline:
        done = await store.outbox.count(DeliveryStatus.DONE)
        if done >= len(expected):
            break
        await asyncio.sleep(0.1)
    else:
        print(f"{run}: timed out with {done} of {len(expected)} done", file=sys.stderr)
    parent_cpu_s = time.process_time() - cpu_started
    watch_snapshot = watch.stop(0.0)
    stop.set()
    per_worker = [await loop.run_in_executor(None, results.get, True, 30) for _ in processes]
    for process in processes:
        await loop.run_in_executor(None, process.join, 30)
    outbox_done = await store.outbox.count(DeliveryStatus.DONE)
    await store.close()

    result = analyse(
        f"feedbot, PostgreSQL, {replicas} process{'es' if replicas > 1 else ''}",
        await receiver.stats(run),
        expected,
        min(stored_at.values()),
        stored_at,
    )
    result.extra["outbox_done"] = outbox_done
    per_worker.sort(key=lambda w: str(w["worker"]))
    result.cpu_s = parent_cpu_s + sum(w["cpu_s"] for w in per_worker)
    result.extra["attempts_per_replica"] = [sum(w["outcomes"].values()) for w in per_worker]
    result.extra["cpu_s_per_replica"] = [round(w["cpu_s"], 2) for w in per_worker]
    result.extra["cpu_s_ingesting_parent"] = round(parent_cpu_s, 2)
    # The replicas report their CPU when they stop: account for it now.
    watch_snapshot["sender_cpu_s"] = round(result.cpu_s, 2)
    watch_snapshot["other_cpu_s"] = round(max(0.0, watch_snapshot["other_cpu_s"] - result.cpu_s), 2)
    result.extra["cpu"] = watch_snapshot
    return result


# -- the ceiling: a bare aiohttp loop ----------------------------------------------------------


async def bare_loop_run(
    args: argparse.Namespace, receiver: ReceiverProcess, events: Sequence[Event]
) -> RunResult:
    """The burst's signed posts with no store and no outbox: ``--max-in-flight`` worker
    tasks in this process, over one keep-alive ClientSession, post what feedbot would
    (the same bodies, headers, secrets and webhook-ids) to the same kind of URLs."""
    run = "bare-loop"
    urls = subscription_urls(receiver.port, run, args.subscriptions)
    subs = [(new_subscription_id(), url, secret_of(i)) for i, url in enumerate(urls)]
    expected = {delivery_id(sid, e.id): e.id for sid, _, _ in subs for e in events}
    failures: Counter[str] = Counter()
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)

    def posts() -> Iterator[tuple[str, str, bytes, str, str]]:
        """(url, webhook-id, body, content type, secret) of each delivery, event by
        event as the outbox queues them. Each event's body is rendered once for all
        its subscribers, as feedbot's request factory does; every subscription is
        ``*``, so it matches all of the event's topics, and it was alerted about the
        related earlier event, so the alert replies to that one."""
        for event in events:
            payload = render_payload(
                "json",
                event,
                base_url=BASE_URL,
                matched_topics=event.topic_slugs,
                in_reply_to=tuple(sorted(r.id for r in event.related)),
                timestamp=datetime.now(UTC),
            )
            for sid, url, secret in subs:
                yield url, delivery_id(sid, event.id), payload.body, payload.content_type, secret

    async def worker(session: aiohttp.ClientSession, todo: Iterator[Any]) -> None:
        # The workers share one iterator: it never awaits, so each post is taken once.
        for url, msg_id, body, content_type, secret in todo:
            headers = {
                "User-Agent": USER_AGENT,
                "Content-Type": content_type,
                # Signed at the attempt's time, as feedbot signs each attempt.
                **webhook_headers(msg_id, datetime.now(UTC), body, secret),
            }
            try:
                async with session.post(
                    url, data=body, headers=headers, allow_redirects=False, timeout=timeout
                ) as response:
                    await response.content.read(MAX_ANSWER_BYTES)
                    if not 200 <= response.status < 300:
                        failures[f"HTTP {response.status}"] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures[type(exc).__name__] += 1

    connector = aiohttp.TCPConnector(limit=args.max_in_flight)
    async with aiohttp.ClientSession(connector=connector) as session:
        watch = CpuWatch(receiver.process.pid)
        watch.start()
        started = time.time()
        cpu_started = time.process_time()
        todo = posts()
        tasks = min(args.max_in_flight, len(expected))
        try:
            await asyncio.wait_for(
                asyncio.gather(*(worker(session, todo) for _ in range(tasks))),
                timeout=args.timeout,
            )
        except TimeoutError:
            print(f"{run}: timed out", file=sys.stderr)
        cpu_s = time.process_time() - cpu_started
        machine = watch.stop(cpu_s)
    result = analyse(
        f"bare aiohttp loop ({tasks} tasks, no store)",
        await receiver.stats(run),
        expected,
        started,
        None,
    )
    result.cpu_s = cpu_s
    result.extra["failed_posts"] = dict(failures)
    result.extra["cpu"] = machine
    return result


# -- Apprise ---------------------------------------------------------------------------------


async def apprise_run(
    args: argparse.Namespace, receiver: ReceiverProcess, events: Sequence[Event]
) -> tuple[RunResult, str]:
    import apprise

    run = "apprise"
    apobj = apprise.Apprise()
    subs = [f"s{i:03d}" for i in range(args.subscriptions)]
    for sub in subs:
        apobj.add(f"json://127.0.0.1:{receiver.port}/r/{run}/{sub}")
    now = datetime.now(UTC)
    bodies = [
        render_payload(
            "json",
            event,
            base_url=BASE_URL,
            matched_topics=event.topic_slugs,
            in_reply_to=(),
            timestamp=now,
        ).body.decode("utf-8")
        for event in events
    ]
    expected = {f"{sub}/{e.id}": e.id for sub in subs for e in events}
    watch = CpuWatch(receiver.process.pid)
    watch.start()
    started = time.time()
    cpu_started = time.process_time()
    if args.apprise_mode == "notify":
        # The plain way: notify() per event; Apprise posts to the 50 URLs of each
        # call from its shared thread pool and returns when they are done.
        outcomes = await asyncio.to_thread(
            lambda: [
                apobj.notify(body=body, title=event.id)
                for event, body in zip(events, bodies, strict=True)
            ]
        )
    else:
        outcomes = await asyncio.gather(
            *(
                apobj.async_notify(body=body, title=event.id)
                for event, body in zip(events, bodies, strict=True)
            )
        )
    cpu_s = time.process_time() - cpu_started
    machine = watch.stop(cpu_s)
    failed = sum(1 for outcome in outcomes if not outcome)
    result = analyse(
        f"Apprise {apprise.__version__}, json://, {args.apprise_mode}()",
        await receiver.stats(run),
        expected,
        started,
        None,
    )
    result.cpu_s = cpu_s
    result.extra["failed_notify_calls"] = failed
    result.extra["cpu"] = machine
    return result, apprise.__version__


# -- the report --------------------------------------------------------------------------------


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}/s"


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def format_row(cells: Sequence[str], widths: Sequence[int]) -> str:
    """The first column left-aligned, the others right-aligned."""
    return "  ".join(
        f"{cell:<{width}}" if i == 0 else f"{cell:>{width}}"
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    )


def print_table(
    args: argparse.Namespace,
    sqlite: RunResult,
    pooled: dict[int, RunResult],
    apprise_format: RunResult | None,
    apprise_result: RunResult | None,
    apprise_version: str,
    replicas: dict[int, RunResult],
    bare: RunResult | None,
) -> None:
    total = args.events * args.subscriptions
    print(
        f"burst: {args.events} events x {args.subscriptions} subscriptions = {total:,} "
        f"deliveries, to one keep-alive receiver on 127.0.0.1 (own process); "
        f"max_in_flight={args.max_in_flight}"
    )
    header = (
        "run",
        "deliveries/s",
        "p50",
        "p99",
        "received",
        "dupes",
        "missing",
        "seconds",
        "CPU us/delivery",
    )
    rows: list[tuple[str, ...]] = []
    shown = [sqlite, *pooled.values(), *replicas.values()] + [
        result for result in (apprise_format, bare, apprise_result) if result is not None
    ]
    for result in shown:
        rows.append(
            (
                result.name,
                fmt_rate(result.deliveries_per_s),
                fmt_ms(result.p50_ms),
                fmt_ms(result.p99_ms),
                f"{result.received:,}",
                str(result.duplicates),
                str(result.missing),
                f"{result.seconds:.1f}",
                "-" if result.cpu_us_per_delivery is None else f"{result.cpu_us_per_delivery:,.0f}",
            )
        )
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    line = format_row(header, widths)
    print(line)
    print("-" * len(line))
    for row in rows:
        print(format_row(row, widths))
    webhook_runs = (sqlite, *pooled.values(), *replicas.values())
    if bare is not None and bare.deliveries_per_s:
        per = " (median of the rounds' own ratios)" if args.rounds > 1 else ""
        for result in webhook_runs:
            ratio = result.extra.get("ratio_to_bare_loop")
            if ratio is None:
                ratio = result.deliveries_per_s / bare.deliveries_per_s
            print(f"{result.name} / bare loop: {ratio:.2f}x{per}")
    if apprise_result is not None and apprise_result.deliveries_per_s:
        for result in webhook_runs:
            ratio = result.deliveries_per_s / apprise_result.deliveries_per_s
            print(f"{result.name} / Apprise: {ratio:.1f}x")
    if bare is not None or apprise_result is not None:
        print("(targets: >= 0.8x the bare loop and >= 6x Apprise)")
    if apprise_result is not None and apprise_format is not None:
        ratio = apprise_format.deliveries_per_s / apprise_result.deliveries_per_s
        print(f"feedbot's apprise format / Apprise: {ratio:.1f}x")

    print("\nCPU during each run (the machine's busy time, and who used it):")
    cpu_header = ("run", "wall", "machine busy", "sender", "receiver", "PostgreSQL", "others")
    cpu_rows = []
    for result in shown:
        cpu = result.extra.get("cpu")
        if cpu is None:
            continue
        cpu_rows.append(
            (
                result.name,
                f"{cpu['wall_s']:.1f} s",
                f"{cpu['machine_busy_pct']:.0f}% of {cpu['cores']} cores",
                f"{cpu['sender_cpu_s']:.1f} s",
                f"{cpu['receiver_cpu_s']:.1f} s",
                f"{cpu['postgres_cpu_s']:.1f} s",
                f"{cpu['other_cpu_s']:.1f} s",
            )
        )
    widths = [max(len(r[i]) for r in (cpu_header, *cpu_rows)) for i in range(len(cpu_header))]
    print(format_row(cpu_header, widths))
    for row in cpu_rows:
        print(format_row(row, widths))

    notes = [
        "feedbot: signed Standard Webhooks requests; every delivery queued in the "
        "transaction that stores its event, every attempt recorded in the outbox. "
        "Latency = the event's batch committed -> arrival at the receiver; in a burst it "
        "is mostly queueing (the last of the burst waits for all before it).",
        "bare loop: the same signed posts (bodies, headers, webhook-ids) from worker tasks "
        "on this process's event loop through one keep-alive session, without store or "
        "outbox: the ceiling the feedbot runs are measured against (ratio to bare loop).",
        "Apprise: the same number of posts of the same json bodies to the same receiver, "
        f"but in Apprise's own JSON envelope, unsigned, recorded nowhere; {args.apprise_mode}() "
        "per event, a new connection per post (requests).",
        "sender = CPU of the sending process(es), all threads (for the replicas: the "
        "deliverer processes plus the parent storing the events; for delivery workers: "
        "those plus the daemon process); others = the rest of the machine's busy time "
        "(other programs on this machine).",
        "N delivery workers = notify.workers = N: N processes claim (under SQLite's write "
        "lock, so no two claim one delivery), send and record, each on its "
        "own event loop and store connection, sharing the SQLite file; the daemon process "
        "stores the events and wakes them (feedbot/notify/workers.py).",
    ]
    if args.rounds > 1:
        notes.append(
            f"{args.rounds} rounds: each SQLite and bare-loop row is the median of its "
            "rounds by deliveries/s; the ratios to the bare loop are the medians of each "
            "round's own ratio (listed below the table)."
        )
    if replicas:
        base = replicas.get(1)
        gains = ", ".join(
            f"{n}: {r.deliveries_per_s / base.deliveries_per_s:.2f}x" if base else f"{n}: -"
            for n, r in replicas.items()
        )
        split = "; ".join(
            f"{n}: {r.extra.get('attempts_per_replica')}" for n, r in replicas.items()
        )
        notes.append(
            f"PostgreSQL replicas, throughput relative to 1 replica: {gains}. "
            f"Attempts made by each replica: {split}."
        )
        notes.append(
            f"What limits the replica figures: CPU. This machine has {os.cpu_count()} cores "
            "for N deliverer processes (each CPU-bound on its one event loop), the parent "
            "storing the events, the receiver process and the PostgreSQL server; once the "
            "machine is near 100% busy (see above), more replicas only split the same CPU "
            "and add claim traffic. More cores, or the receiver and PostgreSQL elsewhere, "
            "would let replicas add throughput."
        )
    print()
    for note in notes:
        print(textwrap.fill(note, width=100, initial_indent="- ", subsequent_indent="  "))


def parse_workers(value: str) -> list[int]:
    counts = [int(part) for part in value.split(",") if part.strip()]
    if any(n < 0 for n in counts):
        raise argparse.ArgumentTypeError("give worker counts like 2, or 0 for none")
    return [n for n in counts if n]


def parse_replicas(value: str) -> list[int]:
    counts = [int(part) for part in value.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("give replica counts like 1,2,3")
    return counts


@dataclass
class Round:
    """One turn of the webhook runs, one after the other: their ratios to the bare
    loop are taken between runs minutes apart at most, under much the same load."""

    sqlite: RunResult
    pooled: dict[int, RunResult]
    bare: RunResult | None

    def ratios(self) -> dict[str, float | None]:
        def to_bare(result: RunResult) -> float | None:
            if self.bare is None or not self.bare.deliveries_per_s:
                return None
            return round(result.deliveries_per_s / self.bare.deliveries_per_s, 2)

        found = {"in_process": to_bare(self.sqlite)}
        found.update({f"workers_{n}": to_bare(r) for n, r in self.pooled.items()})
        return found


def median_run(results: Sequence[RunResult]) -> RunResult:
    """The run with the median deliveries/s (of an even number, the lower of the two)."""
    ranked = sorted(results, key=lambda r: r.deliveries_per_s)
    return ranked[(len(ranked) - 1) // 2]


def median_of(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 2) if known else None


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    events = make_events(args.events, args.per_day)
    receiver = ReceiverProcess()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rounds: list[Round] = []
            for n in range(args.rounds):
                rounds.append(
                    Round(
                        await feedbot_sqlite(args, receiver, events, Path(tmp), 0, n),
                        {
                            w: await feedbot_sqlite(args, receiver, events, Path(tmp), w, n)
                            for w in args.workers
                        },
                        await bare_loop_run(args, receiver, events) if args.bare_loop else None,
                    )
                )
            sqlite = median_run([r.sqlite for r in rounds])
            pooled = {w: median_run([r.pooled[w] for r in rounds]) for w in args.workers}
            bares = [r.bare for r in rounds if r.bare is not None]
            bare = median_run(bares) if bares else None
            apprise_format = (
                await feedbot_apprise(args, receiver, events, Path(tmp)) if args.apprise else None
            )
        replicas: dict[int, RunResult] = {}
        if args.store.startswith("postgresql"):
            for n in args.replicas:
                replicas[n] = await feedbot_postgres(args, receiver, events, n)
        apprise_result, apprise_version = (
            await apprise_run(args, receiver, events) if args.apprise else (None, "-")
        )
    finally:
        receiver.close()

    apprise_rate = apprise_result.deliveries_per_s if apprise_result else None
    bare_rate = bare.deliveries_per_s if bare else None
    # A webhook run's ratio to the bare loop: the median of each round's own.
    per_round = [r.ratios() for r in rounds]
    webhook = {"in_process": sqlite, **{f"workers_{n}": r for n, r in pooled.items()}}
    for key, result in webhook.items():
        result.extra["ratio_to_bare_loop"] = median_of([r[key] for r in per_round])
    others = [*replicas.values(), *([apprise_format] if apprise_format is not None else [])]
    for result in others:
        result.extra["ratio_to_bare_loop"] = (
            round(result.deliveries_per_s / bare_rate, 2) if bare_rate else None
        )
    print_table(
        args, sqlite, pooled, apprise_format, apprise_result, apprise_version, replicas, bare
    )
    if len(rounds) > 1:
        print(f"\nratio to the bare loop of the same round, in each of {len(rounds)} rounds:")
        for key in webhook:
            shown = ", ".join(f"{r[key]:.2f}x" if r[key] is not None else "-" for r in per_round)
            print(f"  {key}: {shown} (median {median_of([r[key] for r in per_round])}x)")

    def ratio(result: RunResult) -> float | None:
        return round(result.deliveries_per_s / apprise_rate, 2) if apprise_rate else None

    # The headline is the run with the most delivery workers asked for (all of
    # them, in-process included, are in the table and below).
    headline = pooled[max(pooled)] if pooled else sqlite
    every = [sqlite, *pooled.values(), *others]
    checked = every + ([bare] if bare is not None else [])  # Apprise's are its own
    summary: dict[str, Any] = {
        "deliveries": args.events * args.subscriptions,
        "workers": max(pooled) if pooled else 0,
        "deliveries_per_s": round(headline.deliveries_per_s, 1),
        "p50_ms": round(headline.p50_ms or 0.0, 1),
        "p99_ms": round(headline.p99_ms or 0.0, 1),
        "apprise_deliveries_per_s": round(apprise_rate, 1) if apprise_rate else None,
        "ratio": ratio(headline),
        "bare_loop_per_s": round(bare_rate, 1) if bare_rate else None,
        "ratio_to_bare_loop": headline.extra["ratio_to_bare_loop"],
        "in_process_deliveries_per_s": round(sqlite.deliveries_per_s, 1),
        "in_process_ratio": ratio(sqlite),
        "in_process_ratio_to_bare_loop": sqlite.extra["ratio_to_bare_loop"],
        "duplicates": sum(r.duplicates for r in checked),
        "missing": sum(r.missing for r in checked),
        "apprise_version": apprise_version,
        "sqlite": sqlite.as_json(),
    }
    for n, result in pooled.items():
        summary[f"sqlite_workers_{n}"] = result.as_json()
    if bare is not None:
        summary["bare_loop"] = bare.as_json()
    if apprise_result is not None:
        summary["apprise"] = apprise_result.as_json()
    if apprise_format is not None:
        summary["apprise_format"] = apprise_format.as_json()
    if replicas:
        summary["replicas"] = {str(n): r.as_json() for n, r in replicas.items()}
    if len(rounds) > 1:
        summary["rounds"] = [
            {
                "in_process_per_s": round(r.sqlite.deliveries_per_s, 1),
                **{f"workers_{n}_per_s": round(p.deliveries_per_s, 1) for n, p in r.pooled.items()},
                "bare_loop_per_s": round(r.bare.deliveries_per_s, 1) if r.bare else None,
                "ratio_to_bare_loop": ratios,
            }
            for r, ratios in zip(rounds, per_round, strict=True)
        ]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--subscriptions", type=int, default=50)
    parser.add_argument("--per-day", type=int, default=20, help="events per write_batch")
    parser.add_argument(
        "--max-in-flight", type=int, default=1024, help="notify.max_in_flight (and per_host)"
    )
    parser.add_argument(
        "--store",
        default="sqlite",
        help="sqlite (default), or a postgresql:// URL to add the replica runs",
    )
    parser.add_argument("--replicas", type=parse_replicas, default=[1], help="e.g. 1,2,3")
    parser.add_argument(
        "--workers",
        type=parse_workers,
        default=[2],
        help="notify.workers of the SQLite runs beside the in-process one (default 2)",
    )
    parser.add_argument(
        "--idle-poll", type=float, default=0.1, help="seconds, replicas' outbox poll when idle"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per run")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the SQLite and bare-loop runs this many times in turn; report the "
        "median run of each, and the median of each round's ratio to its bare loop",
    )
    parser.add_argument(
        "--apprise-mode",
        choices=["notify", "async_notify"],
        default="notify",
        help="Apprise call per event: notify() one after the other (default, the faster "
        "here), or async_notify() of every event at once",
    )
    parser.add_argument(
        "--apprise-workers",
        type=int,
        default=8,
        help="notify.apprise_workers of the apprise-format run (default 8)",
    )
    parser.add_argument(
        "--no-apprise",
        dest="apprise",
        action="store_false",
        help="skip the Apprise run and the apprise-format one",
    )
    parser.add_argument(
        "--no-bare-loop",
        dest="bare_loop",
        action="store_false",
        help="skip the bare aiohttp loop (the ceiling the feedbot runs are compared with)",
    )
    parser.add_argument(
        "--json", action="store_true", help="end with one JSON line (always printed)"
    )
    args = parser.parse_args()
    if args.store != "sqlite" and not args.store.startswith("postgresql://"):
        parser.error("--store is sqlite or a postgresql:// URL")
    if args.store == "sqlite" and args.replicas != [1]:
        parser.error("--replicas needs --store postgresql://... (SQLite is one process)")
    summary = run_on_feedbots_loop(measure(args))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
