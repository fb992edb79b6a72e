"""Alert payloads: the request body a webhook subscriber gets for a new event.

Owns the payload formats of README: "Webhooks" and nothing about sending them:

- ``json``: the documented body, built as a Python object and serialized with
  ``json.dumps`` (exactness matters more than layout, so no template).
- ``slack`` (incoming-webhook blocks) and ``discord`` (one embed): the layout is a
  Jinja2 template in ``templates/webhook/``; every value it places comes from here
  already cleaned, escaped for the target's markup and cut to the target's limits,
  and goes through ``|tojson``, so the output is always JSON. The output is then
  parsed, checked against the limits again (a template edit cannot break them
  silently) and re-serialized compactly.
- ``template:PATH``: the operator's own Jinja2 template, with the JSON body as
  its context, its output capped at :data:`MAX_TEMPLATE_OUTPUT` bytes; it is
  compiled and rendered in :mod:`.payload_templates`, inside the worker
  processes of :mod:`.render_workers`, never here.

Archive text is untrusted: it only ever reaches a template as data (never as
template source, so no template injection), control characters, lone surrogates
and non-characters are stripped from every display string, and Slack's ``& < >``
and Discord's markdown are escaped, so an event title cannot forge a link or a
mention. Every format carries the event's follow-ups, background and
``in_reply_to`` (earlier alerted events this one relates to).

Lengths are counted in UTF-16 code units, as the chat services count them; an
emoji counts twice, so a cut never overshoots.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from feedbot.errors import ConfigError, NotifyError
from feedbot.feeds import urls
from feedbot.feeds.templates import templates_loader
from feedbot.model import AlertKind, Event, Related, RelatedKind, is_web_url

EVENT_TYPE = "event.created"
# What the chat formats put before the headline of an alert that is not about a
# new event.
KIND_LABELS = {AlertKind.UPDATED: "Updated: ", AlertKind.DELETED: "Removed: "}
JSON_CONTENT_TYPE = "application/json"
MAX_TEMPLATE_OUTPUT = 256 * 1024
ELLIPSIS = "…"

SLACK_HEADER_MAX = 150
SLACK_TEXT_MAX = 3000
SLACK_BLOCKS_MAX = 50
DISCORD_TITLE_MAX = 256
DISCORD_DESCRIPTION_MAX = 4096
DISCORD_FIELDS_MAX = 25
DISCORD_FIELD_NAME_MAX = 256
DISCORD_FIELD_VALUE_MAX = 1024
DISCORD_FOOTER_MAX = 256  # Discord allows 2048; a footer is a one-liner
DISCORD_TOTAL_MAX = 6000
_LINE_MAX = 600  # one list line (a link with its text) in Slack or Discord
_LINK_TEXT_MAX = 200  # the text of one link in such a line

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")


class PayloadKind(StrEnum):
    JSON = "json"
    SLACK = "slack"
    DISCORD = "discord"
    TEMPLATE = "template"
    APPRISE = "apprise"  # the URL is an Apprise URL (feedbot.notify.apprise_target)


@dataclass(frozen=True, slots=True)
class PayloadFormat:
    """A subscription's format; ``str()`` gives it back in the form it was parsed from."""

    kind: PayloadKind
    template_path: Path | None = None

    def __str__(self) -> str:
        if self.kind is PayloadKind.TEMPLATE:
            return f"template:{self.template_path}"
        return self.kind.value


@dataclass(frozen=True, slots=True)
class RenderedPayload:
    body: bytes
    content_type: str


def parse_format(value: str) -> PayloadFormat:
    """``json`` | ``slack`` | ``discord`` | ``apprise`` | ``template:PATH``; anything
    else is a ``ConfigError`` naming the field ``format`` and the value."""
    text = value.strip()
    if text.lower() in ("json", "slack", "discord", "apprise"):
        return PayloadFormat(PayloadKind(text.lower()))
    if text.startswith("template:") and text[len("template:") :].strip():
        return PayloadFormat(PayloadKind.TEMPLATE, Path(text[len("template:") :].strip()))
    raise ConfigError(
        f"format: unknown payload format {value!r} "
        "(expected json, slack, discord, apprise or template:PATH)"
    )


