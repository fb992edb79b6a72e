"""Event identity, pure: which stored events left, which new page succeeds which,
and the plan of one batch (feedbot.identity)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

import pytest

from feedbot.identity import (
    TITLE_THRESHOLD,
    Departures,
    Known,
    Listed,
    Page,
    day_prefix,
    departures,
    match_successors,
    plan,
    title_similarity,
)
from feedbot.model import Event, EventRecord, Source

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
D = date(2007, 7, 9)
TITLE = (
    "Lal Masjid siege: An attempt to negotiate a peaceful end to the seven-day standoff "
    "at Islamabad's Red Mosque ends without any progress."
)
REWORDED = (
    "Lal Masjid siege: An attempt to negotiate a peaceful end to the seven-day stand-off "
    "at Islamabad's Red Mosque ends without progress."
)


def page(
    pid: str,
    day: date = D,
    *,
    story: str | None = None,
    title: str = "Something happens.",
    sources: tuple[str, ...] = (),
) -> Page:
    return Page(pid, day, story, title, frozenset(sources))


def event(
    eid: str,
    day: date = D,
    *,
    story: str | None = None,
    title: str = "Something happens.",
    sources: tuple[str, ...] = (),
) -> Event:
    return Event(
        id=eid,
        date=day,
        story=story,
        title=title,
        sources=tuple(Source("Example", url) for url in sources),
    )


def record(eid: str, **kwargs: object) -> EventRecord:
    return EventRecord.of(event(eid, **kwargs))  # type: ignore[arg-type]


# -- day listings -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "prefix"),
    [
        ("2007/07/9", "2007/07/9/"),
        ("2007/07/10", "2007/07/10/"),
        ("2007/07/09", None),  # the ids of its pages say 2007/07/9
        ("2007/7/9", None),
        ("07/07/9", None),
        ("2007/07/x", None),
        ("2007/07", None),
    ],
)
def test_day_prefix_only_for_folders_spelled_as_ids_spell_them(
    day: str, prefix: str | None
) -> None:
    assert day_prefix(day) == prefix


def test_departures_gone_when_live_and_unlisted_back_when_missing_or_removed_and_listed() -> None:
    listed = [
        Listed("d/a", "d/a", None, None),  # listed, live: as it was
        Listed("d/b", "d/b", None, None),  # not listed, live: gone
        Listed("d/c", "d/c", T0, None),  # not listed, missing already: as it was
        Listed("d/d", "d/d", T0, None),  # listed again, was missing: back
        Listed("d/e", "d/e", T0, T0),  # listed again, was removed: back
        Listed("d/f", "d/f", T0, T0),  # not listed, removed: as it was
        Listed("d/g", "d/g-new", None, None),  # read from an alias that is listed
        Listed("d/h", "d/h-new", None, None),  # its alias is not listed: gone
    ]
    found = departures(listed, {"d/a", "d/d", "d/e", "d/g-new", "d/h"})
    assert found == Departures(gone=("d/b", "d/h"), back=("d/d", "d/e"))


# -- matching ------------------------------------------------------------------------


def test_title_similarity_is_case_and_space_blind_and_documented_values() -> None:
    assert title_similarity("A  dam\tBURSTS", "a dam bursts") == 1.0
    assert title_similarity(TITLE, REWORDED) >= 0.95
    assert title_similarity("A dam bursts.", "Floods cut off the capital.") < 0.5


def test_a_shared_source_within_a_day_is_the_same_event() -> None:
    old = page("2007/07/9/old", sources=("https://a.example/1", "https://b.example/2"))
    for day in (date(2007, 7, 8), D, date(2007, 7, 10)):
        new = page(
            "2007/07/9/new", day, title="Wholly other words", sources=("https://b.example/2",)
        )
        assert match_successors([old], [new]) == {"2007/07/9/new": "2007/07/9/old"}


def test_a_shared_source_two_days_apart_is_not() -> None:
    old = page("2007/07/9/old", sources=("https://a.example/1",))
    new = page("2007/07/11/new", date(2007, 7, 11), sources=("https://a.example/1",))
    assert match_successors([old], [new]) == {}


def test_no_shared_source_and_no_story_is_not() -> None:
    old = page("2007/07/9/old", title=TITLE, sources=("https://a.example/1",))
    new = page("2007/07/9/new", title=TITLE, sources=("https://a.example/2",))
    assert match_successors([old], [new]) == {}


def test_same_story_and_nearly_equal_title_is_the_same_event_at_any_date() -> None:
    old = page("2007/07/9/old", story="Lal Masjid siege", title=TITLE)
    new = page("2007/07/20/new", date(2007, 7, 20), story="Lal Masjid siege", title=REWORDED)
    assert match_successors([old], [new]) == {"2007/07/20/new": "2007/07/9/old"}


def test_title_threshold_decides_within_a_story() -> None:
    base = "Forces storm the Red Mosque in Islamabad after an eight-day siege."
    close = "Forces storm the Red Mosque in Islamabad after an eight day siege!"
    far = "Talks with the clerics at the Red Mosque in Islamabad fail again."
    assert title_similarity(base, close) >= TITLE_THRESHOLD > title_similarity(base, far)
    old = page("d/old", story="Siege", title=base)
    assert match_successors([old], [page("d/new", story="Siege", title=close)]) == {
        "d/new": "d/old"
    }
    assert match_successors([old], [page("d/new", story="Siege", title=far)]) == {}
    # The same title in another story (or none) is not enough.
    assert match_successors([old], [page("d/new", story="Other", title=base)]) == {}
    assert match_successors([page("d/old", title=base)], [page("d/new", title=base)]) == {}


def test_ties_go_to_the_best_title_then_the_nearest_date_then_the_smallest_id() -> None:
    src = ("https://a.example/1",)
    new = page("2007/07/9/new", title="Talks fail again.", sources=src)
    # Best title similarity first, whatever the date.
    worse = page("2007/07/9/a", title="Something else entirely.", sources=src)
    better = page("2007/07/8/z", date(2007, 7, 8), title="Talks fail again!", sources=src)
    assert match_successors([worse, better], [new]) == {new.id: better.id}
    # Same similarity: the nearest date.
    near = page("2007/07/9/z", title="Talks fail", sources=src)
    far = page("2007/07/10/a", date(2007, 7, 10), title="Talks fail", sources=src)
    assert match_successors([far, near], [new]) == {new.id: near.id}
    # Same similarity and distance: the smallest id.
    first = page("2007/07/9/a", title="Talks fail", sources=src)
    second = page("2007/07/9/b", title="Talks fail", sources=src)
    assert match_successors([second, first], [new]) == {new.id: first.id}


def test_matching_is_one_to_one_and_independent_of_input_order() -> None:
    src = ("https://a.example/1",)
    gone = [page(f"d/old{i}", title=f"Event number {i} happens.", sources=src) for i in range(5)]
    new = [page(f"d/new{i}", title=f"Event number {i} happens!", sources=src) for i in range(4)]
    expected = {f"d/new{i}": f"d/old{i}" for i in range(4)}
    shuffler = random.Random(7)
    for _ in range(10):
        shuffler.shuffle(gone)
        shuffler.shuffle(new)
        assert match_successors(gone, new) == expected


# -- one batch -----------------------------------------------------------------------


def test_plan_a_new_page_that_succeeds_a_gone_one_keeps_the_first_id() -> None:
    old = event("2007/07/9/old", title=TITLE, sources=("https://a.example/1",))
    stored = EventRecord.of(old)
    new = record("2007/07/9/new", title=REWORDED, sources=("https://a.example/1",))
    result = plan(
        [new],
        {},
        Departures(gone=(old.id,), back=()),
        {old.id: (old, stored.content_hash)},
    )
    assert result.new == ()
    assert [r.id for r in result.changed] == [old.id]
    assert result.changed[0].title == REWORDED
    assert result.moved == {new.id: old.id}
    assert result.missing == frozenset()
    assert result.renamed == 1


def test_plan_a_gone_page_without_successor_is_missing_and_a_new_one_is_new() -> None:
    old = event("2007/07/9/old", title="A dam bursts.", sources=("https://a.example/1",))
    new = record("2007/07/9/new", title="Floods cut off the capital.")
    result = plan(
        [new],
        {},
        Departures(gone=(old.id,), back=()),
        {old.id: (old, EventRecord.of(old).content_hash)},
    )
    assert [r.id for r in result.new] == [new.id]
    assert result.missing == {old.id}
    assert result.moved == {}


def test_plan_a_page_read_under_its_alias_is_its_kept_event_unchanged() -> None:
    kept = record("2007/07/9/old", title=REWORDED)
    again = record("2007/07/9/new", title=REWORDED)
    known = {again.id: Known(kept.id, kept.content_hash, again.id)}
    result = plan([again], known, Departures((), ()), {})
    assert (result.new, result.changed, len(result.unchanged)) == ((), (), 1)
    assert result.moved == {}


def test_plan_a_removed_or_missing_event_seen_again_is_present() -> None:
    a, b = record("d/a"), record("d/b")
    known = {
        a.id: Known(a.id, a.content_hash, a.id, missing_since=T0),
        b.id: Known(b.id, "old hash", b.id, missing_since=T0, deleted_at=T0),
    }
    result = plan([a, b], known, Departures((), back=("d/c",)), {})
    assert result.present == {"d/a", "d/b", "d/c"}
    assert [r.id for r in result.changed] == ["d/b"]
    assert result.new == ()


def test_plan_both_pages_present_are_two_events() -> None:
    # The old page is still listed, so it is not gone: nothing to succeed.
    old = event("2007/07/9/old", title=TITLE, sources=("https://a.example/1",))
    new = record("2007/07/9/new", title=REWORDED, sources=("https://a.example/1",))
    result = plan([new], {}, Departures((), ()), {})
    assert [r.id for r in result.new] == [new.id]
    assert old.id not in result.moved.values()


def test_plan_a_missing_event_from_an_earlier_poll_is_succeeded() -> None:
    old = event("2007/07/9/old", story="Siege", title=TITLE)
    new = record("2007/07/9/new", story="Siege", title=REWORDED)
    result = plan([new], {}, Departures((), ()), {old.id: (old, "h")})
    assert result.moved == {new.id: old.id}
    assert result.present == {old.id}
