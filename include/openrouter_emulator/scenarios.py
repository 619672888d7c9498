"""Emulated worlds: which organisation the emulator serves, what happens to it, and how its apps log requests.

A scenario is data, not code paths: the organisation (members, workspaces, key profiles), the planted events
(`plan_events(anchor_date)` returns the plan `SyntheticOrg.effects` reads; `None` plants nothing) and the
request logging of its applications (workspace → "metadata" or "plain"; workspaces not listed log nothing).
Add a world by adding a `Scenario` to `SCENARIOS`; everything else (server, CLI, tests) looks it up by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType

from openrouter_emulator.catalog import (
    KEY_SPECS,
    MEMBERS,
    WORKSPACES,
    KeySpec,
    Member,
    PriceChange,
    WorkspaceSpec,
)
from openrouter_emulator.large import LARGE_KEYS, LARGE_MEMBERS, LARGE_REQUEST_LOGGING, LARGE_WORKSPACES

# How the default organisation's apps log: search and data-platform log the response's openrouter_metadata and
# usage (classified with zero API calls), support-bot logs only ids and what it asked for (classified through
# /generation within the daily call budget); growth-experiments logs nothing, so its per-request metrics stay
# NULL and coverage is below 100%.
DEFAULT_REQUEST_LOGGING = MappingProxyType({"search": "metadata", "data-platform": "metadata", "support-bot": "plain"})
LOGGING_MODES = ("metadata", "plain")


def default_events(anchor: date) -> dict:
    """The default world's planted events, dated relative to the anchor (inside the last 14 completed days)."""

    def day(offset: int) -> date:
        return anchor - timedelta(days=offset)

    return {
        "premium_drift": {"workspace": "growth-experiments", "start": day(10), "ramp_days": 8, "end": day(1)},
        "provider_outage": {"workspace": "search", "provider": "Anthropic", "start": day(9), "end": day(8)},
        "release_spend_jump": {"workspace": "support-bot", "start": day(6), "end": day(1),
                               "request_factor": 1.5, "prompt_factor": 1.6},
        "runaway_loop": {"key": "enrichment-worker-hourly", "start": day(4), "end": day(3),
                         "factors": {day(4): 19.0, day(3): 15.0}},
        "topups": [(day(12), time(15, 42, 7, 331902)), (day(5), time(10, 17, 44, 90215))],
        # Qwen3 235B's hosts cut its price mid-afternoon: data-platform's entity extraction (and a shared
        # notebook) pay $0.10/$0.40 per 1M prompt/completion tokens from then on instead of $0.13/$0.60.
        "price_changes": (PriceChange("qwen/qwen3-235b-a22b", datetime.combine(day(8), time(15, 0), UTC),
                                      prompt="0.0000001", completion="0.0000004"),),
    }


# A steady organisation of eight keys in the default workspaces (so the default owners.yaml applies), whose
# planted events sit at the documented detection limits of docs/alerts.md, not far above them. Its volumes
# barely move from day to day (noise_scale), so an event's size is the planted one.
_STEADY = 0.1
LIMITS_KEYS: tuple[KeySpec, ...] = (
    # search logs openrouter_metadata for 150 requests a day: the fallback surge is judged on them.
    KeySpec("search-answers-api", "search", "erin", 200, "batch", 4000, (("anthropic/claude-sonnet-4", 1.0),),
            2500, 300, noise_scale=_STEADY),
    # data-platform: a nightly batch that loops on its usual model (no request logs, so no accepted-result
    # signal) beside a steady enrichment job; the loop takes the project over its daily budget.
    KeySpec("nightly-report-batch", "data-platform", "frank", 180, "batch", 400, (("openai/gpt-4.1", 1.0),),
            2000, 400, noise_scale=_STEADY),
    KeySpec("warehouse-enrichment", "data-platform", "frank", 170, "batch", 17000,
            (("openai/gpt-4.1-mini", 1.0),), 1300, 220, noise_scale=_STEADY),
    KeySpec("report-eval-nightly", "data-platform", "heidi", 150, "batch", 2600, (("openai/gpt-4.1", 1.0),),
            2600, 180, noise_scale=_STEADY),
    KeySpec("growth-copy-service", "growth-experiments", "grace", 120, "batch", 4000, (("openai/gpt-4.1", 1.0),),
            2500, 500, noise_scale=_STEADY),
    KeySpec("support-bot-tenant-northwind", "support-bot", "provisioner", 300, "batch", 25000,
            (("openai/gpt-4.1-mini", 1.0),), 1700, 240, noise_scale=_STEADY),
    # Default workspace, matched by no project: a standing 5.5% of the account, and a key created two days
    # before the anchor that nobody owns.
    KeySpec("analyst-sandbox", "default", "bob", 90, "batch", 705, (("anthropic/claude-sonnet-4", 1.0),),
            2500, 300, noise_scale=_STEADY),
    KeySpec("contractor-trial", "default", "carol", 2, "batch", 20, (("anthropic/claude-sonnet-4", 1.0),),
            2500, 300, noise_scale=_STEADY),
)


