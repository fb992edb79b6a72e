"""What one page may hold (``archive.max_page_topics``, ``archive.max_page_related``,
``archive.max_title_chars``), and that the limits reach the parser wherever it
runs: in the poll's thread, in its worker processes and in ``feedbot parse``.

A page over a limit is rejected with a reason naming the limit and the number;
a page at the limit is whole. The defaults sit far above every page of the sample
archive and of bench/make_archive.py (at most 23 topics, 8 related events and a
396-character summary).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from feedbot.archive.local import LocalArchiveSource
from feedbot.archive.parse import DEFAULT_LIMITS, ParseLimits, parse_page
from feedbot.cli import main
from feedbot.errors import ParseError
from feedbot.ingest import Ingestor, _Parser
from feedbot.settings import Settings, load_settings
from feedbot.store import Store
from tests.conftest import Clock, write_page

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "archive"
DAY = "2007/07/9"


def page(*, topics: int = 0, related: int = 0, title: str = "Talks fail.") -> str:
    """A page with a story, ``related`` related events and ``topics`` contexts
    spread over them (or over one related event when there are none)."""
    lines = [
        f"Formats: [HTML](/news/{DAY}/talks.html)",
        f"### [2007-07-9](/news/{DAY}/index.md)",
        "##### Lal Masjid siege",
        f"#  {title}",
        "### Related:",
    ]
    names = [f"Place {n}" for n in range(max(0, topics - 1))]  # the story is one topic
    count = max(related, 1 if names else 0)
    for n in range(count):
        contexts = ", ".join(names[n::count])
        lines.append(f"{n + 1}. [Event {n}](/news/2008/07/6/event-{n}.md) _Context: {contexts}_")
    return "\n".join(lines) + "\n"


def test_the_defaults_are_the_settings_defaults() -> None:
    assert Settings().archive.parse_limits == DEFAULT_LIMITS == ParseLimits()
    assert (DEFAULT_LIMITS.max_topics, DEFAULT_LIMITS.max_related) == (200, 200)
    assert DEFAULT_LIMITS.max_title_chars == 2000


@pytest.mark.parametrize(
    ("field", "make", "key", "what"),
    [
        ("max_topics", lambda n: page(topics=n), "archive.max_page_topics", "topics"),
        ("max_related", lambda n: page(related=n), "archive.max_page_related", "related events"),
        (
            "max_title_chars",
            lambda n: page(title="x" * (n - 1) + "."),
            "archive.max_title_chars",
            "characters",
        ),
    ],
)
def test_a_page_over_a_limit_is_rejected_naming_it(field: str, make, key: str, what: str) -> None:
    limit = getattr(DEFAULT_LIMITS, field)
    whole = parse_page(make(limit), "x.md")
    assert whole.title and whole.topics
    with pytest.raises(ParseError) as raised:
        parse_page(make(limit + 1), "x.md")
    reason = raised.value.reason
    assert key in reason and f"{limit + 1:,} {what}" in reason and f"{limit:,}" in reason
    # Smaller limits are the caller's to give.
    # (20: max_title_chars bounds the story too, and the page's is 16 characters.)
    small = ParseLimits(**{field: 20})
    with pytest.raises(ParseError, match=key):
        parse_page(make(21), "x.md", limits=small)
    assert parse_page(make(20), "x.md", limits=small).title


def test_the_page_of_sixty_thousand_topics_is_rejected() -> None:
    # The page of the issue: under max_page_bytes, yet 60,000 topics.
    text = page(topics=60_000, related=20)
    assert 400_000 < len(text.encode()) < 1_048_576
    with pytest.raises(ParseError, match=r"60,000 topics, over the limit of 200"):
        parse_page(text, "x.md")


def test_duplicates_count_once() -> None:
    """A limit counts what would be stored: one topic per slug, one related event per id."""
    item = "1. [Event](/news/2008/07/6/event.md) _Context: Islamabad, ISLAMABAD_\n"
    text = page() + item * 1000
    event = parse_page(text, "x.md", limits=ParseLimits(max_topics=2, max_related=1))
    assert [t.slug for t in event.topics] == ["lal-masjid-siege", "islamabad"]


def test_no_page_of_the_sample_archive_is_near_a_limit() -> None:
    pages = [p for p in EXAMPLES.rglob("*.md") if p.name != "index.md"]
    assert pages
    tenth = ParseLimits(max_topics=20, max_related=20, max_title_chars=200 * 2)
    for path in pages:
        parse_page(path.read_bytes(), str(path), limits=tenth)


def test_settings_build_the_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "feedbot.toml"
    config.write_text("[archive]\nmax_page_topics = 5\nmax_title_chars = 80\n", encoding="utf-8")
    monkeypatch.setenv("FEEDBOT_ARCHIVE__MAX_PAGE_RELATED", "7")
    limits = load_settings(config).archive.parse_limits
    assert limits == ParseLimits(max_topics=5, max_related=7, max_title_chars=80)


def _archive_with_one_big_page(root: Path, pages: int) -> str:
    """``pages`` small pages and one naming 5 topics; the path of the big one."""
    for n in range(pages):
        write_page(root, DAY, f"event-{n}", f"Event {n} happens.", story="Lal Masjid siege")
    big = root / "news" / "2007" / "07" / "9" / "big.md"
    big.write_text(page(topics=5), encoding="utf-8")
    return "news/2007/07/9/big.md"


@pytest.mark.parametrize("pages", [3, _Parser.LARGE + 10], ids=["thread", "worker processes"])
async def test_a_poll_rejects_pages_over_its_limits(
    tmp_path: Path, clock: Clock, pages: int
) -> None:
    root = tmp_path / "archive"
    big = _archive_with_one_big_page(root, pages)
    store = await Store.open(f"sqlite:///{tmp_path / 'feedbot.db'}")
    try:
        source = LocalArchiveSource(root, clock=clock)
        ingestor = Ingestor(store, source, clock=clock, limits=ParseLimits(max_topics=4))
        result = await ingestor.poll()
    finally:
        await store.close()
    assert result.new == pages
    assert list(result.rejected) == [big]
    assert result.rejected[big] == "5 topics, over the limit of 4 (archive.max_page_topics)"


def test_feedbot_parse_takes_the_limits_from_the_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "big.md"
    path.write_text(page(topics=5), encoding="utf-8")
    config = tmp_path / "feedbot.toml"
    config.write_text("[archive]\nmax_page_topics = 4\n", encoding="utf-8")
    assert main(["parse", "--json", str(path)]) == 0
    capsys.readouterr()
    assert main(["parse", "--config", str(config), "--json", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == f"{path}: 5 topics, over the limit of 4 (archive.max_page_topics)"


def _with_lines(lines: dict[str, str]) -> str:
    """The seed-like page of :func:`page` with some of its lines replaced."""
    text = page(related=1)
    for old, new in lines.items():
        assert old in text
        text = text.replace(old, new)
    return text


@pytest.mark.parametrize(
    ("replace", "reason"),
    [
        (
            {"##### Lal Masjid siege": "##### " + "Siege " * 400},
            "a story of 2,399 characters, over the limit of 2,000 (archive.max_title_chars)",
        ),
        (
            {"[Event 0]": "[" + "Event " * 400 + "]"},
            "a related title of 2,399 characters, over the limit of 2,000",
        ),
        (
            {"_Context: _": "_Context: " + "x" * 201 + "_"},
            "a topic whose slug has 201 characters, over the 200 a topic URL may hold",
        ),
    ],
)
def test_every_shown_text_is_bounded(replace: dict[str, str], reason: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_page(_with_lines(replace), f"news/{DAY}/talks.md")
    assert reason in caught.value.reason


def test_a_topic_slug_at_the_url_limit_is_whole() -> None:
    event = parse_page(_with_lines({"_Context: _": "_Context: " + "x" * 200 + "_"}), "t.md")
    assert "x" * 200 in event.topic_slugs
