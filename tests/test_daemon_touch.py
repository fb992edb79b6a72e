"""A page rewritten with the same bytes, on a real daemon over a real folder: the
daemon reads it again (a new modification time) and its entry's ``updated`` in
``/feeds/all.atom`` stays, so readers do not show it as unread again (SPEC §3:
``updated`` moves only when the page's content changes; issue 13 item 4).

The daemon runs as a subprocess (``feedbot run``) watching the archive folder. The
test waits on what the daemon reports (its ``/metrics``), never on a sleep.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import aiohttp
import pytest

from feedbot.feeds.urls import event_urn
from tests.daemons import Daemon, feedbot_run, until_async, write_config

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

ATOM = "{http://www.w3.org/2005/Atom}"
SEED_ID = (
    "2007/07/9/lal-masjid-siege-an-attempt-to-negotiate-a-peaceful-end-to-the-seven-day-"
    "standoff-at-islamabad-s-red-mosque-ends-without-any-progress"
)


async def pages_read(session: aiohttp.ClientSession, daemon: Daemon) -> float:
    """Pages the daemon has read that it already held: unchanged or updated."""
    return sum(
        [
            await daemon.metric(session, "feedbot_pages_total", result="unchanged"),
            await daemon.metric(session, "feedbot_pages_total", result="updated"),
        ]
    )


async def seed_entry(session: aiohttp.ClientSession, daemon: Daemon) -> tuple[str | None, str]:
    """The seed event's ``updated`` in the all-events feed, and the feed's ETag."""
    async with session.get(f"{daemon.url}/feeds/all.atom") as response:
        assert response.status == 200
        root = ET.fromstring(await response.read())
        tag = response.headers["ETag"]
    (entry,) = [
        e for e in root.iter(f"{ATOM}entry") if e.findtext(f"{ATOM}id") == event_urn(SEED_ID)
    ]
    return entry.findtext(f"{ATOM}updated"), tag


async def test_a_page_rewritten_with_the_same_bytes_keeps_its_updated(
    tmp_path: Path, archive: Path
) -> None:
    page = archive / "news" / f"{SEED_ID}.md"
    config = write_config(tmp_path, archive)  # no subscription
    async with aiohttp.ClientSession() as session, feedbot_run(config) as daemon:
        await daemon.first_poll(session)
        await daemon.watching(session)
        before = await seed_entry(session, daemon)
        assert before[0] is not None
        read = await pages_read(session, daemon)

        page.write_bytes(page.read_bytes())  # the same bytes, a new mtime

        async def read_again() -> bool:
            return await pages_read(session, daemon) > read

        await until_async(read_again, what="a poll reading the rewritten page")
        assert await seed_entry(session, daemon) == before
