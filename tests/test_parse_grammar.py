"""The parser over pages generated from the archive grammar (SPEC section 1).

Pages are built part by part as people and scrapers write them: Formats line,
date line, story, summary, Sources and Related lists (link texts nesting
brackets and bare URLs, targets with parentheses), ``_Context: ..._`` written
with every mix of ``_``, ``*``, ``__`` and ``**``, balanced or not, names in any
script with bidi and other invisible characters, then renoised: CRLF, a BOM,
UTF-16, blank lines, truncation at any byte, binary junk inserted anywhere.

Whatever the page, ``parse_page`` returns an Event that keeps the invariants
(:func:`tests.test_parse_properties.check` and :func:`invariants`), or raises
ParseError: nothing else. A plain page (no noise) also parses to what it says.

``FEEDBOT_FUZZ_EXAMPLES=200000 pytest tests/test_parse_grammar.py -k grammar``
runs the property test long, by hand; the suite runs a few hundred examples.
``python -m tests.test_parse_grammar N [DIR]`` runs N examples without stopping at
the first failure, counts the outcomes by kind and writes each distinct crash to
DIR: that is how the pages of ``tests/data/fuzz/`` were found (the golden tests
of tests/test_parse.py read them, with their expected outcome beside them).
"""

from __future__ import annotations

import os
import re
import sys
import traceback
import unicodedata
from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedbot.archive.parse import INVISIBLE_CHARS, ParseLimits, parse_page
from feedbot.errors import ParseError
from feedbot.model import Event, slugify
from tests.test_parse_properties import PATH, check

EXAMPLES = int(os.environ.get("FEEDBOT_FUZZ_EXAMPLES", "100"))
GRAMMAR = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = Path(__file__).parent / "data" / "fuzz"

INVISIBLE = re.compile(f"[{INVISIBLE_CHARS}]")
KEPT_FORMAT_CHARS = "\u200c\u200d"  # ZWNJ, ZWJ
# Emphasis runs a Context mark may be written with: the usual, doubled, and mixed.
MARKS = ["", "_", "*", "__", "**", "*_", "_*", "**_", "_**", "__*", "*__", "***", "_*_"]
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


def invariants(event: Event, limits: ParseLimits) -> None:
    """What every parsed event keeps, beyond :func:`check`."""
    assert event.title and len(event.title) <= limits.max_title_chars
    assert len(event.related) <= limits.max_related
    assert len(event.topics) <= limits.max_topics
    for text in _display_texts(event):
        assert not INVISIBLE.search(text), repr(text)
    slugs = [topic.slug for topic in event.topics]
    assert len(slugs) == len(set(slugs))
    for topic in event.topics:
        assert topic.name and topic.name == " ".join(topic.name.split()), repr(topic.name)
        assert topic.slug == slugify(topic.name)
    if event.story and slugify(event.story):
        assert event.topics[0].name == event.story
    names = {topic.name for topic in event.topics}
    for related in event.related:
        assert all(
            (context and context in names) or not slugify(context) for context in related.contexts
        )
        context_slugs = [slugify(c) or c for c in related.contexts]
        assert len(context_slugs) == len(set(context_slugs))


def _display_texts(event: Event) -> list[str]:
    texts = [event.title, *(s.name for s in event.sources), *(s.url for s in event.sources)]
    texts += [event.story or ""] + [t.name for t in event.topics]
    for related in event.related:
        texts += [related.title, *related.contexts]
    return texts


# -- the grammar -------------------------------------------------------------------

