"""Event identity through whole polls of a local archive folder into a store (every
backend): rewording, removal after two polls, a half-written archive, revival."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from feedbot.archive.local import LocalArchiveSource
from feedbot.ingest import Ingestor, PollResult
from feedbot.model import AlertKind, Subscription
from feedbot.store import Moved, Removed, Store
from feedbot.store.outbox import Delivery
from tests.conftest import Clock

DAY = "2007/07/9"
SOURCE = "https://www.example.org/news/red-mosque-talks"
OLD_SLUG = "talks-at-the-red-mosque-end-without-any-progress"
NEW_SLUG = "talks-at-the-red-mosque-end-without-progress"
OLD_TITLE = "Talks at the Red Mosque in Islamabad end without any progress."
NEW_TITLE = "Talks at the Red Mosque in Islamabad end without progress, officials say."
OLD_ID = f"{DAY}/{OLD_SLUG}"
NEW_ID = f"{DAY}/{NEW_SLUG}"


def page(
    root: Path,
    slug: str,
    title: str,
    *,
    day: str = DAY,
    sources: tuple[str, ...] = (SOURCE,),
    story: str | None = None,
) -> Path:
    year, month, dom = day.split("/")
    lines = [
        f"Formats: [HTML](/news/{day}/{slug}.html)",
        "",
        f"### [{year}-{month}-{dom}](/news/{day}/index.md)",
        "",
        *([f"##### {story}"] if story else []),
        f"#  {title}",
        "",
        "### Sources:",
        "",
        *(f"{n}. [Source {n}]({url})" for n, url in enumerate(sources, 1)),
        "",
    ]
    folder = root / "news" / day
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{slug}.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "archive"


@pytest.fixture
async def ingestor(store: Store, root: Path, clock: Clock) -> Ingestor:
    (root / "news").mkdir(parents=True)
    await store.subscriptions.add(
        Subscription(
            id="all",
            url="https://hooks.example/x",
            events=(AlertKind.CREATED, AlertKind.UPDATED, AlertKind.DELETED),
        ),
        now=clock(),
    )
    polls = Ingestor(store, LocalArchiveSource(root, clock=clock, settle_ms=0), clock=clock)
    await polls.poll()  # the first sync: from now on every new event is alerted
    page(root, OLD_SLUG, OLD_TITLE)
    page(root, "a-dam-bursts", "A dam bursts.", sources=("https://other.example/dam",))
    assert (await poll(polls, clock)).new == 2
    return polls


async def poll(ingestor: Ingestor, clock: Clock, days: set[str] | None = None) -> PollResult:
    # Each poll starts later than the last: removal needs a poll after the one
    # that found a page gone.
    clock.advance(60)
    return await ingestor.poll(days=days)


def alerts(deliveries: list[Delivery]) -> list[tuple[str, str]]:
    return sorted((d.kind, d.event_id) for d in deliveries)


async def test_a_reworded_page_keeps_its_first_id(
    ingestor: Ingestor, store: Store, root: Path, clock: Clock
) -> None:
    before = await store.get_event(OLD_ID)
    assert before is not None
    (root / "news" / DAY / f"{OLD_SLUG}.md").unlink()
    page(root, NEW_SLUG, NEW_TITLE)
    result = await poll(ingestor, clock)
    assert (result.new, result.updated, result.renamed, result.missing) == (0, 1, 1, 0)
    assert await store.count_events() == 2
    after = await store.get_event(OLD_ID)
    assert after is not None and after.event.title == NEW_TITLE
    assert after.first_seen == before.first_seen and after.updated > before.updated
    assert await store.lookup_event(NEW_ID) == Moved(OLD_ID)
    # Created once, then updated with the title it had; never created again.
    found = await store.outbox.deliveries()
    assert alerts(found) == sorted(
        [("created", OLD_ID), ("created", f"{DAY}/a-dam-bursts"), ("updated", OLD_ID)]
    )
    assert [d.previous_title for d in found if d.kind == "updated"] == [OLD_TITLE]
    # Read again under its new path: unchanged.
    # (A touched page leaves its folder's mtime: polled as the watch would.)
    os.utime(root / "news" / DAY / f"{NEW_SLUG}.md", ns=(1, 1))
    again = await poll(ingestor, clock, {DAY})
    assert (again.new, again.updated, again.unchanged) == (0, 0, 2)
    assert (await store.get_event(OLD_ID)) == after
    # Gone from its new path too: the kept id goes missing, then is removed.
    (root / "news" / DAY / f"{NEW_SLUG}.md").unlink()
    assert (await poll(ingestor, clock)).missing == 1
    assert (await poll(ingestor, clock)).removed == 1
    assert isinstance(await store.lookup_event(OLD_ID), Removed)


async def test_deleted_then_created_on_the_next_poll_is_still_one_event(
    ingestor: Ingestor, store: Store, root: Path, clock: Clock
) -> None:
    (root / "news" / DAY / f"{OLD_SLUG}.md").unlink()
    assert (await poll(ingestor, clock)).missing == 1
    page(root, NEW_SLUG, NEW_TITLE)
    result = await poll(ingestor, clock)
    assert (result.new, result.updated, result.renamed, result.removed) == (0, 1, 1, 0)
    assert await store.lookup_event(NEW_ID) == Moved(OLD_ID)
    assert (await poll(ingestor, clock)).removed == 0
    assert await store.count_events() == 2


async def test_a_removed_page_leaves_after_two_polls_and_comes_back_under_its_id(
    ingestor: Ingestor, store: Store, root: Path, clock: Clock
) -> None:
    path = root / "news" / DAY / f"{OLD_SLUG}.md"
    kept = path.read_bytes()
    stored = await store.get_event(OLD_ID)
    path.unlink()
    first = await poll(ingestor, clock)
    assert (first.missing, first.removed) == (1, 0)
    assert await store.count_events() == 2  # one poll is not enough
    second = await poll(ingestor, clock)
    assert (second.missing, second.removed) == (0, 1)
    assert await store.count_events() == 1
    assert [s.event.id for s in await store.events_page()] == [f"{DAY}/a-dam-bursts"]
    gone = await store.lookup_event(OLD_ID)
    assert isinstance(gone, Removed) and gone.event == stored
    assert ("deleted", OLD_ID) in alerts(await store.outbox.deliveries())
    # Back: the same id, as it was, and no second event.created.
    path.write_bytes(kept)
    back = await poll(ingestor, clock)
    assert (back.new, back.updated) == (0, 0)
    assert await store.lookup_event(OLD_ID) == stored
    assert await store.count_events() == 2
    created = [a for a in alerts(await store.outbox.deliveries()) if a[0] == "created"]
    assert created == sorted([("created", OLD_ID), ("created", f"{DAY}/a-dam-bursts")])


async def test_a_page_gone_for_one_poll_only_is_not_removed(
    ingestor: Ingestor, store: Store, root: Path, clock: Clock
) -> None:
    path = root / "news" / DAY / f"{OLD_SLUG}.md"
    kept = path.read_bytes()
    path.unlink()
    assert (await poll(ingestor, clock)).missing == 1
    path.write_bytes(kept)  # a half-written archive: back on the next poll
    assert (await poll(ingestor, clock)).removed == 0
    assert (await poll(ingestor, clock)).removed == 0
    assert await store.count_events() == 2
    assert not any(kind == "deleted" for kind, _ in alerts(await store.outbox.deliveries()))


async def test_both_pages_present_are_two_events(
    ingestor: Ingestor, store: Store, root: Path, clock: Clock
) -> None:
    page(root, NEW_SLUG, NEW_TITLE)
    result = await poll(ingestor, clock)
    assert (result.new, result.renamed) == (1, 0)
    assert await store.count_events() == 3
    assert await store.lookup_event(NEW_ID) not in (None, Moved(OLD_ID))


async def test_a_touched_page_keeps_its_updated_time(
    ingestor: Ingestor, store: Store, root: Path, clock: Clock
) -> None:
    before = await store.get_event(OLD_ID)
    os.utime(root / "news" / DAY / f"{OLD_SLUG}.md", ns=(1, 1))
    result = await poll(ingestor, clock, {DAY})
    assert (result.updated, result.unchanged, result.missing) == (0, 2, 0)
    assert await store.get_event(OLD_ID) == before


async def test_a_day_folder_that_vanished_lists_no_page(
    ingestor: Ingestor, store: Store, root: Path, clock: Clock
) -> None:
    for path in (root / "news" / DAY).iterdir():
        path.unlink()
    (root / "news" / DAY).rmdir()
    assert (await poll(ingestor, clock)).missing == 2
    assert (await poll(ingestor, clock)).removed == 2
    assert await store.count_events() == 0
    # Not listed again while gone: nothing to do on the next poll.
    assert (await poll(ingestor, clock)).summary == "0 new, 0 updated, 0 unchanged, 0 rejected"


async def test_a_poll_of_other_days_does_not_remove(
    ingestor: Ingestor, store: Store, root: Path, clock: Clock
) -> None:
    (root / "news" / DAY / f"{OLD_SLUG}.md").unlink()
    assert (await poll(ingestor, clock)).missing == 1
    page(root, "elsewhere", "Elsewhere.", day="2007/07/10", sources=())
    clock.advance(60)
    other = await ingestor.poll(days={"2007/07/10"})
    assert (other.new, other.removed) == (1, 0)
    clock.advance(60)
    same = await ingestor.poll(days={DAY})
    assert same.removed == 1


# -- what the local source lists -----------------------------------------------------


async def listed(source: LocalArchiveSource, marks: dict[str, str], **kw: object) -> dict:
    found: dict[str, frozenset[str]] = {}
    async for batch in source.poll(marks, **kw):  # type: ignore[arg-type]
        marks.update(batch.marks)
        found.update(batch.listed)
    return found


async def test_the_local_source_lists_changed_days_whole_and_vanished_ones_empty(
    root: Path, clock: Clock
) -> None:
    page(root, "a", "A.")
    page(root, "b", "B.", day="2007/07/10")
    source = LocalArchiveSource(root, clock=clock, settle_ms=1000)
    marks: dict[str, str] = {}
    clock.advance(3600)
    assert await listed(source, marks) == {
        DAY: {f"news/{DAY}/a.md"},
        "2007/07/10": {"news/2007/07/10/b.md"},
    }
    # Unchanged days list nothing; a page being written (within the settle time)
    # is not offered, yet it is in its day's listing.
    assert await listed(source, marks) == {}
    fresh = page(root, "c", "C.")
    now = clock().timestamp()
    os.utime(fresh, (now, now))
    os.utime(fresh.parent, (now + 1, now + 1))
    assert await listed(source, marks) == {DAY: {f"news/{DAY}/a.md", f"news/{DAY}/c.md"}}
    # A day folder gone lists no page, once, whether the poll names it or not.
    for path in (root / "news" / "2007/07/10").iterdir():
        path.unlink()
    (root / "news" / "2007/07/10").rmdir()
    assert await listed(source, dict(marks), days={"2007/07/10"}) == {"2007/07/10": frozenset()}
    assert (await listed(source, marks))["2007/07/10"] == frozenset()
    assert "2007/07/10" not in await listed(source, marks)
