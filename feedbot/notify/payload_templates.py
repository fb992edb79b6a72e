"""An operator's own payload template (``format = "template:PATH"``): compiling it
in Jinja2's sandbox, rendering it within its caps, and its test render.

This module renders in the calling process and bounds what Python can bound
cheaply; :mod:`feedbot.notify.render_workers` calls it inside worker processes,
where a time limit and an address-space limit bound the rest. The daemon never
compiles nor renders an operator's template in its own process: Jinja2 folds
constant expressions when it compiles, so even compiling ``{{ 'x' * 10**9 }}``
would build that string.

- The sandbox is Jinja2's ``ImmutableSandboxedEnvironment`` (no attribute of
  Python internals, no mutation of the context, ``range`` capped), without
  autoescaping (the output is a request body, not HTML), with ``StrictUndefined``
  (a misspelt name is an error, not an empty string) and a ``tojson`` filter.
  It also intercepts ``+``, ``*`` and ``**`` (Jinja2's documented
  ``intercepted_binops``) and refuses, before computing it, a string or list
  longer than the output cap or an integer power of more than
  :data:`MAX_POWER_BITS` bits: ``{{ 'x' * 10**9 }}`` fails at once with that
  reason instead of allocating a gigabyte. Intercepted operators are not folded
  at compile time either.
- The output is counted as it is generated and cut off at ``max_bytes``; JSON
  output (by the file name) must parse.
- The test render (:func:`check_samples`) renders :func:`samples`: the seed page
  of the archive format as feedbot parses it (a story, a source, five related
  events of both kinds with their contexts, one holding links in its text, three
  topics, a matched topic and a reply) and a bare event (no story, sources,
  related events or topics), so a template that only fails on real data, or only
  on sparse data, is refused when the subscription is made.

Its context is the ``json`` body (``type``, ``timestamp``, ``data``) and as
shortcuts ``event``, ``matched_topics``, ``in_reply_to``, ``follow_ups`` and
``background`` (related events, each with its ``url``). Archive text only
reaches a template as data, cleaned of control characters.
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from feedbot.errors import ConfigError, NotifyError, TemplateError, TemplateLimit
from feedbot.feeds import urls
from feedbot.model import Event, RelatedKind
from feedbot.notify.formats import JSON_CONTENT_TYPE, MAX_TEMPLATE_OUTPUT, alert_body

# The largest integer ``**`` may compute: far above any number an alert shows, far
# below the seconds that 10**10**8 takes.
MAX_POWER_BITS = 4096

_TEMPLATE_SUFFIXES = (".j2", ".jinja", ".jinja2", ".tmpl")
_CONTENT_TYPES = {
    ".json": JSON_CONTENT_TYPE,
    ".xml": "application/xml",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}


class _OperatorSandbox(ImmutableSandboxedEnvironment):
    """The sandbox, refusing ``+``, ``*`` and ``**`` whose result is over the caps."""

    intercepted_binops = frozenset({"+", "*", "**"})

    def __init__(self, *args: Any, max_items: int, path: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_items = max_items
        self.path = path

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        refusal = _too_big(operator, left, right, self.max_items)
        if refusal is not None:
            raise _Refused(refusal)
        return super().call_binop(context, operator, left, right)


class _Refused(Exception):
    """The sandbox refused an operation over the caps (the render names the line)."""


def _too_big(operator: str, left: Any, right: Any, max_items: int) -> str | None:
    """Why ``left operator right`` must not be computed, or None: a string or list
    of more than ``max_items`` items, an integer of more than MAX_POWER_BITS bits."""
    items = None
    if operator == "*":
        for sequence, count in ((left, right), (right, left)):
            if isinstance(sequence, str | list | tuple) and isinstance(count, int):
                items = len(sequence) * max(count, 0)
    elif operator == "+":
        if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            items = len(left) + len(right)
    elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
        bits = (abs(left).bit_length() - 1) * right  # at least this many; 0 for -1, 0, 1
        if bits > MAX_POWER_BITS:
            return f"'**' would make an integer of over {bits} bits (max {MAX_POWER_BITS})"
    if items is not None and items > max_items:
        return f"'{operator}' would make a value of {items} items (max {max_items})"
    return None


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    """An operator's payload template, compiled in the sandbox."""

    path: Path
    template: jinja2.Template
    content_type: str
    max_bytes: int = MAX_TEMPLATE_OUTPUT

    def render(self, context: Mapping[str, Any]) -> bytes:
        """The body for ``context``; ``TemplateError`` naming the file and line
        (and the limit, if it ran over one) on failure."""
        size = 0
        chunks: list[bytes] = []
        try:
            for chunk in self.template.generate(context):
                data = chunk.encode("utf-8", "backslashreplace")
                size += len(data)
                if size > self.max_bytes:
                    raise TemplateError(
                        str(self.path),
                        f"output is over {self.max_bytes} bytes",
                        limit=TemplateLimit.OUTPUT,
                    )
                chunks.append(data)
        except TemplateError:
            raise
        except _Refused as exc:
            raise TemplateError(
                str(self.path), str(exc), line=_where(exc, self.path), limit=TemplateLimit.MEMORY
            ) from None
        except MemoryError as exc:
            chunks.clear()
            # Chained: a render worker that sees it ends itself (see render_workers).
            raise TemplateError(
                str(self.path), "out of memory", limit=TemplateLimit.MEMORY
            ) from exc
        except Exception as exc:  # a sandboxed template can raise almost anything
            raise TemplateError(str(self.path), str(exc), line=_where(exc, self.path)) from exc
        body = b"".join(chunks)
        if self.content_type == JSON_CONTENT_TYPE:
            try:
                json.loads(body)
            except ValueError as exc:
                raise TemplateError(str(self.path), f"output is not valid JSON: {exc}") from None
        return body


