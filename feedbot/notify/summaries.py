"""Digest and notice payloads: the request bodies of a ``digest.created`` (one
period's events for a digest subscription) and of an operator notice
(``subscription.disabled``, ``delivery.exhausted``).

Owns their ``json``, ``slack`` and ``discord`` formats, built as
:mod:`.formats` builds an alert's, with its helpers and the same guarantees:

- ``json``: the documented body as a Python object (:func:`digest_body`,
  :func:`notice_body`), serialized compactly; no template.
- ``slack`` and ``discord``: the layout is a template in ``templates/webhook/``
  (``slack_digest``, ``discord_digest``, ``slack_notice``, ``discord_notice``);
  every value it places arrives from here cleaned, escaped for the target's markup
  and cut to the target's limits, and goes through ``|tojson``; the output is
  parsed and checked against the limits again, then re-serialized.

Archive text (titles, topic names) and what a notice carries (a receiver's error,
a URL) are untrusted: control characters are stripped, Slack's ``& < >`` and
Discord's markdown are escaped, so nothing in them can forge a link or a mention.

A digest lists its events grouped by topic (:meth:`~feedbot.model.Digest.by_topic`),
newest first, one line each (date, linked title). What does not fit (the digest's
own ``more``, plus in Discord any group the 6000-character budget leaves no room
for) is an "and N more" linking the feed that holds them all. The period is shown
in the time zone its datetimes carry (a caller may hand the subscriber's zone),
the json ``timestamp`` and ``period`` always in UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from feedbot.feeds import urls
from feedbot.model import DIGEST_TYPE, Digest, DigestItem, Notice, NoticeKind, Topic, is_web_url
from feedbot.notify.formats import (
    DISCORD_DESCRIPTION_MAX,
    DISCORD_FIELD_NAME_MAX,
    DISCORD_FIELD_VALUE_MAX,
    DISCORD_FIELDS_MAX,
    DISCORD_FOOTER_MAX,
    DISCORD_TITLE_MAX,
    DISCORD_TOTAL_MAX,
    JSON_CONTENT_TYPE,
    SLACK_BLOCKS_MAX,
    SLACK_HEADER_MAX,
    SLACK_TEXT_MAX,
    Link,
    PayloadFormat,
    PayloadKind,
    RenderedPayload,
    _check_discord,
    _check_slack,
    _discord_line,
    _dumps,
    _render_builtin,
    _slack_line,
    _slack_url,
    clean_event,
    clean_text,
    discord_escape,
    fit,
    fit_items,
    fit_lines,
    iso_utc,
    parse_format,
    slack_escape,
    text_length,
)

# A topic name as a heading: far above any real one, short enough that a digest
# of many topics still has room for their events.
_HEADING_MAX = 100
_OTHER_EVENTS = "Other events"  # the group of events under none of the subscription's topics
_OTHER_TOPICS = "More topics"  # the groups beyond what fits as sections or fields
_NOTICE_TITLES = {
    NoticeKind.SUBSCRIPTION_DISABLED: "Subscription disabled",
    NoticeKind.DELIVERY_EXHAUSTED: "Delivery out of retries",
}
# One value (an id, the URL, the last error) of a notice in a chat format: six of
# them make one Slack section, three one Discord field, well within their limits.
_NOTICE_TEXT_MAX = 300


# -- json ---------------------------------------------------------------------------


def digest_body(digest: Digest, *, base_url: str, subscription_id: str) -> dict[str, Any]:
    """The ``json`` body of a digest as a Python object: ``type`` is
    ``digest.created``, ``timestamp`` the period's end; each event is the event
    object with its ``url`` and the subscription's ``matched_topics``, newest
    first; ``total`` counts the period's events, ``more`` those left out."""
    events = []
    for item in digest.items:
        data = clean_event(item.event).to_json()
        data["url"] = urls.event_url(base_url, item.event.id)
        data["matched_topics"] = list(item.matched_topics)
        events.append(data)
    return {
        "type": DIGEST_TYPE,
        "timestamp": iso_utc(digest.period_end),
        "data": {
            "subscription": subscription_id,
            "period": {"start": iso_utc(digest.period_start), "end": iso_utc(digest.period_end)},
            "events": events,
            "total": digest.total,
            "more": digest.more,
            "feed_url": digest.feed_url,
        },
    }


def notice_body(notice: Notice) -> dict[str, Any]:
    """The ``json`` body of an operator notice: ``type`` is its kind, ``data``
    :meth:`Notice.to_json` with every string cleaned (a receiver's error text
    may hold anything)."""
    return {
        "type": notice.kind.value,
        "timestamp": iso_utc(notice.occurred_at),
        "data": _clean_json(notice.to_json()),
    }


def _clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {key: _clean_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clean_json(item) for item in value]
    return value


# -- shared text ------------------------------------------------------------------------


def _count(total: int) -> str:
    if total == 0:
        return "No new events"
    return "1 new event" if total == 1 else f"{total} new events"


