"""Operator templates within limits: the sandbox refuses huge values before making
them, render workers stop a render at the time limit and cap its memory, and the
test render of a new subscription uses a realistic event (and a bare one)."""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import resource
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from feedbot.archive.parse import parse_page
from feedbot.errors import ConfigError, TemplateError, TemplateLimit
from feedbot.notify.payload_templates import (
    MAX_POWER_BITS,
    SEED_PAGE,
    SEED_PAGE_PATH,
    compile_template,
    samples,
)
from feedbot.notify.render_workers import TemplateLimits, TemplateRenderer, check_template
from tests.conftest import PATIENCE, REPO
from tests.daemons import until

GIB = 2**30
# A loop that never ends in a test's time (10**15 turns) and runs only for an
# event with related events.
ENDLESS = (
    "{% for r in event.related %}{% for i in range(100000) %}{% for j in range(100000) %}"
    "{% for k in range(100000) %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}"
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def peak_rss_bytes(who: int) -> int:
    return resource.getrusage(who).ru_maxrss * 1024  # Linux counts in KiB


@pytest.fixture
async def renderer() -> AsyncIterator[TemplateRenderer]:
    made = TemplateRenderer(TemplateLimits(seconds=PATIENCE, memory_mib=128))
    yield made
    await made.aclose()


# -- the sandbox ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{{ 'x' * 10**9 }}", r"'\*' would make a value of 1000000000 items \(max 262144\)"),
        ("{{ [0] * 10**9 }}", r"'\*' would make a value of 1000000000 items"),
        ("{{ 10**9 * event.title }}", r"'\*' would make a value of \d+ items"),
        (
            "{% set s = event.title * 1000 %}{{ s + s }}",
            r"'\+' would make a value of \d+ items \(max 262144\)",
        ),
        (
            "{{ 2 ** (10**9) }}",
            rf"'\*\*' would make an integer of over \d+ bits \(max {MAX_POWER_BITS}\)",
        ),
    ],
    ids=["string", "list", "reversed", "concatenation", "power"],
)
def test_the_sandbox_refuses_a_huge_value_before_making_it(
    tmp_path: Path, text: str, reason: str
) -> None:
    # Compiled and rendered in this very process: were the value made (or folded
    # as a constant when compiling), it would take gigabytes of it.
    before = peak_rss_bytes(resource.RUSAGE_SELF)
    template = compile_template(write(tmp_path, "big.txt.j2", "\n" + text))
    with pytest.raises(TemplateError, match=rf"line 2: {reason}") as caught:
        template.render(samples()[0].context())
    assert caught.value.limit is TemplateLimit.MEMORY
    assert peak_rss_bytes(resource.RUSAGE_SELF) < before + GIB // 4


def test_ordinary_arithmetic_and_concatenation_still_work(tmp_path: Path) -> None:
    template = compile_template(
        write(tmp_path, "t.txt.j2", "{{ '-' * 3 }}{{ [1] + [2] }}{{ 2 ** 10 }}{{ 'a' + 'b' }}")
    )
    assert template.render(samples()[0].context()) == b"---[1, 2]1024ab"


def test_a_template_error_crosses_a_process_boundary_with_its_fields() -> None:
    error = TemplateError("/t.j2", "rendering took over 2 s", line=3, limit=TemplateLimit.TIME)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.reason, copy.line, copy.limit, str(copy)) == (
        "/t.j2",
        "rendering took over 2 s",
        3,
        TemplateLimit.TIME,
        "template /t.j2 line 3: rendering took over 2 s",
    )


# -- render workers ------------------------------------------------------------------------


async def test_a_render_over_the_time_limit_is_stopped_and_the_next_one_renders(
    tmp_path: Path,
) -> None:
    endless = write(tmp_path, "endless.txt.j2", ENDLESS)
    good = write(tmp_path, "good.txt.j2", "{{ event.title }}")
    renderer = TemplateRenderer(TemplateLimits(seconds=0.5))
    try:
        with pytest.raises(TemplateError) as caught:
            await renderer.render(endless, samples()[0].context(), key="sub_a")
        assert (caught.value.limit, caught.value.reason) == (
            TemplateLimit.TIME,
            "rendering took over 0.5 s",
        )
        # Its worker was killed; a fresh one renders the next template.
        payload = await renderer.render(good, samples()[0].context(), key="sub_a")
        assert payload.body == samples()[0].event.title.encode()
    finally:
        await renderer.aclose()
    assert multiprocessing.active_children() == []


