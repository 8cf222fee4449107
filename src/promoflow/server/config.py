"""One settings object. Nothing else in the server reads ``os.environ``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

SUPPORTED_DATABASES = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "postgres": "PostgreSQL"}


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def passive_ports(spec: str | None) -> list[int] | None:
    """'60000-60099' or '60000,60001' → the FTP passive ports; None/empty → any free port. A range written
    backwards, a port outside 1-65535 or text that is not a port is refused (ValueError, naming it)."""
    if not spec:
        return None
    ports: list[int] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        lo_text, _, hi_text = part.partition("-")
        try:
            lo, hi = int(lo_text), int(hi_text or lo_text)
        except ValueError:
            raise ValueError(f"{part!r} is not a port or a range such as 60000-60099") from None
        if not 1 <= lo <= hi <= 65535:
            raise ValueError(f"{part!r}: ports run from 1 to 65535, a range from its lower end to its upper")
        ports.extend(range(lo, hi + 1))
    return ports or None


class OperatorError(Exception):
    """Something about the environment or the configuration stops a server process or a command: the message is
    one line naming what to do (the CLI prints it instead of a traceback)."""

    exit_code = 1
    error = "OperatorError"


class DatabaseUrlError(OperatorError, ValueError):
    """A database URL promoflow cannot use (malformed, or a database it does not support)."""

    exit_code = 2
    error = "InvalidDatabaseUrl"


class PortInUseError(OperatorError):
    """A port a server process needs is taken."""

    error = "PortInUse"


def parse_database_url(url: str) -> URL:
    """The URL parsed, or DatabaseUrlError with a message naming what to do. Never echoes a password."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise DatabaseUrlError(
            "the database URL is not a URL; use sqlite:////path/to/file.sqlite3 or postgresql://user@host/db"
        ) from exc
    backend = parsed.drivername.split("+", 1)[0]
    if backend not in SUPPORTED_DATABASES:
        raise DatabaseUrlError(
            f"unsupported database URL scheme {parsed.drivername!r}: promoflow runs on SQLite "
            "(sqlite:////path/to/file.sqlite3) or PostgreSQL (postgresql://user@host:5432/db)"
        )
    return parsed


