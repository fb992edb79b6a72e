"""How feedbot runs a coroutine from synchronous code: on uvloop where it exists.

Delivering alerts is mostly event-loop work (sockets, timers, callbacks), and
uvloop does that work in C: about 10% less CPU per delivery in
``bench/notify.py``. The code never depends on it: every module is written
against plain asyncio, the tests run on both loops, and on a platform without
uvloop (Windows) the standard loop runs instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is pinned wherever it builds
    uvloop = None  # type: ignore[assignment]


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on uvloop when it is installed."""
    if uvloop is None:  # pragma: no cover
        return asyncio.run(main)
    return uvloop.run(main)
