"""The admin API under ``/api/v1``: subscriptions, deliveries, replays.

===========================================  =========================================
``GET    /api/v1/subscriptions``             list (200)
``POST   /api/v1/subscriptions``             create (201; 400, 413, 415)
``GET    /api/v1/subscriptions/{id}``        one (200; 404)
``PATCH  /api/v1/subscriptions/{id}``        change (200; 400, 404, 409, 413, 415)
``DELETE /api/v1/subscriptions/{id}``        remove (204; 404, 409)
``GET    /api/v1/deliveries``                ``?status=pending|done|failed&limit=N`` (200; 400)
``GET    /api/v1/deliveries/{id}``           one, with its attempts (200; 404)
``POST   /api/v1/deliveries/replay``         ``{"ids": [...]}``, or ``{}`` for all failed (200; 400)
===========================================  =========================================

The API exists only when ``admin.token`` is set: without it no ``/api/`` route is
registered and every such path is a plain 404. With it, every ``/api/`` request
needs ``Authorization: Bearer <admin.token>`` (compared in constant time) or gets
401 with ``WWW-Authenticate``. Every answer is JSON; an error is ``{"error":
"...", "field": "..."}`` (``field`` null when no field is at fault).

Subscriptions pass the same gate as the config file's and the CLI's:
:func:`~feedbot.notify.outbound.build_subscription`, whose ``ConfigError`` names
the field. Secrets are write-only: a subscription shows ``"signed": true``, and
the only secret ever in a response is one the server made for ``"secret":
"generate"``, in that one response. Subscriptions from the config file are
reconciled from it at every start, so only ``active`` can be changed here; the
rest is edited (or removed) in the file.

A replay answers for each delivery: ``{"replayed": N, "results": [{"id": ...,
"outcome": "queued" | "already pending" | "already delivered" | "subscription
disabled" | "subscription removed" | "no such delivery", "queued": bool,
"subscription_id": ..., "reason": "..."}]}``, ``reason`` saying what to do when
there is something to do (enable the subscription).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import unicodedata
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, NoReturn

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from yarl import URL

from feedbot.clock import utc_now
from feedbot.errors import ConfigError, ConflictError, NotFoundError, StorageError
from feedbot.factory import target_policy, template_limits
from feedbot.model import OPERATOR_ORIGIN, DeliveryStatus, Subscription
from feedbot.notify.formats import iso_utc
from feedbot.notify.outbound import build_subscription
from feedbot.notify.signing import new_secret
from feedbot.notify.ssrf import TargetPolicy
from feedbot.settings import Settings
from feedbot.store import Store, WebSubListing
from feedbot.store.outbox import Delivery, ReplayOutcome, ReplayResult
from feedbot.web.http import log_storage_error, storage_status

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
MAX_BODY = 64 * 1024  # bytes of a request body
MAX_LIMIT = 1000  # deliveries in one listing
DEFAULT_LIMIT = 100
MAX_IDS = 1000  # ids in one replay
GENERATE = "generate"  # "secret": "generate" asks the server for a new secret
_CREATE_FIELDS = (
    *("url", "topics", "format", "secret", "keywords", "exclude", "events"),
    *("digest", "digest_at", "timezone", "active"),
)
_PATCH_FIELDS = _CREATE_FIELDS[1:]  # a URL is not changed: add another
_NO_STORE: dict[str, str] = {hdrs.CACHE_CONTROL: "no-store"}
_API_DISABLED = "disabled through the admin API"
_CHALLENGE = 'Bearer realm="feedbot admin API"'


class ApiError(Exception):
    """An error answer: status, message and the field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def _refuse(status: int, message: str, field: str | None = None) -> NoReturn:
    raise ApiError(status, message, field)


def setup_admin(app: web.Application, settings: Settings, store: Store) -> bool:
    """Register the API on ``app`` when ``admin.token`` is set; returns whether it did."""
    token = settings.admin.token
    if token is None:
        return False
    value = token.get_secret_value()
    if not value.strip():
        log.warning("admin.token is empty: the admin API stays off")
        return False
    api = _AdminApi(settings, store, target_policy(settings), value.encode("utf-8"))
    app.middlewares.append(api.middleware())
    router = app.router
    router.add_get(f"{PREFIX}/subscriptions", api.list_subscriptions)
    router.add_post(f"{PREFIX}/subscriptions", api.create_subscription)
    router.add_get(f"{PREFIX}/subscriptions/{{id}}", api.get_subscription)
    router.add_patch(f"{PREFIX}/subscriptions/{{id}}", api.patch_subscription)
    router.add_delete(f"{PREFIX}/subscriptions/{{id}}", api.delete_subscription)
    router.add_get(f"{PREFIX}/websub", api.list_websub)
    router.add_delete(f"{PREFIX}/websub/{{id}}", api.delete_subscription)
    router.add_get(f"{PREFIX}/deliveries", api.list_deliveries)
    router.add_post(f"{PREFIX}/deliveries/replay", api.replay)
    router.add_get(f"{PREFIX}/deliveries/{{id}}", api.get_delivery)
    return True


