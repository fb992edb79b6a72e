"""``feedbot sink``: a small webhook receiver that verifies and prints alerts.

For demos and for checking a subscription by hand: it accepts a POST on any
path, verifies the Standard Webhooks signature with the ``standardwebhooks``
library when it has a secret (401 and a warning line on a bad one), prints the
alert in a few readable lines and answers 204. Bodies that are not feedbot's
``json`` alerts (Slack, Discord, templates, pings) are printed briefly.

The CLI wires :func:`run_sink`; tests use :func:`create_sink_app`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from feedbot.notify.signing import validate_secret

MAX_BODY = 4 * 1024 * 1024
PREVIEW_BYTES = 300


@dataclass(frozen=True, slots=True)
class _Sink:
    out: TextIO
    webhook: Webhook | None  # verifies signatures; None: accept everything


_SINK = web.AppKey("feedbot_sink", _Sink)


def create_sink_app(secret: str | None = None, out: TextIO = sys.stdout) -> web.Application:
    """The receiver app: POST any path; verified with ``secret`` when given."""
    app = web.Application(client_max_size=MAX_BODY)
    app[_SINK] = _Sink(out, None if secret is None else Webhook(validate_secret(secret)))
    app.router.add_post("/{tail:.*}", _receive)
    app.router.add_get("/{tail:.*}", _hello)
    return app


async def run_sink(
    host: str = "127.0.0.1", port: int = 9000, secret: str | None = None, out: TextIO = sys.stdout
) -> None:
    """Serve :func:`create_sink_app` until cancelled (port 0: any free port)."""
    runner = web.AppRunner(create_sink_app(secret, out), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        for address in runner.addresses:
            bound_host, bound_port = address[0], address[1]
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            verifying = "verifying signatures" if secret else "not verifying signatures"
            _print(out, f"feedbot sink listening on http://{shown}:{bound_port}/ ({verifying})")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="feedbot sink: POST webhook alerts here\n")


async def _receive(request: web.Request) -> web.Response:
    out, webhook = request.app[_SINK].out, request.app[_SINK].webhook
    body = await request.read()
    msg_id = request.headers.get("webhook-id", "-")
    if webhook is not None:
        try:
            webhook.verify(body, dict(request.headers), json_parse=False)
        except (WebhookVerificationError, UnicodeDecodeError, ValueError) as exc:
            reason = "body is not UTF-8" if isinstance(exc, UnicodeDecodeError) else str(exc)
            _print(
                out,
                f"WARNING {_now()} rejected {request.method} {request.path} "
                f"from {request.remote}: bad signature ({reason}), webhook-id {msg_id}",
            )
            return web.Response(status=401, text=f"bad signature: {reason}\n")
    _print(out, describe(body, request.headers.get("content-type", ""), msg_id))
    return web.Response(status=204)


def describe(body: bytes, content_type: str, msg_id: str = "-") -> str:
    """A few readable lines about one received body."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and payload.get("type") == "event.created":
        try:
            return _describe_alert(payload, msg_id)
        except (KeyError, TypeError, AttributeError):
            pass  # shaped like an alert but not quite: show it raw
    if isinstance(payload, dict) and isinstance(payload.get("text"), str):  # Slack
        return f"{_now()} slack message webhook-id {msg_id}\n  {payload['text']}"
    if isinstance(payload, dict) and isinstance(payload.get("embeds"), list):  # Discord
        titles = [str(e.get("title", "")) for e in payload["embeds"] if isinstance(e, dict)]
        return f"{_now()} discord embed webhook-id {msg_id}\n  {' | '.join(titles)}"
    if isinstance(payload, dict) and isinstance(payload.get("type"), str):
        data = json.dumps(payload.get("data"), ensure_ascii=False)[:PREVIEW_BYTES]
        return f"{_now()} {payload['type']} webhook-id {msg_id}\n  data: {data}"
    preview = body[:PREVIEW_BYTES].decode("utf-8", "replace")
    more = f" (+{len(body) - PREVIEW_BYTES} bytes)" if len(body) > PREVIEW_BYTES else ""
    return (
        f"{_now()} {len(body)} bytes of {content_type or 'unknown type'} "
        f"webhook-id {msg_id}\n  {preview!r}{more}"
    )


def _describe_alert(payload: Mapping[str, Any], msg_id: str) -> str:
    data = payload["data"]
    event = data["event"]
    topics = ", ".join(data.get("matched_topics", [])) or "-"
    lines = [
        f"{payload.get('timestamp', _now())} alert [{topics}] webhook-id {msg_id}",
        f"  {event['date']}  {event['title']}",
    ]
    if event.get("url"):
        lines.append(f"  {event['url']}")
    for source in event.get("sources", []):
        lines.append(f"  source: {source['name']} <{source['url']}>")
    for related in event.get("related", []):
        label = "follow-up" if related.get("kind") == "follow_up" else "background"
        lines.append(f"  {label}: {related['date']} {related['title']}")
    for event_id in data.get("in_reply_to", []):
        lines.append(f"  in reply to: {event_id}")
    return "\n".join(lines)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _print(out: TextIO, text: str) -> None:
    # Archive text is untrusted: no terminal escape sequences reach the screen.
    safe = "".join(c if c == "\n" or c.isprintable() else "\ufffd" for c in text)
    out.write(safe + "\n")
    out.flush()
