"""Links when ``server.base_url`` is unset: rooted at each request's ``Host``.

A container listens on 0.0.0.0, which no reader can reach; with no base URL
configured, feeds and pages take their links from the ``Host`` the reader used.
These tests run the real :class:`~feedbot.web.WebServer` on loopback port 0 over
a real SQLite store filled from the sample archive, and send requests naming
different hosts, through aiohttp's client and, for what a client library would
not send (a malformed or missing Host), through a raw socket.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import feedparser
import pytest
import pytest_asyncio
from multidict import CIMultiDict

from feedbot.archive.local import LocalArchiveSource
from feedbot.daemon import alert_links_warning
from feedbot.feeds.cache import FeedCache
from feedbot.feeds.urls import base_from_host, is_wildcard_host
from feedbot.ingest import Ingestor
from feedbot.settings import Settings
from feedbot.store import Store
from feedbot.web import WebServer
from tests.conftest import Clock, copy_sample_archive

PAGE_SIZE = 5
LINK = re.compile(rb"https?://[^\s\"'<>/]+")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("feeds.example.org", "http://feeds.example.org"),
        ("Feeds.Example.ORG:8080", "http://feeds.example.org:8080"),
        ("feeds.example.org:80", "http://feeds.example.org"),  # the scheme's default
        ("feeds.example.org:", "http://feeds.example.org"),  # an empty port is allowed
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("[::1]:8080", "http://[::1]:8080"),
        ("[2001:DB8::1]", "http://[2001:db8::1]"),
        ("localhost:08080", "http://localhost:8080"),
    ],
)
def test_a_host_and_port_become_the_base(host: str, expected: str) -> None:
    assert base_from_host(host) == expected


def test_the_default_port_follows_the_scheme() -> None:
    assert base_from_host("feeds.example.org:443", "https") == "https://feeds.example.org"
    assert base_from_host("feeds.example.org:443") == "http://feeds.example.org:443"


@pytest.mark.parametrize(
    "host",
    [
        "",
        "exa mple.org",
        "feeds.example.org/path",
        "user@feeds.example.org",
        "feeds.example.org:99999",
        "feeds.example.org:8o",
        "feeds.example.org:+80",
        "a:1:2",
        "::1",  # an IPv6 address needs brackets
        "[::1",
        "[::1]8080",
        "[fe80::1%eth0]",  # zone ids mean nothing off this machine
        "[not-ipv6]",
        "feeds.example.org\r\nX-Injected: 1",
        "évil.example",
        "<script>",
        "a" * 254,
    ],
)
def test_anything_else_is_refused(host: str) -> None:
    assert base_from_host(host) is None


@pytest.mark.parametrize(
    ("host", "wildcard"),
    [
        ("0.0.0.0", True),
        ("::", True),
        ("[::]", True),
        ("", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("localhost", False),
        ("feeds.example.org", False),
    ],
)
def test_wildcard_hosts(host: str, wildcard: bool) -> None:
    assert is_wildcard_host(host) is wildcard


def test_alerts_warn_when_their_links_would_name_a_wildcard_address() -> None:
    warning = alert_links_warning(Settings(server={"host": "0.0.0.0", "port": 8080}))
    assert warning is not None
    assert "server.base_url" in warning and "http://0.0.0.0:8080" in warning
    assert alert_links_warning(Settings(server={"host": "::", "port": 8080})) is not None
    set_base = Settings(server={"host": "0.0.0.0", "base_url": "https://feeds.example.org"})
    assert alert_links_warning(set_base) is None
    assert alert_links_warning(Settings(server={"host": "127.0.0.1"})) is None


# -- over a real server ---------------------------------------------------------------


@dataclass
class Served:
    server: WebServer
    cache: FeedCache
    configured: str  # the base a bad Host falls back to
    session: aiohttp.ClientSession

    async def get(
        self, path: str, host: str, **headers: str
    ) -> tuple[int, CIMultiDict[str], bytes]:
        headers = {"Host": host, "Accept-Encoding": "identity", **headers}
        async with self.session.get(self.server.url + path, headers=headers) as response:
            return response.status, CIMultiDict(response.headers), await response.read()

    async def raw(self, request: bytes) -> tuple[bytes, bytes]:
        """``request`` sent as is; the status line and the body of the answer."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        try:
            writer.write(request)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), timeout=30)
        finally:
            writer.close()
            await writer.wait_closed()
        head, _, body = answer.partition(b"\r\n\r\n")
        return head.split(b"\r\n")[0], body


async def _serve(tmp_path: Path, base_url: str) -> tuple[WebServer, Store, FeedCache, Settings]:
    archive = copy_sample_archive(tmp_path / "archive")
    store = await Store.open(f"sqlite:///{tmp_path / 'feedbot.db'}")
    clock = Clock()
    await Ingestor(store, LocalArchiveSource(archive, clock=clock), clock=clock).poll()
    config = Settings(
        server={"host": "127.0.0.1", "port": 0, "base_url": base_url},
        feeds={"page_size": PAGE_SIZE},
    )
    cache = FeedCache(store, config.public_base_url, page_size=PAGE_SIZE, max_bases=2)
    server = WebServer(config, store, cache, access_log=False)
    await server.start()
    return server, store, cache, config


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    server, store, cache, config = await _serve(tmp_path, "")
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            yield Served(server, cache, config.public_base_url, session)
    finally:
        await server.stop()
        await store.close()
        shutil.rmtree(tmp_path / "archive")


def _bases(body: bytes) -> set[str]:
    """Every scheme://authority a document links to, bar the XML namespaces and
    the links to sources (which point at news sites)."""
    found = {m.decode() for m in LINK.findall(body)}
    return {b for b in found if not b.endswith(("w3.org", "purl.org", "jsonfeed.org"))}


