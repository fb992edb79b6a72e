"""A real feed reader: newsboat subscribes to a topic feed served by the running app.

newsboat is a Debian package (CI installs it). It runs as a subprocess, with its
HOME and cache in tmp_path, while the app keeps serving on the event loop.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import feedparser
import pytest

from feedbot.archive.local import LocalArchiveSource
from feedbot.feeds.cache import FeedCache
from feedbot.ingest import Ingestor
from feedbot.settings import Settings
from feedbot.store import Store
from feedbot.web import WebServer
from tests.conftest import copy_sample_archive

NEWSBOAT = shutil.which("newsboat")
pytestmark = pytest.mark.skipif(
    NEWSBOAT is None, reason="newsboat is not installed (Debian: apt-get install newsboat)"
)
TOPIC = "islamabad"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[WebServer]:
    archive = copy_sample_archive(tmp_path / "archive")
    store = await Store.open(f"sqlite:///{tmp_path / 'feedbot.db'}")
    await Ingestor(store, LocalArchiveSource(archive)).poll()
    settings = Settings(server={"host": "127.0.0.1", "port": 0, "base_url": "http://feeds.test"})
    web = WebServer(settings, store, FeedCache(store, settings.public_base_url))
    await web.start()
    try:
        yield web
    finally:
        await web.stop()
        await store.close()


async def newsboat(tmp_path: Path, url: str) -> str:
    assert NEWSBOAT is not None
    urls = tmp_path / "urls"
    urls.write_text(url + "\n")
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        NEWSBOAT,
        "-u",
        str(urls),
        "-c",
        str(tmp_path / "cache.db"),
        "-x",
        "reload",
        "print-unread",
        env={"HOME": str(home), "PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, err.decode(errors="replace")
    return out.decode()


async def test_newsboat_subscribes_to_a_topic_feed_and_lists_its_entries(
    server: WebServer, tmp_path: Path
) -> None:
    url = f"{server.url}/feeds/topics/{TOPIC}.atom"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        feed = feedparser.parse(await response.read())
    expected = {(entry.id, entry.title) for entry in feed.entries}
    assert expected

    output = await newsboat(tmp_path, url)
    assert output.strip() == f"{len(expected)} unread articles"

    # What newsboat stored is every entry of the feed, by id and title.
    with sqlite3.connect(tmp_path / "cache.db") as cache:
        stored = set(cache.execute("SELECT guid, title FROM rss_item"))
    assert stored == expected

    # A second reload (conditional GET, a 304 here) neither loses nor doubles entries.
    assert (await newsboat(tmp_path, url)).strip() == f"{len(expected)} unread articles"
