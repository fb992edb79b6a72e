"""The feed rendering layer: Atom, RSS, JSON Feed and OPML, read back by real parsers."""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import feedparser
import jinja2
import pytest

from feedbot.archive.parse import parse_page
from feedbot.errors import FeedbotError
from feedbot.feeds import (
    FeedFormat,
    FeedSpec,
    PageOutOfRange,
    etag,
    event_urn,
    feed_urn,
    jinja_environment,
    newest_first,
    render_atom,
    render_feed,
    render_json_feed,
    render_opml,
    render_rss,
)
from feedbot.feeds.documents import load_feed_page
from feedbot.feeds.pages import render_event_page
from feedbot.model import Event, EventRecord, Related, RelatedKind, Source, StoredEvent, Topic
from feedbot.store import Store

BASE = "https://feeds.example.org"
ATOM = "{http://www.w3.org/2005/Atom}"
SEED = (
    Path(__file__).resolve().parent.parent
    / "examples/archive/news/2007/07/9"
    / "lal-masjid-siege-an-attempt-to-negotiate-a-peaceful-end-to-the-seven-day-standoff-at-islamabad-s-red-mosque-ends-without-any-progress.md"
)

ISLAMABAD = Topic.named("Islamabad")
RED_MOSQUE = Topic.named("Red Mosque")
COTE = Topic.named("Côte d'Ivoire")

HOSTILE = "<script>alert(1)</script> \x00\x07\x1b \ufffe \ud800 ]]> & \x85 Tōhoku"
XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)

Renderer = Callable[[FeedSpec, Sequence[StoredEvent], int, int], bytes]


def make(
    day: date,
    slug: str,
    *,
    topics: Sequence[Topic] = (ISLAMABAD,),
    updated: datetime = T0,
    title: str | None = None,
    sources: Sequence[Source] = (),
    related: Sequence[Related] = (),
) -> StoredEvent:
    event = Event(
        id=f"{day.year}/{day.month:02d}/{day.day}/{slug}",
        date=day,
        story=None,
        title=title if title is not None else f"Event {slug} on {day.isoformat()}",
        sources=tuple(sources),
        related=tuple(related),
        topics=tuple(topics),
    )
    return StoredEvent(event=event, first_seen=updated, updated=updated)


def five_events() -> list[StoredEvent]:
    """Five events on four days; two share a day, so the id breaks the tie."""
    return [
        make(date(2007, 7, 3), "clashes", updated=T0 + timedelta(hours=5)),
        make(date(2007, 7, 9), "b-siege", topics=(ISLAMABAD, RED_MOSQUE)),
        make(date(2007, 7, 9), "a-talks"),
        make(date(2008, 7, 6), "explosion", topics=(RED_MOSQUE, COTE)),
        make(date(2017, 11, 26), "troops"),
    ]


def rich_event() -> StoredEvent:
    return make(
        date(2007, 7, 9),
        "siege",
        topics=(Topic.named("Lal Masjid siege"), ISLAMABAD, RED_MOSQUE),
        sources=(Source("Al jazeera", "http://english.aljazeera.net/a.htm"),),
        related=(
            Related(
                "2008/07/6/explosion",
                date(2008, 7, 6),
                "An explosion near the Red Mosque",
                ("Islamabad", "Red Mosque"),
                RelatedKind.FOLLOW_UP,
            ),
            Related(
                "2007/07/3/clashes",
                date(2007, 7, 3),
                "Lal Masjid clashes",
                ("Islamabad",),
                RelatedKind.BACKGROUND,
            ),
        ),
    )


def hostile_event() -> StoredEvent:
    return make(
        date(2011, 3, 11),
        "hostile",
        title=HOSTILE,
        topics=(Topic(HOSTILE, "evil"), COTE),
        sources=(
            Source(HOSTILE, "javascript:alert(1)"),
            Source("relative", "/news/x.md"),
            Source("fine & <dandy>", "https://ok.example/?a=1&b=<2>\x07"),
        ),
        related=(
            Related(
                "2012/01/1/later", date(2012, 1, 1), HOSTILE, (HOSTILE,), RelatedKind.FOLLOW_UP
            ),
        ),
    )


def spec(page_size: int = 50, base_url: str = BASE, title: str = "Islamabad") -> FeedSpec:
    return FeedSpec.for_topic(Topic(title, "islamabad"), base_url, page_size=page_size)