_PLAIN_NAMES = [
    "Islamabad",
    "Red Mosque",
    "Lal Masjid siege",
    "Côte d'Ivoire",
    "2011 Tōhoku earthquake and tsunami",
    "2010–2011 Ivorian crisis",
    "Straße",
    "東京",
    "São Paulo",
    "کشت\u200cوکار",  # Persian, with the ZWNJ it needs
    "👩\u200d🔬 scientists",  # an emoji ZWJ sequence
    "al-Qaeda",
    "United Nations",
]
# Names as hostile or careless pages write them.
_NOISY_NAMES = [
    "\u202eevil\u202c",
    "Isla\u200bmabad",
    "Ivo\u00adrian",
    "\u2066Tehran\u2069",
    "a_b",
    "x*y",
    "Context: z",
    "(Reuters)",
    "[bracketed]",
    "https://x.org/a_(b)",
    "\t",
    "-",
    "\ufeff",
    "\U000e0041\U000e0042",  # tag characters: text a reader cannot see
]
# Characters a page may hide in a name, none of which the name keeps.
INVISIBLE_NOISE = ["", "\u202e", "\u200b", "\u00ad", "\u2066\u2069", "\ufeff", "\U000e0041"]
plain_name = st.sampled_from(_PLAIN_NAMES)
any_name = (
    plain_name
    | st.sampled_from(_NOISY_NAMES)
    | st.builds(
        lambda a, b, c: a + b + c,
        plain_name,
        st.sampled_from(["", *BIDI, *KEPT_FORMAT_CHARS]),
        plain_name | st.just(""),
    )
    | st.text(max_size=12)
)


# Every strategy is built once, here: one built inside a draw is built and
# validated again for every example, which made the long run several times slower.
valid_dates = st.dates(min_value=date(1990, 1, 1), max_value=date(2030, 12, 31))
_ONE_IN = {n: st.integers(0, n - 1) for n in (2, 5, 6, 7, 9, 11, 16, 21)}


def _rarely(draw: st.DrawFn, n: int) -> bool:
    """True about once in ``n`` draws (and False for the simplest draw, 0, which
    Hypothesis makes more often than the others and shrinks towards)."""
    return draw(_ONE_IN[n]) == n - 1


def _day_path(day: date) -> str:
    return f"{day.year}/{day.month:02d}/{day.day}"


_DATE_SHAPE = st.integers(0, 3)
_BAD_DATE = st.sampled_from(
    ["### [{y}-02-30]", "### [{y}-13-1]", "### [0000-00-0]", "### [{y}-1-1](", "# {y}-1-1"]
)


def _date_line(draw: st.DrawFn, day: date) -> str:
    y, m, d = day.year, day.month, day.day
    if _rarely(draw, 21):  # now and then a date that cannot be, or is no date line
        return draw(_BAD_DATE).format(y=y)
    return [
        f"### [{y}-{m:02d}-{d}](/news/{_day_path(day)}/index.md)",
        f"### [{y}-{m}-{d:02d}](https://host/news/{_day_path(day)}/index.md)",
        f"## {y}-{m:02d}-{d:02d}",
        f"   #### [ {y}-{m}-{d} ]",
    ][draw(_DATE_SHAPE)]


_LINK_WORDS = st.lists(
    any_name
    | st.sampled_from(
        [" ", ". ", "(Reuters)", "https://www.reuters.com/a?b=c", "https:--x", "(", ")"]
    ),
    max_size=5,
)
_UNBALANCED = st.sampled_from(["[", "]", "](", "[ ("])
_POSITION = st.integers(0, 5)


def _link_text(draw: st.DrawFn, depth: int = 0) -> str:
    """A link text: words, bare URLs, and nested ``[...]`` (the seed's item 3)."""
    parts = draw(_LINK_WORDS)
    if depth < 3 and _rarely(draw, 2):
        nested = f"[{_link_text(draw, depth + 1)}]"
        parts.insert(min(draw(_POSITION), len(parts)), nested)
    if _rarely(draw, 16):
        parts.append(draw(_UNBALANCED))
    return "".join(parts)


_MARK = st.sampled_from(MARKS)
_WORD = st.sampled_from(["Context", "Contexts", "context", "CONTEXT"])
_COLON = st.sampled_from([":", " :", ": ", ":  ", ""])
_COMMA = st.sampled_from([", ", ",", " , ", ",,"])
_BEFORE = st.sampled_from([" ", "  ", "", " x "])
_AFTER = st.sampled_from(["", " ", "  ", " trailing", "_", "*"])
_NAMES = st.lists(any_name, max_size=4)


