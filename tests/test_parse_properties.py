"""Properties of the archive page parser, whatever the page.

(a) Robustness: for arbitrary bytes, arbitrary text, page-shaped token soup and
mutations of the real seed page, ``parse_page`` returns an Event or raises
ParseError, nothing else; an Event is well formed (serialisable, one-line fields,
no character XML 1.0 forbids, consistent kinds and topic slugs).

(b) Linearity: ~1 MB pages of the shapes that make naive parsers backtrack or
rescan (a huge Related list, one line full of ``[`` and ``(``, deep nesting, long
runs of spaces, inline link fragments closed and unclosed) parse in well under
two seconds, and doubling a page does not much more than double the time.
"""

from __future__ import annotations

import contextlib
import gc
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedbot.archive.parse import (
    _SIMPLE_CONTEXT,
    _SIMPLE_LINK,
    _context_body,
    _scanned_link,
    _split_link,
    parse_page,
)
from feedbot.errors import ParseError
from feedbot.model import Event, RelatedKind, canonical_json

SEED = (Path(__file__).parent / "data" / "seed.md").read_bytes()
SEED_TEXT = SEED.decode("utf-8")
SEED_EVENT = parse_page(SEED, "seed.md")
PATH = "pages/some page.md"

PROPERTIES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Everything XML 1.0 allows is #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] |
# [#x10000-#x10FFFF]; this is the rest.
XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
EVENT_ID = re.compile(r"^[0-9]{4}/[0-9]{2}/[0-9]{1,2}/[^/\s]+$")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def check(data: bytes | str) -> Event | None:
    """Parse ``data``; assert the outcome is one the contract allows."""
    try:
        event = parse_page(data, PATH)
    except ParseError as exc:
        message = str(exc)
        assert message.startswith(f"{PATH}: ") and exc.reason
        assert "\n" not in message and "\r" not in message
        return None
    body = json.dumps(event.to_json(), ensure_ascii=False)
    assert json.loads(body) == event.to_json()
    body.encode("utf-8")  # no lone surrogate survives
    for text in _strings(event.to_json()):
        assert not XML_FORBIDDEN.search(text), repr(text)
        assert "\n" not in text and "\r" not in text, repr(text)
    assert EVENT_ID.match(event.id), event.id
    assert event.title and event.title == " ".join(event.title.split())
    assert event.story is None or event.story == " ".join(event.story.split()) != ""
    for related in event.related:
        assert EVENT_ID.match(related.id), related.id
        assert related.title and related.title == related.title.strip()
        after = related.date > event.date
        assert related.kind is (RelatedKind.FOLLOW_UP if after else RelatedKind.BACKGROUND)
    assert len({r.id for r in event.related}) == len(event.related)
    slugs = event.topic_slugs
    assert len(set(slugs)) == len(slugs) and all(SLUG.match(slug) for slug in slugs)
    for source in event.sources:
        assert source.name and source.url and not any(c.isspace() for c in source.url)
    return event


# -- (a) robustness ---------------------------------------------------------------

TOKENS = [
    "\n",
    "\r\n",
    "\r",
    "\ufeff",
    " ",
    "  ",
    "\t",
    "\x00",
    "\x0b",
    "\u2028",
    "\ud800",
    "Formats: [HTML](/news/2007/07/9/a-slug.html)",
    "(/news/2010/04/20/b.json)",
    "### [2007-07-9](/news/2007/07/9/index.md)",
    "### [2007-02-30]",
    "### 2016-11-24",
    "##### Lal Masjid siege",
    "#####",
    "# ",
    "#  Talks fail.",
    "#",
    "##",
    "######",
    "### Sources:",
    "### Related:",
    "## related",
    "1. ",
    "2) ",
    "- ",
    "* ",
    "[",
    "]",
    "(",
    ")",
    "](",
    "[ ",
    " ](",
    "<",
    ">",
    "http://x.org/a_(b)",
    "https:--x",
    "/news/2008/07/6/an-explosion.md",
    "news/2017/11/26/index.md",
    "/news/9999/99/99/x.md",
    " _Context: ",
    "**Context:** ",
    "_",
    "*",
    "__",
    ",",
    ", ",
    "Islamabad",
    "Red Mosque",
    "Côte d'Ivoire",
    "Tōhoku",
    "Straße",
    "2010–2011",
    "東京",
    "\ufffd",
    "\x85",
    "\u00a0",
]


