"""Apprise messages: the title and body an Apprise URL is sent for an alert, a
digest or an operator notice.

Owns the words of the ``apprise`` format and nothing about sending them
(:mod:`feedbot.notify.apprise_target` sends, and is the one module that touches
Apprise). The layout is a Jinja2 template per message and body format in
``templates/apprise/`` (``alert.md.j2``, ``digest.html.j2``, ...), rendered in a
sandboxed environment that autoescapes the HTML ones only. Which format a target
gets is its plugin's (``text``, ``markdown`` or ``html``): a mail gets HTML (with
the plain-text part Apprise derives from it), ntfy text unless its URL asks for
markdown.

Archive text is untrusted. It reaches a template only as data, cleaned of control
characters (:func:`~feedbot.notify.formats.clean_text`); in markdown its
metacharacters are backslash-escaped, so a title cannot forge a link, emphasis or
a list; in HTML it is autoescaped; only ``http(s)`` URLs ever become links, and
every URL is percent-quoted, so none can close the markup around it.

The title is plain text in every format: the services put it in a field of its
own (a mail's subject, ntfy's title), which they escape themselves where needed.
A target with no titles (``title_max`` 0: Telegram, Mastodon, most SMS) gets it as
the body's first line instead; a title cut to ``title_max`` is repeated whole
there. The body is kept within ``body_max`` (0: no limit) by dropping whole list
items from the end, a list saying how many it left out, and when even that is not
enough by cutting the free text (a story, a headline) with an ellipsis; every cut
happens before rendering, so markup is never split. Lengths are counted in UTF-16
code units (:func:`~feedbot.notify.formats.text_length`), never fewer than the
characters Apprise counts.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal, Protocol
from urllib.parse import quote

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from feedbot.feeds import urls
from feedbot.feeds.templates import templates_loader
from feedbot.model import (
    AlertKind,
    Digest,
    DigestItem,
    Event,
    Notice,
    NoticeKind,
    Topic,
    is_web_url,
)
from feedbot.notify.formats import (
    KIND_LABELS,
    clean_event,
    clean_text,
    fit,
    iso_utc,
    link_groups,
    text_length,
)

BodyFormat = Literal["text", "markdown", "html"]
BODY_FORMATS: tuple[BodyFormat, ...] = ("text", "markdown", "html")

_NOTICE_TITLES = {
    NoticeKind.SUBSCRIPTION_DISABLED: "feedbot: subscription disabled",
    NoticeKind.DELIVERY_EXHAUSTED: "feedbot: delivery exhausted",
}
_SUFFIXES: dict[BodyFormat, str] = {"text": "txt", "markdown": "md", "html": "html"}
_LINK_TEXT_MAX = 200  # the text of one link in a list
# Free text is first cut to this share of the body (a story of 10,000 characters
# would otherwise leave room for nothing else) before list items are dropped.
_TEXT_SHARE = 2


@dataclass(frozen=True, slots=True)
class AppriseMessage:
    """What Apprise is handed: ``body`` is in ``body_format``, ``title`` plain text
    (empty when the target has no titles and the headline opens the body)."""

    title: str
    body: str
    body_format: BodyFormat


class MessageTarget(Protocol):
    """What a message must fit (an :class:`~feedbot.notify.apprise_target.AppriseTarget`)."""

    @property
    def body_format(self) -> BodyFormat: ...

    @property
    def title_max(self) -> int: ...

    @property
    def body_max(self) -> int: ...


# -- escaping --------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_~\[\]()<>#|!])")
# Only at the start of a line (after any spaces): a list item, a setext
# underline, a numbered item.
_MD_LEADING = re.compile(r"^(\s*)([-+=])")
_MD_NUMBERED = re.compile(r"^(\s*\d+)([.)])")


def markdown_escape(text: str) -> str:
    """``text`` with markdown metacharacters backslash-escaped, so it renders as
    typed: no link, image, emphasis, code, HTML or list can be made of it."""
    escaped = _MD_SPECIAL.sub(r"\\\1", text)
    escaped = _MD_LEADING.sub(r"\1\\\2", escaped)
    return _MD_NUMBERED.sub(r"\1\\\2", escaped)


def _plain(text: str) -> str:
    return text


# How a plain string is written in each body format (the fallback body).
_ESCAPES: dict[BodyFormat, Callable[[str], str]] = {
    "text": _plain,
    "markdown": markdown_escape,
    "html": html.escape,
}


def _href(url: str) -> str:
    """``url`` percent-quoted where it could end the markup around it: no space,
    quote, parenthesis or angle bracket is left (``%`` stays, so quoting twice
    changes nothing)."""
    return quote(url.strip(), safe="%/:=&;?~#+!$,*@[]", errors="surrogatepass")


# -- the views the templates render ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Item:
    """One list entry: ``url`` is set only for a web URL (already quoted)."""

    text: str
    url: str | None = None
    date: str | None = None
    strong: bool = False


@dataclass(frozen=True, slots=True)
class _Section:
    """A list under a heading; ``inline`` ones (topics) run on one line. ``more``
    counts the items left out for length."""

    name: str | None
    items: tuple[_Item, ...]
    more: int = 0
    inline: bool = False


def _link(text: str, url: str | None = None, date: str | None = None) -> _Item:
    shown = fit(text, _LINK_TEXT_MAX)
    return _Item(shown, _href(url) if url is not None and is_web_url(url) else None, date)


def _kept(sections: Sequence[_Section], kept: int) -> tuple[list[_Section], int]:
    """The first ``kept`` items of ``sections`` in order, each section saying how
    many of its own it left out; sections left with none are dropped, and their
    items counted in the second value."""
    shown: list[_Section] = []
    omitted = 0
    for section in sections:
        take = max(0, min(kept, len(section.items)))
        kept -= take
        if take == 0:
            omitted += len(section.items)
            continue
        more = len(section.items) - take
        shown.append(_Section(section.name, section.items[:take], more, section.inline))
    return shown, omitted


# -- rendering and fitting --------------------------------------------------------------


@cache
def _environment() -> SandboxedEnvironment:
    # Our own templates, sandboxed all the same: what they place is archive text.
    # Only the HTML ones are autoescaped; markdown is escaped by the |md filter.
    environment = SandboxedEnvironment(
        loader=templates_loader(),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html.j2",), default_for_string=False, default=False
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["md"] = markdown_escape
    return environment


def _render(name: str, body_format: BodyFormat, context: Mapping[str, Any]) -> str:
    template = _environment().get_template(f"apprise/{name}.{_SUFFIXES[body_format]}.j2")
    return template.render(context).strip()


def _body_format(target: MessageTarget) -> BodyFormat:
    if target.body_format not in BODY_FORMATS:
        raise ValueError(f"unknown body format {target.body_format!r}")
    return target.body_format


def _cut(text: str | None, cap: int | None) -> str | None:
    """``text`` cut to ``cap`` with an ellipsis (None: whole); None when nothing is left."""
    if not text:
        return None
    return (text if cap is None else fit(text, cap)) or None


def _title(headline: str, title_max: int) -> tuple[str, str | None]:
    """The message title, and the headline for the body's first line: the whole
    headline when the target has no titles or it had to be cut."""
    if title_max <= 0:
        return "", headline
    title = fit(headline, title_max)
    return title, None if title == headline else headline


def _fitted(
    build: Callable[[int | None, int], str],
    items: int,
    limit: int,
    body_format: BodyFormat,
    fallback: str,
) -> str:
    """``build(cap, kept)`` (free text cut to ``cap``, None: whole; the first
    ``kept`` list items) within ``limit``: all of it if it fits, else as many items
    as fit with the free text at its share, else none and the free text cut as
    far as needed. Below even that (a limit of a few dozen characters) the body is
    ``fallback`` alone, escaped and cut. ``limit`` 0: no limit."""
    whole = build(None, items)
    if limit <= 0 or text_length(whole) <= limit:
        return whole

    def fits(cap: int | None, kept: int) -> bool:
        return text_length(build(cap, kept)) <= limit

    share = max(1, limit // _TEXT_SHARE)
    if fits(share, 0):
        low, high = 0, items  # low always fits
        while low < high:
            middle = (low + high + 1) // 2
            if fits(share, middle):
                low = middle
            else:
                high = middle - 1
        return build(share, low)
    if fits(0, 0):
        low, high = 0, share
        while low < high:
            middle = (low + high + 1) // 2
            if fits(middle, 0):
                low = middle
            else:
                high = middle - 1
        return build(low, 0)
    return fit(fallback, limit, _ESCAPES[body_format])


# -- alerts ----------------------------------------------------------------------------


def _alert_sections(
    event: Event, base_url: str, matched_topics: Sequence[str], in_reply_to: Sequence[str]
) -> list[_Section]:
    """The lists of an alert, in the order they show and are kept: sources,
    follow-ups, background, in reply to, topics, the matched topics' feeds."""
    matched = set(matched_topics)
    names = {t.slug: t.name for t in event.topics}
    sections = [
        _Section(name, tuple(_link(link.text, link.url, link.date) for link in links))
        for name, links in link_groups(event, base_url, in_reply_to)
    ]
    sections += [
        _Section(
            "Topics",
            tuple(
                _Item(fit(t.name, _LINK_TEXT_MAX), strong=t.slug in matched) for t in event.topics
            ),
            inline=True,
        ),
        _Section(
            "Topic feeds",
            tuple(
                _link(names.get(slug) or clean_text(slug), urls.feed_url(base_url, slug))
                for slug in dict.fromkeys(matched_topics)
            ),
        ),
    ]
    return [section for section in sections if section.items]


