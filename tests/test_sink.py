"""``feedbot sink``: a real aiohttp receiver on loopback, fed signed alerts."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import aiohttp
import pytest
from aiohttp import web

from feedbot.errors import ConfigError
from feedbot.model import Event, Related, RelatedKind, Source, Topic
from feedbot.notify.formats import render_payload
from feedbot.notify.signing import new_secret, webhook_headers
from feedbot.web.sink import create_sink_app, describe, run_sink
from tests.conftest import PATIENCE

SECRET = new_secret()
EVENT = Event(
    id="2007/07/9/lal-masjid-siege",
    date=date(2007, 7, 9),
    story="Lal Masjid siege",
    title="Lal Masjid siege: Talks end without progress.",
    sources=(Source("Al jazeera", "http://english.aljazeera.net/a.htm"),),
    related=(
        Related(
            "2008/07/6/explosion",
            date(2008, 7, 6),
            "An explosion near the Red Mosque.",
            ("Islamabad",),
            RelatedKind.FOLLOW_UP,
        ),
        Related(
            "2007/07/3/clashes",
            date(2007, 7, 3),
            "Clashes at the Red Mosque.",
            ("Islamabad",),
            RelatedKind.BACKGROUND,
        ),
    ),
    topics=(Topic.named("Lal Masjid siege"), Topic.named("Islamabad")),
)


def alert(fmt: str = "json") -> bytes:
    return render_payload(
        fmt,
        EVENT,
        base_url="http://127.0.0.1:8080",
        matched_topics=["islamabad"],
        in_reply_to=["2007/07/3/clashes"],
        timestamp=datetime.now(UTC),
    ).body


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/hook"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> int:
    async with session.post(url, data=body, headers=headers) as response:
        await response.read()
        return response.status


async def test_a_signed_alert_is_verified_and_printed(session: aiohttp.ClientSession) -> None:
    out = io.StringIO()
    runner, url = await serve(create_sink_app(SECRET, out))
    try:
        body = alert()
        headers = webhook_headers("msg_1", datetime.now(UTC), body, SECRET)
        assert await post(session, url, body, headers) == 204
    finally:
        await runner.cleanup()
    printed = out.getvalue()
    assert "alert [islamabad] webhook-id msg_1" in printed
    assert "2007-07-09  Lal Masjid siege: Talks end without progress." in printed
    assert "http://127.0.0.1:8080/events/2007/07/9/lal-masjid-siege" in printed
    assert "source: Al jazeera <http://english.aljazeera.net/a.htm>" in printed
    assert "follow-up: 2008-07-06 An explosion near the Red Mosque." in printed
    assert "background: 2007-07-03 Clashes at the Red Mosque." in printed
    assert "in reply to: 2007/07/3/clashes" in printed
    assert "WARNING" not in printed


@pytest.mark.parametrize("problem", ["tampered", "wrong-secret", "unsigned", "stale"])
async def test_a_bad_signature_is_a_401_and_a_warning(
    session: aiohttp.ClientSession, problem: str
) -> None:
    out = io.StringIO()
    runner, url = await serve(create_sink_app(SECRET, out))
    body = alert()
    moment = datetime.now(UTC)
    if problem == "stale":
        moment = datetime(2020, 1, 1, tzinfo=UTC)
    headers = webhook_headers(
        "msg_1", moment, body, new_secret() if problem == "wrong-secret" else SECRET
    )
    if problem == "tampered":
        body = body.replace(b"Talks", b"Tanks")
    if problem == "unsigned":
        del headers["webhook-signature"]
    try:
        assert await post(session, url, body, headers) == 401
    finally:
        await runner.cleanup()
    printed = out.getvalue()
    assert re.search(r"^WARNING \S+ rejected POST /hook from 127\.0\.0\.1: bad signature", printed)
    assert "Lal Masjid" not in printed  # nothing unverified is shown as an alert


async def test_without_a_secret_everything_is_accepted(session: aiohttp.ClientSession) -> None:
    out = io.StringIO()
    runner, url = await serve(create_sink_app(None, out))
    try:
        assert await post(session, url, alert(), {}) == 204
        assert await post(session, url, alert("slack"), {"webhook-id": "msg_s"}) == 204
        assert await post(session, url, alert("discord"), {"webhook-id": "msg_d"}) == 204
        assert await post(session, url, b"plain text", {"content-type": "text/plain"}) == 204
        assert await post(session, url, b"\x00\x01binary" * 100, {}) == 204
        async with session.get(url) as response:
            assert response.status == 200
    finally:
        await runner.cleanup()
    printed = out.getvalue()
    assert "alert [islamabad] webhook-id -" in printed
    assert "slack message webhook-id msg_s\n  Lal Masjid siege: Talks end" in printed
    assert "discord embed webhook-id msg_d\n  Lal Masjid siege: Talks end" in printed
    assert "10 bytes of text/plain webhook-id -\n  'plain text'\n" in printed
    assert "800 bytes of application/octet-stream" in printed
    assert "(+500 bytes)" in printed


def test_describe_other_bodies() -> None:
    ping = json.dumps({"type": "ping", "data": {"subscription": 3}}).encode()
    assert describe(ping, "application/json", "msg_p").endswith(
        'ping webhook-id msg_p\n  data: {"subscription": 3}'
    )
    broken = json.dumps({"type": "event.created", "data": {}}).encode()
    assert describe(broken, "application/json").endswith("event.created webhook-id -\n  data: {}")
    assert "3 bytes of application/json" in describe(b"[1]", "application/json")


async def test_terminal_escapes_never_reach_the_output(session: aiohttp.ClientSession) -> None:
    out = io.StringIO()
    runner, url = await serve(create_sink_app(None, out))
    raw = json.loads(alert())
    raw["data"]["event"]["title"] = "evil \x1b]0;owned\x07 \x1b[2J title"
    try:
        assert await post(session, url, json.dumps(raw).encode(), {}) == 204
    finally:
        await runner.cleanup()
    assert "\x1b" not in out.getvalue()
    assert "evil \ufffd]0;owned\ufffd \ufffd[2J title" in out.getvalue()


def test_a_bad_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^secret: "):
        create_sink_app("whsec_short", io.StringIO())


class WatchedOutput(io.StringIO):
    """Sets ``written`` on every write, so a test can wait for a line."""

    def __init__(self) -> None:
        super().__init__()
        self.written = asyncio.Event()

    def write(self, text: str) -> int:
        self.written.set()
        return super().write(text)


async def test_run_sink_serves_until_cancelled(session: aiohttp.ClientSession) -> None:
    out = WatchedOutput()
    task = asyncio.create_task(run_sink("127.0.0.1", 0, SECRET, out))
    try:
        async with asyncio.timeout(PATIENCE):
            await out.written.wait()
        match = re.search(r"listening on (\S+) \(verifying signatures\)", out.getvalue())
        assert match is not None, out.getvalue()
        url = match.group(1)
        body = alert()
        headers = webhook_headers("msg_run", datetime.now(UTC), body, SECRET)
        assert await post(session, url, body, headers) == 204
        assert "webhook-id msg_run" in out.getvalue()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
