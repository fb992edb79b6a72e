"""The ``apprise`` format against real servers on loopback: a mail over SMTP
(aiosmtpd), ntfy (an aiohttp server answering as ntfy does), failures and
timeouts with their reasons, the SSRF guard before any connection, URL checks and
redaction, and messages that keep untrusted archive text inert and within limits."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email
import email.policy
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from feedbot.errors import ConfigError, TargetRefused
from feedbot.model import (
    AlertKind,
    Digest,
    DigestItem,
    Event,
    Notice,
    NoticeKind,
    Related,
    RelatedKind,
    Source,
    Topic,
)
from feedbot.notify.apprise_messages import (
    AppriseMessage,
    BodyFormat,
    MessageTarget,
    alert_message,
    digest_message,
    markdown_escape,
    notice_message,
)
from feedbot.notify.apprise_target import (
    AppriseSender,
    parse_apprise_url,
    redact_apprise_url,
)
from feedbot.notify.formats import text_length
from feedbot.notify.ssrf import TargetPolicy

BASE = "https://feedbot.example"
EVENT_ID = "2007/07/9/lal-masjid-siege-an-attempt-to-negotiate"
FOLLOW_ID = "2008/07/6/an-explosion-near-the-red-mosque"
BACKGROUND_ID = "2007/07/3/clashes-at-the-red-mosque"
PASSWORD = "s3cretPassw0rd"
ALLOW_PRIVATE = TargetPolicy.build(allow_private=True)


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
                ("Islamabad",),
                RelatedKind.FOLLOW_UP,
            ),
            Related(
                BACKGROUND_ID,
                date(2007, 7, 3),
                "Clashes at the Red Mosque",
                ("Islamabad",),
                RelatedKind.BACKGROUND,
            ),
        ),
        topics=(Topic.named("Lal Masjid siege"), Topic.named("Islamabad")),
    )
    return dataclasses.replace(event, **changes)


def make_digest(count: int = 3, total: int | None = None) -> Digest:
    items = tuple(
        DigestItem(
            make_event(id=f"2007/07/{9 + n}/event-{n}", title=f"Event number {n}"),
            ("islamabad",) if n % 2 == 0 else ("lal-masjid-siege",),
        )
        for n in range(count)
    )
    return Digest(
        period_start=datetime(2026, 11, 27, 12, 0, tzinfo=UTC),
        period_end=datetime(2026, 11, 28, 12, 0, tzinfo=UTC),
        items=items,
        total=count if total is None else total,
        feed_url=f"{BASE}/feeds/all.atom",
    )


@dataclass(frozen=True)
class Limits:
    """A stand-in target for rendering alone."""

    body_format: BodyFormat
    title_max: int = 250
    body_max: int = 0


# -- ntfy ------------------------------------------------------------------------------------


@dataclass
class Ntfy:
    """An ntfy server on loopback: it records what it got and answers as the test
    scripts it (default: as ntfy does, 200 and the message as JSON)."""

    port: int = 0
    received: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    answer: Callable[[web.Request, int], Awaitable[web.StreamResponse]] | None = None


def ntfy_error(status: int, code: int, error: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    async def answer(_request: web.Request, _n: int) -> web.StreamResponse:
        return web.json_response({"code": code, "http": status, "error": error}, status=status)

    return answer


@contextlib.asynccontextmanager
async def running_ntfy() -> AsyncIterator[Ntfy]:
    server = Ntfy()

    async def publish(request: web.Request) -> web.StreamResponse:
        # Apprise posts JSON ({"topic", "title", "message"}) to the server's root.
        body = await request.json()
        server.received.append((request.method, request.path, dict(request.headers), body))
        if server.answer is not None:
            return await server.answer(request, len(server.received))
        return web.json_response(
            {"id": f"msg{len(server.received)}", "time": 1764244800, "event": "message", **body}
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", publish)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.port = runner.addresses[0][1]
    try:
        yield server
    finally:
        await runner.cleanup()


def ntfy_url(server: Ntfy, *, auth: str = "", query: str = "image=no") -> str:
    return f"ntfy://{auth}127.0.0.1:{server.port}/feedbot-alerts?{query}"


# -- SMTP ------------------------------------------------------------------------------------


@dataclass
class Mailbox:
    """What the SMTP server took: each message, and each login it was offered."""

    messages: list[EmailMessage] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login, data.password))
        # handled=False: aiosmtpd answers (235, or 535 for a refusal) itself.
        ok = (data.login, data.password) == (b"user", PASSWORD.encode())
        return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def running_smtp() -> Iterator[tuple[int, Mailbox]]:
    """A real SMTP server (aiosmtpd) on a free loopback port, taking AUTH without
    TLS as a local relay does."""
    mailbox = Mailbox()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=mailbox.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield controller.port, mailbox
    finally:
        controller.stop()


def mail_url(port: int) -> str:
    # mailto:// (not mailtos://) is plain SMTP: no TLS, the port as given; smtp=
    # names the server, from= the sender (the default, user@host, is no address).
    return (
        f"mailto://user:{PASSWORD}@127.0.0.1:{port}"
        "?smtp=127.0.0.1&from=feedbot@example.org&to=reader@example.org"
    )


@contextlib.asynccontextmanager
async def sender(**kwargs: Any) -> AsyncIterator[AppriseSender]:
    opened = AppriseSender(**{"policy": ALLOW_PRIVATE, "timeout": 10.0, **kwargs})
    try:
        yield opened
    finally:
        await opened.aclose()


def alert_for(target: MessageTarget, **kwargs: Any) -> AppriseMessage:
    return alert_message(
        target,
        kwargs.pop("event", None) or make_event(),
        base_url=BASE,
        matched_topics=kwargs.pop("matched_topics", ("islamabad",)),
        in_reply_to=kwargs.pop("in_reply_to", (BACKGROUND_ID,)),
        **kwargs,
    )


# -- mail ------------------------------------------------------------------------------------


async def test_an_alert_arrives_by_mail() -> None:
    with running_smtp() as (port, mailbox):
        target = parse_apprise_url(mail_url(port))
        assert (target.service, target.body_format) == ("E-Mail", "html")
        assert (target.network_host, target.port) == ("127.0.0.1", port)
        message = alert_for(target)
        async with sender() as apprise:
            outcome = await apprise.send(target, message)
        assert outcome.ok, outcome.error
        assert outcome.error is None and outcome.refusal is None
    assert mailbox.logins == [(b"user", PASSWORD.encode())]
    (mail,) = mailbox.messages
    assert mail["Subject"] == message.title == make_event().title
    assert mail["From"].addresses[0].addr_spec == "feedbot@example.org"
    assert mail["To"].addresses[0].addr_spec == "reader@example.org"
    html_part = mail.get_body(("html",))
    assert html_part is not None
    html = html_part.get_content()
    assert "Lal Masjid siege" in html
    assert '<a href="http://english.aljazeera.net/NR/exeres/628DFB93.htm">Al jazeera</a>' in html
    assert f'<a href="{BASE}/events/{EVENT_ID}">Event page</a>' in html
    assert f'href="{BASE}/events/{FOLLOW_ID}"' in html
    assert f'href="{BASE}/feeds/topics/islamabad.atom"' in html
    # Apprise adds the plain-text part it derives from the HTML.
    text_part = mail.get_body(("plain",))
    assert text_part is not None and "Al jazeera" in text_part.get_content()


async def test_a_digest_arrives_by_mail() -> None:
    with running_smtp() as (port, mailbox):
        target = parse_apprise_url(mail_url(port))
        message = digest_message(target, make_digest(3, total=7), base_url=BASE)
        async with sender() as apprise:
            outcome = await apprise.send(target, message)
        assert outcome.ok, outcome.error
    (mail,) = mailbox.messages
    assert (
        mail["Subject"] == "feedbot digest: 7 new events (2026-11-27 12:00 – 2026-11-28 12:00 UTC)"
    )
    html_part = mail.get_body(("html",))
    assert html_part is not None
    html = html_part.get_content()
    for n in range(3):
        assert f'<a href="{BASE}/events/2007/07/{9 + n}/event-{n}">Event number {n}</a>' in html
    assert "<b>Islamabad</b>" in html and "<b>Lal Masjid siege</b>" in html
    assert f'<a href="{BASE}/feeds/all.atom">… and 4 more</a>' in html


async def test_a_refused_login_is_a_failure_without_the_password() -> None:
    with running_smtp() as (port, mailbox):
        url = mail_url(port).replace(PASSWORD, "wrong-" + PASSWORD)
        target = parse_apprise_url(url)
        async with sender() as apprise:
            outcome = await apprise.send(target, alert_for(target))
    assert not outcome.ok and outcome.error
    assert "127.0.0.1" in outcome.error  # Apprise names the server it could not use
    assert PASSWORD not in outcome.error
    assert mailbox.messages == []


# -- ntfy ------------------------------------------------------------------------------------


async def test_ntfy_gets_title_body_and_markdown() -> None:
    async with running_ntfy() as ntfy:
        target = parse_apprise_url(ntfy_url(ntfy, query="format=markdown&image=no"))
        assert (target.service, target.body_format) == ("ntfy", "markdown")
        assert (target.title_max, target.body_max) == (200, 7800)
        message = alert_for(target)
        async with sender() as apprise:
            outcome = await apprise.send(target, message)
        assert outcome.ok, outcome.error
        (got,) = ntfy.received
    method, path, headers, body = got
    assert (method, path) == ("POST", "/")
    assert headers["X-Markdown"] == "yes"
    assert body["topic"] == "feedbot-alerts"
    assert body["title"] == make_event().title
    assert body["message"] == message.body
    assert f"[Event page]({BASE}/events/{EVENT_ID})" in body["message"]
    assert "- [Al jazeera](http://english.aljazeera.net/NR/exeres/628DFB93.htm)" in body["message"]


async def test_a_failure_then_a_success() -> None:
    async with running_ntfy() as ntfy:
        ntfy.answer = ntfy_error(500, 50001, "internal server error")
        target = parse_apprise_url(ntfy_url(ntfy, auth=f"user:{PASSWORD}@"))
        assert PASSWORD not in target.redacted_url
        message = alert_for(target)
        async with sender() as apprise:
            failed = await apprise.send(target, message)
            ntfy.answer = None
            sent = await apprise.send(target, message)
        assert len(ntfy.received) == 2
        # The password did reach the server, as HTTP basic auth.
        assert ntfy.received[0][2]["Authorization"].startswith("Basic ")
    assert not failed.ok and failed.refusal is None
    assert failed.error is not None
    assert "internal server error" in failed.error and "50001" in failed.error
    assert PASSWORD not in failed.error
    assert len(failed.error) <= 500
    assert sent.ok and sent.error is None


async def test_concurrent_attempts_each_get_their_own_apprise_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="apprise")
    async with running_ntfy() as first, running_ntfy() as second:
        first.answer = ntfy_error(500, 50001, "first server broke")
        second.answer = ntfy_error(503, 50301, "second server is full")
        one = parse_apprise_url(ntfy_url(first, auth=f"user:{PASSWORD}@"))
        two = parse_apprise_url(ntfy_url(second))
        async with sender(max_workers=2) as apprise:
            outcomes = await asyncio.gather(
                *(apprise.send(t, alert_for(t)) for t in (one, two, one, two))
            )
    errors = [o.error or "" for o in outcomes]
    for error, own, other in [(errors[0], "first", "second"), (errors[1], "second", "first")] * 2:
        assert own in error and other not in error
    # Apprise's lines went to the outcomes, not to the process's log.
    assert [r for r in caplog.records if r.name == "apprise"] == []


async def test_no_answer_is_a_failure_within_the_timeout() -> None:
    release = asyncio.Event()

    async def hang(_request: web.Request, _n: int) -> web.StreamResponse:
        await release.wait()
        return web.json_response({})

    async with running_ntfy() as ntfy:
        ntfy.answer = hang
        target = parse_apprise_url(ntfy_url(ntfy))
        try:
            async with sender(timeout=0.5) as apprise:
                outcome = await apprise.send(target, alert_for(target))
        finally:
            release.set()
    assert not outcome.ok and outcome.refusal is None
    assert outcome.error


# -- the SSRF guard ------------------------------------------------------------------------


class Resolver:
    """A resolver that answers from a table and records what it was asked."""

    def __init__(self, answers: dict[str, Sequence[str]]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, int | None]] = []

    async def __call__(self, host: str, port: int | None) -> Sequence[str]:
        self.asked.append((host, port))
        return self.answers[host]


async def test_private_targets_are_refused_before_any_connection() -> None:
    resolver = Resolver({"localhost": ["127.0.0.1", "::1"]})
    async with running_ntfy() as ntfy:
        literal = parse_apprise_url(ntfy_url(ntfy))
        named = parse_apprise_url(ntfy_url(ntfy).replace("127.0.0.1", "localhost"))
        assert named.network_host == "localhost"
        async with sender(policy=TargetPolicy.build(), resolve=resolver) as apprise:
            by_address = await apprise.send(literal, alert_for(literal))
            by_name = await apprise.send(named, alert_for(named))
        assert ntfy.received == []
    assert not by_address.ok
    assert isinstance(by_address.refusal, TargetRefused)
    assert by_address.refusal.refused == (("127.0.0.1", "loopback"),)
    assert by_address.error == "refused: 127.0.0.1 (loopback)"
    assert not by_name.ok and by_name.refusal is not None
    assert by_name.refusal.refused == (("127.0.0.1", "loopback"), ("::1", "loopback"))
    assert resolver.asked == [("localhost", ntfy.port)]  # a literal is never resolved


async def test_mail_to_a_private_server_is_refused_before_any_connection() -> None:
    with running_smtp() as (port, mailbox):
        target = parse_apprise_url(mail_url(port))
        async with sender(policy=TargetPolicy.build()) as apprise:
            outcome = await apprise.send(target, alert_for(target))
    assert outcome.refusal is not None and not outcome.ok
    assert mailbox.logins == [] and mailbox.messages == []


# The next two name "localhost" with a port nothing listens on, and answer for it
# from a table: were the guard skipped, Apprise would meet a closed local port,
# never an outside host.


async def test_one_refused_address_of_several_refuses_the_target() -> None:
    # The plugin resolves the name again and may pick any of its addresses.
    resolver = Resolver({"localhost": ["203.0.114.7", "10.1.2.3"]})
    target = parse_apprise_url(f"ntfy://localhost:{free_port()}/alerts")
    async with sender(policy=TargetPolicy.build(), resolve=resolver) as apprise:
        outcome = await apprise.send(target, alert_for(target))
    assert outcome.refusal is not None
    assert outcome.refusal.refused == (("10.1.2.3", "private"),)
    assert outcome.error == "refused: localhost resolves to 10.1.2.3 (private)"


async def test_allowing_private_targets_lets_them_through() -> None:
    resolver = Resolver({"localhost": ["127.0.0.1"]})
    async with running_ntfy() as ntfy:
        named = parse_apprise_url(ntfy_url(ntfy).replace("127.0.0.1", "localhost"))
        async with sender(policy=ALLOW_PRIVATE, resolve=resolver) as apprise:
            outcome = await apprise.send(named, alert_for(named))
        assert outcome.ok, outcome.error
        assert len(ntfy.received) == 1


async def test_a_host_that_does_not_resolve_is_a_failure_not_a_refusal() -> None:
    async def nowhere(host: str, port: int | None) -> Sequence[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    target = parse_apprise_url(f"gotify://localhost:{free_port()}/AbCdEfGhIjKlMnO")
    async with sender(resolve=nowhere) as apprise:
        outcome = await apprise.send(target, alert_for(target))
    assert not outcome.ok and outcome.refusal is None
    assert outcome.error == "cannot resolve localhost: Name or service not known"


def test_cloud_services_have_no_host_of_theirs() -> None:
    telegram = parse_apprise_url("tgram://123456789:ABCdefGHI/12345")
    assert telegram.network_host is None and telegram.port is None
    assert telegram.service == "Telegram"
    assert (telegram.body_format, telegram.title_max, telegram.body_max) == ("html", 0, 4096)
    assert "ABCdefGHI" not in telegram.redacted_url
    assert telegram.redacted_url.startswith("tgram://")
    assert parse_apprise_url("ntfy://feedbot-alerts").network_host is None  # ntfy.sh
    assert parse_apprise_url("mailgun://user@mg.example.org/key-abcdef").network_host is None
    # Self-hosted ones connect where their URL says.
    mail = parse_apprise_url("mailtos://user:pw@example.org?smtp=mail.example.org")
    assert (mail.network_host, mail.port) == ("mail.example.org", 587)
    assert parse_apprise_url("json://[::1]:8080/hook").network_host == "::1"


# -- checking and redacting URLs ---------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("nosuchservice://token@host/x", "no Apprise service is called nosuchservice://"),
        ("json://", "Apprise cannot use it: Unparseable JSON URL"),
        ("gotify://127.0.0.1", "Apprise cannot use it: An invalid Gotify Token"),
        ("https://hooks.example/x", 'plain webhook: use format "json"'),
        ("json://127.0.0.1/a b", "no whitespace or control characters"),
        ("json://127.0.0.1/\x00", "no whitespace or control characters"),
        ("json://127.0.0.1:99999/", "port 99999 is out of range"),
        ("just text", "no whitespace"),
        ("justtext", "not an Apprise URL"),
        ("   ", "an Apprise URL is required"),
    ],
)
def test_unusable_urls_are_refused_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_apprise_url(url)
    assert caught.value.field == "url"
    assert reason in caught.value.reason
    assert str(caught.value) == f"url: {caught.value.reason}"


def test_a_refusal_does_not_show_the_urls_secrets() -> None:
    # No from= and no address to derive one from: Apprise refuses it, naming the URL.
    with pytest.raises(ConfigError) as caught:
        parse_apprise_url(f"mailto://user:{PASSWORD}@127.0.0.1:2525?smtp=127.0.0.1")
    assert "Invalid ~From~ email" in caught.value.reason
    assert PASSWORD not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        parse_apprise_url("trigv://Sup3rSecretApiKey")
    assert "Sup3rSecretApiKey" not in str(caught.value)


def test_a_url_is_kept_as_given_and_shown_without_its_password() -> None:
    url = f"  ntfy://user:{PASSWORD}@127.0.0.1:8080/alerts?format=markdown  "
    target = parse_apprise_url(url)
    assert target.url == url.strip()
    assert PASSWORD not in target.redacted_url
    assert target.redacted_url.startswith("ntfy://user:")
    assert (target.network_host, target.port) == ("127.0.0.1", 8080)


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        ("tgram://123456789:ABCdefGHIjklMNO/12345", ["ABCdefGHIjklMNO"]),
        (f"mailto://user:{PASSWORD}@example.org?to=a@example.org", [PASSWORD]),
        (f"ntfy://user:{PASSWORD}@ntfy.example/alerts", [PASSWORD]),
        ("ntfy://tk_AbCdEfGhIjKlMnOp@ntfy.example/alerts", ["tk_AbCdEfGhIjKlMnOp"]),
        ("nosuchservice://Sup3rSecret/x", ["Sup3rSecret"]),
        (f"json://user:{PASSWORD}@", [PASSWORD]),
    ],
)
def test_redact_apprise_url_hides_tokens(url: str, secrets: list[str]) -> None:
    shown = redact_apprise_url(url)
    assert shown.startswith(url.split("://")[0])  # the service still shows
    for secret in secrets:
        assert secret not in shown


def test_redact_apprise_url_never_gives_unparsed_text_back() -> None:
    assert redact_apprise_url("nosuchservice://Sup3rSecret/x") == "nosuchservice://***"
    assert redact_apprise_url("no url at all") == "***"


# -- messages --------------------------------------------------------------------------------

HOSTILE = "Evil [click](http://evil.example) <script>alert(1)</script> *bold* _x_\x07\x1b end"


def hostile_event() -> Event:
    return make_event(
        title=HOSTILE,
        story="# Heading\x00 1. not a list",
        sources=(
            Source("[fake](http://evil.example)", "javascript:alert(1)"),
            Source("Real <b>", "http://example.org/a b)"),
        ),
    )


def test_markdown_escapes_archive_text() -> None:
    message = alert_for(Limits("markdown", title_max=0), event=hostile_event())
    body = message.body
    assert message.title == "" and message.body_format == "markdown"
    first = body.splitlines()[0]
    assert first == f"**{markdown_escape(HOSTILE.replace(chr(7), '').replace(chr(27), ''))}**"
    assert "](http://evil.example)" not in body  # no forged link
    assert "<script>" not in body and "\\<script\\>" in body
    assert "\x07" not in body and "\x1b" not in body and "\x00" not in body
    assert "\\# Heading" in body
    assert "javascript:" not in body  # the text shows, unlinked
    assert "- \\[fake\\]\\(http://evil.example\\)" in body
    # A URL cannot close its own link.
    assert "[Real \\<b\\>](http://example.org/a%20b%29)" in body


def test_markdown_escape() -> None:
    assert markdown_escape("[a](b) *c* _d_ `e` <f> #g |h| ~i~ !j") == (
        "\\[a\\]\\(b\\) \\*c\\* \\_d\\_ \\`e\\` \\<f\\> \\#g \\|h\\| \\~i\\~ \\!j"
    )
    assert markdown_escape("- item") == "\\- item"
    assert markdown_escape("  + item") == "  \\+ item"
    assert markdown_escape("1984. A year") == "1984\\. A year"
    assert markdown_escape("plain text.") == "plain text."


def test_html_autoescapes_archive_text() -> None:
    message = alert_for(Limits("html", title_max=0), event=hostile_event())
    body = message.body
    assert "<script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "javascript:" not in body
    assert "Real &lt;b&gt;" in body
    assert 'href="http://example.org/a%20b%29"' in body
    assert "\x07" not in body and "\x00" not in body


def test_text_keeps_archive_text_as_typed_but_clean() -> None:
    message = alert_for(Limits("text"), event=hostile_event())
    assert message.title == HOSTILE.replace("\x07", "").replace("\x1b", "")
    assert "\x00" not in message.body and "# Heading 1. not a list" in message.body
    assert "javascript:" not in message.body


def test_titles_are_cut_to_the_targets_limit_and_repeated_in_the_body() -> None:
    event = make_event(title="A very long title " * 20)
    message = alert_for(Limits("text", title_max=50), event=event)
    assert text_length(message.title) <= 50 and message.title.endswith("…")
    assert message.body.startswith(event.title.strip())
    updated = alert_for(Limits("text"), kind=AlertKind.UPDATED, previous_title="Old title")
    assert updated.title.startswith("Updated: ") and "Previously: Old title" in updated.body
    removed = alert_for(Limits("text"), kind=AlertKind.DELETED)
    assert removed.title.startswith("Removed: ")


@pytest.mark.parametrize("body_format", ["text", "markdown", "html"])
def test_long_bodies_are_cut_within_the_limit_by_whole_items(body_format: BodyFormat) -> None:
    sources = tuple(Source(f"Source number {n} [x]", f"https://example.org/{n}") for n in range(40))
    event = make_event(sources=sources, story="A story. " * 20)
    message = alert_for(Limits(body_format, body_max=800), event=event)
    body = message.body
    assert text_length(body) <= 800
    assert "more" in body
    assert "Source number 0" in body and "Source number 39" not in body
    if body_format == "html":
        assert body.count("<li>") == body.count("</li>")
        assert body.count("<ul>") == body.count("</ul>")
        assert body.count("<a ") == body.count("</a>")
    if body_format == "markdown":
        for line in body.splitlines():
            if line.startswith("- [Source"):
                assert line.endswith(")") and "](https://example.org/" in line
    whole = alert_for(Limits(body_format), event=event)
    assert "Source number 39" in whole.body and "more" not in whole.body


@pytest.mark.parametrize("body_format", ["text", "markdown", "html"])
def test_digests_say_how_many_more_within_the_limit(body_format: BodyFormat) -> None:
    digest = make_digest(30, total=45)
    message = digest_message(Limits(body_format, body_max=900), digest, base_url=BASE)
    assert text_length(message.body) <= 900
    assert "Event number 0" in message.body and "Event number 29" not in message.body
    assert "more" in message.body and f"{BASE}/feeds/all.atom" in message.body
    whole = digest_message(Limits(body_format), digest, base_url=BASE)
    assert "Event number 29" in whole.body and "and 15 more" in whole.body


@pytest.mark.parametrize("body_format", ["text", "markdown", "html"])
def test_a_tiny_limit_still_gives_a_body_within_it(body_format: BodyFormat) -> None:
    message = alert_for(Limits(body_format, title_max=0, body_max=40), event=hostile_event())
    assert 0 < text_length(message.body) <= 40
    assert "<script>" not in message.body


@pytest.mark.parametrize(
    ("kind", "title", "words"),
    [
        (NoticeKind.SUBSCRIPTION_DISABLED, "feedbot: subscription disabled", "was disabled"),
        (NoticeKind.DELIVERY_EXHAUSTED, "feedbot: delivery exhausted", "gave up after 12"),
    ],
)
@pytest.mark.parametrize("body_format", ["text", "markdown", "html"])
def test_notices_say_what_why_and_the_last_response(
    kind: NoticeKind, title: str, words: str, body_format: BodyFormat
) -> None:
    notice = Notice(
        kind=kind,
        occurred_at=datetime(2026, 11, 27, 12, 0, tzinfo=UTC),
        subscription_id="sub_7",
        subscription_url="https://hooks.example/***",
        subscription_format="json",
        reason="the receiver answered 410 Gone <now>",
        delivery_id="dlv_1",
        event_id=EVENT_ID,
        attempts=12,
        last_status=410,
        last_error="HTTP 410 Gone: bye\x07",
    )
    message = notice_message(Limits(body_format), notice)
    assert message.title == title
    for expected in ("sub", "hooks.example", words, "410 Gone", "2026-11-27T12:00:00Z"):
        assert expected in message.body
    assert "\x07" not in message.body
    shown = {"text": "<now>", "markdown": "\\<now\\>", "html": "&lt;now&gt;"}[body_format]
    assert shown in message.body


@pytest.mark.parametrize(
    ("url", "says"),
    [
        # Apprise would read these as ntfy.sh's topics: meant for a server here, they
        # must never go to the public service.
        (f"ntfy://user:{PASSWORD}@127.0.0.1:/alerts", "port after ':' is missing"),
        ("ntfy://127.0.0.1/alerts?mode=cloud", "public service, not as a server at 127.0.0.1"),
        ("ntfy://localhost/alerts?mode=cloud", "not as a server at localhost"),
    ],
)
def test_a_url_for_a_server_here_is_never_read_as_the_cloud_service(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_apprise_url(url)
    assert caught.value.field == "url"
    assert says in str(caught.value)
    assert PASSWORD not in str(caught.value)
