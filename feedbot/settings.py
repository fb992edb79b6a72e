"""The one typed settings object, built at the edge (CLI) and passed down.

Sources, strongest first: ``FEEDBOT_<SECTION>__<KEY>`` environment variables, the
TOML file (``--config PATH`` or ``FEEDBOT_CONFIG``), then the defaults below.
Unknown keys and bad values are refused with a :class:`~feedbot.errors.ConfigError`
that names the key, the value and what was expected. Relative paths in the file
(the archive folder, a SQLite file) are taken relative to the file's folder, so a
config works from any working directory.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from feedbot.alerts import alert_kinds
from feedbot.archive.parse import ParseLimits
from feedbot.errors import ConfigError
from feedbot.redact import redact, redact_target_url

ENV_PREFIX = "FEEDBOT_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArchiveSettings(_Section):
    source: str = Field("examples/archive", description="archive folder or http(s) base URL")
    poll_interval: float = Field(300.0, gt=0, description="seconds between polls")
    poll_jitter: float = Field(5.0, ge=0, description="random delay added to each poll, seconds")
    watch: bool = Field(True, description="watch a local folder for changes")
    lookback_days: int = Field(3, ge=1, description="http: day index pages re-read each poll")
    backfill_days: int = Field(30, ge=0, description="http: day index pages read on first poll")
    max_concurrency: int = Field(8, ge=1, le=256, description="http: requests in flight")
    timeout: float = Field(10.0, gt=0, description="http: seconds per request")
    max_page_bytes: int = Field(1_048_576, ge=1024, description="largest page accepted, bytes")
    settle_ms: int = Field(
        100,
        ge=0,
        le=60_000,
        description="local: a page modified this recently (ms) may be half-written: "
        "it is read once it has been left alone that long",
    )
    batch_bytes: int = Field(
        33_554_432,
        ge=1024,
        description="http: page bodies held per batch before it is parsed and stored, bytes "
        "(at least max_page_bytes)",
    )
    max_index_links: int = Field(
        1000, ge=1, description="http: pages read from one day index; more is a problem of the day"
    )
    allow_private: bool = Field(
        False,
        description="http: an archive reached by name may resolve to private addresses "
        "(an IP literal or localhost may always reach itself)",
    )
    max_page_topics: int = Field(
        200, ge=1, description="a page naming more topics is rejected, with a reason (not cut)"
    )
    max_page_related: int = Field(
        200,
        ge=1,
        description="a page listing more related events is rejected, with a reason (not cut)",
    )
    max_title_chars: int = Field(
        2000,
        ge=1,
        description="a page whose summary, story or a related title is longer (characters) "
        "is rejected, with a reason (not cut)",
    )

    @field_validator("batch_bytes")
    @classmethod
    def _holds_a_page(cls, value: int, info: ValidationInfo) -> int:
        if value < info.data.get("max_page_bytes", 0):
            raise ValueError("must be at least max_page_bytes")
        return value

    @property
    def is_url(self) -> bool:
        return self.source.startswith(("http://", "https://"))

    @property
    def parse_limits(self) -> ParseLimits:
        """What one page may hold, as the parser takes it (wherever it runs)."""
        return ParseLimits(
            max_topics=self.max_page_topics,
            max_related=self.max_page_related,
            max_title_chars=self.max_title_chars,
        )


class StoreSettings(_Section):
    url: str = Field("sqlite:///data/feedbot.db", description="sqlite:///PATH or postgresql://...")
    lease_seconds: float = Field(
        15.0,
        ge=2,
        le=3600,
        description="PostgreSQL: a dead replica loses the poller role after this",
    )

    @field_validator("url")
    @classmethod
    def _known_backend(cls, url: str) -> str:
        if not url.startswith(("sqlite:", "sqlite+aiosqlite:", "postgresql:", "postgresql+")):
            raise ValueError("expected a sqlite:///PATH or postgresql://... URL")
        return url


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    base_url: str = Field("", description="public URL of the server; empty: http://host:port")
    shutdown_timeout: float = Field(10.0, ge=0)
    header_timeout: float = Field(
        10.0, gt=0, le=3600, description="seconds a new connection has to send its headers"
    )
    keepalive_timeout: float = Field(
        75.0, gt=0, le=86_400, description="seconds an idle keep-alive connection stays open"
    )
    max_connections: int = Field(
        512, ge=1, le=1_000_000, description="connections open at once; more get a 503"
    )


class FeedSettings(_Section):
    page_size: int = Field(50, ge=1, le=1000)
    tombstone_days: int = Field(
        30,
        ge=0,
        le=3650,
        description="days a removed event stays in its Atom feeds as an RFC 6721 tombstone",
    )


class NotifySettings(_Section):
    backfill_days: int = Field(0, ge=0, description="first poll: alert events this recent")
    allow_private_targets: bool = Field(False, description="allow loopback/private targets")
    allow_cidrs: list[str] = Field(default_factory=list, description="networks to allow")
    max_in_flight: int = Field(64, ge=1, le=10_000, description="requests in flight at once")
    per_host: int = Field(
        8,
        ge=1,
        le=1000,
        description="requests in flight to one host; a subscription with none may send one",
    )
    per_subscription: int = Field(
        4, ge=1, le=1000, description="requests in flight to one subscription"
    )
    timeout: float = Field(10.0, gt=0, le=300, description="seconds per attempt")
    retry_schedule: list[float] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0],
        description="seconds before each retry",
    )
    disable_after: float = Field(5.0, gt=0, description="days of failure before disabling")
    workers: int = Field(
        0, ge=0, le=64, description="delivery worker processes; 0: the daemon delivers"
    )
    template_timeout: float = Field(
        2.0, gt=0, le=60, description="seconds one render of an operator's template may take"
    )
    template_memory: int = Field(
        256, ge=16, le=65_536, description="MiB a template render worker may grow by"
    )
    template_failures: int = Field(
        5,
        ge=1,
        le=1000,
        description="template renders failing in a row that disable a subscription",
    )
    operator: str | None = Field(
        None,
        description="webhook or Apprise URL told of disabled subscriptions and failed deliveries",
    )
    operator_secret: SecretStr | None = Field(
        None, description="whsec_ secret signing the notices to a webhook operator URL"
    )
    digest_check_seconds: float = Field(
        15.0, gt=0, le=3600, description="seconds between looks for digest periods that ended"
    )
    apprise_workers: int = Field(
        4, ge=1, le=64, description="Apprise notifications sent at once (threads)"
    )

    @field_validator("allow_cidrs")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for value in values:
            ipaddress.ip_network(value, strict=False)  # a ValueError names the value
        return values


class AdminSettings(_Section):
    token: SecretStr | None = Field(None, description="bearer token; unset: admin API off")


class WebSubSettings(_Section):
    """The built-in WebSub hub (README: "Push to readers: WebSub")."""

    enabled: bool = Field(True, description="advertise the hub and take subscriptions")
    lease_seconds: int = Field(864_000, ge=1, description="lease granted when none is asked")
    min_lease_seconds: int = Field(3600, ge=1, description="shortest lease granted")
    max_lease_seconds: int = Field(2_592_000, ge=1, description="longest lease granted")
    max_per_host: int = Field(
        100, ge=1, le=1_000_000, description="subscriptions per callback host"
    )
    verify_timeout: float = Field(
        10.0, gt=0, le=120, description="seconds to wait for a callback's verification answer"
    )
    sweep_seconds: float = Field(60.0, gt=0, description="seconds between lease expiry sweeps")

    @field_validator("max_lease_seconds")
    @classmethod
    def _ordered(cls, value: int, info: ValidationInfo) -> int:
        minimum = info.data.get("min_lease_seconds")
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least min_lease_seconds ({minimum})")
        return value


class SubscriptionSettings(_Section):
    url: str
    topics: list[str] = Field(default_factory=lambda: ["*"])
    format: str = "json"
    secret: SecretStr | None = None
    keywords: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    events: list[str] = Field(default_factory=lambda: ["created"])
    digest: str | int | None = Field(
        None, description='"hourly", "daily", "weekly" or seconds: one message per period'
    )
    digest_at: str | None = Field(None, description='"HH:MM" a daily or weekly digest closes at')
    timezone: str | None = Field(None, description="IANA time zone of digest_at (default UTC)")
    active: bool = Field(True, description="false: kept, but nothing is sent to it")

    @field_validator("events")
    @classmethod
    def _alert_kinds(cls, values: list[str]) -> list[str]:
        alert_kinds(values)  # a ValueError says what is wrong
        return values


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    archive: ArchiveSettings = ArchiveSettings()
    store: StoreSettings = StoreSettings()
    server: ServerSettings = ServerSettings()
    feeds: FeedSettings = FeedSettings()
    notify: NotifySettings = NotifySettings()
    admin: AdminSettings = AdminSettings()
    websub: WebSubSettings = WebSubSettings()
    subscriptions: list[SubscriptionSettings] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (which arrives as init arguments).
        return (env_settings, init_settings)

    def redacted(self) -> dict[str, Any]:
        """The effective settings as plain data, secrets replaced by a mask (and a
        password in a store URL hidden), for ``feedbot config check``."""
        data = self.model_dump(mode="json")  # SecretStr dumps as "**********"
        data["store"]["url"] = redact(data["store"]["url"])
        if data["notify"]["operator"]:
            data["notify"]["operator"] = redact_target_url(data["notify"]["operator"])
        for entry in data["subscriptions"]:
            entry["url"] = redact_target_url(entry["url"])
        return data

    @property
    def public_base_url(self) -> str:
        if self.server.base_url:
            return self.server.base_url.rstrip("/")
        host = self.server.host
        host = f"[{host}]" if ":" in host else host  # an IPv6 address, as URLs spell it
        return f"http://{host}:{self.server.port}"


def config_file(path: Path | None = None) -> tuple[Path | None, str]:
    """The config file to read and how it was chosen: ``path`` (``--config``),
    else ``$FEEDBOT_CONFIG``, else none (``(None, "")``)."""
    if path is not None:
        return path, "--config"
    if os.environ.get("FEEDBOT_CONFIG"):
        return Path(os.environ["FEEDBOT_CONFIG"]), "FEEDBOT_CONFIG"
    return None, ""


def environment_variable(*loc: str | int) -> str | None:
    """The environment variable that sets the key at ``loc`` (``"store", "url"``),
    as it is spelled in the environment, or None when the key is not set there."""
    values: Any = EnvSettingsSource(Settings)()
    for depth, part in enumerate(loc):
        if not isinstance(values, dict) or part not in values:
            return None
        values = values[part]
        if not isinstance(values, dict):
            # A JSON value (a list, a whole table) or a scalar: this variable sets it.
            return _spelled(loc[: depth + 1])
    return _spelled(loc)


def _spelled(loc: Sequence[str | int]) -> str:
    wanted = ENV_PREFIX + "__".join(str(part).upper() for part in loc)
    # Names are matched case-insensitively: show the one the user wrote.
    return next((name for name in os.environ if name.upper() == wanted), wanted)


def load_settings(path: Path | None = None) -> Settings:
    """Read ``path`` (or ``$FEEDBOT_CONFIG``; neither: defaults) and the environment."""
    path, _how = config_file(path)
    values: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read config file: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        base = path.resolve().parent
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None
    return _resolve_paths(settings, base)


def _describe(exc: ValidationError, path: Path | None) -> str:
    """One line per bad key, each naming where the key was set: the environment
    variable when the environment set it, else the file. The first line stands
    alone (start-up errors are shown as one line when there is one)."""
    lines = [_describe_one(error, path) for error in exc.errors()]
    if len(lines) > 1:
        lines[0] += f" (and {len(lines) - 1} more, below)"
    return "\n".join(lines)


def _describe_one(error: ErrorDetails, path: Path | None) -> str:
    loc = error["loc"]
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)[1:]
    variable = environment_variable(*loc)
    if variable is not None:
        where = f"environment variable {variable}: "
    else:
        where = f"{path}: " if path else ""
    if error["type"] == "extra_forbidden":
        return f"{where}unknown key '{key}'{_known_keys(loc[:-1])}"
    value = error.get("input")
    shown = "(hidden)" if loc and loc[-1] in ("secret", "token") else redact(repr(value))
    return f"{where}bad value for '{key}': {shown}: {error['msg']}"


def _known_keys(loc: Sequence[str | int]) -> str:
    """`` (expected one of ...)``: the keys of the table holding an unknown key."""
    model: Any = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation
        model = getattr(annotation, "__args__", (annotation,))[0]
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return ""
    return f" (expected one of {', '.join(model.model_fields)})"


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    archive = settings.archive
    if not archive.is_url and not Path(archive.source).is_absolute():
        archive = archive.model_copy(update={"source": os.path.normpath(base / archive.source)})
    store = settings.store
    prefix, _, file = store.url.partition(":///")
    if prefix.startswith("sqlite") and file and not file.startswith((":memory:", "/")):
        store = store.model_copy(update={"url": f"{prefix}:///{os.path.normpath(base / file)}"})
    return settings.model_copy(update={"archive": archive, "store": store})