# -- text --------------------------------------------------------------------


def clean_text(text: str) -> str:
    """``text`` without control characters, lone surrogates and non-characters."""
    return _UNSAFE.sub("", text)


def text_length(text: str) -> int:
    """Length in UTF-16 code units, as Slack and Discord count."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def fit(raw: str, limit: int, render: Callable[[str], str] = str) -> str:
    """``render(raw)``, or ``render`` of the longest prefix of ``raw`` plus an
    ellipsis that fits ``limit``; ``""`` when not even that fits.

    Cutting ``raw`` before ``render`` escapes it never splits an escape or a link.
    """
    out = render(raw)
    if text_length(out) <= limit:
        return out
    lo, hi = 0, len(raw)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text_length(render(raw[:mid].rstrip() + ELLIPSIS)) <= limit:
            lo = mid
        else:
            hi = mid - 1
    out = render(raw[:lo].rstrip() + ELLIPSIS)
    return out if text_length(out) <= limit else ""


def fit_items(items: Sequence[str], limit: int, sep: str = "\n") -> str:
    """As many whole ``items`` as fit ``limit``, joined by ``sep``, then "… and N more".

    Items are never cut, so no escape, link or markup in one is ever split.
    """
    kept: list[str] = []
    for index, item in enumerate(items):
        rest = len(items) - index - 1
        # Keep room for the "more" note the next item would need if it did not fit.
        tail = [f"{ELLIPSIS} and {rest} more"] if rest else []
        if text_length(sep.join([*kept, item, *tail])) <= limit:
            kept.append(item)
            continue
        out = sep.join([*kept, f"{ELLIPSIS} and {len(items) - index} more"])
        return out if text_length(out) <= limit else ""
    return sep.join(kept)


def fit_lines(heading: str, lines: Sequence[str], limit: int) -> str:
    """``heading``, then on the next lines as many whole ``lines`` as fit ``limit``."""
    body = fit_items(lines, limit - text_length(heading) - 1)
    return f"{heading}\n{body}" if body else fit(heading, limit)


def clean_event(event: Event) -> Event:
    """A copy of ``event`` whose display strings went through :func:`clean_text`.

    The id is left alone: receivers match it against ids they already have.
    """
    return event.map_text(clean_text)


def iso_utc(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _tojson(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _dumps(value: Any) -> bytes:
    # A lone surrogate can only sit in an event id; backslashreplace writes it as
    # the JSON escape \udXXX, which is what json.dumps(ensure_ascii=True) would do.
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8", "backslashreplace")


# -- json --------------------------------------------------------------------


def alert_body(
    event: Event,
    *,
    base_url: str,
    matched_topics: Sequence[str],
    in_reply_to: Sequence[str],
    timestamp: datetime,
    kind: AlertKind = AlertKind.CREATED,
    previous_title: str | None = None,
) -> dict[str, Any]:
    """The ``json`` body (README: "Webhooks") as a Python object: ``type`` is
    ``event.<kind>``; an update's ``data.previous.title`` is the title before it."""
    data = clean_event(event).to_json()
    data["url"] = urls.event_url(base_url, event.id)
    body: dict[str, Any] = {
        "type": f"event.{kind.value}",
        "timestamp": iso_utc(timestamp),
        "data": {
            "event": data,
            "matched_topics": list(matched_topics),
            "in_reply_to": list(in_reply_to),
        },
    }
    if kind is AlertKind.UPDATED:
        body["data"]["previous"] = {"title": clean_text(previous_title or "")}
    return body


# -- slack and discord ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Link:
    """One entry of a list an alert shows: a source, a related event, a reply."""

    text: str
    url: str
    date: str | None = None