async def test_a_render_over_the_memory_limit_fails_without_the_process_ballooning(
    tmp_path: Path, renderer: TemplateRenderer
) -> None:
    # str.ljust is not an operator the sandbox can size up front: the worker's
    # address-space limit stops it.
    greedy = write(tmp_path, "greedy.txt.j2", "{{ event.title.ljust(10**9) }}")
    good = write(tmp_path, "good.txt.j2", "{{ event.story }}")
    context = samples()[0].context()
    with pytest.raises(TemplateError) as caught:
        await renderer.render(greedy, context, key="sub_a")
    assert (caught.value.limit, caught.value.reason) == (TemplateLimit.MEMORY, "out of memory")
    # The worker that ran out ended itself; the next render gets a fresh one.
    assert (await renderer.render(good, context, key="sub_a")).body == b"Lal Masjid siege"
    await renderer.aclose()
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        assert peak_rss_bytes(who) < GIB


async def test_renders_of_other_subscriptions_go_on_beside_an_endless_one(
    tmp_path: Path, renderer: TemplateRenderer
) -> None:
    endless = write(tmp_path, "endless.txt.j2", ENDLESS)
    good = write(tmp_path, "good.txt.j2", "{{ event.title }}")
    context = samples()[0].context()
    stuck = asyncio.ensure_future(renderer.render(endless, context, key="sub_stuck"))
    # A second render of the same subscription waits its turn: one worker at most.
    queued = asyncio.ensure_future(renderer.render(endless, context, key="sub_stuck"))
    await until(lambda: renderer.rendering == 1, what="the endless render under way")
    for n in range(3):
        payload = await renderer.render(good, context, key=f"sub_{n}")
        assert payload.body == samples()[0].event.title.encode()
    assert not stuck.done() and not queued.done() and renderer.rendering == 1
    for task in (stuck, queued):
        task.cancel()
    await asyncio.gather(stuck, queued, return_exceptions=True)
    await renderer.aclose()
    assert multiprocessing.active_children() == []  # the endless render's worker too


# -- the test render -----------------------------------------------------------------------


def test_the_sample_is_the_seed_page_as_feedbot_parses_it() -> None:
    page = REPO / "examples" / "archive" / SEED_PAGE_PATH
    assert page.read_text(encoding="utf-8") == SEED_PAGE
    seed, bare = samples()
    assert seed.event == parse_page(page.read_bytes(), str(page))
    # What a template meets in real alerts: a story, sources, related events of
    # both kinds with their contexts, topics, a matched topic and a reply.
    event = seed.event
    assert event.story and event.sources and len(event.topics) == 3
    assert len(event.follow_ups()) == 4 and len(event.background()) == 1
    assert seed.matched_topics and seed.in_reply_to == (event.background()[0].id,)
    assert bare.event.story is None
    assert not (bare.event.sources or bare.event.related or bare.event.topics)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        # Fails only on an event with more than two related events, as real ones have.
        (
            '{"t": {{ event.title|tojson }}{% if event.related|length > 2 %}{{ nope }}{% endif %}}',
            r"line 1: 'nope' is undefined \(in the test render of the seed page's event\)",
        ),
        # Fails only on a follow-up with no background of the same context.
        (
            "{% for r in follow_ups %}{{ background[loop.index0].title }}{% endfor %}",
            r"line 1: list object has no element 1 \(in the test render of the seed page's event\)",
        ),
        # Fails only on an event without sources.
        (
            "{{ event.sources[0].url }}",
            r"line 1: list object has no element 0 \(in the test render of an event without",
        ),
        ("{{ 'x' * 10**9 }}", r"line 1: '\*' would make a value of 1000000000 items"),
    ],
    ids=["many-related", "follow-ups", "no-sources", "huge"],
)
def test_a_template_that_fails_on_real_data_is_refused_when_added(
    tmp_path: Path, text: str, reason: str
) -> None:
    path = write(tmp_path, "alert.txt.j2", text)
    with pytest.raises(ConfigError, match=rf"^format: template {path} {reason}"):
        check_template(path, TemplateLimits(seconds=PATIENCE))


def test_a_template_heavy_on_real_data_is_refused_at_the_time_limit(tmp_path: Path) -> None:
    path = write(tmp_path, "alert.txt.j2", ENDLESS)
    with pytest.raises(ConfigError, match=rf"^format: template {path}: .* took over 1\.5 s$"):
        check_template(path, TemplateLimits(seconds=0.5))
    assert multiprocessing.active_children() == []


def test_a_good_template_passes_its_test_render(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "alert.json.j2",
        '{"text": {{ event.title|tojson }}, "related": {{ event.related|length }},'
        ' "first": {{ (event.sources[0].url if event.sources else none)|tojson }}}',
    )
    check_template(path)
