"""Ownership, premium and annotation configuration: load and validate the YAML files, version them into `config.*`.

Every problem raises ConfigError naming the file, the path inside it and the field. The warehouse keeps
every version that was ever loaded, with the range of usage days it is in force for, so marts attribute
each day with the configuration of its time (docs/marts.md, "Configuration history").
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from openrouter_spend import settings

OWNERS_FILE = "owners.yaml"
PREMIUM_FILE = "premium.yaml"
ANNOTATIONS_FILE = "annotations.yaml"
CONFIG_FILES = (OWNERS_FILE, PREMIUM_FILE, ANNOTATIONS_FILE)

ACCOUNT_PROJECT = "*"
UNOWNED_PROJECT = "(unowned)"
SIGNALS = ("spend", "premium_share", "fallback_rate", "provider_mix")
ANNOTATION_KINDS = ("release", "incident", "launch")
MATCH_KINDS = ("key_hash", "key_name", "workspace")
DEFAULT_UNUSED_KEY_DAYS = 30
# The first configuration ever loaded covers all earlier history too.
BEGINNING_OF_HISTORY = date(1970, 1, 1)

_KEY_HASH = re.compile(r"^[0-9a-f]{64}$")
_RELATIVE_DATE = re.compile(r"^@anchor(?:([+-])(\d+))?$")
_GLOB_CHARS = set("*?[]")


class ConfigError(ValueError):
    """A configuration problem; the message names the file, the path inside it and the field."""

    def __init__(self, file: str, path: str, field_name: str, problem: str):
        self.file = file
        self.path = path
        self.field = field_name
        self.problem = problem
        where = f"at {path}, " if path else ""
        super().__init__(f"{file}: {where}field '{field_name}': {problem}")


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


class _Node:
    """A value inside one YAML file, with the path used in error messages."""

    def __init__(self, file: str, path: str, value: Any, anchor: date | None = None):
        self.file = file
        self.path = path
        self.value = value
        self.anchor = anchor

    def error(self, field_name: str, problem: str) -> ConfigError:
        return ConfigError(self.file, self.path, field_name, problem)

    def _child_path(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else str(key)

    def mapping(self, name: str, required: tuple[str, ...] = (), optional: tuple[str, ...] = (),
                *, any_keys: bool = False) -> dict:
        """Check the node is a mapping with only the allowed keys; `name` is this node's field name."""
        if self.value is None and not required:
            self.value = {}
        if not isinstance(self.value, dict):
            where = self.path if self.path.endswith("]") else self._parent_path()
            raise ConfigError(self.file, where, name, f"expected a mapping, got {_describe(self.value)}")
        for key in self.value:
            if not any_keys and (not isinstance(key, str) or key not in required + optional):
                allowed = ", ".join(required + optional)
                raise self.error(str(key), f"unknown field (allowed: {allowed})")
        for key in required:
            if key not in self.value or self.value[key] is None:
                raise self.error(key, "is required")
        return self.value

    def _parent_path(self) -> str:
        return self.path.rsplit(".", 1)[0] if "." in self.path else ""

    def child(self, key: str | int) -> _Node:
        value = self.value[key] if isinstance(self.value, list) else self.value.get(key)
        return _Node(self.file, self._child_path(key), value, self.anchor)

    def text(self, key: str, *, required: bool = True) -> str | None:
        value = self.value.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"expected a non-empty string, got {_describe(value)}")
        return value.strip()

    def number(self, key: str, *, minimum: float = 0.0, exclusive: bool = False,
               required: bool = False) -> float | None:
        value = self.value.get(key)
        if value is None:
            if required:
                raise self.error(key, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, got {_describe(value)}")
        if value < minimum or (exclusive and value == minimum):
            bound = f"> {minimum:g}" if exclusive else f">= {minimum:g}"
            raise self.error(key, f"must be {bound}, got {value!r}")
        return float(value)

    def day(self, key: str, *, required: bool = True) -> date | None:
        value = self.value.get(key)
        if value is None:
            if required:
                raise self.error(key, "is required")
            return None
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            relative = _RELATIVE_DATE.match(value.strip())
            if relative:
                if self.anchor is None:
                    raise self.error(key, f"{value!r} is relative to an anchor, but the file sets no 'anchor'")
                sign, days = relative.groups()
                offset = int(days or 0) * (-1 if sign == "-" else 1)
                return self.anchor + timedelta(days=offset)
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise self.error(key, f"expected a date YYYY-MM-DD or @anchor±N, got {_describe(value)}")

    def items(self, key: str) -> list[_Node]:
        value = self.value.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(key, f"expected a list, got {_describe(value)}")
        node = self.child(key)
        return [node.child(index) for index in range(len(value))]


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}"


def _read_yaml(path: Path) -> Any:
    import yaml

    if not path.is_file():
        raise ConfigError(str(path), "", path.name, "file not found (every config directory needs "
                          f"{', '.join(CONFIG_FILES)})")
    try:
        return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(path), where, "(yaml)", f"not valid YAML: {problem}") from None


def _root(path: Path, required: tuple[str, ...], optional: tuple[str, ...]) -> _Node:
    root = _Node(str(path), "", _read_yaml(path))
    if not isinstance(root.value, dict):
        raise ConfigError(str(path), "", "(document)", f"expected a mapping at the top, got {_describe(root.value)}")
    root.mapping("(document)", required, optional + ("anchor",))
    if root.value.get("anchor") is not None:
        root.anchor = root.day("anchor")
    return root


