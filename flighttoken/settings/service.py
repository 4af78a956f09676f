"""Settings sections of the running service: database and key store, HTTP listeners, logging,
privacy (keys, purge, retention) and airline operations."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from flighttoken.settings.base import (
    CHECKOUT_ROOT,
    AtLeastOne,
    NotNegative,
    PostgresUrl,
    Section,
    TcpPort,
)


class DatabaseSettings(Section, frozen=True):
    """PostgreSQL: the service database and the key store of wrapped data keys (flighttoken/db)."""

    database_url: PostgresUrl = ""
    """PostgreSQL DSN. Empty: start the embedded server in ``data_dir``."""
    data_dir: str = str(CHECKOUT_ROOT / ".data")
    """Where the embedded PostgreSQL keeps its cluster."""
    db_pool_min: AtLeastOne = 2
    db_pool_max: AtLeastOne = 10
    """At least db_pool_min (checked after conversion)."""
    db_command_timeout_s: float = 10.0
    keystore_url: PostgresUrl = ""
    """PostgreSQL DSN of the key store. Empty: the sibling database "<service db>_keys" on the same
    server, created at start-up. Must never be restored from a backup older than the purge promise."""
    keystore_pool_max: AtLeastOne = 4
    """Connections per instance to the key store (keys are cached; it is read rarely)."""
    keystore_same_cluster: Literal["warn", "refuse"] = "warn"
    """Production mode, when the key store shares the service database's cluster (same server address
    and port, or same system identifier): log a warning, or refuse to start. A shared cluster puts the
    wrapped data keys in the same physical backups and WAL archives as the templates."""


class HttpSettings(Section, frozen=True):
    """The public and authority listeners, and what one request may cost."""

    host: str = "127.0.0.1"
    port: TcpPort = 8000
    authority_host: str = "127.0.0.1"
    authority_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    """The authority's own listener (watchlist, alerts, their metrics); 0 = not served at all. Never
    the public port: on the public listener the authority paths do not exist."""
    rate_limit_per_second: int = 50
    """Requests per second one device key may make; more get 429 with Retry-After."""
    request_body_timeout_s: float = 10.0
    """A request body that has not fully arrived after this long is refused with 408."""
    max_body_bytes: int = 12 * 1024 * 1024
    """Largest request body (enrolment allows more: several captures in base64)."""


class LoggingSettings(Section, frozen=True):
    """The structured log stream (flighttoken/logging_setup)."""

    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class PrivacySettings(Section, frozen=True):
    """Master keyring, purge after departure, opt-out and audit retention (flighttoken/privacy)."""

    master_key: str = ""
    """Master keyring text ("kek-id:BASE64,..."); or use master_key_file. Never stored in the database."""
    master_key_file: str = ""
    """File holding the master keyring. Both empty: in development mode a development key is created
    in data_dir; production mode refuses to start."""
    purge_grace_s: NotNegative = 7200
    """A flight not yet closed this long after its scheduled departure is purged anyway."""
    purge_sweep_interval_s: Annotated[float, msgspec.Meta(ge=0.05, le=3600.0)] = 60.0
    """How often each instance purges due flights, resumes unfinished purges and drops ended tokens."""
    audit_retention_days: NotNegative = 365
    """Audit and journey events older than this many days are deleted; 0 keeps them forever."""


class OperationsSettings(Section, frozen=True):
    """Airline operations: admin API, ops dashboard, metrics (flighttoken/flights, ops, admin)."""

    ops_timezone: str = "UTC"
    """IANA time zone of the airport (e.g. Asia/Hong_Kong): what "today" means for lists and the
    dashboard. Checked against the zone database after conversion."""
    ops_refresh_s: Annotated[float, msgspec.Meta(ge=0.5, le=300.0)] = 2.0
    """How often the ops dashboard asks for a new summary."""
    metrics_token: str = ""
    """When set, GET /metrics needs 'Authorization: Bearer <token>'; empty leaves it open (no personal
    data), which only development mode allows."""
    schedule_import_max_rows: AtLeastOne = 5000
    """Most flights one schedule import may carry."""


class DcsSettings(Section, frozen=True):
    """DCS messages: delivery of the webhook outbox to airlines (flighttoken/dcs)."""

    dcs_delivery_interval_s: Annotated[float, msgspec.Meta(ge=0.05, le=60.0)] = 1.0
    """How often each instance looks for due events when it found none last time."""
    dcs_timeout_s: Annotated[float, msgspec.Meta(ge=0.1, le=120.0)] = 10.0
    """How long one delivery may take (connect, send, answer) before it counts as failed."""
    dcs_max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 12
    """Attempts before an event is dead-lettered (listed in the admin API, re-drivable)."""
    dcs_backoff_base_s: Annotated[float, msgspec.Meta(ge=0.01, le=3600.0)] = 5.0
    """Wait after the first failure; doubled after each further one, with jitter."""
    dcs_backoff_cap_s: Annotated[float, msgspec.Meta(ge=0.01, le=86400.0)] = 1800.0
    """Longest wait between two attempts."""
    dcs_lease_s: Annotated[float, msgspec.Meta(ge=1.0, le=3600.0)] = 60.0
    """How long a claimed event is another instance's; an instance that died mid-delivery loses it
    after this. Must exceed dcs_timeout_s (checked after conversion)."""
    dcs_batch: Annotated[int, msgspec.Meta(ge=1, le=500)] = 20
    """Events one instance claims, and posts concurrently, at a time."""
    dcs_retention_days: Annotated[int, msgspec.Meta(ge=1, le=365)] = 7
    """Delivered events (booking references, seats) are deleted this many days after delivery."""