def _json(
    data: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(data, ensure_ascii=False) + "\n",
        content_type="application/json",
        headers={**_NO_STORE, **(headers or {})},
    )


def _error(
    status: int, message: str, field: str | None, headers: Mapping[str, str] | None = None
) -> web.Response:
    return _json({"error": message, "field": field}, status, headers)


def _storage_error(exc: StorageError, status: int) -> web.Response:
    """The answer to a store error, whose status :func:`storage_status` gave."""
    if isinstance(exc, NotFoundError):  # removed by another request since it was read
        return _error(status, f"no {exc.kind} {exc.key[:64]!r}", "id")
    if isinstance(exc, ConflictError):
        return _error(status, f"conflict: the store holds another record here ({exc.reason})", None)
    return _error(status, "the store is unavailable", None, {hdrs.RETRY_AFTER: "30"})


def config_error(exc: ConfigError) -> ApiError:
    """A 400 from :func:`build_subscription`'s error, naming the field it gives."""
    known = exc.field in _CREATE_FIELDS
    return ApiError(400, str(exc), exc.field if known else None)


# -- views -----------------------------------------------------------------------


def subscription_view(subscription: Subscription) -> dict[str, Any]:
    """A subscription as the API shows it: never its secret, nor those of its URL."""
    return {
        "id": subscription.id,
        "url": subscription.redacted().url,
        "topics": list(subscription.topics),
        "format": subscription.format,
        "keywords": list(subscription.keywords),
        "exclude": list(subscription.exclude),
        "events": [kind.value for kind in subscription.events],
        "digest": subscription.digest,
        "digest_at": subscription.digest_at,
        "timezone": subscription.timezone,
        "signed": subscription.secret is not None,
        "active": subscription.active,
        "disabled_reason": subscription.disabled_reason,
        "origin": subscription.origin,
        "created_at": _iso(subscription.created_at),
    }


def websub_view(entry: WebSubListing, base_url: str, now: datetime) -> dict[str, Any]:
    """A reader's WebSub subscription as the API shows it: never its secret."""
    subscription = entry.subscription
    return {
        "id": subscription.id,
        "callback": subscription.url,
        "topic": base_url.rstrip("/") + (subscription.feed or ""),
        "state": entry.state(now),
        "lease_expires": _iso(subscription.lease_expires),
        "signed": subscription.secret is not None,
        "last_delivery": None
        if entry.last_attempt_at is None
        else {"at": _iso(entry.last_attempt_at), "status": entry.last_status},
        "created_at": _iso(subscription.created_at),
    }


def delivery_view(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "subscription_id": delivery.subscription_id,
        "event_id": delivery.event_id,
        "status": delivery.status.value,
        "matched_topics": list(delivery.matched_topics),
        "in_reply_to": list(delivery.in_reply_to),
        "attempts": delivery.attempts,
        "created_at": _iso(delivery.created_at),
        "next_attempt_at": _iso(delivery.next_attempt_at),
        "last_attempt_at": _iso(delivery.last_attempt_at),
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
    }


def replay_view(result: ReplayResult) -> dict[str, Any]:
    subscription = result.subscription_id
    reason: str | None = None
    enable = (
        f"subscription {subscription} is disabled ({result.subscription_disabled}); "
        f'PATCH {PREFIX}/subscriptions/{subscription} with {{"active": true}} switches it on'
    )
    match result.outcome:
        case ReplayOutcome.SUBSCRIPTION_DISABLED:
            reason = f"{enable}, then replay again"
        case ReplayOutcome.ALREADY_PENDING if result.subscription_disabled is not None:
            reason = f"held until its {enable}"
        case ReplayOutcome.SUBSCRIPTION_REMOVED:
            reason = f"subscription {subscription} was removed"
        case _:
            pass
    return {
        "id": result.delivery_id,
        "outcome": result.outcome.value,
        "queued": result.queued,
        "subscription_id": subscription,
        "next_attempt_at": _iso(result.next_attempt_at),
        "reason": reason,
    }


