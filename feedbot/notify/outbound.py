"""Composing deliveries: validated subscriptions in, signed requests out.

:func:`build_subscription` is the one gate every subscription passes (config
file, admin API, CLI): each field is checked and a bad one is refused with a
:class:`~feedbot.errors.ConfigError` that names it. :class:`RequestFactory` turns
a claimed delivery into the body of its format and the Standard Webhooks headers
of one attempt; the body is the same on every attempt (its timestamp is the
moment the alert was queued), the signature is made anew with the attempt's time.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from ipaddress import ip_address
from pathlib import Path

from feedbot.alerts import parse_events
from feedbot.errors import ConfigError, TargetRefused
from feedbot.model import Subscription
from feedbot.notify.deliver import Request
from feedbot.notify.formats import (
    CompiledTemplate,
    PayloadFormat,
    PayloadKind,
    RenderedPayload,
    compile_template,
    iso_utc,
    parse_format,
    render_payload,
)
from feedbot.notify.signing import validate_secret, webhook_headers
from feedbot.notify.ssrf import TargetPolicy, check_url, parse_webhook_url
from feedbot.settings import SubscriptionSettings
from feedbot.store import DeliveryJob

_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# One label of a host name (IDNA already applied): RFC 1123, plus '_', which
# WHATWG URLs allow and container service names use.
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?", re.IGNORECASE)
PING_TYPE = "feedbot.ping"


def build_subscription(
    *,
    url: str,
    topics: Iterable[str] = ("*",),
    format: str = "json",
    secret: str | None = None,
    keywords: Iterable[str] = (),
    events: Iterable[object] = ("created",),
    origin: str = "api",
    policy: TargetPolicy | None = None,
    subscription_id: str = "",
) -> Subscription:
    """A subscription with every field checked; raises ConfigError naming the field."""
    with _field("url"):
        url = validate_url(url)
        try:
            check_url(url, policy or TargetPolicy.build())
        except TargetRefused as exc:
            reason = f"url: {exc} (set notify.allow_private_targets to allow it)"
            raise ConfigError(reason) from None
    with _field("topics"):
        wanted = tuple(dict.fromkeys(t.strip().lower() for t in topics))
        if not wanted:
            raise ConfigError("topics: give at least one topic slug, or '*' for every event")
        for slug in wanted:
            if slug != "*" and not _SLUG.match(slug):
                raise ConfigError(f"topics: {slug!r} is not a topic slug (a-z, 0-9 and '-')")
    with _field("format"):
        payload_format = parse_format(format.strip())
        if payload_format.kind is PayloadKind.TEMPLATE:
            assert payload_format.template_path is not None
            compile_template(payload_format.template_path)  # refuse a broken template now
    with _field("secret"):
        checked_secret = validate_secret(secret) if secret else None
    with _field("events"):
        kinds = parse_events(events)
    return Subscription(
        id=subscription_id,
        url=url,
        topics=("*",) if "*" in wanted else wanted,
        format=str(payload_format),
        secret=checked_secret,
        keywords=tuple(k.strip() for k in keywords if k.strip()),
        events=kinds,
        origin=origin,
    )


def validate_url(url: str) -> str:
    """``url`` without surrounding whitespace, if it is a webhook URL feedbot will
    post to; raises ConfigError naming the field ``url`` otherwise.

    The rule is strict on purpose (the SSRF guard then judges the address): an
    ``http`` or ``https`` URL, nothing in it that is whitespace, a control or an
    invisible format character, no ``user:password@`` (a receiver is
    authenticated by the signature), a port from 1 to 65535, and a host that is
    an IP address or a domain name whose labels (after IDNA) are letters, digits,
    hyphens and underscores.
    """
    url = url.strip()
    for position, char in enumerate(url):
        if unicodedata.category(char)[0] in "CZ":
            name = unicodedata.name(char, "a control character").lower()
            raise ConfigError(
                f"url: {url!r} holds U+{ord(char):04X} ({name}) at position {position}; "
                "a URL has no spaces, control or invisible characters (encode them as %XX)"
            )
    parsed = parse_webhook_url(url)
    port = parsed.explicit_port
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise ConfigError(
            "url: user:password@ in a webhook URL is not supported; "
            "give the subscription a secret and verify the signature instead"
        )
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"url: port {port} is out of range (1 to 65535)")
    assert parsed.raw_host is not None  # parse_webhook_url refuses a URL without one
    _check_host(parsed.raw_host, url)
    return url


def _check_host(host: str, url: str) -> None:
    try:
        ip_address(host)
    except ValueError:
        pass
    else:
        return
    name = host.removesuffix(".")  # a fully qualified name may end with a dot
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ConfigError(
            f"url: {url!r}: {host!r} is not a host name (labels of letters, digits, "
            "'-' and '_', at most 63 characters each) nor an IP address"
        )


@contextmanager
def _field(name: str) -> Iterator[None]:
    """A ``ConfigError`` raised in the block is about the field ``name`` (its message
    already starts with it): the field is set on the error for callers to read."""
    try:
        yield
    except ConfigError as exc:
        if exc.field is None:
            exc.field = name
        raise


class RequestFactory:
    """Builds the request of one delivery attempt (a ``RequestBuilder``)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._templates: dict[Path, CompiledTemplate] = {}
        # One event goes to many subscribers, mostly with the same body: render it
        # once. Keyed by everything the body depends on.
        self._bodies: OrderedDict[tuple[object, ...], RenderedPayload] = OrderedDict()

    def __call__(self, job: DeliveryJob, attempted_at: datetime) -> Request:
        payload = self._payload(job)
        headers = webhook_headers(
            job.delivery.id, attempted_at, payload.body, job.subscription.secret
        )
        return Request(payload.body, {"Content-Type": payload.content_type, **headers})

    def _payload(self, job: DeliveryJob) -> RenderedPayload:
        delivery = job.delivery
        key = (
            job.subscription.format,
            job.event,
            delivery.matched_topics,
            delivery.in_reply_to,
            delivery.created_at,
            delivery.kind,
            delivery.previous_title,
        )
        if (cached := self._bodies.get(key)) is not None:
            self._bodies.move_to_end(key)
            return cached
        payload_format = parse_format(job.subscription.format)
        template = None
        if payload_format.kind is PayloadKind.TEMPLATE:
            template = self._template(payload_format)
        payload = render_payload(
            payload_format,
            job.event,
            base_url=self.base_url,
            matched_topics=delivery.matched_topics,
            in_reply_to=delivery.in_reply_to,
            timestamp=delivery.created_at,
            template=template,
            kind=delivery.kind,
            previous_title=delivery.previous_title,
        )
        self._bodies[key] = payload
        if len(self._bodies) > 512:
            self._bodies.popitem(last=False)
        return payload

    def _template(self, payload_format: PayloadFormat) -> CompiledTemplate:
        path = payload_format.template_path
        assert path is not None
        if path not in self._templates:
            self._templates[path] = compile_template(path)
        return self._templates[path]


