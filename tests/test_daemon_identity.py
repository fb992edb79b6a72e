"""Event identity on a real daemon over a real folder (README: "Identity"): a
reworded page keeps its entry and is never created twice, a touched page keeps
its ``updated``, a removed page leaves the feeds after two polls and comes back
under its id, and two pages both present are two events.

The daemon runs as a subprocess (``feedbot run``) watching a temporary archive,
with a real webhook receiver on loopback whose subscription wants every kind of
alert. The test waits on what the daemon reports (alerts received, ``/metrics``,
its feeds), never on a sleep.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from feedbot.feeds.urls import event_urn
from feedbot.store import Moved, Removed, Store
from tests.daemons import Daemon, day_key, feedbot_run, until, until_async
from tests.daemons import write_config as daemon_config
from tests.receivers import Receiver, running_receiver

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

ATOM = "{http://www.w3.org/2005/Atom}"
SOURCE = "https://www.example.org/news/dam-report"
TITLE = "A dam bursts in the north of the country, flooding four villages."
REWORDED = "A dam bursts in the north of the country, flooding five villages."
QUAKE = "https://www.example.org/news/quake"


def write_config(tmp_path: Path, archive: Path, hook: str) -> Path:
    every_kind = {"url": hook, "topics": ["*"], "events": ["created", "updated", "deleted"]}
    return daemon_config(tmp_path, archive, every_kind)


def page(archive: Path, day: str, slug: str, title: str, *, source: str = SOURCE) -> Path:
    year, month, dom = day.split("/")
    text = (
        f"Formats: [HTML](/news/{day}/{slug}.html)\n\n"
        f"### [{year}-{month}-{dom}](/news/{day}/index.md)\n\n"
        f"##### Floods\n#  {title}\n\n### Sources:\n\n1. [Report]({source})\n"
    )
    return put(archive / "news" / day / f"{slug}.md", text.encode())


def put(path: Path, body: bytes) -> Path:
    """Write a page as an archiver would: aside, then moved in whole. Dated an hour
    back, so it is settled at once: one change, one poll (no settle poll after)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.tmp")
    aside.write_bytes(body)
    old = datetime.now(UTC).timestamp() - 3600
    os.utime(aside, (old, old))
    os.replace(aside, path)
    return path


def alerts(receiver: Receiver) -> list[tuple[str, str]]:
    found = []
    for body in receiver.bodies:
        data = json.loads(body)
        found.append((data["type"], data["data"]["event"]["id"]))
    return found


async def entries(session: aiohttp.ClientSession, daemon: Daemon) -> dict[str, tuple[str, str]]:
    """The all-events feed's entries: id -> (title, updated)."""
    async with session.get(f"{daemon.url}/feeds/all.atom") as response:
        assert response.status == 200
        root = ET.fromstring(await response.read())
    found = {}
    for entry in root.iter(f"{ATOM}entry"):
        entry_id = entry.findtext(f"{ATOM}id") or ""
        assert entry_id not in found, f"two entries with the id {entry_id}"
        found[entry_id] = (entry.findtext(f"{ATOM}title") or "", entry.findtext(f"{ATOM}updated"))
    return found


async def polls(session: aiohttp.ClientSession, daemon: Daemon) -> float:
    return await daemon.metric(session, "feedbot_polls_total", status="ok")


async def lookup(tmp_path: Path, event_id: str) -> object:
    store = await Store.open(f"sqlite:///{tmp_path / 'daemon.db'}")
    try:
        return await store.lookup_event(event_id)
    finally:
        await store.close()