def _context_part(draw: st.DrawFn) -> str:
    """``_Context: a, b_`` with any opening, label and closing marks."""
    opening, label, closing = draw(_MARK), draw(_MARK), draw(_MARK)
    joined = draw(_COMMA).join(draw(_NAMES))
    word, colon = draw(_WORD), draw(_COLON)
    return f"{draw(_BEFORE)}{opening}{word}{colon}{label} {joined}{closing}{draw(_AFTER)}"


_RELATED_SLUG = st.sampled_from(["an-explosion", "talks-fail", "a_(b)", "index", "x"])
_TARGET_SHAPE = st.integers(0, 5)


@st.composite
def related_item(draw: st.DrawFn) -> str:
    day, slug = draw(valid_dates), draw(_RELATED_SLUG)
    target = [
        f"/news/{_day_path(day)}/{slug}.md",
        f"https://host/news/{_day_path(day)}/{slug}.html",
        f"<news/{_day_path(day)}/{slug}.json>",
        f"/news/{day.year}/{day.month:02d}/{day.day + 40}/{slug}.md",
        "https://en.wikipedia.org/wiki/A_(b)",
        f'/news/{_day_path(day)}/{slug}.md "a title"',
    ][draw(_TARGET_SHAPE)]
    contexts = "" if _rarely(draw, 9) else _context_part(draw)
    return f"[{_link_text(draw)}]({target}){contexts}"


_SOURCE_URL = st.sampled_from(
    [
        "http://english.aljazeera.net/NR/exeres/628DFB93.htm",
        "https://en.wikipedia.org/wiki/A_(b)",
        "<https://x.org/with space>",
        'https://x.org/a "title"',
        "",
        "javascript:alert(1)",
    ]
)


@st.composite
def source_item(draw: st.DrawFn) -> str:
    url = draw(_SOURCE_URL)
    if _rarely(draw, 5):  # a bare URL
        return url.strip("<>").split(" ")[0] or "https://bare.example/"
    return f"[{_link_text(draw)}]({url})"


_BULLET = st.sampled_from(["{n}. ", "{n}) ", "- ", "* ", "   1. "])
_BETWEEN = st.sampled_from(["", "   ", "## Other heading", "text between"])
_HEADING = st.sampled_from(["### {h}:", "## {h}", "###{h}", "### {h} :"])
_SECTION_ITEMS = {
    "Sources": st.lists(source_item(), max_size=6),
    "Related": st.lists(related_item(), max_size=6),
}


def _list_section(draw: st.DrawFn, heading: str) -> list[str]:
    lines = [draw(_HEADING).format(h=heading if _rarely(draw, 2) else heading.lower())]
    for number, text in enumerate(draw(_SECTION_ITEMS[heading]), start=1):
        bullet = draw(_BULLET).format(n=number)
        if _rarely(draw, 7) and " " in text:  # wrapped by a scraper
            cut = text.index(" ")
            lines += [bullet + text[:cut], "   " + text[cut + 1 :]]
        else:
            lines.append(bullet + text)
        if _rarely(draw, 5):
            lines.append(draw(_BETWEEN))
    return lines


_PAGE_SLUG = st.sampled_from(["a-slug", "talks-fail", "x_y", "a-slug", "x_(y)", "index"])
_TITLE = st.lists(any_name | st.sampled_from([" ", ": ", " the "]), max_size=8)
_TITLE_END = st.sampled_from([".", ".", ".", "", "!", "…", '."'])
_SUMMARY_MARK = st.sampled_from(["#  ", "# ", "#", "   # "])
_TRAILING = st.sampled_from(["", "", "", " ", "  \t"])
_BLANKS = st.sampled_from([0, 0, 1, 1, 2])


