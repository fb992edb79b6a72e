"""``POST /websub``: the WebSub hub's door (W3C WebSub, sections 5.1 and 5.3).

A request is checked (:func:`feedbot.websub.parse_hub_request`, then the webhook
URL rules and the SSRF policy for the callback) and answered 202 at once; the
intent is then verified in the background with a GET to the callback carrying
``hub.mode``, ``hub.topic``, ``hub.challenge`` (random, used once) and
``hub.lease_seconds``, added to the callback's own query. Only a 2xx whose body
is exactly the challenge confirms; then the subscription is stored (or a renewal
extends its lease), or removed for an unsubscribe. A failed verification changes
nothing. A callback host holding ``websub.max_per_host`` subscriptions is refused.

The GET goes through the notifier's guarded connector, so a callback on a
private address is refused at connect time unless the operator allows it, as for
webhooks; redirects are not followed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from datetime import datetime
from urllib.parse import urlsplit

import aiohttp
from aiohttp import hdrs, web
from yarl import URL

from feedbot.clock import utc_now
from feedbot.errors import ConfigError, FeedbotError, TargetRefused
from feedbot.notify.outbound import validate_url
from feedbot.notify.ssrf import GuardedConnector, TargetPolicy, check_url
from feedbot.settings import WebSubSettings
from feedbot.store import Store, WebSubLimitReached
from feedbot.web.http import bad_request
from feedbot.websub import HubMode, HubRequest, HubRequestError, LeaseLimits, parse_hub_request

log = logging.getLogger(__name__)

_NO_STORE = {hdrs.CACHE_CONTROL: "no-store"}
_MAX_ANSWER = 4096  # bytes of a verification answer read: a challenge is short


class WebSubHub:
    """The subscription endpoint and its verifications in flight."""

    def __init__(
        self,
        settings: WebSubSettings,
        store: Store,
        policy: TargetPolicy,
        *,
        base_of: Callable[[web.Request], str],
        clock: Callable[[], datetime] = utc_now,
        user_agent: str = "feedbot",
    ) -> None:
        self.settings = settings
        self.store = store
        self.policy = policy
        self.limits = LeaseLimits(
            settings.lease_seconds, settings.min_lease_seconds, settings.max_lease_seconds
        )
        self._base_of = base_of
        self._clock = clock
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self._verifying: set[asyncio.Task[None]] = set()

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        try:
            hub_request = parse_hub_request(fields, self._base_of(request), self.limits)
            self._check_callback(hub_request.callback)
        except HubRequestError as exc:
            raise bad_request(exc) from None
        if hub_request.mode is HubMode.SUBSCRIBE:
            try:
                await self.store.subscriptions.websub_room(
                    hub_request.callback, self.settings.max_per_host
                )
            except WebSubLimitReached as exc:
                return web.Response(
                    status=429, text=f"429 Too Many Requests: {exc}.\n", headers=_NO_STORE
                )
        task = asyncio.create_task(self._verify(hub_request), name="websub verification")
        self._verifying.add(task)
        task.add_done_callback(self._verifying.discard)
        return web.Response(
            status=202,
            text="202 Accepted: the intent will be verified with a GET to the callback.\n",
            headers=_NO_STORE,
        )

    def _check_callback(self, callback: str) -> None:
        try:
            validate_url(callback)
            check_url(callback, self.policy)
        except ConfigError as exc:
            raise HubRequestError("hub.callback", str(exc).removeprefix("url: ")) from None
        except TargetRefused as exc:
            raise HubRequestError(
                "hub.callback", f"{exc} (this hub does not call such addresses)"
            ) from None

    @property
    def verifying(self) -> int:
        """Verifications in flight."""
        return len(self._verifying)

    async def close(self) -> None:
        for task in list(self._verifying):
            task.cancel()
        await asyncio.gather(*self._verifying, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _verify(self, hub_request: HubRequest) -> None:
        challenge = secrets.token_urlsafe(32)
        query = {
            "hub.mode": hub_request.mode.value,
            "hub.topic": hub_request.topic_url,
            "hub.challenge": challenge,
        }
        if hub_request.mode is HubMode.SUBSCRIBE:
            query["hub.lease_seconds"] = str(hub_request.lease_seconds)
        callback = _shown(hub_request.callback)
        try:
            confirmed = await self._ask(hub_request.callback, query, challenge)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.info("websub: %s of %s not verified: %s", hub_request.mode, callback, exc)
            return
        if not confirmed:
            log.info(
                "websub: %s of %s to %s not verified: the callback did not echo the challenge",
                hub_request.mode,
                callback,
                hub_request.topic_url,
            )
            return
        now = self._clock()
        try:
            if hub_request.mode is HubMode.SUBSCRIBE:
                await self.store.subscriptions.websub_subscribe(
                    callback=hub_request.callback,
                    feed=hub_request.topic.path,
                    topics=hub_request.topic.topics,
                    words=hub_request.topic.words,
                    secret=hub_request.secret,
                    lease_expires=hub_request.lease_end(now),
                    now=now,
                    max_per_host=self.settings.max_per_host,
                )
            else:
                await self.store.subscriptions.websub_unsubscribe(
                    hub_request.callback, hub_request.topic.path, now=now
                )
        except WebSubLimitReached as exc:
            log.warning("websub: subscription of %s refused: %s", callback, exc)
            await self._deny(hub_request, str(exc))
            return
        except FeedbotError:
            log.exception("websub: %s of %s could not be stored", hub_request.mode, callback)
            return
        log.info(
            "websub: %s of %s to %s verified",
            hub_request.mode,
            callback,
            hub_request.topic_url,
        )

    async def _ask(self, callback: str, query: dict[str, str], challenge: str) -> bool:
        url = URL(callback, encoded=True).extend_query(query)
        timeout = aiohttp.ClientTimeout(total=self.settings.verify_timeout)
        async with self._client().get(url, allow_redirects=False, timeout=timeout) as response:
            answer = await response.content.read(_MAX_ANSWER)
            return 200 <= response.status < 300 and answer == challenge.encode("ascii")

    async def _deny(self, hub_request: HubRequest, reason: str) -> None:
        """Tell the callback its subscription was refused (WebSub 5.2)."""
        query = {"hub.mode": "denied", "hub.topic": hub_request.topic_url, "hub.reason": reason}
        url = URL(hub_request.callback, encoded=True).extend_query(query)
        timeout = aiohttp.ClientTimeout(total=self.settings.verify_timeout)
        try:
            async with self._client().get(url, allow_redirects=False, timeout=timeout):
                pass
        except (aiohttp.ClientError, OSError, TimeoutError):
            pass  # a denial is a courtesy; the subscriber learns it on renewal too

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=GuardedConnector(self.policy),
                headers={hdrs.USER_AGENT: self._user_agent},
            )
        return self._session


def _shown(url: str) -> str:
    """A callback as logs show it: without its query, which may carry a token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
