"""Ownership, premium and annotation configuration: the files' models, and the Config they make.

Each file has a pydantic model (OwnersFile, PremiumFile, AnnotationsFile; schemas/*.schema.json are theirs);
every problem raises ConfigError naming the file, the line and the field. config.versions records each
loaded configuration in the warehouse.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Discriminator, Field, Tag, model_validator

from openrouter_spend.config import settings
from openrouter_spend.config.crossfile import check_project, known_names
from openrouter_spend.config.yamlnode import (
    ANNOTATIONS_FILE,
    CONFIG_FILES,
    OWNERS_FILE,
    PREMIUM_FILE,
    ConfigModel,
    Day,
    FieldError,
    Text,
    load_file,
)

ACCOUNT_PROJECT = "*"
UNOWNED_PROJECT = "(unowned)"
SIGNALS = ("spend", "premium_share", "fallback_rate", "provider_mix")
ANNOTATION_KINDS = ("release", "incident", "launch")
MATCH_KINDS = ("key_hash", "key_name", "workspace")
DEFAULT_UNUSED_KEY_DAYS = 30

_KEY_HASH = re.compile(r"^[0-9a-f]{64}$")
_GLOB_CHARS = set("*?[]")
_MATCH_FIELDS = {"key_hash": "key_hashes", "key_name": "key_names", "workspace": "workspaces"}


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


# ----- the files, as their models -------------------------------------------------------------------------

NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]


def _key_hash(pattern: str) -> str:
    if not _KEY_HASH.match(pattern):
        raise ValueError(f"expected a 64-character lowercase hex key hash, got {pattern!r}")
    return pattern


def _project_name(name: str) -> str:
    if name in (ACCOUNT_PROJECT, UNOWNED_PROJECT) or name.startswith("("):
        raise ValueError(f"'{name}' is reserved ('{ACCOUNT_PROJECT}' is the whole account, "
                         f"'{UNOWNED_PROJECT}' the unowned keys)")
    return name


KeyHash = Annotated[Text, AfterValidator(_key_hash),
                    Field(description="sha256 of the API key", json_schema_extra={"pattern": _KEY_HASH.pattern})]
ProjectName = Annotated[Text, AfterValidator(_project_name)]


class LaunchWindowFile(ConfigModel):
    """A period in which the project is expected to spend faster than usual."""

    start: Day
    end: Day
    velocity_multiplier: Positive
    description: Text | None = None

    @model_validator(mode="after")
    def _ordered(self) -> LaunchWindowFile:
        if self.end < self.start:
            raise FieldError(("end",), f"{self.end} is before start {self.start}")
        return self


class DatedPattern(ConfigModel):
    """A matcher that applies only from valid_from and/or until valid_to (inclusive UTC dates)."""

    pattern: Text
    valid_from: Day | None = None
    valid_to: Day | None = None

    @model_validator(mode="after")
    def _ordered(self) -> DatedPattern:
        if self.valid_from and self.valid_to and self.valid_to < self.valid_from:
            raise FieldError(("valid_to",), f"{self.valid_to} is before valid_from {self.valid_from}")
        return self


class DatedKeyHash(DatedPattern):
    """A key hash matcher that applies only for a date range."""

    pattern: KeyHash


def _matcher_entries(pattern: Any, dated: type[DatedPattern]) -> Any:
    """Matcher list items: a plain pattern, or a mapping with a pattern and its validity dates."""
    return list[Annotated[Annotated[pattern, Tag("pattern")] | Annotated[dated, Tag("dated")],
                          Discriminator(lambda item: "dated" if isinstance(item, dict) else "pattern")]]


class MatchFile(ConfigModel):
    """The API keys a project owns: by sha256 key hash, key-name glob or workspace."""

    key_hashes: _matcher_entries(KeyHash, DatedKeyHash) = []
    key_names: _matcher_entries(Text, DatedPattern) = []
    workspaces: _matcher_entries(Text, DatedPattern) = []


class BudgetsFile(ConfigModel):
    """Budgets in USD of OpenRouter credits."""

    daily: NonNegative | None = None
    weekly: NonNegative | None = None
    monthly: NonNegative | None = None


class ProjectFile(ConfigModel):
    """One project of the ownership registry."""

    team: Text
    budget_owner: Text
    contact: Text
    description: Text | None = None
    budgets_usd: BudgetsFile = BudgetsFile()
    launch_windows: list[LaunchWindowFile] = []
    match: MatchFile = MatchFile()


class OwnersFile(ConfigModel):
    """owners.yaml: the ownership registry."""

    anchor: Day | None = None
    unused_key_days: Annotated[int, Field(ge=1)] = DEFAULT_UNUSED_KEY_DAYS
    projects: Annotated[dict[ProjectName, ProjectFile], Field(min_length=1)]

    def matchers(self) -> tuple[KeyMatcher, ...]:
        """Every matcher in file order: per project its key hashes, key names, then workspaces."""
        found = []
        for name, project in self.projects.items():
            for kind, entries in zip(MATCH_KINDS, (project.match.key_hashes, project.match.key_names,
                                                   project.match.workspaces), strict=True):
                for entry in entries:
                    dated = entry if isinstance(entry, DatedPattern) else DatedPattern(pattern=entry)
                    found.append(KeyMatcher(name, kind, dated.pattern, len(found) + 1, dated.valid_from,
                                            dated.valid_to))
        return tuple(found)

    @model_validator(mode="after")
    def _one_project_per_key(self) -> OwnersFile:
        seen: dict[tuple[str, str], KeyMatcher] = {}
        for matcher in self.matchers():
            other = seen.setdefault((matcher.kind, matcher.pattern), matcher)
            if other.project != matcher.project and _overlaps(other, matcher):
                raise FieldError(("projects", matcher.project, "match", _MATCH_FIELDS[matcher.kind]),
                                 f"{matcher.pattern!r} is also claimed by project {other.project!r} for "
                                 "overlapping dates; give one of them valid_from/valid_to")
        return self

    def projects_tuple(self) -> tuple[Project, ...]:
        """The registry's projects, in file order."""
        return tuple(
            Project(name, p.team, p.budget_owner, p.contact, p.description, p.budgets_usd.daily,
                    p.budgets_usd.weekly, p.budgets_usd.monthly,
                    tuple(LaunchWindow(w.start, w.end, w.velocity_multiplier, w.description or "")
                          for w in p.launch_windows))
            for name, p in self.projects.items())


