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
from collections.abc import Awaitable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from ipaddress import ip_address
from typing import Any, Generic, TypedDict, TypeVar
from zoneinfo import ZoneInfo

from feedbot.alerts import parse_events
from feedbot.digest import DigestSchedule
from feedbot.errors import ConfigError, TargetRefused
from feedbot.feeds import urls
from feedbot.model import (
    CONFIG_DISABLED,
    OPERATOR_ID,
    OPERATOR_ORIGIN,
    AlertKind,
    Digest,
    Subscription,
    keyword_words,
)
from feedbot.notify.apprise_messages import (
    AppriseMessage,
    alert_message,
    digest_message,
    notice_message,
)
from feedbot.notify.apprise_target import AppriseTarget, parse_apprise_url
from feedbot.notify.deliver import AppriseRequest, Outgoing, Request
from feedbot.notify.formats import (
    PayloadKind,
    RenderedPayload,
    alert_body,
    iso_utc,
    parse_format,
    render_payload,
)
from feedbot.notify.payload_templates import template_context
from feedbot.notify.push import push_request
from feedbot.notify.render_workers import TemplateLimits, TemplateRenderer, check_template
from feedbot.notify.signing import validate_secret, webhook_headers
from feedbot.notify.ssrf import TargetPolicy, check_host, parse_webhook_url
from feedbot.notify.summaries import digest_body, notice_body, render_digest, render_notice
from feedbot.settings import Settings, SubscriptionSettings
from feedbot.store import Delivery, DeliveryJob
from feedbot.websub import WEBSUB_FORMAT

_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# One label of a host name (IDNA already applied): RFC 1123, plus '_', which
# WHATWG URLs allow and container service names use.
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?", re.IGNORECASE)
PING_TYPE = "feedbot.ping"
_V = TypeVar("_V")


def build_subscription(
    *,
    url: str,
    topics: Iterable[str] = ("*",),
    format: str = "json",
    secret: str | None = None,
    keywords: Iterable[str] = (),
    events: Iterable[object] = ("created",),
    exclude: Iterable[str] = (),
    digest: str | int | None = None,
    digest_at: str | None = None,
    timezone: str | None = None,
    origin: str = "api",
    policy: TargetPolicy | None = None,
    subscription_id: str = "",
    templates: TemplateLimits | None = None,
) -> Subscription:
    """A subscription with every field checked; raises ConfigError naming the field.
    A ``template:`` format must pass its test render within ``templates``' limits;
    an ``apprise`` one's URL must be one Apprise can use."""
    with _field("format"):
        payload_format = parse_format(format.strip())
    shown_url: str | None = None
    with _field("url"):
        if payload_format.kind is PayloadKind.APPRISE:
            target = parse_apprise_url(url)
            url, shown_url = target.url, target.redacted_url
            literal = target.network_host
        else:
            url = validate_url(url)
            literal = parse_webhook_url(url).raw_host
        try:
            check_host(literal, policy or TargetPolicy.build())
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
        if payload_format.kind is PayloadKind.TEMPLATE:
            assert payload_format.template_path is not None
            # Refuse a broken or heavy template now: compile it and render the samples,
            # in a worker process, within the limits its deliveries will have.
            check_template(payload_format.template_path, templates)
    with _field("secret"):
        checked_secret = validate_secret(secret) if secret else None
    with _field("events"):
        kinds = parse_events(events)
    with _field("keywords"):
        kept_keywords = _keywords("keywords", keywords)
    with _field("exclude"):
        excluded = _keywords("exclude", exclude)
    with _field("digest"):
        schedule = DigestSchedule.parse(digest, digest_at, timezone)
    if schedule is not None and kinds != (AlertKind.CREATED,):
        raise ConfigError.about(
            "events",
            'a digest lists the period\'s new events: give events = ["created"] with a digest',
        )
    digest_values = schedule.values() if schedule is not None else (None, None, None)
    return Subscription(
        id=subscription_id,
        url=url,
        topics=("*",) if "*" in wanted else wanted,
        format=str(payload_format),
        secret=checked_secret,
        keywords=kept_keywords,
        exclude=excluded,
        events=kinds,
        origin=origin,
        digest=digest_values[0],
        digest_at=digest_values[1],
        timezone=digest_values[2],
        shown_url=shown_url,
    )