def limits_events(anchor: date) -> dict:
    """The limits world's events: a 5.2× loop and a fallback surge three days before the anchor."""
    event_day = anchor - timedelta(days=3)
    return {
        "runaway_loop": {"key": "nightly-report-batch", "start": event_day, "end": event_day,
                         "factors": {event_day: 5.2}, "output": "proportional"},
        "fallback_surge": {"workspace": "search", "day": event_day, "rate": 0.2},
    }


@dataclass(frozen=True)
class Scenario:
    """One emulated world, served by name (`EmulatorServer(scenario=...)`, `openrouter-spend run --scenario`)."""

    name: str
    description: str
    members: tuple[Member, ...] = MEMBERS
    workspaces: tuple[WorkspaceSpec, ...] = WORKSPACES
    keys: tuple[KeySpec, ...] = KEY_SPECS
    plan_events: Callable[[date], dict] | None = None
    request_logging: Mapping[str, str] = field(default_factory=lambda: DEFAULT_REQUEST_LOGGING)
    # Generation records per key and day: at most this many, about one per 25 requests; None = one per request
    # (complete logs), whose costs add up to the day's /activity rows to the nano-dollar.
    logged_requests_per_key_day: int | None = 20
    # The /generation calls per usage day `openrouter-spend run` allows on the embedded emulator (an explicit
    # OPENROUTER_SPEND_GENERATION_CALL_BUDGET wins); None = the product default.
    generation_call_budget: int | None = 40
    # Configuration for `openrouter-spend run` on this world when no OPENROUTER_SPEND_CONFIG_DIR is set:
    # file name → its whole text, or → top-level entries that replace those of include/config's file (the
    # world's own ownership registry and alert routes, for instance).
    config_files: Mapping[str, str | Mapping] = field(default_factory=dict)

    def __post_init__(self) -> None:
        slugs = {w.slug for w in self.workspaces} | {w.name for w in self.workspaces}
        unknown = sorted(set(self.request_logging) - slugs)
        if unknown:
            raise ValueError(f"scenario {self.name!r}: request_logging names unknown workspaces {unknown}")
        modes = sorted(set(self.request_logging.values()) - set(LOGGING_MODES))
        if modes:
            raise ValueError(f"scenario {self.name!r}: unknown request logging modes {modes}; "
                             f"expected {', '.join(LOGGING_MODES)}")
        defaults = [w for w in self.workspaces if w.is_default]
        if len(defaults) != 1:
            raise ValueError(f"scenario {self.name!r} needs exactly one default workspace, has {len(defaults)}")
        handles = {m.handle for m in self.members}
        workspace_slugs = {w.slug for w in self.workspaces}
        for spec in self.keys:
            if spec.workspace not in workspace_slugs or spec.creator not in handles:
                raise ValueError(f"scenario {self.name!r}: key {spec.name!r} names an unknown workspace or creator")

    @property
    def has_events(self) -> bool:
        return self.plan_events is not None


# The realapi world's ownership registry (replaces include/config/owners.yaml for runs on it); the default
# workspace's personal key stays unowned, a finding like in any real account.
REALAPI_OWNERS = """\
unused_key_days: 30
projects:
  atlas:
    team: Research
    budget_owner: Mira Solberg
    contact: mira.solberg@kestrel-analytics.example
    description: Customer-facing research assistant
    budgets_usd: {daily: 5, weekly: 30, monthly: 120}
    match:
      workspaces: [atlas]
  ledger:
    team: Finance Automation
    budget_owner: Tomás Reyes
    contact: tomas.reyes@kestrel-analytics.example
    description: Invoice extraction and classification jobs
    budgets_usd: {daily: 3, weekly: 18, monthly: 75}
    match:
      workspaces: [ledger]
  labs:
    team: Research
    budget_owner: Yuki Tanaka
    contact: yuki.tanaka@kestrel-analytics.example
    description: Prototypes
    budgets_usd: {daily: 2, monthly: 30}
    match:
      workspaces: [labs]
"""

