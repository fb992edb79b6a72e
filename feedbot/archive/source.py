"""What every archive source (a local folder, an http(s) base URL) offers the ingest pipeline.

A source walks the archive and yields batches of raw pages that may be new or
changed, together with *marks*: opaque checkpoint entries (a day folder's
fingerprint, a page's ETag) that the pipeline stores in the same transaction as
the batch's events and hands back on the next poll. A source never parses and
never touches the store, so a crash between fetching and storing only means the
same pages are offered again.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from feedbot.errors import FeedbotError, ParseError

# Longest file name shown in a page path once escaped (a name holds up to 255
# bytes, each escaped to up to four characters; the store keeps paths of 600).
_SHOWN_NAME = 240


class PageChanging(FeedbotError):
    """A page changed between its listing and its read: it is being written, so it
    is left for a later poll instead of being taken half-written."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path}: changed while it was being read")
        self.path = path


def name_problem(name: str) -> str | None:
    """Why a page file called ``name`` (as :func:`os.fsdecode` gives it) cannot be
    a page, or None. Its name becomes the event id and a link in every feed: it
    must be text, and text that a link and a log line can carry."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "the file name is not valid UTF-8"
    for char in name:
        if unicodedata.category(char) == "Cc":
            return f"the file name holds a control character (U+{ord(char):04X})"
    return None


def shown_name(name: str, *, limit: int | None = _SHOWN_NAME) -> str:
    """``name`` safe to print and to store: bytes that are not UTF-8 as ``\\xe9``,
    control characters as ``\\n``, ``\\x7f``; a result longer than ``limit`` is cut."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    text = "".join(
        repr(char)[1:-1] if unicodedata.category(char) == "Cc" else char for char in text
    )
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class RawPage:
    """One event page. ``path`` is relative to the archive root
    (``news/2007/07/9/<slug>.md``); it names the page in errors and gives its id.

    Its bytes are ``body`` (fetched), or the local ``file``, which whoever parses
    the page reads: on a large poll that is a parse worker, so the daemon process
    never handles the bytes of a first ingest at all.
    """

    path: str
    body: bytes = b""
    file: str | None = None
    max_bytes: int = 0  # with ``file``: a larger page is refused
    size: int = -1  # with ``file``: its size when listed (-1: unknown)
    day: str = ""  # the day key (``"2007/07/9"``) whose mark covers the page, if any

    def read(self) -> bytes:
        """The page's bytes; a file that cannot be read, or is too large, raises
        :class:`~feedbot.errors.ParseError` with the reason, and one whose size is
        no longer the listed one raises :class:`PageChanging`."""
        if self.file is None:
            return self.body
        try:
            with open(self.file, "rb") as page:
                body = page.read(self.max_bytes + 1)
        except OSError as exc:
            raise ParseError(self.path, f"cannot read: {exc.strerror or exc}") from None
        if len(body) > self.max_bytes:
            raise ParseError(self.path, f"larger than {self.max_bytes} bytes")
        if self.size >= 0 and len(body) != self.size:
            raise PageChanging(self.path)
        return body


@dataclass(frozen=True, slots=True)
class PageProblem:
    """A page that could not be fetched or read at all (not a parse failure)."""

    path: str
    reason: str


@dataclass(slots=True)
class PollBatch:
    pages: list[RawPage] = field(default_factory=list)
    problems: list[PageProblem] = field(default_factory=list)
    # Checkpoint entries to persist once ``pages`` are stored: key -> opaque value.
    marks: dict[str, str] = field(default_factory=dict)
    # Day key -> its key in ``marks``: a day holding a page that changed while it was
    # read keeps its old mark, so the next poll looks at it again.
    day_marks: dict[str, str] = field(default_factory=dict)
    # Days holding a page still being written (modified within the settle time), and
    # when it will have settled: the page is not offered and the day's mark not moved.
    unsettled: dict[str, datetime] = field(default_factory=dict)
    # Days whose every page the source saw (a day key -> the path of each page in
    # it, as RawPage.path spells them), given no later than the batches of their
    # pages: a stored event of such a day whose page is not there has left the
    # archive. Pages rejected or still being written are there. A day the source
    # could not read completely is left out: its absence is no evidence.
    listed: dict[str, frozenset[str]] = field(default_factory=dict)


class ArchiveSource(Protocol):
    """A readable archive. ``poll`` raises :class:`~feedbot.errors.ArchiveError`
    when the archive cannot be read at all (missing folder, unreachable host)."""

    @property
    def description(self) -> str:
        """Where the archive is, for logs and messages (a path or a URL)."""
        ...

    def poll(
        self, marks: Mapping[str, str], *, days: Collection[str] | None = None, full: bool = True
    ) -> AsyncIterator[PollBatch]:
        """Yield batches of pages that may be new or changed since ``marks``.

        ``days`` (``"2007/07/9"`` keys) limits the walk to those day folders, for
        a watch that already knows where something changed. ``full=False`` allows
        a lighter walk that may miss what a watch sees (a source may ignore it).
        """
        ...

    async def aclose(self) -> None: ...