@st.composite
def page_lines(draw: st.DrawFn) -> list[str]:
    """One page in the archive grammar, each part optional or garbled now and then."""
    day, slug = draw(valid_dates), draw(_PAGE_SLUG)
    lines: list[str] = []
    if not _rarely(draw, 11):
        lines.append(
            f"Formats: [HTML](/news/{_day_path(day)}/{slug}.html)  "
            f"[JSON](/news/{_day_path(day)}/{slug}.json)  [XML](/news/{_day_path(day)}/{slug}.xml)"
        )
    if not _rarely(draw, 16):
        lines.append(_date_line(draw, day))
    if _rarely(draw, 2):
        lines.append(f"##### {draw(any_name)}")
    if not _rarely(draw, 16):
        title = "".join(draw(_TITLE)) + draw(_TITLE_END)
        lines.append(draw(_SUMMARY_MARK) + title)
    sections = [_list_section(draw, "Sources"), _list_section(draw, "Related")]
    if _rarely(draw, 2):
        sections.reverse()
    for section in sections:
        if not _rarely(draw, 6):
            lines += section
    noisy: list[str] = []
    for line in lines:  # blank-line noise, trailing spaces
        noisy.append(line + draw(_TRAILING))
        noisy += [""] * draw(_BLANKS)
    return noisy


_PAGE_END = st.sampled_from(["\n", "", "\n\n"])
_ENCODING = st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16"])
_DAMAGES = st.sampled_from([0, 0, 0, 1, 1, 2, 3])
_DAMAGE = st.sampled_from(["truncate", "junk", "delete"])
_JUNK = st.binary(min_size=1, max_size=32)
_AT = st.floats(0, 1)


@st.composite
def pages(draw: st.DrawFn) -> bytes:
    """A page of the grammar, encoded and renoised: CRLF, BOM, UTF-16, truncation
    at any byte, binary junk or a deletion anywhere."""
    text = "\n".join(draw(page_lines())) + draw(_PAGE_END)
    if _rarely(draw, 2):
        text = text.replace("\n", "\r\n")
    data = text.encode(draw(_ENCODING), errors="surrogatepass")
    for _ in range(draw(_DAMAGES)):
        kind, at = draw(_DAMAGE), int(draw(_AT) * len(data))
        if kind == "truncate":
            data = data[:at]
        elif kind == "junk":
            data = data[:at] + draw(_JUNK) + data[at:]
        else:
            data = data[:at] + data[at + int(draw(_AT) * (len(data) - at)) :]
    return data


limits = st.sampled_from(
    [ParseLimits(), ParseLimits(max_topics=2, max_related=2, max_title_chars=40)]
)


def outcome(data: bytes, page_limits: ParseLimits) -> Event | None:
    """The property: an Event that keeps the invariants, or ParseError."""
    event = check_with_limits(data, page_limits)
    if event is not None:
        invariants(event, page_limits)
    return event


def check_with_limits(data: bytes, page_limits: ParseLimits) -> Event | None:
    if page_limits == ParseLimits():
        return check(data)
    try:
        event = parse_page(data, PATH, limits=page_limits)
    except ParseError as exc:
        assert exc.reason and "\n" not in str(exc)
        return None
    check(data)  # within the small limits, then within the defaults too
    return event


@GRAMMAR
@given(pages(), limits)
def test_grammar_pages_give_an_event_or_a_parse_error(
    data: bytes, page_limits: ParseLimits
) -> None:
    outcome(data, page_limits)


# -- a plain page parses to what it says -------------------------------------------


@dataclass(frozen=True)
class PlainRelated:
    day: date
    slug: str
    title: str
    names: tuple[str, ...]
    opening: str
    label: str
    closing: str


@st.composite
def plain_related(draw: st.DrawFn) -> PlainRelated:
    opening = draw(st.sampled_from(MARKS))
    label = draw(st.sampled_from(["", opening, opening[::-1]]))
    return PlainRelated(
        day=draw(valid_dates),
        slug=draw(st.sampled_from(["an-explosion", "talks-fail", "a_(b)"])),
        title=draw(st.sampled_from(["Talks fail.", "Forces [storm] the mosque", "Ōsaka"])),
        names=tuple(
            draw(
                st.lists(
                    st.builds(str.__add__, plain_name, st.sampled_from(INVISIBLE_NOISE)), max_size=4
                )
            )
        ),
        opening=opening,
        label=label,
        closing=draw(st.sampled_from(MARKS)),
    )


