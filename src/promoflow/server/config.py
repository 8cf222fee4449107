"""One settings object. Nothing else in the server reads ``os.environ``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROMOFLOW_", extra="ignore")

    data_dir: Path = Field(default=Path("promoflow-data"), description="Where SQLite, FTP trees and exports live.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite in the data dir. PostgreSQL: postgresql://…"
    )
    host: str = "127.0.0.1"
    port: int = 8080
    db_pool_size: int = 20
    max_body_bytes: int = 1024 * 1024
    api_key_cache_seconds: float = Field(
        default=5.0, description="How long a verified API key is trusted before it is looked up again."
    )
    idempotency_ttl_hours: int = 48
    idempotency_lock_seconds: int = Field(
        default=60, description="A request holding an Idempotency-Key longer than this is taken to have died."
    )
    default_rate_limit_per_second: float = 200.0
    default_rate_limit_burst: int = 400
    worker_poll_seconds: float = 0.5
    worker_concurrency: int = 1
    run_worker: bool = True
    log_level: str = "info"

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'promoflow.sqlite3').resolve()}"
