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


@dataclass(frozen=True, slots=True)
class RawPage:
    """One event page as fetched. ``path`` is relative to the archive root
    (``news/2007/07/9/<slug>.md``); it names the page in errors and gives its id."""

    path: str
    body: bytes


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