def _expected_contexts(names: tuple[str, ...]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for raw in names:
        name = " ".join(INVISIBLE.sub("", raw).split())
        if name:
            seen.setdefault(slugify(name) or name, name)
    return tuple(seen.values())


@GRAMMAR
@given(valid_dates, st.lists(plain_related(), max_size=6), st.sampled_from(INVISIBLE_NOISE))
def test_a_plain_page_parses_to_what_it_says(
    day: date, related: list[PlainRelated], noise: str
) -> None:
    """Every Context mark, mixed or unbalanced, still gives the names written."""
    lines = [
        f"Formats: [HTML](/news/{_day_path(day)}/s.html)",
        f"### [{day.isoformat()}](/news/{_day_path(day)}/index.md)",
        f"##### Lal Masjid{noise} siege",
        f"#  Talks {noise}fail.",
        "### Related:",
    ]
    for number, item in enumerate(related, start=1):
        target = f"/news/{_day_path(item.day)}/{item.slug}.md"
        names = ", ".join(item.names)
        mark = f"{item.opening}Context:{item.label}"
        lines.append(f"{number}. [{item.title}]({target}) {mark} {names}{item.closing}")
    event = parse_page("\n".join(lines) + "\n", "page.md")
    invariants(event, ParseLimits())
    assert event.story == "Lal Masjid siege" and event.title == "Talks fail."
    expected: dict[str, tuple[str, ...]] = {}
    for item in related:
        expected.setdefault(f"{_day_path(item.day)}/{item.slug}", _expected_contexts(item.names))
    assert {r.id: r.contexts for r in event.related} == expected


# -- mixed and unbalanced marks ------------------------------------------------------

_HEAD = (
    "Formats: [HTML](/news/2007/07/9/s.html)\n"
    "### [2007-07-9](/news/2007/07/9/index.md)\n"
    "# Talks fail.\n"
    "### Related:\n"
)


def _contexts(rest: str, *, line_end: str = "\n") -> tuple[str, ...]:
    event = parse_page(f"{_HEAD}1. [a](/news/2008/07/6/a.md) {rest}{line_end}", "x.md")
    (related,) = event.related
    return related.contexts


@pytest.mark.parametrize("closing", MARKS, ids=repr)
@pytest.mark.parametrize("opening", MARKS, ids=repr)
def test_every_mix_of_marks_gives_the_names(opening: str, closing: str) -> None:
    # The page of the issue: "*_Context: x*_" raised KeyError('*_').
    assert _contexts(f"{opening}Context: Islamabad, Red Mosque{closing}") == (
        "Islamabad",
        "Red Mosque",
    )
    assert _contexts(f"{opening}Context:{opening[::-1]} Islamabad, Red Mosque") == (
        "Islamabad",
        "Red Mosque",
    )


def test_the_issues_page() -> None:
    assert _contexts("*_Context: x*_") == ("x",)
    assert _contexts("_*Context: x_*") == ("x",)
    assert _contexts("*_Context: x_* and more") == ("x",)  # what follows is not a name


def test_a_cut_line_with_mixed_marks_keeps_only_whole_names() -> None:
    # Cut before the closing marks, nothing shows the last name is whole: the
    # item is dropped rather than kept with half a name.
    with pytest.raises(ValueError, match="not enough values"):
        _contexts("*_Context: Islam", line_end="")
    assert _contexts("*_Context: Islamabad*_", line_end="") == ("Islamabad",)


# -- invisible characters ----------------------------------------------------------


def test_the_invisible_characters_are_the_format_characters_but_zwnj_and_zwj() -> None:
    covered = {c for c in range(sys.maxunicode + 1) if INVISIBLE.match(chr(c))}
    format_chars = {c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"}
    prepended = {0x600, 0x601, 0x602, 0x603, 0x604, 0x605, 0x6DD, 0x70F, 0x890, 0x891, 0x8E2}
    prepended |= {0x110BD, 0x110CD}
    kept = {0x200C, 0x200D} | prepended
    assert format_chars - kept <= covered
    assert not covered & kept
    # A few listed characters are still unassigned in this Python's Unicode (later
    # versions make them format characters); nothing listed is anything else.
    assert {unicodedata.category(chr(c)) for c in covered - format_chars} <= {"Cn"}


@pytest.mark.parametrize("char", [*BIDI, "\u200b", "\u00ad", "\u2060", "\ufeff", "\U000e0041"])
def test_invisible_characters_leave_every_display_text(char: str) -> None:
    page = (
        "Formats: [HTML](/news/2007/07/9/s.html)\n"
        "### [2007-07-9](/news/2007/07/9/index.md)\n"
        f"##### Lal{char} Masjid siege\n"
        f"# Talks{char} fail.\n"
        "### Sources:\n"
        f"1. [Al{char} jazeera](http://x.org/a{char}b)\n"
        "### Related:\n"
        f"1. [An{char} explosion](/news/2008/07/6/a.md) _Context: Isla{char}mabad, Red{char} Mosque_\n"
    )
    event = parse_page(page, "x.md")
    plain = parse_page(page.replace(char, ""), "x.md")
    assert event == plain
    assert event.content_hash() == plain.content_hash()
    assert event.title == "Talks fail." and event.story == "Lal Masjid siege"
    assert [t.slug for t in event.topics] == ["lal-masjid-siege", "islamabad", "red-mosque"]


def test_zwnj_and_zwj_stay() -> None:
    persian, emoji = "کشت\u200cوکار", "👩\u200d🔬"
    page = (
        "Formats: [HTML](/news/2007/07/9/s.html)\n"
        "### [2007-07-9](/news/2007/07/9/index.md)\n"
        f"##### {persian}\n"
        f"# {emoji} win.\n"
    )
    event = parse_page(page.encode(), "x.md")
    assert event.story == persian and event.title == f"{emoji} win."
    assert event.topics[0].name == persian


# -- the fuzz corpus -------------------------------------------------------------------


def test_the_fuzz_corpus_is_read_by_the_golden_tests() -> None:
    from tests.test_parse import PAGES

    corpus = sorted(FUZZ.glob("*.md"))
    assert corpus, "tests/data/fuzz/ holds the crashes the fuzz runs found"
    assert set(corpus) <= set(PAGES)
    for page in corpus:
        assert page.with_suffix(".json").exists() or page.with_suffix(".error").exists()


# -- a long run, by hand ---------------------------------------------------------------


def _tally(examples: int, out: Path | None) -> Counter[str]:
    """Run ``examples`` grammar pages through the parser, counting outcomes; each
    distinct crash (exception type and where it was raised) is written to ``out``."""
    counts: Counter[str] = Counter()
    crashes: dict[str, bytes] = {}

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(pages())
    def run(data: bytes) -> None:
        try:
            parse_page(data, PATH)
        except ParseError:
            counts["rejected"] += 1
        except Exception as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1]
            key = f"{type(exc).__name__}: {exc} at {Path(where.filename).name}:{where.lineno}"
            counts[f"CRASH {key}"] += 1
            if key not in crashes and out is not None:  # kept at once: a run may be cut short
                out.mkdir(parents=True, exist_ok=True)
                (out / f"crash_{len(crashes) + 1}.md").write_bytes(data)
            crashes.setdefault(key, data)
        else:
            counts["event"] += 1
        if sum(counts.values()) % 5000 == 0:  # a long run shows how far it got
            print(dict(counts), file=sys.stderr, flush=True)

    run()
    return counts


def main(argv: list[str]) -> None:
    examples = int(argv[0]) if argv else 10_000
    out = Path(argv[1]) if len(argv) > 1 else None
    for kind, count in sorted(_tally(examples, out).items()):
        print(f"{count:>9,}  {kind}")


if __name__ == "__main__":
    main(sys.argv[1:])