REALAPI_MEMBERS: tuple[Member, ...] = (
    Member("mira", "Mira", "Solberg", "mira.solberg@kestrel-analytics.example", "org:admin"),
    Member("tomas", "Tomás", "Reyes", "tomas.reyes@kestrel-analytics.example", "org:member"),
    Member("yuki", "Yuki", "Tanaka", "yuki.tanaka@kestrel-analytics.example", "org:member"),
)
REALAPI_WORKSPACES: tuple[WorkspaceSpec, ...] = (
    WorkspaceSpec("default", "Default", "Account default workspace", 240, "mira",
                  "https://kestrel-analytics.example/", 61001, None, is_default=True),
    WorkspaceSpec("atlas", "atlas", "Customer-facing research assistant", 200, "mira",
                  "https://atlas.kestrel-analytics.example/", 61002, "openai/gpt-4.1-mini"),
    WorkspaceSpec("ledger", "ledger", "Invoice extraction and classification jobs", 180, "tomas",
                  "https://ledger.kestrel-analytics.example/", 61003, "openai/gpt-4.1-mini"),
    WorkspaceSpec("labs", "labs", "Prototypes; nothing logged per request", 90, "yuki",
                  "https://labs.kestrel-analytics.example/", 61004, None),
)
REALAPI_KEYS: tuple[KeySpec, ...] = (
    KeySpec("atlas-api-prod", "atlas", "mira", 190, "service", 110,
            (("openai/gpt-4.1-mini", 0.45), ("anthropic/claude-sonnet-4", 0.35), ("anthropic/claude-3.5-haiku", 0.2)),
            6000, 600, cache_ratio=0.3),
    KeySpec("atlas-rerank", "atlas", "mira", 150, "service", 45, (("google/gemini-2.5-flash", 1.0),), 1800, 60,
            byok_provider="Google AI Studio"),
    KeySpec("ledger-extract-batch", "ledger", "tomas", 170, "batch", 90,
            (("openai/gpt-4.1-mini", 0.55), ("google/gemini-2.5-flash", 0.2), ("openai/gpt-4.1", 0.25)), 7000, 900),
    KeySpec("ledger-classify", "ledger", "tomas", 120, "service", 50,
            (("deepseek/deepseek-chat-v3-0324", 0.8), ("mistralai/mistral-small-3.2-24b-instruct", 0.2)), 900, 40),
    KeySpec("labs-notebook-yuki", "labs", "yuki", 80, "sporadic", 30,
            (("openai/gpt-4.1", 0.6), ("anthropic/claude-sonnet-4", 0.4)), 2000, 700),
    KeySpec("mira-scratch", "default", "mira", 230, "sporadic", 12, (("openai/gpt-4.1-mini", 1.0),), 1500, 300),
)


def realapi_events(anchor: date) -> dict:
    """One credit top-up in the middle of the last two weeks (nothing else bends the traffic)."""
    return {"topups": [(anchor - timedelta(days=6), time(9, 12, 31, 118004))]}


