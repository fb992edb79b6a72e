"""Full-text search in the store, on every backend (SQLite FTS5, PostgreSQL tsvector):
what matches, in what order, and how the index follows events as they are written,
changed, removed and restored."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import text

from feedbot.errors import StorageError
from feedbot.model import Event, Source, StoredEvent, Topic
from feedbot.search import BadQuery, SearchQuery, words_of
from feedbot.store import Removed, Store
from feedbot.store import search as store_search
from feedbot.store.schema import SCHEMA_VERSION, _search_index
from tests.conftest import T0, schema_before
from tests.conftest import write_events as write

T1 = T0 + timedelta(minutes=5)
T2 = T0 + timedelta(minutes=10)


def ev(
    eid: str,
    title: str,
    *,
    day: date = date(2020, 1, 1),
    story: str | None = None,
    topics: tuple[str, ...] = (),
    sources: tuple[str, ...] = (),
) -> Event:
    return Event(
        id=eid,
        date=day,
        story=story,
        title=title,
        sources=tuple(Source(name, "https://example.org/") for name in sources),
        topics=tuple(Topic.named(t) for t in topics),
    )


async def ids(store: Store, q: str, topics: tuple[str, ...] = (), **page: int) -> list[str]:
    found = await store.search_events(SearchQuery.parse(q, topics), **page)
    return [stored.event.id for stored in found]


def words_of_event(event: Event) -> set[str]:
    texts = [event.title, event.story or "", *(t.name for t in event.topics)]
    texts += [s.name for s in event.sources]
    return {word for t in texts for word in words_of(t)}


ANIMALS = [
    ev("2020/01/1/a", "A cat sleeps in Zürich", topics=("Animals",), sources=("BBC News",)),
    ev("2020/01/1/b", "Category error at the bank", topics=("Finance",)),
    ev("2020/01/2/c", "The cat and the dog", story="Pets", topics=("Pets", "Animals")),
    ev("2020/01/2/d", "Dog show opens", sources=("Cat Weekly",)),
    ev("2020/01/3/e", "Nothing to see", story="Cat crisis"),
    ev("2020/01/3/f", "Shelter opens", topics=("Cat Welfare",)),
    ev("2020/01/4/g", "Straße closed in İstanbul", topics=("Roads",)),
]


async def test_every_hit_holds_every_word_as_a_whole_word(store: Store) -> None:
    await write(store, new=ANIMALS)
    # In the title, the story, a topic name or a source name: all count.
    assert sorted(await ids(store, "cat")) == [
        "2020/01/1/a",
        "2020/01/2/c",
        "2020/01/2/d",
        "2020/01/3/e",
        "2020/01/3/f",
    ]
    assert sorted(await ids(store, "Cat dog")) == ["2020/01/2/c", "2020/01/2/d"]
    for q in ("cat", "cat dog", "opens", "the"):
        query = SearchQuery.parse(q)
        for stored in await store.search_events(query):
            assert set(query.words) <= words_of_event(stored.event)
    # Whole words: no prefixes, no stems.
    assert await ids(store, "category") == ["2020/01/1/b"]
    assert await ids(store, "categ") == []
    assert await ids(store, "cats") == []
    assert await ids(store, "cat bank") == []


async def test_diacritics_and_case_fold_on_both_sides(store: Store) -> None:
    await write(store, new=[*ANIMALS, ev("2020/01/5/h", "ZURICH votes")])
    for q in ("zurich", "ZÜRICH", "Zürich", "zu\u0308rich"):
        assert sorted(await ids(store, q)) == ["2020/01/1/a", "2020/01/5/h"], q
    assert await ids(store, "STRASSE") == ["2020/01/4/g"]
    assert await ids(store, "istanbul") == ["2020/01/4/g"]


async def test_topics_filter_keeps_events_with_any_of_them(store: Store) -> None:
    await write(store, new=ANIMALS)
    assert await ids(store, "cat", ("animals",)) == ["2020/01/2/c", "2020/01/1/a"]
    assert await ids(store, "cat", ("pets",)) == ["2020/01/2/c"]
    assert await ids(store, "cat", ("finance", "cat-welfare")) == ["2020/01/3/f"]
    assert await ids(store, "cat", ("finance",)) == []
    assert await ids(store, "cat", ("no-such-topic",)) == []
    # A topic's slug is no word: "animals" in the text is not the topic.
    assert await ids(store, "welfare") == ["2020/01/3/f"]
    assert await store.count_search(SearchQuery.parse("cat", ("animals", "pets"))) == 2


async def test_removed_events_leave_search_and_come_back_restored(store: Store) -> None:
    await write(store, new=ANIMALS)
    await write(store, T1, missing=["2020/01/1/a"])
    assert "2020/01/1/a" in await ids(store, "cat")  # missing: still in the feeds
    await store.remove_missing(before=T2, now=T2)
    assert isinstance(await store.lookup_event("2020/01/1/a"), Removed)
    assert "2020/01/1/a" not in await ids(store, "cat")
    assert await ids(store, "zurich") == []
    assert await store.count_search(SearchQuery.parse("cat")) == 4
    assert await store.count_search(SearchQuery.parse("cat", ("animals",))) == 1
    await write(store, T2 + timedelta(minutes=1), present=["2020/01/1/a"])
    assert await ids(store, "zurich") == ["2020/01/1/a"]
    assert await store.count_search(SearchQuery.parse("cat", ("animals",))) == 2


async def test_a_changed_event_is_found_by_its_new_words_only(store: Store) -> None:
    await write(store, new=ANIMALS)
    edited = ev("2020/01/1/a", "A lion roars in Geneva", topics=("Zoo",))
    await write(store, T1, changed=[edited])
    assert await ids(store, "zurich") == []
    assert await ids(store, "cat", ("animals",)) == ["2020/01/2/c"]
    assert await ids(store, "lion geneva") == ["2020/01/1/a"]
    assert await ids(store, "roars", ("zoo",)) == ["2020/01/1/a"]
    assert await store.count_search(SearchQuery.parse("cat")) == 4
    # Removed, then back changed: found by its newest words.
    await write(store, T1, missing=["2020/01/1/a"])
    await store.remove_missing(before=T2, now=T2)
    again = ev("2020/01/1/a", "A lion sleeps", topics=("Zoo",))
    await write(store, T2 + timedelta(minutes=1), changed=[again], present=["2020/01/1/a"])
    assert await ids(store, "lion") == ["2020/01/1/a"]
    assert await ids(store, "roars") == []


@pytest.mark.parametrize(
    ("ratio", "budget"),
    [
        pytest.param(store_search.WALK_RATIO, store_search._WALK_BUDGET, id="chosen"),
        pytest.param(1e9, 1, id="sort"),
        pytest.param(0.0, 1_000, id="walk"),
        pytest.param(0.0, 0, id="walk-short-then-sort"),
    ],
)
async def test_results_come_in_feed_order_and_page_in_every_plan(
    store: Store, monkeypatch: pytest.MonkeyPatch, ratio: float, budget: int
) -> None:
    monkeypatch.setattr(store_search, "WALK_RATIO", ratio)
    monkeypatch.setattr(store_search, "_WALK_BUDGET", budget)
    # 3 events a day over 12 days, in three batches (each its own first_seen,
    # so events of one day are ordered by it), every other one about floods.
    batches: list[list[Event]] = [[], [], []]
    for n in range(36):
        day = date(2021, 3, 1 + n % 12)
        title = f"River {'floods' if n % 2 else 'rises'} at gauge {n}"
        batches[n % 3].append(ev(f"2021/03/{day.day}/e{n:02}", title, day=day))
    for i, batch in enumerate(batches):
        await write(store, T0 + timedelta(minutes=i), new=batch)
    await write(store, T1, new=[ev("2021/03/30/other", "Nothing about rivers")])
    feed = await store.events_page(limit=100)
    for q, matching in (("river", 36), ("floods river", 18), ("gauge 7", 1)):
        query = SearchQuery.parse(q)
        expected = [s.event.id for s in feed if set(query.words) <= words_of_event(s.event)]
        assert len(expected) == matching
        assert [s.event.id for s in await store.search_events(query, limit=100)] == expected
        assert await store.count_search(query) == matching
        paged: list[StoredEvent] = []
        for offset in range(0, 40, 7):
            paged += await store.search_events(query, offset=offset, limit=7)
        assert [s.event.id for s in paged] == expected
    assert await store.search_events(SearchQuery.parse("river"), offset=36) == []
    assert await store.search_events(SearchQuery.parse("river"), limit=0) == []


HOSTILE = [
    '" OR *',
    "NEAR(",
    "'",
    "\\",
    "-x",
    "a:b",
    "^",
    "😀",
    "*",
    '"cat" OR "dog"',
    "cat OR dog",
    "cat | dog",
    "cat & !dog",
    "title:cat",
    "cat*",
    "' OR 1=1 --",
    "x\\' | 'y",
    "مرحبا",
    "東京",
]


async def test_hostile_queries_neither_fail_nor_match_everything(store: Store) -> None:
    await write(
        store,
        new=[
            *ANIMALS,
            ev("2020/02/1/ar", "مرحبا بالعالم"),
            ev("2020/02/1/ja", "東京 地震"),
            ev("2020/02/1/x", "Minus x marks the spot"),
        ],
    )
    everything = len(ANIMALS) + 3
    for q in HOSTILE:
        for text_ in (q, f"cat {q}"):
            try:
                query = SearchQuery.parse(text_)
            except BadQuery as exc:  # nothing to search for: said so, not failed
                assert exc.field == "q"
                continue
            found = await store.search_events(query)
            assert len(found) == await store.count_search(query) < everything, text_
            for stored in found:
                assert set(query.words) <= words_of_event(stored.event), text_
    assert await ids(store, "مرحبا") == ["2020/02/1/ar"]
    assert await ids(store, "東京") == ["2020/02/1/ja"]
    assert await ids(store, "-x") == ["2020/02/1/x"]
    # Built by hand, past parse's checks: matches nothing, fails nothing.
    for words, topics in (
        (('cat" OR "dog',), ()),
        (("cat", "' | 'dog"), ()),
        (("Cat",), ()),
        (("cat",), ("animals' | 'x",)),
        ((), ()),
    ):
        query = SearchQuery(words, topics)
        assert await store.search_events(query) == []
        assert await store.count_search(query) == 0


async def test_a_store_from_before_search_becomes_searchable(store_url: str) -> None:
    store = await Store.open(store_url)
    await write(store, new=ANIMALS)
    await write(store, T1, missing=["2020/01/2/c"])
    await store.remove_missing(before=T2, now=T2)
    # Back to the schema before the search step: no index, no events.search.
    async with store._db.engine.begin() as connection:
        await connection.execute(text("DROP TABLE event_search"))
        await connection.execute(text("DROP VIEW IF EXISTS event_search_source"))
        await connection.execute(text("ALTER TABLE events DROP COLUMN search"))
        await schema_before(connection, _search_index)
    await store.close()
    store = await Store.open(store_url)
    try:
        assert await store.schema_version() == SCHEMA_VERSION
        assert sorted(await ids(store, "cat")) == [
            "2020/01/1/a",
            "2020/01/2/d",
            "2020/01/3/e",
            "2020/01/3/f",
        ]
        assert await ids(store, "cat", ("animals",)) == ["2020/01/1/a"]
        await write(store, T2 + timedelta(minutes=1), present=["2020/01/2/c"])
        assert await ids(store, "cat", ("animals",)) == ["2020/01/2/c", "2020/01/1/a"]
    finally:
        await store.close()


async def test_words_are_quoted_even_past_the_searchable_check(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The check keeps such words out; were it gone, the quoting alone keeps them
    # from being query syntax: no "OR", no prefix, no lexeme breaking out.
    await write(store, new=ANIMALS)
    monkeypatch.setattr(SearchQuery, "searchable", property(lambda _self: True))
    for word in ("cat OR dog", "cat*", "dog' | 'cat", 'cat" OR "dog', "ca\\' | 'cat"):
        try:
            found = await store.search_events(SearchQuery((word,)))
        except StorageError:  # FTS5 refuses a phrase of several words: refused, not run
            if store.backend == "sqlite":
                continue
            raise
        # Only events holding every word the text holds (FTS5 reads "cat*" in
        # quotes as the word cat): nothing that an operator would add.
        holding = {e.id for e in ANIMALS if set(words_of(word)) <= words_of_event(e)}
        assert {stored.event.id for stored in found} <= holding, word
