"""Alert payloads: the exact json body, Slack and Discord within their limits,
operator templates in the sandbox, and untrusted archive text kept inert."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedbot.errors import ConfigError, TemplateError, TemplateLimit
from feedbot.model import Event, Related, RelatedKind, Source, Topic
from feedbot.notify.formats import (
    DISCORD_TOTAL_MAX,
    PayloadFormat,
    PayloadKind,
    alert_body,
    discord_embed_length,
    fit,
    fit_items,
    fit_lines,
    parse_format,
    render_payload,
    text_length,
)
from feedbot.notify.payload_templates import (
    CompiledTemplate,
    check_samples,
    compile_template,
    template_context,
)

BASE = "https://feedbot.example/"
WHEN = datetime(2026, 11, 27, 12, 0, 5, tzinfo=UTC)
EVENT_ID = "2007/07/9/lal-masjid-siege-an-attempt-to-negotiate"
FOLLOW_ID = "2008/07/6/an-explosion-near-the-red-mosque"
BACKGROUND_ID = "2007/07/3/clashes-at-the-red-mosque"


def make_event(**changes: Any) -> Event:
    event = Event(
        id=EVENT_ID,
        date=date(2007, 7, 9),
        story="Lal Masjid siege",
        title="Lal Masjid siege: An attempt to negotiate a peaceful end ends without progress.",
        sources=(Source("Al jazeera", "http://english.aljazeera.net/NR/exeres/628DFB93.htm"),),
        related=(
            Related(
                FOLLOW_ID,
                date(2008, 7, 6),
                "An explosion near the Red Mosque kills at least 10 people.",
                ("Islamabad", "Red Mosque"),
                RelatedKind.FOLLOW_UP,
            ),
            Related(
                BACKGROUND_ID,
                date(2007, 7, 3),
                "Clashes at the [Red Mosque] (Lal Masjid) http://example.org/x",
                ("Islamabad",),
                RelatedKind.BACKGROUND,
            ),
        ),
        topics=(
            Topic.named("Lal Masjid siege"),
            Topic.named("Islamabad"),
            Topic.named("Red Mosque"),
        ),
    )
    return dataclasses.replace(event, **changes)


def render(fmt: str, event: Event | None = None, **kwargs: Any) -> Any:
    payload = render_payload(
        fmt,
        event or make_event(),
        base_url=kwargs.pop("base_url", BASE),
        matched_topics=kwargs.pop("matched_topics", ["islamabad"]),
        in_reply_to=kwargs.pop("in_reply_to", [BACKGROUND_ID]),
        timestamp=kwargs.pop("timestamp", WHEN),
        **kwargs,
    )
    assert payload.content_type == "application/json"
    return json.loads(payload.body.decode("utf-8"))


def huge_event() -> Event:
    long = "Very long related title with *markdown* & <angle> [brackets] 🌋 " * 40
    return make_event(
        story="S" * 400,
        title="Tōhoku 🌊 " * 800,
        sources=tuple(
            Source(f"Source {i} " + "n" * 300, f"https://example.org/{i}/" + "p" * 200)
            for i in range(400)
        ),
        related=tuple(
            Related(
                f"2011/03/{i % 28 + 1}/event-{i}",
                date(2011, 3, i % 28 + 1),
                long,
                ("Topic " * 50,),
                RelatedKind.FOLLOW_UP if i % 2 else RelatedKind.BACKGROUND,
            )
            for i in range(300)
        ),
        topics=tuple(Topic(f"Topic number {i} " + "x" * 100, f"topic-{i}") for i in range(200)),
    )


# -- parse_format -------------------------------------------------------------------


def test_parse_format() -> None:
    assert parse_format("json") == PayloadFormat(PayloadKind.JSON)
    assert parse_format(" Slack ") == PayloadFormat(PayloadKind.SLACK)
    assert parse_format("discord").kind is PayloadKind.DISCORD
    parsed = parse_format("template:/etc/feedbot/alert.json.j2")
    assert parsed == PayloadFormat(PayloadKind.TEMPLATE, Path("/etc/feedbot/alert.json.j2"))
    assert str(parsed) == "template:/etc/feedbot/alert.json.j2"
    assert str(parse_format("slack")) == "slack"


@pytest.mark.parametrize("value", ["xml", "", "template:", "template:  ", "jsonx", "teams"])
def test_parse_format_refuses_naming_field_and_value(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_format(value)
    assert str(caught.value).startswith("format: ")
    assert repr(value) in str(caught.value)


# -- json ---------------------------------------------------------------------------------


def test_json_body_is_the_spec_body() -> None:
    event = make_event()
    body = render("json", event, in_reply_to=[BACKGROUND_ID])
    assert body == {
        "type": "event.created",
        "timestamp": "2026-11-27T12:00:05Z",
        "data": {
            "event": {**event.to_json(), "url": f"https://feedbot.example/events/{EVENT_ID}"},
            "matched_topics": ["islamabad"],
            "in_reply_to": [BACKGROUND_ID],
        },
    }
    kinds = {r["id"]: r["kind"] for r in body["data"]["event"]["related"]}
    assert kinds == {FOLLOW_ID: "follow_up", BACKGROUND_ID: "background"}


def test_json_timestamp_is_utc_and_must_be_aware() -> None:
    east = WHEN.astimezone(timezone(timedelta(hours=9)))
    assert render("json", timestamp=east)["timestamp"] == "2026-11-27T12:00:05Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        render("json", timestamp=datetime(2026, 1, 1))


def test_json_strips_control_characters_and_survives_surrogates() -> None:
    event = make_event(
        title="Bad\x00 \x1b[31mred\x1b[0m \x85title\ud800",
        story="Story\x07",
        sources=(Source("So\x0burce", "https://example.org/\x00a"),),
    )
    payload = render_payload(
        "json", event, base_url=BASE, matched_topics=[], in_reply_to=[], timestamp=WHEN
    )
    payload.body.decode("utf-8")  # valid UTF-8
    data = json.loads(payload.body)["data"]["event"]
    assert data["title"] == "Bad [31mred[0m title"
    assert data["story"] == "Story"
    assert data["sources"] == [{"name": "Source", "url": "https://example.org/a"}]


def test_unicode_is_sent_as_utf8() -> None:
    payload = render_payload(
        "json",
        make_event(title="2011 Tōhoku earthquake in Côte d'Ivoire"),
        base_url=BASE,
        matched_topics=[],
        in_reply_to=[],
        timestamp=WHEN,
    )
    assert "Tōhoku".encode() in payload.body


# -- slack ---------------------------------------------------------------------------------


def test_slack_blocks() -> None:
    body = render("slack")
    blocks = body["blocks"]
    assert [b["type"] for b in blocks] == [
        "header",
        "section",
        "section",
        "section",
        "section",
        "section",
        "context",
    ]
    assert blocks[0]["text"] == {"type": "plain_text", "text": "Lal Masjid siege"}
    assert body["text"].startswith("Lal Masjid siege: An attempt")
    summary = blocks[1]["text"]["text"]
    assert f"<https://feedbot.example/events/{EVENT_ID}|Event page>" in summary
    assert "_2007-07-09_" in summary
    sources, follow_ups, background, replies = (b["text"]["text"] for b in blocks[2:6])
    assert sources == (
        "*Sources*\n• <http://english.aljazeera.net/NR/exeres/628DFB93.htm|Al jazeera>"
    )
    assert follow_ups.startswith("*Follow-ups*\n• 2008-07-06 · <https://feedbot.example/events/")
    assert "|An explosion near the Red Mosque" in follow_ups
    assert background.startswith("*Background*\n• 2007-07-03 · ")
    assert replies.startswith("*In reply to*\n• 2007-07-03 · ")
    assert BACKGROUND_ID in replies
    assert blocks[6]["elements"][0]["text"] == "Topics: Lal Masjid siege · *Islamabad* · Red Mosque"


def test_slack_escapes_archive_text() -> None:
    event = make_event(
        story=None,
        title="<!channel> & <http://evil.example|click here> {{ 7*7 }}",
        sources=(Source("Name > <x|y>", "https://example.org/a?b=1&c=<2>|3"),),
    )
    body = render("slack", event)
    # Slack parses links and mentions in mrkdwn text only; a plain_text header shows
    # the text as typed, so it is the one place left unescaped.
    text = json.dumps([body["text"], body["blocks"][1:]])
    assert "<!channel>" not in text
    assert "<http://evil.example" not in text
    assert "&lt;!channel&gt; &amp; &lt;http://evil.example|click here&gt; {{ 7*7 }}" in text
    sources = body["blocks"][2]["text"]["text"]
    assert (
        sources
        == "*Sources*\n• <https://example.org/a?b=1&amp;c=%3C2%3E%7C3|Name &gt; &lt;x|y&gt;>"
    )
    # No story: the header is the title itself, plain text, unescaped.
    assert body["blocks"][0]["text"]["text"].startswith("<!channel> & <http")


def test_slack_keeps_within_limits_for_a_huge_event() -> None:
    body = render("slack", huge_event(), in_reply_to=[f"2011/03/{i}/event-{i}" for i in range(50)])
    blocks = body["blocks"]
    assert len(blocks) <= 50
    assert text_length(blocks[0]["text"]["text"]) <= 150
    assert blocks[0]["text"]["text"].endswith("…")
    for block in blocks[1:]:
        texts = [block["text"]] if "text" in block else block["elements"]
        for text in texts:
            assert text_length(text["text"]) <= 3000
    assert text_length(body["text"]) <= 3000
    sources = blocks[2]["text"]["text"]
    assert sources.startswith("*Sources*\n") and "more" in sources.rsplit("\n", 1)[1]


def test_non_web_links_are_not_linked() -> None:
    event = make_event(sources=(Source("Evil", "javascript:alert(1)"),))
    assert render("slack", event)["blocks"][2]["text"]["text"] == "*Sources*\n• Evil"
    assert render("discord", event)["embeds"][0]["fields"][0]["value"] == "• Evil"


# -- discord ---------------------------------------------------------------------------------


def test_discord_embed() -> None:
    body = render("discord")
    assert body["allowed_mentions"] == {"parse": []}
    [embed] = body["embeds"]
    assert embed["title"] == make_event().title
    assert embed["url"] == f"https://feedbot.example/events/{EVENT_ID}"
    assert embed["description"] == "**2007-07-09** · Lal Masjid siege"
    assert embed["timestamp"] == "2026-11-27T12:00:05Z"
    assert embed["footer"] == {"text": "feedbot · islamabad"}
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert list(fields) == ["Sources", "Follow-ups", "Background", "In reply to", "Topics"]
    assert fields["Sources"] == (
        "• [Al jazeera](http://english.aljazeera.net/NR/exeres/628DFB93.htm)"
    )
    assert fields["Follow-ups"].startswith("• 2008-07-06 · [An explosion near the Red Mosque")
    assert fields["Background"] == (
        "• 2007-07-03 · [Clashes at the \\[Red Mosque\\] \\(Lal Masjid\\) http://example.org/x]"
        f"(https://feedbot.example/events/{BACKGROUND_ID})"
    )
    assert BACKGROUND_ID in fields["In reply to"]
    assert fields["Topics"] == "Lal Masjid siege · **Islamabad** · Red Mosque"


def test_discord_escapes_markdown() -> None:
    event = make_event(story="*bold* _it_ `code` <@123> @everyone")
    [embed] = render("discord", event)["embeds"]
    assert embed["description"] == (
        "**2007-07-09** · \\*bold\\* \\_it\\_ \\`code\\` \\<@123\\> @everyone"
    )


def test_discord_keeps_within_limits_for_a_huge_event() -> None:
    body = render(
        "discord",
        huge_event(),
        matched_topics=[f"topic-{i}" for i in range(200)],
        in_reply_to=[f"2011/03/{i}/event-{i}" for i in range(100)],
    )
    [embed] = body["embeds"]
    assert text_length(embed["title"]) <= 256
    assert embed["title"].endswith("…")
    assert text_length(embed["description"]) <= 4096
    assert len(embed["fields"]) <= 25
    for field in embed["fields"]:
        assert text_length(field["name"]) <= 256
        assert text_length(field["value"]) <= 1024
    assert text_length(embed["footer"]["text"]) <= 256
    assert discord_embed_length(embed) <= DISCORD_TOTAL_MAX
    names = [f["name"] for f in embed["fields"]]
    assert names[:2] == ["Sources", "Follow-ups"]
    assert embed["fields"][0]["value"].endswith("more")


def test_discord_long_title_continues_in_the_description() -> None:
    title = " ".join(["word"] * 100)
    [embed] = render("discord", make_event(title=title))["embeds"]
    assert embed["title"].endswith("…")
    assert embed["description"].startswith("**2007-07-09** · Lal Masjid siege\nword word")
    assert embed["description"].endswith("word")


_text = st.text(max_size=400)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    title=_text,
    story=st.one_of(st.none(), _text),
    names=st.lists(_text, max_size=60),
    related=st.lists(_text, max_size=60),
)
def test_chat_formats_always_valid_and_within_limits(
    title: str, story: str | None, names: list[str], related: list[str]
) -> None:
    event = make_event(
        title=title,
        story=story,
        sources=tuple(Source(n, "https://example.org/" + n) for n in names),
        related=tuple(
            Related(f"2001/01/{i + 1}/r", date(2001, 1, 1), t, (t,), RelatedKind.FOLLOW_UP)
            for i, t in enumerate(related)
        ),
        topics=tuple(Topic(n, f"t{i}") for i, n in enumerate(names)),
    )
    [embed] = render("discord", event)["embeds"]
    assert discord_embed_length(embed) <= DISCORD_TOTAL_MAX
    assert text_length(embed["title"]) <= 256
    assert text_length(embed["description"]) <= 4096
    slack = render("slack", event)
    assert text_length(slack["blocks"][0]["text"]["text"]) <= 150
    for block in slack["blocks"][1:]:
        for text in [block["text"]] if "text" in block else block["elements"]:
            assert text_length(text["text"]) <= 3000


def test_fit_helpers() -> None:
    assert fit("short", 10) == "short"
    assert fit("a longer text", 8) == "a longe…"
    assert fit("a&b&c&d", 12, lambda t: t.replace("&", "&amp;")) == "a&amp;b…"
    assert fit("🌋🌋🌋", 4) == "🌋…"  # an emoji counts as two
    assert fit("abc", 0) == ""
    assert fit_lines("*H*", ["one", "two", "three"], 100) == "*H*\none\ntwo\nthree"
    assert fit_lines("*H*", ["one", "two", "three"], 20) == "*H*\none\n… and 2 more"
    assert fit_lines("*H*", ["a very long line"], 10) == "*H*"
    assert fit_items(["a", "b", "c"], 100, " · ") == "a · b · c"
    assert fit_items(["aaaa", "bbbb", "cccc"], 19, " · ") == "aaaa · … and 2 more"
    assert fit_items(["aaaa"], 4) == "aaaa"
    assert fit_items(["aaaa", "b"], 4) == ""  # not even the note fits


# -- operator templates -------------------------------------------------------------------


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD_TEMPLATE = """\
{"text": {{ (event.title ~ " " ~ event.url)|tojson }},
 "topics": {{ matched_topics|tojson }},
 "follow_ups": [{% for r in follow_ups %}{{ r.url|tojson }}{{ "," if not loop.last }}{% endfor %}],
 "background": {{ background|map(attribute="id")|list|tojson }},
 "replies": {{ in_reply_to|tojson }},
 "type": {{ type|tojson }}, "at": {{ timestamp|tojson }},
 "n_sources": {{ data.event.sources|length }}}
