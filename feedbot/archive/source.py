"""What every archive source (a local folder, an http(s) base URL) offers the ingest pipeline.

A source walks the archive and yields batches of raw pages that may be new or
changed, together with *marks*: opaque checkpoint entries (a day folder's
fingerprint, a page's ETag) that the pipeline stores in the same transaction as
the batch's events and hands back on the next poll. A source never parses and
never touches the store, so a crash between fetching and storing only means the
same pages are offered again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from feedbot.errors import ParseError


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

    def read(self) -> bytes:
        """The page's bytes; a file that cannot be read, or is too large, raises
        :class:`~feedbot.errors.ParseError` with the reason."""
        if self.file is None:
            return self.body
        try:
            with open(self.file, "rb") as page:
                body = page.read(self.max_bytes + 1)
        except OSError as exc:
            raise ParseError(self.path, f"cannot read: {exc.strerror or exc}") from None
        if len(body) > self.max_bytes:
            raise ParseError(self.path, f"larger than {self.max_bytes} bytes")
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


class ArchiveSource(Protocol):
    """A readable archive. ``poll`` raises :class:`~feedbot.errors.ArchiveError`
    when the archive cannot be read at all (missing folder, unreachable host)."""

    @property
    def description(self) -> str:
        """Where the archive is, for logs and messages (a path or a URL)."""
        ...

    def poll(
        self, marks: Mapping[str, str], *, days: Collection[str] | None = None
    ) -> AsyncIterator[PollBatch]:
        """Yield batches of pages that may be new or changed since ``marks``.

        ``days`` (``"2007/07/9"`` keys) limits the walk to those day folders, for
        a watch that already knows where something changed.
        """
        ...

    async def aclose(self) -> None: ...