def parsed(body: bytes) -> feedparser.FeedParserDict:
    result = feedparser.parse(body)
    assert result.bozo == 0, result.get("bozo_exception")
    return result


def links(feed: feedparser.FeedParserDict) -> dict[str, str]:
    return {link["rel"]: link["href"] for link in feed.feed.links}


# --- Atom -----------------------------------------------------------------------


def test_atom_is_well_formed_rfc4287_with_feed_metadata() -> None:
    events = five_events()
    result = parsed(render_atom(spec(), events, 1, len(events)))

    assert result.version == "atom10"
    assert result.feed.id == feed_urn("islamabad")
    assert result.feed.title == "Islamabad"
    assert result.feed.author == "feedbot"
    assert links(result)["self"] == f"{BASE}/feeds/topics/islamabad.atom"
    assert links(result)["alternate"] == f"{BASE}/topics/islamabad"
    # The feed is as new as its most recently changed entry, not its newest event.
    assert result.feed.updated == (T0 + timedelta(hours=5)).isoformat()


def test_atom_entries_newest_first_then_by_id() -> None:
    events = five_events()
    body = render_atom(spec(), list(reversed(events)), 1, len(events))

    ids = [entry.id for entry in parsed(body).entries]

    assert ids == [
        event_urn("2017/11/26/troops"),
        event_urn("2008/07/6/explosion"),
        event_urn("2007/07/9/a-talks"),
        event_urn("2007/07/9/b-siege"),
        event_urn("2007/07/3/clashes"),
    ]


def test_events_of_one_day_are_newest_first_seen_first() -> None:
    early = make(date(2007, 7, 9), "a-early", updated=T0)
    late = make(date(2007, 7, 9), "b-late", updated=T0 + timedelta(seconds=1))
    body = render_atom(spec(), [early, late], 1, 2)

    ids = [entry.id for entry in parsed(body).entries]

    assert ids == [event_urn(late.event.id), event_urn(early.event.id)]


def test_atom_entry_fields() -> None:
    stored = rich_event()
    entry = parsed(render_atom(spec(), [stored], 1, 1)).entries[0]

    assert entry.title == stored.event.title
    assert entry.link == f"{BASE}/events/2007/07/9/siege"
    assert entry.published == "2007-07-09T00:00:00+00:00"
    assert entry.updated == T0.isoformat()
    assert [(t.term, t.label) for t in entry.tags] == [
        ("lal-masjid-siege", "Lal Masjid siege"),
        ("islamabad", "Islamabad"),
        ("red-mosque", "Red Mosque"),
    ]
    assert entry.content[0].type == "text/html"


def test_ids_depend_on_event_and_slug_alone() -> None:
    events = five_events()
    one = parsed(render_atom(spec(base_url="https://a.example"), events, 1, 5))
    other = parsed(render_atom(spec(base_url="http://b.example/sub/", title="Other"), events, 1, 5))

    assert one.feed.id == other.feed.id
    assert [e.id for e in one.entries] == [e.id for e in other.entries]
    assert one.entries[0].link != other.entries[0].link
    assert other.entries[0].link.startswith("http://b.example/sub/events/")


def test_entry_content_links_sources_related_and_topic_feeds() -> None:
    html = parsed(render_atom(spec(), [rich_event()], 1, 1)).entries[0].content[0].value

    assert (
        '<a href="http://english.aljazeera.net/a.htm" rel="nofollow noopener">Al jazeera</a>'
        in html
    )
    assert f'href="{BASE}/events/2008/07/6/explosion"' in html
    assert '<time datetime="2008-07-06">' in html
    assert f'href="{BASE}/events/2007/07/3/clashes"' in html
    assert html.index("Follow-ups") < html.index("explosion") < html.index("Background")
    assert f'href="{BASE}/topics/red-mosque"' in html
    assert "<script" not in html


def test_empty_feed_is_valid_and_dated_as_given() -> None:
    for body in (
        render_atom(spec(), [], 1, 0, updated=T0),
        render_rss(spec(), [], 1, 0, updated=T0),
    ):
        result = parsed(body)
        assert result.entries == []
    atom = ET.fromstring(render_atom(spec(), [], 1, 0, updated=T0))
    assert atom.findtext(f"{ATOM}updated") == T0.isoformat()