def ping_request(subscription: Subscription, msg_id: str, now: datetime) -> Request:
    """A signed test message, for ``feedbot subscriptions test``."""
    body = json.dumps(
        {
            "type": PING_TYPE,
            "timestamp": iso_utc(now),
            "data": {"subscription": subscription.id, "topics": list(subscription.topics)},
        },
        separators=(",", ":"),
    ).encode()
    headers = webhook_headers(msg_id, now, body, subscription.secret)
    return Request(body, {"Content-Type": "application/json", **headers})


def config_subscriptions(
    entries: Sequence[SubscriptionSettings], policy: TargetPolicy
) -> list[Subscription]:
    """The config file's ``[[subscriptions]]``, validated; an error names the
    entry and field (``subscriptions[2].secret: ...``)."""
    built = []
    for index, entry in enumerate(entries):
        try:
            built.append(
                build_subscription(
                    url=entry.url,
                    topics=entry.topics,
                    format=entry.format,
                    secret=entry.secret.get_secret_value() if entry.secret else None,
                    keywords=entry.keywords,
                    events=entry.events,
                    origin="config",
                    policy=policy,
                )
            )
        except ConfigError as exc:
            field = f"subscriptions[{index}].{exc.field}" if exc.field else None
            raise ConfigError(f"subscriptions[{index}].{exc}", field=field) from None
    return built
