"""plan_alerts: who is told about what, and what it replies to; no database."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, date, datetime

import pytest

from feedbot.alerts import EventChange, PlannedDelivery, delivery_id, parse_events, plan_alerts
from feedbot.errors import ConfigError
from feedbot.model import AlertKind, Event, Related, RelatedKind, Subscription, Topic
from feedbot.notify.formats import render_payload

CREATED, UPDATED, DELETED = AlertKind.CREATED, AlertKind.UPDATED, AlertKind.DELETED
ALL = (CREATED, UPDATED, DELETED)


def event(event_id: str, *topics: str, title: str = "Something happens", related=()) -> Event:
    return Event(
        id=event_id,
        date=date.fromisoformat("-".join(f"{int(p):02d}" for p in event_id.split("/")[:3])),
        story=None,
        title=title,
        related=tuple(related),
        topics=tuple(Topic.named(t) for t in topics),
    )


def rel(event_id: str, kind: RelatedKind = RelatedKind.BACKGROUND) -> Related:
    return Related(event_id, date(2020, 1, 1), "earlier", (), kind)


def sub(sid: str, topics=("*",), events=(CREATED,), **kw) -> Subscription:
    return Subscription(id=sid, url=f"https://{sid}.example/", topics=topics, events=events, **kw)


def new(e: Event) -> EventChange:
    return EventChange(CREATED, e)


def keys(planned: list[PlannedDelivery]) -> list[tuple[str, str, str, int]]:
    return [(p.subscription_id, p.event_id, p.kind.value, p.sequence) for p in planned]


# -- webhook-ids ------------------------------------------------------------------------


def test_a_created_alerts_webhook_id_is_the_one_feedbot_always_gave() -> None:
    # The value the store gave before alert kinds existed (blake2b of the pair):
    # receivers that drop repeats by webhook-id must see the same id.
    event_id = "2007/07/9/lal-masjid-siege-talks-end-without-progress"
    assert delivery_id("sub_0123456789abcdef", event_id) == "msg_14358ba3f40de7b6e01b4650"
    assert delivery_id("sub_0123456789abcdef", event_id, CREATED, 0) == (
        "msg_14358ba3f40de7b6e01b4650"
    )


def test_updates_and_removals_have_their_own_id_per_sequence() -> None:
    ids = {
        delivery_id("sub_1", "2020/01/1/a"),
        delivery_id("sub_1", "2020/01/1/a", UPDATED, 1),
        delivery_id("sub_1", "2020/01/1/a", UPDATED, 2),
        delivery_id("sub_1", "2020/01/1/a", DELETED, 1),
        delivery_id("sub_2", "2020/01/1/a", UPDATED, 1),
    }
    assert len(ids) == 5
    assert delivery_id("sub_1", "2020/01/1/a", UPDATED, 1) == delivery_id(
        "sub_1", "2020/01/1/a", UPDATED, 1
    )


# -- who gets what ----------------------------------------------------------------------


def test_topics_and_keywords_decide_who_gets_a_new_event() -> None:
    subs = [
        sub("all"),
        sub("floods", topics=("flood",)),
        sub("quakes", topics=("quake",)),
        sub("words", keywords=("dam",)),
    ]
    planned = plan_alerts(
        [new(event("2020/01/1/a", "Flood", "Dhaka", title="A dam breaks"))], subs, {}, {}
    )
    assert [(p.subscription_id, p.matched_topics) for p in planned] == [
        ("all", ("flood", "dhaka")),
        ("floods", ("flood",)),
        ("words", ("flood", "dhaka")),
    ]


def test_each_kind_goes_only_to_subscriptions_that_opted_in() -> None:
    subs = [
        sub("default"),
        sub("updates", events=(CREATED, UPDATED)),
        sub("only-deleted", events=(DELETED,)),
        sub("every", events=ALL),
    ]
    a, b, c = event("2020/01/1/a"), event("2020/01/2/b"), event("2020/01/3/c")
    changes = [new(a), EventChange(UPDATED, b, "Old title"), EventChange(DELETED, c)]
    planned = plan_alerts(changes, subs, {}, {})
    assert keys(planned) == [
        ("default", a.id, "created", 0),
        ("every", a.id, "created", 0),
        ("updates", a.id, "created", 0),
        ("every", b.id, "updated", 1),
        ("updates", b.id, "updated", 1),
        ("every", c.id, "deleted", 1),
        ("only-deleted", c.id, "deleted", 1),
    ]
    updates = [p for p in planned if p.kind is UPDATED]
    assert all(p.previous_title == "Old title" for p in updates)
    assert all(p.previous_title is None for p in planned if p.kind is not UPDATED)


def test_an_update_is_matched_on_the_new_content() -> None:
    floods = sub("floods", topics=("flood",), events=ALL)
    was_flood_now_fire = EventChange(UPDATED, event("2020/01/1/a", "Fire"), "A flood")
    assert plan_alerts([was_flood_now_fire], [floods], {}, {}) == []
    now_flood = EventChange(UPDATED, event("2020/01/1/a", "Flood"), "A fire")
    assert keys(plan_alerts([now_flood], [floods], {}, {})) == [
        ("floods", "2020/01/1/a", "updated", 1)
    ]


def test_update_and_removal_sequences_continue_from_what_was_sent() -> None:
    s = sub("s", events=ALL)
    a = event("2020/01/1/a")
    before = {("s", a.id): {CREATED: 1, UPDATED: 2, DELETED: 1}}
    planned = plan_alerts(
        [EventChange(UPDATED, a, "Second"), EventChange(DELETED, a)], [s], {}, before
    )
    assert keys(planned) == [("s", a.id, "updated", 3), ("s", a.id, "deleted", 2)]
    assert planned[0].id == delivery_id("s", a.id, UPDATED, 3)


def test_a_created_alert_is_never_planned_twice() -> None:
    s = sub("s", events=ALL)
    a = event("2020/01/1/a")
    assert plan_alerts([new(a)], [s], {}, {("s", a.id): {CREATED: 1, DELETED: 1}}) == []
    # Twice in one batch: once.
    assert keys(plan_alerts([new(a), new(a)], [s], {}, {})) == [("s", a.id, "created", 0)]


def test_no_subscriptions_no_alerts() -> None:
    assert plan_alerts([new(event("2020/01/1/a"))], [], {}, {}) == []


# -- threading ------------------------------------------------------------------------------


def test_a_new_event_replies_to_related_events_the_subscription_was_told_about() -> None:
    told, untold = sub("told"), sub("untold")
    earlier = "2020/01/1/earlier"
    follow = event("2020/01/5/follow", related=[rel(earlier)])
    planned = plan_alerts([new(follow)], [told, untold], {}, {("told", earlier): {CREATED: 1}})
    assert [(p.subscription_id, p.in_reply_to) for p in planned] == [
        ("told", (earlier,)),
        ("untold", ()),
    ]


def test_threading_follows_links_in_both_directions() -> None:
    # A stored event that names the new one as its background (the archive links
    # forward from the older page): the new one replies to it too.
    s = sub("s")
    stored = "2020/01/9/later-page-naming-it"
    planned = plan_alerts(
        [new(event("2020/01/5/a"))], [s], {"2020/01/5/a": {stored}}, {("s", stored): {CREATED: 1}}
    )
    assert planned[0].in_reply_to == (stored,)


def test_within_a_batch_later_events_reply_to_earlier_ones_in_date_order() -> None:
    s = sub("s")
    first = event("2020/01/1/first")
    second = event("2020/01/2/second", related=[rel(first.id, RelatedKind.FOLLOW_UP)])
    third = event("2020/01/3/third", related=[rel(first.id), rel(second.id)])
    for order in itertools.permutations([first, second, third]):
        planned = plan_alerts([new(e) for e in order], [s], {}, {})
        assert [(p.event_id, p.in_reply_to) for p in planned] == [
            (first.id, ()),
            (second.id, (first.id,)),
            (third.id, (first.id, second.id)),
        ]


def test_an_event_filtered_out_for_a_subscription_is_not_replied_to() -> None:
    floods = sub("floods", topics=("flood",))
    fire = event("2020/01/1/fire", "Fire")
    flood = event("2020/01/2/flood", "Flood", related=[rel(fire.id)])
    planned = plan_alerts([new(fire), new(flood)], [floods], {}, {})
    assert [(p.event_id, p.in_reply_to) for p in planned] == [(flood.id, ())]


def test_updates_and_removals_reply_to_nothing() -> None:
    s = sub("s", events=ALL)
    earlier = "2020/01/1/earlier"
    a = event("2020/01/5/a", related=[rel(earlier)])
    told = {("s", earlier): {CREATED: 1}}
    planned = plan_alerts(
        [EventChange(UPDATED, a, "Before"), EventChange(DELETED, a)], [s], {a.id: {earlier}}, told
    )
    assert [p.in_reply_to for p in planned] == [(), ()]


def test_an_update_told_to_a_subscription_makes_a_later_new_event_reply_to_it() -> None:
    s = sub("s", events=ALL)
    a = event("2020/01/1/a")
    told = {("s", a.id): {UPDATED: 1}}  # it never had a's created alert, but heard of a
    planned = plan_alerts([new(event("2020/01/2/b", related=[rel(a.id)]))], [s], {}, told)
    assert planned[0].in_reply_to == (a.id,)


# -- determinism ----------------------------------------------------------------------------


def test_the_plan_is_the_same_for_the_same_inputs_in_any_order() -> None:
    subs = [sub("b", events=ALL), sub("a", topics=("flood",), events=ALL), sub("c")]
    first = event("2020/01/1/first", "Flood")
    second = event("2020/01/1/second", "Flood", related=[rel(first.id)])
    changes = [
        new(second),
        EventChange(DELETED, event("2019/12/1/gone", "Flood")),
        new(first),
        EventChange(UPDATED, event("2019/12/2/changed"), "Before"),
    ]
    expected = plan_alerts(changes, subs, {}, {})
    for change_order in itertools.permutations(changes):
        for sub_order in itertools.permutations(subs):
            assert plan_alerts(change_order, sub_order, {}, {}) == expected
    # Created first by date and id, then updates, then removals; subscriptions by id.
    assert [(p.kind.value, p.event_id, p.subscription_id) for p in expected] == [
        ("created", first.id, "a"),
        ("created", first.id, "b"),
        ("created", first.id, "c"),
        ("created", second.id, "a"),
        ("created", second.id, "b"),
        ("created", second.id, "c"),
        ("updated", "2019/12/2/changed", "b"),
        ("deleted", "2019/12/1/gone", "a"),
        ("deleted", "2019/12/1/gone", "b"),
    ]
    # The inputs are not changed by planning.
    before = {("b", first.id): {CREATED: 1}}
    plan_alerts(changes, subs, {}, before)
    assert before == {("b", first.id): {CREATED: 1}}


# -- the events key -----------------------------------------------------------------------


def test_events_key_takes_any_subset_in_a_fixed_order() -> None:
    assert parse_events(["updated", " Created ", "updated"]) == (CREATED, UPDATED)
    assert parse_events(["deleted"]) == (DELETED,)
    assert parse_events(("created", "updated", "deleted")) == ALL


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["created", "renamed"], "events: unknown alert kind 'renamed'"),
        ([], "events: give at least one"),
        ("created,updated", "events: give a list"),
        ([3], "events: unknown alert kind 3"),
    ],
)
def test_a_bad_events_key_names_the_key(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_events(value)  # type: ignore[arg-type]


# -- the bodies of each kind ------------------------------------------------------------------

STAMP = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def render(fmt: str, kind: AlertKind, previous: str | None = None) -> dict:
    e = event("2020/01/1/a", "Flood", title="Floods <b>kill</b> 12")
    payload = render_payload(
        fmt,
        e,
        base_url="https://feeds.example",
        matched_topics=["flood"],
        in_reply_to=[],
        timestamp=STAMP,
        kind=kind,
        previous_title=previous,
    )
    return json.loads(payload.body)


def test_json_bodies_say_their_kind_and_an_update_its_previous_title() -> None:
    created = render("json", CREATED)
    assert created["type"] == "event.created" and "previous" not in created["data"]
    updated = render("json", UPDATED, "A flood\x07 in Dhaka")
    assert updated["type"] == "event.updated"
    assert updated["data"]["previous"] == {"title": "A flood in Dhaka"}  # cleaned
    assert updated["data"]["event"]["title"] == "Floods <b>kill</b> 12"
    deleted = render("json", DELETED)
    assert deleted["type"] == "event.deleted" and "previous" not in deleted["data"]
    assert deleted["data"]["event"]["id"] == "2020/01/1/a"


def test_slack_shows_what_happened_and_the_previous_title_escaped() -> None:
    created = render("slack", CREATED)
    assert created["blocks"][0]["text"]["text"] == "Floods <b>kill</b> 12"
    updated = render("slack", UPDATED, "Was <@here> & more")
    assert updated["blocks"][0]["text"]["text"] == "Updated: Floods <b>kill</b> 12"
    assert updated["text"].startswith("Updated: ")
    assert updated["blocks"][2]["text"]["text"] == "*Previously*\nWas &lt;@here&gt; &amp; more"
    deleted = render("slack", DELETED)
    assert deleted["blocks"][0]["text"]["text"] == "Removed: Floods <b>kill</b> 12"
    assert all("Previously" not in json.dumps(b) for b in deleted["blocks"])


def test_discord_shows_what_happened_and_the_previous_title_escaped() -> None:
    (embed,) = render("discord", UPDATED, "Was **bold** [x](y)")["embeds"]
    assert embed["title"] == "Updated: Floods <b>kill</b> 12"
    assert embed["fields"][0] == {
        "name": "Previously",
        "value": r"Was \*\*bold\*\* \[x\]\(y\)",
        "inline": False,
    }
    (removed,) = render("discord", DELETED)["embeds"]
    assert removed["title"] == "Removed: Floods <b>kill</b> 12"
    assert all(f["name"] != "Previously" for f in removed["fields"])
    (created,) = render("discord", CREATED)["embeds"]
    assert created["title"] == "Floods <b>kill</b> 12"


def test_a_long_previous_title_keeps_within_the_chat_limits() -> None:
    long = "word " * 2000
    slack = render("slack", UPDATED, long)
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in slack["blocks"])
    (embed,) = render("discord", UPDATED, long)["embeds"]
    assert len(embed["fields"][0]["value"]) <= 1024
