"""Runtime settings read from the environment (product.md §5.2), resolved late so tests can override them.

The tuning knobs (ExtractionSettings, ingest.enrich.EnrichmentSettings) are dataclasses whose fields name their
variable; `from_environment` validates them with pydantic, so every bad value gets the same error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import Field, TypeAdapter, ValidationError

DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"
CONNECTION_ID = "openrouter_default"
PROJECT_ROOT = Path(__file__).resolve().parents[3]
# The shipped example configuration a company edits (or replaces through OPENROUTER_SPEND_CONFIG_DIR).
DEFAULT_CONFIG_DIR = PROJECT_ROOT / "include" / "config"


T = TypeVar("T")
ENV_PREFIX = "OPENROUTER_SPEND_"


def env(name: str, **constraints: Any) -> Any:
    """A settings field read from the environment variable OPENROUTER_SPEND_<name>, with pydantic constraints."""
    return Field(validation_alias=ENV_PREFIX + name, **constraints)


@cache
def _adapter(settings_class: type[T]) -> TypeAdapter[T]:
    return TypeAdapter(settings_class)


def from_environment(settings_class: type[T]) -> T:
    """The settings dataclass with every field whose variable is set (and not blank) read from os.environ.

    Fields name their variable with `env()`; a bad value raises ValueError naming the variable.
    """
    values = {name: raw.strip() for name, raw in os.environ.items() if name.startswith(ENV_PREFIX) and raw.strip()}
    try:
        return _adapter(settings_class).validate_python(values)
    except ValidationError as exc:
        from openrouter_spend.config.yamlnode import problem_text

        error = exc.errors(include_url=False)[0]
        raise ValueError(f"environment variable {error['loc'][0]}: {problem_text(error)}") from None


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

    http_timeout_seconds: Annotated[float, env("HTTP_TIMEOUT")] = 30.0
    connect_timeout_seconds: Annotated[float, env("CONNECT_TIMEOUT")] = 5.0
    max_retries: Annotated[int, env("HTTP_MAX_RETRIES")] = 5
    backoff_base_seconds: Annotated[float, env("BACKOFF_BASE")] = 0.5
    backoff_max_seconds: Annotated[float, env("BACKOFF_MAX")] = 30.0
    max_retry_after_seconds: Annotated[float, env("MAX_RETRY_AFTER")] = 120.0
    key_activity_concurrency: Annotated[int, env("KEY_CONCURRENCY")] = 4
    requests_per_second: Annotated[float, env("REQUESTS_PER_SECOND")] = 20.0
    key_chunk_size: Annotated[int, env("KEY_CHUNK_SIZE")] = 50

    @classmethod
    def from_env(cls) -> ExtractionSettings:
        """Read the OPENROUTER_SPEND_HTTP_* / _KEY_* overrides."""
        return from_environment(cls)
