"""``feedbot run`` on an archive folder that is not there (yet): said loudly, kept running.

The daemon runs in this process on port 0 over a real SQLite file; the test waits
on what it serves (``/readyz``, ``/topics``), with a generous deadline, never on a
sleep.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from feedbot.daemon import Daemon
from feedbot.factory import make_source
from feedbot.settings import Settings
from feedbot.store import Store
from tests.conftest import write_page

PATIENCE = 60.0


async def until(predicate: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + PATIENCE
    while not await predicate():
        assert time.monotonic() < deadline, f"not within {PATIENCE:g} s"
        await asyncio.sleep(0.05)


async def test_a_missing_archive_folder_is_reported_until_it_appears(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "archive"  # mounted later
    settings = Settings(
        archive={"source": str(folder), "poll_interval": 1, "poll_jitter": 0},
        store={"url": f"sqlite:///{tmp_path / 'feedbot.db'}"},
        server={"host": "127.0.0.1", "port": 0},
    )
    store = await Store.open(settings.store.url)
    daemon = Daemon(settings, store, make_source(settings))
    caplog.set_level(logging.INFO)
    await daemon.start()
    readyz: dict[str, object] = {}
    try:
        async with aiohttp.ClientSession() as session:

            async def get(path: str) -> tuple[int, str]:
                async with session.get(daemon.web.url + path) as response:
                    return response.status, await response.text()

            async def reported() -> bool:
                status, text = await get("/readyz")
                readyz["status"], readyz["text"] = status, text
                return str(folder) in text

            await until(reported)
            assert readyz["status"] == 503
            assert f"archive folder {folder} not found" in str(readyz["text"])
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert any(f"archive folder {folder} not found" in r.getMessage() for r in errors)
            for path in ("/topics", "/"):
                status, page = await get(path)
                assert status == 200
                assert '<p class="notice" role="alert">' in page
                assert f"The archive could not be read: archive folder {folder} not found" in page

            # The folder appears: the next poll reads it, and the hint goes.
            write_page(folder, "2007/07/10", "storm", "Storm over Dhaka", story="Storm")

            async def recovered() -> bool:
                status, _text = await get("/readyz")
                return status == 200

            await until(recovered)
            status, page = await get("/topics")
            assert status == 200 and "notice" not in page and 'id="storm"' in page
    finally:
        await daemon.stop()
        await store.close()
    watch_warnings = [r for r in caplog.records if "watch unavailable" in r.getMessage()]
    assert len(watch_warnings) <= 1  # not once every 5 s while the folder is missing
