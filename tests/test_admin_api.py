"""The admin API through real HTTP on loopback, over a real SQLite store (and the
PostgreSQL one, for what the store's answers decide).

Each test runs the real :class:`~feedbot.web.WebServer` on port 0 with
``admin.token`` set (or not) and talks to it with aiohttp's client: the
subscription CRUD flow, validation errors naming the field, secrets that never
come back (but the one the server generates, once), deliveries and replays.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from feedbot.clock import utc_now
from feedbot.feeds.cache import FeedCache
from feedbot.model import AlertKind, DeliveryStatus, Event, EventRecord, Subscription, Topic
from feedbot.notify.signing import new_secret, validate_secret
from feedbot.settings import Settings
from feedbot.store import AttemptReport, Store
from feedbot.store.subscriptions import Subscriptions
from feedbot.web import WebServer
from feedbot.web.admin import MAX_BODY
from tests.receivers import Reply

TOKEN = "s3cret-admin-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HOOK = "https://hooks.example.com/feedbot"
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@dataclass
class Api:
    server: WebServer
    store: Store
    session: aiohttp.ClientSession
    seen: list[str]  # every response body, to look for secrets in

    async def call(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        auth: dict[str, str] | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        sent = dict(AUTH if auth is None else auth)
        sent.update(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        async with self.session.request(
            method, self.server.url + path, data=data, headers=sent
        ) as response:
            reply = Reply(response.status, CIMultiDict(response.headers), await response.read())
        self.seen.append(reply.text)
        return reply


def settings(token: str | None = TOKEN) -> Settings:
    return Settings(
        server={"host": "127.0.0.1", "port": 0, "base_url": "http://feeds.test"},
        admin={"token": token},
    )


async def serve(
    tmp_path: Path, config: Settings, store_url: str | None = None
) -> AsyncIterator[Api]:
    store = await Store.open(store_url or f"sqlite:///{tmp_path / 'feedbot.db'}")
    server = WebServer(config, store, FeedCache(store, config.public_base_url))
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(server, store, session, [])
    finally:
        await server.stop()
        await store.close()


@pytest.fixture
async def api(tmp_path: Path, store_url: str) -> AsyncIterator[Api]:
    """The API over each backend's store."""
    async for served in serve(tmp_path, settings(), store_url):
        yield served


@pytest.fixture
async def api_off(tmp_path: Path) -> AsyncIterator[Api]:
    async for served in serve(tmp_path, settings(token=None)):
        yield served


# -- on, off, and who may use it ---------------------------------------------------------


async def test_without_a_token_every_api_path_is_404(api_off: Api) -> None:
    for method, path in [
        ("GET", "/api/v1/subscriptions"),
        ("POST", "/api/v1/subscriptions"),
        ("GET", "/api/v1/deliveries"),
        ("POST", "/api/v1/deliveries/replay"),
        ("GET", "/api/v1/anything"),
        ("GET", "/api/"),
    ]:
        reply = await api_off.call(method, path, {"url": HOOK} if method == "POST" else None)
        assert reply.status == 404, (method, path)
    assert (await api_off.call("GET", "/healthz")).status == 200


async def test_an_empty_token_leaves_the_api_off(tmp_path: Path) -> None:
    async for api in serve(tmp_path, settings(token="  ")):
        reply = await api.call("GET", "/api/v1/subscriptions", auth={"Authorization": "Bearer "})
        assert reply.status == 404


async def test_bearer_token_is_required(api: Api) -> None:
    for auth in [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": "Bearer tökén"},  # non-ASCII: refused, not a crash
    ]:
        for path in ("/api/v1/subscriptions", "/api/v1/deliveries", "/api/v1/nothing-here"):
            reply = await api.call("GET", path, auth=auth)
            assert reply.status == 401, (auth, path)
            assert reply.headers["WWW-Authenticate"].startswith("Bearer")
            assert reply.json["error"].startswith("authorization:")
    reply = await api.call("DELETE", "/api/v1/subscriptions/sub_x", auth={})
    assert reply.status == 401
    assert (await api.call("GET", "/api/v1/subscriptions")).status == 200
    assert (
        await api.call("GET", "/api/v1/subscriptions", auth={"authorization": "bearer " + TOKEN})
    ).status == 200
    assert TOKEN not in "".join(api.seen)


