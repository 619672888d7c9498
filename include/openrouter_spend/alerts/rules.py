"""Decision rules: load and validate rules.yaml, and evaluate each rule's SQL (sql/rules/<rule id>.sql) for a day.

RulesFile is the file's pydantic model (schemas/rules.schema.json is its schema); every problem in rules.yaml
raises config.ConfigError naming the file, the line and the field.
A rule's SQL reads its parameters with getvariable(); each variable it reads must be configured, so a
typo can never silently turn a threshold into NULL. docs/alerts.md describes every rule.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, create_model, model_validator

from openrouter_spend.config import settings
from openrouter_spend.config.crossfile import check_budget_owner, known_names
from openrouter_spend.config.yamlnode import ConfigError, ConfigModel, FieldError, Text, load_file

RULES_FILE = "rules.yaml"
RULE_IDS = (
    "credit_runway_low", "credit_burn_spike", "fallback_rate_rise", "premium_share_rise", "budget_threshold",
    "unowned_spend", "runaway_usage", "unused_key", "provider_concentration", "data_quality",
)
SEVERITIES = ("info", "warning", "critical")
BUDGET_PERIODS = ("daily", "weekly", "monthly")
DATA_ENGINEERING_ROUTE = "data-engineering"
DEFAULT_ROUTE = "default"
BUDGET_OWNER_TOKEN = "budget_owner"

# Columns every rule's SQL returns, in this order in the ledger's candidate rows.
CANDIDATE_COLUMNS = (
    "rule_id", "usage_date", "segment_key", "project", "api_key_hash", "api_key_name", "model", "provider_name",
    "workflow", "signal", "metric", "observed_value", "expected_value", "threshold_value", "impact_usd",
    "window_start", "window_end", "baseline_start", "baseline_end", "history_days", "severity", "contributors",
    "facts",
)

_GETVARIABLE = re.compile(r"getvariable\('([a-z_]+)'\)")

# Per rule: parameter name → kind. Kinds: days (whole number >= 1), count (whole number >= 0), usd (>= 0),
# share (0..1), ratio (> 0), levels (non-empty list of shares), periods (list of budget periods).
_PARAMETERS: dict[str, dict[str, str]] = {
    "credit_runway_low": {"min_runway_days": "ratio", "critical_runway_days": "usd", "min_history_days": "days",
                          "min_volume_usd": "usd"},
    "credit_burn_spike": {"min_history_days": "days", "min_ratio": "ratio", "min_impact_usd": "usd",
                          "min_volume_usd": "usd"},
    "fallback_rate_rise": {"min_history_days": "days", "min_share_change": "share", "min_requests": "count",
                           "min_impact_usd": "usd"},
    "premium_share_rise": {"min_history_days": "days", "min_share_change": "share", "min_impact_usd": "usd",
                           "min_volume_usd": "usd"},
    "budget_threshold": {"daily_levels": "levels", "weekly_levels": "levels", "monthly_levels": "levels",
                         "critical_level": "ratio", "critical_periods": "periods", "min_volume_usd": "usd"},
    "unowned_spend": {"window_days": "days", "min_history_days": "days", "max_share": "share",
                      "min_volume_usd": "usd", "new_key_lookback_days": "days"},
    "runaway_usage": {"min_history_days": "days", "min_ratio": "ratio", "max_output_ratio": "ratio",
                      "min_verdicts": "count", "min_usual_model_share": "share", "min_requests": "count",
                      "min_impact_usd": "usd"},
    "unused_key": {},
    "provider_concentration": {"min_history_days": "days", "min_shift_share": "share", "min_impact_usd": "usd",
                               "min_volume_usd": "usd"},
    "data_quality": {},
}
# Rules comparing with a baseline, and the methods each supports ("pooled" = sums over the window).
_BASELINES: dict[str, tuple[str, ...]] = {
    "credit_burn_spike": ("median", "mean"),
    "runaway_usage": ("median", "mean"),
    "fallback_rate_rise": ("pooled",),
    "premium_share_rise": ("pooled",),
    "provider_concentration": ("pooled",),
}


@dataclass(frozen=True)
class Rule:
    """One decision rule as configured in rules.yaml."""

    rule_id: str
    description: str
    enabled: bool
    severity: str
    escalate_after_days: int | None
    resolve_after_days: int
    baseline_method: str | None
    baseline_days: int | None
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def sql_path(self) -> Path:
        return settings.sql_dir() / "rules" / f"{self.rule_id}.sql"

    def variables(self, day: date) -> dict[str, Any]:
        """The getvariable() values the rule's SQL reads for `day`."""
        values: dict[str, Any] = {"alert_day": day, **self.parameters}
        if self.baseline_days is not None:
            values["baseline_days"] = self.baseline_days
            values["baseline_method"] = self.baseline_method
        return values


