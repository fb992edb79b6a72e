"""Turning one archive page (README: "The archive format") into an :class:`~feedbot.model.Event`.

Pages come from people and scrapers, so the parser is lenient about noise (CRLF,
BOM, blank lines, trailing spaces, indented headings, control characters, junk
bytes, list items wrapped over several lines) and strict about the two things an
event cannot lack: a valid date and a complete summary. Whatever goes wrong
surfaces as :class:`~feedbot.errors.ParseError` with a one-line reason; no other
exception leaves this module.

Truncated files keep what is complete and nothing else: a page cut inside its
Sources or Related list keeps the items before the cut, and drops the last item
when it is visibly unfinished (its link or its ``_Context: ..._`` never closes); a
page cut before its summary, or inside it (the summary is the last line, with no
line end and no sentence end), is rejected. A page is never half-stored.
Junk bytes around an otherwise valid page do not cost the page: the parts that
can be recognised decide, and invalid bytes and characters no feed may carry
are dropped, as are invisible format characters (bidi overrides and the like),
which could make a title read otherwise than it is stored. A page holding more
than :class:`ParseLimits` allows (topics, related events, summary length) is
rejected with a reason naming the limit, never cut to fit. Inline links in the
summary and in related titles (``[URL (Name)]``, scraped from the wiki) are made
mentions by :mod:`feedbot.archive.mentions`, which also gives the summary's
trusted URLs as sources.

The work is one pass over the lines with anchored regular expressions (none of
them backtracks more than linearly) and a bracket scanner that walks each list
item once, so time is linear in the page.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from datetime import date

from feedbot.archive.mentions import clean_inline_links
from feedbot.errors import ParseError
from feedbot.model import MAX_SLUG_CHARS, Event, Related, RelatedKind, Source, Topic, slugify

# C0 controls but tab and newline, DEL, C1 controls, and the non-characters XML
# forbids; archive text may hold any of them and no feed may.
_CONTROL_CHARS = "\x00-\x08\x0b-\x1f\x7f-\x9f\ufffe\uffff\ud800-\udfff"
# The invisible format characters (Unicode category Cf): bidi embeddings, overrides,
# isolates and marks make a title read backwards ("U+202E") or hide text, and
# zero-width spaces, word joiners, soft hyphens and tag characters hide text too.
# Kept: ZWNJ and ZWJ (U+200C, U+200D), which Persian, Indic scripts and emoji
# sequences need, and the prepended concatenation marks (U+0600-U+0605, U+06DD,
# U+070F, U+0890-U+0891, U+08E2, U+110BD, U+110CD), which are visible signs.
# tests/test_parse_grammar.py checks this list against the unicodedata of the
# running Python.
_INVISIBLE_BMP = (
    "\u00ad\u061c\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
)
_INVISIBLE_ASTRAL = (
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
INVISIBLE_CHARS = _INVISIBLE_BMP + _INVISIBLE_ASTRAL
# A class of characters within the BMP is one table lookup per character; with
# any beyond it, a list of ranges tried in turn, several times slower over a
# whole page. So the controls and the invisible characters of the BMP go in one
# pass, and those beyond it in a second, made only for pages that may hold a
# character beyond the BMP at all.
_FORBIDDEN_CHARS = re.compile(f"[{_CONTROL_CHARS}{_INVISIBLE_BMP}]")
_FORBIDDEN_ASTRAL = re.compile(f"[{_INVISIBLE_ASTRAL}]")
_CONTROLS = re.compile(f"[{_CONTROL_CHARS}]")

# Every pattern is anchored or starts at a rare character, and no two adjacent
# parts can match the same text, so none of them backtracks quadratically on a
# long run of spaces or brackets. Digits are ASCII ([0-9], not \d) on purpose.
_FORMATS_LINE = re.compile(r"^\s*Formats\s*:(.*)$", re.IGNORECASE)
_FORMATS_TARGET = re.compile(r"\(\s*([^()\s]+)\s*\)")
# An archive page's address, relative or absolute ("whatever the host").
_NEWS_TARGET = re.compile(
    r"(?:^|/)news/([0-9]{4})/([0-9]{1,2})/([0-9]{1,2})/([^/?#\s]+?)\.(?:md|html|json|xml)"
    r"(?:[?#]\S*)?$"
)
_ARCHIVE_PATH = re.compile(r"(?:^|/)news/([0-9]{4})/([0-9]{2})/([0-9]{1,2})/([^/]+)\.md$")
_DATE_LINE = re.compile(
    r"^ {0,3}#{2,4}\s*(?:\[\s*)?([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})\s*(?:\]\s*)?(?:\(.*\)\s*)?$"
)
_STORY_LINE = re.compile(r"^ {0,3}#####(?!#)(.*)$")
_SUMMARY_LINE = re.compile(r"^ {0,3}#(?!#)(.*)$")
_SECTION_LINE = re.compile(r"^ {0,3}#{2,4}\s*(Sources?|Related)\s*(?::\s*)?$", re.IGNORECASE)
_OTHER_HEADING = re.compile(r"^ {0,3}#{1,6}(?:\s|$)")
_LIST_ITEM = re.compile(r"^\s*(?:[0-9]+[.)]|[-*+])\s+(.*)$")
_BARE_URL = re.compile(r"^<?(https?://[^\s<>]+)>?$", re.IGNORECASE)
# "_Context: a, b_", "*Context: a*", "**Context:** a, b", "Context: a", and marks
# mixed or unbalanced as people type them ("*_Context: a*_", "**_Context:**_ a").
_CONTEXT_MARK = re.compile(
    r"(?:([_*]{1,3})\s*)?(?<![^\W_])Contexts?\s*:\s*([_*]{1,3})?", re.IGNORECASE
)
# The common cases, matched at once; each gives exactly what the general code would
# (tests/test_parse_properties.py checks): a link whose text nests no brackets and
# whose target holds no parentheses, and "_Context: a, b_" with nothing after it.
_SIMPLE_LINK = re.compile(r"\[([^\[\]]*)\]\(([^()]*)\)")
_SIMPLE_CONTEXT = re.compile(r"\s*_Context:\s*([^_*\s][^_*]*)_\s*$")
# The emphasis that closes "_Context: ..._": the same run, not inside a word.
_CLOSERS = {mark: re.compile(re.escape(mark) + r"(?![^\W_])") for mark in ("_", "__", "*", "**")}
# Mixed marks ("*_Context: a*_", "_*Context: a_*"), or a run that never comes
# again ("__Context: a**_ more"): the first run of marks not inside a word closes.
_ANY_CLOSER = re.compile(r"[_*]+(?![^\W_])")
# How a complete summary ends (before closing quotes and brackets); a page cut
# inside its summary line most likely ends otherwise.
_SENTENCE_END = tuple(".!?…。")
_CLOSING_MARKS = "\"'”’»)]"


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """What one page may hold. A page over a limit is rejected, with a reason that
    names the limit (as its ``archive.*`` settings key) and the page's number: cut
    short, it would be stored as a different event than the archive holds.

    The defaults are the settings' defaults, far above any page of the sample
    archive or of bench/make_archive.py; one 469 KB page once made 60,000 topics.
    """

    max_topics: int = 200  # archive.max_page_topics
    max_related: int = 200  # archive.max_page_related
    max_title_chars: int = 2000  # archive.max_title_chars


DEFAULT_LIMITS = ParseLimits()


@dataclass(frozen=True, slots=True)
class _Link:
    text: str
    target: str
    rest: str  # what follows the link on the line


@dataclass(slots=True)
class _Item:
    """One list item of a section, possibly wrapped over several lines."""

    section: str  # "source" or "related"
    parts: list[str]
    cut: bool = False  # its last line is the page's last, with no line end: maybe truncated

    @property
    def text(self) -> str:
        return " ".join(self.parts)


def event_id_from_path(path: str) -> str | None:
    """The event id of a page that lives in an archive folder, else ``None``."""
    match = _ARCHIVE_PATH.search(path.replace("\\", "/"))
    if match is None:
        return None
    return _event_id(*match.groups())


def _event_id(year: str, month: str, day: str, slug: str) -> str:
    """The canonical id: two-digit month, day without a leading zero."""
    return f"{year}/{int(month):02d}/{int(day)}/{slug}"


def parse_page(data: bytes | str, path: str, *, limits: ParseLimits = DEFAULT_LIMITS) -> Event:
    """Parse one page. ``path`` names the page in errors and, inside an archive
    folder (``.../news/YYYY/MM/D/slug.md``), gives the event id; elsewhere the id
    comes from the page's Formats line. A page over one of ``limits`` is rejected."""
    path_id = event_id_from_path(path)
    if path_id is not None and path_id.rsplit("/", 1)[1] == "index":
        raise ParseError(path, "a day index page, not an event page")
    text = _decode(data)
    if not text.strip():
        raise ParseError(path, "empty page")
    lines = text.split("\n")
    # A page that does not end with a line end may have been cut inside its last line.
    last_cut = -1 if text.endswith("\n") else len(lines) - 1

    formats_id: str | None = None
    event_date: date | None = None
    story: str | None = None
    title: str | None = None
    section: str | None = None
    items: list[_Item] = []
    item: _Item | None = None  # the item the next line may continue
    inline_sources: tuple[Source, ...] = ()  # named by the summary's inline links

    for index, line in enumerate(lines):
        cut = index == last_cut
        if title is None:
            # Before the summary: Formats line, date, story, then the summary.
            if formats_id is None and (m := _FORMATS_LINE.match(line)):
                formats_id = _formats_id(m.group(1))
                continue
            if event_date is None and (m := _DATE_LINE.match(line)):
                event_date = _valid_date(m.group(1), m.group(2), m.group(3), path)
                continue
            if m := _STORY_LINE.match(line):
                story = story or _clean(m.group(1)) or None
                continue
            if m := _SUMMARY_LINE.match(line):
                title = _clean(m.group(1))
                if not title:
                    raise ParseError(path, "empty summary line")
                if cut and not title.rstrip(_CLOSING_MARKS).endswith(_SENTENCE_END):
                    raise ParseError(path, "truncated page: it ends inside the summary line")
                title, inline_sources = clean_inline_links(title)
                if len(title) > limits.max_title_chars:
                    found = f"a summary of {len(title):,} characters"
                    raise _over_limit(path, found, "max_title_chars", limits.max_title_chars)
            continue
        if "#" in line[:4]:  # cheap test first: most lines are list items
            if m := _SECTION_LINE.match(line):
                section = m.group(1).lower().rstrip("s")  # "source" or "related"
                item = None
                continue
            if _OTHER_HEADING.match(line):
                section = item = None
                continue
        if not line.strip():
            item = None  # a blank line ends an item; the next line starts anew
            continue
        if section is None:
            continue
        if m := _LIST_ITEM.match(line):
            item = _Item(section, [m.group(1).strip()], cut)
            items.append(item)
        elif item is not None:
            # A wrapped item (scrapers wrap long lines): the line continues it.
            item.parts.append(line.strip())
            item.cut = cut

    if event_date is None or title is None:
        if _looks_binary(data):
            raise ParseError(path, "binary data, not a text page")
        if event_date is None:
            raise ParseError(path, "no date line (expected '### [YYYY-MM-D](...)')")
        raise ParseError(path, "no summary line (expected '# <summary>')")

    event_id = path_id or formats_id
    if event_id is None:
        reason = "no event id: no Formats line naming the page, and not in an archive folder"
        raise ParseError(path, f"{reason} (news/YYYY/MM/D/<slug>.md)")

    sources = [s for i in items if i.section == "source" and (s := _source(i)) is not None]
    listed = {s.url for s in sources}
    sources.extend(s for s in inline_sources if s.url not in listed)
    related = [
        r for i in items if i.section == "related" and (r := _related(i, event_date)) is not None
    ]
    unique = _unique_related(related)
    if len(unique) > limits.max_related:
        found = f"{len(unique):,} related events"
        raise _over_limit(path, found, "max_page_related", limits.max_related)
    topics = _topics(story, related)
    if len(topics) > limits.max_topics:
        raise _over_limit(path, f"{len(topics):,} topics", "max_page_topics", limits.max_topics)
    _check_text_lengths(path, story, unique, topics, limits)
    return Event(
        id=event_id,
        date=event_date,
        story=story,
        title=title,
        sources=tuple(sources),
        related=unique,
        topics=topics,
    )