async def test_unknown_paths_and_methods_answer_json(api: Api) -> None:
    reply = await api.call("GET", "/api/v1/nothing-here")
    assert reply.status == 404 and reply.json["field"] is None
    reply = await api.call("PUT", "/api/v1/subscriptions", {"url": HOOK})
    assert reply.status == 405
    assert "POST" in reply.headers["Allow"]
    assert reply.headers["Content-Type"].startswith("application/json")


# -- subscriptions -------------------------------------------------------------------------


async def test_subscription_crud_flow(api: Api) -> None:
    secret = new_secret()
    created = await api.call(
        "POST",
        "/api/v1/subscriptions",
        {"url": HOOK, "topics": ["Flood", "dhaka"], "format": "json", "secret": secret},
    )
    assert created.status == 201, created.text
    sub = created.json
    assert sub["id"].startswith("sub_")
    assert created.headers["Location"] == f"/api/v1/subscriptions/{sub['id']}"
    assert created.headers["Cache-Control"] == "no-store"
    assert sub["url"] == HOOK and sub["topics"] == ["flood", "dhaka"]
    assert sub["signed"] is True and "secret" not in sub
    assert sub["active"] is True and sub["origin"] == "api" and sub["created_at"].endswith("Z")
    stored = await api.store.subscriptions.get(sub["id"])
    assert stored is not None and stored.secret == secret

    listing = await api.call("GET", "/api/v1/subscriptions")
    assert listing.status == 200
    assert [s["id"] for s in listing.json["subscriptions"]] == [sub["id"]]
    one = await api.call("GET", f"/api/v1/subscriptions/{sub['id']}")
    assert one.status == 200 and one.json == sub

    patched = await api.call(
        "PATCH",
        f"/api/v1/subscriptions/{sub['id']}",
        {"topics": ["*"], "format": "slack", "keywords": ["flood"], "exclude": ["drill"]},
    )
    assert patched.status == 200, patched.text
    assert (
        patched.json["topics"],
        patched.json["format"],
        patched.json["keywords"],
        patched.json["exclude"],
    ) == (["*"], "slack", ["flood"], ["drill"])
    assert patched.json["signed"] is True  # the secret was kept
    assert patched.json["created_at"] == sub["created_at"]

    off = await api.call("PATCH", f"/api/v1/subscriptions/{sub['id']}", {"active": False})
    assert off.json["active"] is False and off.json["disabled_reason"]
    # A subscription disabled by the deliverer (410 Gone) comes back on with its reason cleared.
    assert stored is not None
    await api.store.subscriptions.update(
        Subscription(
            **{**_fields(stored), "active": False, "disabled_reason": "HTTP 410 Gone"},
        )
    )
    gone = await api.call("GET", f"/api/v1/subscriptions/{sub['id']}")
    assert gone.json["disabled_reason"] == "HTTP 410 Gone"
    on = await api.call("PATCH", f"/api/v1/subscriptions/{sub['id']}", {"active": True})
    assert on.json["active"] is True and on.json["disabled_reason"] is None

    unsigned = await api.call("PATCH", f"/api/v1/subscriptions/{sub['id']}", {"secret": None})
    assert unsigned.json["signed"] is False

    deleted = await api.call("DELETE", f"/api/v1/subscriptions/{sub['id']}")
    assert deleted.status == 204 and deleted.body == b""
    for method in ("GET", "DELETE"):
        missing = await api.call(method, f"/api/v1/subscriptions/{sub['id']}")
        assert missing.status == 404 and missing.json["field"] == "id"
    missing = await api.call("PATCH", "/api/v1/subscriptions/sub_nope", {"active": True})
    assert missing.status == 404
    assert (await api.call("GET", "/api/v1/subscriptions")).json == {"subscriptions": []}
    assert secret not in "".join(api.seen)


def _fields(subscription: Subscription) -> dict[str, Any]:
    return {name: getattr(subscription, name) for name in Subscription.__dataclass_fields__}