def test_empty_feed_without_a_date_is_refused_not_dated_1970() -> None:
    with pytest.raises(ValueError, match="no entries"):
        render_atom(spec(), [], 1, 0)


def test_feed_updated_can_be_given() -> None:
    later = datetime(2025, 1, 1, 1, 0, tzinfo=UTC)
    atom = ET.fromstring(render_atom(spec(), five_events()[:2], 1, 5, updated=later))
    assert atom.findtext(f"{ATOM}updated") == later.isoformat()


# --- RFC 5005 paging ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        (1, {"first": "", "next": "?page=2", "last": "?page=3"}),
        (2, {"first": "", "previous": "", "next": "?page=3", "last": "?page=3"}),
        (3, {"first": "", "previous": "?page=2", "last": "?page=3"}),
    ],
)
def test_paging_links(page: int, expected: dict[str, str]) -> None:
    feed = spec(page_size=2)
    events = newest_first(five_events())
    page_events = events[feed.offset(page) : feed.offset(page) + 2]

    result = parsed(render_atom(feed, page_events, page, len(events)))

    url = f"{BASE}/feeds/topics/islamabad.atom"
    got = {rel: href for rel, href in links(result).items() if rel not in ("self", "alternate")}
    assert got == {rel: url + query for rel, query in expected.items()}
    assert links(result)["self"] == (url if page == 1 else f"{url}?page={page}")


def test_a_reader_walks_the_whole_history_through_next_links() -> None:
    feed = spec(page_size=2)
    events = newest_first(five_events())
    seen: list[str] = []
    url: str | None = feed.url()
    while url is not None:
        page = int(parse_qs(urlsplit(url).query).get("page", ["1"])[0])
        page_events = events[feed.offset(page) : feed.offset(page) + feed.page_size]
        result = parsed(render_atom(feed, page_events, page, len(events)))
        seen += [entry.id for entry in result.entries]
        url = links(result).get("next")

    assert seen == [event_urn(s.event.id) for s in events]


def test_rss_carries_the_paging_links_as_atom_links() -> None:
    feed = spec(page_size=2)
    channel = ET.fromstring(render_rss(feed, five_events()[:2], 2, 5)).find("channel")
    assert channel is not None

    got = {link.get("rel"): link.get("href") for link in channel.iterfind(f"{ATOM}link")}

    url = f"{BASE}/feeds/topics/islamabad.rss"
    assert got == {
        "self": f"{url}?page=2",
        "first": url,
        "previous": url,
        "next": f"{url}?page=3",
        "last": f"{url}?page=3",
    }


@pytest.mark.parametrize(("page", "total"), [(0, 5), (4, 5), (2, 0), (-1, 0)])
def test_a_page_that_does_not_exist_is_refused(page: int, total: int) -> None:
    with pytest.raises(PageOutOfRange) as error:
        render_atom(spec(page_size=2), [], page, total)
    assert isinstance(error.value, LookupError)
    assert isinstance(error.value, FeedbotError)


def test_more_events_than_a_page_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="page of 2"):
        render_atom(spec(page_size=2), five_events(), 1, 5)


# --- RSS ------------------------------------------------------------------------------


def test_rss_is_well_formed_rss2() -> None:
    events = five_events()
    body = render_rss(spec(), events, 1, len(events))
    result = parsed(body)

    assert result.version == "rss20"
    assert result.feed.link == f"{BASE}/topics/islamabad"
    assert result.entries[0].id == event_urn("2017/11/26/troops")
    assert all(not e.guidislink for e in result.entries)
    assert result.entries[0].link == f"{BASE}/events/2017/11/26/troops"
    guids = ET.fromstring(body).iter("guid")
    assert {g.get("isPermaLink") for g in guids} == {"false"}


def test_rss_item_content_and_categories() -> None:
    entry = parsed(render_rss(spec(), [rich_event()], 1, 1)).entries[0]

    assert "Al jazeera" in entry.description
    assert entry.published_parsed[:6] == (2007, 7, 9, 0, 0, 0)
    assert [t.term for t in entry.tags] == ["Lal Masjid siege", "Islamabad", "Red Mosque"]


# --- JSON Feed ------------------------------------------------------------------------

