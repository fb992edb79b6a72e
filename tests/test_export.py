"""``feedbot feeds export``: the sample archive written out as static files.

The files must parse, list every topic, and be byte for byte what the running
app serves at the same paths.
"""

from __future__ import annotations

import json
import shutil
import stat
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import feedparser
import pytest
import pytest_asyncio

from feedbot.archive.local import LocalArchiveSource
from feedbot.cli import main
from feedbot.feeds.cache import FeedCache
from feedbot.feeds.export import export_feeds
from feedbot.ingest import Ingestor
from feedbot.settings import Settings
from feedbot.store import Store
from feedbot.web import WebServer
from tests.conftest import copy_sample_archive

BASE = "https://feeds.example.org"
PAGE_SIZE = 5


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store ingested from the sample archive, built once; tests open copies."""
    root = tmp_path_factory.mktemp("sample")
    archive = copy_sample_archive(root / "archive")
    db = root / "feedbot.db"
    store = await Store.open(f"sqlite:///{db}")
    await Ingestor(store, LocalArchiveSource(archive)).poll()
    await store.close()
    return db


@pytest.fixture
async def store(tmp_path: Path, sample_db: Path) -> AsyncIterator[Store]:
    shutil.copy(sample_db, tmp_path / "feedbot.db")
    opened = await Store.open(f"sqlite:///{tmp_path / 'feedbot.db'}")
    yield opened
    await opened.close()


def exported_feeds(root: Path) -> list[Path]:
    return sorted([*root.glob("feeds/*.*"), *root.glob("feeds/topics/*.*")])


async def test_export_of_the_sample_archive(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "site"
    result = await export_feeds(store, BASE, PAGE_SIZE, out)
    counts = await store.topic_counts()
    assert result.topics == len(counts)
    expected = {out / "feeds" / f"all.{ext}" for ext in ("atom", "rss", "json")} | {
        out / "feeds" / "topics" / f"{c.topic.slug}.{ext}"
        for c in counts
        for ext in ("atom", "rss", "json")
    }
    assert set(exported_feeds(out)) == expected
    # And the topic list, the OPML, and the style and XSLT they and the feeds name.
    others = {out / name for name in ("index.html", "topics.opml", "site.css", "feed.xsl")}
    assert all(path.is_file() for path in others)
    assert result.files == len(expected) + len(others)
    for path in expected:
        if path.suffix == ".json":
            assert json.loads(path.read_bytes())["version"] == "https://jsonfeed.org/version/1.1"
            continue
        parsed = feedparser.parse(path.read_bytes())
        assert parsed.bozo == 0, (path, parsed.get("bozo_exception"))
        assert 1 <= len(parsed.entries) <= PAGE_SIZE
    # Written for a web server running as another user, and nothing left behind.
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in expected)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]

    # The OPML lists every topic feed (by slug), and each is there.
    outlines = ET.parse(out / "topics.opml").getroot().findall("./body/outline")
    counts = await store.topic_counts()
    assert [o.get("xmlUrl") for o in outlines] == [
        f"{BASE}/feeds/topics/{slug}.atom" for slug in sorted(c.topic.slug for c in counts)
    ]
    for outline in outlines:
        relative = (outline.get("xmlUrl") or "").removeprefix(BASE + "/")
        assert (out / relative).is_file()
    index = (out / "index.html").read_text(encoding="utf-8")
    assert all(f'<tr id="{c.topic.slug}"' in index for c in counts)

    # Byte for byte what the app serves at the same paths.
    settings = Settings(
        server={"host": "127.0.0.1", "port": 0, "base_url": BASE}, feeds={"page_size": PAGE_SIZE}
    )
    server = WebServer(settings, store, FeedCache(store, BASE, page_size=PAGE_SIZE))
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            files = {f"/{p.relative_to(out).as_posix()}": p for p in exported_feeds(out)}
            files |= {"/topics.opml": out / "topics.opml", "/topics": out / "index.html"}
            for path, file in files.items():
                async with session.get(server.url + path) as response:
                    assert response.status == 200, path
                    assert await response.read() == file.read_bytes(), path
    finally:
        await server.stop()


async def test_export_again_replaces_files_and_drops_vanished_topics(
    store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "site"
    stale = out / "feeds" / "topics" / "a-topic-that-is-gone.atom"
    stale.parent.mkdir(parents=True)
    stale.write_text("old")
    first = await export_feeds(store, BASE, PAGE_SIZE, out)
    assert first.removed == 1 and not stale.exists()
    before = {p: p.read_bytes() for p in exported_feeds(out)}
    again = await export_feeds(store, BASE, PAGE_SIZE, out)
    assert again.removed == 0
    assert {p: p.read_bytes() for p in exported_feeds(out)} == before


async def test_complete_export_holds_every_entry_and_no_next_link(
    store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "site"
    await export_feeds(store, BASE, PAGE_SIZE, out, complete=True)
    big = max(await store.topic_counts(), key=lambda c: c.events)
    assert big.events > PAGE_SIZE
    for name, count in (("all", await store.count_events()), (f"topics/{big.topic.slug}", 0)):
        parsed = feedparser.parse((out / "feeds" / f"{name}.atom").read_bytes())
        assert parsed.bozo == 0
        assert len(parsed.entries) == (count or big.events)
        assert "next" not in {link.rel for link in parsed.feed.links}


def test_cli_feeds_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = copy_sample_archive(tmp_path / "archive")
    config = tmp_path / "feedbot.toml"
    config.write_text(
        f'[archive]\nsource = "{archive}"\n'
        f'[store]\nurl = "sqlite:///{tmp_path / "cli.db"}"\n'
        f'[server]\nbase_url = "{BASE}"\n'
    )
    assert main(["--config", str(config), "--log-level", "error", "poll"]) == 0
    out = tmp_path / "exported"
    assert main(["--config", str(config), "--log-level", "error", "feeds", "export", str(out)]) == 0
    assert "files" in capsys.readouterr().out
    parsed = feedparser.parse((out / "feeds" / "all.atom").read_bytes())
    assert parsed.bozo == 0 and len(parsed.entries) == 50
    assert parsed.feed.links[0].href.startswith(BASE)
    assert (out / "topics.opml").is_file() and (out / "index.html").is_file()