async def test_a_generated_secret_is_shown_once(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    created = await api.call("POST", "/api/v1/subscriptions", {"url": HOOK, "secret": "generate"})
    assert created.status == 201
    secret = created.json["secret"]
    assert validate_secret(secret) == secret
    stored = await api.store.subscriptions.get(created.json["id"])
    assert stored is not None and stored.secret == secret
    path = f"/api/v1/subscriptions/{created.json['id']}"
    await api.call("GET", path)
    await api.call("GET", "/api/v1/subscriptions")
    await api.call("PATCH", path, {"topics": ["flood"]})
    rotated = await api.call("PATCH", path, {"secret": "generate"})
    assert rotated.status == 200
    new = rotated.json["secret"]
    assert new != secret and validate_secret(new) == new
    await api.call("GET", path)
    later = api.seen[1:]
    assert all(secret not in text for text in later)
    assert sum(new in text for text in later) == 1  # in the rotation's answer only
    for record in caplog.records:
        message = record.getMessage()
        assert TOKEN not in message
        # (aiosqlite's DEBUG lines carry SQL parameters; feedbot's formatter masks them.)
        if record.name.startswith(("feedbot", "aiohttp")):
            assert secret not in message and new not in message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "not a url"}, "url"),
        ({"url": "ftp://example.com/hook"}, "url"),
        ({"url": "http://127.0.0.1:9000/hook"}, "url"),  # refused: loopback
        ({"url": "http://[::ffff:127.0.0.1]/hook"}, "url"),
        ({"url": 42}, "url"),
        ({}, "url"),
        # Input that cannot be a host (a NUL gave a 500).
        ({"url": "http://exa\u0000mple.org/hook"}, "url"),
        ({"url": "http://exa mple.org/hook"}, "url"),
        ({"url": "http://exa%00mple.org/hook"}, "url"),
        ({"url": "https://hooks.example.com/\u202efeedbot"}, "url"),
        ({"url": "https://user:pw@hooks.example.com/feedbot"}, "url"),
        ({"url": HOOK, "format": "xml"}, "format"),
        ({"url": HOOK, "format": "template:/nonexistent/template.j2"}, "format"),
        ({"url": HOOK, "secret": "hunter2"}, "secret"),
        ({"url": HOOK, "secret": "whsec_!!!!notbase64!!!!"}, "secret"),
        ({"url": HOOK, "secret": "whsec_c2hvcnQ="}, "secret"),  # too short
        ({"url": HOOK, "secret": 12}, "secret"),
        ({"url": HOOK, "topics": ["floods and storms"]}, "topics"),
        ({"url": HOOK, "topics": []}, "topics"),
        ({"url": HOOK, "topics": "flood"}, "topics"),
        ({"url": HOOK, "keywords": [1, 2]}, "keywords"),
        ({"url": HOOK, "keywords": ["flood", "!!!"]}, "keywords"),
        ({"url": HOOK, "exclude": ["--"]}, "exclude"),
        ({"url": HOOK, "exclude": "drill"}, "exclude"),
        ({"url": HOOK, "topic": ["flood"]}, "topic"),
        ({"url": HOOK, "events": ["created", "renamed"]}, "events"),
        ({"url": HOOK, "events": []}, "events"),
        ({"url": HOOK, "events": "created"}, "events"),
        ({"url": HOOK, "digest": "monthly"}, "digest"),
        ({"url": HOOK, "digest": 5}, "digest"),
        ({"url": HOOK, "digest": ["daily"]}, "digest"),
        ({"url": HOOK, "digest": "daily", "digest_at": "25:00"}, "digest_at"),
        ({"url": HOOK, "digest_at": "08:00"}, "digest_at"),
        ({"url": HOOK, "digest": "daily", "timezone": "Mars/Olympus"}, "timezone"),
        ({"url": HOOK, "digest": "daily", "events": ["created", "updated"]}, "events"),
        ({"url": "nosuchservice://x", "format": "apprise"}, "url"),
        ({"url": HOOK, "format": "apprise"}, "url"),
    ],
)
async def test_create_refuses_bad_input_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    reply = await api.call("POST", "/api/v1/subscriptions", body)
    assert reply.status == 400, reply.text
    assert reply.json["field"] == field
    assert reply.json["error"].startswith(f"{field}:")
    if isinstance(body.get("secret"), str):
        assert body["secret"] not in reply.text  # a bad secret is not echoed either
    assert await api.store.subscriptions.all() == []