def _check_text_lengths(
    path: str,
    story: str | None,
    related: tuple[Related, ...],
    topics: tuple[Topic, ...],
    limits: ParseLimits,
) -> None:
    """Every text a feed or a page shows is bounded, not only the summary: a story
    or a related title of a megabyte would be repeated in every entry that shows it."""
    if story is not None and len(story) > limits.max_title_chars:
        found = f"a story of {len(story):,} characters"
        raise _over_limit(path, found, "max_title_chars", limits.max_title_chars)
    for item in related:
        if len(item.title) > limits.max_title_chars:
            found = f"a related title of {len(item.title):,} characters"
            raise _over_limit(path, found, "max_title_chars", limits.max_title_chars)
    for topic in topics:
        if len(topic.slug) > MAX_SLUG_CHARS:
            raise ParseError(
                path,
                f"a topic whose slug has {len(topic.slug):,} characters, over the "
                f"{MAX_SLUG_CHARS} a topic URL may hold",
            )


def _over_limit(path: str, found: str, key: str, limit: int) -> ParseError:
    """The rejection of a page over a limit, naming it by its settings key."""
    return ParseError(path, f"{found}, over the limit of {limit:,} (archive.{key})")


def _decode(data: bytes | str) -> str:
    """The page as text with LF line ends, without BOM, controls or invisible
    format characters (none of which a feed may carry or a reader may see)."""
    text, astral = _text(data)
    text = _FORBIDDEN_CHARS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return _FORBIDDEN_ASTRAL.sub("", text) if astral else text