# Names an attacker or a careless colleague can give keys and workspaces: spreadsheet formulas (OWASP CSV
# injection), Slack broadcasts and mentions, HTML and script, a SQL string breakout, Markdown links and
# table breaks, matplotlib math. Every output channel must show them as the text they are.
HOSTILE_NAMES = MappingProxyType({
    "formula_link": '=HYPERLINK("http://evil.example/k2","k2")',
    "formula_dde": "@SUM(2+2)*cmd|' /C calc'!A0",
    "formula_plus": "+cmd|' /C notepad'!A0",
    "formula_minus": "-2+3+cmd|' /C calc'!A0",
    "formula_tab": "\t=1+1",
    "slack_broadcast": "<!channel>",
    "slack_mentions": "<!here> & <@U024BE7LH> <https://evil.example|click>",
    "html_script": "<script>alert('k3')</script>",
    "sql_breakout": "'; DROP TABLE marts.fct_daily_spend; --",
    "markdown": "$\\boom$ [click](http://evil.example) | `cell` **bold**",
    # What the configuration names: projects, teams, owners, annotations.
    "project_formula": '=HYPERLINK("http://evil.example/p","p")',
    "team_formula": "@SUM(1+1)*cmd|' /C calc'!A0",
    "owner_broadcast": "<!channel> Owner",
    "owner_markup": "-Minus <b>Owner</b>",
    "annotation": "<script>alert('note')</script> [release](http://evil.example) =1+1",
})
_HOSTILE_MIX = (("openai/gpt-4.1-mini", 0.7), ("anthropic/claude-3.5-haiku", 0.3))
HOSTILE_WORKSPACES: tuple[WorkspaceSpec, ...] = (
    WorkspaceSpec("default", "Default", "Account default workspace", 400, "alice",
                  "https://notebooks.northwind-labs.example/", 31337, None, is_default=True),
    # Request logs go to landing/requests/<workspace name>/: these names hold no "/".
    WorkspaceSpec("apps", HOSTILE_NAMES["slack_broadcast"], "Apps whose keys carry formulas and script", 300,
                  "dan", "https://apps.northwind-labs.example/", 61001, "openai/gpt-4.1-mini"),
    WorkspaceSpec("tools", HOSTILE_NAMES["sql_breakout"], "Internal tools named by a SQL breakout", 300, "erin",
                  "https://tools.northwind-labs.example/", 61002, "openai/gpt-4.1-mini"),
)

def _hostile_config() -> dict[str, str | Mapping]:
    """The hostile world's configuration: its projects, owners and annotation carry injection strings too, with
    budgets its spend exceeds (so budget alerts name them in every channel) and one Slack webhook per route."""
    import json

    def quoted(text: str) -> str:  # a YAML double-quoted scalar is a JSON string
        return json.dumps(text)

    names = HOSTILE_NAMES
    owners = f"""\
unused_key_days: 30
projects:
  {quoted(names["project_formula"])}:
    team: {quoted(names["team_formula"])}
    budget_owner: {quoted(names["owner_broadcast"])}
    contact: owner@hostile.example
    description: "<script>alert('p')</script>"
    budgets_usd: {{daily: 1, weekly: 5}}
    match:
      workspaces: [{quoted(names["slack_broadcast"])}]
  {quoted(names["sql_breakout"])}:
    team: "+Team"
    budget_owner: {quoted(names["owner_markup"])}
    contact: markup@hostile.example
    budgets_usd: {{daily: 1}}
    match:
      workspaces: [{quoted(names["sql_breakout"])}]
"""
    annotations = f"""\
anchor: emulator
annotations:
  - id: hostile-note
    kind: release
    start: "@anchor-20"
    end: "@anchor+5"
    project: {quoted(names["sql_breakout"])}
    signals: [provider_mix]
    description: {quoted(names["annotation"])}
"""
    routes = {"routes": {
        "default": {"min_severity": "info", "email": {"to": ["budget_owner", "finops@hostile.example"]},
                    "slack": {"env_var": "OPENROUTER_SPEND_SLACK_WEBHOOK_FINOPS"}},
        "owners": {"budget_owners": [names["owner_broadcast"]], "min_severity": "info",
                   "email": {"to": ["budget_owner"]}, "slack": {"env_var": "OPENROUTER_SPEND_SLACK_WEBHOOK_OWNERS"}},
        "data-engineering": {"min_severity": "warning", "email": {"to": ["data-engineering@hostile.example"]},
                             "slack": {"env_var": "OPENROUTER_SPEND_SLACK_WEBHOOK_DATA_ENG"}},
    }}
    return {"owners.yaml": owners, "annotations.yaml": annotations, "rules.yaml": routes}


