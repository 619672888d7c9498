"""Runtime settings read from the environment (product.md §5.2), resolved late so tests can override them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"
CONNECTION_ID = "openrouter_default"
PROJECT_ROOT = Path(__file__).resolve().parents[3]
# The shipped example configuration a company edits (or replaces through OPENROUTER_SPEND_CONFIG_DIR).
DEFAULT_CONFIG_DIR = PROJECT_ROOT / "include" / "config"


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be a number, got {raw!r}") from exc


def _env_int(name: str, default: int) -> int:
    value = _env_float(name, default)
    if value != int(value):
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Paths:
    """Every place the pipeline writes to, all under OPENROUTER_SPEND_HOME."""

    home: Path

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def landing(self) -> Path:
        return self.home / "landing"

    @property
    def api_landing(self) -> Path:
        return self.landing / "openrouter"

    @property
    def request_logs(self) -> Path:
        return self.landing / "requests"

    @property
    def published(self) -> Path:
        return self.home / "published"

    @property
    def digests(self) -> Path:
        return self.home / "digests"

    @property
    def alerts(self) -> Path:
        return self.home / "alerts"

    @property
    def quality(self) -> Path:
        return self.home / "quality"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"


def spend_home() -> Path:
    """OPENROUTER_SPEND_HOME, default ./data, as an absolute path."""
    return Path(os.environ.get("OPENROUTER_SPEND_HOME") or "data").resolve()


def paths() -> Paths:
    """The output layout for the current OPENROUTER_SPEND_HOME."""
    return Paths(spend_home())


def landing_root():
    """Root of the landing area: OPENROUTER_SPEND_LANDING_URL (an Airflow ObjectStoragePath URL such as
    `s3://aws_default@bucket/prefix` or `file:///shared/landing`) when set, else $OPENROUTER_SPEND_HOME/landing."""
    url = os.environ.get("OPENROUTER_SPEND_LANDING_URL", "").strip()
    if not url:
        return paths().landing
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(url)


def api_landing_root():
    """Where API responses are landed (`<landing root>/openrouter`)."""
    return landing_root() / "openrouter"


def config_dir() -> Path:
    """OPENROUTER_SPEND_CONFIG_DIR, default include/config of this checkout."""
    raw = os.environ.get("OPENROUTER_SPEND_CONFIG_DIR")
    return Path(raw).resolve() if raw else DEFAULT_CONFIG_DIR


def sql_dir() -> Path:
    """The repository's sql/ folder (migrations, staging views, marts)."""
    return PROJECT_ROOT / "sql"


@dataclass(frozen=True)
class ExtractionSettings:
    """Tuning knobs for one day's extraction; every value has an OPENROUTER_SPEND_* override."""

    http_timeout_seconds: float = 30.0
    connect_timeout_seconds: float = 5.0
    max_retries: int = 5
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    max_retry_after_seconds: float = 120.0
    key_activity_concurrency: int = 4
    requests_per_second: float = 20.0
    key_chunk_size: int = 50

    @classmethod
    def from_env(cls) -> ExtractionSettings:
        """Read the OPENROUTER_SPEND_HTTP_* / _KEY_* overrides."""
        base = cls()
        return cls(
            http_timeout_seconds=_env_float("OPENROUTER_SPEND_HTTP_TIMEOUT", base.http_timeout_seconds),
            connect_timeout_seconds=_env_float(
                "OPENROUTER_SPEND_CONNECT_TIMEOUT", base.connect_timeout_seconds
            ),
            max_retries=_env_int("OPENROUTER_SPEND_HTTP_MAX_RETRIES", base.max_retries),
            backoff_base_seconds=_env_float("OPENROUTER_SPEND_BACKOFF_BASE", base.backoff_base_seconds),
            backoff_max_seconds=_env_float("OPENROUTER_SPEND_BACKOFF_MAX", base.backoff_max_seconds),
            max_retry_after_seconds=_env_float(
                "OPENROUTER_SPEND_MAX_RETRY_AFTER", base.max_retry_after_seconds
            ),
            key_activity_concurrency=_env_int(
                "OPENROUTER_SPEND_KEY_CONCURRENCY", base.key_activity_concurrency
            ),
            requests_per_second=_env_float("OPENROUTER_SPEND_REQUESTS_PER_SECOND", base.requests_per_second),
            key_chunk_size=_env_int("OPENROUTER_SPEND_KEY_CHUNK_SIZE", base.key_chunk_size),
        )
