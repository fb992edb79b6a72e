"""Apprise targets, digests and operator notices through ``feedbot run``, against
real servers on loopback: an ntfy stand-in that fails once and then takes the
alerts, a real SMTP server (aiosmtpd) that gets a digest by mail, a receiver
that answers 410 (its subscription is disabled and the operator hears of it),
and the password of an Apprise URL looked for in every output the operator
sees: the daemon's log, ``subscriptions list``, ``deliveries list``, ``config
check``, the admin API and ``/readyz``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import write_page
from tests.daemons import day_key, feedbot_cli, feedbot_run, until
from tests.daemons import write_config as daemon_config
from tests.receivers import running_receiver, status
from tests.test_apprise_target import (
    PASSWORD,
    mail_url,
    ntfy_error,
    ntfy_url,
    running_ntfy,
    running_smtp,
)

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

TOKEN = "admin-token-for-the-test"


async def test_apprise_alerts_digests_and_operator_notices(tmp_path: Path, archive: Path) -> None:
    today = day_key(datetime.now(UTC).date())
    async with (
        running_ntfy() as ntfy,
        running_receiver() as gone,
        running_receiver() as operator,
        aiohttp.ClientSession() as session,
    ):
        failed_once = ntfy_error(500, 50001, "the server is having a bad day")

        async def answer(request: web.Request, n: int) -> web.StreamResponse:
            if n == 1:
                return await failed_once(request, n)
            return web.json_response({"id": f"m{n}", "event": "message"})

        ntfy.answer = answer
        gone.answer = status(410)
        with running_smtp() as (smtp_port, mailbox):
            config = daemon_config(
                tmp_path,
                archive,
                {"url": ntfy_url(ntfy, auth=f"user:{PASSWORD}@"), "format": "apprise"},
                {"url": mail_url(smtp_port), "format": "apprise", "digest": 10},
                {"url": gone.url},
                operator=operator.url,
                retry_schedule=[0.2, 0.2, 0.2],
                digest_check_seconds=0.2,
            )
            with config.open("a", encoding="utf-8") as file:
                file.write(f'\n[admin]\ntoken = "{TOKEN}"\n')
            async with feedbot_run(config) as daemon:
                await daemon.first_poll(session)
                await daemon.watching(session)
                titles = ["A dam bursts upstream", "Rescue boats reach the valley"]
                for n, title in enumerate(titles):
                    write_page(archive, today, f"flood-{n}", title, story="Floods")

                # ntfy: the first attempt failed (500), the retry went through.
                def delivered_to_ntfy() -> set[str]:
                    return {body["title"] for *_head, body in ntfy.received[1:]}

                await until(lambda: delivered_to_ntfy() >= set(titles), what="both alerts on ntfy")
                first = ntfy.received[0][3]
                assert first["title"] in titles
                messages = [body["message"] for *_head, body in ntfy.received]
                assert any(f"/events/{today}/flood-0" in m for m in messages)

                # Mail: one digest for the period, both events in it.
                await until(lambda: len(mailbox.messages) >= 1, what="the digest by mail")
                mail = mailbox.messages[0]
                text = mail.get_body(("html", "plain")).get_content()
                assert all(title in text for title in titles)
                assert "2" in mail["Subject"]

                # The 410: its subscription is disabled, and the operator told.
                await until(lambda: len(operator.received) >= 1, what="an operator notice")
                notice = json.loads(operator.bodies[0])
                assert notice["type"] == "subscription.disabled"
                assert notice["data"]["last_response"]["status"] == 410
                assert notice["data"]["subscription"]["url"] == gone.url

                # Every output an operator reads, the password in none of them.
                shown: dict[str, str] = {}
                headers = {"Authorization": f"Bearer {TOKEN}"}
                async with session.get(
                    f"{daemon.url}/api/v1/subscriptions", headers=headers
                ) as response:
                    assert response.status == 200
                    shown["admin API"] = await response.text()
                async with session.get(f"{daemon.url}/readyz") as response:
                    shown["/readyz"] = await response.text()
                for args in (
                    ("subscriptions", "list"),
                    ("deliveries", "list"),
                    ("config", "check"),
                ):
                    code, output, errors = await feedbot_cli("--config", str(config), *args)
                    assert code == 0, errors
                    shown[" ".join(args)] = output + errors
                shown["log"] = daemon.log
            assert len(mailbox.messages) == 1  # one digest for the period, not one per event

    for where, text in shown.items():
        assert PASSWORD not in text, f"the password shows in {where}"
    listed = json.loads(shown["admin API"])["subscriptions"]
    apprise_urls = [s["url"] for s in listed if s["format"] == "apprise"]
    assert len(apprise_urls) == 2 and all(
        url.startswith(("ntfy://", "mailto://")) for url in apprise_urls
    )
    assert any(s["digest"] == "10" for s in listed)
    assert "ntfy://" in shown["subscriptions list"]