def _project_name(node: _Node, name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise node.error(str(name), "project names must be non-empty strings")
    if name in (ACCOUNT_PROJECT, UNOWNED_PROJECT) or name.startswith("("):
        raise node.error(name, f"'{name}' is reserved ('{ACCOUNT_PROJECT}' is the whole account, "
                               f"'{UNOWNED_PROJECT}' the unowned keys)")
    return name


def _launch_window(node: _Node) -> LaunchWindow:
    node.mapping("launch_windows", ("start", "end", "velocity_multiplier"), ("description",))
    start, end = node.day("start"), node.day("end")
    if end < start:
        raise node.error("end", f"{end} is before start {start}")
    return LaunchWindow(start, end, node.number("velocity_multiplier", exclusive=True, required=True),
                        node.text("description", required=False) or "")


def _matcher_items(node: _Node, key: str, project: str, kind: str, order: list[int]) -> list[KeyMatcher]:
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
                              f"{{pattern, valid_from, valid_to}}, got {_describe(item.value)}")
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
        raise root.error("unused_key_days", f"expected a whole number of days >= 1, got {_describe(unused_days)}")
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


def _model_globs(node: _Node, key: str) -> tuple[str, ...]:
    patterns = []
    for item in node.items(key):
        if not isinstance(item.value, str) or not item.value.strip():
            raise ConfigError(item.file, item.path, key, f"expected a model slug or glob, got {_describe(item.value)}")
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


def _insert(con, table: str, rows: list[dict]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    placeholders = ", ".join("?" for _ in columns)
    con.executemany(f"insert into config.{table} ({', '.join(columns)}) values ({placeholders})",
                    [[row[c] for c in columns] for row in rows])


def _store_version(con, config: Config, version_id: int) -> None:
    _insert(con, "projects", [{
        "config_version_id": version_id, "project": p.name, "team": p.team, "budget_owner": p.budget_owner,
        "budget_owner_contact": p.contact, "description": p.description, "daily_budget_usd": p.daily_budget_usd,
        "weekly_budget_usd": p.weekly_budget_usd, "monthly_budget_usd": p.monthly_budget_usd,
    } for p in config.projects])
    _insert(con, "launch_windows", [{
        "config_version_id": version_id, "project": p.name, "start_date": w.start_date, "end_date": w.end_date,
        "velocity_multiplier": w.velocity_multiplier, "description": w.description,
    } for p in config.projects for w in p.launch_windows])
    _insert(con, "key_matchers", [{
        "config_version_id": version_id, "project": m.project, "match_kind": m.kind, "pattern": m.pattern,
        "kind_rank": m.kind_rank, "specificity": m.specificity, "file_order": m.file_order,
        "valid_from": m.valid_from, "valid_to": m.valid_to,
    } for m in config.matchers])
    rule = config.premium
    _insert(con, "premium_rules", [{
        "config_version_id": version_id,
        "completion_price_threshold_per_mtok_usd": rule.completion_price_per_mtok_usd,
        "blended_price_threshold_per_mtok_usd": rule.blended_price_per_mtok_usd,
        "blended_prompt_weight": rule.blended_prompt_weight,
        "blended_completion_weight": rule.blended_completion_weight,
    }])
    _insert(con, "premium_model_lists", [
        {"config_version_id": version_id, "model_pattern": pattern, "is_premium": True}
        for pattern in rule.premium_models
    ] + [
        {"config_version_id": version_id, "model_pattern": pattern, "is_premium": False}
        for pattern in rule.never_premium_models
    ])
    _insert(con, "annotations", [{
        "config_version_id": version_id, "annotation_id": a.annotation_id, "kind": a.kind,
        "start_date": a.start_date, "end_date": a.end_date, "project": a.project, "signals": list(a.signals),
        "description": a.description, "expected_change": a.expected_change,
    } for a in config.annotations])
    _insert(con, "settings", [{"config_version_id": version_id, "unused_key_days": config.unused_key_days}])


def store_config(con, config: Config, first_unbuilt_day: date | None, *, restate: bool = False) -> int:
    """Record `config` as the current version inside the caller's transaction; returns its version id."""
    # A changed configuration is in force from `first_unbuilt_day` on, so days already built keep the
    # version they were built with. The first version ever covers all earlier history; `restate` makes
    # the current version cover all history and empties the ranges of the older ones (kept as rows).
    fingerprint = config.fingerprint()
    current = con.execute(
        "select config_version_id, content_sha256 from config.config_versions where effective_to is null"
    ).fetchone()
    if current and current[1] == fingerprint:
        version_id = current[0]
    else:
        version_id = con.execute(
            "select coalesce(max(config_version_id), 0) + 1 from config.config_versions").fetchone()[0]
        effective_from = first_unbuilt_day if current and first_unbuilt_day else BEGINNING_OF_HISTORY
        if current:
            con.execute("update config.config_versions set effective_to = greatest(effective_from, ?) "
                        "where config_version_id = ?", [effective_from, current[0]])
        con.execute(
            "insert into config.config_versions (config_version_id, content_sha256, effective_from, "
            "effective_to, loaded_at, config_dir, file_sha256) values (?, ?, ?, null, current_timestamp, ?, ?)",
            [version_id, fingerprint, effective_from, str(config.config_dir), json.dumps(config.file_sha256)],
        )
        _store_version(con, config, version_id)
    if restate:
        con.execute("update config.config_versions set effective_to = effective_from "
                    "where config_version_id <> ?", [version_id])
        con.execute("update config.config_versions set effective_from = ? where config_version_id = ?",
                    [BEGINNING_OF_HISTORY, version_id])
    return version_id