"""


def render_template(template: CompiledTemplate, event: Event, **kwargs: Any) -> bytes:
    """The template rendered in this process (the daemon renders in a worker)."""
    body = alert_body(
        event,
        base_url=BASE,
        matched_topics=kwargs.pop("matched_topics", []),
        in_reply_to=kwargs.pop("in_reply_to", []),
        timestamp=WHEN,
    )
    return template.render(template_context(body, BASE))


def test_operator_template(tmp_path: Path) -> None:
    path = write(tmp_path, "alert.json.j2", GOOD_TEMPLATE)
    template = compile_template(path)
    check_samples(template)
    event = make_event(title='Quote " and {{ 7*7 }} and {% raw %}')
    body = render_template(
        template, event, matched_topics=["islamabad"], in_reply_to=[BACKGROUND_ID]
    )
    assert template.content_type == "application/json"
    assert json.loads(body) == {
        "text": f'Quote " and {{{{ 7*7 }}}} and {{% raw %}} {BASE}events/{EVENT_ID}',
        "topics": ["islamabad"],
        "follow_ups": [f"{BASE}events/{FOLLOW_ID}"],
        "background": [BACKGROUND_ID],
        "replies": [BACKGROUND_ID],
        "type": "event.created",
        "at": "2026-11-27T12:00:05Z",
        "n_sources": 1,
    }


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("alert.txt.j2", "text/plain; charset=utf-8"),
        ("alert.txt", "text/plain; charset=utf-8"),
        ("alert.xml.jinja", "application/xml"),
        ("alert.md.jinja2", "text/markdown; charset=utf-8"),
    ],
)
def test_template_content_type_comes_from_the_file_name(
    tmp_path: Path, name: str, content_type: str
) -> None:
    template = compile_template(write(tmp_path, name, "New: {{ event.title }}\n"))
    assert template.content_type == content_type
    assert render_template(template, make_event()) == f"New: {make_event().title}\n".encode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1}\n{% for x in %}\n', r"line 2: .*"),
        ('{"a": {{ evnt.title|tojson }}}', r"line 1: 'evnt' is undefined"),
        ("{\n\n{{ event.title }}}", r"output is not valid JSON"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", r"line 1: .*"),
        ("{{ cycler.__init__.__globals__ }}", r"line 1: .*"),
        ('{% include "/etc/passwd" %}', r"line 1: .*passwd"),
        ("{% for i in range(100000) %}xxxxxxxxxx{% endfor %}", r"output is over 262144 bytes"),
    ],
    ids=["syntax", "undefined", "not-json", "mro", "globals", "include", "too-big"],
)
def test_bad_templates_are_refused_naming_file_and_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, "bad.json.j2", text)
    with pytest.raises(ConfigError, match=rf"^format: template {path}:? ?{message}"):
        check_samples(compile_template(path))


def test_missing_template(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^format: cannot read template .*nope\.j2"):
        compile_template(tmp_path / "nope.j2")


def test_render_time_overflow_is_a_template_error(tmp_path: Path) -> None:
    path = write(tmp_path, "list.txt.j2", "{% for s in event.sources %}{{ s.name }}\n{% endfor %}")
    template = compile_template(path, max_bytes=2000)
    event = make_event(sources=tuple(Source("n" * 100, "https://example.org/") for _ in range(50)))
    with pytest.raises(TemplateError, match=r"output is over 2000 bytes") as caught:
        render_template(template, event)
    assert (caught.value.path, caught.value.limit) == (str(path), TemplateLimit.OUTPUT)


def test_templates_only_see_cleaned_text(tmp_path: Path) -> None:
    template = compile_template(write(tmp_path, "t.txt", "{{ event.title }}"))
    assert render_template(template, make_event(title="a\x1b[2Jb\x00c")) == b"a[2Jbc"


def test_render_payload_leaves_operator_templates_to_the_workers(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="renders in a worker"):
        render(f"template:{write(tmp_path, 't.txt', 'x')}")