@dataclass(frozen=True)
class Route:
    """Who hears about an alert: the budget owners it serves and its email and Slack targets."""

    name: str
    budget_owners: tuple[str, ...]
    min_severity: str
    email_to: tuple[str, ...]
    slack_connection_id: str | None
    slack_env_var: str | None

    @property
    def has_slack(self) -> bool:
        return bool(self.slack_connection_id or self.slack_env_var)

    def email_recipients(self, contact: str | None) -> list[str]:
        """The route's e-mail addresses, sorted, with the budget owner's `contact` for the budget_owner entry."""
        recipients = []
        for entry in self.email_to:
            address = contact if entry == BUDGET_OWNER_TOKEN else entry
            if address and address not in recipients:
                recipients.append(address)
        return sorted(recipients)


@dataclass(frozen=True)
class EmailSettings:
    """How to reach the SMTP server (the secrets themselves live in the connection or the environment)."""

    connection_id: str | None
    env_prefix: str
    from_address: str | None
    timeout_seconds: float


@dataclass(frozen=True)
class SlackSettings:
    """Incoming-webhook delivery settings shared by every route."""

    timeout_seconds: float
    alerts_per_message: int


@dataclass(frozen=True)
class RulesConfig:
    """The validated rules.yaml."""

    path: Path
    rules: dict[str, Rule]
    routes: dict[str, Route]
    email: EmailSettings
    slack: SlackSettings

    def route_for(self, rule_id: str, budget_owner: str | None) -> Route:
        """The route an alert goes to: data-engineering for data quality, the owner's route, else default."""
        if rule_id == "data_quality":
            return self.routes[DATA_ENGINEERING_ROUTE]
        for route in self.routes.values():
            if budget_owner and budget_owner in route.budget_owners:
                return route
        return self.routes[DEFAULT_ROUTE]

    @property
    def enabled_rules(self) -> list[Rule]:
        return [self.rules[rule_id] for rule_id in RULE_IDS if self.rules[rule_id].enabled]


# ----- rules.yaml, as its model ------------------------------------------------------------------------------

Days = Annotated[int, Field(ge=1)]


def _share(value: float) -> float:
    if value > 1:
        raise ValueError(f"is a share of 1 (0.1 = 10%), got {value!r}")
    return value


# The type of each parameter kind (see _PARAMETERS).
_KINDS: dict[str, Any] = {
    "days": Days,
    "count": Annotated[int, Field(ge=0)],
    "usd": Annotated[float, Field(ge=0)],
    "share": Annotated[float, Field(ge=0, json_schema_extra={"maximum": 1}), AfterValidator(_share)],
    "ratio": Annotated[float, Field(gt=0)],
    "levels": Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1, description="budget shares (0.8 = 80%)"),
                        AfterValidator(sorted)],
    "periods": list[Literal[BUDGET_PERIODS]],
}


class RuleFile(ConfigModel):
    """Fields every rule has; escalate_after_days and resolve_after_days default to `defaults`."""

    description: str | None = None
    enabled: bool = True
    severity: Literal[SEVERITIES]
    escalate_after_days: Days | None = Field(None, description="null: never escalate; absent: defaults")
    resolve_after_days: Days | None = Field(None, description="absent or null: defaults")


def _rule_model(rule_id: str) -> type[RuleFile]:
    fields: dict[str, Any] = {name: (_KINDS[kind], ...) for name, kind in _PARAMETERS[rule_id].items()}
    if rule_id in _BASELINES:
        baseline = create_model(f"{_camel(rule_id)}Baseline", __base__=ConfigModel,
                                __doc__=f"How {rule_id} computes its baseline.",
                                method=(Literal[_BASELINES[rule_id]], ...), days=(Days, ...))
        fields["baseline"] = (baseline, ...)
    return create_model(f"{_camel(rule_id)}Rule", __base__=RuleFile, __doc__=f"The {rule_id} rule (docs/alerts.md).",
                        **fields)


