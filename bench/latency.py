"""Latency benchmark: a page written into the archive -> its alert, and its WebSub push,
idle and under load.

    python bench/latency.py [--load none|ingest|burst|all] [--pages 50] [--runs 1]
    python bench/latency.py --load all --runs 2       # one table, a row per load and run

Runs ``feedbot run`` (a real process, the defaults but for the archive, the store
and loopback targets) on a watched folder with one signed JSON webhook
subscription to the topic of the timed pages, and one reader subscribed through
the WebSub hub to that topic's feed, both to the receiver of bench/notify.py
(``bench/_receiver.py``, its own process, recording arrival times). Then writes
``--pages`` new pages one at a time, each renamed into today's day folder the way
an archive sync does, and reports, from each rename to the arrival at the
receiver (both clocks are this machine's): p50, p90, p99 and max of each. Targets
(issue 17): p50 <= 200 ms, p99 <= 1 s, idle and under load. The loads, each what
a user of one daemon would feel:

- ``none``: the daemon on a copy of the sample archive; each page is written once
  both deliveries of the one before have arrived.
- ``ingest``: the daemon starts on a copy of ``bench/.cache/archive-100000``
  (100,000 events; the bench waits for another process writing it, and builds it
  when it is missing) into a new store: a first ingest. As soon as the watch is in
  place and the WebSub subscription active, pages are written every
  ``--interval-ms`` (200), without waiting for their deliveries; the table says
  how many were written before that first ingest ended (the store's poll record).
- ``burst``: the sample archive, and 50 more subscriptions (another topic) to the
  same receiver process, each on a port of its own (``--burst-hosts``: the
  deliverer's limits count a host:port as a host; 0 puts them all on the timed
  subscription's port). 200 pages of that topic are renamed into yesterday's
  folder at once: the poll that stores them queues 10,000 deliveries. Once they
  are stored, the timed pages are written every ``--interval-ms`` (150); the
  table says how many of their alerts arrived before the burst's last delivery did.

``--runs N`` runs each load N times; ``--notify-workers N`` sets the daemon's
``notify.workers``; ``--keep DIR`` keeps each run's daemon log and store there.

After each run the daemon's store says where the time went, for each alert and
push: rename -> start of the poll that stored the page (the watch's debounce, and
any wait for an earlier poll), that poll's start -> the delivery queued (reading,
parsing, storing), queued -> its first attempt (the deliverer claiming it, behind
whatever was due before), attempt -> arrival (signing, sending).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from _stats import percentile

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SECRET = "whsec_" + "bGF0ZW5jeS1iZW5jaC1zZWNyZXQtZm9yLWZlZWRib3Q="
_LISTENING = re.compile(r"web server listening on (http://[^\s\"]+)")
PATIENCE = 60.0
LOADS = ("none", "ingest", "burst")
TARGET_P50_MS = 200.0
TARGET_P99_MS = 1000.0
TOPIC = "latency-bench"  # the timed pages' story, as a slug
BURST_TOPIC = "burst-bench"
INGEST_EVENTS = 100_000
BURST_EVENTS = 200
BURST_SUBSCRIPTIONS = 50
DEFAULT_INTERVAL_MS = {"none": 0.0, "ingest": 200.0, "burst": 150.0}


# -- the archive ------------------------------------------------------------------------


def day_of(moment: datetime) -> str:
    return f"{moment:%Y/%m}/{moment.day}"


def write_page(archive: Path, slug: str, story: str, day: str, scratch: Path) -> float:
    """Page ``slug`` of ``story``, dated ``day`` ("YYYY/MM/D"), staged in ``scratch``
    and renamed into its day folder; the time of the rename."""
    stage_page(archive, slug, story, day, scratch)
    return rename_page(archive, slug, day, scratch)


def stage_page(archive: Path, slug: str, story: str, day: str, scratch: Path) -> None:
    year, month, d = day.split("/")
    text = (
        f"### [{year}-{month}-{d}](/news/{day}/index.md)\n\n"
        f"##### {story}\n"
        f"#  {story}: page {slug} is written and alerted.\n\n"
        "### Sources:\n\n"
        f"1. [Bench](https://example.org/{slug})\n"
    )
    (archive / "news" / day).mkdir(parents=True, exist_ok=True)
    (scratch / f"{slug}.md").write_text(text, encoding="utf-8")


def rename_page(archive: Path, slug: str, day: str, scratch: Path) -> float:
    written = time.time()
    os.replace(scratch / f"{slug}.md", archive / "news" / day / f"{slug}.md")
    return written


def cached_archive(wait: float) -> Path:
    """``bench/.cache/archive-100000``, complete: waited for while another process
    writes it (its ``.complete`` file comes last), built when it is missing."""
    root = HERE / ".cache" / f"archive-{INGEST_EVENTS}"
    done = root / ".complete"
    if not root.exists():
        sys.path.insert(0, str(HERE))
        from make_archive import make_archive

        print(
            f"writing a synthetic archive of {INGEST_EVENTS} events to {root} ...", file=sys.stderr
        )
        make_archive(root, events=INGEST_EVENTS, seed=1)
        done.write_text(str(INGEST_EVENTS))
    deadline = time.monotonic() + wait
    if not done.exists():
        print(f"waiting for {done} (another process is writing the archive) ...", file=sys.stderr)
    while not done.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"latency bench: {done} did not appear within {wait:g} s")
        time.sleep(1.0)
    return root


@contextmanager
def archive_copy(load: str, wait: float) -> Iterator[Path | None]:
    """The folder the ingest runs watch: a copy of the cached archive (the cache is
    only read), made once for every run; None for the other loads."""
    if load != "ingest":
        yield None
        return
    source = cached_archive(wait)
    with tempfile.TemporaryDirectory(prefix="feedbot-latency-archive-") as tmp:
        copy = Path(tmp) / "archive"
        copy.mkdir()
        started = time.perf_counter()
        print(f"copying {source / 'news'} to {copy} ...", file=sys.stderr)
        if shutil.which("cp"):
            subprocess.run(["cp", "-a", str(source / "news"), str(copy)], check=True)
        else:
            shutil.copytree(source / "news", copy / "news")
        print(f"copied in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        yield copy


@contextmanager
def new_folders(archive: Path, days: Sequence[str]) -> Iterator[None]:
    """Remove afterwards the folders of ``days`` that the run makes (the archive
    copy of the ingest runs is ingested again, as new, by the next run)."""
    made = set()
    for day in days:
        parts = day.split("/")
        for depth in range(1, 4):
            folder = archive / "news" / "/".join(parts[:depth])
            if not folder.exists():
                made.add(folder)
                break
    try:
        yield
    finally:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)


# -- the processes ----------------------------------------------------------------------


def start_receiver(ports: int) -> tuple[subprocess.Popen[str], list[int]]:
    """The receiver, listening on ``ports`` ports (the first: the timed deliveries')."""
    receiver = subprocess.Popen(
        [sys.executable, str(HERE / "_receiver.py"), str(ports)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdout is not None
    return receiver, [int(port) for port in receiver.stdout.readline().split()]


def start_daemon(
    root: Path, archive: Path, ports: Sequence[int], load: str, workers: int = 0
) -> subprocess.Popen[bytes]:
    """``feedbot run`` with the timed subscription on ``ports[0]``, and for a burst
    its 50 subscriptions spread over the others (all on ``ports[0]`` when there
    are none)."""
    subscriptions = [
        f'[[subscriptions]]\nurl = "http://127.0.0.1:{ports[0]}/r/latency/alert"\n'
        f'secret = "{SECRET}"\ntopics = ["{TOPIC}"]\n'
    ]
    if load == "burst":
        hosts = ports[1:] or ports[:1]
        subscriptions += [
            f'[[subscriptions]]\nurl = "http://127.0.0.1:{hosts[n % len(hosts)]}/r/burst/s{n:03d}"\n'
            f'secret = "{SECRET}"\ntopics = ["{BURST_TOPIC}"]\n'
            for n in range(BURST_SUBSCRIPTIONS)
        ]
    config = root / "feedbot.toml"
    config.write_text(
        f'[archive]\nsource = "{archive}"\npoll_interval = 3600\n'
        f'[store]\nurl = "sqlite:///{root / "feedbot.db"}"\n'
        '[server]\nhost = "127.0.0.1"\nport = 0\n'
        f"[notify]\nallow_private_targets = true\nworkers = {workers}\n" + "".join(subscriptions),
        encoding="utf-8",
    )
    with (root / "feedbot.log").open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "feedbot", "--config", str(config), "run"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )


def stop(receiver: subprocess.Popen[str], daemon: subprocess.Popen[bytes]) -> None:
    daemon.terminate()
    daemon.wait(60)
    assert receiver.stdin is not None
    receiver.stdin.close()
    receiver.wait(30)


# -- measuring --------------------------------------------------------------------------


async def until(
    check: Callable[[], Awaitable[bool]], what: str, patience: float = PATIENCE, step: float = 0.005
) -> None:
    deadline = time.monotonic() + patience
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"latency bench: {what} did not happen within {patience:g} s")
        await asyncio.sleep(step)


async def metric(session: aiohttp.ClientSession, base: str, name: str) -> float:
    """``name``'s value on the daemon's ``/metrics`` (0 when absent)."""
    async with session.get(base + "/metrics") as response:
        text = await response.text()
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def metric_set(
    session: aiohttp.ClientSession, base: str, name: str
) -> Callable[[], Awaitable[bool]]:
    """A check: does the daemon's ``/metrics`` show ``name`` above zero?"""

    async def check() -> bool:
        return await metric(session, base, name) > 0

    return check


POLLS_OK = 'feedbot_polls_total{status="ok"}'
PAGES_NEW = 'feedbot_pages_total{result="new"}'


@dataclass
class Arrivals:
    """The first arrival of each timed page's alert and push, and repeats."""

    alert: dict[str, float] = field(default_factory=dict)
    push: dict[str, float] = field(default_factory=dict)
    repeats: int = 0


async def arrivals(session: aiohttp.ClientSession, port: int) -> Arrivals:
    async with session.get(f"http://127.0.0.1:{port}/stats/latency?keep=1") as response:
        stats = await response.json()
    seen = Arrivals()
    for key, moment, page in zip(stats["keys"], stats["times"], stats["pages"], strict=True):
        if page is None:
            continue
        table = seen.push if key.startswith("push/") else seen.alert
        if page in table:
            seen.repeats += 1
        else:
            table[page] = moment
    return seen


@dataclass
class Measured:
    written: list[float]  # rename time of page N
    arrived: Arrivals
    load: dict[str, Any] = field(default_factory=dict)  # what the load did


async def measure(
    load: str, args: argparse.Namespace, root: Path, port: int, archive: Path
) -> Measured:
    scratch = root / "scratch"
    scratch.mkdir()
    today = datetime.now(UTC)
    day = day_of(today)
    names = [f"latency-{n}" for n in range(args.pages)]
    interval = (
        args.interval_ms if args.interval_ms is not None else DEFAULT_INTERVAL_MS[load]
    ) / 1000
    figures: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        base = ""

        async def listening() -> bool:
            nonlocal base
            found = _LISTENING.search((root / "feedbot.log").read_text())
            base = found.group(1) if found else ""
            return bool(base)

        await until(listening, "the daemon listening")
        if load != "ingest":
            await until(metric_set(session, base, POLLS_OK), "a first poll")
        await until(metric_set(session, base, "feedbot_archive_watch"), "the folder watch")
        form = {
            "hub.mode": "subscribe",
            "hub.topic": f"{base}/feeds/topics/{TOPIC}.atom",
            "hub.callback": f"http://127.0.0.1:{port}/r/latency/push",
        }
        async with session.post(base + "/websub", data=form) as response:
            response.raise_for_status()
        await until(
            metric_set(session, base, 'feedbot_websub_subscriptions{state="active"}'),
            "the WebSub subscription",
        )

        if load == "ingest" and await metric(session, base, POLLS_OK) > 0:
            raise SystemExit(
                "latency bench: the first ingest ended before the timed pages were "
                "written: nothing to measure under it"
            )
        if load == "burst":
            figures.update(await queue_burst(session, base, archive, scratch, today))

        written: list[float] = []
        if interval <= 0:  # one at a time, each once the one before has arrived
            for name in names:
                written.append(write_page(archive, name, "Latency bench", day, scratch))

                async def both(name: str = name) -> bool:
                    seen = await arrivals(session, port)
                    return name in seen.alert and name in seen.push

                await until(both, f"page {name} alerted and pushed")
        else:  # one every interval, whatever has arrived
            for name in names:
                stage_page(archive, name, "Latency bench", day, scratch)
            start = time.monotonic()
            for n, name in enumerate(names):
                await asyncio.sleep(max(0.0, start + n * interval - time.monotonic()))
                written.append(rename_page(archive, name, day, scratch))

        async def all_arrived() -> bool:
            seen = await arrivals(session, port)
            return len(seen.alert) == len(seen.push) == len(names)

        # A first ingest may hold the pages back for its whole length.
        await until(all_arrived, "every page alerted and pushed", PATIENCE * 3, 0.02)
        if load == "ingest":
            # Whether the pages went out during it or after it, its figures are
            # read from its poll record.
            figures["alerted_during_ingest"] = await metric(session, base, POLLS_OK) == 0
            await until(metric_set(session, base, POLLS_OK), "the first ingest", PATIENCE * 10)
        if load == "burst":

            async def drained() -> bool:
                async with session.get(f"http://127.0.0.1:{port}/count/burst") as response:
                    count = (await response.json())["count"]
                return bool(count >= BURST_EVENTS * BURST_SUBSCRIPTIONS)

            await until(drained, "the burst's deliveries", PATIENCE * 3, 0.05)
            async with session.get(f"http://127.0.0.1:{port}/stats/burst?keep=1") as response:
                burst = await response.json()
            figures["burst_received"] = len(burst["keys"])
            figures["burst_distinct"] = len(set(burst["keys"]))
            figures["burst_first"] = min(burst["times"])
            figures["burst_last"] = max(burst["times"])
        return Measured(written, await arrivals(session, port), figures)


async def queue_burst(
    session: aiohttp.ClientSession, base: str, archive: Path, scratch: Path, today: datetime
) -> dict[str, Any]:
    """Rename 200 pages of the burst's topic into yesterday's folder at once, and
    wait until the poll that stores them (queueing 10,000 deliveries) is done."""
    day = day_of(today - timedelta(days=1))
    names = [f"burst-{n}" for n in range(BURST_EVENTS)]
    stored_before = await metric(session, base, PAGES_NEW)
    for name in names:
        stage_page(archive, name, "Burst bench", day, scratch)
    renamed = time.time()
    for name in names:
        rename_page(archive, name, day, scratch)

    async def stored() -> bool:
        return await metric(session, base, PAGES_NEW) >= stored_before + BURST_EVENTS

    await until(stored, "the burst's pages stored", step=0.01)
    return {"burst_renamed": renamed, "burst_stored_seen": time.time()}


# -- what the store says ----------------------------------------------------------------


def _epoch(value: str | None) -> float | None:
    """A UTCDateTime column as SQLite holds it (naive UTC text), as time.time()."""
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()


@dataclass
class Trail:
    """One timed delivery as the store recorded it."""

    queued: float  # its delivery was queued (the batch storing the page)
    sent: float | None  # its first attempt began
    poll_started: float | None  # the poll that stored the page began


@dataclass
class Stored:
    alert: dict[str, Trail]
    push: dict[str, Trail]
    polls: list[tuple[float, float, int, str]]  # started, finished, new, status
    event_seen: list[float]  # first_seen of every event, sorted


def read_store(db: Path) -> Stored:
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        polls: list[tuple[float, float, int, str]] = []
        for started, finished, new, status in connection.execute(
            "SELECT started_at, finished_at, new, status FROM polls ORDER BY id"
        ):
            start_at, end_at = _epoch(started), _epoch(finished)
            assert start_at is not None and end_at is not None
            polls.append((start_at, end_at, new, status))
        urls = dict(connection.execute("SELECT id, url FROM subscriptions"))
        trails: dict[str, dict[str, Trail]] = {"alert": {}, "push": {}}
        for sid, event_id, created, first in connection.execute(
            "SELECT d.subscription_id, d.event_id, d.created_at, MIN(a.attempted_at)"
            " FROM deliveries d LEFT JOIN attempts a ON a.delivery_id = d.id"
            " WHERE d.event_id LIKE '%/latency-%' GROUP BY d.id"
        ):
            kind = urls.get(sid, "").rpartition("/")[2]
            if kind not in trails:
                continue
            queued = _epoch(created)
            assert queued is not None
            poll = next((p for p in polls if p[0] <= queued <= p[1]), None)
            trails[kind][event_id.rpartition("/")[2]] = Trail(
                queued, _epoch(first), poll[0] if poll else None
            )
        seen = sorted(
            moment
            for (value,) in connection.execute("SELECT first_seen FROM events")
            if (moment := _epoch(value)) is not None
        )
        return Stored(trails["alert"], trails["push"], polls, seen)
    finally:
        connection.close()


# -- one run ----------------------------------------------------------------------------


def summary(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}
    result = {
        label: percentile(ordered, fraction) * 1000
        for label, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
    }
    result["max"] = ordered[-1] * 1000
    return result


def run_once(load: str, args: argparse.Namespace, ingest_archive: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="feedbot-latency-") as tmp:
        root = Path(tmp)
        if ingest_archive is not None:
            archive = ingest_archive
        else:
            archive = root / "archive"
            shutil.copytree(REPO / "examples" / "archive", archive)
        now = datetime.now(UTC)
        days = [day_of(now), day_of(now - timedelta(days=1))]
        with new_folders(archive, days):
            receiver, ports = start_receiver(1 + (args.burst_hosts if load == "burst" else 0))
            port = ports[0]
            daemon = start_daemon(root, archive, ports, load, args.notify_workers)
            try:
                measured = asyncio.run(measure(load, args, root, port, archive))
            finally:
                stop(receiver, daemon)
        stored = read_store(root / "feedbot.db")
        if args.keep:
            for name in ("feedbot.log", "feedbot.db"):
                shutil.copy(root / name, Path(args.keep) / f"{load}-{now:%H%M%S}-{name}")
    return analyse(load, measured, stored)


def analyse(load: str, measured: Measured, stored: Stored) -> dict[str, Any]:
    names = [f"latency-{n}" for n in range(len(measured.written))]
    written = dict(zip(names, measured.written, strict=True))
    result: dict[str, Any] = {
        "load": load,
        "pages": len(names),
        "repeats": measured.arrived.repeats,
    }
    for kind, arrived, trails in (
        ("alert", measured.arrived.alert, stored.alert),
        ("push", measured.arrived.push, stored.push),
    ):
        result[kind] = summary([arrived[n] - written[n] for n in names])
        parts: dict[str, list[float]] = {"to_poll": [], "in_poll": [], "to_send": [], "sending": []}
        for n in names:
            trail = trails.get(n)
            if trail is None or trail.sent is None or trail.poll_started is None:
                continue
            # A page read by a poll under way when it was written (a first
            # ingest's): no wait for a poll; in it from the write on.
            started = max(trail.poll_started, written[n])
            parts["to_poll"].append(started - written[n])
            parts["in_poll"].append(trail.queued - started)
            parts["to_send"].append(trail.sent - trail.queued)
            parts["sending"].append(arrived[n] - trail.sent)
        result[f"{kind}_parts"] = {part: summary(values) for part, values in parts.items()}
    first_write, last_write = min(measured.written), max(measured.written)
    result["writing_s"] = last_write - first_write
    if load == "ingest":
        first = stored.polls[0]
        result["ingest"] = {
            "events": first[2],
            "status": first[3],
            "seconds": first[1] - first[0],
            "pages_during": sum(1 for w in measured.written if first[0] <= w <= first[1]),
            "all_alerted_during": measured.load.get("alerted_during_ingest", False),
            "first_write_s": first_write - first[0],
            "last_write_s": last_write - first[0],
            "stored_at_first_write": sum(1 for s in stored.event_seen if s <= first_write),
            "stored_at_last_write": sum(1 for s in stored.event_seen if s <= last_write),
            "after_ingest_polls": [
                {"start_s": p[0] - first[0], "seconds": p[1] - p[0], "new": p[2]}
                for p in stored.polls[1:6]
            ],
        }
    if load == "burst":
        figures = measured.load
        last = figures["burst_last"]
        result["burst"] = {
            "received": figures["burst_received"],
            "distinct": figures["burst_distinct"],
            "drain_s": last - figures["burst_first"],
            "per_s": figures["burst_received"] / max(last - figures["burst_first"], 1e-9),
            "stored_to_first_write_s": first_write - figures["burst_stored_seen"],
            "last_write_before_drained_s": last - last_write,
            "alerts_during": sum(1 for n in names if measured.arrived.alert[n] <= last),
            "pushes_during": sum(1 for n in names if measured.arrived.push[n] <= last),
        }
    return result


# -- the report -------------------------------------------------------------------------


def verdict(figures: dict[str, float]) -> str:
    ok = figures["p50"] <= TARGET_P50_MS and figures["p99"] <= TARGET_P99_MS
    return "ok" if ok else "MISSED"


def during(result: dict[str, Any]) -> str:
    if result["load"] == "ingest":
        ingest = result["ingest"]
        during = ", all alerted during it" * bool(ingest["all_alerted_during"])
        return f"{ingest['pages_during']}/{result['pages']} written in it{during}"
    if result["load"] == "burst":
        burst = result["burst"]
        return f"{burst['alerts_during']}/{result['pages']} alerted in it"
    return "one at a time"


def print_report(results: Sequence[dict[str, Any]]) -> None:
    print(
        f"{'load':<8}{'rename ->':<15}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}"
        f"   {'target':<8}timed pages"
    )
    for result in results:
        for kind, label in (("alert", "webhook alert"), ("push", "WebSub push")):
            figures = result[kind]
            cells = "".join(f"{figures[p]:>7.0f}ms" for p in ("p50", "p90", "p99", "max"))
            name = result["load"] if kind == "alert" else ""
            tail = during(result) if kind == "alert" else ""
            print(f"{name:<8}{label:<15}{cells}   {verdict(figures):<8}{tail}")
    print(f"targets: p50 <= {TARGET_P50_MS:.0f} ms, p99 <= {TARGET_P99_MS:.0f} ms")
    print()
    print("where the time went, p50 / p99 / max in ms (from the daemon's store):")
    print(
        f"{'load':<8}{'':<7}{'rename->poll':>20}{'poll->queued':>20}"
        f"{'queued->sent':>20}{'sent->received':>20}"
    )
    for result in results:
        for kind in ("alert", "push"):
            parts = result[f"{kind}_parts"]
            cells = "".join(
                f"{'/'.join(f'{parts[p][q]:.0f}' for q in ('p50', 'p99', 'max')):>20}"
                if parts[p]
                else f"{'-':>20}"
                for p in ("to_poll", "in_poll", "to_send", "sending")
            )
            print(f"{result['load'] if kind == 'alert' else '':<8}{kind:<7}{cells}")
    for result in results:
        if result["load"] == "ingest":
            i = result["ingest"]
            print(
                f"ingest: the first ingest ({i['events']} new, {i['status']}) took "
                f"{i['seconds']:.1f} s; pages written from {i['first_write_s']:.1f} s to "
                f"{i['last_write_s']:.1f} s into it ({i['stored_at_first_write']} to "
                f"{i['stored_at_last_write']} events stored by then); next polls: "
                + ", ".join(
                    f"at {p['start_s']:.1f} s, {p['seconds'] * 1000:.0f} ms, {p['new']} new"
                    for p in i["after_ingest_polls"]
                )
            )
        if result["load"] == "burst":
            b = result["burst"]
            print(
                f"burst: {b['received']} deliveries ({b['distinct']} distinct) drained in "
                f"{b['drain_s']:.1f} s ({b['per_s']:.0f}/s); first page "
                f"{b['stored_to_first_write_s'] * 1000:.0f} ms after the burst was seen stored, "
                f"last page {b['last_write_before_drained_s']:.1f} s before it drained; "
                f"{b['alerts_during']} alerts and {b['pushes_during']} pushes arrived before "
                "its last delivery"
            )
        if result["repeats"]:
            print(f"{result['load']}: {result['repeats']} deliveries arrived more than once")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", choices=(*LOADS, "all"), default="none")
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--runs", type=int, default=1, help="runs of each load")
    parser.add_argument(
        "--interval-ms",
        type=float,
        default=None,
        help="under load, between two pages (default: ingest 200, burst 150)",
    )
    parser.add_argument(
        "--burst-hosts",
        type=int,
        default=BURST_SUBSCRIPTIONS,
        help="receiver ports (hosts) the burst's subscriptions are spread over, "
        "none the timed one's; 0: all on the timed one's (default: one each)",
    )
    parser.add_argument(
        "--notify-workers", type=int, default=0, help="the daemon's notify.workers (default 0)"
    )
    parser.add_argument(
        "--archive-wait", type=float, default=3600, help="seconds to wait for the cached archive"
    )
    parser.add_argument("--keep", metavar="DIR", help="copy each run's daemon log and store there")
    parser.add_argument("--json", action="store_true", help="(always) end with one JSON line")
    args = parser.parse_args()
    loads = LOADS if args.load == "all" else (args.load,)
    results = []
    with archive_copy("ingest" if "ingest" in loads else "none", args.archive_wait) as copy:
        for _ in range(args.runs):
            for load in loads:
                results.append(run_once(load, args, copy if load == "ingest" else None))
    print_report(results)
    print(json.dumps({"runs": rounded(results)}))


def rounded(value: Any) -> Any:
    """``value`` with its floats to 0.1 (ms, s) or 3 places (times of day)."""
    if isinstance(value, float):
        return round(value, 3 if value > 1e9 else 1)
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return value


if __name__ == "__main__":
    main()
