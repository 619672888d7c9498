"""One run of the daily DAG as a task sees it: the usage day, the run, where it writes and what it reads.

A task builds its RunContext once (`RunContext.current()` from Airflow's context, or `RunContext.for_day` in
tests and tools) and hands it to the pipeline step; it is frozen, so no step changes what another sees.
Configuration files are parsed on first use and the parse is shared by every later use in the process while
the files are unchanged: a CLI run executes every task of every day in one process, so it reads each file
once; a worker process reads only the files its task needs, once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from openrouter_spend.config import settings

if TYPE_CHECKING:
    from openrouter_spend.alerts.rules import RulesConfig
    from openrouter_spend.config.owners import Config
    from openrouter_spend.quality.config import QualityConfig


def day_start(day: date) -> datetime:
    """00:00 UTC of `day`: the logical date and data interval start of the run for usage day `day`."""
    return datetime.combine(day, time(0), tzinfo=UTC)


def day_end(day: date) -> datetime:
    """00:00 UTC of the next day ("D+1 00:00"): when usage day `day` has ended and can be fetched whole."""
    return day_start(day + timedelta(days=1))


def usage_day(data_interval_start: datetime) -> date:
    """The UTC usage day a run processes: the date its data interval starts on."""
    return data_interval_start.astimezone(UTC).date()


def _fingerprint(folder: Path) -> tuple:
    """What changes when a file of the configuration folder is edited, replaced or removed."""
    entries = []
    for path in sorted(folder.glob("*.yaml")):
        stat = path.stat()
        entries.append((path.name, stat.st_mtime_ns, stat.st_size, stat.st_ino))
    return tuple(entries)


@lru_cache(maxsize=8)
def _owners(folder: Path, _fingerprint: tuple) -> Config:
    from openrouter_spend.config.owners import load_config

    return load_config(folder)


@lru_cache(maxsize=8)
def _rules(folder: Path, _fingerprint: tuple, cross_check: bool) -> RulesConfig:
    from openrouter_spend.alerts.rules import load_rules

    owners = {project.budget_owner for project in owners_config(folder).projects} if cross_check else None
    return load_rules(folder, budget_owners=owners)


@lru_cache(maxsize=8)
def _quality(folder: Path, _fingerprint: tuple) -> QualityConfig:
    from openrouter_spend.quality.config import load_quality_config

    return load_quality_config(folder)


def _folder(config_dir: Path | None) -> Path:
    return Path(config_dir).resolve() if config_dir else settings.config_dir()


def owners_config(config_dir: Path | None = None) -> Config:
    """owners.yaml, premium.yaml and annotations.yaml, validated; parsed once while the files are unchanged."""
    folder = _folder(config_dir)
    return _owners(folder, _fingerprint(folder))


def rules_config(config_dir: Path | None = None, *, cross_check: bool = True) -> RulesConfig:
    """rules.yaml, validated (route owners checked against owners.yaml unless `cross_check` is False)."""
    folder = _folder(config_dir)
    return _rules(folder, _fingerprint(folder), cross_check)


def quality_config(config_dir: Path | None = None) -> QualityConfig:
    """quality.yaml, validated (a missing file means the defaults)."""
    folder = _folder(config_dir)
    return _quality(folder, _fingerprint(folder))


@dataclass(frozen=True)
class RunContext:
    """The usage day and run a task works on, the output layout and the configuration it reads."""

    day: date
    run_id: str
    paths: settings.Paths = field(default_factory=settings.paths)
    config_dir: Path = field(default_factory=settings.config_dir)

    @classmethod
    def for_day(cls, day: date, run_id: str = "manual") -> RunContext:
        """The context of a run for `day` under the current environment."""
        return cls(day, run_id)

    @classmethod
    def from_interval(cls, data_interval_start: datetime, run_id: str) -> RunContext:
        """The context of the run whose data interval starts at `data_interval_start`."""
        return cls(usage_day(data_interval_start), run_id)

    @classmethod
    def current(cls) -> RunContext:
        """The context of the Airflow task being executed."""
        from airflow.sdk import get_current_context

        airflow = get_current_context()
        return cls.from_interval(airflow["data_interval_start"], airflow["run_id"])

    @property
    def extraction(self) -> settings.ExtractionSettings:
        """The extraction tuning knobs (OPENROUTER_SPEND_HTTP_* / _KEY_*)."""
        return settings.ExtractionSettings.from_env()

    @property
    def owners(self) -> Config:
        """Projects, key matchers, premium models and annotations."""
        return owners_config(self.config_dir)

    @property
    def rules(self) -> RulesConfig:
        """The alert rules and routes, cross-checked against the budget owners."""
        return rules_config(self.config_dir)

    @property
    def quality(self) -> QualityConfig:
        """The quality gate's thresholds and tolerances."""
        return quality_config(self.config_dir)
