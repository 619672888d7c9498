"""Decision rules: load and validate rules.yaml, and evaluate each rule's SQL (sql/rules/<rule id>.sql) for a day.

Every problem in rules.yaml raises config.ConfigError naming the file, the path inside it and the field.
A rule's SQL reads its parameters with getvariable(); each variable it reads must be configured, so a
typo can never silently turn a threshold into NULL. docs/alerts.md describes every rule.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from openrouter_spend.config import settings
from openrouter_spend.config.yamlnode import ConfigError, Node, read_yaml

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
_COMMON_FIELDS = ("description", "enabled", "severity", "escalate_after_days", "resolve_after_days", "baseline")


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


def _whole(node: Node, key: str, minimum: int, *, allow_null: bool = False, default: Any = None) -> int | None:
    if key not in node.value:
        return default
    value = node.value[key]
    if value is None and allow_null:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise node.error(key, f"expected a whole number >= {minimum}" + (" or null" if allow_null else "")
                         + f", got {value!r}")
    return value


def _severity(node: Node, key: str, default: str | None = None) -> str:
    value = node.value.get(key, default)
    if value not in SEVERITIES:
        raise node.error(key, f"expected one of {', '.join(SEVERITIES)}, got {value!r}")
    return value


def _parameter(node: Node, name: str, kind: str) -> Any:
    value = node.value.get(name)
    if value is None:
        raise node.error(name, "is required")
    if kind in ("days", "count"):
        return _whole(node, name, 1 if kind == "days" else 0)
    if kind in ("usd", "share", "ratio"):
        number = node.number(name, exclusive=kind == "ratio")
        if kind == "share" and number > 1:
            raise node.error(name, f"is a share of 1 (0.1 = 10%), got {value!r}")
        return number
    if kind == "levels":
        if not isinstance(value, list) or not value or any(
                isinstance(v, bool) or not isinstance(v, int | float) or v <= 0 for v in value):
            raise node.error(name, f"expected a non-empty list of budget shares > 0 (0.8 = 80%), got {value!r}")
        return sorted(float(v) for v in value)
    if kind == "periods":
        if not isinstance(value, list) or any(v not in BUDGET_PERIODS for v in value):
            raise node.error(name, f"expected a list of {', '.join(BUDGET_PERIODS)}, got {value!r}")
        return list(value)
    raise AssertionError(kind)


def _rule(node: Node, rule_id: str, defaults: dict[str, Any]) -> Rule:
    node.mapping(rule_id, (), _COMMON_FIELDS + tuple(_PARAMETERS[rule_id]))
    enabled = node.value.get("enabled", True)
    if not isinstance(enabled, bool):
        raise node.error("enabled", f"expected true or false, got {enabled!r}")
    method = days = None
    if rule_id in _BASELINES:
        baseline = node.child("baseline")
        baseline.mapping("baseline", ("method", "days"))
        method = baseline.value["method"]
        if method not in _BASELINES[rule_id]:
            raise baseline.error("method", f"{rule_id} supports {', '.join(_BASELINES[rule_id])}, got {method!r}")
        days = _whole(baseline, "days", 1)
    elif "baseline" in node.value:
        raise node.error("baseline", f"{rule_id} compares with no baseline")
    escalate = _whole(node, "escalate_after_days", 1, allow_null=True, default=defaults["escalate_after_days"])
    resolve = _whole(node, "resolve_after_days", 1, default=defaults["resolve_after_days"])
    parameters = {name: _parameter(node, name, kind) for name, kind in _PARAMETERS[rule_id].items()}
    description = node.value.get("description") or rule_id
    return Rule(rule_id, " ".join(str(description).split()), enabled, _severity(node, "severity"), escalate,
                resolve, method, days, parameters)


def _route(node: Node, name: str, owners: set[str] | None) -> Route:
    node.mapping(name, (), ("description", "budget_owners", "min_severity", "email", "slack"))
    budget_owners = node.value.get("budget_owners") or []
    if not isinstance(budget_owners, list) or any(not isinstance(o, str) or not o.strip() for o in budget_owners):
        raise node.error("budget_owners", f"expected a list of budget owner names, got {budget_owners!r}")
    if owners is not None:
        for owner in budget_owners:
            if owner not in owners:
                raise node.error("budget_owners", f"{owner!r} is no budget owner in owners.yaml "
                                                  f"(known: {', '.join(sorted(owners))})")
    email_to: tuple[str, ...] = ()
    if node.value.get("email") is not None:
        email = node.child("email")
        email.mapping("email", ("to",))
        recipients = email.value["to"]
        if not isinstance(recipients, list) or any(
                not isinstance(r, str) or (r != BUDGET_OWNER_TOKEN and "@" not in r) for r in recipients):
            raise email.error("to", f"expected a list of email addresses or '{BUDGET_OWNER_TOKEN}', got {recipients!r}")
        email_to = tuple(recipients)
    connection_id = env_var = None
    if node.value.get("slack") is not None:
        slack = node.child("slack")
        slack.mapping("slack", (), ("connection_id", "env_var"))
        connection_id = slack.text("connection_id", required=False)
        env_var = slack.text("env_var", required=False)
        if not connection_id and not env_var:
            raise slack.error("connection_id", "name an Airflow connection or an env_var holding the webhook URL")
        if env_var and env_var.lower().startswith("http"):
            raise slack.error("env_var", "is the NAME of an environment variable; never put the webhook URL here")
    return Route(name, tuple(budget_owners), _severity(node, "min_severity", "warning"), email_to, connection_id,
                 env_var)


def load_rules(config_dir: Path | None = None, *, budget_owners: set[str] | None = None) -> RulesConfig:
    """Read and validate rules.yaml of the config directory; `budget_owners` cross-checks route owners."""
    folder = Path(config_dir) if config_dir else settings.config_dir()
    path = folder / RULES_FILE
    root = Node(str(path), "", read_yaml(path, "file not found (the alert rules and routes live here)"))
    if not isinstance(root.value, dict):
        raise ConfigError(str(path), "", "(document)", f"expected a mapping at the top, got {root.value!r}")
    root.mapping("(document)", ("rules", "routes"), ("defaults", "channels"))

    defaults_node = root.child("defaults")
    defaults_node.mapping("defaults", (), ("escalate_after_days", "resolve_after_days"))
    defaults = {
        "escalate_after_days": _whole(defaults_node, "escalate_after_days", 1, allow_null=True, default=3),
        "resolve_after_days": _whole(defaults_node, "resolve_after_days", 1, default=3),
    }

    rules_node = root.child("rules")
    rules_node.mapping("rules", (), RULE_IDS)
    missing = [rule_id for rule_id in RULE_IDS if rule_id not in rules_node.value]
    if missing:
        raise root.error("rules", f"every rule id needs an entry (set enabled: false to turn one off); "
                                  f"missing: {', '.join(missing)}")
    rules = {rule_id: _rule(rules_node.child(rule_id), rule_id, defaults) for rule_id in RULE_IDS}

    routes_node = root.child("routes")
    routes_node.mapping("routes", any_keys=True)
    routes = {str(name): _route(routes_node.child(name), str(name), budget_owners) for name in routes_node.value}
    for required in (DEFAULT_ROUTE, DATA_ENGINEERING_ROUTE):
        if required not in routes:
            raise root.error("routes", f"needs a '{required}' route")
    claimed: dict[str, str] = {}
    for route in routes.values():
        for owner in route.budget_owners:
            if owner in claimed:
                raise routes_node.error(route.name, f"budget owner {owner!r} is also routed to {claimed[owner]!r}")
            claimed[owner] = route.name

    channels = root.child("channels")
    channels.mapping("channels", (), ("email", "slack"))
    email = channels.child("email")
    email.mapping("email", (), ("connection_id", "env_prefix", "from", "timeout_seconds"))
    slack = channels.child("slack")
    slack.mapping("slack", (), ("timeout_seconds", "alerts_per_message"))
    email_settings = EmailSettings(
        email.text("connection_id", required=False),
        email.text("env_prefix", required=False) or "OPENROUTER_SPEND_SMTP",
        email.text("from", required=False),
        email.number("timeout_seconds", exclusive=True) or 10.0,
    )
    slack_settings = SlackSettings(slack.number("timeout_seconds", exclusive=True) or 10.0,
                                   _whole(slack, "alerts_per_message", 1, default=10))
    config = RulesConfig(path, rules, routes, email_settings, slack_settings)
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