def _where(exc: BaseException, path: Path) -> int | None:
    """The line of the template where ``exc`` happened, if the traceback tells."""
    lineno = getattr(exc, "lineno", None)
    if isinstance(lineno, int):
        return lineno
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
    return frames[-1].lineno if frames else None


def content_type_of(path: Path) -> str:
    """The content type a template's file name gives (any ``.j2`` removed first)."""
    name = path.name.lower()
    for suffix in _TEMPLATE_SUFFIXES:
        name = name.removesuffix(suffix)
    return _CONTENT_TYPES.get(Path(name).suffix, JSON_CONTENT_TYPE)


def compile_template(
    path: str | os.PathLike[str], *, max_bytes: int = MAX_TEMPLATE_OUTPUT
) -> CompiledTemplate:
    """Load and compile an operator's template (no test render: see
    :func:`check_samples`). A file that cannot be read or does not compile is a
    ``ConfigError`` naming the field ``format``, the file and the line."""
    file = Path(path)
    try:
        source = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError.about("format", f"cannot read template {file}: {exc}") from None
    environment = _OperatorSandbox(
        # This one file and no other: {% include %} and {% import %} find nothing.
        loader=jinja2.FunctionLoader(
            lambda name: (source, str(file), lambda: True) if name == file.name else None
        ),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        max_items=max_bytes,
        path=file,
    )
    environment.filters["tojson"] = _tojson
    try:
        template = environment.get_template(file.name)
    except jinja2.TemplateSyntaxError as exc:
        reason = f"template {file} line {exc.lineno}: {exc.message}"
        raise ConfigError.about("format", reason) from None
    except MemoryError:
        raise ConfigError.about("format", f"template {file}: out of memory when compiled") from None
    return CompiledTemplate(file, template, content_type_of(file), max_bytes)