async def test_reword_touch_remove_restore_and_both_present(tmp_path: Path, archive: Path) -> None:
    today = day_key(datetime.now(UTC).date())
    first_id, new_id = f"{today}/dam-bursts-four-villages", f"{today}/dam-bursts-five-villages"
    urn = event_urn(first_id)
    async with running_receiver() as receiver, aiohttp.ClientSession() as session:
        config = write_config(tmp_path, archive, receiver.url)
        async with feedbot_run(config) as daemon:
            await daemon.first_poll(session)
            await daemon.watching(session)
            page(archive, today, "dam-bursts-four-villages", TITLE)
            await until(lambda: ("event.created", first_id) in alerts(receiver))
            created = (await entries(session, daemon))[urn]
            assert created[0] == TITLE

            # Reworded: the old page goes, a new one with the new slug comes.
            (archive / "news" / today / "dam-bursts-four-villages.md").unlink()
            renamed = page(archive, today, "dam-bursts-five-villages", REWORDED)
            await until(lambda: ("event.updated", first_id) in alerts(receiver))
            feed = await entries(session, daemon)
            assert feed[urn][0] == REWORDED and feed[urn][1] != created[1]
            assert event_urn(new_id) not in feed
            assert [e for e in feed.values() if e[0] in (TITLE, REWORDED)] == [feed[urn]]
            assert await lookup(tmp_path, new_id) == Moved(first_id)

            # Touched, not changed: a poll reads it, `updated` stays.
            before = await polls(session, daemon)
            touched = datetime.now(UTC).timestamp() - 7200
            os.utime(renamed, (touched, touched))

            async def polled_again() -> bool:
                return await polls(session, daemon) > before

            await until_async(polled_again, what="a poll after the touch")
            assert (await entries(session, daemon))[urn] == feed[urn]

            # Removed: missing on one poll, removed on the next one of its day.
            kept = renamed.read_bytes()
            before = await polls(session, daemon)
            renamed.unlink()
            await until_async(polled_again, what="a poll after the removal")
            assert urn in await entries(session, daemon)  # one poll is not enough
            page(
                archive,
                today,
                "another-day-in-the-floods",
                "Rain eases.",
                source="https://b.example/",
            )
            await until(lambda: ("event.deleted", first_id) in alerts(receiver))
            assert urn not in await entries(session, daemon)
            assert isinstance(await lookup(tmp_path, first_id), Removed)

            # Restored: the same entry again, and no second event.created.
            put(archive / "news" / today / "dam-bursts-five-villages.md", kept)

            async def back() -> bool:
                return urn in await entries(session, daemon)

            await until_async(back, what="the restored entry")
            assert (await entries(session, daemon))[urn][0] == REWORDED

            # Both pages present: two events, each created.
            page(archive, today, "quake-hits-the-coast", "A quake hits the coast.", source=QUAKE)
            await until(
                lambda: ("event.created", f"{today}/quake-hits-the-coast") in alerts(receiver)
            )
            page(
                archive,
                today,
                "quake-hits-the-east-coast",
                "A quake hits the east coast.",
                source=QUAKE,
            )
            await until(
                lambda: ("event.created", f"{today}/quake-hits-the-east-coast") in alerts(receiver)
            )
            feed = await entries(session, daemon)
            assert {
                event_urn(f"{today}/quake-hits-the-coast"),
                event_urn(f"{today}/quake-hits-the-east-coast"),
            } <= set(feed)
    sent = alerts(receiver)
    assert sent.count(("event.created", first_id)) == 1
    assert ("event.created", new_id) not in sent


async def test_a_removed_event_without_topics_leaves_the_cached_all_events_feed(
    tmp_path: Path, archive: Path
) -> None:
    today = day_key(datetime.now(UTC).date())
    event_id = f"{today}/a-lone-event"
    text = (
        f"Formats: [HTML](/news/{event_id}.html)\n\n"
        f"### [{today.replace('/', '-')}](/news/{today}/index.md)\n\n#  A lone event.\n"
    )
    async with running_receiver() as receiver, aiohttp.ClientSession() as session:
        config = write_config(tmp_path, archive, receiver.url)
        async with feedbot_run(config) as daemon:
            await daemon.first_poll(session)
            await daemon.watching(session)
            put(archive / "news" / today / "a-second-lone-event.md", text.encode())
            lone = put(archive / "news" / today / "a-lone-event.md", text.encode())
            await until(lambda: ("event.created", event_id) in alerts(receiver))
            assert event_urn(event_id) in await entries(session, daemon)  # now cached
            before = await polls(session, daemon)
            lone.unlink()

            async def polled_again() -> bool:
                return await polls(session, daemon) > before

            await until_async(polled_again, what="a poll after the removal")
            # The next poll of the day (the other page touched): no event stored, none
            # with a topic removed, yet the all-events feed changed.
            touched = datetime.now(UTC).timestamp() - 7200
            os.utime(next((archive / "news" / today).glob("*.md")), (touched, touched))
            await until(lambda: ("event.deleted", event_id) in alerts(receiver))
            assert event_urn(event_id) not in await entries(session, daemon)