JSON_FEED_KEYS = {
    "version", "title", "home_page_url", "feed_url", "description", "user_comment",
    "next_url", "icon", "favicon", "authors", "language", "expired", "hubs", "items",
}  # fmt: skip
JSON_ITEM_KEYS = {
    "id", "url", "external_url", "title", "content_html", "content_text", "summary",
    "image", "banner_image", "date_published", "date_modified", "authors", "tags",
    "language", "attachments",
}  # fmt: skip


def check_json_feed(document: dict[str, object]) -> None:
    """The JSON Feed 1.1 rules: required keys, known keys (or ``_`` extensions), types."""
    assert document["version"] == "https://jsonfeed.org/version/1.1"
    assert isinstance(document["title"], str)
    assert isinstance(document["items"], list)
    assert {k for k in document if not k.startswith("_")} <= JSON_FEED_KEYS
    for item in document["items"]:
        assert isinstance(item["id"], str)
        assert isinstance(item.get("content_html") or item.get("content_text"), str)
        assert {k for k in item if not k.startswith("_")} <= JSON_ITEM_KEYS
        for key in ("date_published", "date_modified"):
            assert datetime.fromisoformat(item[key]).tzinfo is not None


def test_json_feed_1_1() -> None:
    feed = spec(page_size=2)
    events = newest_first(five_events())
    first = json.loads(render_json_feed(feed, events[:2], 1, 5))
    last = json.loads(render_json_feed(feed, events[4:], 3, 5))

    for document in (first, last):
        check_json_feed(document)
    assert first["feed_url"] == f"{BASE}/feeds/topics/islamabad.json"
    assert first["next_url"] == f"{BASE}/feeds/topics/islamabad.json?page=2"
    assert "next_url" not in last
    assert [i["id"] for i in first["items"]] == [event_urn(s.event.id) for s in events[:2]]
    item = json.loads(render_json_feed(feed, [rich_event()], 1, 1))["items"][0]
    assert item["tags"] == ["Lal Masjid siege", "Islamabad", "Red Mosque"]
    assert item["_feedbot"]["topics"][0] == {"slug": "lal-masjid-siege", "name": "Lal Masjid siege"}
    assert item["date_published"] == "2007-07-09T00:00:00+00:00"


# --- hostile input -------------------------------------------------------------------


def assert_no_live_markup(html: str) -> None:
    lowered = html.lower()
    assert "<script" not in lowered
    assert "javascript:" not in lowered
    assert "&lt;script&gt;" in lowered  # the text survives, as text


@pytest.mark.parametrize("render", [render_atom, render_rss])
def test_hostile_event_gives_well_formed_xml_and_no_live_script(render: Renderer) -> None:
    body = render(spec(), [hostile_event()], 1, 1)

    root = ET.fromstring(body)  # well-formed, or this raises
    parsed(body)
    texts = [t for el in root.iter() for t in (el.text or "", *el.attrib.values())]
    assert not any(XML_FORBIDDEN.search(text) for text in texts)
    content = next(
        el.text or ""
        for el in root.iter()
        if el.tag in (f"{ATOM}content", "description") and "Sources" in (el.text or "")
    )
    assert_no_live_markup(content)
    assert 'href="https://ok.example/?a=1&amp;b=&lt;2&gt;"' in content
    assert "/news/x.md" not in content  # relative links are dropped, not guessed
    # The text, HTML-escaped: Atom declares type="html", RSS titles are HTML.
    title = root.find(f".//{ATOM}entry/{ATOM}title")
    if title is not None:
        assert title.get("type") == "html"
    else:
        title = root.find(".//item/title")
    assert title is not None
    assert title.text == html.escape("<script>alert(1)</script>    ]]> &  Tōhoku", quote=False)


def test_hostile_event_in_json_feed() -> None:
    document = json.loads(render_json_feed(spec(), [hostile_event()], 1, 1).decode("utf-8"))

    check_json_feed(document)
    item = document["items"][0]
    assert_no_live_markup(item["content_html"])
    assert not XML_FORBIDDEN.search(json.dumps(document, ensure_ascii=False))


def test_hostile_topic_names_in_opml() -> None:
    body = render_opml([(Topic(HOSTILE, "evil"), 1)], BASE, title="x\x00 & <y>")

    root = ET.fromstring(body)
    # OPML 2.0 text may hold HTML: names go in HTML-escaped, shown as written.
    assert root.findtext("head/title") == "x &amp; &lt;y&gt;"
    outline = root.find("body/outline")
    assert outline is not None
    assert outline.get("text") == html.escape(
        "<script>alert(1)</script>    ]]> &  Tōhoku", quote=False
    )