HOSTILE_KEYS: tuple[KeySpec, ...] = (
    KeySpec(HOSTILE_NAMES["formula_link"], "apps", "dan", 200, "service", 1200, _HOSTILE_MIX, 1200, 200),
    KeySpec(HOSTILE_NAMES["formula_dde"], "apps", "dan", 180, "service", 900, _HOSTILE_MIX, 1500, 250),
    KeySpec(HOSTILE_NAMES["html_script"], "apps", "dan", 150, "service", 750, _HOSTILE_MIX, 900, 150),
    KeySpec(HOSTILE_NAMES["formula_tab"], "apps", "dan", 120, "service", 360, _HOSTILE_MIX, 900, 150),
    KeySpec(HOSTILE_NAMES["sql_breakout"], "tools", "erin", 200, "service", 1050, _HOSTILE_MIX, 1100, 300),
    KeySpec(HOSTILE_NAMES["formula_plus"], "tools", "erin", 160, "service", 600, _HOSTILE_MIX, 1000, 200),
    KeySpec(HOSTILE_NAMES["formula_minus"], "tools", "erin", 140, "service", 450, _HOSTILE_MIX, 800, 100),
    KeySpec(HOSTILE_NAMES["markdown"], "tools", "erin", 100, "service", 300, _HOSTILE_MIX, 800, 100),
    # Owned by nobody: unowned spend names it.
    KeySpec(HOSTILE_NAMES["slack_mentions"], "default", "alice", 90, "service", 450, _HOSTILE_MIX, 700, 120),
    # Enabled, never used: the unused-key rule names it.
    KeySpec(HOSTILE_NAMES["slack_broadcast"], "default", "alice", 75, "sporadic", 0, (), 0, 0, never_used=True),
)

SCENARIOS: dict[str, Scenario] = {
    "default": Scenario(
        "default",
        "Northwind Labs: 140+ keys over five workspaces with a provider outage, premium drift, a release, a "
        "runaway loop, a model price cut, two top-ups and a low credit runway.",
        plan_events=default_events,
    ),
    "quiet": Scenario(
        "quiet",
        "The default organisation on ordinary days: the same keys and logging, no planted events.",
    ),
    "realapi": Scenario(
        "realapi",
        "Kestrel Analytics: six keys over four small workspaces, one credit top-up; atlas logs every request with "
        "openrouter_metadata and usage, ledger logs every request's id (classified through /generation), labs "
        "logs nothing. Meant for the wall clock: a backfill where every log is present before the first run.",
        members=REALAPI_MEMBERS,
        workspaces=REALAPI_WORKSPACES,
        keys=REALAPI_KEYS,
        plan_events=realapi_events,
        request_logging=MappingProxyType({"atlas": "metadata", "ledger": "plain"}),
        logged_requests_per_key_day=None,
        generation_call_budget=None,
        config_files=MappingProxyType({
            "owners.yaml": REALAPI_OWNERS,
            "annotations.yaml": "annotations: []\n",
            "rules.yaml": {"routes": {
                "default": {"min_severity": "warning",
                            "email": {"to": ["budget_owner", "finops@kestrel-analytics.example"]}},
                "data-engineering": {"min_severity": "warning",
                                     "email": {"to": ["platform@kestrel-analytics.example"]}},
            }},
        }),
    ),
    "limits": Scenario(
        "limits",
        "A steady organisation of eight keys whose events sit at the rules' detection limits: a 5.2× loop "
        "with no accepted-result signal, a fallback surge on 150 logged requests, 5.5% unowned spend and a "
        "new unowned key.",
        keys=LIMITS_KEYS,
        plan_events=limits_events,
        request_logging=MappingProxyType({"search": "metadata"}),
        logged_requests_per_key_day=150,
    ),
    "large": Scenario(
        "large",
        "Contoso AI: 2,000 keys over eight workspaces, 200 of them services in daily use on every servable "
        "model, 1,800 idle, never used, disabled or expired; no planted events (emulator/large.py).",
        members=LARGE_MEMBERS,
        workspaces=LARGE_WORKSPACES,
        keys=LARGE_KEYS,
        request_logging=MappingProxyType(LARGE_REQUEST_LOGGING),
    ),
    "hostile": Scenario(
        "hostile",
        "A small organisation whose key, workspace, project, owner and annotation names are injection strings "
        "(spreadsheet formulas, Slack broadcasts, script, a SQL breakout, Markdown and math): every output must "
        "show them as plain text.",
        workspaces=HOSTILE_WORKSPACES,
        keys=HOSTILE_KEYS,
        request_logging=MappingProxyType({HOSTILE_NAMES["slack_broadcast"]: "metadata",
                                          HOSTILE_NAMES["sql_breakout"]: "plain"}),
        config_files=MappingProxyType(_hostile_config()),
    ),
}


def get_scenario(name: str | Scenario) -> Scenario:
    """The scenario with this name (a Scenario passes through); a clear error names the known ones."""
    if isinstance(name, Scenario):
        return name
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown emulator scenario {name!r}; expected one of {', '.join(SCENARIOS)}") from None
