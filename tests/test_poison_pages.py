"""Every page is judged alone: a page that crashes the parser, a file name that
cannot be a page, or any failure of one page rejects that page with its reason,
and every other page is stored, through the Ingestor, ``feedbot poll`` and
``feedbot parse``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from feedbot.archive.local import LocalArchiveSource
from feedbot.archive.parse import parse_page
from feedbot.archive.source import PollBatch, RawPage
from feedbot.cli import main
from feedbot.ingest import Ingestor, _Parser
from feedbot.store import Store
from tests.conftest import REPO, Clock, copy_sample_archive, seed_bytes, write_page

# A page whose context is written with mixed emphasis marks: it made the parser
# raise KeyError('*_'), which aborted every poll of an archive holding it.
MIXED_MARKS = """\
Formats: [HTML](/news/{day}/{slug}.html)  [JSON](/news/{day}/{slug}.json)

### [{date}](/news/{day}/index.md)

#  Mixed emphasis marks around a context.

### Sources:

1. [Example](https://example.org/{slug})

### Related:

1. [Another event](/news/2007/07/9/another.md) *_Context: x*_
"""


def write_mixed_marks_page(root: Path, day: str, slug: str = "mixed-marks") -> str:
    """Write the mixed-marks page; return its path relative to ``root``."""
    date = "-".join(day.split("/"))
    (root / "news" / day / f"{slug}.md").write_text(
        MIXED_MARKS.format(day=day, slug=slug, date=date), encoding="utf-8"
    )
    return f"news/{day}/{slug}.md"


def write_bad_name_page(root: Path, day: str, name: bytes = b"caf\xe9.md") -> str:
    """Write a well-formed page under a file name that is not UTF-8; return its
    path as a rejection names it (the bytes escaped)."""
    folder = os.fsencode(root / "news" / day)
    with open(os.path.join(folder, name), "wb") as page:
        page.write(seed_bytes())
    return f"news/{day}/" + name.decode("utf-8", "backslashreplace")


def mixed_marks_outcome(rejected: dict[str, str], stored: set[str], path: str) -> str:
    """The mixed-marks page is rejected with its reason, or (once the parser reads
    mixed marks) stored as an event: never lost, and never the end of the poll."""
    event_id = path.removeprefix("news/").removesuffix(".md")
    assert (path in rejected) != (event_id in stored), (rejected, event_id)
    return "rejected" if path in rejected else "stored"


def sample_ids(root: Path) -> set[str]:
    ids = set()
    for page in (root / "news").glob("*/*/*/*.md"):
        if page.name != "index.md":
            path = page.relative_to(root).as_posix()
            ids.add(parse_page(page.read_bytes(), path).id)
    return ids


# -- the must-show: the sample archive plus the two poison pages ------------------------


@pytest.fixture
def poisoned(tmp_path: Path) -> tuple[Path, set[str], str, str]:
    """The sample archive, its event ids, and the two poison pages added to it."""
    root = copy_sample_archive(tmp_path / "sample")
    good = sample_ids(root)
    day = sorted(p.parent for p in (root / "news").glob("*/*/*/*.md"))[0]
    key = day.relative_to(root / "news").as_posix()
    return root, good, write_mixed_marks_page(root, key), write_bad_name_page(root, key)


async def test_a_poll_of_the_sample_archive_with_two_poison_pages_stores_every_good_event(
    store: Store, poisoned: tuple[Path, set[str], str, str], clock: Clock
) -> None:
    root, good, mixed, bad_name = poisoned
    result = await Ingestor(store, LocalArchiveSource(root, clock=clock), clock=clock).poll()
    mixed_id = mixed.removeprefix("news/").removesuffix(".md")
    stored = {i for i in good | {mixed_id} if await store.get_event(i) is not None}
    assert good <= stored
    assert result.rejected[bad_name] == "the file name is not valid UTF-8"
    if mixed_marks_outcome(result.rejected, stored, mixed) == "rejected":
        assert "KeyError" in result.rejected[mixed]
    assert set(result.rejected) <= {mixed, bad_name}
    assert await store.rejections() == result.rejected
    last = await store.last_poll()
    assert last is not None and last.status == "ok" and last.rejected == len(result.rejected)


def test_feedbot_poll_of_the_poisoned_sample_archive_names_the_bad_pages(
    tmp_path: Path, poisoned: tuple[Path, set[str], str, str]
) -> None:
    root, good, mixed, bad_name = poisoned
    config = tmp_path / "feedbot.toml"
    config.write_text(
        f'[archive]\nsource = "{root}"\nwatch = false\n'
        f'[store]\nurl = "sqlite:///{tmp_path / "poll.db"}"\n',
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "feedbot", "--config", str(config), "poll"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    counts = re.fullmatch(r"(\d+) new, 0 updated, 0 unchanged, (\d+) rejected\n", done.stdout)
    assert counts is not None, done.stdout
    new, rejected = int(counts[1]), int(counts[2])
    assert new + rejected == len(good) + 2
    assert rejected in (1, 2)  # 1: the parser has learnt to read mixed marks
    logged = [json.loads(line) for line in done.stderr.splitlines()]
    named = {r["path"]: r["message"] for r in logged if r["message"].startswith("page rejected")}
    assert named[bad_name] == f"page rejected: {bad_name}: the file name is not valid UTF-8"
    if rejected == 2:
        assert named[mixed].startswith(f"page rejected: {mixed}: cannot be read as a page")
    assert set(named) == ({bad_name, mixed} if rejected == 2 else {bad_name})


# -- any failure of one page ----------------------------------------------------------


class _ExplodingPage(RawPage):
    """A page whose read fails in a way no real page can (yet): any exception, not
    a ParseError, in the thread or in a parse worker process."""

    def read(self) -> bytes:
        raise RuntimeError("boom")


class _Pages:
    """A source offering the given pages in one batch."""

    description = "pages"

    def __init__(self, pages: list[RawPage]) -> None:
        self.pages = pages

    async def poll(self, marks, *, days=None, full=True):  # type: ignore[no-untyped-def]
        yield PollBatch(pages=list(self.pages))

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize("where", ["thread", "worker process"])
async def test_any_failure_of_one_page_rejects_that_page_alone(
    store: Store, archive: Path, clock: Clock, where: str, monkeypatch, caplog
) -> None:
    if where == "worker process":
        monkeypatch.setattr(_Parser, "LARGE", 2)
    good = write_page(archive, "2007/07/10", "storm", "Storm")
    pages = [
        RawPage("news/2007/07/10/storm.md", file=str(good), max_bytes=1 << 20),
        _ExplodingPage("news/2007/07/10/exploding.md"),
    ]
    with caplog.at_level(logging.WARNING, logger="feedbot.ingest"):
        result = await Ingestor(store, _Pages(pages), clock=clock).poll()
    assert result.new == 1 and await store.get_event("2007/07/10/storm") is not None
    assert result.rejected == {
        "news/2007/07/10/exploding.md": "cannot be read as a page (a bug in feedbot): "
        "RuntimeError: boom"
    }
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert "news/2007/07/10/exploding.md" in message and "Traceback" in message
    assert 'raise RuntimeError("boom")' in message  # from the worker, when there
    last = await store.last_poll()
    assert last is not None and (last.status, last.rejected) == ("ok", 1)


async def test_a_page_that_crashes_the_parser_is_judged_alone(
    store: Store, archive: Path, clock: Clock
) -> None:
    write_page(archive, "2007/07/10", "storm", "Storm")
    mixed = write_mixed_marks_page(archive, "2007/07/10")
    result = await Ingestor(store, LocalArchiveSource(archive, clock=clock), clock=clock).poll()
    ids = ["2007/07/10/storm", "2007/07/10/mixed-marks"]
    stored = {i for i in ids if await store.get_event(i) is not None}
    assert "2007/07/10/storm" in stored
    mixed_marks_outcome(result.rejected, stored, mixed)


# -- file names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shown", "reason"),
    [
        (b"caf\xe9.md", "caf\\xe9.md", "the file name is not valid UTF-8"),
        (b"new\nline.md", "new\\nline.md", "the file name holds a control character (U+000A)"),
        (b"tab\there.md", "tab\\there.md", "the file name holds a control character (U+0009)"),
        (b"del\x7f.md", "del\\x7f.md", "the file name holds a control character (U+007F)"),
        ("c1\x85.md".encode(), "c1\\x85.md", "the file name holds a control character (U+0085)"),
    ],
)
async def test_a_file_name_that_cannot_be_a_page_is_a_rejected_page(
    store: Store, archive: Path, clock: Clock, name: bytes, shown: str, reason: str
) -> None:
    write_page(archive, "2007/07/10", "storm", "Storm")
    write_bad_name_page(archive, "2007/07/10", name)
    source = LocalArchiveSource(archive, clock=clock)
    result = await Ingestor(store, source, clock=clock).poll()
    assert result.rejected == {f"news/2007/07/10/{shown}": reason}
    assert result.new == 2  # the seed page and the storm
    assert await store.rejections() == result.rejected
    # Listed once: the day is not offered again while nothing in it changes.
    assert (await Ingestor(store, source, clock=clock).poll()).rejected == {}


# -- feedbot parse ----------------------------------------------------------------------


def test_feedbot_parse_reports_each_bad_page_and_goes_on(tmp_path: Path, capsys) -> None:
    day = "2007/07/10"
    (tmp_path / "news" / day).mkdir(parents=True)
    mixed = tmp_path / write_mixed_marks_page(tmp_path, day)
    write_bad_name_page(tmp_path, day)
    bad_name = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path / "news" / day), b"caf\xe9.md")))
    good = write_page(tmp_path, day, "storm", "Storm")
    assert main(["parse", "--json", str(mixed), str(bad_name), str(good)]) == 1
    out, err = capsys.readouterr()
    assert f"{tmp_path}/news/{day}/caf\\xe9.md: the file name is not valid UTF-8" in err
    ids = [line for line in out.splitlines() if '"id"' in line]
    if f"{mixed}: " in err:
        assert len(ids) == 1  # the storm
    else:
        assert len(ids) == 2  # the parser reads mixed marks: an event
    assert '"2007/07/10/storm"' in out


def test_feedbot_parse_goes_on_after_any_failure(tmp_path: Path, capsys, monkeypatch) -> None:
    good = write_page(tmp_path, "2007/07/10", "storm", "Storm")
    broken = write_page(tmp_path, "2007/07/10", "broken", "Broken")

    def parse_or_fail(data: bytes, path: str, **options: object):  # type: ignore[no-untyped-def]
        if path.endswith("broken.md"):
            raise KeyError("*_")
        return parse_page(data, path, **options)  # type: ignore[arg-type]

    monkeypatch.setattr("feedbot.cli.parse_page", parse_or_fail)
    assert main(["parse", str(broken), str(good)]) == 1
    out, err = capsys.readouterr()
    assert f"{broken}: cannot be read as a page (a bug in feedbot): KeyError: '*_'" in err
    assert "2007/07/10/storm" in out
