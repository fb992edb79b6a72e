"""How a feedbot process runs: the event loop and the garbage collector's pace.

Delivering alerts is mostly event-loop work (sockets, timers, callbacks), and
uvloop does that work in C: about 10% less CPU per delivery in
``bench/notify.py``. The code never depends on it: every module is written
against plain asyncio, the tests run on both loops, and on a platform without
uvloop (Windows) the standard loop runs instead.

feedbot makes a great many short-lived objects (parsed records, rows, requests)
and few reference cycles, which reference counting frees on its own. At the
collector's default pace (a pass every 700 new objects) a first ingest spends
about a tenth of the daemon process's CPU in passes that find next to nothing.
One pass every 20,000 saves most of that and still collects every cycle; the
cycles then wait longer, which the peak memory of ``bench/ingest.py`` bounds
(a pace of 50,000 added 30 MB there, 20,000 about 1 MB).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

from feedbot.processes import die_with_parent

T = TypeVar("T")

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is pinned wherever it builds
    uvloop = None  # type: ignore[assignment]

_YOUNG_OBJECTS_PER_COLLECTION = 20_000


def pace_collector() -> None:
    """Set this process's collector to feedbot's pace (see above)."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(_YOUNG_OBJECTS_PER_COLLECTION, older, oldest)


def start_worker() -> None:
    """First thing in a feedbot worker process: it ends with its parent, and its
    collector keeps feedbot's pace."""
    die_with_parent()
    pace_collector()


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on uvloop when it is installed, with the collector paced
    for feedbot's allocation pattern."""
    pace_collector()
    if uvloop is None:  # pragma: no cover
        return asyncio.run(main)
    return uvloop.run(main)