def _related_links(event: Event, base_url: str, kind: RelatedKind) -> list[Link]:
    return [
        Link(r.title or r.id, urls.event_url(base_url, r.id), r.date.isoformat())
        for r in event.related
        if r.kind is kind
    ]


def _reply_links(event: Event, base_url: str, in_reply_to: Sequence[str]) -> list[Link]:
    by_id: dict[str, Related] = {r.id: r for r in event.related}
    links = []
    for event_id in in_reply_to:
        related = by_id.get(event_id)
        text = related.title if related is not None and related.title else clean_text(event_id)
        date = related.date.isoformat() if related is not None else None
        links.append(Link(text, urls.event_url(base_url, event_id), date))
    return links


def link_groups(
    event: Event, base_url: str, in_reply_to: Sequence[str]
) -> list[tuple[str, list[Link]]]:
    """The link lists every chat format shows, in order, empty ones left out."""
    groups = [
        ("Sources", [Link(s.name or s.url, s.url) for s in event.sources]),
        ("Follow-ups", _related_links(event, base_url, RelatedKind.FOLLOW_UP)),
        ("Background", _related_links(event, base_url, RelatedKind.BACKGROUND)),
        ("In reply to", _reply_links(event, base_url, in_reply_to)),
    ]
    return [(name, links) for name, links in groups if links]