def alert_message(
    target: MessageTarget,
    event: Event,
    *,
    base_url: str,
    matched_topics: Sequence[str] = (),
    in_reply_to: Sequence[str] = (),
    kind: AlertKind = AlertKind.CREATED,
    previous_title: str | None = None,
    timestamp: datetime | None = None,
) -> AppriseMessage:
    """The message about ``event`` (new, updated or removed, as ``kind`` says):
    its title as the title, then its story, date and page, what an update changed
    it from, its sources, follow-ups, background, the earlier alerted events it
    replies to, its topics (the matched ones stressed) and the matched topics' feeds.

    ``timestamp`` (the alert's time) is taken so that one set of alert arguments
    fits every format, and not shown: the services stamp messages themselves.
    """
    body_format = _body_format(target)
    clean = clean_event(event)
    headline = KIND_LABELS.get(kind, "") + (clean.title or clean_text(event.id))
    title, in_body = _title(headline, target.title_max)
    sections = _alert_sections(clean, base_url, matched_topics, in_reply_to)
    previous = clean_text(previous_title) if kind is AlertKind.UPDATED and previous_title else None
    event_url = _href(urls.event_url(base_url, event.id))

    def build(cap: int | None, kept: int) -> str:
        shown, omitted = _kept(sections, kept)
        return _render(
            "alert",
            body_format,
            {
                "headline": _cut(in_body, cap),
                "story": _cut(clean.story, cap),
                "date": event.date.isoformat(),
                "event_url": event_url,
                "previously": _cut(previous, cap),
                "sections": shown,
                "omitted": omitted,
            },
        )

    total = sum(len(section.items) for section in sections)
    body = _fitted(build, total, target.body_max, body_format, headline)
    return AppriseMessage(title, body, body_format)