def _period_text(start: datetime, end: datetime) -> str:
    """``2026-11-27 08:00 – 2026-11-28 08:00 Europe/Berlin``, in the zone ``start`` carries."""
    zone = start.tzinfo
    end = end.astimezone(zone)
    label = zone.key if isinstance(zone, ZoneInfo) else (start.tzname() or "UTC")
    if start.date() == end.date():
        return f"{start:%Y-%m-%d %H:%M}–{end:%H:%M} {label}"
    return f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} {label}"


def _group_name(topic: Topic | None, only_group: bool) -> str:
    if topic is None:
        return "Events" if only_group else _OTHER_EVENTS
    return clean_text(topic.name).strip() or clean_text(topic.slug) or "Topic"


def _item_link(item: DigestItem, base_url: str) -> Link:
    event = clean_event(item.event)
    return Link(
        event.title or clean_text(event.id),
        urls.event_url(base_url, item.event.id),
        event.date.isoformat(),
    )


def _groups(digest: Digest, base_url: str, slots: int) -> list[tuple[str, list[Link]]]:
    """The digest's topic groups as (heading, links), at most ``slots`` of them:
    the groups past the last slot are merged, in order, under "More topics"."""
    grouped = digest.by_topic()
    groups = [
        (_group_name(topic, len(grouped) == 1), [_item_link(item, base_url) for item in items])
        for topic, items in grouped
    ]
    if len(groups) > slots:
        rest = [link for _, links in groups[slots - 1 :] for link in links]
        groups = [*groups[: slots - 1], (_OTHER_TOPICS, rest)]
    return groups


def _more_text(more: int) -> str:
    return f"and {more} more"


def _discord_url(url: str) -> str:
    """``url`` safe inside ``[text](url)``: no spaces, brackets or parentheses."""
    return quote(url, safe="%/:=&;?~#+!$,'*@")


# -- slack ------------------------------------------------------------------------------


def _slack_digest_view(digest: Digest, base_url: str) -> dict[str, Any]:
    count = _count(digest.total)
    period = _period_text(digest.period_start, digest.period_end)
    # The header, the sections, the "and N more" context.
    groups = _groups(digest, base_url, SLACK_BLOCKS_MAX - 2)
    sections = [
        fit_lines(
            fit(name, _HEADING_MAX, lambda t: f"*{slack_escape(t)}*"),
            [_slack_line(link) for link in links],
            SLACK_TEXT_MAX,
        )
        for name, links in groups
    ]
    more = ""
    if digest.more > 0:
        text = _more_text(digest.more)
        url = digest.feed_url
        more = f"<{_slack_url(url)}|{text}>" if is_web_url(url) else text
    return {
        "fallback": fit(f"{count}, {period}", SLACK_TEXT_MAX, slack_escape),
        "header": fit(f"{count} · {period}", SLACK_HEADER_MAX),
        "sections": sections,
        "more": more,
    }


def _slack_notice_view(notice: Notice) -> dict[str, Any]:
    title = _NOTICE_TITLES[notice.kind]

    def line(label: str, value: object) -> str:
        shown = clean_text(str(value))
        return fit(shown, _NOTICE_TEXT_MAX, lambda t: f"*{label}:* {slack_escape(t)}")

    lines = [
        line("Subscription", notice.subscription_id),
        line("URL", notice.subscription_url),
        line("Format", notice.subscription_format),
    ]
    if notice.delivery_id is not None:
        lines.append(line("Delivery", notice.delivery_id))
        if notice.event_id is not None:
            lines.append(line("Event", notice.event_id))
        if notice.attempts is not None:
            lines.append(line("Attempts", notice.attempts))
    response = _last_response(notice)
    sections = [
        "\n".join(lines),
        fit(clean_text(notice.reason), SLACK_TEXT_MAX, lambda t: f"*Reason*\n{slack_escape(t)}"),
    ]
    if response:
        sections.append(
            fit(response, SLACK_TEXT_MAX, lambda t: f"*Last response*\n{slack_escape(t)}")
        )
    fallback = f"{title}: {clean_text(notice.subscription_id)}: {clean_text(notice.reason)}"
    return {
        "fallback": fit(fallback, SLACK_TEXT_MAX, slack_escape),
        "header": fit(title, SLACK_HEADER_MAX),
        "sections": sections,
        "context": f"feedbot · {iso_utc(notice.occurred_at)}",
    }


def _last_response(notice: Notice) -> str:
    parts = []
    if notice.last_status is not None:
        parts.append(f"HTTP {notice.last_status}")
    if notice.last_error:
        parts.append(clean_text(notice.last_error))
    return fit(" · ".join(parts), _NOTICE_TEXT_MAX)


# -- discord ------------------------------------------------------------------------------


