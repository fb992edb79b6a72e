"""The store's side of event identity, on every backend: aliases, missing and
removed events, revival, and what feeds and lookups see of them."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select, text

from feedbot.identity import Listed
from feedbot.model import Event, EventRecord, Related, RelatedKind, Source, Topic, event_key
from feedbot.store import Moved, Removed, Store, Tombstone
from feedbot.store.schema import (
    LAST_STAMP_KEY,
    SCHEMA_VERSION,
    _distinct_updated,
    _identity,
    event_links,
    events,
    meta,
)
from tests.conftest import T0, schema_before
from tests.conftest import write_events as write

T1 = T0 + timedelta(minutes=5)
T2 = T0 + timedelta(minutes=10)
D = date(2007, 7, 9)


def ev(
    eid: str,
    title: str = "A dam bursts.",
    *,
    topics: tuple[str, ...] = ("Floods",),
    related: tuple[str, ...] = (),
) -> Event:
    return Event(
        id=eid,
        date=D,
        story=None,
        title=title,
        sources=(Source("Example", "https://example.org/1"),),
        related=tuple(
            Related(rid, date(2008, 1, 1), "later", (), RelatedKind.FOLLOW_UP) for rid in related
        ),
        topics=tuple(Topic.named(t) for t in topics),
    )


async def test_a_renamed_event_keeps_its_id_and_its_new_path_is_an_alias(store: Store) -> None:
    await write(store, new=[ev("2007/07/9/old")])
    reworded = ev("2007/07/9/old", "A dam bursts, killing 12.")
    await write(store, T1, changed=[reworded], moved={"2007/07/9/new": "2007/07/9/old"})
    assert await store.lookup_event("2007/07/9/new") == Moved("2007/07/9/old")
    assert await store.get_event("2007/07/9/new") is None
    stored = await store.get_event("2007/07/9/old")
    assert stored is not None and stored.event.title == "A dam bursts, killing 12."
    assert stored.updated > stored.first_seen
    assert await store.count_events() == 1
    assert [s.event.id for s in await store.events_page()] == ["2007/07/9/old"]
    # A page read under the alias is the kept event, with the kept event's hash.
    known = await store.identities(["2007/07/9/new", "2007/07/9/old", "2007/07/9/other"])
    assert set(known) == {"2007/07/9/new", "2007/07/9/old"}
    assert known["2007/07/9/new"].id == "2007/07/9/old"
    assert known["2007/07/9/new"].path == "2007/07/9/new"
    assert known["2007/07/9/new"].content_hash == EventRecord.of(reworded).content_hash
    assert await store.content_hashes(["2007/07/9/new"]) == {
        "2007/07/9/new": EventRecord.of(reworded).content_hash
    }
    assert await store.kept_ids(["2007/07/9/new", "2007/07/9/old"]) == {
        "2007/07/9/new": "2007/07/9/old"
    }


async def test_links_to_either_path_lead_to_the_kept_event(store: Store) -> None:
    await write(
        store, new=[ev("2007/07/9/old"), ev("2007/07/8/before", related=("2007/07/9/new",))]
    )
    await write(
        store, T1, changed=[ev("2007/07/9/old", "x")], moved={"2007/07/9/new": "2007/07/9/old"}
    )
    # A link stored before the rename, and one written after it, to the alias.
    await write(store, T2, new=[ev("2007/07/8/after", related=("2007/07/9/new",))])
    async with store._db.transaction() as connection:
        targets = {
            target for (target,) in await connection.execute(select(event_links.c.target_key))
        }
    assert targets == {event_key("2007/07/9/old")}


async def test_a_rename_changes_the_feeds_of_the_events_linking_to_the_new_path(
    store: Store,
) -> None:
    linking = ev("2007/07/8/before", topics=("Rivers",), related=("2007/07/9/new",))
    await write(store, new=[ev("2007/07/9/old", topics=("Dams",)), linking])
    renamed = await store.write_batch(
        new=[],
        changed=[EventRecord.of(ev("2007/07/9/old", "x", topics=("Dams",)))],
        marks_={},
        rejected={},
        accepted_paths=[],
        now=T1,
        moved={"2007/07/9/new": "2007/07/9/old"},
    )
    # The Rivers entry now links to the kept event, not to the alias.
    assert renamed.topics == {"dams", "rivers"}


async def test_listed_events_are_those_whose_page_lies_in_the_day(store: Store) -> None:
    await write(
        store,
        new=[ev("2007/07/1/a"), ev("2007/07/10/b"), ev("2007/07/1-x/c"), ev("2007/07/9/old")],
    )
    await write(
        store, T1, changed=[ev("2007/07/9/old", "y")], moved={"2007/07/1/moved": "2007/07/9/old"}
    )
    await write(store, T1, missing=["2007/07/1/a"])
    listed = await store.listed_events(["2007/07/1/"])
    assert sorted(listed, key=lambda e: e.id) == [
        Listed("2007/07/1/a", "2007/07/1/a", T1, None),
        Listed("2007/07/9/old", "2007/07/1/moved", None, None),
    ]
    # The event moved away from its own day is not listed there.
    assert await store.listed_events(["2007/07/9/"]) == []


async def test_a_missing_event_stays_until_removed_then_is_a_tombstone(store: Store) -> None:
    await write(store, new=[ev("2007/07/9/a", topics=("Floods", "Dams")), ev("2007/07/9/b")])
    await write(store, T1, missing=["2007/07/9/a"])
    # Missing is not removed: still in every feed.
    assert await store.count_events() == 2
    assert await store.count_events("dams") == 1
    # Only events missing since before the poll's start go.
    nothing = await store.remove_missing(before=T1, now=T1)
    assert nothing.removed == 0
    removed = await store.remove_missing(before=T2, now=T2)
    assert removed.removed == 1 and removed.topics == {"floods", "dams"}
    assert await store.count_events() == 1
    assert await store.count_events("dams") == 0
    assert await store.count_events("floods") == 1
    assert [s.event.id for s in await store.events_page()] == ["2007/07/9/b"]
    assert [s.event.id for s in await store.events_page("floods")] == ["2007/07/9/b"]
    assert [c.topic.slug for c in await store.topic_counts()] == ["floods"]
    assert await store.get_event("2007/07/9/a") is None
    found = await store.lookup_event("2007/07/9/a")
    assert isinstance(found, Removed) and found.deleted_at == T2
    assert found.event.event.id == "2007/07/9/a"
    assert await store.tombstones(None, T0) == [Tombstone("2007/07/9/a", T2, ("floods", "dams"))]
    assert await store.tombstones("dams", T0) == [Tombstone("2007/07/9/a", T2, ("floods", "dams"))]
    assert await store.tombstones("other", T0) == []
    assert await store.tombstones(None, T2 + timedelta(seconds=1)) == []
    # Removed once: a later poll removes nothing more.
    assert (await store.remove_missing(before=T2 + timedelta(hours=1), now=T2)).removed == 0


async def test_remove_missing_limited_to_days(store: Store) -> None:
    await write(store, new=[ev("2007/07/9/a"), ev("2007/07/10/b")])
    await write(store, T1, missing=["2007/07/9/a", "2007/07/10/b"])
    assert (await store.remove_missing(before=T2, now=T2, prefixes={"2007/07/10/"})).removed == 1
    assert await store.lookup_event("2007/07/9/a") is not None
    assert isinstance(await store.lookup_event("2007/07/10/b"), Removed)


async def test_a_page_back_before_removal_clears_missing(store: Store) -> None:
    await write(store, new=[ev("2007/07/9/a")])
    await write(store, T1, missing=["2007/07/9/a"])
    await write(store, T1, present=["2007/07/9/a"])
    assert (await store.remove_missing(before=T2, now=T2)).removed == 0
    assert await store.count_events() == 1


async def test_a_removed_event_comes_back_under_its_id(store: Store) -> None:
    await write(store, new=[ev("2007/07/9/a", topics=("Dams",))])
    await write(store, T1, missing=["2007/07/9/a"])
    await store.remove_missing(before=T2, now=T2)
    before = await store.lookup_event("2007/07/9/a")
    assert isinstance(before, Removed)
    await write(store, T2 + timedelta(minutes=1), present=["2007/07/9/a"])
    back = await store.lookup_event("2007/07/9/a")
    assert back == before.event  # as it was stored: same times
    assert await store.count_events("dams") == 1
    assert await store.tombstones(None, T0) == []


async def test_migrating_a_store_from_before_identity_keeps_its_events(store_url: str) -> None:
    store = await Store.open(store_url)
    await write(store, new=[ev("2007/07/9/a")])
    # Back to the schema before the identity step: its columns, indexes and table gone,
    # and those of later steps (the search index's view reads deleted_at).
    async with store._db.engine.begin() as connection:
        await connection.execute(text("DROP TABLE event_search"))
        await connection.execute(text("DROP VIEW IF EXISTS event_search_source"))
        await connection.execute(text("ALTER TABLE events DROP COLUMN search"))
        for index in ("ix_events_missing", "ix_events_deleted", "ix_events_id_bytes"):
            await connection.execute(text(f"DROP INDEX IF EXISTS {index}"))
        await connection.execute(text("DROP TABLE aliases"))
        for column in ("path", "missing_since", "deleted_at"):
            await connection.execute(text(f"ALTER TABLE events DROP COLUMN {column}"))
        await schema_before(connection, _identity)
    await store.close()
    store = await Store.open(store_url)
    try:
        assert await store.schema_version() == SCHEMA_VERSION
        assert await store.count_events() == 1
        await write(store, T1, missing=["2007/07/9/a"])
        await write(store, T1, moved={"2007/07/9/b": "2007/07/9/a"})
        assert await store.lookup_event("2007/07/9/b") == Moved("2007/07/9/a")
        assert (await store.remove_missing(before=T2, now=T2)).removed == 0  # moved: back
        await write(store, T1, missing=["2007/07/9/a"])
        assert (await store.remove_missing(before=T2, now=T2)).removed == 1
    finally:
        await store.close()


async def test_migrating_a_store_whose_events_share_an_updated_spreads_them(
    store_url: str,
) -> None:
    store = await Store.open(store_url)
    ids = [f"2007/07/9/{name}" for name in "abcd"]
    await write(store, new=[ev(i) for i in ids])
    tick = timedelta(microseconds=1)
    # As a store written before each event had its own microsecond: a, b and c
    # share a time, d is one microsecond later, and so is the last stamp handed out.
    async with store._db.engine.begin() as connection:
        for event_id, when in zip(ids, (T0, T0, T0, T0 + tick), strict=True):
            await connection.execute(
                events.update().where(events.c.id == event_id).values(updated=when)
            )
        await connection.execute(
            meta.update().where(meta.c.key == LAST_STAMP_KEY).values(value=(T0 + tick).isoformat())
        )
        await schema_before(connection, _distinct_updated)
    await store.close()
    store = await Store.open(store_url)
    try:
        stamps = []
        for event_id in ids:
            stored = await store.get_event(event_id)
            assert stored is not None
            stamps.append(stored.updated)
        assert stamps == [T0 + n * tick for n in range(4)]  # in order, each its own
        await write(store, T0, new=[ev("2007/07/9/e")])
        later = await store.get_event("2007/07/9/e")
        assert later is not None and later.updated == T0 + 4 * tick
    finally:
        await store.close()
