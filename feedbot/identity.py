"""Event identity across rewording and removal (README: "Identity"): pure, no I/O.

The archive names a page after its text, so a reworded event leaves its old page
and appears under a new one. This module decides, from what a poll read and what
the store holds, which stored events left the archive (:func:`departures`), and
which new pages are a departed event under a new path (:func:`match_successors`).
:mod:`feedbot.ingest` asks the store for the inputs and writes the outcome.

An old and a new page are the same event when

- their dates are at most one day apart and they cite at least one same source
  URL (compared as written, surrounding spaces aside), or
- they tell the same story (equal, non-empty) and their titles are nearly equal:
  :func:`title_similarity` at least :data:`TITLE_THRESHOLD`.

Each departed event has at most one successor and each new page at most one
predecessor. Qualifying pairs are taken best first: the higher title similarity,
then the nearer dates, then the smaller old id, then the smaller new id; so the
outcome does not depend on the order of the inputs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from difflib import SequenceMatcher

from feedbot.model import Event, EventRecord

# Titles at least this similar (see title_similarity) are the same event's, when
# the story is the same. A rewording that changes a few words of a sentence of
# 15-40 words (a figure, a spelling, a clause) scores 0.8 to 0.98; two different
# events of one story share its phrasing but not their facts: the 395 pairs of
# events of one story in the sample archive score 0.58 at most.
TITLE_THRESHOLD = 0.8
_NEAR = timedelta(days=1)
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Page:
    """What identity compares of an event: its id (the kept id of a stored event,
    the page's id of a new one), date, story, title and source URLs."""

    id: str
    date: date
    story: str | None
    title: str
    sources: frozenset[str]

    @classmethod
    def of(cls, event: Event) -> Page:
        return cls(
            id=event.id,
            date=event.date,
            story=event.story,
            title=event.title,
            sources=frozenset(s.url.strip() for s in event.sources if s.url.strip()),
        )


@dataclass(frozen=True, slots=True)
class Listed:
    """A stored event whose page lies in a day that a poll listed completely."""

    id: str  # the kept id
    path: str  # the id of the page it is read from now (its id, or an alias)
    missing_since: datetime | None
    deleted_at: datetime | None


@dataclass(frozen=True, slots=True)
class Known:
    """What the store knows of a page id: the event it is (by its id or an alias)."""

    id: str  # the kept id
    content_hash: str
    path: str  # the id of the page the event is read from now
    missing_since: datetime | None = None
    deleted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Departures:
    gone: tuple[str, ...]  # kept ids of live events whose page left the listing
    back: tuple[str, ...]  # kept ids of missing or removed events whose page is listed again


def day_prefix(day: str) -> str | None:
    """The id prefix (``"2007/07/9/"``) of the pages of day folder ``day``, or None
    when the folder is not spelled as an event id spells it (``2007/7/09``): its
    pages' ids may share a prefix with another folder's, so its listing alone is
    not every page of that prefix."""
    parts = day.split("/")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        return None
    year, month, dd = parts
    canonical = f"{year}/{int(month):02d}/{int(dd)}"
    return f"{day}/" if canonical == day and len(year) == 4 else None


def page_id(path: str) -> str:
    """The id of the page at archive path ``news/2007/07/9/<slug>.md``."""
    return path.removeprefix("news/").removesuffix(".md")


def departures(listed: Iterable[Listed], present: Iterable[str]) -> Departures:
    """Which stored events left, and which came back, given every stored event
    whose page lies in the listed days and the ids of every page present there.

    A live event whose page is not present is gone; a missing or removed one
    whose page is present is back. Everything else is as it was."""
    here = set(present)
    gone: list[str] = []
    back: list[str] = []
    for event in listed:
        if event.path in here:
            if event.missing_since is not None or event.deleted_at is not None:
                back.append(event.id)
        elif event.deleted_at is None and event.missing_since is None:
            gone.append(event.id)
    return Departures(tuple(sorted(gone)), tuple(sorted(back)))


def normal_title(title: str) -> str:
    return _SPACES.sub(" ", title).strip().casefold()


def title_similarity(a: str, b: str) -> float:
    """How alike two titles are, from 0 to 1: :class:`difflib.SequenceMatcher`'s
    ratio (twice the matched characters over both lengths) of the titles with
    whitespace collapsed and case folded; without the junk heuristic, so the
    result depends on the two texts alone."""
    return SequenceMatcher(None, normal_title(a), normal_title(b), autojunk=False).ratio()


def _score(old: Page, new: Page) -> float | None:
    """The similarity of a qualifying pair, or None when the two are not the same
    event by either rule."""
    near = abs(old.date - new.date) <= _NEAR
    cited = near and not old.sources.isdisjoint(new.sources)
    same_story = bool(old.story) and old.story == new.story
    if not cited and not same_story:
        return None
    if not cited:
        # Bounds first: most pairs of one story are far apart.
        a, b = normal_title(old.title), normal_title(new.title)
        matcher = SequenceMatcher(None, a, b, autojunk=False)
        if matcher.real_quick_ratio() < TITLE_THRESHOLD or matcher.quick_ratio() < TITLE_THRESHOLD:
            return None
        similarity = matcher.ratio()
        return similarity if similarity >= TITLE_THRESHOLD else None
    return title_similarity(old.title, new.title)


def match_successors(gone: Sequence[Page], new: Sequence[Page]) -> dict[str, str]:
    """Pair departed events with new pages that are the same event (see the module
    docstring): new page id -> the departed event's id."""
    if not gone or not new:
        return {}
    by_source: dict[str, list[Page]] = {}
    by_story: dict[str, list[Page]] = {}
    for old in gone:
        for url in old.sources:
            by_source.setdefault(url, []).append(old)
        if old.story:
            by_story.setdefault(old.story, []).append(old)
    pairs: list[tuple[float, int, str, str]] = []
    for page in new:
        candidates = {old.id: old for url in page.sources for old in by_source.get(url, ())}
        if page.story:
            candidates.update((old.id, old) for old in by_story.get(page.story, ()))
        for old in candidates.values():
            score = _score(old, page)
            if score is not None:
                pairs.append((-score, abs((old.date - page.date).days), old.id, page.id))
    matched: dict[str, str] = {}
    taken: set[str] = set()
    for *_rank, old_id, new_id in sorted(pairs):
        if new_id not in matched and old_id not in taken:
            matched[new_id] = old_id
            taken.add(old_id)
    return matched


@dataclass(frozen=True, slots=True)
class Decision:
    new: tuple[EventRecord, ...]
    changed: tuple[EventRecord, ...]
    unchanged: tuple[str, ...]  # their ids


def decide(parsed: Iterable[EventRecord], known_hashes: Mapping[str, str]) -> Decision:
    """Split ``parsed`` into new, changed and unchanged events, by their ids and
    the content hashes the store holds.

    The same id twice in one batch keeps the last one read.
    """
    latest = {record.id: record for record in parsed}
    new: list[EventRecord] = []
    changed: list[EventRecord] = []
    unchanged: list[str] = []
    for record in latest.values():
        known = known_hashes.get(record.id)
        if known is None:
            new.append(record)
        elif known != record.content_hash:
            changed.append(record)
        else:
            unchanged.append(record.id)
    return Decision(tuple(new), tuple(changed), tuple(unchanged))


@dataclass(frozen=True, slots=True)
class Plan:
    """What one batch does to the store (Store.write_batch's arguments)."""

    new: tuple[EventRecord, ...]  # events never seen: event.created
    changed: tuple[EventRecord, ...]  # under their kept ids, successors included
    unchanged: tuple[str, ...]  # kept ids
    moved: Mapping[str, str]  # page id -> kept id: the page each event is read from now
    missing: frozenset[str]  # kept ids whose page left a complete listing
    present: frozenset[str]  # kept ids of missing or removed events seen again
    renamed: int = 0  # new pages that are a departed event under a new path


def plan(
    parsed: Sequence[EventRecord],
    known: Mapping[str, Known],
    departed: Departures,
    candidates: Mapping[str, tuple[Event, str]],
) -> Plan:
    """Decide one batch: ``parsed`` pages, what the store ``known`` of their ids,
    what left or came back in the batch's complete listings (:func:`departures`),
    and the events a new page may succeed (``candidates``: id -> (event, content
    hash); the ``departed.gone`` ones and those missing since an earlier poll).

    A page read under an alias is its kept event; a new page matched to a
    candidate (:func:`match_successors`) is that event under a new path: changed
    (or unchanged, when only its path moved), never new. A gone event that no page
    took over is missing."""
    records = [with_id(r, known[r.id].id) if r.id in known else r for r in parsed]
    decision = decide(records, {k.id: k.content_hash for k in known.values()})
    seen = {k.id for k in known.values()}
    moved = {page: k.id for page, k in known.items() if k.path != page}
    present = {k.id for k in known.values() if k.missing_since or k.deleted_at}
    present.update(departed.back)
    gone = set(departed.gone) - seen
    open_ = {i: c for i, c in candidates.items() if i not in seen and i not in present}
    matches = match_successors(
        [Page.of(event) for event, _digest in open_.values()],
        [Page.of(record.to_event()) for record in decision.new] if open_ else [],
    )
    new = [record for record in decision.new if record.id not in matches]
    changed = list(decision.changed)
    unchanged = list(decision.unchanged)
    for record in decision.new:
        kept = matches.get(record.id)
        if kept is None:
            continue
        moved[record.id] = kept
        present.add(kept)
        successor = with_id(record, kept)
        if successor.content_hash == open_[kept][1]:
            unchanged.append(kept)
        else:
            changed.append(successor)
    return Plan(
        new=tuple(new),
        changed=tuple(changed),
        unchanged=tuple(unchanged),
        moved=moved,
        missing=frozenset(gone - present),
        present=frozenset(present),
        renamed=len(matches),
    )


def with_id(record: EventRecord, event_id: str) -> EventRecord:
    """``record`` as the event kept under ``event_id`` (its page read under another)."""
    if record.id == event_id:
        return record
    return EventRecord.of(replace(record.to_event(), id=event_id))