def attempt_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "attempted_at": _iso(row["attempted_at"]),
        "status": row["status"],
        "latency_ms": row["latency_ms"],
        "error": row["error"],
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else iso_utc(moment)


# -- request bodies ----------------------------------------------------------------


async def read_json_object(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any]:
    """The request's JSON object body: 413 over :data:`MAX_BODY`, 415 when not
    JSON, 400 when not an object. An empty body is ``{}`` if ``allow_empty``."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        _refuse(413, f"body: larger than {MAX_BODY} bytes", "body")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(16384):
        size += len(chunk)
        if size > MAX_BODY:
            _refuse(413, f"body: larger than {MAX_BODY} bytes", "body")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip() and allow_empty:
        return {}
    if request.content_type != "application/json":
        _refuse(415, "body: send JSON, with Content-Type: application/json", "body")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        _refuse(400, f"body: not valid JSON ({exc})", "body")
    except RecursionError:
        _refuse(400, "body: nested too deeply", "body")
    if not isinstance(data, dict):
        _refuse(400, "body: must be a JSON object", "body")
    return data


def _check_fields(body: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for name in body:
        if name not in allowed:
            shown = name if len(name) <= 64 else name[:64] + "..."
            if name == "url":
                _refuse(400, "url: cannot be changed; add a new subscription instead", "url")
            _refuse(400, f"{shown}: unknown field (expected {', '.join(allowed)})", shown)


def _has_control(value: str) -> bool:
    """Whether ``value`` holds a control or invisible format character (NUL among
    them, which PostgreSQL cannot even compare): no id or name of ours does."""
    return any(unicodedata.category(char)[0] == "C" for char in value)


def _string(body: Mapping[str, Any], name: str) -> str:
    value = body[name]
    if not isinstance(value, str):
        _refuse(400, f"{name}: must be a string", name)
    return value


def _strings(body: Mapping[str, Any], name: str) -> list[str]:
    value = body[name]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        _refuse(400, f"{name}: must be a list of strings", name)
    return value


def _optional(body: Mapping[str, Any], name: str, current: str | None) -> str | None:
    """A digest key of the body (null clears it), else ``current``."""
    if name not in body:
        return current
    value = body[name]
    if name == "digest" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # seconds
    if value is not None and not isinstance(value, str):
        _refuse(400, f"{name}: must be a string or null", name)
    return value


def _secret(body: Mapping[str, Any]) -> tuple[str | None, bool]:
    """The secret asked for, and whether the server made it."""
    value = body["secret"]
    if value is None:
        return None, False
    if not isinstance(value, str):
        _refuse(400, f'secret: must be a whsec_ string, "{GENERATE}" or null', "secret")
    if value == GENERATE:
        return new_secret(), True
    return value, False


# -- the handlers ------------------------------------------------------------------


class _AdminApi:
    def __init__(
        self, settings: Settings, store: Store, policy: TargetPolicy, token: bytes
    ) -> None:
        self.settings = settings
        self.store = store
        self.policy = policy
        self._token = token

    def middleware(self) -> Middleware:
        """Authentication and JSON errors for every ``/api/`` request."""

        @web.middleware
        async def admin_api(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not request.path.startswith("/api/"):
                return await handler(request)
            try:
                self._authorize(request)
                return await handler(request)
            except ApiError as exc:
                challenge: dict[str, str] = {hdrs.WWW_AUTHENTICATE: _CHALLENGE}
                return _error(
                    exc.status, exc.message, exc.field, challenge if exc.status == 401 else None
                )
            except web.HTTPException as exc:  # the router's 404 and 405
                headers: dict[str, str] = {}
                if hdrs.ALLOW in exc.headers:
                    headers[hdrs.ALLOW] = exc.headers[hdrs.ALLOW]
                return _error(exc.status, exc.reason, None, headers)
            except StorageError as exc:
                status = storage_status(exc)
                log_storage_error(request, exc, status)
                return _storage_error(exc, status)
            except Exception:
                log.exception("unhandled error serving %s %s", request.method, request.path)
                return _error(500, "internal error; it has been logged", None)

        return admin_api

    def _authorize(self, request: web.Request) -> None:
        scheme, _, given = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            _refuse(401, "authorization: send Authorization: Bearer <admin.token>", None)
        if not hmac.compare_digest(given.strip().encode("utf-8"), self._token):
            _refuse(401, "authorization: wrong token", None)

    async def _subscription(self, request: web.Request) -> Subscription:
        subscription_id = request.match_info["id"]
        found = None
        if not _has_control(subscription_id):
            found = await self.store.subscriptions.get(subscription_id)
        if found is None or found.origin == OPERATOR_ORIGIN:  # notify.operator is the config's
            _refuse(404, f"no subscription {subscription_id[:64]!r}", "id")
        return found

    async def _build(self, *, format_asked: bool, **fields: Any) -> Subscription:
        """A checked subscription of ``fields``; ``format_asked``: its format is the
        request's (not one kept from the stored subscription)."""
        if format_asked and str(fields.get("format", "")).strip().startswith("template:"):
            # A template is a file on this server: whoever may name one could have
            # any readable file sent to their URL. Only the operator (config, CLI);
            # a subscription they gave one keeps it through other changes.
            raise config_error(
                ConfigError(
                    "format: template formats are set in the config file or with the CLI, "
                    "not through the API",
                    field="format",
                )
            )
        try:
            # A template format compiles (and reads) a file: off the event loop.
            return await asyncio.to_thread(
                build_subscription,
                policy=self.policy,
                templates=template_limits(self.settings),
                **fields,
            )
        except ConfigError as exc:
            raise config_error(exc) from None

    # -- subscriptions -------------------------------------------------------------

    async def list_subscriptions(self, request: web.Request) -> web.StreamResponse:
        subscriptions = await self.store.subscriptions.all()
        return _json({"subscriptions": [subscription_view(s) for s in subscriptions]})

    async def list_websub(self, request: web.Request) -> web.StreamResponse:
        now = utc_now()
        base = self.settings.public_base_url
        listed = await self.store.subscriptions.websub_list()
        return _json({"websub": [websub_view(entry, base, now) for entry in listed]})

    async def create_subscription(self, request: web.Request) -> web.StreamResponse:
        body = await read_json_object(request)
        _check_fields(body, _CREATE_FIELDS)
        if "url" not in body:
            _refuse(400, "url: required", "url")
        secret, generated = _secret(body) if "secret" in body else (None, False)
        built = await self._build(
            format_asked=True,
            url=_string(body, "url"),
            topics=_strings(body, "topics") if "topics" in body else ["*"],
            format=_string(body, "format") if "format" in body else "json",
            secret=secret,
            keywords=_strings(body, "keywords") if "keywords" in body else [],
            exclude=_strings(body, "exclude") if "exclude" in body else [],
            events=_strings(body, "events") if "events" in body else ["created"],
            digest=_optional(body, "digest", None),
            digest_at=_optional(body, "digest_at", None),
            timezone=_optional(body, "timezone", None),
            origin="api",
        )
        if "active" in body:
            if not isinstance(body["active"], bool):
                _refuse(400, "active: must be true or false", "active")
            if not body["active"]:
                built = replace(built, active=False, disabled_reason=_API_DISABLED)
        stored = await self.store.subscriptions.add(built, now=utc_now())
        # Only the host: a Slack or Discord webhook URL is itself a credential (an
        # Apprise URL shows in its privacy form).
        log.info(
            "subscription %s added through the API (to %s)",
            stored.id,
            stored.shown_url or URL(stored.url).host,
            extra={"subscription_id": stored.id},
        )
        view = subscription_view(stored)
        if generated:
            view["secret"] = secret  # shown this once; the receiver needs it
        location = f"{PREFIX}/subscriptions/{stored.id}"
        return _json(view, 201, {hdrs.LOCATION: location})

    async def get_subscription(self, request: web.Request) -> web.StreamResponse:
        return _json(subscription_view(await self._subscription(request)))

    async def patch_subscription(self, request: web.Request) -> web.StreamResponse:
        current = await self._subscription(request)
        body = await read_json_object(request)
        _check_fields(body, _PATCH_FIELDS)
        if current.origin == "config":
            for name in body:
                if name != "active":
                    _refuse(
                        409,
                        f"{name}: this subscription comes from the config file and is "
                        "reset from it at every start; change it there",
                        name,
                    )
        active = current.active
        if "active" in body:
            if not isinstance(body["active"], bool):
                _refuse(400, "active: must be true or false", "active")
            active = body["active"]
        if set(body) <= {"active"}:
            # Switching on or off writes nothing else, so it works for every format
            # (a template one included) and keeps what another request changed.
            reason = None if active else _API_DISABLED
            stored = await self.store.subscriptions.set_active(current.id, active, reason=reason)
            self._log_change(stored, body)
            return _json(subscription_view(stored))
        secret, generated = _secret(body) if "secret" in body else (current.secret, False)
        built = await self._build(
            format_asked="format" in body,
            url=current.url,
            topics=_strings(body, "topics") if "topics" in body else current.topics,
            format=_string(body, "format") if "format" in body else current.format,
            secret=secret,
            keywords=_strings(body, "keywords") if "keywords" in body else current.keywords,
            exclude=_strings(body, "exclude") if "exclude" in body else current.exclude,
            events=_strings(body, "events") if "events" in body else current.events,
            digest=_optional(body, "digest", current.digest),
            digest_at=_optional(body, "digest_at", current.digest_at),
            timezone=_optional(body, "timezone", current.timezone),
            origin=current.origin,
            subscription_id=current.id,
        )
        if active:
            reason = None  # the store clears the reason and the failure streak
        elif current.active:
            reason = _API_DISABLED
        else:
            reason = current.disabled_reason
        changed = replace(
            built, active=active, disabled_reason=reason, created_at=current.created_at
        )
        stored = await self.store.subscriptions.update(changed)
        self._log_change(stored, body)
        view = subscription_view(stored)
        if generated:
            view["secret"] = secret
        return _json(view)

    def _log_change(self, stored: Subscription, body: Mapping[str, Any]) -> None:
        log.info(
            "subscription %s changed through the API: %s",
            stored.id,
            ", ".join(sorted(body)) or "nothing",
            extra={"subscription_id": stored.id},
        )

    async def delete_subscription(self, request: web.Request) -> web.StreamResponse:
        current = await self._subscription(request)
        if current.origin == "config":
            _refuse(
                409,
                "this subscription comes from the config file and comes back at every "
                "start; remove it there",
                None,
            )
        await self.store.subscriptions.remove(current.id, now=utc_now())
        log.info(
            "subscription %s removed through the API",
            current.id,
            extra={"subscription_id": current.id},
        )
        return web.Response(status=204, headers=_NO_STORE)

    # -- deliveries ----------------------------------------------------------------

    async def list_deliveries(self, request: web.Request) -> web.StreamResponse:
        status: DeliveryStatus | None = None
        raw_status = request.query.get("status")
        if raw_status is not None:
            try:
                status = DeliveryStatus(raw_status)
            except ValueError:
                expected = ", ".join(s.value for s in DeliveryStatus)
                _refuse(400, f"status: must be one of {expected}", "status")
        limit = DEFAULT_LIMIT
        raw_limit = request.query.get("limit")
        if raw_limit is not None:
            if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
                _refuse(400, f"limit: must be a whole number from 1 to {MAX_LIMIT}", "limit")
            limit = int(raw_limit)
        found = await self.store.outbox.deliveries(status=status, limit=limit)
        return _json({"deliveries": [delivery_view(d) for d in found]})

    async def get_delivery(self, request: web.Request) -> web.StreamResponse:
        delivery_id = request.match_info["id"]
        delivery = None
        if not _has_control(delivery_id):
            delivery = await self.store.outbox.delivery(delivery_id)
        if delivery is None:
            _refuse(404, f"no delivery {delivery_id[:64]!r}", "id")
        attempts = await self.store.outbox.attempts_of(delivery.id)
        return _json(
            {**delivery_view(delivery), "attempt_log": [attempt_view(a) for a in attempts]}
        )

    async def replay(self, request: web.Request) -> web.StreamResponse:
        body = await read_json_object(request, allow_empty=True)
        _check_fields(body, ("ids",))
        ids: list[str] | None = None
        if "ids" in body:
            ids = _strings(body, "ids")
            if len(ids) > MAX_IDS:
                _refuse(400, f"ids: at most {MAX_IDS} in one replay", "ids")
            if any(_has_control(i) for i in ids):
                _refuse(400, "ids: a delivery id holds no control characters", "ids")
        results = await self.store.outbox.replay(ids, now=utc_now())
        count = sum(result.queued for result in results)
        log.info("%d of %d deliveries queued again through the API", count, len(results))
        return _json({"replayed": count, "results": [replay_view(r) for r in results]})
