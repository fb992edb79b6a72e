"""Digest and notice payloads: the exact json bodies, Slack and Discord layouts
within their limits, hostile archive text kept inert, "and N more" exactly when
events were left out."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedbot.errors import ConfigError
from feedbot.feeds import urls
from feedbot.model import (
    DIGEST_MAX_EVENTS,
    Digest,
    DigestItem,
    Event,
    Notice,
    NoticeKind,
    Source,
    Topic,
)
from feedbot.notify.formats import DISCORD_TOTAL_MAX, discord_embed_length, text_length
from feedbot.notify.summaries import digest_body, notice_body, render_digest, render_notice

BASE = "https://feedbot.example/"
START = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
END = START + timedelta(days=1)
FEED = urls.feed_url(BASE, "pakistan")
SUBSCRIPTION = "sub_123"

PAKISTAN = Topic.named("Pakistan")
FLOODS = Topic.named("Floods")


def event(number: int, title: str, *topics: Topic, day: int = 9) -> Event:
    return Event(
        id=f"2007/07/{day}/event-{number}",
        date=date(2007, 7, day),
        story=None,
        title=title,
        sources=(Source("Reuters", "https://example.org/a"),),
        topics=topics,
    )


def item(number: int, title: str, *topics: Topic, day: int = 9) -> DigestItem:
    return DigestItem(event(number, title, *topics, day=day), tuple(t.slug for t in topics))


def make_digest(
    items: tuple[DigestItem, ...] | None = None, total: int | None = None, **changes: Any
) -> Digest:
    if items is None:
        items = (
            item(1, "Floods in Sindh", PAKISTAN, FLOODS, day=12),
            item(2, "Monsoon rains", FLOODS, day=11),
            item(3, "Talks in Islamabad", PAKISTAN, day=10),
        )
    return Digest(
        period_start=changes.get("period_start", START),
        period_end=changes.get("period_end", END),
        items=items,
        total=len(items) if total is None else total,
        feed_url=changes.get("feed_url", FEED),
    )


def digest_in(fmt: str, digest: Digest | None = None) -> Any:
    payload = render_digest(
        fmt, digest or make_digest(), base_url=BASE, subscription_id=SUBSCRIPTION
    )
    assert payload.content_type == "application/json"
    return json.loads(payload.body.decode("utf-8"))


def event_url(number: int, day: int = 9) -> str:
    return f"https://feedbot.example/events/2007/07/{day}/event-{number}"


def accounted(text: str) -> int:
    """The events a list of lines shows, or counts in a closing "… and N more"."""
    lines = text.split("\n")
    shown = sum(line.startswith("• ") for line in lines)
    note = re.fullmatch(r"… and ([0-9]+) more", lines[-1])
    return shown + (int(note[1]) if note else 0)


def assert_slack_limits(body: Any) -> None:
    blocks = body["blocks"]
    assert len(blocks) <= 50
    assert blocks[0]["type"] == "header"
    assert 0 < text_length(blocks[0]["text"]["text"]) <= 150
    for block in blocks[1:]:
        for text in [block["text"]] if "text" in block else block["elements"]:
            assert 0 < text_length(text["text"]) <= 3000
    assert text_length(body["text"]) <= 3000


def assert_discord_limits(body: Any) -> None:
    assert body["allowed_mentions"] == {"parse": []}
    [embed] = body["embeds"]
    assert 0 < text_length(embed["title"]) <= 256
    assert text_length(embed.get("description", "")) <= 4096
    assert len(embed["fields"]) <= 25
    for field in embed["fields"]:
        assert 0 < text_length(field["name"]) <= 256
        assert 0 < text_length(field["value"]) <= 1024
    assert text_length(embed["footer"]["text"]) <= 256
    assert discord_embed_length(embed) <= DISCORD_TOTAL_MAX


# -- json --------------------------------------------------------------------------------


def test_digest_json_body_is_the_spec_body() -> None:
    digest = make_digest(total=5)
    body = digest_in("json", digest)
    assert body == {
        "type": "digest.created",
        "timestamp": "2026-11-28T08:00:00Z",
        "data": {
            "subscription": SUBSCRIPTION,
            "period": {"start": "2026-11-27T08:00:00Z", "end": "2026-11-28T08:00:00Z"},
            "events": [
                {
                    **digest.items[0].event.to_json(),
                    "url": event_url(1, 12),
                    "matched_topics": ["pakistan", "floods"],
                },
                {
                    **digest.items[1].event.to_json(),
                    "url": event_url(2, 11),
                    "matched_topics": ["floods"],
                },
                {
                    **digest.items[2].event.to_json(),
                    "url": event_url(3, 10),
                    "matched_topics": ["pakistan"],
                },
            ],
            "total": 5,
            "more": 2,
            "feed_url": "https://feedbot.example/feeds/topics/pakistan.atom",
        },
    }
    assert body == digest_body(digest, base_url=BASE, subscription_id=SUBSCRIPTION)


def test_digest_json_cleans_text_and_is_utc() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    digest = make_digest(
        items=(item(1, "Bad\x00 \x1b[31mtitle\ud800", PAKISTAN),),
        period_start=START.astimezone(berlin),
        period_end=END.astimezone(berlin),
    )
    payload = render_digest("json", digest, base_url=BASE, subscription_id=SUBSCRIPTION)
    payload.body.decode("utf-8")
    body = json.loads(payload.body)
    assert body["data"]["events"][0]["title"] == "Bad [31mtitle"
    assert body["data"]["period"] == {
        "start": "2026-11-27T08:00:00Z",
        "end": "2026-11-28T08:00:00Z",
    }


def test_an_empty_digest() -> None:
    digest = make_digest(items=())
    assert digest_in("json", digest)["data"]["events"] == []
    slack = digest_in("slack", digest)
    assert [b["type"] for b in slack["blocks"]] == ["header"]
    assert slack["blocks"][0]["text"]["text"].startswith("No new events")
    [embed] = digest_in("discord", digest)["embeds"]
    assert embed["fields"] == [] and "description" not in embed


# -- slack ---------------------------------------------------------------------------------


def test_slack_digest_layout() -> None:
    body = digest_in("slack", make_digest(total=5))
    assert body["unfurl_links"] is False
    assert body["text"] == "5 new events, 2026-11-27 08:00 – 2026-11-28 08:00 UTC"
    blocks = body["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "section", "context"]
    assert blocks[0]["text"] == {
        "type": "plain_text",
        "text": "5 new events · 2026-11-27 08:00 – 2026-11-28 08:00 UTC",
    }
    # Grouped under the first topic each matched, groups in the order of their newest.
    assert blocks[1]["text"]["text"] == (
        "*Pakistan*\n"
        f"• 2007-07-12 · <{event_url(1, 12)}|Floods in Sindh>\n"
        f"• 2007-07-10 · <{event_url(3, 10)}|Talks in Islamabad>"
    )
    assert (
        blocks[2]["text"]["text"] == f"*Floods*\n• 2007-07-11 · <{event_url(2, 11)}|Monsoon rains>"
    )
    assert blocks[3]["elements"][0] == {
        "type": "mrkdwn",
        "text": "<https://feedbot.example/feeds/topics/pakistan.atom|and 2 more>",
    }


def test_period_is_shown_in_the_zone_the_digest_carries() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    digest = make_digest(period_start=START.astimezone(berlin), period_end=END.astimezone(berlin))
    header = digest_in("slack", digest)["blocks"][0]["text"]["text"]
    assert header == "3 new events · 2026-11-27 09:00 – 2026-11-28 09:00 Europe/Berlin"
    hourly = make_digest(period_end=START + timedelta(hours=1), items=(item(1, "One", FLOODS),))
    assert digest_in("slack", hourly)["blocks"][0]["text"]["text"] == (
        "1 new event · 2026-11-27 08:00–09:00 UTC"
    )
    [embed] = digest_in("discord", hourly)["embeds"]
    assert embed["footer"]["text"] == "feedbot · 2026-11-27 08:00–09:00 UTC"


def test_slack_escapes_hostile_titles_and_topic_names() -> None:
    hostile = Topic("<!here> *x* <http://evil.example|Topic>", "hostile")
    digest = make_digest(
        items=(
            item(1, "<!channel> & <http://evil.example|click here> {{ 7*7 }}", hostile),
            item(2, "<@U123> <#C1|general> a|b", PAKISTAN),
        )
    )
    body = digest_in("slack", digest)
    text = json.dumps(body["blocks"][1:])
    for forged in ("<!channel>", "<!here>", "<http://evil", "<@U123>", "<#C1"):
        assert forged not in text
    sections = [b["text"]["text"] for b in body["blocks"][1:]]
    assert sections[0] == (
        "*&lt;!here&gt; *x* &lt;http://evil.example|Topic&gt;*\n"
        f"• 2007-07-09 · <{event_url(1)}|&lt;!channel&gt; &amp; "
        "&lt;http://evil.example|click here&gt; {{ 7*7 }}>"
    )
    assert f"<{event_url(2)}|&lt;@U123&gt; &lt;#C1|general&gt; a|b>" in sections[1]


def test_slack_holds_its_limits_for_fifty_huge_events_of_many_topics() -> None:
    items = tuple(
        item(
            i, f"Very long title {i} <b> & *bold* 🌋 " * 60, Topic.named(f"Topic {i} " + "x" * 300)
        )
        for i in range(DIGEST_MAX_EVENTS)
    )
    body = digest_in("slack", make_digest(items=items, total=1000))
    assert_slack_limits(body)
    blocks = body["blocks"]
    assert len(blocks) == 50
    assert blocks[-1]["elements"][0]["text"].endswith("|and 950 more>")
    # The topics beyond the 48 sections there is room for share the last one.
    assert blocks[-2]["text"]["text"].startswith("*More topics*\n• ")
    assert sum(accounted(b["text"]["text"]) for b in blocks[1:-1]) == 50


def test_slack_holds_its_limits_for_fifty_huge_events_of_one_topic() -> None:
    items = tuple(item(i, "Tōhoku 🌊 " * 400, FLOODS) for i in range(DIGEST_MAX_EVENTS))
    body = digest_in("slack", make_digest(items=items))
    assert_slack_limits(body)
    [section] = [b["text"]["text"] for b in body["blocks"][1:]]
    assert section.startswith("*Floods*\n• 2007-07-09 · <")
    assert section.endswith("more")  # the lines that did not fit, counted


# -- discord ---------------------------------------------------------------------------------


def test_discord_digest_layout() -> None:
    body = digest_in("discord", make_digest(total=5))
    [embed] = body["embeds"]
    assert embed["title"] == "5 new events"
    assert embed["url"] == FEED
    assert embed["description"] == f"[and 2 more]({FEED})"
    assert embed["timestamp"] == "2026-11-28T08:00:00Z"
    assert embed["footer"] == {"text": "feedbot · 2026-11-27 08:00 – 2026-11-28 08:00 UTC"}
    assert embed["fields"] == [
        {
            "name": "Pakistan",
            "value": f"• 2007-07-12 · [Floods in Sindh]({event_url(1, 12)})\n"
            f"• 2007-07-10 · [Talks in Islamabad]({event_url(3, 10)})",
            "inline": False,
        },
        {
            "name": "Floods",
            "value": f"• 2007-07-11 · [Monsoon rains]({event_url(2, 11)})",
            "inline": False,
        },
    ]


def test_discord_escapes_hostile_titles_and_topic_names() -> None:
    hostile = Topic("**Big** [x](http://evil.example)", "hostile")
    digest = make_digest(
        items=(
            item(1, "[click me](http://evil.example) @everyone <@123> `code`", hostile),
            item(2, "__under__ ~~strike~~ ||spoiler|| # heading", PAKISTAN),
        )
    )
    [embed] = digest_in("discord", digest)["embeds"]
    fields = embed["fields"]
    assert fields[0]["name"] == "\\*\\*Big\\*\\* \\[x\\]\\(http://evil.example\\)"
    assert fields[0]["value"] == (
        "• 2007-07-09 · [\\[click me\\]\\(http://evil.example\\) @everyone \\<@123\\> \\`code\\`]"
        f"({event_url(1)})"
    )
    assert (
        "\\_\\_under\\_\\_ \\~\\~strike\\~\\~ \\|\\|spoiler\\|\\| \\# heading" in fields[1]["value"]
    )
    assert "](http://evil.example)" not in json.dumps(embed)


def test_discord_holds_its_limits_for_fifty_huge_events_of_many_topics() -> None:
    items = tuple(
        item(i, f"Very long *title* {i} [x](y) 🌋 " * 60, Topic.named(f"Topic {i} " + "x" * 300))
        for i in range(DIGEST_MAX_EVENTS)
    )
    body = digest_in("discord", make_digest(items=items, total=1000))
    assert_discord_limits(body)
    [embed] = body["embeds"]
    assert len(embed["fields"]) == 25
    assert embed["fields"][-1]["name"] == "More topics"
    assert embed["description"].startswith("[and ")
    # Every event is accounted for: listed, counted in its field's "… and N more",
    # or in the description's "and N more" (the 950 beyond the list, and any event
    # no room was left for).
    left_out = int(embed["description"].split()[1])
    assert left_out >= 950
    assert left_out + sum(accounted(f["value"]) for f in embed["fields"]) == 1000


def test_discord_holds_its_limits_for_fifty_huge_events_of_one_topic() -> None:
    items = tuple(item(i, "Tōhoku 🌊 " * 400, FLOODS) for i in range(DIGEST_MAX_EVENTS))
    body = digest_in("discord", make_digest(items=items))
    assert_discord_limits(body)
    [field] = body["embeds"][0]["fields"]
    assert field["name"] == "Floods" and field["value"].endswith("more")


# -- groups and "and N more" -------------------------------------------------------------------


def test_events_under_no_topic_are_a_group_of_their_own() -> None:
    digest = make_digest(
        items=(
            item(1, "Floods in Sindh", FLOODS),
            DigestItem(event(2, "A topicless event"), ()),
        )
    )
    sections = [b["text"]["text"] for b in digest_in("slack", digest)["blocks"][1:]]
    assert sections[1] == f"*Other events*\n• 2007-07-09 · <{event_url(2)}|A topicless event>"
    [embed] = digest_in("discord", digest)["embeds"]
    assert [f["name"] for f in embed["fields"]] == ["Floods", "Other events"]
    # Alone, the group is just the events.
    alone = make_digest(items=(DigestItem(event(2, "A topicless event"), ()),))
    assert digest_in("slack", alone)["blocks"][1]["text"]["text"].startswith("*Events*\n• ")
    assert digest_in("discord", alone)["embeds"][0]["fields"][0]["name"] == "Events"


@pytest.mark.parametrize("total", [3, 4, 60])
def test_and_n_more_is_there_exactly_when_events_were_left_out(total: int) -> None:
    digest = make_digest(total=total)
    more = total - 3
    slack = digest_in("slack", digest)
    notes = [b for b in slack["blocks"] if b["type"] == "context"]
    embed = digest_in("discord", digest)["embeds"][0]
    assert digest_in("json", digest)["data"]["more"] == more
    if more:
        assert notes == [
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"<{FEED}|and {more} more>"}],
            }
        ]
        assert embed["description"] == f"[and {more} more]({FEED})"
    else:
        assert notes == []
        assert "description" not in embed
        assert "more" not in json.dumps([slack, embed])


def test_a_feed_url_that_is_not_a_web_url_is_not_linked() -> None:
    digest = make_digest(total=4, feed_url="javascript:alert(1)")
    assert digest_in("slack", digest)["blocks"][-1]["elements"][0]["text"] == "and 1 more"
    [embed] = digest_in("discord", digest)["embeds"]
    assert embed["description"] == "and 1 more" and "url" not in embed


_text = st.text(max_size=300)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    titles=st.lists(_text, max_size=DIGEST_MAX_EVENTS),
    names=st.lists(_text, min_size=1, max_size=30),
    more=st.integers(0, 10_000),
)
def test_digest_chat_formats_always_valid_and_within_limits(
    titles: list[str], names: list[str], more: int
) -> None:
    topics = [Topic(name, f"t{i}") for i, name in enumerate(names)]
    items = tuple(
        item(i, title, *topics[i % len(topics) : i % len(topics) + 2])
        for i, title in enumerate(titles)
    )
    digest = make_digest(items=items, total=len(items) + more)
    assert_slack_limits(digest_in("slack", digest))
    assert_discord_limits(digest_in("discord", digest))


def test_template_and_unknown_formats_are_refused() -> None:
    with pytest.raises(ValueError, match="worker"):
        render_digest("template:/etc/x.j2", make_digest(), base_url=BASE, subscription_id="s")
    with pytest.raises(ConfigError):
        render_digest("teams", make_digest(), base_url=BASE, subscription_id="s")
    with pytest.raises(ValueError, match="worker"):
        render_notice("template:/etc/x.j2", disabled())
    with pytest.raises(ValueError, match="Apprise"):
        render_digest("apprise", make_digest(), base_url=BASE, subscription_id="s")
    with pytest.raises(ValueError, match="Apprise"):
        render_notice("apprise", disabled())


# -- notices ------------------------------------------------------------------------------------

WHEN = datetime(2026, 11, 27, 12, 0, 5, tzinfo=UTC)


def disabled(**changes: Any) -> Notice:
    fields: dict[str, Any] = {
        "kind": NoticeKind.SUBSCRIPTION_DISABLED,
        "occurred_at": WHEN,
        "subscription_id": "sub_9",
        "subscription_url": "https://hooks.example/***",
        "subscription_format": "slack",
        "reason": "the target answered 410 Gone",
        "last_status": 410,
    }
    fields.update(changes)
    return Notice(**fields)


def exhausted(**changes: Any) -> Notice:
    fields: dict[str, Any] = {
        "kind": NoticeKind.DELIVERY_EXHAUSTED,
        "occurred_at": WHEN,
        "subscription_id": "sub_9",
        "subscription_url": "https://hooks.example/***",
        "subscription_format": "json",
        "reason": "no 2xx after 12 attempts",
        "delivery_id": "dlv_1",
        "event_id": "2007/07/9/event-1",
        "attempts": 12,
        "last_status": 503,
        "last_error": "Service Unavailable",
    }
    fields.update(changes)
    return Notice(**fields)


def notice_in(fmt: str, notice: Notice) -> Any:
    payload = render_notice(fmt, notice)
    assert payload.content_type == "application/json"
    return json.loads(payload.body)


def test_notice_json_bodies() -> None:
    assert notice_in("json", disabled()) == {
        "type": "subscription.disabled",
        "timestamp": "2026-11-27T12:00:05Z",
        "data": {
            "subscription": {
                "id": "sub_9",
                "url": "https://hooks.example/***",
                "format": "slack",
            },
            "reason": "the target answered 410 Gone",
            "last_response": {"status": 410, "error": None},
        },
    }
    body = notice_in("json", exhausted())
    assert body == {
        "type": "delivery.exhausted",
        "timestamp": "2026-11-27T12:00:05Z",
        "data": exhausted().to_json(),
    }
    assert body["data"]["delivery"] == {
        "id": "dlv_1",
        "event_id": "2007/07/9/event-1",
        "attempts": 12,
    }
    assert notice_body(exhausted()) == body


def test_notice_json_cleans_text() -> None:
    body = notice_in("json", exhausted(last_error="bad\x00\x1b gateway\ud800"))
    assert body["data"]["last_response"]["error"] == "bad gateway"


def test_notice_slack() -> None:
    body = notice_in("slack", exhausted())
    assert_slack_limits(body)
    blocks = body["blocks"]
    assert blocks[0]["text"]["text"] == "Delivery out of retries"
    assert body["text"] == "Delivery out of retries: sub_9: no 2xx after 12 attempts"
    assert blocks[1]["text"]["text"] == (
        "*Subscription:* sub_9\n*URL:* https://hooks.example/***\n*Format:* json\n"
        "*Delivery:* dlv_1\n*Event:* 2007/07/9/event-1\n*Attempts:* 12"
    )
    assert blocks[2]["text"]["text"] == "*Reason*\nno 2xx after 12 attempts"
    assert blocks[3]["text"]["text"] == "*Last response*\nHTTP 503 · Service Unavailable"
    assert blocks[4]["elements"][0]["text"] == "feedbot · 2026-11-27T12:00:05Z"
    assert [b["type"] for b in notice_in("slack", disabled())["blocks"]] == [
        "header",
        "section",
        "section",
        "section",
        "context",
    ]


def test_notice_discord() -> None:
    body = notice_in("discord", exhausted())
    assert_discord_limits(body)
    [embed] = body["embeds"]
    assert embed["title"] == "Delivery out of retries"
    assert embed["description"] == "no 2xx after 12 attempts"
    assert embed["timestamp"] == "2026-11-27T12:00:05Z"
    assert [f["name"] for f in embed["fields"]] == ["Subscription", "Delivery", "Last response"]
    assert embed["fields"][2]["value"] == "HTTP 503 · Service Unavailable"
    [embed] = notice_in("discord", disabled(last_status=None))["embeds"]
    assert [f["name"] for f in embed["fields"]] == ["Subscription"]


def test_notices_escape_what_receivers_said() -> None:
    hostile = exhausted(
        last_error="<!channel> [click](http://evil.example) @everyone <@123> " + "x" * 5000,
        reason="*bold* <http://evil.example|here>",
    )
    slack = notice_in("slack", hostile)
    assert_slack_limits(slack)
    text = json.dumps(slack)
    assert "<!channel>" not in text and "<http://evil" not in text
    discord = notice_in("discord", hostile)
    assert_discord_limits(discord)
    [embed] = discord["embeds"]
    assert "[click](http" not in json.dumps(embed)
    assert embed["description"] == "\\*bold\\* \\<http://evil.example\\|here\\>"