def _tojson(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def template_context(body: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    """What an operator's template sees for the alert whose ``json`` body is
    ``body`` (:func:`~feedbot.notify.formats.alert_body`): plain data, as it
    crosses to a render worker. A digest's or a notice's body is about no one
    event: the template sees it as it is (``type``, ``data``)."""
    data = body["data"]
    if "event" not in data:
        return dict(body)
    related = {
        kind: [
            {**item, "url": urls.event_url(base_url, item["id"])}
            for item in data["event"]["related"]
            if item["kind"] == kind.value
        ]
        for kind in RelatedKind
    }
    return {
        **body,
        "event": data["event"],
        "matched_topics": data["matched_topics"],
        "in_reply_to": data["in_reply_to"],
        "follow_ups": related[RelatedKind.FOLLOW_UP],
        "background": related[RelatedKind.BACKGROUND],
    }


# -- the test render -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """An alert the test render renders: what it is, and its context's parts."""

    description: str
    event: Event
    matched_topics: tuple[str, ...]
    in_reply_to: tuple[str, ...]
    timestamp: datetime

    def context(self) -> dict[str, Any]:
        body = alert_body(
            self.event,
            base_url=SAMPLE_BASE_URL,
            matched_topics=self.matched_topics,
            in_reply_to=self.in_reply_to,
            timestamp=self.timestamp,
        )
        return template_context(body, SAMPLE_BASE_URL)


SAMPLE_BASE_URL = "https://feedbot.example"

# The seed page of README: "The archive format", verbatim (examples/archive holds
# it too; tests/test_templates_limits.py checks that they are the same).
SEED_PAGE_PATH = (
    "news/2007/07/9/lal-masjid-siege-an-attempt-to-negotiate-a-peaceful-end-to-the-seven-day-"
    "standoff-at-islamabad-s-red-mosque-ends-without-any-progress.md"
)
SEED_PAGE = (
    "\n".join(
        (
            "",
            "Formats: [HTML](/news/2007/07/9/lal-masjid-siege-an-attempt-to-negotiate-a-peaceful-end-to-the-seven-day-standoff-at-islamabad-s-red-mosque-ends-without-any-progress.html)  [JSON](/news/2007/07/9/lal-masjid-siege-an-attempt-to-negotiate-a-peaceful-end-to-the-seven-day-standoff-at-islamabad-s-red-mosque-ends-without-any-progress.json)  [XML](/news/2007/07/9/lal-masjid-siege-an-attempt-to-negotiate-a-peaceful-end-to-the-seven-day-standoff-at-islamabad-s-red-mosque-ends-without-any-progress.xml)  ",
            "",
            "### [2007-07-9](/news/2007/07/9/index.md)",
            "",
            "##### Lal Masjid siege",
            "#  Lal Masjid siege: An attempt to negotiate a peaceful end to the seven-day standoff at Islamabad's Red Mosque ends without any progress. ",
            "",
            "",
            "",
            "",
            "### Sources:",
            "",
            "1. [Al jazeera](http://english.aljazeera.net/NR/exeres/628DFB93-8F23-49C3-A56E-EBD006B0D607.htm)",
            "",
            "### Related:",
            "",
            "1. [ An explosion near the Red Mosque in the Pakistani capital Islamabad kills at least 10 people. The attack came on the first anniversary of the deadly siege and storming of the Red Mosque. ](/news/2008/07/6/an-explosion-near-the-red-mosque-in-the-pakistani-capital-islamabad-kills-at-least-10-people-the-attack-came-on-the-first-anniversary-of-t.md) _Context: Islamabad, Red Mosque_",
            "2. [ Lal Masjid clashes: At least seven people have been killed in clashes between security forces and militant students at a mosque in the Pakistani capital Islamabad. ](/news/2007/07/3/lal-masjid-clashes-at-least-seven-people-have-been-killed-in-clashes-between-security-forces-and-militant-students-at-a-mosque-in-the-paki.md) _Context: Islamabad, Red Mosque_",
            "3. [ Pakistani forces storm the Lal Masjid Mosque in Islamabad, bringing the Lal Masjid siege to an end. At least 3 soldiers and 40 militants die in the assault. [https:--www.reuters.com-article-topNews-idUSISL18833720070710?feedType=RSS (Reuters)] [http:--www.foxnews.com-story-0,2933,288736,00.html (FOX)]. Abdul Rashid Ghazi, a top clerics was confirmed dead according to Interior ministry sources.](/news/2007/07/10/pakistani-forces-storm-the-lal-masjid-mosque-in-islamabad-bringing-the-lal-masjid-siege-to-an-end-at-least-3-soldiers-and-40-militants-di.md) _Context: Islamabad, Lal Masjid siege_",
            "4. [Pakistan's government calls for troops to be deployed in the capital, Islamabad, after violence breaks out during protests by Islamists that were organized by the Tehreek-e-Labaik. ](/news/2017/11/26/pakistan-s-government-calls-for-troops-to-be-deployed-in-the-capital-islamabad-after-violence-breaks-out-during-protests-by-islamists-that.md) _Context: Islamabad_",
            "5. [Pakistani Chief of Air Staff Sohail Aman warns India not to escalate tensions in the disputed territory of Kashmir under the threat of a full-scale war. British Foreign Secretary Boris Johnson urges both sides to restrain themselves while on a diplomatic mission to Islamabad. ](/news/2016/11/24/pakistani-chief-of-air-staff-sohail-aman-warns-india-not-to-escalate-tensions-in-the-disputed-territory-of-kashmir-under-the-threat-of-a-ful.md) _Context: Islamabad_",
        )
    )
    + "\n"
)


@cache
def samples() -> tuple[Sample, ...]:
    """The alerts of the test render: the seed page's event as feedbot parses it
    (so the sample follows the parser), and a bare event."""
    # Imported here: notify depends on the archive's parser for this sample only.
    from feedbot.archive.parse import parse_page

    seed = parse_page(SEED_PAGE, SEED_PAGE_PATH)
    background = [r.id for r in seed.related if r.kind is RelatedKind.BACKGROUND]
    bare = Event(
        id="2007/07/11/a-bare-event", date=date(2007, 7, 11), story=None, title="A bare event."
    )
    return (
        Sample(
            "the seed page's event",
            seed,
            seed.topic_slugs[:2],
            tuple(background),
            datetime(2007, 7, 9, 18, 30, tzinfo=UTC),
        ),
        Sample(
            "an event without story, sources, related events or topics",
            bare,
            (),
            (),
            datetime(2007, 7, 11, 6, 0, tzinfo=UTC),
        ),
    )


def check_samples(template: CompiledTemplate) -> None:
    """Render every one of :func:`samples`; a failure is a ``ConfigError`` naming the
    field ``format``, the file, the line and the sample."""
    for sample in samples():
        try:
            template.render(sample.context())
        except NotifyError as exc:
            raise ConfigError(
                f"format: {exc} (in the test render of {sample.description})"
            ) from None