async def test_apprise_and_digest_subscriptions_show_no_secret(api: Api) -> None:
    password = "hunter2-of-the-smtp-relay"
    url = f"mailto://user:{password}@mail.example.org?from=a@example.org"
    body = {"url": url, "format": "apprise", "digest": "daily", "timezone": "europe/berlin"}
    created = await api.call("POST", "/api/v1/subscriptions", body)
    assert created.status == 201, created.text
    assert password not in created.text
    view = created.json
    assert view["url"].startswith("mailto://user:") and "***" in view["url"]
    assert (view["digest"], view["digest_at"], view["timezone"]) == (
        "daily",
        "08:00",
        "Europe/Berlin",
    )
    stored = await api.store.subscriptions.get(view["id"])
    assert stored is not None and stored.url == url  # kept whole, to send with
    listing = await api.call("GET", "/api/v1/subscriptions")
    assert password not in listing.text

    weekly = await api.call("PATCH", f"/api/v1/subscriptions/{view['id']}", {"digest": "weekly"})
    assert weekly.status == 200 and weekly.json["digest"] == "weekly"
    assert weekly.json["timezone"] == "Europe/Berlin"  # kept
    off = await api.call(
        "PATCH",
        f"/api/v1/subscriptions/{view['id']}",
        {"digest": None, "digest_at": None, "timezone": None},
    )
    assert off.status == 200 and off.json["digest"] is None


async def test_a_subscription_can_be_created_switched_off(api: Api) -> None:
    created = await api.call("POST", "/api/v1/subscriptions", {"url": HOOK, "active": False})
    assert created.status == 201, created.text
    assert created.json["active"] is False and created.json["disabled_reason"]
    bad = await api.call("POST", "/api/v1/subscriptions", {"url": HOOK, "active": "no"})
    assert bad.status == 400 and bad.json["field"] == "active"


async def test_the_operators_subscription_is_not_the_apis(api: Api) -> None:
    await api.store.subscriptions.reconcile_operator(
        Subscription(id="", url="https://ops.example.org/hook"), now=utc_now()
    )
    assert (await api.call("GET", "/api/v1/subscriptions")).json["subscriptions"] == []
    assert (await api.call("GET", "/api/v1/subscriptions/operator")).status == 404
    assert (await api.call("DELETE", "/api/v1/subscriptions/operator")).status == 404
    assert await api.store.subscriptions.operator() is not None


async def test_template_formats_are_the_operators_alone(api: Api, tmp_path: Path) -> None:
    # A template is a file on the server; the API may not name one (config and CLI may).
    good = tmp_path / "good.json.j2"
    good.write_text('{"title": {{ event.title | tojson }}}\n', encoding="utf-8")
    reply = await api.call(
        "POST", "/api/v1/subscriptions", {"url": HOOK, "format": f"template:{good}"}
    )
    assert reply.status == 400
    assert reply.json["field"] == "format" and "config file" in reply.json["error"]
    created = await api.call("POST", "/api/v1/subscriptions", {"url": HOOK})
    path = f"/api/v1/subscriptions/{created.json['id']}"
    patched = await api.call("PATCH", path, {"format": "template:/etc/passwd"})
    assert patched.status == 400 and patched.json["field"] == "format"
    assert (await api.call("GET", path)).json["format"] == "json"  # unchanged


async def test_patch_refuses_bad_input_naming_the_field(api: Api) -> None:
    created = await api.call("POST", "/api/v1/subscriptions", {"url": HOOK})
    path = f"/api/v1/subscriptions/{created.json['id']}"
    for body, field in [
        ({"active": "yes"}, "active"),
        ({"url": "https://other.example.com/"}, "url"),
        ({"format": "yaml"}, "format"),
        ({"topics": ["Not A Slug!"]}, "topics"),
        ({"secret": "whsec_short"}, "secret"),
        ({"colour": "red"}, "colour"),
    ]:
        reply = await api.call("PATCH", path, body)
        assert (reply.status, reply.json["field"]) == (400, field), body
    assert (await api.call("GET", path)).json == created.json


