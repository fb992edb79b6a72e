"""The bundled sample archive (examples/archive) and the synthetic one (bench/make_archive.py).

The sample archive ships with the repository and is what a new user polls first,
so it must be a clean, well-linked archive: every page parses, every related link
lands on a page of the archive quoting that page's summary, every day has a
complete index, and every story is a topic with several events. The synthetic
archive feeds the benchmarks; a small one must parse just as cleanly.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from feedbot.archive.parse import parse_page
from feedbot.model import Event

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "examples" / "archive"

sys.path.insert(0, str(REPO / "bench"))
from make_archive import make_archive  # noqa: E402

# The one real archive page the sample started from, kept verbatim.
SEED_PATH = (
    "news/2007/07/9/lal-masjid-siege-an-attempt-to-negotiate-a-peaceful-end-to-the-"
    "seven-day-standoff-at-islamabad-s-red-mosque-ends-without-any-progress.md"
)
SEED_SHA256 = "4d496e84be4d4e7da2e4591917e5d021280744574fad02e54ba98838f1b70efa"

_INDEX_LINK = re.compile(r"\]\((/news/\d{4}/\d{2}/\d{1,2}/[^/)\s]+\.md)\)")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def _pages(root: Path) -> list[Path]:
    return sorted(p for p in (root / "news").rglob("*.md") if p.name != "index.md")


def _parse_all(root: Path) -> dict[str, Event]:
    """Every page of an archive, by event id; fails on the first page that does not parse."""
    events: dict[str, Event] = {}
    for page in _pages(root):
        rel = page.relative_to(root).as_posix()
        event = parse_page(page.read_bytes(), rel)
        assert event.id == rel.removeprefix("news/").removesuffix(".md")
        events[event.id] = event
    return events


def _check_links_and_indexes(root: Path, events: dict[str, Event]) -> None:
    for event in events.values():
        year, month, day, _ = event.id.split("/")
        assert (int(year), int(month), int(day)) == (
            event.date.year,
            event.date.month,
            event.date.day,
        ), f"{event.id}: folder and date line disagree"
        for related in event.related:
            assert related.id in events, f"{event.id}: related {related.id} is not a page"
            target = events[related.id]
            assert related.title == target.title, f"{event.id}: related text != summary"
            assert related.date == target.date
            assert related.id != event.id
    day_dirs = {p.parent for p in _pages(root)}
    all_dirs = {p.parent for p in (root / "news").rglob("*.md")}
    assert all_dirs == day_dirs, "a day folder holds an index but no page"
    for folder in day_dirs:
        index = folder / "index.md"
        assert index.is_file(), f"{folder} has no index.md"
        linked = set(_INDEX_LINK.findall(index.read_text(encoding="utf-8")))
        present = {"/" + p.relative_to(root).as_posix() for p in folder.glob("*.md") if p != index}
        assert linked == present, f"{index}: index does not list exactly the day's pages"


@pytest.fixture(scope="module")
def sample() -> dict[str, Event]:
    return _parse_all(SAMPLE)


def test_sample_pages_all_parse(sample: dict[str, Event]) -> None:
    assert len(sample) >= 64
    assert len(sample) == len(_pages(SAMPLE))


def test_seed_page_is_verbatim(sample: dict[str, Event]) -> None:
    data = (SAMPLE / SEED_PATH).read_bytes()
    assert hashlib.sha256(data).hexdigest() == SEED_SHA256
    seed = sample[SEED_PATH.removeprefix("news/").removesuffix(".md")]
    assert seed.story == "Lal Masjid siege"
    assert len(seed.related) == 5  # all five pages it names exist (checked below)


def test_sample_links_resolve_and_indexes_are_complete(sample: dict[str, Event]) -> None:
    _check_links_and_indexes(SAMPLE, sample)


def test_sample_formats_line_names_the_page(sample: dict[str, Event]) -> None:
    for event_id in sample:
        page = SAMPLE / "news" / f"{event_id}.md"
        # Outside an archive folder the id comes from the Formats line alone.
        assert parse_page(page.read_bytes(), page.name).id == event_id


def test_sample_slugs_follow_the_summary(sample: dict[str, Event]) -> None:
    for event in sample.values():
        slug = event.id.rsplit("/", 1)[1]
        assert len(slug) <= 140
        full = _NOT_SLUG.sub("-", event.title.lower()).strip("-")
        assert full.startswith(slug), f"{event.id}: slug is not taken from the summary"


def test_sample_stories_and_topics(sample: dict[str, Event]) -> None:
    stories = Counter(e.story for e in sample.values() if e.story)
    assert len(stories) >= 8
    topics = Counter(t.slug for e in sample.values() for t in e.topics)
    for story in stories:
        slug = next(t.slug for e in sample.values() for t in e.topics if t.name == story)
        assert topics[slug] >= 5, f"story {story!r} has only {topics[slug]} events"
    kinds = Counter(r.kind.value for e in sample.values() for r in e.related)
    assert kinds["follow_up"] > 0 and kinds["background"] > 0
    years = {e.date.year for e in sample.values()}
    assert min(years) <= 2008 and max(years) >= 2020


def test_sample_has_unicode_and_parenthesised_urls(sample: dict[str, Event]) -> None:
    slugs = {t.slug for e in sample.values() for t in e.topics}
    assert {"2011-tohoku-earthquake-and-tsunami", "2010-2011-ivorian-crisis"} <= slugs
    assert "cote-d-ivoire" in slugs
    urls = [s.url for e in sample.values() for s in e.sources]
    assert any(url.endswith("_(drilling_rig)") for url in urls)


def test_make_archive_small_archive_parses(tmp_path: Path) -> None:
    count = make_archive(tmp_path / "a", 500, seed=7)
    assert count == 500
    events = _parse_all(tmp_path / "a")
    assert len(events) == 500
    _check_links_and_indexes(tmp_path / "a", events)
    assert sum(1 for e in events.values() if e.story) > 250  # most events have a story
    assert any(r.kind.value == "follow_up" for e in events.values() for r in e.related)
    assert any(r.kind.value == "background" for e in events.values() for r in e.related)
    assert any(any(ord(c) > 127 for c in t.name) for e in events.values() for t in e.topics)


def test_make_archive_is_deterministic(tmp_path: Path) -> None:
    make_archive(tmp_path / "a", 300, seed=3)
    make_archive(tmp_path / "b", 300, seed=3)
    files_a = {
        p.relative_to(tmp_path / "a"): p.read_bytes() for p in (tmp_path / "a").rglob("*.md")
    }
    files_b = {
        p.relative_to(tmp_path / "b"): p.read_bytes() for p in (tmp_path / "b").rglob("*.md")
    }
    assert files_a == files_b
    make_archive(tmp_path / "c", 300, seed=4)
    files_c = {p.relative_to(tmp_path / "c") for p in (tmp_path / "c").rglob("*.md")}
    assert set(files_a) != files_c