def _text(data: bytes | str) -> tuple[str, bool]:
    """The page decoded, and whether it may hold invisible characters beyond the BMP."""
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        # Invalid bytes (a truncated multibyte character, binary junk) become U+FFFD
        # rather than costing the whole page; a page of pure junk still fails for
        # lack of a date and a summary. Windows editors may save UTF-16 with a BOM.
        if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return raw.decode("utf-16", errors="replace"), True
        # In UTF-8 those characters start with the byte F0 (U+13430 to U+1D17A)
        # or F3 (U+E0001 to U+E007F); a search for a byte costs next to nothing.
        return raw.decode("utf-8", errors="replace"), b"\xf0" in raw or b"\xf3" in raw
    return data, not data.isascii()


def _looks_binary(data: bytes | str) -> bool:
    """Whether a page that failed looks like binary data rather than text: more
    than a tenth of it invalid bytes or control characters. Asked only of a
    rejected page, so that a good page pays for one pass, not two."""
    text = _text(data)[0].replace("\r\n", "\n").replace("\r", "\n")
    junk = len(_CONTROLS.findall(text)) + text.count("\ufffd")
    return junk * 10 > len(text)


def _clean(text: str) -> str:
    """Whitespace runs (any Unicode space, as ``\\s`` in a regex) made one space, trimmed."""
    return " ".join(text.split())


