"""Alerts to webhook subscribers (README: "Webhooks"): the pure building blocks.

:mod:`.formats` builds request bodies (json, slack, discord) and
:mod:`.payload_templates` compiles and renders operator templates (which the
daemon runs only inside the worker processes of :mod:`.render_workers`);
:mod:`.signing` makes the Standard Webhooks headers and checks ``whsec_``
secrets; :mod:`.ssrf` decides which addresses a webhook may reach and enforces it
inside aiohttp's connector. None of them touches the store: the
outbox and the delivery worker build on them.
"""

from feedbot.notify.formats import (
    EVENT_TYPE,
    MAX_TEMPLATE_OUTPUT,
    PayloadFormat,
    PayloadKind,
    RenderedPayload,
    alert_body,
    parse_format,
    render_payload,
)
from feedbot.notify.payload_templates import CompiledTemplate, compile_template
from feedbot.notify.signing import new_secret, validate_secret, webhook_headers
from feedbot.notify.ssrf import (
    GuardedConnector,
    GuardedResolver,
    TargetPolicy,
    check_url,
    classify,
    make_connector,
    refusal_of,
)

__all__ = [
    "EVENT_TYPE",
    "MAX_TEMPLATE_OUTPUT",
    "CompiledTemplate",
    "GuardedConnector",
    "GuardedResolver",
    "PayloadFormat",
    "PayloadKind",
    "RenderedPayload",
    "TargetPolicy",
    "alert_body",
    "check_url",
    "classify",
    "compile_template",
    "make_connector",
    "new_secret",
    "parse_format",
    "refusal_of",
    "render_payload",
    "validate_secret",
    "webhook_headers",
]