def _camel(rule_id: str) -> str:
    return "".join(part.title() for part in rule_id.split("_"))


def _rules_present(data: Any) -> Any:
    if isinstance(data, dict):
        missing = [rule_id for rule_id in RULE_IDS if data.get(rule_id) is None]
        if missing:
            raise FieldError((missing[0],), "every rule id needs an entry (set enabled: false to turn one off); "
                                            f"missing: {', '.join(missing)}")
    return data


RulesSection = create_model("RulesSection", __base__=ConfigModel, __doc__="One entry per rule id.",
                            __validators__={"_rules_present": model_validator(mode="before")(_rules_present)},
                            **{rule_id: (_rule_model(rule_id), ...) for rule_id in RULE_IDS})


class DefaultsFile(ConfigModel):
    """What a rule without its own escalate_after_days / resolve_after_days uses."""

    escalate_after_days: Days | None = 3
    resolve_after_days: Days = 3


def _recipient(address: str) -> str:
    if address != BUDGET_OWNER_TOKEN and "@" not in address:
        raise ValueError(f"expected an email address or '{BUDGET_OWNER_TOKEN}', got {address!r}")
    return address


def _env_var_name(name: str | None) -> str | None:
    if name and name.lower().startswith("http"):
        raise ValueError("is the NAME of an environment variable; never put the webhook URL here")
    return name


class RouteEmailFile(ConfigModel):
    """Who a route emails; 'budget_owner' stands for the owner's contact in owners.yaml."""

    to: list[Annotated[str, AfterValidator(_recipient)]]


class RouteSlackFile(ConfigModel):
    """Where a route posts: an Airflow connection and/or an environment variable holding the webhook URL."""

    connection_id: Text | None = None
    env_var: Annotated[Text | None, AfterValidator(_env_var_name)] = None

    @model_validator(mode="after")
    def _some_target(self) -> RouteSlackFile:
        if not self.connection_id and not self.env_var:
            raise FieldError(("connection_id",), "name an Airflow connection or an env_var holding the webhook URL")
        return self


class RouteFile(ConfigModel):
    """Who hears about an alert: the budget owners the route serves and its email and Slack targets."""

    description: str | None = None
    budget_owners: list[Annotated[Text, AfterValidator(check_budget_owner)]] = []
    min_severity: Literal[SEVERITIES] = "warning"
    email: RouteEmailFile | None = None
    slack: RouteSlackFile | None = None

    def route(self, name: str) -> Route:
        """The route named `name`."""
        return Route(name, tuple(self.budget_owners), self.min_severity, tuple(self.email.to) if self.email else (),
                     self.slack.connection_id if self.slack else None, self.slack.env_var if self.slack else None)


class EmailChannelFile(ConfigModel):
    """How to reach the SMTP server (the secrets themselves live in the connection or the environment)."""

    connection_id: Text | None = None
    env_prefix: Text = "OPENROUTER_SPEND_SMTP"
    from_address: Text | None = Field(None, alias="from")
    timeout_seconds: Annotated[float, Field(gt=0)] = 10.0


class SlackChannelFile(ConfigModel):
    """Incoming-webhook delivery settings shared by every route."""

    timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    alerts_per_message: Days = 10


class ChannelsFile(ConfigModel):
    """Channel settings shared by every route."""

    email: EmailChannelFile = EmailChannelFile()
    slack: SlackChannelFile = SlackChannelFile()