class BlendedWeightsFile(ConfigModel):
    """Weights of prompt and completion prices in the blended price."""

    prompt: NonNegative = 3.0
    completion: NonNegative = 1.0

    @model_validator(mode="after")
    def _not_both_zero(self) -> BlendedWeightsFile:
        if self.prompt + self.completion <= 0:
            raise FieldError(("completion",), "prompt and completion weights cannot both be 0")
        return self


ModelGlob = Annotated[Text, Field(description="a model slug or glob, e.g. anthropic/claude-*")]


class PremiumFile(ConfigModel):
    """premium.yaml: which models count as premium, given a day's price snapshot."""

    anchor: Day | None = None
    completion_price_per_mtok_usd: NonNegative | None = None
    blended_price_per_mtok_usd: NonNegative | None = None
    blended_weights: BlendedWeightsFile = BlendedWeightsFile()
    premium_models: list[ModelGlob] = []
    never_premium_models: list[ModelGlob] = []

    @model_validator(mode="after")
    def _some_rule(self) -> PremiumFile:
        if self.completion_price_per_mtok_usd is None and self.blended_price_per_mtok_usd is None \
                and not self.premium_models:
            raise FieldError(("completion_price_per_mtok_usd",), "no premium rule: set a price threshold "
                             "(completion_price_per_mtok_usd or blended_price_per_mtok_usd) or premium_models")
        return self

    def rule(self) -> PremiumRule:
        """The premium rule this file states."""
        return PremiumRule(self.completion_price_per_mtok_usd, self.blended_price_per_mtok_usd,
                           self.blended_weights.prompt, self.blended_weights.completion,
                           tuple(self.premium_models), tuple(self.never_premium_models))


class AnnotationFile(ConfigModel):
    """A release, incident or launch that explains movements of some signals."""

    id: Text
    kind: Literal[ANNOTATION_KINDS]
    start: Day
    end: Day | None = None
    project: Annotated[Text, AfterValidator(check_project)]
    signals: Annotated[list[Literal[SIGNALS]], Field(min_length=1)]
    description: Text
    expected_change: Positive | None = None

    @model_validator(mode="after")
    def _ordered(self) -> AnnotationFile:
        if self.end is not None and self.end < self.start:
            raise FieldError(("end",), f"{self.end} is before start {self.start}")
        return self


class AnnotationsFile(ConfigModel):
    """annotations.yaml: the calendar of releases, incidents and launches."""

    anchor: Day | None = None
    annotations: list[AnnotationFile] = []

    @model_validator(mode="after")
    def _unique_ids(self) -> AnnotationsFile:
        ids: set[str] = set()
        for index, annotation in enumerate(self.annotations):
            if annotation.id in ids:
                raise FieldError(("annotations", index, "id"), f"duplicate annotation id {annotation.id!r}")
            ids.add(annotation.id)
        return self

    def annotations_tuple(self) -> tuple[Annotation, ...]:
        """The calendar's annotations, in file order (an annotation without `end` lasts one day)."""
        return tuple(Annotation(a.id, a.kind, a.start, a.end or a.start, a.project, tuple(a.signals),
                                a.description, a.expected_change) for a in self.annotations)


def _overlaps(a: KeyMatcher, b: KeyMatcher) -> bool:
    a_from, a_to = a.valid_from or date.min, a.valid_to or date.max
    b_from, b_to = b.valid_from or date.min, b.valid_to or date.max
    return a_from <= b_to and b_from <= a_to


def load_config(config_dir: Path | None = None) -> Config:
    """Read and validate the configuration directory (default: settings.config_dir())."""
    folder = Path(config_dir) if config_dir else settings.config_dir()
    owners, _ = load_file(OwnersFile, folder / OWNERS_FILE)
    premium, _ = load_file(PremiumFile, folder / PREMIUM_FILE)
    annotations, _ = load_file(AnnotationsFile, folder / ANNOTATIONS_FILE,
                               context=known_names(projects=owners.projects))
    hashes = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in CONFIG_FILES}
    return Config(folder, owners.projects_tuple(), owners.matchers(), premium.rule(),
                  annotations.annotations_tuple(), owners.unused_key_days, hashes)