def _discord_digest_view(digest: Digest, base_url: str, when: str) -> dict[str, Any]:
    """The embed's parts, allotted from the 6000-unit total: title, footer and
    room for the "and N more" line first, then each topic's field, every field
    getting a fair share of what is left (what one does not use goes to the next)."""
    title = fit(_count(digest.total), DISCORD_TITLE_MAX)
    footer = fit(
        f"feedbot · {_period_text(digest.period_start, digest.period_end)}", DISCORD_FOOTER_MAX
    )
    feed_url = digest.feed_url if is_web_url(digest.feed_url) else None
    # The longest "and N more" line there can be: every event left out.
    budget = DISCORD_TOTAL_MAX - text_length(title) - text_length(footer)
    budget -= text_length(_discord_more(digest.total, feed_url))

    groups = _groups(digest, base_url, DISCORD_FIELDS_MAX)
    fields: list[dict[str, str]] = []
    left_out = digest.more
    for index, (name, links) in enumerate(groups):
        share = budget // (len(groups) - index)
        heading = fit(name, min(_HEADING_MAX, DISCORD_FIELD_NAME_MAX), discord_escape)
        room = min(DISCORD_FIELD_VALUE_MAX, share - text_length(heading))
        value = fit_items([_discord_line(link) for link in links], room) if room > 0 else ""
        if not heading or not value:
            left_out += len(links)
            continue
        fields.append({"name": heading, "value": value})
        budget -= text_length(heading) + text_length(value)
    return {
        "title": title,
        "url": feed_url,
        "description": _discord_more(left_out, feed_url) if left_out > 0 else "",
        "timestamp": when,
        "fields": fields,
        "footer": footer,
    }


def _discord_more(more: int, feed_url: str | None) -> str:
    text = _more_text(more)
    return f"[{text}]({_discord_url(feed_url)})" if feed_url else text


def _discord_notice_view(notice: Notice) -> dict[str, Any]:
    def value(text: object) -> str:
        return fit(clean_text(str(text)), _NOTICE_TEXT_MAX, discord_escape) or "-"

    subscription = "\n".join(
        [
            value(notice.subscription_id),
            value(notice.subscription_url),
            "Format: " + value(notice.subscription_format),
        ]
    )
    fields = [{"name": "Subscription", "value": subscription}]
    if notice.delivery_id is not None:
        lines = [value(notice.delivery_id)]
        if notice.event_id is not None:
            lines.append("Event: " + value(notice.event_id))
        if notice.attempts is not None:
            lines.append(f"Attempts: {notice.attempts}")
        fields.append({"name": "Delivery", "value": "\n".join(lines)})
    response = _last_response(notice)
    if response:
        fields.append({"name": "Last response", "value": value(response)})
    # Discord refuses an empty description; feedbot always gives a reason.
    reason = clean_text(notice.reason).strip() or "No reason given."
    return {
        "title": _NOTICE_TITLES[notice.kind],
        "description": fit(reason, DISCORD_DESCRIPTION_MAX // 2, discord_escape),
        "timestamp": iso_utc(notice.occurred_at),
        "fields": fields,
        "footer": "feedbot",
    }


# -- the entry points ------------------------------------------------------------------------


def _not_built_in(fmt: PayloadFormat | str) -> ValueError:
    return ValueError(
        f"{fmt}: not a built-in format; an operator's template renders in a worker"
        " (feedbot.notify.render_workers), an Apprise message in"
        " feedbot.notify.apprise_messages"
    )


def render_digest(
    format: PayloadFormat | str, digest: Digest, *, base_url: str, subscription_id: str
) -> RenderedPayload:
    """The body of ``digest`` in the built-in format ``format`` (json, slack,
    discord); ``base_url`` roots the links to the events' pages. An operator's
    template gets :func:`digest_body` as its context, in a worker process."""
    kind = (parse_format(format) if isinstance(format, str) else format).kind
    if kind is PayloadKind.JSON:
        body = digest_body(digest, base_url=base_url, subscription_id=subscription_id)
        return RenderedPayload(_dumps(body), JSON_CONTENT_TYPE)
    if kind is PayloadKind.SLACK:
        view = _slack_digest_view(digest, base_url)
        return RenderedPayload(
            _render_builtin("slack_digest", view, _check_slack), JSON_CONTENT_TYPE
        )
    if kind is PayloadKind.DISCORD:
        view = _discord_digest_view(digest, base_url, iso_utc(digest.period_end))
        return RenderedPayload(
            _render_builtin("discord_digest", view, _check_discord), JSON_CONTENT_TYPE
        )
    raise _not_built_in(format)


def render_notice(format: PayloadFormat | str, notice: Notice) -> RenderedPayload:
    """The body of an operator notice in the built-in format ``format``."""
    kind = (parse_format(format) if isinstance(format, str) else format).kind
    if kind is PayloadKind.JSON:
        return RenderedPayload(_dumps(notice_body(notice)), JSON_CONTENT_TYPE)
    if kind is PayloadKind.SLACK:
        view = _slack_notice_view(notice)
        return RenderedPayload(
            _render_builtin("slack_notice", view, _check_slack), JSON_CONTENT_TYPE
        )
    if kind is PayloadKind.DISCORD:
        view = _discord_notice_view(notice)
        return RenderedPayload(
            _render_builtin("discord_notice", view, _check_discord), JSON_CONTENT_TYPE
        )
    raise _not_built_in(format)