# --- determinism ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(FeedFormat))
def test_same_input_same_bytes_and_etag(fmt: FeedFormat) -> None:
    events = five_events()
    one = render_feed(fmt, spec(), events, 1, 5)
    two = render_feed(fmt, spec(base_url=BASE + "/"), list(reversed(five_events())), 1, 5)
    changed = [*events[:-1], make(date(2017, 11, 26), "troops", updated=T0 + timedelta(days=1))]

    assert one == two
    assert etag(one) == etag(two)
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag(one))
    assert etag(render_feed(fmt, spec(), changed, 1, 5)) != etag(one)
    assert b"python-feedgen" not in one


# --- OPML ---------------------------------------------------------------------------------


def test_opml_lists_every_topic_feed() -> None:
    topics = [(ISLAMABAD, 3), (COTE, 1), (RED_MOSQUE, 2)]

    root = ET.fromstring(render_opml(topics, BASE + "/"))

    assert root.tag == "opml"
    assert root.get("version") == "2.0"
    assert root.findtext("head/title")
    outlines = root.findall("body/outline")
    assert [(o.get("text"), o.get("xmlUrl"), o.get("htmlUrl")) for o in outlines] == [
        (t.name, f"{BASE}/feeds/topics/{t.slug}.atom", f"{BASE}/topics/{t.slug}") for t, _ in topics
    ]
    assert {o.get("type") for o in outlines} == {"rss"}
    assert outlines[1].get("description") == "1 event"


# --- the seed page, templates and specs ------------------------------------------------------


def test_seed_page_renders() -> None:
    event = parse_page(SEED.read_bytes(), str(SEED))
    stored = StoredEvent(event, T0, T0)
    feed = FeedSpec.for_topic(event.topics[0], BASE)

    entry = parsed(render_atom(feed, [stored], 1, 1)).entries[0]

    assert entry.id == event_urn(event.id)
    assert [t.term for t in entry.tags] == list(event.topic_slugs)
    html = entry.content[0].value
    assert 'href="http://english.aljazeera.net/NR/exeres/' in html
    for related in event.related:
        assert f'href="{BASE}/events/{related.id}"' in html


def test_templates_come_from_the_checkout_and_autoescape() -> None:
    env = jinja_environment()

    assert isinstance(env.loader, jinja2.FileSystemLoader)
    assert Path(env.loader.searchpath[0]) == Path(__file__).resolve().parents[1] / "templates"
    assert env.get_template("entry.html")
    assert env.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"


@pytest.mark.parametrize(
    ("kind", "slug", "base_url", "page_size"),
    [
        ("topic", None, BASE, 50),
        ("topic", "", BASE, 50),
        ("all", "islamabad", BASE, 50),
        ("all", None, "feeds.example.org", 50),
        ("all", None, BASE, 0),
    ],
)
def test_feed_spec_refuses_nonsense(
    kind: str, slug: str | None, base_url: str, page_size: int
) -> None:
    with pytest.raises(ValueError):
        FeedSpec(kind, slug, "t", base_url, page_size)  # type: ignore[arg-type]


def test_all_events_feed_urls() -> None:
    feed = FeedSpec.all_events(BASE + "/")

    assert feed.feed_id == feed_urn(None)
    assert feed.url(FeedFormat.RSS, 2) == f"{BASE}/feeds/all.rss?page=2"
    assert feed.html_url == f"{BASE}/"