def _valid_date(year: str, month: str, day: str, path: str) -> date:
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        raise ParseError(path, f"impossible date {year}-{month}-{day}") from None


def _formats_id(links: str) -> str | None:
    """The id named by the first archive link of a Formats line."""
    for target in _FORMATS_TARGET.finditer(links):
        if match := _NEWS_TARGET.search(target.group(1)):
            return _event_id(*match.groups())
    return None


def _split_link(item: str, *, strict: bool) -> _Link | None:
    """Split ``[text](target) rest``, where text may nest brackets and the target
    may hold balanced parentheses (``https://en.wikipedia.org/wiki/A_(b)``).

    Unbalanced brackets are guessed around unless ``strict`` (a line that may
    have been cut short, where a guess would keep half a link)."""
    if not item.startswith("["):
        return None
    # Most links nest nothing: one regex match then says what the scan would.
    if simple := _SIMPLE_LINK.match(item):
        return _Link(simple.group(1), simple.group(2).strip(), item[simple.end() :])
    return _scanned_link(item, strict=strict)


def _scanned_link(item: str, *, strict: bool) -> _Link | None:
    """:func:`_split_link` by walking the brackets (``item`` starts with ``[``)."""
    text_end = _closing(item, 0, "[", "]")
    if text_end is None or not item.startswith("(", text_end + 1):
        if strict:
            return None
        # Unbalanced brackets in the text: take the last "](" as the link's middle.
        text_end = item.rfind("](")
        if text_end <= 0:
            return None
    target_start = text_end + 1
    target_end = _closing(item, target_start, "(", ")")
    if target_end is None:
        if strict:
            return None
        target_end = item.rfind(")")
        if target_end <= target_start:
            return None  # the target never closes
    return _Link(
        text=item[1:text_end],
        target=item[target_start + 1 : target_end].strip(),
        rest=item[target_end + 1 :],
    )


_BRACKET_PAIRS = {"[": re.compile(r"[\[\]]"), "(": re.compile(r"[()]")}