def _keywords(field: str, keywords: Iterable[str]) -> tuple[str, ...]:
    """Keywords as given, trimmed; each must hold a letter or digit (what it
    matches is its words, see :meth:`Subscription.matched_topics`)."""
    kept = tuple(k.strip() for k in keywords if k.strip())
    for keyword in kept:
        if not keyword_words(keyword):
            raise ConfigError(
                f"{field}: {keyword!r} has no letters or digits; a keyword matches whole words"
            )
    return kept


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

    def __init__(self, base_url: str, templates: TemplateLimits | None = None) -> None:
        self.base_url = base_url
        self._template_limits = templates or TemplateLimits()
        self._renderer: TemplateRenderer | None = None  # started by the first template
        # One event goes to many subscribers, mostly with the same body (or Apprise
        # message): render it once. Keyed by everything it depends on.
        self._bodies: _Recent[RenderedPayload] = _Recent()
        self._messages: _Recent[AppriseMessage] = _Recent()

    def __call__(self, job: DeliveryJob, attempted_at: datetime) -> Outgoing | Awaitable[Request]:
        """The request; for an operator's template, a coroutine that renders it in
        a worker process (``TemplateError`` when the template fails or runs over);
        for an Apprise URL, the message to hand to Apprise."""
        fmt = job.subscription.format
        if fmt.startswith("template:"):
            return self._templated(job, attempted_at)
        if fmt == WEBSUB_FORMAT:
            return push_request(job, self.base_url)
        if fmt == PayloadKind.APPRISE:
            return self._apprise(job)
        return self._request(job, attempted_at, self._payload(job))

    def _apprise(self, job: DeliveryJob) -> AppriseRequest:
        target = _apprise_target(job.subscription.url)
        if job.digest is not None:
            message = digest_message(target, self._digest(job), base_url=self.base_url)
        elif job.notice is not None:
            message = notice_message(target, job.notice)
        else:
            message = self._alert_message(target, job)
        return AppriseRequest(target, message)

    def _alert_message(self, target: AppriseTarget, job: DeliveryJob) -> AppriseMessage:
        """The Apprise message of an alert: one event goes to many subscribers,
        mostly with the same limits, so it is rendered once for them all."""
        assert job.event is not None
        key = (target.body_format, target.title_max, target.body_max, *self._key(job))
        if (cached := self._messages.get(key)) is not None:
            return cached
        message = alert_message(
            target, job.event, base_url=self.base_url, **_alert_of(job.delivery)
        )
        self._messages.put(key, message)
        return message

    def _digest(self, job: DeliveryJob) -> Digest:
        """The job's digest with the link to the feed that holds all its events,
        its period on the subscription's clock (the chat and mail formats show it
        so; the json body gives UTC whatever the zone)."""
        digest, subscription = job.digest, job.subscription
        assert digest is not None
        topics = subscription.topics
        slug = topics[0] if len(topics) == 1 and topics[0] != "*" else None
        zone = ZoneInfo(subscription.timezone or "UTC")
        return replace(
            digest,
            feed_url=urls.feed_url(self.base_url, slug),
            period_start=digest.period_start.astimezone(zone),
            period_end=digest.period_end.astimezone(zone),
        )

    def _json_body(self, job: DeliveryJob) -> dict[str, Any]:
        """The ``json`` body of the job (what an operator's template renders from)."""
        if job.digest is not None:
            return digest_body(
                self._digest(job), base_url=self.base_url, subscription_id=job.subscription.id
            )
        if job.notice is not None:
            return notice_body(job.notice)
        assert job.event is not None
        return alert_body(job.event, base_url=self.base_url, **_alert_of(job.delivery))

    @property
    def rendering(self) -> int:
        """Operator templates being rendered now."""
        return 0 if self._renderer is None else self._renderer.rendering

    async def aclose(self) -> None:
        """End the template render workers, if any were started."""
        if self._renderer is not None:
            await self._renderer.aclose()

    def _request(
        self, job: DeliveryJob, attempted_at: datetime, payload: RenderedPayload
    ) -> Request:
        headers = webhook_headers(
            job.delivery.id, attempted_at, payload.body, job.subscription.secret
        )
        return Request(payload.body, {"Content-Type": payload.content_type, **headers})

    async def _templated(self, job: DeliveryJob, attempted_at: datetime) -> Request:
        key = self._key(job)
        payload = self._bodies.get(key)  # failures are not kept: each attempt renders
        if payload is None:
            path = parse_format(job.subscription.format).template_path
            assert path is not None
            body = self._json_body(job)
            if self._renderer is None:
                self._renderer = TemplateRenderer(self._template_limits)
            payload = await self._renderer.render(
                path, template_context(body, self.base_url), key=job.subscription.id
            )
            self._bodies.put(key, payload)
        return self._request(job, attempted_at, payload)

    def _payload(self, job: DeliveryJob) -> RenderedPayload:
        fmt = job.subscription.format
        if job.digest is not None:
            return render_digest(
                fmt, self._digest(job), base_url=self.base_url, subscription_id=job.subscription.id
            )
        if job.notice is not None:
            return render_notice(fmt, job.notice)
        assert job.event is not None
        key = self._key(job)
        if (cached := self._bodies.get(key)) is not None:
            return cached
        payload = render_payload(
            job.subscription.format, job.event, base_url=self.base_url, **_alert_of(job.delivery)
        )
        self._bodies.put(key, payload)
        return payload

    @staticmethod
    def _key(job: DeliveryJob) -> tuple[object, ...]:
        # A digest or a notice goes to one subscription: its delivery id keys it.
        about: object = job.event if job.event is not None else job.delivery.id
        return (job.subscription.format, about, *_alert_of(job.delivery).values())