def slack_escape(text: str) -> str:
    """Slack's mrkdwn escaping: ``&``, ``<`` and ``>``, so no link or mention can be forged."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_url(url: str) -> str:
    """``url`` safe inside ``<url|text>``: no ``|``, ``<``, ``>`` or space; ``&`` escaped."""
    return quote(url, safe="%/:=&;?~#+!$,'()*@[]").replace("&", "&amp;")


def _slack_line(link: Link) -> str:
    prefix = f"• {link.date} · " if link.date else "• "
    text = fit(link.text, _LINK_TEXT_MAX)
    if is_web_url(link.url):
        url = _slack_url(link.url)
        line = fit(text, _LINE_MAX, lambda t: f"{prefix}<{url}|{slack_escape(t)}>")
        if line:
            return line
    return fit(text, _LINE_MAX, lambda t: prefix + slack_escape(t))


def _slack_view(
    event: Event,
    base_url: str,
    matched: Sequence[str],
    in_reply_to: Sequence[str],
    kind: AlertKind = AlertKind.CREATED,
    previous_title: str | None = None,
) -> dict[str, Any]:
    label = KIND_LABELS.get(kind, "")
    url = _slack_url(urls.event_url(base_url, event.id))
    summary_tail = f"\n_{event.date.isoformat()}_ · <{url}|Event page>"
    matched_set = set(matched)
    topic_names = [
        f"*{slack_escape(t.name)}*" if t.slug in matched_set else slack_escape(t.name)
        for t in event.topics
    ]
    previously = (
        [fit(previous_title, SLACK_TEXT_MAX, lambda t: "*Previously*\n" + slack_escape(t))]
        if previous_title
        else []
    )
    return {
        "fallback": fit(label + event.title, SLACK_TEXT_MAX, slack_escape),
        # Slack refuses an empty text; an event always has an id.
        "header": fit(
            label + (event.story or event.title or clean_text(event.id)), SLACK_HEADER_MAX
        ),
        "summary": fit(event.title, SLACK_TEXT_MAX, lambda t: slack_escape(t) + summary_tail),
        "sections": previously
        + [
            fit_lines(f"*{name}*", [_slack_line(link) for link in links], SLACK_TEXT_MAX)
            for name, links in link_groups(event, base_url, in_reply_to)
        ],
        "topics": "Topics: " + fit_items(topic_names, SLACK_TEXT_MAX - 8, " · ")
        if topic_names
        else "",
    }


def _check_slack(payload: Any) -> None:
    blocks = payload["blocks"]
    if len(blocks) > SLACK_BLOCKS_MAX:
        raise NotifyError(f"slack payload has {len(blocks)} blocks (max {SLACK_BLOCKS_MAX})")
    for block in blocks:
        texts = [block["text"]] if "text" in block else block.get("elements", [])
        limit = SLACK_HEADER_MAX if block["type"] == "header" else SLACK_TEXT_MAX
        for text in texts:
            if text_length(text["text"]) > limit:
                raise NotifyError(f"slack {block['type']} block text over {limit} characters")


_DISCORD_MARKUP = re.compile(r"([\\*_~`|<>\[\]()#])")


def discord_escape(text: str) -> str:
    """Backslash-escape Discord markdown, so archive text renders as typed."""
    return _DISCORD_MARKUP.sub(r"\\\1", text)


def _discord_line(link: Link) -> str:
    prefix = f"• {link.date} · " if link.date else "• "
    text = fit(link.text, _LINK_TEXT_MAX)
    if is_web_url(link.url):
        url = quote(link.url, safe="%/:=&;?~#+!$,'*@")
        line = fit(text, _LINE_MAX, lambda t: f"{prefix}[{discord_escape(t)}]({url})")
        if line:
            return line
    return fit(text, _LINE_MAX, lambda t: prefix + discord_escape(t))


def _discord_view(
    event: Event,
    base_url: str,
    matched: Sequence[str],
    in_reply_to: Sequence[str],
    when: str,
    kind: AlertKind = AlertKind.CREATED,
    previous_title: str | None = None,
) -> dict[str, Any]:
    """The embed's parts, allotted from the 6000-unit total in order of importance:
    title, footer, date line, then each field, then the rest of a long title."""
    budget = DISCORD_TOTAL_MAX
    label = KIND_LABELS.get(kind, "")
    title = fit(label + (event.title or clean_text(event.id)), DISCORD_TITLE_MAX)
    footer = fit(("feedbot · " + ", ".join(matched)) if matched else "feedbot", DISCORD_FOOTER_MAX)
    dated = f"**{event.date.isoformat()}**"
    line = dated
    if event.story:
        line = fit(event.story, 300, lambda s: f"{dated} · {discord_escape(s)}") or dated
    budget -= text_length(title) + text_length(footer) + text_length(line)

    fields: list[dict[str, Any]] = []
    matched_set = set(matched)
    groups: list[tuple[str, list[str], str]] = [
        (name, [_discord_line(link) for link in links], "\n")
        for name, links in link_groups(event, base_url, in_reply_to)
    ]
    if previous_title:
        previously = fit(previous_title, DISCORD_FIELD_VALUE_MAX, discord_escape)
        groups.insert(0, ("Previously", [previously], "\n"))
    if event.topics:
        names = [
            f"**{discord_escape(t.name)}**" if t.slug in matched_set else discord_escape(t.name)
            for t in event.topics
        ]
        groups.append(("Topics", names, " · "))
    for name, items, sep in groups[:DISCORD_FIELDS_MAX]:
        room = min(DISCORD_FIELD_VALUE_MAX, budget - text_length(name))
        value = fit_items(items, room, sep) if room > 0 else ""
        if not value:
            continue
        fields.append({"name": name, "value": value})
        budget -= text_length(name) + text_length(value)

    description = line
    # A cut title continues in the description, as far as the budget goes.
    if event.title and title != label + event.title:
        room = min(DISCORD_DESCRIPTION_MAX - text_length(line), budget) - 1
        rest = fit(event.title, room, discord_escape) if room > 0 else ""
        if rest:
            description += "\n" + rest
    return {
        "title": title,
        "url": urls.event_url(base_url, event.id),
        "description": description,
        "timestamp": when,
        "fields": fields,
        "footer": footer,
    }


def discord_embed_length(embed: Mapping[str, Any]) -> int:
    """The characters Discord counts against the 6000 limit of an embed."""
    total = text_length(embed.get("title", "")) + text_length(embed.get("description", ""))
    total += text_length(embed.get("footer", {}).get("text", ""))
    total += text_length(embed.get("author", {}).get("name", ""))
    for field in embed.get("fields", []):
        total += text_length(field["name"]) + text_length(field["value"])
    return total


def _check_discord(payload: Any) -> None:
    total = 0
    for embed in payload["embeds"]:
        checks = [
            ("title", text_length(embed.get("title", "")), DISCORD_TITLE_MAX),
            ("description", text_length(embed.get("description", "")), DISCORD_DESCRIPTION_MAX),
            ("fields", len(embed.get("fields", [])), DISCORD_FIELDS_MAX),
        ]
        for field in embed.get("fields", []):
            checks.append(("field name", text_length(field["name"]), DISCORD_FIELD_NAME_MAX))
            checks.append(("field value", text_length(field["value"]), DISCORD_FIELD_VALUE_MAX))
        for what, size, limit in checks:
            if size > limit:
                raise NotifyError(f"discord embed {what} is {size} long (max {limit})")
        total += discord_embed_length(embed)
    if total > DISCORD_TOTAL_MAX:
        raise NotifyError(f"discord embeds hold {total} characters (max {DISCORD_TOTAL_MAX})")


@cache
def _builtin_environment() -> jinja2.Environment:
    # Our own templates, producing JSON: no HTML autoescaping, values via |tojson.
    environment = jinja2.Environment(
        loader=templates_loader(),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["tojson"] = _tojson
    return environment


def _render_builtin(name: str, view: Mapping[str, Any], check: Callable[[Any], None]) -> bytes:
    text = _builtin_environment().get_template(f"webhook/{name}.json.j2").render(view)
    payload = json.loads(text)
    check(payload)
    return _dumps(payload)


# -- the entry point ---------------------------------------------------------------


def render_payload(
    fmt: PayloadFormat | str,
    event: Event,
    *,
    base_url: str,
    matched_topics: Sequence[str],
    in_reply_to: Sequence[str],
    timestamp: datetime,
    kind: AlertKind = AlertKind.CREATED,
    previous_title: str | None = None,
) -> RenderedPayload:
    """The body of one alert about ``event`` in the built-in format ``fmt``.

    ``base_url`` roots the links to the event's page and to its related events;
    ``timestamp`` (timezone-aware) is the alert's time. An operator's template
    (``template:PATH``) is not rendered here but in a worker process, within
    limits (:mod:`feedbot.notify.render_workers`). ``kind`` is what happened to
    the event; an update carries its ``previous_title``.
    """
    if isinstance(fmt, str):
        fmt = parse_format(fmt)
    body = alert_body(
        event,
        base_url=base_url,
        matched_topics=matched_topics,
        in_reply_to=in_reply_to,
        timestamp=timestamp,
        kind=kind,
        previous_title=previous_title,
    )
    if fmt.kind is PayloadKind.JSON:
        return RenderedPayload(_dumps(body), JSON_CONTENT_TYPE)
    clean = clean_event(event)
    if fmt.kind is PayloadKind.SLACK:
        previous = None if previous_title is None else clean_text(previous_title)
        view = _slack_view(clean, base_url, matched_topics, in_reply_to, kind, previous)
        return RenderedPayload(_render_builtin("slack", view, _check_slack), JSON_CONTENT_TYPE)
    if fmt.kind is PayloadKind.DISCORD:
        previous = None if previous_title is None else clean_text(previous_title)
        view = _discord_view(
            clean, base_url, matched_topics, in_reply_to, body["timestamp"], kind, previous
        )
        return RenderedPayload(_render_builtin("discord", view, _check_discord), JSON_CONTENT_TYPE)
    raise ValueError(
        f"{fmt}: an operator's template renders in a worker (feedbot.notify.render_workers), "
        "an Apprise message in feedbot.notify.apprise_messages"
    )