def _closing(text: str, start: int, opening: str, closing: str) -> int | None:
    """Index of the bracket closing the one at ``start``, or ``None``.

    Jumps from bracket to bracket with a regex rather than stepping through every
    character: link texts are long and brackets in them are few."""
    depth = 0
    for match in _BRACKET_PAIRS[opening].finditer(text, start):
        if match.group() == opening:
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return match.start()
    return None


def _url(target: str) -> str:
    """The URL of a link target: ``<url>`` unwrapped (its spaces encoded, as a
    URL cannot hold them) and a trailing ``"title"`` removed."""
    if target.startswith("<") and (end := target.find(">")) > 0:
        return "%20".join(target[1:end].split())
    return target.split()[0] if target else ""


def _source(item: _Item) -> Source | None:
    text = item.text
    link = _split_link(text, strict=item.cut)
    if link is None:
        # A bare URL is a source named by itself (but half a URL is no source).
        bare = None if item.cut else _BARE_URL.match(text)
        return Source(name=bare.group(1), url=bare.group(1)) if bare else None
    url = _url(link.target)
    if not url:
        return None
    return Source(name=_clean(link.text) or url, url=url)


def _related(item: _Item, event_date: date) -> Related | None:
    link = _split_link(item.text, strict=item.cut)
    if link is None:
        return None
    target = _NEWS_TARGET.search(_url(link.target))
    if target is None:
        return None  # not an archive page; nothing to relate to
    year, month, day, slug = target.groups()
    if slug == "index":
        return None  # a day's index, not an event
    try:
        related_date = date(int(year), int(month), int(day))
    except ValueError:
        return None
    contexts = _contexts(link.rest, cut=item.cut)
    # The whole link text, trimmed, nested brackets kept, inline links made
    # mentions; their URLs are the related event's to name, on its own page.
    title = clean_inline_links(link.text)[0].strip()
    if contexts is None or not title:
        return None
    return Related(
        id=_event_id(year, month, day, slug),
        date=related_date,
        title=title,
        contexts=contexts,
        kind=RelatedKind.FOLLOW_UP if related_date > event_date else RelatedKind.BACKGROUND,
    )


def _contexts(rest: str, *, cut: bool) -> tuple[str, ...] | None:
    """The comma-separated names of ``_Context: a, b_`` after a related link, or
    ``None`` when the line was cut before they were complete."""
    simple = _SIMPLE_CONTEXT.match(rest)  # the usual " _Context: a, b_"
    body = simple.group(1) if simple else _context_body(rest, cut=cut)
    if body is None:
        return None
    if not body:
        return ()
    names: dict[str, str] = {}
    for part in _clean(body).strip("_*").split(","):
        if name := _clean(part):
            names.setdefault(slugify(name) or name, name)  # one per slug, first spelling
    return tuple(names.values())


def _context_body(rest: str, *, cut: bool) -> str | None:
    """What the names of the Context mark in ``rest`` are read from: ``""`` when
    there is no mark, ``None`` when the line was cut before the names were whole."""
    mark = _CONTEXT_MARK.search(rest)
    if mark is None:
        # Nothing, or a line cut inside the mark itself ("_Cont").
        return None if cut and rest.strip() else ""
    body = rest[mark.end() :]
    opening, label_closing = mark.group(1), mark.group(2)
    closing = None
    # Not "**Context:** a" (nor "*_Context:_* a"), where the label's marks close.
    if opening and label_closing not in (opening, opening[::-1]):
        same = _CLOSERS.get(opening)
        closing = (same and same.search(body)) or _ANY_CLOSER.search(body)
    if closing is not None:
        return body[: closing.start()]  # what follows the closing emphasis is not a name
    return None if cut else body  # cut: nothing shows that the last name is whole


def _unique_related(related: list[Related]) -> tuple[Related, ...]:
    """One related entry per event id, the first one listed."""
    seen: dict[str, Related] = {}
    for entry in related:
        seen.setdefault(entry.id, entry)
    return tuple(seen.values())


def _topics(story: str | None, related: list[Related]) -> tuple[Topic, ...]:
    """The story, then every context of the Related list, one per slug."""
    names = [story] if story else []
    names.extend(context for r in related for context in r.contexts)
    topics: dict[str, Topic] = {}
    for name in names:
        slug = slugify(name)
        if slug and slug not in topics:
            topics[slug] = Topic(name=name, slug=slug)
    return tuple(topics.values())