class _Recent(Generic[_V]):
    """The ``size`` values last rendered, by key."""

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._items: OrderedDict[tuple[object, ...], _V] = OrderedDict()

    def get(self, key: tuple[object, ...]) -> _V | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: tuple[object, ...], value: _V) -> None:
        self._items[key] = value
        if len(self._items) > self._size:
            self._items.popitem(last=False)


@lru_cache(maxsize=1024)  # a few subscription URLs, one parse each
def _apprise_target(url: str) -> AppriseTarget:
    return parse_apprise_url(url)


class _Alert(TypedDict):
    """What a delivery says of its event beyond the event itself: the arguments of
    :func:`alert_body` and :func:`render_payload` after the event and base URL."""

    matched_topics: Sequence[str]
    in_reply_to: Sequence[str]
    timestamp: datetime
    kind: AlertKind
    previous_title: str | None


def _alert_of(delivery: Delivery) -> _Alert:
    return _Alert(
        matched_topics=delivery.matched_topics,
        in_reply_to=delivery.in_reply_to,
        timestamp=delivery.created_at,
        kind=delivery.kind,
        previous_title=delivery.previous_title,
    )


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


def ping_message(subscription: Subscription) -> tuple[AppriseTarget, AppriseMessage]:
    """A test message for an Apprise subscription, for ``feedbot subscriptions test``."""
    target = _apprise_target(subscription.url)
    text = f"feedbot test message for subscription {subscription.id}"
    return target, AppriseMessage(title="feedbot test", body=text, body_format="text")


def config_subscriptions(
    entries: Sequence[SubscriptionSettings],
    policy: TargetPolicy,
    templates: TemplateLimits | None = None,
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
                    exclude=entry.exclude,
                    events=entry.events,
                    digest=entry.digest,
                    digest_at=entry.digest_at,
                    timezone=entry.timezone,
                    origin="config",
                    policy=policy,
                    templates=templates,
                )
            )
            if not entry.active:
                built[-1] = replace(built[-1], active=False, disabled_reason=CONFIG_DISABLED)
        except ConfigError as exc:
            field = f"subscriptions[{index}].{exc.field}" if exc.field else None
            raise ConfigError(f"subscriptions[{index}].{exc}", field=field) from None
    return built


def operator_subscription(settings: Settings, policy: TargetPolicy) -> Subscription | None:
    """Where the operator's notices go (``notify.operator``): a webhook URL gets
    them as ``json`` (signed with ``notify.operator_secret``), any other an
    Apprise message; None when it is not set. An error names the key."""
    notify = settings.notify
    if not notify.operator:
        return None
    webhook = notify.operator.strip().lower().startswith(("http://", "https://"))
    secret = notify.operator_secret
    try:
        return build_subscription(
            url=notify.operator,
            topics=("*",),
            format="json" if webhook else "apprise",
            secret=secret.get_secret_value() if secret else None,
            origin=OPERATOR_ORIGIN,
            policy=policy,
            subscription_id=OPERATOR_ID,
        )
    except ConfigError as exc:
        key = "notify.operator_secret" if exc.field == "secret" else "notify.operator"
        raise ConfigError.about(key, exc.reason.removeprefix(f"{exc.field}: ")) from None