def _encode(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogatepass")  # lone surrogates as bad bytes


page_soup = st.lists(st.sampled_from(TOKENS), max_size=80).map("".join)
any_text = st.text(st.characters(exclude_categories=[]), max_size=400)


_LINK_PARTS = st.lists(
    st.sampled_from(
        ["a", " ", "é", "_", "*", "x.org/a", "\\", '"t"', "<", ">", "[", "]", "(", ")"]
    ),
    max_size=8,
).map("".join)
# "[text](target) rest", the parts drawn so that brackets and parentheses land inside
# them now and then: the shortcut must take every link the scan reads the same way.
LINK_SOUP = st.builds(
    lambda text, target, rest: f"[{text}]({target}){rest}", _LINK_PARTS, _LINK_PARTS, _LINK_PARTS
)
_NAMES = st.lists(
    st.sampled_from(["a", "b c", ",", " ", "é", "Context:", "context :", "x:y", "-", "\t"]),
    max_size=8,
).map("".join)
# Mostly the shape the shortcut takes ("_Context: a, b_"), with names that hold
# what could confuse it; now and then any mark, names and end at all.
CONTEXT_SOUP = st.builds(
    lambda before, mark, names, end: f"{before}{mark}{names}{end}",
    st.sampled_from(["", " ", "  ", "x "]),
    st.sampled_from(["_Context: ", "_Context:", "_Context:  "])
    | st.sampled_from(["_context: ", "*Context: ", "**Context:** ", "_Contexts: "]),
    st.builds(str.__add__, st.sampled_from(["a", "Ōsaka", "b c", " "]), _NAMES)
    | st.text(alphabet="ab _*,:", max_size=12),
    st.sampled_from(["_", "_ ", "_  "]) | st.sampled_from(["_x", "", "*", "_ _", "__"]),
)


@PROPERTIES
@given(LINK_SOUP, st.booleans())
def test_the_simple_link_shortcut_agrees_with_the_scan(item: str, strict: bool) -> None:
    if _SIMPLE_LINK.match(item):
        assert _split_link(item, strict=strict) == _scanned_link(item, strict=strict)


@PROPERTIES
@given(CONTEXT_SOUP, st.booleans())
def test_the_simple_context_shortcut_agrees_with_the_search(rest: str, cut: bool) -> None:
    if simple := _SIMPLE_CONTEXT.match(rest):
        assert _context_body(rest, cut=cut) == simple.group(1)


@PROPERTIES
@given(
    st.recursive(
        st.none() | any_text, lambda inner: st.lists(inner) | st.dictionaries(any_text, inner)
    )
)
def test_canonical_json_is_the_standard_librarys_compact_json(data: Any) -> None:
    # Stored content hashes are digests of this text: it must never drift from
    # what json.dumps writes (lone surrogates included), or every event of an
    # existing store would count as changed.
    assert canonical_json(data) == json.dumps(data, ensure_ascii=False, separators=(",", ":"))


@PROPERTIES
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(data: bytes) -> None:
    check(data)


@PROPERTIES
@given(any_text)
def test_arbitrary_text_including_lone_surrogates(text: str) -> None:
    check(text)
    check(_encode(text))


@PROPERTIES
@given(page_soup)
def test_page_shaped_soup(text: str) -> None:
    check(text)
    check(_encode(text))


@st.composite
def seed_mutations(draw: st.DrawFn) -> bytes:
    """The seed sliced, cut, spliced with junk and renoised, in any mix."""
    data = SEED
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["slice", "cut", "insert", "delete", "crlf", "bom"]))
        size = len(data)
        if kind == "slice":
            start = draw(st.integers(0, size))
            data = data[start : draw(st.integers(start, size))]
        elif kind == "cut":
            data = data[: draw(st.integers(0, size))]
        elif kind == "insert":
            at = draw(st.integers(0, size))
            junk = draw(st.one_of(st.binary(max_size=64), page_soup.map(_encode)))
            data = data[:at] + junk + data[at:]
        elif kind == "delete":
            start = draw(st.integers(0, size))
            data = data[:start] + data[draw(st.integers(start, size)) :]
        elif kind == "crlf":
            data = data.replace(b"\n", b"\r\n")
        else:
            data = b"\xef\xbb\xbf" + data
    return data


@PROPERTIES
@given(seed_mutations())
def test_seed_mutations(data: bytes) -> None:
    check(data)


