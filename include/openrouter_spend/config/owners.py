"""Ownership, premium and annotation configuration: load and validate the YAML files.

Every problem raises ConfigError naming the file, the path inside it and the field; config.versions records
each loaded configuration in the warehouse.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from openrouter_spend.config import settings
from openrouter_spend.config.yamlnode import (
    ANNOTATIONS_FILE,
    CONFIG_FILES,
    OWNERS_FILE,
    PREMIUM_FILE,
    ConfigError,
    Node,
    describe,
    read_yaml,
)

ACCOUNT_PROJECT = "*"
UNOWNED_PROJECT = "(unowned)"
SIGNALS = ("spend", "premium_share", "fallback_rate", "provider_mix")
ANNOTATION_KINDS = ("release", "incident", "launch")
MATCH_KINDS = ("key_hash", "key_name", "workspace")
DEFAULT_UNUSED_KEY_DAYS = 30

_KEY_HASH = re.compile(r"^[0-9a-f]{64}$")
_GLOB_CHARS = set("*?[]")


@dataclass(frozen=True)
class LaunchWindow:
    """A period in which a project is expected to spend faster than usual."""

    start_date: date
    end_date: date
    velocity_multiplier: float
    description: str


@dataclass(frozen=True)
class Project:
    """One entry of the ownership registry."""

    name: str
    team: str
    budget_owner: str
    contact: str
    description: str | None
    daily_budget_usd: float | None
    weekly_budget_usd: float | None
    monthly_budget_usd: float | None
    launch_windows: tuple[LaunchWindow, ...] = ()


@dataclass(frozen=True)
class KeyMatcher:
    """Maps keys to a project by hash, name glob or workspace, optionally only for a date range."""

    project: str
    kind: str
    pattern: str
    file_order: int
    valid_from: date | None = None
    valid_to: date | None = None

    @property
    def kind_rank(self) -> int:
        return MATCH_KINDS.index(self.kind) + 1

    @property
    def specificity(self) -> int:
        """Literal characters of the pattern: among name globs, the more specific one wins."""
        return sum(1 for char in self.pattern if char not in _GLOB_CHARS)


@dataclass(frozen=True)
class PremiumRule:
    """Which models count as premium, given a day's price snapshot."""

    completion_price_per_mtok_usd: float | None
    blended_price_per_mtok_usd: float | None
    blended_prompt_weight: float
    blended_completion_weight: float
    premium_models: tuple[str, ...]
    never_premium_models: tuple[str, ...]


@dataclass(frozen=True)
class Annotation:
    """A release, incident or launch that explains movements of some signals."""

    annotation_id: str
    kind: str
    start_date: date
    end_date: date
    project: str
    signals: tuple[str, ...]
    description: str
    # The multiple of its signals' level before `start` the annotation announces (2.0 = doubles, 0.5 =
    # halves); None announces a rise of any size. It explains a move only in that direction and size.
    expected_change: float | None = None


@dataclass(frozen=True)
class Config:
    """The validated configuration of one config directory."""

    config_dir: Path
    projects: tuple[Project, ...]
    matchers: tuple[KeyMatcher, ...]
    premium: PremiumRule
    annotations: tuple[Annotation, ...]
    unused_key_days: int
    file_sha256: dict[str, str] = field(default_factory=dict, compare=False)

    def content(self) -> dict[str, Any]:
        """Everything that affects the marts, as plain JSON-able data."""
        return json.loads(json.dumps({
            "projects": [asdict(p) for p in self.projects],
            "matchers": [asdict(m) for m in self.matchers],
            "premium": asdict(self.premium),
            "annotations": [asdict(a) for a in self.annotations],
            "unused_key_days": self.unused_key_days,
        }, default=str))

    def fingerprint(self) -> str:
        """sha256 of the content: comment or layout edits do not make a new version."""
        return hashlib.sha256(json.dumps(self.content(), sort_keys=True).encode()).hexdigest()


def _root(path: Path, required: tuple[str, ...], optional: tuple[str, ...]) -> Node:
    root = Node(str(path), "", read_yaml(path))
    if not isinstance(root.value, dict):
        raise ConfigError(str(path), "", "(document)", f"expected a mapping at the top, got {describe(root.value)}")
    root.mapping("(document)", required, optional + ("anchor",))
    if root.value.get("anchor") is not None:
        root.anchor = root.day("anchor")
    return root