def describe_database(url: str) -> str:
    """Which database a URL names, for operators: the SQLite file, or PostgreSQL host:port/db and user — never
    the password."""
    parsed = parse_database_url(url)
    if parsed.drivername.startswith("sqlite"):
        path = parsed.database or ""
        return f"SQLite {Path(path).resolve() if path and path != ':memory:' else path or ':memory:'}"
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"
    return f"PostgreSQL {where}" + (f" (user {parsed.username})" if parsed.username else "")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROMOFLOW_", extra="ignore")

    data_dir: Path = Field(
        default=Path("promoflow-data"), description="Where SQLite, FTP trees and exports live."
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite in the data dir. PostgreSQL: postgresql://…"
    )

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        if value is not None:
            parse_database_url(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in LOG_LEVELS:
            raise ValueError(f"one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("ftp_passive_ports")
    @classmethod
    def _port_ranges(cls, value: str | None) -> str | None:
        if value:
            passive_ports(value)
        return value

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535, description="HTTP port; 0 picks a free one.")
    db_pool_size: int = Field(default=20, ge=1, description="Database connections per process.")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, description="Largest API request body.")
    api_key_cache_seconds: float = Field(
        ge=0, default=5.0, description="How long a verified API key is trusted before it is looked up again."
    )
    api_key_last_used_seconds: float = Field(
        default=60.0,
        ge=0,
        description="How often (at most) a process writes an API key's 'last used at' (written in the background).",
    )
    idempotency_ttl_hours: int = 48
    idempotency_lock_seconds: int = Field(
        default=60, description="A request holding an Idempotency-Key longer than this is taken to have died."
    )
    default_rate_limit_per_second: float = Field(
        default=200.0, ge=0, description="Requests per second per API key; 0: no limit."
    )
    default_rate_limit_burst: int = Field(default=400, ge=1)
    worker_poll_seconds: float = Field(default=0.5, ge=0.01, le=60)
    worker_concurrency: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Jobs one worker runs at the same moment (at most one per queue); it interleaves up to 8.",
    )
    run_worker: bool = True
    record_shown: bool = Field(
        default=True,
        description="Record the ledger's 'shown' events (buffered; one row per answered fetch, written in batches).",
    )
    fast_lane: bool = Field(
        default=True,
        description="Answer plain fetch/redeem requests on the fast path (raw connections, one statement each).",
    )
    log_level: str = "info"
    access_log: bool = Field(
        default=True,
        description="One line per HTTP request on stderr (method, path, status, milliseconds, tenant).",
    )
    log_format: Literal["text", "json"] | None = Field(
        default=None,
        description="'json': every log line of a server process is a JSON object (time, level, logger, message, "
        "the event's fields, a traceback as one field), for log shippers; the access log follows unless "
        "access_log_format is set. Unset: access_log_format's, else 'text'.",
    )
    access_log_format: Literal["text", "json"] | None = Field(
        default=None,
        description="'json': each access-log line is a JSON object. Unset: log_format's, else 'text'.",
    )

    # Retention (worker housekeeping, in `serve` and `promoflow worker`). 0 keeps forever.
    retention_interval_seconds: int = Field(
        ge=0, default=600, description="How often a server process runs the retention purge; 0 turns it off."
    )
    retention_batch_size: int = Field(
        ge=1,
        default=1000,
        description="Rows deleted per transaction (each batch is a short lock, never a long one).",
    )
    retention_import_records_days: int = Field(
        default=90,
        description="Per-record verdicts of imports finished this many days ago are deleted (the import's "
        "status, counts and result file stay).",
    )
    retention_processed_files_days: int = Field(
        default=30,
        description="Files in a tenant's integration/processed folder older than this are deleted (a tenant's "
        "own `processedFileRetentionDays` overrides it).",
    )
    retention_import_results_days: int = Field(
        default=30,
        description="Result files in a tenant's integration/importResults folder older than this are deleted "
        "(the import's status and counts stay).",
    )
    retention_jobs_days: int = Field(
        default=30,
        description="Finished jobs (succeeded or failed; their payload and result) are deleted this many days "
        "after they finished.",
    )
    retention_promotion_views_days: int = Field(
        default=180,
        description="The ledger's 'shown' events (promotion_view rows) older than this are deleted; the "
        "reports' shown figures (assignment_shown) stay.",
    )
    api_ready_dir: Path | None = Field(
        default=None,
        description="Internal: `promoflow api --workers N` learns here that its processes are ready.",
    )

    # What an operator watches: /metrics (Prometheus), /readyz, the shared rate limit (docs/operators.md).
    metrics_enabled: bool = Field(default=True, description="Serve Prometheus metrics at /metrics.")
    metrics_token: str | None = Field(
        default=None,
        description="If set, /metrics answers only requests with 'Authorization: Bearer <token>' (401 otherwise).",
    )
    metrics_db_cache_seconds: float = Field(
        default=5.0, description="How long the figures /metrics reads from the database (queue) are reused."
    )
    prometheus_multiproc_dir: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"),
        description="prometheus-client's multiprocess directory; default <data dir>/metrics/run-<pid> when "
        "`api --workers N` runs several processes. Emptied at start.",
    )
    worker_metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="`promoflow worker` serves /metrics on this port (unset: no metrics server).",
    )
    worker_metrics_host: str = Field(
        default="127.0.0.1", description="Address of the worker's metrics server."
    )
    rate_limit_shared: bool = Field(
        default=True,
        description="On PostgreSQL, enforce each key's rate limit across all API processes and hosts (token "
        "buckets in the database, leased in small batches); false: each process enforces it alone.",
    )
    ready_max_queue_age_seconds: float = Field(
        default=0.0,
        description="/readyz fails when a job a free worker could take has waited longer than this for one "
        "(promoflow_job_runnable_lag_seconds); 0 reports it only.",
    )
    ready_min_free_disk_mb: int = Field(
        ge=0,
        default=256,
        description="/readyz fails when the data dir's file system has less free space than this.",
    )

    # Admin web UI (/admin).
    admin_session_idle_minutes: int = Field(
        default=480,
        description="An admin session not used for this long ends (it also ends 7 days after sign-in).",
    )
    admin_report_max_age_seconds: int = Field(
        default=300,
        ge=0,
        description="The Reports page shows a promotion's report snapshot; one older than this is refreshed in the "
        "background when the page is opened (the page shows the old one meanwhile, with its as-of time).",
    )
    admin_report_inline_below: int = Field(
        default=50_000,
        ge=0,
        description="A promotion with fewer assignments than this is reported live on the Reports page (counted "
        "at each view); a larger one from a snapshot computed by the worker.",
    )
    forwarded_allow_ips: str | None = Field(
        default=None,
        description="The reverse proxies (comma-separated addresses or networks, e.g. '10.0.0.5' or "
        "'10.0.0.0/8'; '*' for any) trusted to name the client in X-Forwarded-For and the scheme in "
        "X-Forwarded-Proto. Unset (the default): those headers are ignored, and a request's address is its "
        "connection's, which API keys' and tenants' IP allow-lists and the admin sign-in limit see.",
    )
    admin_trust_forwarded_proto: bool = Field(
        default=False,
        description="Opt-in: behind a TLS-terminating proxy that sets X-Forwarded-Proto, treat 'https' there as "
        "HTTPS (Secure session cookie). Leave off unless every request comes through such a proxy.",
    )

    # File transfer (A13/A14): the FTP(S) server, imports and the promotion export.
    ftp_host: str = "127.0.0.1"
    ftp_port: int = Field(default=2121, ge=0, le=65535, description="FTP control port; 0 picks a free one.")
    ftp_passive_ports: str | None = Field(
        default=None,
        description="Passive data ports, e.g. '60000-60099' (open them in the firewall); default any.",
    )
    ftp_masquerade_address: str | None = Field(
        default=None, description="Address sent in PASV replies behind NAT."
    )
    ftp_tls_cert: Path | None = Field(
        default=None, description="PEM certificate: enables explicit TLS (AUTH TLS)."
    )
    ftp_tls_key: Path | None = Field(default=None, description="PEM private key of ftp_tls_cert.")
    ftp_tls_required: bool = Field(
        default=True, description="With TLS configured, refuse logins and transfers that are not encrypted."
    )
    ftp_max_upload_bytes: int = Field(
        default=1024**3, description="Uploads larger than this are aborted, deleted."
    )
    ftp_max_connections: int = Field(default=256, ge=1)
    ftp_max_connections_per_ip: int = Field(default=32, ge=1)
    ftp_auth_cache_seconds: float = Field(
        ge=0, default=30.0, description="How long a verified FTP login is trusted."
    )
    ftp_auth_failed_delay_seconds: float = Field(
        default=3.0, description="Pause before answering a failed login."
    )
    import_batch_size: int = Field(
        ge=1, default=1000, description="Records applied per transaction by the importers."
    )
    import_batch_size_sqlite: int = Field(
        ge=1,
        default=100,
        description="On SQLite, records applied per transaction at most: each batch holds the database's one "
        "write lock, so a redeem waits for at most one short batch of an import.",
    )
    import_batch_seconds: float = Field(
        ge=0,
        default=1.0,
        description="An import batch takes about this long at most: when records are slow (one savepoint each, "
        "refused redemptions, a distant database) a batch takes fewer of them, down to one. A shutdown waits "
        "for the batch in flight, so this is about how long it waits; 0: every batch takes import_batch_size.",
    )
    worker_stall_seconds: float = Field(
        gt=0,
        default=120.0,
        description="`promoflow worker`: a job without a heartbeat this long is taken over.",
    )
    export_interval_seconds: int = Field(
        ge=0,
        default=3600,
        description="How often the promotion export runs for every tenant; 0 turns the schedule off.",
    )
    export_overlap_seconds: int = Field(
        ge=0, default=3600, description="Look-back window of the export for transactions that committed late."
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        # FTPS is on only with a certificate: a key or "required" without one would quietly serve plain FTP.
        # "Required" only as given, not as defaulted (its default is for when a certificate is set).
        required = self.ftp_tls_required and "ftp_tls_required" in self.model_fields_set
        if self.ftp_tls_cert is None and (self.ftp_tls_key is not None or required):
            given = "PROMOFLOW_FTP_TLS_KEY" if self.ftp_tls_key is not None else "PROMOFLOW_FTP_TLS_REQUIRED"
            raise ValueError(
                f"{given} is set but PROMOFLOW_FTP_TLS_CERT is not: FTPS needs the certificate (PEM) too"
            )
        return self

    @property
    def effective_log_format(self) -> Literal["text", "json"]:
        """The application logs' format: PROMOFLOW_LOG_FORMAT, or, unset, the access log's (an operator who asked
        for JSON access lines wants JSON from the whole process), else text."""
        return self.log_format or self.access_log_format or "text"

    @property
    def effective_access_log_format(self) -> Literal["text", "json"]:
        """The access log's format: PROMOFLOW_ACCESS_LOG_FORMAT, or, unset, the application logs'."""
        return self.access_log_format or self.log_format or "text"

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'promoflow.sqlite3').resolve()}"
