"""``feedbot feeds export DIR``: the published documents as files, for any static host.

Writes, under ``DIR``, the paths the web app serves::

    feeds/all.atom  feeds/all.rss  feeds/all.json
    feeds/topics/<slug>.atom  .rss  .json     (one set per topic)
    topics.opml
    index.html                                (the /topics page: page 1 of it)
    site.css  feed.xsl                        (the pages' style, the feeds' XSLT)

The HTML pages of the latest events, of each topic and of searches need the
app: a static host serves the topic list and the feeds.

Paging. A static host cannot tell ``all.atom?page=2`` from ``all.atom``, so the
export writes page 1 of every feed only, byte for byte what the app serves at
the same path (the documents come from the same functions in
:mod:`feedbot.feeds.documents`). Page 1 carries the newest ``page_size`` entries,
which is what a reader subscribes to; its RFC 5005 ``next``/``last`` links name
the app's ``?page=N`` URLs under ``base_url``. A static host should answer those
with 404 (nginx: ``if ($arg_page) { return 404; }``) or pass them to the app;
it must not serve page 1 for them, or an archive walker would loop.

The topic list is paged alike: ``index.html`` is page 1 of ``/topics`` (the
most recently active topics), its link to the next page names the app's
``/topics?page=2``, and its filter box the app's ``/topics?q=``. ``topics.opml``
lists every topic.

``complete=True`` instead writes every feed whole: one page holding every entry,
no ``next`` link (RFC 5005 section 2, a complete feed), and every topic on one
page of ``index.html``, for hosts that must stand alone. Those files differ from
the app's page 1 whenever a feed has more than ``page_size`` entries, or the
list more than a page of topics.

Every file is written to a temporary name in its folder and moved into place
with :func:`os.replace`, so a web server reading ``DIR`` meanwhile sees the old
file or the new one, never half of one. Topic feeds of topics that no longer
exist are removed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from feedbot.feeds.documents import (
    TOPICS_PAGE_SIZE,
    load_feed_page,
    load_topics_page,
    opml_chunks,
)
from feedbot.feeds.pages import feed_stylesheet, render_topics_page, site_css
from feedbot.feeds.spec import DEFAULT_TOMBSTONE_DAYS
from feedbot.feeds.urls import FeedFormat
from feedbot.model import Topic
from feedbot.store import Store


@dataclass(frozen=True, slots=True)
class ExportResult:
    files: int  # written
    topics: int
    removed: int  # stale topic feeds deleted


async def export_feeds(
    store: Store,
    base_url: str,
    page_size: int,
    dest: Path,
    *,
    complete: bool = False,
    tombstone_days: int = DEFAULT_TOMBSTONE_DAYS,
    now: datetime | None = None,
) -> ExportResult:
    """Write every feed, the OPML list and the topic page under ``dest``; feeds
    tell of the events removed in the ``tombstone_days`` before ``now``."""
    feeds_dir = dest / "feeds"
    topics_dir = feeds_dir / "topics"
    topics_dir.mkdir(parents=True, exist_ok=True)
    counts = await store.topic_counts()
    written = 0

    async def export_feed(topic: Topic | None, folder: Path, stem: str, total: int | None) -> None:
        nonlocal written
        slug = None if topic is None else topic.slug
        size = page_size
        if complete:
            if total is None:
                total = await store.count_events(slug)
            size = max(page_size, total)
        page = await load_feed_page(
            store,
            base_url,
            slug,
            1,
            page_size=size,
            topic=topic,
            total=total,
            tombstone_days=tombstone_days,
            now=now,
        )
        for fmt in FeedFormat:
            _write_atomic(folder / f"{stem}.{fmt.value}", page.render(fmt).body)
            written += 1

    await export_feed(None, feeds_dir, "all", None)
    wanted: set[str] = set()
    for count in counts:
        await export_feed(count.topic, topics_dir, count.topic.slug, count.events)
        wanted.update(f"{count.topic.slug}.{fmt.value}" for fmt in FeedFormat)
    _write_atomic(dest / "topics.opml", b"".join([c async for c in opml_chunks(store, base_url)]))
    listing = await load_topics_page(
        store,
        base_url,
        page_size=max(TOPICS_PAGE_SIZE, len(counts)) if complete else TOPICS_PAGE_SIZE,
    )
    _write_atomic(dest / "index.html", render_topics_page(listing).body)
    # What the topic list and the feeds' <?xml-stylesheet?> name, at the same paths.
    _write_atomic(dest / "site.css", site_css().body)
    _write_atomic(dest / "feed.xsl", feed_stylesheet(base_url).body)
    written += 4

    removed = 0
    extensions = {f".{fmt.value}" for fmt in FeedFormat}
    for path in topics_dir.iterdir():
        if path.suffix in extensions and path.name not in wanted and path.is_file():
            path.unlink()
            removed += 1
    return ExportResult(files=written, topics=len(counts), removed=removed)


def _write_atomic(path: Path, body: bytes) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(body)
        # mkstemp makes the file 0600; a static web server usually runs as
        # another user and must be able to read it.
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
