"""Ingestion benchmark: cold ingest, re-poll and peak memory on a synthetic archive.

    python bench/ingest.py --events 100000 [--json]

Writes the archive under bench/.cache/ when it is missing (bench/make_archive.py),
then measures, in this process:

- cold ingest: a first poll into a new SQLite file (read, parse, store);
- re-poll: a poll when nothing changed, in the same process (the daemon's case)
  and in a fresh Ingestor that must load its marks from the store (``feedbot poll``);
  walked fully (every day folder looked at) and light (new days and the recent
  ones: what the daemon's scheduled polls do while its folder watch is in place);
- peak RSS of this process after those, and of the whole process tree during the
  cold ingest;
- for reference, markdown-it-py tokenizing the same pages (already in memory),
  i.e. what a general Markdown parser costs before any extraction or storage.

Prints a table and, last, one JSON object (``peak_rss_tree_mb``: this process and its
parse workers together, sampled during the cold ingest). Targets (issue 17, at any
archive size): >= 10,000 events/s cold, <= 50 ms re-poll, <= 250 MB for the process tree.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import psutil  # noqa: E402
from make_archive import make_archive  # noqa: E402

from feedbot.archive.local import LocalArchiveSource  # noqa: E402
from feedbot.ingest import Ingestor  # noqa: E402
from feedbot.loop import run as run_on_feedbots_loop  # noqa: E402
from feedbot.store import Store  # noqa: E402


def archive_for(events: int) -> Path:
    root = HERE / ".cache" / f"archive-{events}"
    done = root / ".complete"
    if not done.exists():
        print(f"writing a synthetic archive of {events} events to {root} ...", file=sys.stderr)
        make_archive(root, events=events, seed=1)
        done.write_text(str(events))
    return root


class TreeRss:
    """The peak resident memory of this process and all its children together
    (the parse workers), sampled every 50 ms by a thread: what the machine must
    hold for an ingest, which the process's own ``ru_maxrss`` does not say."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.05):
            total = 0
            for process in (me, *me.children(recursive=True)):
                with contextlib.suppress(psutil.Error):
                    total += process.memory_info().rss
            self.peak = max(self.peak, total)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def measure(root: Path, db: Path) -> dict[str, float]:
    store = await Store.open(f"sqlite:///{db}")
    source = LocalArchiveSource(root, lookback_days=1)
    ingestor = Ingestor(store, source)
    started = time.perf_counter()
    with TreeRss() as tree:
        cold = await ingestor.poll()
    cold_s = time.perf_counter() - started
    stored = await store.count_events()

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

    started = time.perf_counter()
    await Ingestor(store, LocalArchiveSource(root, lookback_days=1)).poll()
    fresh_ms = (time.perf_counter() - started) * 1000
    await store.close()
    return {
        "events": stored,
        "rejected": len(cold.rejected),
        "cold_s": cold_s,
        "cold_events_per_s": stored / cold_s,
        "repoll_ms": statistics.median(warm_ms),
        "repoll_light_ms": statistics.median(light_ms),
        "repoll_fresh_process_ms": fresh_ms,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_tree_mb": tree.peak / 2**20,
    }


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
        ("peak RSS, this process", f"{result['peak_rss_mb']:.0f} MB", ""),
        ("peak RSS, process tree (ingest)", f"{result['peak_rss_tree_mb']:.0f} MB", "<= 250 MB"),
    ]
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
