"""Service settings, read from `WFE_*` environment variables; a bad value fails at start."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SYMMETRIC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "PS256"})

# `WFE_` variables read by something other than `Settings`, so never typos: the client
# commands' connection (cli/client.py; `wfe dev` and `wfe env` print them for export), the
# per-tier tokens older `wfe dev` printed (WFE_TOKEN_FREE, ...), still in users' shells, and
# the test suite's and benchmark's own (WFE_TEST_*).
NOT_SETTINGS: Final = frozenset({"WFE_ADDRESS", "WFE_TENANT", "WFE_TOKEN"})
NOT_SETTINGS_PREFIXES: Final = ("WFE_TOKEN_", "WFE_TEST_")


class Settings(BaseSettings):
    """Every setting of the service; the README's configuration table lists them."""

    model_config = SettingsConfigDict(env_prefix="WFE_", extra="ignore", frozen=True)

    data_dir: Path = Field(
        Path(".wfe"), description="Where the embedded database and dev secret live."
    )
    database_url: str | None = Field(
        None, description="Database the service uses; default: an SQLite file in data_dir."
    )
    admin_database_url: str | None = Field(
        None, description="Owner connection for migrations and tenant admin; default: database_url."
    )
    db_pool_size: int = Field(10, ge=1, le=200)
    db_max_overflow: int = Field(10, ge=0, le=200)

    listen_address: str = Field("127.0.0.1:50051", description="host:port the gRPC server binds.")
    grpc_max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    grpc_max_metadata_bytes: int = Field(16 * 1024, ge=1024, le=1024 * 1024)
    grpc_max_concurrent_rpcs: int = Field(1000, ge=1)
    grpc_keepalive_time_seconds: int = Field(60, ge=1, description="Server pings idle clients.")
    grpc_keepalive_timeout_seconds: int = Field(20, ge=1)
    grpc_min_client_ping_seconds: int = Field(
        10, ge=1, description="Clients pinging more often than this are disconnected."
    )
    shutdown_grace_seconds: float = Field(10.0, ge=0, le=300)
    readiness_check_seconds: float = Field(
        5.0,
        gt=0,
        le=300,
        description="How often a server checks its database and schema for its health status.",
    )
    validation_workers: int = Field(
        2,
        ge=1,
        le=64,
        description="Processes that check definitions and inputs, off the event loop.",
    )
    validation_timeout_seconds: float = Field(
        5.0, gt=0, le=300, description="A validation still running after this is refused."
    )
    stream_heartbeat_seconds: float = Field(
        15.0, gt=0, le=3600, description="An idle event stream sends a heartbeat this often."
    )
    stream_buffer_events: int = Field(
        256,
        ge=1,
        le=100_000,
        description="Events held for one live stream; a stream further behind reads the log.",
    )
    event_poll_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="Streams look at the event log at least this often, wake-up or not.",
    )
    slow_step_seconds: float = Field(
        300.0,
        gt=0,
        le=7 * 24 * 3600,
        description="A step that runs longer makes a slow_execution notification.",
    )
    slow_step_factor: float = Field(
        3.0,
        ge=1.0,
        le=1000.0,
        description="So does a step taking this many times its own recent p95.",
    )
    error_max_violations: int = Field(
        50, ge=1, le=1000, description="Field violations one error lists; the rest are counted."
    )
    page_token_secret: SecretStr | None = Field(
        None,
        min_length=32,
        description="Signs page tokens; shared by every server. Default: from WFE_JWT_SECRET.",
    )

    jwt_secret: SecretStr | None = Field(None, description="HS256 shared secret (development).")
    jwt_jwks_url: str | None = Field(None, description="JWKS URL for RS256/ES256 (production).")
    jwt_algorithms: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(),
        description="Accepted algorithms; default HS256 with a secret, RS256+ES256 with JWKS.",
    )
    jwt_issuer: str = Field("wfe-dev", min_length=1)
    jwt_audience: str = Field("wfe", min_length=1)
    jwt_leeway_seconds: int = Field(30, ge=0, le=60)
    jwt_tenants_claim: str = Field("tenants", min_length=1)
    jwt_roles_claim: str = Field("roles", min_length=1)
    jwks_cache_seconds: float = Field(300.0, gt=0)
    jwks_min_refresh_seconds: float = Field(30.0, ge=0)
    jwks_timeout_seconds: float = Field(5.0, gt=0, le=60)

    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    log_format: str = Field(
        "text", pattern="^(text|json)$", description="`json`: one JSON object per line."
    )
    metrics_address: str | None = Field(
        None, description="host:port of this process's Prometheus endpoint; unset: none."
    )
    metrics_tenant_labels: bool = Field(
        False, description="Label metrics by tenant id too (one series per tenant: cardinality)."
    )

    broker_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Celery broker (redis:// or amqp://); `wfe dev` uses an in-process one.",
    )
    queue_name: str = Field("wfe", min_length=1, max_length=100, description="Broker queue.")
    broker_visibility_timeout_seconds: float = Field(
        3600.0,
        gt=0,
        le=7 * 24 * 3600,
        description="Redis redelivers a message not acknowledged this long after delivery.",
    )
    worker_concurrency: int = Field(2, ge=1, le=256, description="Step tasks run at once.")
    worker_io_steps: int = Field(
        100,
        ge=0,
        le=10_000,
        description=(
            "Steps of I/O-bound tools one worker process keeps in flight on its I/O lane "
            "(0: no lane, they run in tasks)."
        ),
    )
    lease_seconds: float = Field(
        30.0, gt=0, le=3600, description="A running step not heard from this long is re-run."
    )
    checkpoint_seconds: float = Field(
        0.8,
        gt=0,
        le=60,
        description="A running step renews its lease and looks for a cancellation this often.",
    )
    dispatch_grace_seconds: float = Field(
        15.0, gt=0, le=3600, description="A due step not started this long after is re-sent."
    )
    sweep_interval_seconds: float = Field(5.0, gt=0, le=3600)
    purge_interval_seconds: float = Field(3600.0, gt=0)
    default_step_timeout_seconds: float = Field(300.0, gt=0, le=86400)
    max_lease_takeovers: int = Field(
        3, ge=1, le=100, description="Times a step lost with its worker is re-run before failing."
    )

    http_allowed_schemes: Annotated[frozenset[str], NoDecode] = Field(
        frozenset({"https", "http"}), description="Schemes http_request may call."
    )
    http_allowed_ports: Annotated[frozenset[int], NoDecode] = Field(
        frozenset({80, 443, 8080, 8443}), description="Ports http_request may call."
    )
    http_allowed_networks: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="CIDRs the operator allows although private or loopback (e.g. 10.0.0.0/8).",
    )
    http_max_response_bytes: int = Field(1024 * 1024, ge=1, le=64 * 1024 * 1024)
    http_max_redirects: int = Field(5, ge=0, le=20)
    http_default_timeout_seconds: float = Field(30.0, gt=0, le=300)

    @field_validator("jwt_algorithms", mode="before")
    @classmethod
    def _split_algorithms(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(part.strip().upper() for part in value.split(",") if part.strip())
        return value

    @field_validator("http_allowed_schemes", mode="before")
    @classmethod
    def _split_schemes(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(part.strip().lower() for part in value.split(",") if part.strip())
        return value

    @field_validator("http_allowed_ports", mode="before")
    @classmethod
    def _split_ports(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(int(part) for part in value.split(",") if part.strip())
        return value

    @field_validator("http_allowed_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> Self:
        if self.jwt_secret is not None and self.jwt_jwks_url is not None:
            raise ValueError("set WFE_JWT_SECRET or WFE_JWT_JWKS_URL, not both")
        if self.jwt_secret is not None and len(self.jwt_secret.get_secret_value()) < 32:
            raise ValueError("WFE_JWT_SECRET must be at least 32 characters")
        algorithms = self.jwt_algorithms
        if "NONE" in algorithms:
            raise ValueError("the 'none' algorithm is never accepted")
        unknown = algorithms - SYMMETRIC_ALGORITHMS - ASYMMETRIC_ALGORITHMS
        if unknown:
            raise ValueError(f"unsupported JWT algorithms: {sorted(unknown)}")
        if self.jwt_jwks_url is not None and algorithms & SYMMETRIC_ALGORITHMS:
            raise ValueError("HS* algorithms cannot be used with keys from a JWKS URL")
        if self.jwt_jwks_url is None and algorithms & ASYMMETRIC_ALGORITHMS:
            raise ValueError("RS*/ES*/PS* algorithms need WFE_JWT_JWKS_URL")
        return self

    @property
    def accepted_algorithms(self) -> frozenset[str]:
        if self.jwt_algorithms:
            return self.jwt_algorithms
        return frozenset({"RS256", "ES256"}) if self.jwt_jwks_url else frozenset({"HS256"})

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'wfe.db'}"

    @property
    def effective_admin_database_url(self) -> str:
        return self.admin_database_url or self.effective_database_url


class GatewaySettings(BaseSettings):
    """The REST gateway's settings (`wfe gateway`, and `wfe dev`'s): no secret among them."""

    model_config = SettingsConfigDict(env_prefix="WFE_", extra="ignore", frozen=True)

    gateway_listen_address: str = Field(
        "127.0.0.1:8080", description="host:port the REST gateway binds."
    )
    gateway_target: str = Field(
        "127.0.0.1:50051", min_length=1, description="host:port of the gRPC server it calls."
    )
    gateway_cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Origins whose pages may call the gateway (`*`: any); none: CORS off."
    )
    gateway_max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="Larger bodies get 413."
    )
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    log_format: str = Field("text", pattern="^(text|json)$")
    metrics_address: str | None = Field(None)

    @field_validator("gateway_cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip().rstrip("/") for part in value.split(",") if part.strip())
        return value


@dataclass(frozen=True, slots=True)
class UnknownSetting:
    """A `WFE_` variable nothing reads: a misspelt setting would silently keep its default."""

    code: ClassVar[str] = "unknown_setting"
    name: str
    suggestion: str | None

    @property
    def message(self) -> str:
        hint = f"did you mean {self.suggestion}?" if self.suggestion else "see README.md"
        return f"unknown setting {self.name}; {hint}"


class UnknownSettings(ValueError):
    """The environment names settings that do not exist; start-up stops."""

    code: ClassVar[str] = UnknownSetting.code

    def __init__(self, unknown: list[UnknownSetting]) -> None:
        super().__init__("\n".join(item.message for item in unknown))
        self.unknown = unknown


def setting_names() -> frozenset[str]:
    """Every variable `Settings` and `GatewaySettings` read."""
    fields = (*Settings.model_fields, *GatewaySettings.model_fields)
    return frozenset(f"WFE_{name.upper()}" for name in fields)


def unknown_settings(environ: Mapping[str, str]) -> list[UnknownSetting]:
    """The `WFE_` variables of `environ` that neither `Settings` nor another reader knows."""
    known = sorted(setting_names() | NOT_SETTINGS)
    unknown = []
    for name in sorted(environ):
        upper = name.upper()  # pydantic-settings matches names case-insensitively
        if upper.startswith("WFE_") and upper not in known:
            if not upper.startswith(NOT_SETTINGS_PREFIXES):
                # Compared without the shared prefix, which would make anything look close.
                close = difflib.get_close_matches(upper[4:], [k[4:] for k in known], n=1)
                unknown.append(UnknownSetting(name, f"WFE_{close[0]}" if close else None))
    return unknown


def from_environment(**overrides: Any) -> Settings:
    """Settings from `WFE_*` variables, with `overrides` on top.

    Raises `UnknownSettings` for a variable no one reads (a typo would otherwise go
    unnoticed) and pydantic's `ValidationError` for a bad value.
    """
    _refuse_unknown()
    return Settings(**overrides)


def gateway_from_environment(**overrides: Any) -> GatewaySettings:
    """The gateway's settings from `WFE_*` variables, refused as `from_environment` refuses."""
    _refuse_unknown()
    return GatewaySettings(**overrides)


def _refuse_unknown() -> None:
    unknown = unknown_settings(os.environ)
    if unknown:
        raise UnknownSettings(unknown)
