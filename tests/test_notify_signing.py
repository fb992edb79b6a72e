"""Standard Webhooks headers, checked with the ``standardwebhooks`` library itself."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta, timezone

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from feedbot.errors import ConfigError
from feedbot.notify.signing import new_secret, validate_secret, webhook_headers

BODY = b'{"type":"event.created","data":{"event":{"title":"T\xc5\x8dhoku"}}}'


def now() -> datetime:
    # The library refuses timestamps more than 5 minutes from its own clock.
    return datetime.now(UTC)


def test_the_library_verifies_our_headers_unchanged() -> None:
    secret = new_secret()
    headers = webhook_headers("msg_1", now(), BODY, secret)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"].isdigit()
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(BODY, headers) == {
        "type": "event.created",
        "data": {"event": {"title": "Tōhoku"}},
    }


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body, headers: (body.replace(b"event.created", b"event.deleted"), headers),
        lambda body, headers: (body, {**headers, "webhook-id": "msg_2"}),
        lambda body, headers: (
            body,
            {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 1)},
        ),
    ],
    ids=["body", "id", "timestamp"],
)
def test_the_library_rejects_tampering(tamper: object) -> None:
    secret = new_secret()
    body, headers = tamper(BODY, webhook_headers("msg_1", now(), BODY, secret))  # type: ignore[operator]
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


def test_another_secret_does_not_verify() -> None:
    headers = webhook_headers("msg_1", now(), BODY, new_secret())
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_known_signature() -> None:
    # The example of the Standard Webhooks specification.
    headers = webhook_headers(
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        datetime.fromtimestamp(1614265330, UTC),
        b'{"test": 2432232314}',
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    )
    assert headers["webhook-timestamp"] == "1614265330"
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_timestamp_is_whole_utc_seconds_whatever_the_zone() -> None:
    moment = datetime(2026, 11, 27, 12, 0, 0, 999_999, tzinfo=UTC)
    elsewhere = moment.astimezone(timezone(timedelta(hours=5, minutes=30)))
    secret = new_secret()
    assert webhook_headers("m", elsewhere, BODY, secret) == webhook_headers(
        "m", moment, BODY, secret
    )
    assert webhook_headers("m", moment, BODY, None)["webhook-timestamp"] == str(
        int(datetime(2026, 11, 27, 12, tzinfo=UTC).timestamp())
    )
    fresh = now().astimezone(timezone(timedelta(hours=-7)))
    Webhook(secret).verify(BODY, webhook_headers("m", fresh, BODY, secret))


def test_without_a_secret_there_is_no_signature() -> None:
    headers = webhook_headers("msg_1", now(), BODY, None)
    assert set(headers) == {"webhook-id", "webhook-timestamp"}


def test_a_body_that_is_not_utf8_is_still_signed_over_its_bytes() -> None:
    secret = new_secret()
    body = b"\xff\xfe binary"
    moment = now()
    headers = webhook_headers("msg_1", moment, body, secret)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"msg_1.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        webhook_headers("m", datetime(2026, 1, 1), BODY, None)
    with pytest.raises(ValueError, match="msg_id"):
        webhook_headers("msg 1\r\nx: y", now(), BODY, None)


def test_new_secrets_are_valid_and_distinct() -> None:
    made = {new_secret() for _ in range(20)}
    assert len(made) == 20
    for secret in made:
        assert validate_secret(secret) == secret
        assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert len(base64.b64decode(new_secret(24).removeprefix("whsec_"))) == 24
    with pytest.raises(ValueError):
        new_secret(8)


@pytest.mark.parametrize(
    "secret",
    [
        "whsec_" + base64.b64encode(bytes(range(24))).decode(),
        "whsec_" + base64.b64encode(bytes(range(64))).decode(),
        "whsec_" + base64.b64encode(bytes(range(32))).decode().rstrip("="),  # unpadded
        "  whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw \n",
    ],
)
def test_valid_secrets(secret: str) -> None:
    assert validate_secret(secret) == secret.strip()


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with 'whsec_'"),
        ("whsec_", "standard base64"),
        ("whsec_Mf-Q9r8GKYqrTwjUPD8ILPZIo2LaLa_w", "standard base64"),  # URL-safe alphabet
        ("whsec_MfKQ9r8GKYqr TwjUPD8ILPZIo2LaLaSw", "standard base64"),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwA", "not valid base64"),
        ("whsec_" + base64.b64encode(bytes(16)).decode(), "24 to 64 bytes, not 16"),
        ("whsec_" + base64.b64encode(bytes(65)).decode(), "24 to 64 bytes, not 65"),
    ],
)
def test_invalid_secrets_are_refused_without_echoing_them(secret: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_secret(secret)
    message = str(caught.value)
    assert message.startswith("secret: ")
    assert reason in message
    payload = secret.removeprefix("whsec_")
    if payload:
        assert payload not in message
        assert payload[:8] not in message