# -- digests -----------------------------------------------------------------------------


def _period(start: datetime, end: datetime) -> str:
    """``2026-11-27 12:00 – 2026-11-28 12:00 UTC`` (the day once when it is one day)."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if start.date() == end.date():
        return f"{start:%Y-%m-%d %H:%M}–{end:%H:%M} UTC"
    return f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC"


def _digest_sections(digest: Digest, base_url: str) -> list[_Section]:
    groups = digest.by_topic()

    def name(topic: Topic | None) -> str | None:
        if topic is not None:
            return fit(clean_text(topic.name), _LINK_TEXT_MAX)
        return "Other events" if len(groups) > 1 else None

    def item(entry: DigestItem) -> _Item:
        event = clean_event(entry.event)
        url = urls.event_url(base_url, entry.event.id)
        return _link(event.title or clean_text(entry.event.id), url, event.date.isoformat())

    return [
        _Section(name(topic), tuple(item(entry) for entry in entries))
        for topic, entries in groups
        if entries
    ]


def digest_message(target: MessageTarget, digest: Digest, *, base_url: str) -> AppriseMessage:
    """One period's new events for a digest subscription: the count and period as
    the title, the events grouped under the topic each matched first (newest
    first, each its date and linked title), then "and N more" linking to the feed
    that holds them all."""
    body_format = _body_format(target)
    count = digest.total
    headline = (
        f"feedbot digest: {count} new event{'' if count == 1 else 's'}"
        f" ({_period(digest.period_start, digest.period_end)})"
    )
    title, in_body = _title(headline, target.title_max)
    sections = _digest_sections(digest, base_url)
    feed_url = _href(digest.feed_url) if is_web_url(digest.feed_url) else None

    total = sum(len(section.items) for section in sections)

    def build(cap: int | None, kept: int) -> str:
        # No list says what it left out: one "and N more" at the end counts it
        # with what the digest itself left out, behind the feed that holds all.
        shown = [_Section(s.name, s.items) for s in _kept(sections, kept)[0]]
        return _render(
            "digest",
            body_format,
            {
                "headline": _cut(in_body, cap),
                "sections": shown,
                "more": total - min(kept, total) + digest.more,
                "feed_url": feed_url,
            },
        )

    body = _fitted(build, total, target.body_max, body_format, headline)
    return AppriseMessage(title, body, body_format)


# -- operator notices ---------------------------------------------------------------------


def notice_message(target: MessageTarget, notice: Notice) -> AppriseMessage:
    """An operator notice: which subscription (its URL as already redacted) or
    delivery, why, and the last response the receiver gave."""
    body_format = _body_format(target)
    headline = _NOTICE_TITLES[notice.kind]
    title, in_body = _title(headline, target.title_max)
    # The error names the status where there was one ("HTTP 500: ..."); the
    # status alone stands in when there is no error text.
    status = "" if notice.last_status is None else f"HTTP {notice.last_status}"
    last = clean_text(notice.last_error or "") or status or "none"

    def build(cap: int | None, _kept: int) -> str:
        return _render(
            "notice",
            body_format,
            {
                "headline": _cut(in_body, cap),
                "disabled": notice.kind is NoticeKind.SUBSCRIPTION_DISABLED,
                "subscription_id": clean_text(notice.subscription_id),
                "subscription_url": _cut(clean_text(notice.subscription_url), cap) or "",
                "subscription_format": clean_text(notice.subscription_format),
                "delivery_id": None
                if notice.delivery_id is None
                else clean_text(notice.delivery_id),
                "event_id": None if notice.event_id is None else clean_text(notice.event_id),
                "attempts": notice.attempts,
                "reason": _cut(clean_text(notice.reason), cap) or "",
                "last_response": _cut(last, cap) or "",
                "occurred_at": iso_utc(notice.occurred_at),
            },
        )

    body = _fitted(build, 0, target.body_max, body_format, headline)
    return AppriseMessage(title, body, body_format)