def _project_name(node: Node, name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise node.error(str(name), "project names must be non-empty strings")
    if name in (ACCOUNT_PROJECT, UNOWNED_PROJECT) or name.startswith("("):
        raise node.error(name, f"'{name}' is reserved ('{ACCOUNT_PROJECT}' is the whole account, "
                               f"'{UNOWNED_PROJECT}' the unowned keys)")
    return name


def _launch_window(node: Node) -> LaunchWindow:
    node.mapping("launch_windows", ("start", "end", "velocity_multiplier"), ("description",))
    start, end = node.day("start"), node.day("end")
    if end < start:
        raise node.error("end", f"{end} is before start {start}")
    return LaunchWindow(start, end, node.number("velocity_multiplier", exclusive=True, required=True),
                        node.text("description", required=False) or "")


def _matcher_items(node: Node, key: str, project: str, kind: str, order: list[int]) -> list[KeyMatcher]:
    matchers = []
    for item in node.items(key):
        valid_from = valid_to = None
        if isinstance(item.value, dict):
            item.mapping(key, ("pattern",), ("valid_from", "valid_to"))
            pattern = item.text("pattern")
            valid_from, valid_to = item.day("valid_from", required=False), item.day("valid_to", required=False)
            if valid_from and valid_to and valid_to < valid_from:
                raise item.error("valid_to", f"{valid_to} is before valid_from {valid_from}")
        elif isinstance(item.value, str) and item.value.strip():
            pattern = item.value.strip()
        else:
            raise ConfigError(item.file, node.child(key).path, key, "items must be strings or "
                              f"{{pattern, valid_from, valid_to}}, got {describe(item.value)}")
        if kind == "key_hash" and not _KEY_HASH.match(pattern):
            raise ConfigError(item.file, item.path, key,
                              f"expected a 64-character lowercase hex key hash, got {pattern!r}")
        order[0] += 1
        matchers.append(KeyMatcher(project, kind, pattern, order[0], valid_from, valid_to))
    return matchers


def _overlaps(a: KeyMatcher, b: KeyMatcher) -> bool:
    a_from, a_to = a.valid_from or date.min, a.valid_to or date.max
    b_from, b_to = b.valid_from or date.min, b.valid_to or date.max
    return a_from <= b_to and b_from <= a_to


def _load_owners(path: Path) -> tuple[tuple[Project, ...], tuple[KeyMatcher, ...], int]:
    root = _root(path, ("projects",), ("unused_key_days",))
    unused_days = root.value.get("unused_key_days", DEFAULT_UNUSED_KEY_DAYS)
    if isinstance(unused_days, bool) or not isinstance(unused_days, int) or unused_days < 1:
        raise root.error("unused_key_days", f"expected a whole number of days >= 1, got {describe(unused_days)}")
    projects_node = root.child("projects")
    projects_node.mapping("projects", any_keys=True)
    if not projects_node.value:
        raise root.error("projects", "needs at least one project")
    projects, matchers, order = [], [], [0]
    for name in projects_node.value:
        project = _project_name(projects_node, name)
        node = projects_node.child(project)
        node.mapping(project, ("team", "budget_owner", "contact"),
                     ("description", "budgets_usd", "launch_windows", "match"))
        budgets = node.child("budgets_usd")
        budgets.mapping("budgets_usd", (), ("daily", "weekly", "monthly"))
        daily, weekly, monthly = (budgets.number(k) for k in ("daily", "weekly", "monthly"))
        windows = tuple(_launch_window(item) for item in node.items("launch_windows"))
        match = node.child("match")
        match.mapping("match", (), ("key_hashes", "key_names", "workspaces"))
        matchers += _matcher_items(match, "key_hashes", project, "key_hash", order)
        matchers += _matcher_items(match, "key_names", project, "key_name", order)
        matchers += _matcher_items(match, "workspaces", project, "workspace", order)
        projects.append(Project(project, node.text("team"), node.text("budget_owner"), node.text("contact"),
                                node.text("description", required=False), daily, weekly, monthly, windows))
    seen: dict[tuple[str, str], KeyMatcher] = {}
    for matcher in matchers:
        other = seen.get((matcher.kind, matcher.pattern))
        if other and other.project != matcher.project and _overlaps(other, matcher):
            field_name = {"key_hash": "key_hashes", "key_name": "key_names", "workspace": "workspaces"}[matcher.kind]
            raise ConfigError(str(path), f"projects.{matcher.project}.match", field_name,
                              f"{matcher.pattern!r} is also claimed by project {other.project!r} for "
                              "overlapping dates; give one of them valid_from/valid_to")
        seen.setdefault((matcher.kind, matcher.pattern), matcher)
    return tuple(projects), tuple(matchers), unused_days


def _model_globs(node: Node, key: str) -> tuple[str, ...]:
    patterns = []
    for item in node.items(key):
        if not isinstance(item.value, str) or not item.value.strip():
            raise ConfigError(item.file, item.path, key, f"expected a model slug or glob, got {describe(item.value)}")
        patterns.append(item.value.strip())
    return tuple(patterns)


def _load_premium(path: Path) -> PremiumRule:
    root = _root(path, (), ("completion_price_per_mtok_usd", "blended_price_per_mtok_usd", "blended_weights",
                            "premium_models", "never_premium_models"))
    weights = root.child("blended_weights")
    weights.mapping("blended_weights", (), ("prompt", "completion"))
    prompt_weight = weights.number("prompt")
    completion_weight = weights.number("completion")
    prompt_weight = 3.0 if prompt_weight is None else prompt_weight
    completion_weight = 1.0 if completion_weight is None else completion_weight
    if prompt_weight + completion_weight <= 0:
        raise weights.error("completion", "prompt and completion weights cannot both be 0")
    rule = PremiumRule(
        root.number("completion_price_per_mtok_usd"),
        root.number("blended_price_per_mtok_usd"),
        prompt_weight,
        completion_weight,
        _model_globs(root, "premium_models"),
        _model_globs(root, "never_premium_models"),
    )
    if rule.completion_price_per_mtok_usd is None and rule.blended_price_per_mtok_usd is None \
            and not rule.premium_models:
        raise root.error("completion_price_per_mtok_usd", "no premium rule: set a price threshold "
                         "(completion_price_per_mtok_usd or blended_price_per_mtok_usd) or premium_models")
    return rule


def _load_annotations(path: Path, projects: set[str]) -> tuple[Annotation, ...]:
    root = _root(path, (), ("annotations",))
    annotations, ids = [], set()
    for item in root.items("annotations"):
        item.mapping("annotations", ("id", "kind", "start", "project", "signals", "description"),
                     ("end", "expected_change"))
        annotation_id = item.text("id")
        if annotation_id in ids:
            raise item.error("id", f"duplicate annotation id {annotation_id!r}")
        ids.add(annotation_id)
        kind = item.text("kind")
        if kind not in ANNOTATION_KINDS:
            raise item.error("kind", f"expected one of {', '.join(ANNOTATION_KINDS)}, got {kind!r}")
        start = item.day("start")
        end = item.day("end", required=False) or start
        if end < start:
            raise item.error("end", f"{end} is before start {start}")
        project = item.text("project")
        if project != ACCOUNT_PROJECT and project not in projects:
            raise item.error("project", f"unknown project {project!r} (not in {OWNERS_FILE}; use '*' for the "
                                        "whole account)")
        signals = item.value.get("signals")
        if not isinstance(signals, list) or not signals:
            raise item.error("signals", f"expected a non-empty list of {', '.join(SIGNALS)}")
        for signal in signals:
            if signal not in SIGNALS:
                raise item.error("signals", f"unknown signal {signal!r}; expected {', '.join(SIGNALS)}")
        expected_change = item.number("expected_change", exclusive=True)
        annotations.append(Annotation(annotation_id, kind, start, end, project, tuple(signals),
                                      item.text("description"), expected_change))
    return tuple(annotations)


def load_config(config_dir: Path | None = None) -> Config:
    """Read and validate the configuration directory (default: settings.config_dir())."""
    folder = Path(config_dir) if config_dir else settings.config_dir()
    projects, matchers, unused_days = _load_owners(folder / OWNERS_FILE)
    premium = _load_premium(folder / PREMIUM_FILE)
    annotations = _load_annotations(folder / ANNOTATIONS_FILE, {p.name for p in projects})
    hashes = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in CONFIG_FILES}
    return Config(folder, projects, matchers, premium, annotations, unused_days, hashes)
