"""feedbot.search without a database: the normalisation shared by the index and the
queries, what the index holds of an event, and how a user's query is read."""

from __future__ import annotations

import pickle
from datetime import date

import pytest

from feedbot.errors import FeedbotError
from feedbot.model import Event, EventRecord, Source, Topic
from feedbot.search import (
    MAX_DOCUMENT_CHARS,
    MAX_QUERY_CHARS,
    MAX_QUERY_TOPICS,
    MAX_QUERY_WORDS,
    BadQuery,
    SearchQuery,
    index_document,
    search_document,
    topic_token,
    words_of,
)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Zürich", ["zurich"]),
        ("ZURICH zurich Zu\u0308rich", ["zurich", "zurich", "zurich"]),
        ("Straße", ["strasse"]),
        ("İstanbul Kraków Łódź", ["istanbul", "krakow", "łodz"]),
        ("hello_world a-b c'd e.f", ["hello", "world", "a", "b", "c", "d", "e", "f"]),
        ("ﬁne ＡＢＣ ½", ["fine", "abc", "1", "2"]),
        ("At least 45 people – “killed”", ["at", "least", "45", "people", "killed"]),
        ("हिन्दी", ["हिनदी"]),  # vowel signs stay in the word; the virama (a diacritic) goes
        ("مَرْحَبًا بالعالم", ["مرحبا", "بالعالم"]),  # the vowel points are diacritics
        ("東京 地震", ["東京", "地震"]),
        ("😀 ★ — ...", []),
        ("", []),
    ],
)
def test_words_of_normalises(text: str, words: list[str]) -> None:
    assert words_of(text) == words


def test_words_of_gives_back_its_own_words() -> None:
    # A normalised word is normalised already: index and query agree whichever
    # side normalised it.
    sample = "Ǆemal ΐ Ⅻ ㈠ ﬀ ǰ Ǳ ẞ ꭰ ᏸ Zürich हिन्दी ＡＢＣ 東京"
    for word in words_of(sample):
        assert words_of(word) == [word]
    for code in range(0x3000):
        words = words_of(f"a{chr(code)}b")
        assert words_of(" ".join(words)) == words


def test_search_document_holds_each_word_once() -> None:
    document = search_document(
        "Floods in Zürich: Zurich floods", None, ["Zürich floods", "Europe"], ["BBC News"]
    )
    assert document == "floods in zurich europe bbc news"
    long = "x" * (MAX_QUERY_CHARS + 1)
    assert search_document(f"a {long} b", "story", [], []) == "a b story"
    assert search_document("", None, [], []) == ""
    many = " ".join(f"w{n}" for n in range(20_000))  # 128,889 characters
    document = search_document(many, None, [], [])
    assert len(document) <= MAX_DOCUMENT_CHARS
    assert many.startswith(document + " ")  # whole words, the first ones


def test_an_event_record_carries_what_the_index_holds_of_it() -> None:
    event = Event(
        id="2020/01/1/a",
        date=date(2020, 1, 1),
        story="Côte d'Ivoire crisis",
        title="Talks end",
        sources=(Source("Le Monde", "https://lemonde.fr/"),),
        topics=(Topic.named("Abidjan"),),
    )
    record = EventRecord.of(event)
    assert record.search == "talks end cote d ivoire crisis abidjan le monde §abidjan"
    assert pickle.loads(pickle.dumps(record)) == record


def test_a_topic_token_is_no_word() -> None:
    token = topic_token("cote-d-ivoire")
    assert token == "§cote§d§ivoire"
    assert words_of(token) != [token]  # no query word can ever be it
    assert topic_token("a-b") != topic_token("ab")
    assert index_document("talks end", ["a-b", "c"]) == "talks end §a§b §c"
    assert index_document("", ["c"]) == "§c"
    assert index_document("", []) == ""


def test_parse_normalises_and_deduplicates() -> None:
    query = SearchQuery.parse("  Zürich FLOODS zurich, floods! ", ["weather", "europe", "weather"])
    assert query.words == ("zurich", "floods")
    assert query.topics == ("europe", "weather")
    assert query.text == "zurich floods"
    assert query.searchable


def test_the_key_names_the_normalised_query() -> None:
    key = SearchQuery.parse("Zürich floods", ["weather", "europe"]).key
    assert key == SearchQuery.parse("zurich  FLOODS!", ["europe", "weather", "europe"]).key
    assert key == "q=zurich+floods&topic=europe&topic=weather"
    assert key.isascii()
    assert key != SearchQuery.parse("floods zurich", ["weather", "europe"]).key  # order
    assert key != SearchQuery.parse("Zürich floods", ["weather"]).key
    assert key != SearchQuery.parse("Zürich floods").key
    assert SearchQuery.parse("東京").key == "q=%E6%9D%B1%E4%BA%AC"


@pytest.mark.parametrize(
    ("q", "topics", "field", "reason"),
    [
        ("", (), "q", "the query is empty"),
        ("   \t", (), "q", "the query is empty"),
        ("x" * (MAX_QUERY_CHARS + 1), (), "q", "the query is longer than 200 characters"),
        ("!!! ... ???", (), "q", "the query has no letters or digits"),
        (" ".join(f"w{i}" for i in range(13)), (), "q", "the query has more than 12 words"),
        ("ok", ("x y",), "topic", '"x y" is not a topic slug'),
        ("ok", ("Floods",), "topic", '"Floods" is not a topic slug'),
        ("ok", ("-floods",), "topic", '"-floods" is not a topic slug'),
        ("ok", ("a" * 300,), "topic", '"' + "a" * 40 + '…" is not a topic slug'),
        ("ok", tuple(f"t{i}" for i in range(11)), "topic", "more than 10 topics"),
    ],
)
def test_parse_refuses_with_field_and_reason(
    q: str, topics: tuple[str, ...], field: str, reason: str
) -> None:
    with pytest.raises(BadQuery) as caught:
        SearchQuery.parse(q, topics)
    assert (caught.value.field, caught.value.reason) == (field, reason)
    assert str(caught.value) == f"{field}: {reason}"
    assert isinstance(caught.value, FeedbotError) and isinstance(caught.value, ValueError)
    again = pickle.loads(pickle.dumps(caught.value))
    assert (again.field, again.reason) == (field, reason)


def test_parse_accepts_up_to_the_limits() -> None:
    assert len(SearchQuery.parse("x" * MAX_QUERY_CHARS).words) == 1
    many = " ".join(f"w{i}" for i in range(MAX_QUERY_WORDS))
    assert len(SearchQuery.parse(many + " w0 W1").words) == MAX_QUERY_WORDS  # repeats are free
    topics = [f"t{i}" for i in range(MAX_QUERY_TOPICS)]
    assert len(SearchQuery.parse("ok", topics + topics).topics) == MAX_QUERY_TOPICS


def test_a_query_built_by_hand_is_searchable_only_when_normalised() -> None:
    assert SearchQuery(("zurich",), ("europe",)).searchable
    assert not SearchQuery(()).searchable
    assert not SearchQuery(("Zurich",)).searchable
    assert not SearchQuery(("cat dog",)).searchable
    assert not SearchQuery(('cat"',)).searchable
    assert not SearchQuery(("cat",), ("Europe",)).searchable
