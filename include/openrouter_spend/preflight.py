"""Checks that run before the first API call: the requested days and the configuration.

A run that cannot succeed should say so in one line before it starts, not after its retries: the CLI checks
every requested day and every configuration file first, and the DAG's first tasks check the day again (a run
triggered in the Airflow UI never passes through the CLI). The errors raised here are permanent: the DAG's
retry policy fails the task at once on them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path


class InvalidDayError(ValueError):
    """The day cannot be run: it has not ended in UTC yet, so its data is incomplete."""


def utc_today() -> date:
    """The current UTC date (what "completed day" is measured against)."""
    return datetime.now(UTC).date()


def check_day(day: date, today: date | None = None) -> None:
    """Raise InvalidDayError unless `day` is a completed UTC day."""
    today = today or utc_today()
    if day >= today:
        raise InvalidDayError(f"{day} is not a completed UTC day yet (today is {today} UTC): its usage is still "
                              f"coming in; the last completed day is {date.fromordinal(today.toordinal() - 1)}")


def check_days(days: list[date], today: date | None = None) -> None:
    """Raise InvalidDayError naming every requested day that has not ended yet."""
    today = today or utc_today()
    pending = [day for day in days if day >= today]
    if len(pending) == 1:
        check_day(pending[0], today)
    elif pending:
        raise InvalidDayError(f"{len(pending)} requested days are not completed UTC days yet ({pending[0]} to "
                              f"{pending[-1]}; today is {today} UTC); the last completed day is "
                              f"{date.fromordinal(today.toordinal() - 1)}")


def check_configuration(config_dir: Path | None = None) -> None:
    """Load and validate every configuration file and setting the run reads; raises their own clear errors.

    ConfigError (owners, premium, annotations, rules, quality files) names the file, the path and the field;
    a malformed OPENROUTER_SPEND_* number raises ValueError naming the variable.
    """
    from openrouter_spend.config.settings import ExtractionSettings
    from openrouter_spend.context import quality_config, rules_config
    from openrouter_spend.ingest.enrich import EnrichmentSettings

    # Parsed through the run's cache: the tasks of a CLI run reuse these parses instead of reading again.
    rules_config(config_dir)  # owners.yaml, premium.yaml and annotations.yaml first, for its cross-check
    quality_config(config_dir)
    ExtractionSettings.from_env()
    EnrichmentSettings.from_env()