@PROPERTIES
@given(st.integers(0, len(SEED)), st.booleans(), st.booleans())
def test_truncated_seed_keeps_whole_parts(end: int, crlf: bool, bom: bool) -> None:
    """A cut seed, however renoised, is rejected or keeps only parts of the full
    event: never a half title, a half source or a related item that is not the
    page's (though cut right after its link, one may lack its contexts)."""
    data = SEED[:end]
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    if bom:
        data = b"\xef\xbb\xbf" + data
    event = check(data)
    if event is None:
        return
    assert (event.id, event.date, event.story, event.title) == (
        SEED_EVENT.id,
        SEED_EVENT.date,
        SEED_EVENT.story,
        SEED_EVENT.title,
    )
    assert set(event.sources) <= set(SEED_EVENT.sources)
    whole = {r.id: r for r in SEED_EVENT.related}
    for related in event.related[:-1]:
        assert related == whole[related.id]
    if event.related:
        last = event.related[-1]
        assert last.contexts in (whole[last.id].contexts, ())


@PROPERTIES
@given(st.binary(min_size=1, max_size=2000))
def test_junk_after_a_whole_page_is_ignored(junk: bytes) -> None:
    """Junk after the seed (which ends with a line end) may add nothing to it."""
    event = check(SEED + b"\n" + junk)
    assert event is not None
    assert (event.id, event.title, event.sources) == (
        SEED_EVENT.id,
        SEED_EVENT.title,
        SEED_EVENT.sources,
    )
    assert event.related[: len(SEED_EVENT.related)] == SEED_EVENT.related


# -- (b) linearity -------------------------------------------------------------------


def _related_list(size: int) -> str:
    """The seed with its Related list repeated up to ``size`` characters."""
    items = SEED_TEXT[SEED_TEXT.index("1. [ An explosion") :]
    return SEED_TEXT + items * max(1, (size - len(SEED_TEXT)) // len(items))


def _bracket_line(size: int) -> str:
    """One Related item of ``size`` characters, all ``[`` and ``(``."""
    return SEED_TEXT + "6. " + "[(" * (size // 2) + "\n"


def _unclosed_links(size: int) -> str:
    """One line of link middles that never close: the fallback paths."""
    return SEED_TEXT + "6. [x" + "](" * (size // 2) + "\n"


def _nested_brackets(size: int) -> str:
    """One Related item with its text nested ``size / 2`` brackets deep."""
    depth = size // 2
    return (
        SEED_TEXT
        + "6. ["
        + "[" * depth
        + "]" * depth
        + "](/news/2008/07/6/deep.md) _Context: Deep_\n"
    )


def _space_runs(size: int) -> str:
    """Long runs of spaces where a lazy pattern could backtrack over them."""
    run = " " * (size // 4)
    return (
        SEED_TEXT.replace("#  Lal Masjid siege:", "# Lal" + run + "x" + run)
        + "6. [a](/news/2008/07/6/a.md) _Context: Islamabad"
        + run
        + "x"
        + run
        + "y\n"
    )


def _inline_links(size: int) -> str:
    """One Related item full of inline link fragments, half of them closed, half
    never closing (feedbot.archive.mentions scans it before its length is checked)."""
    closed = "[https:--www.x.org-a-B (X (y))] "
    unclosed = "[https:--www.x.org-a (X "
    return (
        SEED_TEXT
        + "6. [ "
        + closed * (size // (2 * len(closed)))
        + unclosed * (size // (2 * len(unclosed)))
        + "](/news/2008/07/6/a.md) _Context: Islamabad_\n"
    )


def _best_time(page: str) -> float:
    """The fastest of three parses, in seconds of this process's CPU time (the
    least disturbed one): the other processes of a busy machine do not count."""
    best = float("inf")
    for _ in range(3):
        gc.collect()
        started = time.process_time()
        with contextlib.suppress(ParseError):
            parse_page(page, PATH)
        best = min(best, time.process_time() - started)
    return best


MB = 1_000_000


@pytest.mark.parametrize(
    "shape",
    [_related_list, _bracket_line, _unclosed_links, _nested_brackets, _space_runs, _inline_links],
    ids=lambda shape: shape.__name__.lstrip("_"),
)
def test_parse_time_is_linear(shape: Callable[[int], str]) -> None:
    one, four = shape(MB // 2), shape(2 * MB)
    assert 3.6 < len(four) / len(one) < 4.4
    check(four)  # a giant page is still a well-formed event (or a clean rejection)
    small, large = _best_time(one), _best_time(four)
    # Four times the page: about four times the time if linear, sixteen if
    # quadratic. The bound sits between, far from both, so a busy machine's noise
    # does not decide the outcome.
    assert large < 8 * small + 0.05, f"0.5 MB: {small:.3f} s, 2 MB: {large:.3f} s"