def test_naive_datetimes_are_refused() -> None:
    stored = make(date(2020, 1, 1), "naive", updated=datetime(2020, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        render_atom(spec(), [stored], 1, 1)


# --- ids, dates and what readers show (SPEC §6 "Entries") ------------------------------


def test_the_seed_event_id_is_pinned_for_ever() -> None:
    event = parse_page(SEED.read_bytes(), str(SEED))
    # Changing this id shows the event again to every reader: never change it.
    assert event_urn(event.id) == "urn:uuid:42865e75-44ac-570f-a179-09c16fd14f90"
    assert feed_urn(None) == "urn:uuid:756ad632-5ab9-5f4a-9c32-8fd1a28663c7"
    assert feed_urn("islamabad") == "urn:uuid:25656736-76f1-5d1c-9813-834901d3cba9"


def test_entry_authors_are_the_sources_or_the_archive() -> None:
    sourced = rich_event()
    unsourced = make(date(2020, 1, 1), "bare")
    atom = parsed(render_atom(spec(), [sourced, unsourced], 1, 2))
    rss = ET.fromstring(render_rss(spec(), [sourced, unsourced], 1, 2))

    assert [[a.name for a in e.authors] for e in atom.entries] == [["feedbot"], ["Al jazeera"]]
    creators = [
        [c.text for c in item.iterfind("{http://purl.org/dc/elements/1.1/}creator")]
        for item in rss.iter("item")
    ]
    assert creators == [["feedbot"], ["Al jazeera"]]


def test_summary_leaves_out_the_story_the_title_keeps_it() -> None:
    event = parse_page(SEED.read_bytes(), str(SEED))
    entry = parsed(render_atom(spec(), [StoredEvent(event, T0, T0)], 1, 1)).entries[0]

    assert entry.title == event.title
    assert entry.title.startswith("Lal Masjid siege: An attempt")
    assert "<p>An attempt to negotiate" in entry.content[0].value
    assert "Lal Masjid siege: An attempt" not in entry.content[0].value


def test_related_events_are_in_date_order_in_entries_and_on_the_event_page() -> None:
    event = parse_page(SEED.read_bytes(), str(SEED))
    follow_up_dates = [r.date.isoformat() for r in event.follow_ups()]
    assert follow_up_dates != sorted(follow_up_dates)  # the archive's order is not by date
    stored = StoredEvent(event, T0, T0)
    content = parsed(render_atom(spec(), [stored], 1, 1)).entries[0].content[0].value
    page = render_event_page(stored, BASE).body.decode()

    for text in (content, page):
        shown = re.findall(r'<time datetime="([0-9-]{10})">', text)[1:]  # [0]: the event's
        follow, back = shown[: len(follow_up_dates)], shown[len(follow_up_dates) :]
        assert follow == sorted(follow_up_dates)
        assert back == sorted(back) and len(back) == len(event.background())


async def test_stored_entries_never_share_updated_and_an_empty_feed_has_a_real_date(
    store: Store,
) -> None:
    empty = await load_feed_page(store, BASE, None)
    assert empty.updated == await store.created_at()
    assert empty.updated.year > 1970
    first = [make(date(2020, 1, d), f"e{d}").event for d in (1, 2, 2, 3)]
    first[2] = replace(first[2], id="2020/01/2/f2")
    for events in (first, [make(date(2020, 1, 2), "later").event]):
        await store.write_batch(
            new=[EventRecord.of(e) for e in events],
            changed=[],
            marks_={},
            rejected={},
            accepted_paths=[],
            now=T0,  # one clock reading for both batches: the store still tells them apart
        )

    page = await load_feed_page(store, BASE, None)
    stamps = [s.updated for s in page.events]
    assert len(set(stamps)) == len(stamps) == 5
    assert min(stamps) == T0 and max(stamps) - T0 < timedelta(seconds=1)
    assert page.updated == max(stamps)
    # Same day: the one seen last first, then in the archive's order seen backwards.
    assert [s.event.id for s in page.events] == [
        "2020/01/3/e3",
        "2020/01/2/later",
        "2020/01/2/f2",
        "2020/01/2/e2",
        "2020/01/1/e1",
    ]
    atom = ET.fromstring(page.render(FeedFormat.ATOM).body)
    updated = [e.findtext(f"{ATOM}updated") for e in atom.iter(f"{ATOM}entry")]
    assert len(set(updated)) == 5


def test_an_entry_is_rendered_from_its_whole_event_not_only_its_id_and_time() -> None:
    """Entries are built once and reused across renders: an event whose content
    changed under the same updated time (a related link resolved to another
    event) is not shown as it was."""
    before = rich_event()
    first = render_atom(spec(), [before], 1, 1)
    link = replace(before.event.related[0], id="2008/07/6/explosion-kept", title="Kept")
    after = replace(before, event=replace(before.event, related=(link,)))
    second = render_atom(spec(), [after], 1, 1)
    assert b"explosion-kept" not in first and b"explosion-kept" in second
    assert render_atom(spec(), [before], 1, 1) == first
