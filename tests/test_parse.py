"""Golden-file tests of the archive page parser (README: "The archive format").

Every ``tests/data/**/*.md`` page is parsed with its own file path as ``path`` and
compared with the page beside it: ``<case>.json`` holds the expected
``Event.to_json()``, ``<case>.error`` a fragment of the expected rejection reason.
Pages under ``tests/data/news/YYYY/MM/D/`` live in an archive folder, so their id
comes from the path; the others' comes from their Formats line.

To regenerate the expected files after a deliberate change, run
``FEEDBOT_REGEN_GOLDEN=1 pytest tests/test_parse.py`` and read every diff by hand
before committing it: a golden file is a claim about what the page means.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from feedbot.archive.parse import event_id_from_path, parse_page
from feedbot.errors import ParseError
from feedbot.model import Event, RelatedKind

DATA = Path(__file__).parent / "data"
PAGES = sorted(DATA.rglob("*.md"))
REGEN = os.environ.get("FEEDBOT_REGEN_GOLDEN") == "1"
SEED = DATA / "seed.md"


def _case(page: Path) -> str:
    return page.relative_to(DATA).with_suffix("").as_posix()


def _regenerate(page: Path) -> None:
    expected_json, expected_error = page.with_suffix(".json"), page.with_suffix(".error")
    try:
        event = parse_page(page.read_bytes(), str(page))
    except ParseError as exc:
        expected_json.unlink(missing_ok=True)
        expected_error.write_text(exc.reason + "\n", encoding="utf-8")
    else:
        expected_error.unlink(missing_ok=True)
        body = json.dumps(event.to_json(), indent=2, ensure_ascii=False)
        expected_json.write_text(body + "\n", encoding="utf-8")


@pytest.mark.parametrize("page", PAGES, ids=_case)
def test_golden(page: Path) -> None:
    if REGEN:
        _regenerate(page)
    expected_json, expected_error = page.with_suffix(".json"), page.with_suffix(".error")
    assert expected_json.exists() != expected_error.exists(), "one of .json or .error"
    path = str(page)
    if expected_error.exists():
        fragment = expected_error.read_text(encoding="utf-8").strip()
        with pytest.raises(ParseError) as raised:
            parse_page(page.read_bytes(), path)
        message = str(raised.value)
        assert message == f"{path}: {raised.value.reason}"
        assert "\n" not in message
        assert fragment in raised.value.reason
        return
    event = parse_page(page.read_bytes(), path)
    assert event.to_json() == json.loads(expected_json.read_text(encoding="utf-8"))
    # The JSON object is the stored form too: it reads back to the same event.
    assert Event.from_json(event.to_json()) == event


def test_every_expected_file_has_its_page() -> None:
    expected = sorted(DATA.rglob("*.json")) + sorted(DATA.rglob("*.error"))
    assert expected
    assert [p for p in expected if not p.with_suffix(".md").exists()] == []


def test_the_seed_by_hand() -> None:
    """The one real page, checked field by field against the event object it documents."""
    event = parse_page(SEED.read_bytes(), str(SEED))
    assert event.id.startswith("2007/07/9/lal-masjid-siege-an-attempt-to-negotiate-")
    assert event.date.isoformat() == "2007-07-09"
    assert event.story == "Lal Masjid siege"
    assert event.title == (
        "Lal Masjid siege: An attempt to negotiate a peaceful end to the seven-day standoff"
        " at Islamabad's Red Mosque ends without any progress."
    )
    assert [(s.name, s.url) for s in event.sources] == [
        (
            "Al jazeera",
            "http://english.aljazeera.net/NR/exeres/628DFB93-8F23-49C3-A56E-EBD006B0D607.htm",
        )
    ]
    assert [r.kind for r in event.related] == [
        RelatedKind.FOLLOW_UP,
        RelatedKind.BACKGROUND,
        RelatedKind.FOLLOW_UP,
        RelatedKind.FOLLOW_UP,
        RelatedKind.FOLLOW_UP,
    ]
    nested = event.related[2].title
    assert nested.startswith("Pakistani forces storm the Lal Masjid Mosque in Islamabad")
    # Its inline links "[https:--www.reuters.com-... (Reuters)]" are mentions (issue 13).
    assert "die in the assault. (Reuters) (FOX). Abdul Rashid Ghazi" in nested
    assert nested.endswith("according to Interior ministry sources.")
    assert event.related[0].contexts == ("Islamabad", "Red Mosque")
    assert event.topic_slugs == ("lal-masjid-siege", "islamabad", "red-mosque")


def test_str_and_bytes_parse_alike() -> None:
    data = SEED.read_bytes()
    assert parse_page(data.decode("utf-8"), "seed.md") == parse_page(data, "seed.md")
    assert parse_page(bytearray(data), "seed.md") == parse_page(data, "seed.md")


@pytest.mark.parametrize(
    "case",
    ["crlf", "bom", "bom_crlf", "utf16_bom", "junk_appended", "junk_appended_nul_bytes"],
    ids=str,
)
def test_noise_does_not_change_the_event(case: str) -> None:
    """Line ends, a BOM, an encoding or trailing junk are not content: same hash."""
    seed = parse_page(SEED.read_bytes(), str(SEED))
    page = DATA / f"{case}.md"
    noisy = parse_page(page.read_bytes(), str(page))
    assert noisy == seed
    assert noisy.content_hash() == seed.content_hash()


def test_every_truncation_of_the_seed_keeps_only_complete_parts() -> None:
    """Cut the seed after every character: the page is rejected, or every part it
    keeps is whole and as in the full page (never half-stored)."""
    text = SEED.read_text(encoding="utf-8")
    full = parse_page(text, "seed.md")
    accepted = 0
    for end in range(len(text) + 1):
        try:
            event = parse_page(text[:end], "seed.md")
        except ParseError as exc:
            assert exc.reason
            continue
        accepted += 1
        assert (event.id, event.date, event.story, event.title) == (
            full.id,
            full.date,
            full.story,
            full.title,
        ), end
        assert event.sources == full.sources[: len(event.sources)], end
        kept = len(event.related)
        if kept:
            assert event.related[:-1] == full.related[: kept - 1], end
            # Cut right after a link's ")" the item looks whole without its contexts.
            last, whole = event.related[-1], full.related[kept - 1]
            assert last in (whole, replace(whole, contexts=())), end
        assert event.topics == full.topics[: len(event.topics)], end
    assert accepted > len(text) // 3  # every cut after the summary line is accepted


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("news/2007/07/9/slug.md", "2007/07/9/slug"),
        ("/srv/archive/news/2007/07/09/slug.md", "2007/07/9/slug"),
        ("C:\\archive\\news\\2007\\07\\9\\slug.md", "2007/07/9/slug"),
        ("https://host/base/news/2007/07/9/slug.md", "2007/07/9/slug"),
        ("tests/data/seed.md", None),
        ("news/2007/7/9/slug.md", None),  # the month has two digits in an archive
        ("news/2007/07/9/slug.html", None),
        ("othernews/2007/07/9/slug.md", None),
    ],
)
def test_event_id_from_path(path: str, expected: str | None) -> None:
    assert event_id_from_path(path) == expected


def test_a_path_id_wins_over_the_formats_line() -> None:
    page = SEED.read_bytes()
    event = parse_page(page, "archive/news/2007/07/9/the-real-slug.md")
    assert event.id == "2007/07/9/the-real-slug"


def test_rejections_name_the_file_on_one_line() -> None:
    for data in (b"", b"\x00" * 100, b"# only a summary\n", b"### [2007-07-9]\n"):
        with pytest.raises(ParseError) as raised:
            parse_page(data, "some/dir/page.md")
        assert str(raised.value).startswith("some/dir/page.md: ")
        assert "\n" not in str(raised.value)


def test_impossible_date_names_the_date() -> None:
    with pytest.raises(ParseError, match="2007-02-30"):
        parse_page("### [2007-02-30](/news/2007/02/30/index.md)\n# Something.\n", "x.md")


def test_summary_cut_at_the_end_of_the_page() -> None:
    head = "Formats: [HTML](/news/2007/07/9/s.html)\n### [2007-07-9](/news/2007/07/9/index.md)\n"
    # A summary on the last line without a line end is whole when it ends a sentence...
    assert parse_page(head + "# Talks fail.", "x.md").title == "Talks fail."
    assert parse_page(head + "# Talks fail\n", "x.md").title == "Talks fail"
    # ...and otherwise the page was cut inside it.
    with pytest.raises(ParseError, match="truncated"):
        parse_page(head + "# Talks fa", "x.md")