class RulesFile(ConfigModel):
    """rules.yaml: the decision rules and where their alerts go."""

    defaults: DefaultsFile = DefaultsFile()
    rules: RulesSection
    routes: dict[str, RouteFile]
    channels: ChannelsFile = ChannelsFile()

    @model_validator(mode="after")
    def _routes_complete_and_unambiguous(self) -> RulesFile:
        for required in (DEFAULT_ROUTE, DATA_ENGINEERING_ROUTE):
            if required not in self.routes:
                raise FieldError(("routes",), f"needs a '{required}' route")
        claimed: dict[str, str] = {}
        for name, route in self.routes.items():
            for owner in route.budget_owners:
                if owner in claimed:
                    raise FieldError(("routes", name), f"budget owner {owner!r} is also routed to {claimed[owner]!r}")
                claimed[owner] = name
        return self

    def rule(self, rule_id: str) -> Rule:
        """One rule as configured, its parameters typed for its SQL."""
        entry = getattr(self.rules, rule_id)
        escalate = entry.escalate_after_days if "escalate_after_days" in entry.model_fields_set \
            else self.defaults.escalate_after_days
        baseline = getattr(entry, "baseline", None)
        return Rule(rule_id, " ".join((entry.description or rule_id).split()), entry.enabled, entry.severity,
                    escalate, entry.resolve_after_days or self.defaults.resolve_after_days,
                    baseline.method if baseline else None, baseline.days if baseline else None,
                    {name: getattr(entry, name) for name in _PARAMETERS[rule_id]})


def load_rules(config_dir: Path | None = None, *, budget_owners: set[str] | None = None) -> RulesConfig:
    """Read and validate rules.yaml of the config directory; `budget_owners` cross-checks route owners."""
    folder = Path(config_dir) if config_dir else settings.config_dir()
    path = folder / RULES_FILE
    document, _ = load_file(RulesFile, path, missing="file not found (the alert rules and routes live here)",
                            context=known_names(budget_owners=budget_owners))
    email, slack = document.channels.email, document.channels.slack
    config = RulesConfig(
        path,
        {rule_id: document.rule(rule_id) for rule_id in RULE_IDS},
        {name: route.route(name) for name, route in document.routes.items()},
        EmailSettings(email.connection_id, email.env_prefix, email.from_address, email.timeout_seconds),
        SlackSettings(slack.timeout_seconds, slack.alerts_per_message),
    )
    for rule in config.rules.values():
        _check_sql_variables(rule)
    return config


def _check_sql_variables(rule: Rule) -> None:
    """Every getvariable() in the rule's SQL must be configured; a missing file is an error too."""
    if not rule.sql_path.is_file():
        raise ConfigError(str(rule.sql_path), "", rule.rule_id, "the rule has no SQL file")
    wanted = set(_GETVARIABLE.findall(rule.sql_path.read_text()))
    provided = set(rule.variables(date(2000, 1, 1)))
    unknown = sorted(wanted - provided)
    if unknown:
        raise ConfigError(str(rule.sql_path), f"rules.{rule.rule_id}", unknown[0],
                          f"the SQL reads getvariable('{unknown[0]}') but rules.yaml does not configure it")


def evaluate_rule(con, rule: Rule, day: date) -> list[dict[str, Any]]:
    """Run one rule's SQL for `day`; returns its candidate rows (the segments crossing its thresholds)."""
    for name, value in rule.variables(day).items():
        con.execute(f"set variable {name} = ?", [value])
    try:
        cursor = con.execute(rule.sql_path.read_text())
    except Exception as exc:
        raise RuntimeError(f"rule {rule.rule_id} ({rule.sql_path.name}) failed for {day}: {exc}") from exc
    columns = [description[0] for description in cursor.description]
    if tuple(columns) != CANDIDATE_COLUMNS:
        raise RuntimeError(f"{rule.sql_path.name} returns columns {columns}; expected {list(CANDIDATE_COLUMNS)}")
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def annotation_explains(expected_change: float | None, move_ratio: float | None) -> bool:
    """Whether an annotation announcing `expected_change` explains a signal that moved by `move_ratio`.

    `move_ratio` is the signal's level ÷ its level before (None for a shift with no direction, such as a
    provider-mix change). An annotation explains a move only in the direction it announces (a rise when it
    announces no size) and, when it announces a multiple, only roughly that size: between half and twice the
    announced change on a log scale (a doubling explains ×1.41 to ×4). A move against it, or far beyond it,
    is news.
    """
    if move_ratio is None:
        return True
    if expected_change is None:
        return move_ratio > 1
    if expected_change == 1 or move_ratio <= 0:
        return False
    announced, moved = math.log(expected_change), math.log(move_ratio)
    return announced * moved > 0 and abs(announced) / 2 <= abs(moved) <= 2 * abs(announced)
