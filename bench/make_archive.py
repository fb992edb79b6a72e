"""Synthetic archives for the benchmarks: many event pages in the exact archive format (README).

This script owns the synthetic archive that bench scripts (and a test) run against.
It writes ``DEST/news/YYYY/MM/D/<slug>.md`` pages and one ``index.md`` per day, the
same shapes as a real archive: a Formats line, the date line, a story line for most
events, the summary, 0-4 sources, and 0-8 related events (earlier and later, all
existing pages, each quoting its target's summary) with comma-separated contexts.

Stories and contexts are generated names (some with non-ASCII letters) drawn with a
Zipf-like long tail, so a few topics are huge and most are small. Output depends only
on the arguments: ``random.Random(seed)`` drives every choice. Pages are written
directly, never parsed, so 100,000 events take seconds; ``--verify N`` parses a
sample of N pages with the real parser afterwards.

Each page is written as soon as it is rendered; what stays in memory is the plan of
every event (its day, story, summary and contexts: related links point forward as
well as back), some 400 bytes an event. Names grow in tiers (``_Names``), so 3,000,000
events get distinct names too; 1,000,000 events make about 87,000 topics and 4.4 GB
of pages, in some 5 minutes (mostly the file system's) and 450 MB.

    python bench/make_archive.py DEST --events 100000 --seed 1 [--verify 2000]
    python bench/make_archive.py /tmp/archive-1m --events 1000000 --verify 2000

Other bench scripts import it::

    sys.path.insert(0, str(Path(__file__).parent))
    from make_archive import make_archive
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import re
import sys
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TypeVar

END = date(2025, 12, 31)
YEARS = 20
MIN_PER_DAY = 10
MAX_PER_DAY = 30
SLUG_MAX = 140
ZIPF_S = 1.05
ZIPF_Q = 2.0
# Story neighbours a page relates to, nearest first: earlier and later alike.
_NEIGHBOUR_STEPS = (-1, 1, -2, 2, 3, -3, -5, 5, 8, -8)

T = TypeVar("T")

_NOT_SLUG = re.compile(r"[^a-z0-9]+")

# --- word lists for generated names ----------------------------------------------

_SYLLABLES = [
    "ka",
    "ro",
    "vin",
    "del",
    "mar",
    "to",
    "sa",
    "len",
    "bri",
    "gor",
    "an",
    "tu",
    "ze",
    "ol",
    "ma",
    "ri",
    "ne",
    "ko",
    "sta",
    "va",
    "lo",
    "pe",
    "dra",
    "mi",
    "ur",
    "hal",
    "bek",
    "sun",
    "tor",
    "ly",
    "qua",
    "es",
    "fen",
    "gal",
]
_UNICODE_PLACES = [
    "São Paulo",
    "Tōhoku",
    "Côte d'Ivoire",
    "Eyjafjallajökull",
    "Reykjavík",
    "Zürich",
    "Kraków",
    "Malmö",
    "Bogotá",
    "Düsseldorf",
    "Łódź",
    "Yaoundé",
    "Åland",
    "Curaçao",
    "Besançon",
    "Málaga",
    "Gdańsk",
    "Ōsaka",
    "Hà Nội",
    "Córdoba",
    "Tromsø",
    "Şanlıurfa",
]
_PLACE_SUFFIXES = ["", "", "", " City", " Province", " Valley", " Bay", " Islands"]
_STORY_NOUNS = [
    "earthquake",
    "floods",
    "election",
    "protests",
    "crisis",
    "general strike",
    "wildfires",
    "drought",
    "referendum",
    "hostage crisis",
    "bridge collapse",
    "corruption scandal",
    "ceasefire talks",
    "mine disaster",
    "heat wave",
    "cholera outbreak",
    "peace process",
    "bank collapse",
    "oil spill",
    "uprising",
    "trial",
    "summit",
    "volcanic eruption",
    "cyclone",
    "teachers' strike",
    "constitutional crisis",
]
_FIRST = [
    "Ana",
    "José",
    "Zoë",
    "François",
    "Søren",
    "Łukasz",
    "Ödön",
    "Amara",
    "Kenji",
    "Ingrid",
    "Mehmet",
    "Chiara",
    "Tomás",
    "Aylin",
    "Rahul",
    "Nadia",
    "Pieter",
    "Olusegun",
    "Mei",
    "Björn",
    "Ifeoma",
    "Renée",
    "Yusuf",
    "Hana",
    "Matías",
    "Dagný",
    "Sipho",
    "Élodie",
]
_LAST = [
    "Müller",
    "García",
    "Nakamura",
    "Çelik",
    "Şahin",
    "Okonkwo",
    "Nguyễn",
    "Kowalski",
    "Haraldsdóttir",
    "Dubois",
    "Rossi",
    "Ōtani",
    "Petrović",
    "Mendes",
    "Andersen",
    "Kaur",
    "Abubakar",
    "Fernández",
    "Novák",
    "Lindqvist",
    "Mwangi",
    "Ibáñez",
    "Horvát",
    "Sato",
]
_ORG_KINDS = [
    "National Assembly",
    "Supreme Court",
    "Electoral Commission",
    "Central Bank",
    "Workers' Union",
    "Liberation Front",
    "Red Cross",
    "Football Club",
    "Ministry of Health",
    "Armed Forces",
    "Port Authority",
    "Metro",
    "Stock Exchange",
    "University",
]
_OUTLETS = [
    ("BBC News", "https://www.bbc.co.uk/news/world-{n}"),
    ("Reuters", "https://www.reuters.com/article/{w}-id{n}"),
    ("Al Jazeera", "https://www.aljazeera.com/news/{y}/{m}/{d}/{w}"),
    ("The Guardian", "https://www.theguardian.com/world/{y}/{m}/{d}/{w}"),
    ("Associated Press", "https://apnews.com/article/{w}-{n}"),
    ("Le Monde", "https://www.lemonde.fr/international/article/{y}/{m}/{d}/{w}_{n}.html"),
    ("Süddeutsche Zeitung", "https://www.sueddeutsche.de/politik/{w}-1.{n}"),
    ("Folha de S.Paulo", "https://www1.folha.uol.com.br/mundo/{y}/{m}/{n}-{w}.shtml"),
    ("NHK World", "https://www3.nhk.or.jp/nhkworld/en/news/{n}/"),
    ("Wikipedia", "https://en.wikipedia.org/wiki/{t}_({k})"),
    ("RÚV", "https://www.ruv.is/frett/{y}/{m}/{d}/{w}"),
]
_WIKI_KINDS = ["event", "city", "politician", "organisation", "2010s", "disaster"]

# --- summary templates ---------------------------------------------------------------

_TEMPLATES = [
    "At least {n} people are killed when {disaster} strikes {place}, officials in {place2} say.",
    "{person} is sworn in as head of the {org} after a disputed vote in {place}.",
    "The {org} votes to {action}, a decision {person} calls a mistake.",
    "Thousands march through {place} demanding {demand}; police detain {n} people.",
    "{person} resigns amid {scandal}, saying the {org} has lost confidence in the government.",
    "Rescue teams in {place} reach {n} survivors trapped after {disaster}.",
    "Talks between {place} and {place2} on {topic} end without agreement after {n} days.",
    "A court in {place} sentences {person} to {n} years in prison for {crime}.",
    "The {org} announces {action2}, the first such step since {year}.",
    "Authorities in {place} declare a state of emergency as {disaster} spreads to {place2}.",
    "{person} wins the presidential runoff in {place} with {pct} percent of the vote.",
    "Negotiators agree a ceasefire for {place}, to be monitored by the {org}.",
]
_DISASTERS = [
    "an earthquake",
    "a flash flood",
    "a landslide",
    "a fire",
    "a cyclone",
    "a mudslide",
    "a building collapse",
    "a train derailment",
    "an explosion at a chemical plant",
]
_ACTIONS = [
    "suspend the constitution",
    "raise interest rates",
    "ban public gatherings",
    "dissolve parliament",
    "approve a new budget",
    "expel foreign diplomats",
    "hold early elections",
    "nationalise the railways",
]
_ACTIONS2 = [
    "a national day of mourning",
    "an inquiry into the disaster",
    "new sanctions",
    "an amnesty for political prisoners",
    "emergency aid of {n} million euros",
    "the reopening of the border",
]
_DEMANDS = [
    "lower fuel prices",
    "new elections",
    "the release of detained students",
    "an end to the curfew",
    "land reform",
    "the president's resignation",
]
_SCANDALS = [
    "a bribery scandal",
    "leaked recordings",
    "an expenses scandal",
    "allegations of vote rigging",
    "a procurement inquiry",
]
_TOPICS = [
    "water rights",
    "the border dispute",
    "fishing quotas",
    "a prisoner exchange",
    "gas prices",
    "refugee returns",
]
_CRIMES = ["fraud", "inciting violence", "embezzlement", "war crimes", "espionage"]
_EXTRA_SENTENCES = [
    " The government says it will investigate.",
    " Opposition leaders call the move unconstitutional and vow to challenge it in court.",
    " It is the worst such incident in the country in more than {n} years.",
    " Aid agencies warn that supplies of clean water are running low.",
    " [https:--www.example-news.org-{w} (Example News)] Officials confirm the figures.",
]


def page_slug(summary: str) -> str:
    """The page slug: lowercased, runs of non ``[a-z0-9]`` as ``-``, at most 140 chars."""
    return _NOT_SLUG.sub("-", summary.lower()).strip("-")[:SLUG_MAX].rstrip("-")


@dataclass(slots=True)
class _Event:
    """One planned page: what its own page and the pages linking to it need.

    The whole plan is in memory while the pages are written (related links point
    forward as well as back), so it holds no more than that: the slug is made anew
    from the summary when wanted, and the day and folder are shared by a day's events.
    """

    day: date
    dir: str  # "news/YYYY/MM/D"
    story: int  # index into the story pool, -1 for none
    summary: str
    tags: tuple[int, ...]  # indexes into the context pool

    @property
    def slug(self) -> str:
        return page_slug(self.summary)


class _Names:
    """Generated, distinct (by slug) names for stories, places, people, organisations.

    A kind of name may have tiers of makers, the smallest name space first. A tier
    that yields no new name in ``_TRIES`` draws in a row is used up, and the kind
    moves on to its next tier for good; only the last one's running out is an error.
    An archive the first tiers hold (every size that could be made before there were
    tiers: below about 1,000,000 events, where the 16,800 names of the first tier of
    people run out) never leaves them, so its output is byte for byte what it was.
    """

    _TRIES = 1000

    def __init__(self, rng: _Rng) -> None:
        self.rng = rng
        self.seen: set[str] = set()
        self.tier: dict[str, int] = {}  # kind -> index of the tier in use

    def _new(self, kind: str, makers: Sequence[Callable[[], str]]) -> str:
        tier = self.tier.get(kind, 0)
        while tier < len(makers):
            make = makers[tier]
            for _ in range(self._TRIES):
                name = make()
                key = page_slug(name)
                if key and key not in self.seen:
                    self.seen.add(key)
                    return name
            tier = self.tier[kind] = tier + 1
        raise RuntimeError(f"name space exhausted: {kind}")  # pragma: no cover

    def _word(self, fewest: int, most: int) -> str:
        """A made-up word of ``fewest`` to ``most`` syllables, capitalised."""
        rng = self.rng
        return "".join(
            rng.choice(_SYLLABLES) for _ in range(rng.randint(fewest, most))
        ).capitalize()

    def place(self) -> str:
        rng = self.rng

        def make(fewest: int, most: int) -> str:
            if rng.random() < 0.08:
                base = rng.choice(_UNICODE_PLACES)
                return base + rng.choice(_PLACE_SUFFIXES[3:])
            word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(fewest, most)))
            if rng.random() < 0.15:  # a sprinkle of diacritics
                word = word.replace("o", "ö", 1).replace("a", "á", 1)
            return word.capitalize() + rng.choice(_PLACE_SUFFIXES)

        # 2-3 syllables: some 200,000 names; then 3-4: some 7 million.
        return self._new("place", (lambda: make(2, 3), lambda: make(3, 4)))

    def person(self) -> str:
        rng = self.rng

        def known() -> str:  # 16,800 names
            return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}" + (
                "" if rng.random() < 0.7 else f"-{rng.choice(_LAST)}"
            )

        def made_up() -> str:  # a made-up family name: some 30 million names
            first = rng.choice(_FIRST)
            if rng.random() < 0.6:
                return f"{first} {self._word(2, 3)}"
            if rng.random() < 0.5:
                return f"{first} {self._word(2, 3)}-{rng.choice(_LAST)}"
            return f"{first} {rng.choice(_LAST)}-{self._word(2, 3)}"

        return self._new("person", (known, made_up))

    def org(self, places: list[str]) -> str:
        rng = self.rng
        return self._new("org", (lambda: f"{rng.choice(places)} {rng.choice(_ORG_KINDS)}",))

    def story(self, places: list[str]) -> str:
        rng = self.rng

        def make() -> str:
            roll = rng.random()
            if roll < 0.45:
                return f"{rng.choice(places)} {rng.choice(_STORY_NOUNS)}"
            if roll < 0.75:
                year = rng.randint(END.year - YEARS, END.year)
                return f"{year} {rng.choice(places)} {rng.choice(_STORY_NOUNS)}"
            if roll < 0.9:
                return f"{rng.choice(places)}–{rng.choice(places)} relations"
            return f"{rng.choice(_STORY_NOUNS).capitalize()} in {rng.choice(places)}"

        return self._new("story", (make,))


def _zipf_cum_weights(n: int, s: float = ZIPF_S, q: float = ZIPF_Q) -> list[float]:
    """Cumulative Zipf-Mandelbrot weights 1/(rank+q)^s: a long tail, a not-too-sharp head."""
    return list(itertools.accumulate(1.0 / ((k + q) ** s) for k in range(1, n + 1)))


class _Rng(random.Random):
    """``random.Random`` with ``choice``/``randint``/``randrange`` drawn from one
    ``random()`` call each: several times faster, still a pure function of the seed."""

    def choice(self, seq: Sequence[T]) -> T:  # type: ignore[override]
        return seq[int(self.random() * len(seq))]

    def randint(self, a: int, b: int) -> int:
        return a + int(self.random() * (b - a + 1))

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        if step != 1:
            return super().randrange(start, stop, step)
        if stop is None:
            start, stop = 0, start
        return start + int(self.random() * (stop - start))


class _Slots(dict[str, str]):
    """Template fields filled on first use, so a summary draws only what it shows."""

    def __init__(
        self, rng: _Rng, places: list[str], people: list[str], orgs: list[str], n: int
    ) -> None:
        super().__init__(n=str(n))
        self.rng, self.places, self.people, self.orgs = rng, places, people, orgs

    def __missing__(self, key: str) -> str:
        rng = self.rng
        if key == "place":
            value = rng.choice(self.places)
        elif key == "place2":
            value = rng.choice(self.places)
            if value == self["place"]:
                value = self.places[(self.places.index(value) + 1) % len(self.places)]
        elif key == "person":
            value = rng.choice(self.people)
        elif key == "org":
            value = rng.choice(self.orgs)
        elif key == "action2":
            value = rng.choice(_ACTIONS2).replace("{n}", self["n"])
        elif key == "year":
            value = str(rng.randint(1950, 2005))
        elif key == "pct":
            value = f"{50.1 + rng.random() * 20.9:.1f}"
        else:
            value = rng.choice(_WORDS[key])
        self[key] = value
        return value


_WORDS: dict[str, list[str]] = {
    "disaster": _DISASTERS,
    "action": _ACTIONS,
    "demand": _DEMANDS,
    "scandal": _SCANDALS,
    "topic": _TOPICS,
    "crime": _CRIMES,
}


def _summary(rng: _Rng, places: list[str], people: list[str], orgs: list[str]) -> str:
    slots = _Slots(rng, places, people, orgs, rng.randint(2, 400))
    text = rng.choice(_TEMPLATES).format_map(slots)
    if rng.random() < 0.35:
        text += rng.choice(_EXTRA_SENTENCES).format(n=rng.randint(5, 60), w=rng.randrange(10**6))
    return text


def _plan_days(rng: _Rng, events: int) -> list[tuple[date, int]]:
    """Which days have events and how many: 10-30 a day, spread over 20 years."""
    counts: list[int] = []
    total = 0
    while total < events:
        c = min(rng.randint(MIN_PER_DAY, MAX_PER_DAY), events - total)
        counts.append(c)
        total += c
    span = YEARS * 365 + YEARS // 4
    if len(counts) > span:  # more events than 20 years hold: reach further back
        span = len(counts)
    start = END - timedelta(days=span - 1)
    offsets = sorted(rng.sample(range(span), len(counts)))
    return [(start + timedelta(days=o), c) for o, c in zip(offsets, counts, strict=True)]


def _source_lines(rng: _Rng, ev: _Event, slug: str, places: list[str]) -> list[str]:
    lines: list[str] = []
    words = slug[:40].rstrip("-")
    y, m, d = ev.day.year, f"{ev.day.month:02d}", f"{ev.day.day:02d}"
    for i in range(rng.choices((0, 1, 2, 3, 4), weights=(10, 30, 30, 20, 10))[0]):
        name, pattern = rng.choice(_OUTLETS)
        url = pattern.format(
            y=y,
            m=m,
            d=d,
            w=words,
            n=rng.randrange(10**7, 10**8),
            t=rng.choice(places).replace(" ", "_"),
            k=rng.choice(_WIKI_KINDS),
        )
        lines.append(f"{i + 1}. [{name}]({url})")
    return lines


def make_archive(dest: Path, events: int, seed: int = 1) -> int:
    """Write a synthetic archive of ``events`` events under ``dest``; return the count.

    Deterministic for a given ``(events, seed)``. ``dest/news`` is created if need be;
    existing files with the same paths are overwritten, others are left alone.
    """
    if events < 1:
        raise ValueError("events must be at least 1")
    rng = _Rng(seed)
    names = _Names(rng)

    n_places = max(40, events // 40)
    places = [names.place() for _ in range(n_places)]
    people = [names.person() for _ in range(max(30, events // 60))]
    orgs = [names.org(places) for _ in range(max(20, events // 100))]
    stories = [names.story(places) for _ in range(max(8, events // 25))]
    contexts = places + people + orgs
    rng.shuffle(contexts)  # Zipf rank must not follow the kind of name
    story_cw = _zipf_cum_weights(len(stories))
    context_cw = _zipf_cum_weights(len(contexts))
    # Lists, not ranges: the ids drawn are then shared int objects, not one each.
    story_ids = list(range(len(stories)))
    context_ids = list(range(len(contexts)))

    # Plan every event first (date, story, summary, tags), so related links can
    # point forward as well as back. A story's events, in order, as compact arrays.
    plan: list[_Event] = []
    by_story: dict[int, array[int]] = {}
    for day, count in _plan_days(rng, events):
        folder = f"news/{day.year}/{day.month:02d}/{day.day}"
        used: set[str] = set()
        story_draws = rng.choices(story_ids, cum_weights=story_cw, k=count)
        for story in story_draws:
            has_story = rng.random() < 0.85
            summary = _summary(rng, places, people, orgs)
            if has_story and rng.random() < 0.5:
                summary = f"{stories[story]}: {summary}"
            slug = page_slug(summary)
            while slug in used:  # same first 140 characters on one day: reword
                summary = f"{rng.choice(places)}: {summary}"
                slug = page_slug(summary)
            used.add(slug)
            tags = tuple(
                dict.fromkeys(rng.choices(context_ids, cum_weights=context_cw, k=rng.randint(1, 3)))
            )
            if has_story:
                by_story.setdefault(story, array("I")).append(len(plan))
            plan.append(_Event(day, folder, story if has_story else -1, summary, tags))

    # Where each event sits in its story's chronological list.
    position = array("I", bytes(4 * len(plan)))
    for members in by_story.values():
        for pos, index in enumerate(members):
            position[index] = pos

    # A day's events are next to each other in the plan: its index is written
    # after its last page.
    root = str(dest)
    listed: list[str] = []  # the index lines of the day being written
    for index, ev in enumerate(plan):
        slug = ev.slug
        if not listed:
            os.makedirs(os.path.join(root, ev.dir), exist_ok=True)
        page = _render(rng, index, ev, slug, plan, by_story, position, stories, contexts, places)
        with open(os.path.join(root, ev.dir, slug + ".md"), "w", encoding="utf-8") as fh:
            fh.write(page)
        listed.append(f"- [{ev.summary}](/{ev.dir}/{slug}.md)")
        if index + 1 == len(plan) or plan[index + 1].dir != ev.dir:
            body = "\n".join([f"# {ev.day.isoformat()}", "", *listed]) + "\n"
            with open(os.path.join(root, ev.dir, "index.md"), "w", encoding="utf-8") as fh:
                fh.write(body)
            listed = []
    return len(plan)


def _render(
    rng: _Rng,
    index: int,
    ev: _Event,
    slug: str,
    plan: list[_Event],
    by_story: dict[int, array[int]],
    position: array[int],
    stories: list[str],
    contexts: list[str],
    places: list[str],
) -> str:
    path = f"/{ev.dir}/{slug}"
    d = ev.day
    out = [
        f"Formats: [HTML]({path}.html)  [JSON]({path}.json)  [XML]({path}.xml)  ",
        "",
        f"### [{d.year}-{d.month:02d}-{d.day}](/{ev.dir}/index.md)",
        "",
    ]
    if ev.story >= 0:
        out.append(f"##### {stories[ev.story]}")
    out += [f"#  {ev.summary} ", "", "", "", ""]

    sources = _source_lines(rng, ev, slug, places)
    if sources:
        out += ["### Sources:", "", *sources, ""]

    # Related: story neighbours (earlier and later) first, then events from anywhere.
    wanted = rng.choices(range(9), weights=(8, 10, 14, 16, 16, 12, 10, 8, 6))[0]
    targets: list[int] = []
    if ev.story >= 0 and wanted:
        members = by_story[ev.story]
        pos, size, limit = position[index], len(by_story[ev.story]), wanted - wanted // 3
        for step in _NEIGHBOUR_STEPS:
            other = pos + step
            if 0 <= other < size:
                targets.append(members[other])
                if len(targets) == limit:
                    break
    while len(targets) < wanted:
        other = rng.randrange(len(plan))
        if other != index and other not in targets:
            targets.append(other)
        elif len(plan) < wanted + 2:
            break
    if targets:
        out += ["### Related:", ""]
        for n, other in enumerate(targets, 1):
            target = plan[other]
            names = [contexts[t] for t in target.tags[: rng.randint(1, 3)]]
            if target.story >= 0 and (target.story == ev.story or rng.random() < 0.3):
                names.append(stories[target.story])
            pad = " " if rng.random() < 0.5 else ""
            out.append(
                f"{n}. [{pad}{target.summary}{pad}](/{target.dir}/{target.slug}.md)"
                f" _Context: {', '.join(names)}_"
            )
    return "\n".join(out) + "\n"


def verify(dest: Path, sample: int, seed: int = 1) -> list[str]:
    """Parse ``sample`` random pages of an archive; return the problems found."""
    from feedbot.archive.parse import parse_page
    from feedbot.errors import ParseError

    rng = random.Random(seed)
    chosen = _reservoir(rng, _pages(dest / "news"), sample)
    problems: list[str] = []
    for page in chosen:
        rel = page.relative_to(dest).as_posix()
        try:
            event = parse_page(page.read_bytes(), rel)
        except ParseError as error:
            problems.append(str(error))
            continue
        for related in event.related:
            target = dest / "news" / f"{related.id}.md"
            if not target.is_file():
                problems.append(f"{rel}: related page {related.id} does not exist")
    return problems


def _pages(news: Path) -> Iterator[Path]:
    """The event pages under ``news``, in a fixed order (no index pages)."""
    for folder, subfolders, files in os.walk(news):
        subfolders.sort()
        for name in sorted(files):
            if name.endswith(".md") and name != "index.md":
                yield Path(folder, name)


def _reservoir(rng: random.Random, items: Iterable[T], size: int) -> list[T]:
    """A uniform sample of ``size`` of ``items`` (all when fewer), holding no more
    than the sample: a million pages' paths need not be listed to pick 2,000."""
    chosen: list[T] = []
    for seen, item in enumerate(items):
        if seen < size:
            chosen.append(item)
        else:
            slot = rng.randrange(seen + 1)
            if slot < size:
                chosen[slot] = item
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="archive root to write (news/ goes inside)")
    parser.add_argument("--events", type=int, default=100_000, help="how many events")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument(
        "--verify", type=int, default=0, metavar="N", help="then parse a sample of N pages"
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    count = make_archive(args.dest, args.events, args.seed)
    seconds = time.perf_counter() - started
    days = sum(1 for _ in (args.dest / "news").glob("*/*/*/index.md"))
    print(f"make_archive: {count} events, {days} days, {seconds:.1f} s -> {args.dest}")
    if args.verify:
        problems = verify(args.dest, args.verify, args.seed)
        for problem in problems[:20]:
            print(problem, file=sys.stderr)
        print(f"verify: {args.verify} pages sampled, {len(problems)} problems")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
