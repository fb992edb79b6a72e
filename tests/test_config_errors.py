"""A subscription's bad field crosses layers as ``ConfigError.field`` (issue 12: no
field name parsed back out of a message); the messages users read are unchanged."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from feedbot.errors import ConfigError
from feedbot.notify.outbound import build_subscription, config_subscriptions
from feedbot.notify.payload_templates import compile_template
from feedbot.notify.ssrf import TargetPolicy
from feedbot.settings import SubscriptionSettings
from feedbot.web.admin import config_error

GOOD = "https://hooks.example/a"


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"url": "ftp://x"}, "url", "url: 'ftp://x' is not an absolute http:// or https:// URL"),
        (
            {"url": "http://127.0.0.1/"},
            "url",
            "url: refused: 127.0.0.1 (loopback) (set notify.allow_private_targets to allow it)",
        ),
        ({"url": "http://[::1"}, "url", "url: 'http://[::1' is not a valid URL"),
        ({"topics": []}, "topics", "topics: give at least one topic slug"),
        ({"topics": ["a b"]}, "topics", "topics: 'a b' is not a topic slug"),
        ({"format": "nope"}, "format", "format: unknown payload format 'nope'"),
        ({"secret": "abc"}, "secret", "secret: must start with 'whsec_'"),
        ({"events": ["nope"]}, "events", "events: unknown alert kind 'nope'"),
    ],
)
def test_each_field_is_named_by_the_error(fields: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        build_subscription(**{"url": GOOD, **fields})
    assert raised.value.field == field
    assert str(raised.value).startswith(message)
    api = config_error(raised.value)
    assert (api.status, api.field, api.message) == (400, field, str(raised.value))


def test_a_config_entry_names_its_index_and_field() -> None:
    entries = [
        SubscriptionSettings(url=GOOD),
        SubscriptionSettings(url="https://hooks.example/b", secret="abc"),
    ]
    with pytest.raises(ConfigError) as raised:
        config_subscriptions(entries, TargetPolicy.build())
    assert raised.value.field == "subscriptions[1].secret"
    assert str(raised.value).startswith("subscriptions[1].secret: must start with 'whsec_'")


def test_the_api_reads_the_field_not_the_message() -> None:
    """A message that merely starts like a field names none; the field given does."""
    assert config_error(ConfigError("url: reads like a field")).field is None
    assert config_error(ConfigError("something else entirely", field="topics")).field == "topics"
    # A field the create request does not have is not offered as one.
    assert config_error(ConfigError("x", field="subscriptions[0].url")).field is None


def test_the_field_survives_pickling() -> None:
    """Template checks run in worker processes and send their ConfigError back."""
    copy = pickle.loads(pickle.dumps(ConfigError("format: bad", field="format")))
    assert (str(copy), copy.field) == ("format: bad", "format")


def test_a_templates_error_keeps_field_and_reason_apart(tmp_path: Path) -> None:
    """The render workers report a template gone bad since its check with the reason
    alone; they take it from the error's field, not by cutting "format: " off."""
    broken = tmp_path / "broken.j2"
    broken.write_text("{% if %}", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        compile_template(broken)
    error = raised.value
    assert error.field == "format"
    assert str(error) == f"format: {error.reason}"
    assert error.reason.startswith(f"template {broken} line 1: ")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.field, copy.reason) == ("format", error.reason)
    # An error made from a message alone has that message as its reason.
    assert ConfigError("store.url: missing").reason == "store.url: missing"
