"""The apprise format, the digest keys and ``notify.operator`` from the config
file and the CLI: checked with errors that name the key, and an Apprise URL's
secrets never printed (the admin API's side is in test_admin_api)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from feedbot.cli import main
from feedbot.errors import ConfigError
from feedbot.model import CONFIG_DISABLED, Subscription
from feedbot.notify.outbound import config_subscriptions, operator_subscription
from feedbot.notify.ssrf import TargetPolicy
from feedbot.settings import Settings, SubscriptionSettings
from feedbot.store import Store
from tests.conftest import T0

PASSWORD = "app-password-of-the-relay"
MAIL = f"mailto://me:{PASSWORD}@mail.example.org?from=feedbot@example.org"
POLICY = TargetPolicy.build()


def entry(**keys: object) -> list[SubscriptionSettings]:
    return [SubscriptionSettings(**{"url": "https://a.example/", **keys})]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("keys", "field", "says"),
    [
        ({"digest": "fortnightly"}, "digest", "expected hourly, daily, weekly"),
        ({"digest": 3}, "digest", "out of range"),
        ({"digest": "daily", "digest_at": "8am"}, "digest_at", ""),
        ({"digest_at": "08:00"}, "digest_at", ""),
        ({"digest": "daily", "timezone": "CEST"}, "timezone", ""),
        ({"digest": "daily", "events": ["created", "deleted"]}, "events", "new events"),
        ({"url": "nosuch://x", "format": "apprise"}, "url", ""),
        ({"format": "apprise"}, "url", "json"),
    ],
)
def test_a_bad_key_is_named_with_its_entry(keys: dict[str, object], field: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_subscriptions(entry(**keys), POLICY)
    assert caught.value.field == f"subscriptions[0].{field}"
    assert str(caught.value).startswith(f"subscriptions[0].{field}: ")
    assert says in str(caught.value)


def test_a_refused_apprise_url_does_not_echo_its_secret() -> None:
    with pytest.raises(ConfigError) as caught:
        config_subscriptions(
            entry(url=f"mailto://me:{PASSWORD}@mail.example.org:99999", format="apprise"), POLICY
        )
    assert caught.value.field == "subscriptions[0].url"
    assert PASSWORD not in str(caught.value)


def test_config_subscriptions_keep_their_digest_and_a_shown_url() -> None:
    (built,) = config_subscriptions(
        entry(url=MAIL, format="apprise", digest="daily", timezone="asia/kolkata"), POLICY
    )
    assert (built.digest, built.digest_at, built.timezone) == ("daily", "08:00", "Asia/Kolkata")
    assert built.url == MAIL and built.shown_url is not None
    assert PASSWORD not in built.shown_url and built.redacted().url == built.shown_url


def test_the_operator_url_is_a_webhook_or_an_apprise_url() -> None:
    def operator(url: str) -> Settings:
        return Settings.model_validate({"notify": {"operator": url}})

    webhook = operator_subscription(operator("https://ops.example.org/hook"), POLICY)
    assert webhook is not None and webhook.format == "json"
    mail = operator_subscription(operator(MAIL), POLICY)
    assert mail is not None and mail.format == "apprise"
    assert operator_subscription(Settings(), POLICY) is None
    with pytest.raises(ConfigError) as caught:
        operator_subscription(operator("nosuch://x"), POLICY)
    assert caught.value.field == "notify.operator"
    with pytest.raises(ConfigError, match=r"^notify\.operator: .*refused"):
        operator_subscription(operator("http://10.0.0.1/hook"), POLICY)


def test_cli_adds_an_apprise_digest_and_lists_it_masked(tmp_path: Path, capsys) -> None:
    config = tmp_path / "feedbot.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "cli.db"}"\n', encoding="utf-8")
    base = ["--config", str(config), "subscriptions"]
    add = [*base, "add", MAIL, "--format", "apprise", "--digest", "daily", "--digest-at", "07:30"]
    assert main([*add, "--timezone", "Europe/Berlin"]) == 0
    capsys.readouterr()
    assert main([*base, "list"]) == 0
    (line,) = capsys.readouterr().out.splitlines()  # one so far
    assert PASSWORD not in line
    assert "mailto://me:" in line and "format=apprise" in line
    assert "digest=daily@07:30 Europe/Berlin" in line

    assert main([*base, "add", "https://h.example/off", "--inactive"]) == 0
    capsys.readouterr()
    assert main([*base, "list"]) == 0
    assert "disabled (added inactive with the CLI)" in capsys.readouterr().out
    assert main([*base, "add", "https://h.example/", "--digest", "monthly"]) == 2
    assert "digest: expected hourly, daily, weekly" in capsys.readouterr().err
    assert main([*base, "add", MAIL.replace("mailto", "nosuch"), "--format", "apprise"]) == 2
    err = capsys.readouterr().err
    assert "url: " in err and PASSWORD not in err


def test_config_check_masks_apprise_urls_and_checks_them(tmp_path: Path, capsys) -> None:
    config = tmp_path / "feedbot.toml"
    config.write_text(
        "[notify]\n"
        f'operator = "{MAIL}"\n'
        "[[subscriptions]]\n"
        f'url = "{MAIL.replace("me:", "you:")}"\n'
        'format = "apprise"\n'
        'digest = "weekly"\n',
        encoding="utf-8",
    )
    assert main(["--config", str(config), "config", "check"]) == 0
    out = capsys.readouterr().out
    assert PASSWORD not in out
    shown = json.loads(out)
    assert shown["notify"]["operator"].startswith("mailto://me:")
    assert shown["subscriptions"][0]["url"].startswith("mailto://you:")

    config.write_text(
        f'[[subscriptions]]\nurl = "{MAIL}"\nformat = "apprise"\ndigest = "often"\n',
        encoding="utf-8",
    )
    assert main(["--config", str(config), "config", "check"]) == 2
    err = capsys.readouterr().err
    assert "subscriptions[0].digest" in err and PASSWORD not in err


async def test_active_false_in_the_config_switches_a_subscription_off_and_back(
    store: Store,
) -> None:
    def wanted(**keys: object) -> list[Subscription]:
        return config_subscriptions(entry(**keys), POLICY)

    (off,) = wanted(active=False)
    assert (off.active, off.disabled_reason) == (False, CONFIG_DISABLED)
    assert await store.subscriptions.reconcile_config(wanted(active=False), now=T0) == (1, 0, 0)
    (stored,) = await store.subscriptions.all()
    assert not stored.active and stored.disabled_reason == CONFIG_DISABLED
    assert await store.subscriptions.reconcile_config(wanted(), now=T0) == (0, 1, 0)
    (stored,) = await store.subscriptions.all()
    assert stored.active and stored.disabled_reason is None
    # One a 410 switched off stays off: the file's default active = true is no "enable".
    await store.subscriptions.set_active(stored.id, False, reason="the receiver answered 410 Gone")
    assert await store.subscriptions.reconcile_config(wanted(), now=T0) == (0, 0, 0)
    (stored,) = await store.subscriptions.all()
    assert not stored.active and stored.disabled_reason == "the receiver answered 410 Gone"
    assert await store.subscriptions.reconcile_config(wanted(active=False), now=T0) == (0, 0, 0)