async def test_two_hosts_get_their_own_links_and_the_same_ids(served: Served) -> None:
    status_a, _, atom_a = await served.get("/feeds/topics/islamabad.atom", "a.test:8080")
    status_b, _, atom_b = await served.get("/feeds/topics/islamabad.atom", "B.test")
    assert status_a == status_b == 200
    feed_a, feed_b = feedparser.parse(atom_a), feedparser.parse(atom_b)
    assert feed_a.entries and len(feed_a.entries) == len(feed_b.entries)
    for entry_a, entry_b in zip(feed_a.entries, feed_b.entries, strict=True):
        assert entry_a.link.startswith("http://a.test:8080/events/")
        assert entry_b.link.startswith("http://b.test/events/")
        # Ids never follow the host: a reader that moves hosts sees no entry twice.
        assert entry_a.id == entry_b.id and entry_a.id.startswith("urn:uuid:")
    assert {link.href for link in feed_a.feed.links} <= {
        "http://a.test:8080/feeds/topics/islamabad.atom",
        "http://a.test:8080/topics/islamabad",
        *(f"http://a.test:8080/feeds/topics/islamabad.atom?page={n}" for n in range(2, 50)),
    }
    assert "a.test" not in atom_b.decode() and "b.test" not in atom_a.decode()


@pytest.mark.parametrize(
    "path", ["/feeds/all.rss", "/feeds/all.json", "/topics", "/", "/topics.opml"]
)
async def test_every_document_follows_the_host(served: Served, path: str) -> None:
    for host, base in (("one.test:8080", "http://one.test:8080"), ("two.test", "http://two.test")):
        status, _, body = await served.get(path, host)
        assert status == 200
        ours = {b for b in _bases(body) if b.endswith((".test", ".test:8080"))}
        assert ours == {base}, (path, host)


async def test_an_event_page_follows_the_host(served: Served) -> None:
    _, _, body = await served.get("/feeds/all.atom", "x.test")
    event_url = feedparser.parse(body).entries[0].link
    path = event_url.removeprefix("http://x.test")
    for host in ("one.test", "two.test:81"):
        status, _, page = await served.get(path, host)
        assert status == 200
        assert f'href="http://{host}/feeds/all.atom"'.encode() in page or (
            f'href="http://{host}/topics'.encode() in page
        )
        assert b"x.test" not in page


async def test_an_etag_belongs_to_one_host(served: Served) -> None:
    path = "/feeds/topics/islamabad.atom"
    _, headers_a, _ = await served.get(path, "a.test")
    _, headers_b, _ = await served.get(path, "b.test")
    etag_a, etag_b = headers_a["ETag"], headers_b["ETag"]
    assert etag_a != etag_b
    # Each host's validator revalidates its own representation only.
    status, _, _ = await served.get(path, "a.test", **{"If-None-Match": etag_a})
    assert status == 304
    status, _, body = await served.get(path, "b.test", **{"If-None-Match": etag_a})
    assert status == 200 and b"http://b.test/" in body
    status, _, _ = await served.get(path, "b.test", **{"If-None-Match": etag_b})
    assert status == 304
    # And gzip is one more representation per host, with a tag of its own.
    status, headers, _ = await served.get(
        path, "a.test", **{"Accept-Encoding": "gzip", "If-None-Match": etag_b}
    )
    assert status == 200 and headers["ETag"] not in (etag_a, etag_b)


@pytest.mark.parametrize(
    "host_line",
    [
        b"Host: exa mple.test\r\n",
        b"Host: a.test/elsewhere\r\n",
        b"Host: user@a.test\r\n",
        b"Host: [::1\r\n",
        b"Host: a.test:99999\r\n",
        b"",  # HTTP/1.0 without a Host
    ],
)
async def test_a_bad_or_missing_host_falls_back_to_the_configured_address(
    served: Served, host_line: bytes
) -> None:
    request = b"GET /feeds/all.atom HTTP/1.0\r\n" + host_line + b"Connection: close\r\n\r\n"
    status_line, body = await served.raw(request)
    assert status_line.split()[1] == b"200", status_line
    feed = feedparser.parse(body)
    assert f"{served.configured}/feeds/all.atom" in {link.href for link in feed.feed.links}
    assert feed.entries
    assert all(entry.link.startswith(f"{served.configured}/events/") for entry in feed.entries)
    assert b".test" not in body


async def test_distinct_hosts_are_bounded_in_the_cache(served: Served) -> None:
    """max_bases=2 here: a third host pushes out the least recently used one's
    documents, and a host asking again gets its own links back, re-rendered."""
    path = "/feeds/topics/islamabad.atom"
    for name in ("one", "two", "three", "four"):
        status, _, body = await served.get(path, f"{name}.test")
        assert status == 200 and f"http://{name}.test/".encode() in body
    cached = {key.base for key in served.cache._entries if key.base}
    assert cached == {"http://three.test", "http://four.test"}
    renders = served.cache.stats.renders
    _, _, body = await served.get(path, "one.test")
    assert b"http://one.test/" in body and b"four.test" not in body
    assert served.cache.stats.renders == renders + 1
    _, _, again = await served.get(path, "one.test")
    assert again == body and served.cache.stats.renders == renders + 1


async def test_a_configured_base_url_wins_over_the_host(tmp_path: Path) -> None:
    server, store, _, _ = await _serve(tmp_path, "https://feeds.example.org/")
    try:
        async with aiohttp.ClientSession() as session:
            url = server.url + "/feeds/all.atom"
            async with session.get(url, headers={"Host": "a.test"}) as response:
                body = await response.read()
    finally:
        await server.stop()
        await store.close()
    assert b"https://feeds.example.org/feeds/all.atom" in body
    assert b"a.test" not in body
