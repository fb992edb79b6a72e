"""Full-text search: what a word is, what the index holds of an event, what a query asks.

This module owns the one normalisation that both sides of a search share
(:func:`words_of`): the index holds :func:`search_document` (with the topics'
tokens, :func:`index_document`) and a query is read by :meth:`SearchQuery.parse`,
so a word matches exactly when both spell it the same after it. Neither database
tokenises anything itself (the store hands them these words as they are), so
SQLite and PostgreSQL match alike whatever their locale or Unicode tables.

Pure: no I/O, no SQLAlchemy, only the standard library and feedbot.errors.
feedbot.model imports it (an :class:`~feedbot.model.EventRecord` carries what the
index holds of the event, computed where the page is parsed), so it must not
import feedbot.model.

Semantics: an event matches when it holds every word of the query as a whole
word (no stemming, no prefixes), and, when topics are given, has at least one of
them.

The topic list's filter (``/topics?q=``, :class:`TopicFilter`) reads its words
the same way, and matches them against :func:`topic_words` as word beginnings:
a name, not an event's text, and typed to find it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from feedbot.errors import RequestError

MAX_QUERY_CHARS = 200
MAX_QUERY_WORDS = 12
MAX_QUERY_TOPICS = 10
MAX_DOCUMENT_CHARS = 65_536  # of one event's search_document (see there)
# model.MAX_SLUG_CHARS (not imported: feedbot.model imports this module).
_MAX_SLUG_CHARS = 200
_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_TOO_LONG = re.compile(rf"\S{{{MAX_QUERY_CHARS + 1}}}")  # a word no query can hold


def words_of(text: str) -> list[str]:
    """The words of ``text``, normalised: compatibility-decomposed (NFKD), with
    combining marks such as accents dropped (``"Zürich"`` -> ``"zurich"``),
    case-folded (``"Straße"`` -> ``"strasse"``), split on everything that is not
    a letter or digit (underscore included). Deterministic: the index and the
    queries both go through it.

    Marks that are not diacritics (the vowel signs of Devanagari or Thai, which
    have no canonical combining class) stay inside their word: dropping them
    or splitting on them would cut such words apart."""
    return text.translate(_FOLD).split()


def _fold(char: str) -> str:
    """What :func:`words_of` makes of one character: its normalised letters, or a
    space where it separates words. Every step works character by character
    (NFKD only reorders the combining marks that are dropped anyway; case folding
    maps each character alone), so mapping each character is the same as
    normalising the whole text, and the result of each is kept."""
    decomposed = unicodedata.normalize("NFKD", char)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    # Case folding may give back a letter that decomposes ("ΐ" folds to one), so
    # its marks are dropped once more.
    if not unicodedata.is_normalized("NFKD", bare):
        decomposed = unicodedata.normalize("NFKD", bare)
        bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return "".join(c if c.isalnum() or unicodedata.category(c)[0] == "M" else " " for c in bare)


class _FoldTable(dict[int, str]):
    """The table ``str.translate`` maps through: each character's :func:`_fold`,
    worked out the first time it is met (C-speed lookups after that, twice as
    fast as splitting with a regular expression and normalising the words that
    need it). At most ``_FOLDS_KEPT`` characters are kept, so a page made of
    every code point there is cannot grow it without bound."""

    def __missing__(self, code: int) -> str:
        folded = _fold(chr(code))
        if len(self) < _FOLDS_KEPT:
            self[code] = folded
        return folded


_FOLDS_KEPT = 1 << 16
_FOLD = _FoldTable()
# _FOLD of the ASCII characters, as a bytes.translate table.
_ASCII_FOLD = bytes(ord(_fold(chr(code))) for code in range(128)) + bytes(128)


def search_document(
    title: str, story: str | None, topic_names: Iterable[str], source_names: Iterable[str]
) -> str:
    """What the index holds of an event: the distinct words of its title, story,
    topic names and source names, in that order, joined by single spaces. Cheap
    enough to compute for every page where it is parsed.

    A word longer than a whole query is left out: no query can ask for it, and
    PostgreSQL refuses a lexeme over 2 KB. So are the words past the first
    ``MAX_DOCUMENT_CHARS`` characters, which no real page reaches: PostgreSQL
    refuses a tsvector over 1 MB, and a page of nothing but distinct words could
    make one."""
    texts = (title, story or "", *topic_names, *source_names)
    # A text in ASCII (most titles and source names) goes through a byte table:
    # the same words, in a sixth of the time str.translate takes over it.
    folded = [
        text.encode().translate(_ASCII_FOLD).decode() if text.isascii() else text.translate(_FOLD)
        for text in texts
    ]
    document = " ".join(dict.fromkeys(" ".join(folded).split()))  # distinct, first first
    if _TOO_LONG.search(document):  # rare: looked for at C speed first
        document = " ".join(w for w in document.split() if len(w) <= MAX_QUERY_CHARS)
    if len(document) > MAX_DOCUMENT_CHARS:
        document = document[: MAX_DOCUMENT_CHARS + 1].rpartition(" ")[0]
    return document


def topic_token(slug: str) -> str:
    """The token that stands for the topic ``slug`` in the index, beside the
    words: ``"§cote§d§ivoire"`` for ``cote-d-ivoire``. "§" is neither a letter,
    a digit nor a mark, so no word of :func:`words_of` holds it: no word a user
    types can match a topic's token, and a topic filter is one more term of the
    full-text query (any of the topics' tokens), which both indexes intersect
    with the words far faster than a join with ``event_topics`` would."""
    return _TOPIC_MARK + slug.replace("-", _TOPIC_MARK)


def index_document(document: str, topic_slugs: Iterable[str]) -> str:
    """What the index holds of an event: its :func:`search_document` and the
    :func:`topic_token` of each of its topics."""
    return " ".join((document, *map(topic_token, topic_slugs))).strip()


_TOPIC_MARK = "§"


class BadQuery(RequestError):
    """A search query that cannot be run: ``field`` is ``"q"`` or ``"topic"``."""


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A normalised query: distinct words in the order given (each is a
    :func:`words_of` word), and topic slugs, distinct and sorted (any of them).
    Build one with :meth:`parse`."""

    words: tuple[str, ...]
    topics: tuple[str, ...] = ()

    @classmethod
    def parse(cls, q: str, topics: Sequence[str] = ()) -> SearchQuery:
        """The query of the user's text ``q`` and topic slugs ``topics``; raises
        :class:`BadQuery` saying what is wrong with them."""
        stripped = q.strip()
        if not stripped:
            raise BadQuery("q", "the query is empty")
        if len(stripped) > MAX_QUERY_CHARS:
            raise BadQuery("q", f"the query is longer than {MAX_QUERY_CHARS} characters")
        words = tuple(dict.fromkeys(words_of(stripped)))
        if not words:
            raise BadQuery("q", "the query has no letters or digits")
        if len(words) > MAX_QUERY_WORDS:
            raise BadQuery("q", f"the query has more than {MAX_QUERY_WORDS} words")
        slugs = set()
        for topic in topics:
            if len(topic) > _MAX_SLUG_CHARS or not _SLUG.fullmatch(topic):
                raise BadQuery("topic", f"{_quoted(topic)} is not a topic slug")
            slugs.add(topic)
        if len(slugs) > MAX_QUERY_TOPICS:
            raise BadQuery("topic", f"more than {MAX_QUERY_TOPICS} topics")
        return cls(words, tuple(sorted(slugs)))

    @property
    def searchable(self) -> bool:
        """Whether the query has words, each a normalised word (:func:`words_of`
        gives it back alone), and topics that are slugs: always, for a query
        :meth:`parse` made. The store matches nothing for one that is not
        (built by hand), so that nothing else ever reaches the query syntax."""
        return (
            bool(self.words)
            and all(words_of(word) == [word] for word in self.words)
            and all(_SLUG.fullmatch(topic) for topic in self.topics)
        )

    @property
    def text(self) -> str:
        """The normalised query: its words joined by one space."""
        return " ".join(self.words)

    @property
    def key(self) -> str:
        """A stable, ASCII name of the normalised query (same words in the same
        order and the same topics: the same key), for feed ids and cache keys:
        ``q=zurich+floods&topic=europe&topic=weather``."""
        return urlencode([("q", self.text), *(("topic", slug) for slug in self.topics)])


def _quoted(value: str) -> str:
    """``value`` in double quotes for a message, cut short when it is long."""
    shown = value if len(value) <= 40 else value[:40] + "…"
    return f'"{shown}"'


# -- the topic list's filter ------------------------------------------------------


def topic_words(name: str, slug: str) -> str:
    """What the topic list's filter matches of a topic: the distinct words of its
    name (:func:`words_of`), then those of its slug that the name lacks (the
    transliteration: ``moskva`` for "Москва"), joined by single spaces."""
    return " ".join(dict.fromkeys((*words_of(name), *slug.split("-"))))


@dataclass(frozen=True, slots=True)
class TopicFilter:
    """What the topic list (``/topics?q=``) is filtered by: topics with, for each
    of ``words``, a word of their name or slug that begins with it (each a
    :func:`words_of` word, so case and accents aside). No words: every topic.
    Build one with :meth:`parse`."""

    words: tuple[str, ...] = ()

    @classmethod
    def parse(cls, q: str) -> TopicFilter:
        """The filter of the user's text ``q``: its words, or none for a text
        with no letter or digit (the whole list); raises :class:`BadQuery`
        (``field`` ``"q"``) for a text longer than a query may be or with more
        words."""
        stripped = q.strip()
        if len(stripped) > MAX_QUERY_CHARS:
            raise BadQuery("q", f"the filter is longer than {MAX_QUERY_CHARS} characters")
        words = tuple(dict.fromkeys(words_of(stripped)))
        if len(words) > MAX_QUERY_WORDS:
            raise BadQuery("q", f"the filter has more than {MAX_QUERY_WORDS} words")
        return cls(words)

    @property
    def text(self) -> str:
        """The normalised filter: its words joined by one space ("" for none)."""
        return " ".join(self.words)