async def test_bodies_must_be_small_json_objects(api: Api) -> None:
    path = "/api/v1/subscriptions"
    reply = await api.call("POST", path, raw=b"url=x", headers={"Content-Type": "text/plain"})
    assert reply.status == 415 and reply.json["field"] == "body"
    reply = await api.call("POST", path, raw=json.dumps({"url": HOOK}).encode())
    assert reply.status == 415  # JSON, but not labelled as such
    reply = await api.call(
        "POST", path, raw=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert reply.status == 400 and reply.json["field"] == "body"
    reply = await api.call(
        "POST", path, raw=b"[" * 40000, headers={"Content-Type": "application/json"}
    )
    assert reply.status == 400 and reply.json["field"] == "body"
    reply = await api.call("POST", path, [HOOK])
    assert reply.status == 400 and reply.json["error"] == "body: must be a JSON object"
    big = {"url": HOOK, "keywords": ["x" * 1000] * (MAX_BODY // 1000 + 1)}
    reply = await api.call("POST", path, big)
    assert reply.status == 413 and reply.json["field"] == "body"

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        yield b'{"url": "' + HOOK.encode() + b'", "keywords": ["'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"]}'

    async with api.session.post(
        api.server.url + path,
        data=chunked(),
        headers={**AUTH, "Content-Type": "application/json"},
    ) as response:
        assert response.status == 413
    assert await api.store.subscriptions.all() == []


async def test_config_subscriptions_can_only_be_switched_on_and_off(api: Api) -> None:
    stored = await api.store.subscriptions.add(
        Subscription(id="", url=HOOK, origin="config"), now=T0
    )
    path = f"/api/v1/subscriptions/{stored.id}"
    reply = await api.call("PATCH", path, {"topics": ["flood"]})
    assert reply.status == 409 and reply.json["field"] == "topics"
    assert "config file" in reply.json["error"]
    assert (await api.call("DELETE", path)).status == 409
    reply = await api.call("PATCH", path, {"active": False})
    assert reply.status == 200 and reply.json["active"] is False


# -- deliveries ----------------------------------------------------------------------------


def event(event_id: str, *topics: str) -> Event:
    return Event(
        id=event_id,
        date=date(2026, 11, 27),
        story=None,
        title="Something happens",
        related=(),
        topics=tuple(Topic.named(t) for t in topics),
    )


async def test_deliveries_listing_detail_and_replay(api: Api) -> None:
    created = await api.call("POST", "/api/v1/subscriptions", {"url": HOOK, "topics": ["flood"]})
    sub_id = created.json["id"]
    now = datetime.now(UTC)
    written = await api.store.write_batch(
        new=[EventRecord.of(event(f"2026/11/27/e{i}", "Flood")) for i in range(3)],
        changed=[],
        marks_={},
        rejected={},
        accepted_paths=[],
        now=now,
        alert_since=None,
    )
    assert written.alerts == 3
    jobs = await api.store.outbox.claim_due(
        now=now, limit=1, worker="test", lease=timedelta(seconds=60)
    )
    failed = jobs[0].delivery
    await api.store.outbox.finish_attempt(
        failed,
        AttemptReport(now, 87, 500, "HTTP 500 Internal Server Error", DeliveryStatus.FAILED),
    )

    everything = await api.call("GET", "/api/v1/deliveries")
    assert everything.status == 200 and len(everything.json["deliveries"]) == 3
    pending = await api.call("GET", "/api/v1/deliveries?status=pending&limit=1")
    assert len(pending.json["deliveries"]) == 1
    assert pending.json["deliveries"][0]["status"] == "pending"
    listing = await api.call("GET", "/api/v1/deliveries?status=failed")
    (row,) = listing.json["deliveries"]
    assert row["id"] == failed.id and row["subscription_id"] == sub_id
    assert row["matched_topics"] == ["flood"] and row["last_status"] == 500

    detail = await api.call("GET", f"/api/v1/deliveries/{failed.id}")
    assert detail.status == 200
    assert detail.json["status"] == "failed" and detail.json["attempts"] == 1
    (attempt,) = detail.json["attempt_log"]
    assert attempt == {
        "attempted_at": detail.json["last_attempt_at"],
        "status": 500,
        "latency_ms": 87,
        "error": "HTTP 500 Internal Server Error",
    }
    missing = await api.call("GET", "/api/v1/deliveries/msg_nope")
    assert missing.status == 404 and missing.json["field"] == "id"

    for query, field in [("status=broken", "status"), ("limit=0", "limit"), ("limit=x", "limit")]:
        bad = await api.call("GET", f"/api/v1/deliveries?{query}")
        assert (bad.status, bad.json["field"]) == (400, field)

    nope = await api.call("POST", "/api/v1/deliveries/replay", {"ids": ["msg_nope"]})
    assert nope.json["replayed"] == 0
    assert [(r["id"], r["outcome"]) for r in nope.json["results"]] == [
        ("msg_nope", "no such delivery")
    ]
    bad = await api.call("POST", "/api/v1/deliveries/replay", {"ids": "all"})
    assert (bad.status, bad.json["field"]) == (400, "ids")
    replayed = await api.call("POST", "/api/v1/deliveries/replay", {"ids": [failed.id]})
    assert replayed.status == 200 and replayed.json["replayed"] == 1
    again = await api.call("GET", f"/api/v1/deliveries/{failed.id}")
    assert again.json["status"] == "pending" and again.json["attempts"] == 0
    assert len(again.json["attempt_log"]) == 1  # the history stays

    async def fail_again() -> None:
        # An attempt is recorded under a claim: take the replayed delivery again.
        (job,) = [
            job
            for job in await api.store.outbox.claim_due(
                now=datetime.now(UTC), limit=10, worker="test", lease=timedelta(seconds=60)
            )
            if job.delivery.id == failed.id
        ]
        assert await api.store.outbox.finish_attempt(
            job.delivery, AttemptReport(now, 5, None, "timed out", DeliveryStatus.FAILED)
        )

    # {} (or no body at all) replays every failed delivery.
    await fail_again()
    assert (await api.call("POST", "/api/v1/deliveries/replay", {})).json["replayed"] == 1
    await fail_again()
    assert (await api.call("POST", "/api/v1/deliveries/replay")).json["replayed"] == 1
    assert await api.store.outbox.count(DeliveryStatus.FAILED) == 0


async def test_replay_answers_for_each_delivery_with_what_to_do(api: Api) -> None:
    from tests.test_replay import build_scene

    scene = await build_scene(api.store)
    off = scene.disabled_subscription.id
    asked = [scene.failed, scene.pending, scene.done, scene.disabled, scene.held, "msg_nope"]
    reply = await api.call("POST", "/api/v1/deliveries/replay", {"ids": asked})
    assert reply.status == 200 and reply.json["replayed"] == 1
    results = {r["id"]: r for r in reply.json["results"]}
    assert list(results) == asked
    assert results[scene.failed] == {
        "id": scene.failed,
        "outcome": "queued",
        "queued": True,
        "subscription_id": results[scene.failed]["subscription_id"],
        "next_attempt_at": None,
        "reason": None,
    }
    assert results[scene.pending]["outcome"] == "already pending"
    assert results[scene.pending]["next_attempt_at"] == "2026-11-27T12:00:00Z"
    assert results[scene.done]["outcome"] == "already delivered"
    disabled = results[scene.disabled]
    assert (disabled["outcome"], disabled["queued"]) == ("subscription disabled", False)
    assert disabled["reason"] == (
        f"subscription {off} is disabled (HTTP 410 Gone); PATCH /api/v1/subscriptions/{off} "
        'with {"active": true} switches it on, then replay again'
    )
    assert results[scene.held]["reason"].startswith("held until its subscription ")
    assert results["msg_nope"]["outcome"] == "no such delivery"

    switched = await api.call("PATCH", f"/api/v1/subscriptions/{off}", {"active": True})
    assert switched.status == 200
    again = await api.call("POST", "/api/v1/deliveries/replay", {"ids": [scene.disabled]})
    assert again.json["results"][0]["outcome"] == "queued"


async def test_ids_that_cannot_be_ours_are_refused_without_asking_the_store(api: Api) -> None:
    for path in ("/api/v1/subscriptions/sub%00x", "/api/v1/deliveries/msg%00x"):
        reply = await api.call("GET", path)
        assert (reply.status, reply.json["field"]) == (404, "id"), path
    bad = await api.call("POST", "/api/v1/deliveries/replay", {"ids": ["msg_\u0000"]})
    assert (bad.status, bad.json["field"]) == (400, "ids")


# -- races with other connections, and switching any format on and off ---------------------


class _RemovedRightAfterRead:
    """The API's subscriptions, but every one it reads is removed by another store
    connection right after: a DELETE (from another request or replica) landing
    between a handler's read and its write, every time."""

    def __init__(self, subscriptions: Subscriptions, other: Store) -> None:
        self._subscriptions = subscriptions
        self._other = other

    def __getattr__(self, name: str) -> Any:
        return getattr(self._subscriptions, name)

    async def get(self, subscription_id: str) -> Subscription | None:
        found = await self._subscriptions.get(subscription_id)
        if found is not None:
            assert await self._other.subscriptions.remove(subscription_id, now=T0)
        return found


@pytest.mark.parametrize(
    "body", [{"active": False}, {"active": True}, {"topics": ["flood"]}, {}], ids=str
)
async def test_a_patch_racing_a_delete_is_404(
    api: Api, store_url: str, body: dict[str, Any]
) -> None:
    created = await api.call("POST", "/api/v1/subscriptions", {"url": HOOK})
    sub_id = created.json["id"]
    other = await Store.open(store_url)
    try:
        api.store.subscriptions = _RemovedRightAfterRead(api.store.subscriptions, other)  # type: ignore[assignment]
        reply = await api.call("PATCH", f"/api/v1/subscriptions/{sub_id}", body)
    finally:
        await other.close()
    assert (reply.status, reply.json) == (
        404,
        {"error": f"no subscription {sub_id!r}", "field": "id"},
    )
    assert "Retry-After" not in reply.headers
    assert await api.store.subscriptions.all() == []


async def test_a_template_subscription_is_switched_on_after_a_410(api: Api, tmp_path: Path) -> None:
    # The operator gave it a template (config or CLI); the API may still switch it.
    template = tmp_path / "alert.json.j2"
    template.write_text('{"title": {{ event.title | tojson }}}\n', encoding="utf-8")
    stored = await api.store.subscriptions.add(
        Subscription(id="", url=HOOK, format=f"template:{template}", origin="cli"), now=T0
    )
    path = f"/api/v1/subscriptions/{stored.id}"
    await api.store.write_batch(
        new=[EventRecord.of(event("2026/11/27/e0", "Flood"))],
        changed=[],
        marks_={},
        rejected={},
        accepted_paths=[],
        now=T0,
        alert_since=None,
    )
    (job,) = await api.store.outbox.claim_due(
        now=T0, limit=1, worker="w", lease=timedelta(seconds=60)
    )
    gone = AttemptReport(
        T0, 5, 410, "HTTP 410", DeliveryStatus.FAILED, disable_subscription="HTTP 410 Gone"
    )
    await api.store.outbox.finish_attempt(job.delivery, gone)
    assert (await api.call("GET", path)).json["disabled_reason"] == "HTTP 410 Gone"

    on = await api.call("PATCH", path, {"active": True})
    assert on.status == 200, on.text
    assert (on.json["active"], on.json["disabled_reason"]) == (True, None)
    assert on.json["format"] == f"template:{template}"
    off = await api.call("PATCH", path, {"active": False})
    assert off.status == 200, off.text
    assert (off.json["active"], off.json["disabled_reason"]) == (
        False,
        "disabled through the admin API",
    )
    assert (await api.call("PATCH", path, {"active": True})).json["active"] is True
    # Its other fields change too; the template stays, but the API names none.
    topics = await api.call("PATCH", path, {"topics": ["flood"]})
    assert topics.status == 200, topics.text
    assert (topics.json["topics"], topics.json["format"]) == (["flood"], f"template:{template}")
    named = await api.call("PATCH", path, {"format": f"template:{template}"})
    assert (named.status, named.json["field"]) == (400, "format")
    replay = await api.call("POST", "/api/v1/deliveries/replay", {"ids": [job.delivery.id]})
    assert replay.json["results"][0]["outcome"] == "queued"


async def test_events_are_set_shown_and_changed(api: Api) -> None:
    plain = await api.call("POST", "/api/v1/subscriptions", {"url": HOOK})
    assert plain.json["events"] == ["created"]
    created = await api.call(
        "POST", "/api/v1/subscriptions", {"url": HOOK, "events": ["updated", "created"]}
    )
    assert created.status == 201 and created.json["events"] == ["created", "updated"]
    path = f"/api/v1/subscriptions/{created.json['id']}"
    patched = await api.call("PATCH", path, {"events": ["deleted"]})
    assert patched.status == 200 and patched.json["events"] == ["deleted"]
    assert (await api.call("GET", path)).json["events"] == ["deleted"]
    (stored,) = [s for s in await api.store.subscriptions.all() if s.id == created.json["id"]]
    assert stored.events == (AlertKind.DELETED,)
    refused = await api.call("PATCH", path, {"events": ["created", "moved"]})
    assert (refused.status, refused.json["field"]) == (400, "events")
    assert "unknown alert kind 'moved'" in refused.json["error"]
    assert (await api.call("GET", path)).json["events"] == ["deleted"]  # unchanged
