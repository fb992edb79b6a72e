"""Shared fixtures: stores on every backend, archives written into tmp folders.

The store fixtures run each store test against SQLite (a real file) and the
real PostgreSQL server (``FEEDBOT_TEST_PG_URL``, default the machine's
127.0.0.1:5432 database ``test``). Where no PostgreSQL answers, those cases are
skipped with the reason shown; CI always has one.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvloop
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from feedbot.model import EventRecord
from feedbot.store import Store
from feedbot.store.schema import MIGRATIONS, meta, metadata
from feedbot.store.store import async_url

PG_URL = os.environ.get("FEEDBOT_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "tests" / "data" / "seed.md"
SHARED_SEED = REPO.parent / "shared" / "seeds" / "000_ffb26b68fc8d7c51.txt"

# Seconds a test waits for a condition before it fails: far beyond what the
# condition takes on an idle machine, so that only a real fault reaches it. Tests
# wait on conditions with this deadline, never on a sleep: a loaded machine makes
# everything slower, not different.
PATIENCE = 60.0

_pg_reason: str | None = None

# The daemon runs on uvloop (feedbot/loop.py); the tests of what touches sockets
# most closely (the SSRF guard's connect-time checks, the deliverer and its worker
# processes, the web server's connection limits, which wrap the loop's transports)
# run on both loops, the rest on asyncio's own.
_ON_BOTH_LOOPS = {"test_ssrf.py", "test_deliver.py", "test_workers.py", "test_web_limits.py"}


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    if item.path.name in _ON_BOTH_LOOPS:
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


async def reset_postgres() -> str | None:
    """Drop feedbot's tables; return why PostgreSQL is unusable, or None."""
    engine = create_async_engine(async_url(PG_URL))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.drop_all)
    except Exception as exc:  # any failure means: no usable server here
        return f"PostgreSQL at {PG_URL} unusable: {exc.__class__.__name__}: {exc}"
    finally:
        await engine.dispose()
    return None


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feedbot.db'}"
    reason = await reset_postgres()
    if reason is not None:
        pytest.skip(reason)
    return PG_URL


@pytest.fixture
async def pg_url() -> str:
    """The PostgreSQL server, emptied of feedbot's tables, for multi-replica tests."""
    reason = await reset_postgres()
    if reason is not None:
        pytest.skip(reason)
    return PG_URL


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(store_url)
    yield opened
    await opened.close()


async def schema_before(connection: AsyncConnection, step: Callable[[Connection], None]) -> None:
    """Record the store's schema as the one before migration ``step``: the next
    ``Store.open`` runs that step and every later one (the test has undone what
    they made)."""
    await connection.execute(
        meta.update()
        .where(meta.c.key == "schema_version")
        .values(value=str(MIGRATIONS.index(step)))
    )


T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
"""The moment the store tests write at, unless they say otherwise."""


async def write_events(store: Store, now: datetime = T0, **kwargs: Any) -> None:
    """One ``write_batch`` of the events ``new`` and ``changed`` (``Event``
    objects), with no marks, rejections or accepted paths; the other keyword
    arguments (``moved``, ``missing``, ...) as given."""
    await store.write_batch(
        new=[EventRecord.of(e) for e in kwargs.pop("new", ())],
        changed=[EventRecord.of(e) for e in kwargs.pop("changed", ())],
        marks_={},
        rejected={},
        accepted_paths=[],
        now=now,
        **kwargs,
    )


class Clock:
    """A hand-wound UTC clock for tests: ``clock()`` reads it, ``advance`` moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def seed_bytes() -> bytes:
    return (SEED if SEED.exists() else SHARED_SEED).read_bytes()


def write_page(
    root: Path,
    day: str,
    slug: str,
    title: str,
    *,
    story: str | None = None,
    related: list[tuple[str, str, list[str]]] | None = None,
) -> Path:
    """Write one page in the archive format under ``root/news/<day>/<slug>.md``.

    ``related`` holds (event id, title, contexts) triples.
    """
    year, month, dom = day.split("/")
    folder = root / "news" / day
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        f"Formats: [HTML](/news/{day}/{slug}.html)  [JSON](/news/{day}/{slug}.json)",
        "",
        f"### [{year}-{month}-{dom}](/news/{day}/index.md)",
        "",
    ]
    if story:
        lines.append(f"##### {story}")
    lines += [
        f"#  {title}",
        "",
        "### Sources:",
        "",
        f"1. [Example](https://example.org/{slug})",
        "",
    ]
    if related:
        lines += ["### Related:", ""]
        for number, (rid, rtitle, contexts) in enumerate(related, 1):
            lines.append(f"{number}. [{rtitle}](/news/{rid}.md) _Context: {', '.join(contexts)}_")
    path = folder / f"{slug}.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


WritePage = Callable[..., Path]


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """An archive folder holding the seed page."""
    root = tmp_path / "archive"
    day = root / "news" / "2007" / "07" / "9"
    day.mkdir(parents=True)
    slug = (
        "lal-masjid-siege-an-attempt-to-negotiate-a-peaceful-end-to-the-seven-day-standoff-"
        "at-islamabad-s-red-mosque-ends-without-any-progress"
    )
    (day / f"{slug}.md").write_bytes(seed_bytes())
    return root


def copy_sample_archive(dest: Path) -> Path:
    shutil.copytree(REPO / "examples" / "archive", dest)
    return dest
