"""The synthetic organisation: keys, workspaces, per-day activity, credits, generations and planted events.

Every per-day value is a function of (seed, date, entity) only, computed lazily and cached, so reruns and
clock moves are stable. Money is kept in integer nano-dollars internally so account rows are exact sums
of per-key rows.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import math
import os
import random
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple

from openrouter_emulator.catalog import (
    MODEL_BY_ID,
    MODEL_FALLBACK_SOURCES,
    MODELS,
    PATTERNS,
    PROVIDER_BY_NAME,
    PROVIDERS,
    KeySpec,
    Model,
    PriceBook,
    Provider,
    Record,
    endpoint_id,
    pricing_form,
)
from openrouter_emulator.scenarios import SCENARIOS, Scenario, get_scenario

NANO = 1_000_000_000
SPAN_DAYS = 90
WINDOW_DAYS = 30
BYOK_FEE_RATE = 0.05
BYOK_REQUEST_SHARE = 0.95
GENERATION_DAYS_CACHED = 16
FINAL_RUNWAY_DAYS = 4.2
PRE_TOPUP_RUNWAY_DAYS = 7.8
DEFAULT_SEED = 42
__all__ = ["SCENARIOS", "Scenario", "SyntheticOrg", "build_org"]

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()


def _rng(*parts: object) -> random.Random:
    return random.Random(int.from_bytes(_digest(*parts)[:8], "big"))


def _base62(raw: bytes, length: int) -> str:
    number = int.from_bytes(raw, "big")
    chars = []
    while len(chars) < length:
        number, rem = divmod(number, 62)
        chars.append(_BASE62[rem])
    return "".join(chars)


def _random_token(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(_BASE62) for _ in range(length))


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def iso_micro(moment: datetime) -> str:
    """2026-10-26T14:03:11.482913+00:00, the form /keys and /generation use for creation times."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def iso_z(moment: datetime) -> str:
    """2026-10-26T14:03:11Z, the form expiry and last-used timestamps use."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def nanos_to_usd(nanos: int) -> float:
    return nanos / NANO


def utc_today() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class Workspace(Record):
    id: str
    slug: str
    name: str
    description: str
    created_at: datetime
    created_by: str
    default_text_model: str | None
    is_default: bool
    app_url: str
    app_id: int


@dataclass(frozen=True)
class OrgMember(Record):
    id: str
    handle: str
    email: str
    first_name: str | None
    last_name: str | None
    role: str

    @property
    def display_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p) or self.email


@dataclass(frozen=True)
class ApiKey(Record):
    hash: str
    name: str
    label: str
    workspace_id: str
    workspace_name: str
    creator_user_id: str
    created_at: datetime
    disabled_at: datetime | None
    expires_at: datetime | None
    external_user: str | None
    limit: float | None
    limit_reset: str | None
    include_byok_in_limit: bool
    byok_provider: str | None
    history_usage_nanos: int
    history_byok_nanos: int
    history_last_used_at: datetime | None
    spec: KeySpec = field(repr=False, compare=False)

    @property
    def project(self) -> str:
        return self.workspace_name

    def exists_at(self, now: datetime) -> bool:
        return self.created_at <= now

    def disabled_at_time(self, now: datetime) -> bool:
        return self.disabled_at is not None and self.disabled_at <= now

    def expired_at_time(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at < now


class ActivityRow(NamedTuple):
    model_id: str
    endpoint_id: str
    provider_name: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cached_tokens: int
    usage_nanos: int
    byok_nanos: int
    byok_requests: int


@dataclass
class DayEffects:
    """How planted events bend one key's traffic on one day."""

    request_factor: float = 1.0
    prompt_factor: float = 1.0
    flat_output: bool = False
    down_providers: frozenset[str] = frozenset()
    premium_progress: float | None = None
    # Share of the day's requests that fail over to another provider (None: the usual ~3%).
    fallback_rate: float | None = None


@dataclass(frozen=True)
class KeyUsage:
    usage_nanos: int = 0
    weekly_nanos: int = 0
    monthly_nanos: int = 0
    byok_nanos: int = 0
    byok_weekly_nanos: int = 0
    byok_monthly_nanos: int = 0
    last_used_day: date | None = None


PREMIUM_DRIFT_TARGETS = {"anthropic/claude-opus-4": 0.12, "anthropic/claude-sonnet-4": 0.18}


def _cost_usd(model: Model, prompt: int, completion: int, cached: int) -> float:
    if model.is_free or model.is_router:
        return 0.0
    return (prompt - cached) * model.prompt_price + cached * model.cache_read_price + completion * model.completion_price


class SyntheticOrg:
    """A deterministic OpenRouter organisation as of any clock time inside its data span."""

    def __init__(self, scenario: str | Scenario = "default", seed: int = DEFAULT_SEED,
                 anchor_date: date | None = None):
        self.world = get_scenario(scenario)
        self.scenario = self.world.name
        self.seed = int(seed)
        self.anchor_date = anchor_date or utc_today()
        self.span_start = self.anchor_date - timedelta(days=SPAN_DAYS)
        self.span_end = self.anchor_date - timedelta(days=1)
        self.organization_id = "org_" + _base62(_digest(self.seed, "organization"), 27)
        self.providers: list[Provider] = list(PROVIDERS)
        self.models: list[Model] = list(MODELS)
        self.members = [self._build_member(m) for m in self.world.members]
        self._member_by_handle = {m.handle: m for m in self.members}
        self.workspaces = [self._build_workspace(w) for w in self.world.workspaces]
        self._workspace_by_slug = {w.slug: w for w in self.workspaces}
        self.default_workspace = next(w for w in self.workspaces if w.is_default)
        self.keys = [self._build_key(spec) for spec in self.world.keys]
        self._key_by_hash = {k.hash: k for k in self.keys}
        self._key_by_name = {k.name: k for k in self.keys}
        self._event_plan = self.world.plan_events(self.anchor_date) if self.world.plan_events else {}
        self.prices = PriceBook(tuple(self._event_plan.get("price_changes", ())))
        self._lock = threading.RLock()
        self._days: dict[date, dict[str, tuple[ActivityRow, ...]]] = {}
        self._day_usage: dict[date, tuple[int, int]] = {}
        self._usage_snapshots: dict[date, dict[str, KeyUsage]] = {}
        self._whole_day_usage: dict[date, dict[str, tuple[int, int]]] = {}
        # Generation records are bulky (~4 MB a day), so only the most recently used days stay cached.
        self._generations: OrderedDict[date, tuple[dict[str, dict], list[dict]]] = OrderedDict()
        self._credit_plan: tuple[int, list[tuple[datetime, int]]] | None = None
        self._events: list[dict] | None = None

    # ----- construction -------------------------------------------------------------------------------

    def _build_member(self, member) -> OrgMember:
        return OrgMember(
            id="user_" + _base62(_digest(self.seed, "user", member.handle), 27),
            handle=member.handle,
            email=member.email,
            first_name=member.first_name,
            last_name=member.last_name,
            role=member.role,
        )

    def _moment(self, days_ago: float, *salt: object, earliest_hour: int = 8, latest_hour: int = 19) -> datetime:
        day = self.anchor_date - timedelta(days=math.ceil(days_ago))
        rng = _rng(self.seed, "moment", *salt)
        seconds = rng.randrange(earliest_hour * 3600, latest_hour * 3600)
        return _midnight(day) + timedelta(seconds=seconds, microseconds=rng.randrange(1_000_000))

    def _build_workspace(self, spec) -> Workspace:
        return Workspace(
            id=str(uuid.UUID(bytes=_digest(self.seed, "workspace", spec.slug)[:16], version=4)),
            slug=spec.slug,
            name=spec.name,
            description=spec.description,
            created_at=self._moment(spec.created_days_ago, "workspace", spec.slug),
            created_by=self._member_by_handle[spec.creator].id,
            default_text_model=spec.default_text_model,
            is_default=spec.is_default,
            app_url=spec.app_url,
            app_id=spec.app_id,
        )

    def _build_key(self, spec: KeySpec) -> ApiKey:
        secret = hashlib.sha256(f"{self.seed}|secret|{spec.name}".encode()).hexdigest()
        created_at = self._moment(spec.created_days_ago, "key-created", spec.name)
        disabled_at = (self._moment(spec.disabled_days_ago, "key-disabled", spec.name)
                       if spec.disabled_days_ago is not None else None)
        expires_at = (_midnight(self.anchor_date - timedelta(days=math.ceil(spec.expires_days_ago)))
                      if spec.expires_days_ago is not None else None)
        history, history_byok, history_last_used = self._key_history(spec, created_at, disabled_at, expires_at)
        workspace = self._workspace_by_slug[spec.workspace]
        return ApiKey(
            hash=hashlib.sha256(f"{self.seed}|key|{spec.name}".encode()).hexdigest(),
            name=spec.name,
            label=f"sk-or-v1-{secret[:3]}...{secret[-4:]}",
            workspace_id=workspace.id,
            workspace_name=workspace.name,
            creator_user_id=self._member_by_handle[spec.creator].id,
            created_at=created_at,
            disabled_at=disabled_at,
            expires_at=expires_at,
            external_user=spec.external_user,
            limit=spec.limit,
            limit_reset=spec.limit_reset,
            include_byok_in_limit=spec.include_byok_in_limit,
            byok_provider=spec.byok_provider,
            history_usage_nanos=history,
            history_byok_nanos=history_byok,
            history_last_used_at=history_last_used,
            spec=spec,
        )

    def _last_possible_day(self, spec: KeySpec, disabled_at: datetime | None, expires_at: datetime | None,
                           through: date | None = None) -> date:
        """The last day a key could have been used (at most `through`, default the last completed day)."""
        last = through or self.anchor_date - timedelta(days=1)
        if disabled_at is not None:
            last = min(last, disabled_at.date() - timedelta(days=1))
        if expires_at is not None:
            last = min(last, expires_at.date() - timedelta(days=1))
        if spec.idle_days is not None:
            last = min(last, self.anchor_date - timedelta(days=math.ceil(spec.idle_days)))
        return last

    def _key_history(self, spec: KeySpec, created_at: datetime, disabled_at: datetime | None,
                     expires_at: datetime | None) -> tuple[int, int, datetime | None]:
        """Lifetime spend before the data span, estimated from the key's profile."""
        if spec.never_used or not spec.mix:
            return 0, 0, None
        history_end = min(self.span_start - timedelta(days=1), self._last_possible_day(spec, disabled_at, expires_at))
        days = (history_end - created_at.date()).days + 1
        if days <= 0:
            return 0, 0, None
        credits_per_day, byok_per_day = self._estimated_daily_cost(spec)
        rng = _rng(self.seed, "history", spec.name)
        # Keys grew into their current volume, so their past runs below today's rate.
        factor = rng.uniform(0.45, 0.75)
        last_used = _midnight(history_end) + timedelta(seconds=rng.randrange(9 * 3600, 86000))
        return round(credits_per_day * days * factor * NANO), round(byok_per_day * days * factor * NANO), last_used

    def _estimated_daily_cost(self, spec: KeySpec) -> tuple[float, float]:
        weekday_p, weekend_p, weekend_factor = PATTERNS[spec.pattern]
        activity = (5 * weekday_p + 2 * weekend_p * weekend_factor) / 7
        if spec.weekly_on is not None:
            activity = 1 / 7
        credits = byok = 0.0
        for model_id, weight in spec.mix:
            model = MODEL_BY_ID[model_id]
            cached = round(spec.prompt_tokens * spec.cache_ratio) if model.supports_caching else 0
            completion = 0 if model.is_embedding else spec.completion_tokens
            per_request = _cost_usd(model, spec.prompt_tokens, completion, cached)
            for provider, share in model.providers:
                cost = spec.requests * activity * weight * share * per_request
                if provider == spec.byok_provider:
                    byok += cost * BYOK_REQUEST_SHARE
                    credits += cost * (1 - BYOK_REQUEST_SHARE) + cost * BYOK_REQUEST_SHARE * BYOK_FEE_RATE
                else:
                    credits += cost
        return credits, byok

    # ----- lookups ------------------------------------------------------------------------------------

    def key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, or None."""
        return self._key_by_hash.get(key_hash)

    def key_by_name(self, name: str) -> ApiKey:
        """The key with this name (KeyError if none)."""
        return self._key_by_name[name]

    def workspace_by_id(self, workspace_id: str) -> Workspace | None:
        """The workspace with this id, or None."""
        return next((w for w in self.workspaces if w.id == workspace_id), None)

    def workspace_by_name(self, name: str) -> Workspace:
        """The workspace with this name or slug (KeyError if none)."""
        for workspace in self.workspaces:
            if name in (workspace.name, workspace.slug):
                return workspace
        raise KeyError(name)

    def member_by_id(self, user_id: str) -> OrgMember | None:
        """The organisation member with this Clerk id, or None."""
        return next((m for m in self.members if m.id == user_id), None)

    def model(self, model_id: str) -> Model:
        """The catalogue model with this id (KeyError if none)."""
        return MODEL_BY_ID[model_id]

    def provider(self, name: str) -> Provider:
        """The provider with this display name (KeyError if none)."""
        return PROVIDER_BY_NAME[name]

    def span_days(self) -> list[date]:
        """Every day that has data, oldest first."""
        return [self.span_start + timedelta(days=i) for i in range(SPAN_DAYS)]

    @staticmethod
    def activity_window(now: datetime) -> tuple[date, date]:
        """The /activity window as of `now`: the 30 completed UTC days before now."""
        today = now.astimezone(UTC).date()
        return today - timedelta(days=WINDOW_DAYS), today - timedelta(days=1)

    # ----- planted events -----------------------------------------------------------------------------

    def effects(self, key: ApiKey, day: date) -> DayEffects:
        """The planted-event effects on one key's traffic for one day (none in the quiet scenario)."""
        plan = self._event_plan
        effects = DayEffects()
        if not plan:
            return effects
        slug = key.spec.workspace
        drift = plan.get("premium_drift")
        if drift and slug == drift["workspace"] and day >= drift["start"]:
            effects.premium_progress = min(1.0, (day - drift["start"]).days / drift["ramp_days"])
        outage = plan.get("provider_outage")
        if outage and slug == outage["workspace"] and outage["start"] <= day <= outage["end"]:
            effects.down_providers = frozenset({outage["provider"]})
        release = plan.get("release_spend_jump")
        if release and slug == release["workspace"] and day >= release["start"]:
            effects.request_factor *= release["request_factor"]
            effects.prompt_factor *= release["prompt_factor"]
        runaway = plan.get("runaway_loop")
        if runaway and key.name == runaway["key"] and day in runaway["factors"]:
            effects.request_factor *= runaway["factors"][day]
            # A loop that repeats its work produces output in proportion; one that spins produces none more.
            effects.flat_output = runaway.get("output", "flat") == "flat"
        surge = plan.get("fallback_surge")
        if surge and slug == surge["workspace"] and day == surge["day"]:
            effects.fallback_rate = surge["rate"]
        return effects

    @property
    def events(self) -> list[dict]:
        """Planted events (empty in the quiet scenario), each dated inside the last 14 completed days."""
        with self._lock:
            if self._events is None:
                self._events = self._describe_events() if self._event_plan else []
            return [dict(e) for e in self._events]

    def _event(self, name: str, start: date, end: date, description: str, workspace_slug: str | None = None,
               key: ApiKey | None = None, **details: Any) -> dict:
        workspace = self._workspace_by_slug[workspace_slug] if workspace_slug else None
        return {
            "event": name,
            "start_date": start,
            "end_date": end,
            "workspace_id": workspace.id if workspace else None,
            "project": workspace.name if workspace else None,
            "api_key_hash": key.hash if key else None,
            "description": description,
            **details,
        }

    def _describe_events(self) -> list[dict]:
        plan = self._event_plan
        events = []
        outage = plan.get("provider_outage")
        if outage:
            events.append(self._event(
                "provider_outage", outage["start"], outage["end"],
                f"{outage['provider']} is down for the {outage['workspace']} project: its traffic on that provider "
                "is served by the models' other providers instead, and generations show failed attempts before a "
                "fallback.",
                outage["workspace"], provider_name=outage["provider"],
                provider_slug=PROVIDER_BY_NAME[outage["provider"]].slug))
        drift = plan.get("premium_drift")
        if drift:
            events.append(self._event(
                "premium_drift", drift["start"], drift["end"],
                f"{drift['workspace']} shifts traffic towards claude-opus-4 and claude-sonnet-4 over "
                f"{drift['ramp_days']} days; the premium share of its spend climbs steadily and stays high.",
                drift["workspace"], premium_models=sorted(PREMIUM_DRIFT_TARGETS)))
        release = plan.get("release_spend_jump")
        if release:
            events.append(self._event(
                "release_spend_jump", release["start"], release["end"],
                f"A {release['workspace']} release adds more requests and longer contexts; its daily spend "
                "roughly doubles from the release day onward.",
                release["workspace"], request_factor=release["request_factor"],
                prompt_factor=release["prompt_factor"]))
        runaway = plan.get("runaway_loop")
        if runaway:
            runaway_key = self._key_by_name[runaway["key"]]
            low, high = min(runaway["factors"].values()), max(runaway["factors"].values())
            output = ("while total output tokens stay flat" if runaway.get("output", "flat") == "flat"
                      else "on its usual model, repeating its work: output tokens grow in proportion")
            events.append(self._event(
                "runaway_loop", runaway["start"], runaway["end"],
                f"{runaway_key.name} loops: requests run {low:g}-{high:g}x normal for {len(runaway['factors'])} "
                f"day(s) {output}.",
                runaway_key.spec.workspace, runaway_key,
                request_factors={d.isoformat(): f for d, f in runaway["factors"].items()}))
        surge = plan.get("fallback_surge")
        if surge:
            events.append(self._event(
                "fallback_surge", surge["day"], surge["day"],
                f"A provider of the {surge['workspace']} project's models fails intermittently: about "
                f"{surge['rate']:.0%} of its requests are served by another provider after a failed attempt.",
                surge["workspace"], fallback_rate=surge["rate"]))
        for change in plan.get("price_changes", ()):
            old, new = MODEL_BY_ID[change.model_id], self.prices.at(change.model_id, change.at)
            events.append(self._event(
                "price_change", change.at.date(), change.at.date(),
                f"{change.model_id} is repriced at {change.at:%H:%M} UTC: prompt ${old.prompt_price * 1e6:g} -> "
                f"${new.prompt_price * 1e6:g}, completion ${old.completion_price * 1e6:g} -> "
                f"${new.completion_price * 1e6:g} per 1M tokens. /models shows only the price in force; requests "
                "from the instant on are charged the new price.",
                model=change.model_id, model_permaslug=old.canonical_slug, at=change.at,
                old_pricing=pricing_form(old), new_pricing=pricing_form(new)))
        if plan.get("topups"):
            initial, topups = self.credit_plan()
            for moment, amount in topups:
                events.append(self._event(
                    "topups", moment.date(), moment.date(),
                    f"Credit top-up of ${nanos_to_usd(amount):,.2f}.", amount_usd=nanos_to_usd(amount), at=moment))
            events.append(self._low_runway_event())
        return events

    def _low_runway_event(self) -> dict:
        series = self.runway_series()
        newest = series[-1]
        start = newest["date"]
        for point in reversed(series):
            if point["runway_days"] is None or point["runway_days"] >= 7:
                break
            start = point["date"]
        return self._event(
            "low_runway", start, newest["date"],
            f"Credit balance ${newest['balance_usd']:,.2f} covers {newest['runway_days']:.1f} days of the "
            "trailing 7-day burn on the newest completed day.",
            runway_days=newest["runway_days"], balance_usd=newest["balance_usd"])

    # ----- activity -----------------------------------------------------------------------------------

    def _key_rows(self, key: ApiKey, day: date, through: date | None = None) -> tuple[ActivityRow, ...]:
        """One key's rows for a whole day; `through` lets the anchor day (today, never in /activity) have them."""
        spec = key.spec
        last_day = through or self.span_end
        if spec.never_used or not spec.mix or day < key.created_at.date() or not self.span_start <= day <= last_day:
            return ()
        if day > self._last_possible_day(spec, key.disabled_at, key.expires_at, through):
            return ()
        rng = _rng(self.seed, "activity", day.isoformat(), spec.name)
        weekend = day.weekday() >= 5
        weekday_p, weekend_p, weekend_factor = PATTERNS[spec.pattern]
        draw = rng.random()
        if spec.weekly_on is not None:
            active = day.weekday() == spec.weekly_on and draw < 0.95
        else:
            active = draw < (weekend_p if weekend else weekday_p)
        if not active:
            return ()
        noise = rng.lognormvariate(0.0, 0.18 * spec.noise_scale)
        effects = self.effects(key, day)
        if effects.flat_output:
            noise = max(noise, 0.85)
        volume = spec.requests * (weekend_factor if weekend else 1.0) * noise * effects.request_factor

        weights = [(model_id, weight * rng.uniform(0.85, 1.15)) for model_id, weight in spec.mix]
        if effects.premium_progress is not None:
            weights = _drift_weights(weights, spec.mix, effects.premium_progress)
        total_weight = sum(w for _, w in weights)

        rows = []
        for model_id, weight in weights:
            model = self.prices.for_day(model_id, day)
            model_requests = volume * weight / total_weight
            shares = [(name, share * rng.uniform(0.9, 1.1)) for name, share in model.providers]
            up_total = sum(s for name, s in shares if name not in effects.down_providers)
            for provider_name, share in shares:
                prompt_noise = rng.lognormvariate(0.0, 0.08 * spec.noise_scale)
                completion_noise = rng.lognormvariate(0.0, 0.1 * spec.noise_scale)
                cache_noise = rng.uniform(0.8, 1.2)
                reasoning_share = rng.uniform(0.25, 0.55)
                if provider_name in effects.down_providers or up_total <= 0:
                    continue
                requests = round(model_requests * share / up_total)
                if requests <= 0:
                    continue
                rows.append(self._row(spec, model, provider_name, requests, effects, prompt_noise,
                                      completion_noise, cache_noise, reasoning_share))
        return tuple(rows)

    @staticmethod
    def _row(spec: KeySpec, model: Model, provider_name: str, requests: int, effects: DayEffects,
             prompt_noise: float, completion_noise: float, cache_noise: float, reasoning_share: float) -> ActivityRow:
        prompt = round(requests * spec.prompt_tokens * effects.prompt_factor * prompt_noise)
        completion_per_request = 0 if model.is_embedding else spec.completion_tokens
        if effects.flat_output:
            completion_per_request /= effects.request_factor
        completion = round(requests * completion_per_request * completion_noise)
        thinks = model.reasoning and model.author != "anthropic"
        reasoning = round(completion * reasoning_share) if thinks else 0
        cached = min(prompt, round(prompt * spec.cache_ratio * cache_noise)) if model.supports_caching else 0
        cost = _cost_usd(model, prompt, completion, cached)
        byok_requests = round(requests * BYOK_REQUEST_SHARE) if provider_name == spec.byok_provider else 0
        byok_cost = cost * byok_requests / requests
        credits = cost - byok_cost + byok_cost * BYOK_FEE_RATE
        return ActivityRow(model.id, endpoint_id(model.id, provider_name), provider_name, requests, prompt,
                           completion, reasoning, cached, round(credits * NANO), round(byok_cost * NANO),
                           byok_requests)

    def key_rows(self, day: date) -> dict[str, tuple[ActivityRow, ...]]:
        """Per-key activity rows for one day (internal form), computed once and cached."""
        with self._lock:
            rows = self._days.get(day)
            if rows is None:
                rows = {}
                for key in self.keys:
                    key_rows = self._key_rows(key, day)
                    if key_rows:
                        rows[key.hash] = key_rows
                self._days[day] = rows
                self._day_usage[day] = (
                    sum(r.usage_nanos for krs in rows.values() for r in krs),
                    sum(r.byok_nanos for krs in rows.values() for r in krs),
                )
            return rows

    def iter_key_rows(self, day: date) -> Iterator[tuple[ApiKey, ActivityRow]]:
        """(key, row) pairs for one day in catalogue order."""
        rows = self.key_rows(day)
        for key in self.keys:
            for row in rows.get(key.hash, ()):
                yield key, row

    def activity(self, date: date | str, api_key_hash: str | None = None, workspace_id: str | None = None,
                 group_by: str | None = None, user_id: str | None = None) -> list[dict]:
        """Exactly the `data` rows /activity returns for one day with these filters (faults aside)."""
        day = _as_date(date)
        grouped = group_by == "workspace"
        totals: dict[tuple[str, str | None], list[int]] = {}
        models: dict[str, tuple[str, str]] = {}
        for key, row in self.iter_key_rows(day):
            if api_key_hash is not None and key.hash != api_key_hash:
                continue
            if workspace_id is not None and key.workspace_id != workspace_id:
                continue
            if user_id is not None and key.creator_user_id != user_id:
                continue
            bucket = totals.setdefault((row.endpoint_id, key.workspace_id if grouped else None), [0] * 8)
            for index, value in enumerate((row.usage_nanos, row.byok_nanos, row.requests, row.prompt_tokens,
                                           row.completion_tokens, row.reasoning_tokens, row.cached_tokens,
                                           row.byok_requests)):
                bucket[index] += value
            models[row.endpoint_id] = (row.model_id, row.provider_name)
        out = []
        for (endpoint, workspace), values in totals.items():
            model_id, provider_name = models[endpoint]
            model = MODEL_BY_ID[model_id]
            item = {
                "date": day.isoformat(),
                "model": model.id,
                "model_permaslug": model.canonical_slug,
                "endpoint_id": endpoint,
                "provider_name": provider_name,
                "usage": nanos_to_usd(values[0]),
                "byok_usage_inference": nanos_to_usd(values[1]),
                "requests": values[2],
                "prompt_tokens": values[3],
                "completion_tokens": values[4],
                "reasoning_tokens": values[5],
                "cached_tokens": values[6],
            }
            if grouped:
                item["workspace_id"] = workspace
            out.append(item)
        out.sort(key=lambda r: (r["model_permaslug"], r["model"], r["provider_name"], r.get("workspace_id") or ""))
        return out

    def daily_spend(self, date: date | str) -> float:
        """Credits spend (sum of `usage`) for one day across all keys."""
        day = _as_date(date)
        self.key_rows(day)
        return nanos_to_usd(self._day_usage[day][0])

    def key_daily_spend(self, key_hash: str, date: date | str) -> float:
        """Credits spend of one key on one day."""
        return nanos_to_usd(sum(r.usage_nanos for r in self.key_rows(_as_date(date)).get(key_hash, ())))

    def daily_byok_spend(self, date: date | str) -> float:
        """BYOK spend (sum of `byok_usage_inference`) for one day across all keys."""
        day = _as_date(date)
        self.key_rows(day)
        return nanos_to_usd(self._day_usage[day][1])

    def _daily_usage_nanos(self, day: date) -> int:
        self.key_rows(day)
        return self._day_usage[day][0]

    # ----- key state as of a clock time ---------------------------------------------------------------

    def _day_usage_by_key(self, day: date) -> dict[str, tuple[int, int]]:
        """(credits, BYOK) nano-dollars per key over the whole of `day`, the anchor day (today) included."""
        with self._lock:
            cached = self._whole_day_usage.get(day)
            if cached is not None:
                return cached
            if self.span_start <= day <= self.span_end:
                rows = self.key_rows(day)
            elif day == self.anchor_date:
                rows = {key.hash: self._key_rows(key, day, through=day) for key in self.keys}
            else:
                rows = {}
            cached = {key_hash: (sum(r.usage_nanos for r in key_rows), sum(r.byok_nanos for r in key_rows))
                      for key_hash, key_rows in rows.items() if key_rows}
            self._whole_day_usage[day] = cached
            return cached

    def usage_so_far_today(self, now: datetime) -> dict[str, tuple[int, int]]:
        """(credits, BYOK) nano-dollars each key has spent on the current UTC day up to `now` (a partial day).

        The real /credits and /keys count the current day's spend as it happens (openrouter-api.md §2.2:
        `usage_daily` is the partial current day); the day's traffic is taken as spread evenly over it.
        """
        moment = now.astimezone(UTC)
        elapsed = (moment - _midnight(moment.date())).total_seconds() / 86400
        return {key_hash: (math.floor(usage * elapsed), math.floor(byok * elapsed))
                for key_hash, (usage, byok) in self._day_usage_by_key(moment.date()).items()}

    def _usage_snapshot(self, today: date) -> dict[str, KeyUsage]:
        """Lifetime/weekly/monthly totals per key over the completed days before `today`."""
        with self._lock:
            cached = self._usage_snapshots.get(today)
            if cached is not None:
                return cached
            week_start = today - timedelta(days=today.weekday())
            month_start = today.replace(day=1)
            acc = {k.hash: [k.history_usage_nanos, 0, 0, k.history_byok_nanos, 0, 0, None] for k in self.keys}
            for day in self.span_days():
                if day >= today:
                    break
                in_week, in_month = day >= week_start, day >= month_start
                for key_hash, rows in self.key_rows(day).items():
                    usage = sum(r.usage_nanos for r in rows)
                    byok = sum(r.byok_nanos for r in rows)
                    slot = acc[key_hash]
                    slot[0] += usage
                    slot[3] += byok
                    if in_week:
                        slot[1] += usage
                        slot[4] += byok
                    if in_month:
                        slot[2] += usage
                        slot[5] += byok
                    slot[6] = day
            snapshot = {h: KeyUsage(*values) for h, values in acc.items()}
            self._usage_snapshots[today] = snapshot
            return snapshot

    def key_usage_as_of(self, key_hash: str, now: datetime, include_today: bool = False) -> dict:
        """The usage fields /keys reports for one key at clock time `now` (plus last_used_at).

        With `include_today` the current day's spend so far counts, as on the real API; without, the key looks
        as it did when the current day began (the replay clock's end-of-day snapshots).
        """
        key = self._key_by_hash[key_hash]
        usage = self._usage_snapshot(now.astimezone(UTC).date())[key_hash]
        today, byok_today = self.usage_so_far_today(now).get(key_hash, (0, 0)) if include_today else (0, 0)
        return {
            "usage": nanos_to_usd(usage.usage_nanos + today),
            "usage_daily": nanos_to_usd(today),
            "usage_weekly": nanos_to_usd(usage.weekly_nanos + today),
            "usage_monthly": nanos_to_usd(usage.monthly_nanos + today),
            "byok_usage": nanos_to_usd(usage.byok_nanos + byok_today),
            "byok_usage_daily": nanos_to_usd(byok_today),
            "byok_usage_weekly": nanos_to_usd(usage.byok_weekly_nanos + byok_today),
            "byok_usage_monthly": nanos_to_usd(usage.byok_monthly_nanos + byok_today),
            "last_used_at": self._last_used_at(key, usage, now, used_today=today + byok_today > 0),
        }

    def _last_used_at(self, key: ApiKey, usage: KeyUsage, now: datetime, used_today: bool = False) -> datetime | None:
        if used_today:
            # Traffic runs all day, so the last request was a few minutes ago.
            rng = _rng(self.seed, "last-used-today", key.name, now.date().isoformat())
            return max(_midnight(now.astimezone(UTC).date()), now - timedelta(seconds=rng.randrange(1, 600)))
        if usage.last_used_day is not None:
            rng = _rng(self.seed, "last-used", key.name, usage.last_used_day.isoformat())
            earliest = 20 if key.spec.pattern in ("service", "batch") else 15
            seconds = rng.randrange(earliest * 3600, 86399)
            return _midnight(usage.last_used_day) + timedelta(seconds=seconds, microseconds=rng.randrange(10**6))
        if key.history_last_used_at is not None and key.history_last_used_at < now:
            return key.history_last_used_at
        return None

    def key_item(self, key: ApiKey, now: datetime, include_today: bool = False) -> dict:
        """The /keys item for one key at clock time `now` (the current day's spend counted with include_today)."""
        usage = self.key_usage_as_of(key.hash, now, include_today)
        limit_remaining = None
        if key.limit is not None:
            period = {"daily": "usage_daily", "weekly": "usage_weekly", "monthly": "usage_monthly"}.get(
                key.limit_reset or "", "usage")
            spent = usage[period] + (usage["byok_" + period] if key.include_byok_in_limit else 0.0)
            limit_remaining = round(max(0.0, key.limit - spent), 9)
        disabled = key.disabled_at_time(now)
        last_used = usage["last_used_at"]
        return {
            "hash": key.hash,
            "name": key.name,
            "label": key.label,
            "disabled": disabled,
            "limit": key.limit,
            "limit_remaining": limit_remaining,
            "limit_reset": key.limit_reset,
            "include_byok_in_limit": key.include_byok_in_limit,
            "usage": usage["usage"],
            "usage_daily": usage["usage_daily"],
            "usage_weekly": usage["usage_weekly"],
            "usage_monthly": usage["usage_monthly"],
            "byok_usage": usage["byok_usage"],
            "byok_usage_daily": usage["byok_usage_daily"],
            "byok_usage_weekly": usage["byok_usage_weekly"],
            "byok_usage_monthly": usage["byok_usage_monthly"],
            "created_at": iso_micro(key.created_at),
            "updated_at": iso_micro(key.disabled_at if disabled and key.disabled_at else key.created_at),
            "creator_user_id": key.creator_user_id,
            "workspace_id": key.workspace_id,
            "expires_at": iso_z(key.expires_at) if key.expires_at else None,
            "external_user": key.external_user,
            "last_used_at": iso_z(last_used) if last_used else None,
        }

    def list_keys(self, now: datetime, workspace_id: str | None = None, include_disabled: bool = False,
                  include_expired: bool = False) -> list[ApiKey]:
        """Keys /keys would list at `now` (all pages), newest first; workspace_id None means the default one."""
        workspace_id = workspace_id or self.default_workspace.id
        keys = [
            k for k in self.keys
            if k.workspace_id == workspace_id and k.exists_at(now)
            and (include_disabled or not k.disabled_at_time(now))
            and (include_expired or not k.expired_at_time(now))
        ]
        keys.sort(key=lambda k: (k.created_at, k.hash), reverse=True)
        return keys

    # ----- credits ------------------------------------------------------------------------------------

    def credit_plan(self) -> tuple[int, list[tuple[datetime, int]]]:
        """(credits purchased before the data span, [(top-up time, amount)]) in nano-dollars."""
        with self._lock:
            if self._credit_plan is None:
                self._credit_plan = self._plan_credits()
            return self._credit_plan

    def _history_usage_nanos(self) -> int:
        return sum(k.history_usage_nanos for k in self.keys)

    def _plan_credits(self) -> tuple[int, list[tuple[datetime, int]]]:
        days = self.span_days()
        daily = {d: self._daily_usage_nanos(d) for d in days}
        final_usage = self._history_usage_nanos() + sum(daily.values())

        def burn7(end: date) -> float:
            return sum(daily.get(end - timedelta(days=i), 0) for i in range(7)) / 7

        if not self._event_plan.get("topups"):
            return _round_up(final_usage + 120 * burn7(self.span_end), 1000 * NANO), []
        # Work backwards from a low final balance so each top-up lands just as runway nears a week,
        # which keeps the runway comfortable until the last few days.
        balance = FINAL_RUNWAY_DAYS * burn7(self.span_end)
        later_day = self.anchor_date
        topups = []
        for day, at in sorted(self._event_plan["topups"], reverse=True):
            balance += sum(daily[d] for d in days if day <= d < later_day)
            eve = day - timedelta(days=1)
            amount = max(100 * NANO, _round_down(balance - PRE_TOPUP_RUNWAY_DAYS * burn7(eve), 50 * NANO))
            topups.append((datetime.combine(day, at, tzinfo=UTC), amount))
            balance -= amount
            later_day = day
        topups.reverse()
        target_balance = FINAL_RUNWAY_DAYS * burn7(self.span_end)
        initial = round(final_usage + target_balance - sum(a for _, a in topups), -7)
        return initial, topups

    def credits_as_of(self, now: datetime, include_today: bool = False) -> tuple[float, float]:
        """(total_credits, total_usage) that /credits reports at clock time `now` (see key_usage_as_of)."""
        initial, topups = self.credit_plan()
        credits = initial + sum(amount for moment, amount in topups if moment < now)
        today = now.astimezone(UTC).date()
        usage = self._history_usage_nanos() + sum(
            self._daily_usage_nanos(d) for d in self.span_days() if d < today)
        if include_today:
            usage += sum(spent for spent, _ in self.usage_so_far_today(now).values())
        return nanos_to_usd(credits), nanos_to_usd(usage)

    def runway_series(self) -> list[dict]:
        """Balance, trailing 7-day burn and runway at the end of each of the last 30 days."""
        series = []
        for offset in range(WINDOW_DAYS, 0, -1):
            day = self.anchor_date - timedelta(days=offset)
            credits, usage = self.credits_as_of(_midnight(day + timedelta(days=1)))
            burn = sum(self._daily_usage_nanos(day - timedelta(days=i)) for i in range(7)) / 7 / NANO
            balance = credits - usage
            series.append({"date": day, "balance_usd": round(balance, 6), "burn_7d_usd": round(burn, 6),
                           "runway_days": round(balance / burn, 3) if burn > 0 else None})
        return series

    # ----- generations --------------------------------------------------------------------------------

    def generation_ids(self, date: date | str) -> list[str]:
        """IDs of the generation records for one day, in creation order."""
        return list(self._generations_for(_as_date(date))[0])

    def generations(self, date: date | str) -> list[dict]:
        """The /generation `data` records for one day, in creation order."""
        return copy.deepcopy(list(self._generations_for(_as_date(date))[0].values()))

    def generation(self, generation_id: str) -> dict | None:
        """The /generation `data` record for an id, or None if the org has no such generation."""
        day = generation_day(generation_id)
        if day is None or not self.span_start <= day <= self.span_end:
            return None
        record = self._generations_for(day)[0].get(generation_id)
        return copy.deepcopy(record) if record else None

    def app_request_log(self, date: date | str) -> list[dict]:
        """What the applications logged for that day's generations (product.md §5.4 fields)."""
        return [dict(e) for e in self._generations_for(_as_date(date))[1]]

    def generations_with_keys(self, date: date | str) -> list[tuple[ApiKey, dict]]:
        """(key that made it, record) for each of one day's generations, in creation order."""
        records, log = self._generations_for(_as_date(date))
        return [(self._key_by_hash[entry["api_key_hash"]], records[entry["generation_id"]]) for entry in log]

    def _generations_for(self, day: date) -> tuple[dict[str, dict], list[dict]]:
        with self._lock:
            cached = self._generations.get(day)
            if cached is not None:
                self._generations.move_to_end(day)
                return cached
            built, log = [], []
            for key in self.keys:
                rows = self.key_rows(day).get(key.hash)
                if rows:
                    self._key_generations(key, day, rows, built, log)
            order = sorted(range(len(built)), key=lambda i: (built[i]["created_at"], built[i]["id"]))
            cached = ({built[i]["id"]: built[i] for i in order}, [log[i] for i in order])
            self._generations[day] = cached
            while len(self._generations) > GENERATION_DAYS_CACHED:
                self._generations.popitem(last=False)
            return cached

    def _key_generations(self, key: ApiKey, day: date, rows: tuple[ActivityRow, ...], out: list[dict],
                         log: list[dict]) -> None:
        if self.world.logged_requests_per_key_day is None:
            self._every_request(key, day, rows, out, log)
            return
        rng = _rng(self.seed, "generations", day.isoformat(), key.name)
        total = sum(r.requests for r in rows)
        count = min(self.world.logged_requests_per_key_day, math.ceil(total / 25))
        effects = self.effects(key, day)
        looping = effects.flat_output
        start = len(out)
        for index in range(count):
            row = rng.choices(rows, weights=[r.requests for r in rows])[0]
            created = _midnight(day) + timedelta(seconds=rng.randrange(86400), microseconds=rng.randrange(10**6))
            record, requested = build_generation(rng, key, self._workspace_by_slug[key.spec.workspace], row,
                                                 created, effects, priced=self.prices.at(row.model_id, created))
            out.append(record)
            previous = out[start + index - 1]["id"] if looping and index > 0 else None
            log.append(_log_entry(rng, key, record, requested, looping, previous))

    def _every_request(self, key: ApiKey, day: date, rows: tuple[ActivityRow, ...], out: list[dict],
                       log: list[dict]) -> None:
        """One generation per request of the key's day, whose costs add up to its activity rows exactly."""
        rng = _rng(self.seed, "every-request", day.isoformat(), key.name)
        effects = self.effects(key, day)
        workspace = self._workspace_by_slug[key.spec.workspace]
        built = []
        for row in rows:
            for exact in exact_requests(rng, row, self.prices.for_day(row.model_id, day)):
                created = _midnight(day) + timedelta(seconds=rng.randrange(86400), microseconds=rng.randrange(10**6))
                built.append(build_generation(rng, key, workspace, row, created, effects, exact=exact,
                                              priced=self.prices.at(row.model_id, created)))
        built.sort(key=lambda item: (item[0]["created_at"], item[0]["id"]))
        for index, (record, requested) in enumerate(built):
            out.append(record)
            previous = built[index - 1][0]["id"] if effects.flat_output and index > 0 else None
            log.append(_log_entry(rng, key, record, requested, effects.flat_output, previous))


def _log_entry(rng: random.Random, key: ApiKey, record: dict, requested: str, looping: bool,
               previous: str | None) -> dict:
    """What the application logged for one of its generations (a looping job mostly retries the previous one)."""
    retry = previous if looping and rng.random() < 0.8 else None
    return {
        "generation_id": record["id"],
        "created_at": record["created_at"],
        "api_key_hash": key.hash,
        "project": key.workspace_name,
        "workflow": key.name,
        "requested_model": requested,
        "requested_models": [requested, record["model"]] if requested != record["model"] else None,
        "accepted": (not looping or rng.random() < 0.1) and record["finish_reason"] != "length",
        "retry_of": retry,
    }


class ExactRequest(NamedTuple):
    """One request's exact share of its activity row: tokens, and nano-dollars charged in credits and in BYOK."""

    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cached_tokens: int
    credits_nanos: int
    byok_nanos: int
    is_byok: bool


def split_exactly(total: int, weights: list[float]) -> list[int]:
    """`total` split into integers proportional to `weights` that sum to it exactly (largest remainder)."""
    if not weights:
        return []
    weight_sum = sum(weights)
    if weight_sum <= 0:
        weights, weight_sum = [1.0] * len(weights), float(len(weights))
    raw = [total * w / weight_sum for w in weights]
    parts = [math.floor(r) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (-(raw[i] - parts[i]), i))
    for index in by_remainder[:total - sum(parts)]:
        parts[index] += 1
    return parts


def exact_requests(rng: random.Random, row: ActivityRow, model: Model) -> list[ExactRequest]:
    """Every request of an activity row, with tokens and costs that add up to the row (costs to the nano-dollar).

    Credits (`usage`) = what non-BYOK requests were charged + the BYOK requests' fee; BYOK requests also carry
    their share of `byok_usage_inference` (openrouter-api.md §4.5). Costs follow each request's tokens at the
    `model`'s prices for the row's day.
    """
    count = row.requests
    prompt_weights = [rng.lognormvariate(0.0, 0.3) for _ in range(count)]
    completion_weights = [rng.lognormvariate(0.0, 0.3) for _ in range(count)]
    prompts = split_exactly(row.prompt_tokens, prompt_weights)
    completions = split_exactly(row.completion_tokens, completion_weights)
    cached = [min(p, c) for p, c in zip(prompts, split_exactly(row.cached_tokens, prompt_weights), strict=True)]
    reasoning = [min(c, r) for c, r in zip(completions, split_exactly(row.reasoning_tokens, completion_weights),
                                           strict=True)]
    byok = set(rng.sample(range(count), min(count, row.byok_requests)))
    market = [_cost_usd(model, prompts[i], completions[i], cached[i]) for i in range(count)]
    fee_nanos = min(row.usage_nanos, round(row.byok_nanos * BYOK_FEE_RATE)) if byok else 0
    plain = [i for i in range(count) if i not in byok]
    if not plain:
        fee_nanos = row.usage_nanos
    credits = dict(zip(plain, split_exactly(row.usage_nanos - fee_nanos, [market[i] for i in plain]), strict=True))
    ordered_byok = sorted(byok)
    fees = split_exactly(fee_nanos, [market[i] for i in ordered_byok])
    upstream = split_exactly(row.byok_nanos, [market[i] for i in ordered_byok])
    for position, index in enumerate(ordered_byok):
        credits[index] = fees[position]
    byok_cost = dict(zip(ordered_byok, upstream, strict=True))
    return [ExactRequest(prompts[i], completions[i], reasoning[i], cached[i], credits[i], byok_cost.get(i, 0),
                         i in byok) for i in range(count)]


def build_generation(rng: random.Random, key: ApiKey, workspace: Workspace, row: ActivityRow, created: datetime,
                     effects: DayEffects, always_fall_back: bool = False,
                     exact: ExactRequest | None = None, priced: Model | None = None) -> tuple[dict, str]:
    """One /generation record of an activity row; returns (record, requested model id).

    Without `exact` the tokens are drawn around the row's mean per request (a sample of the day); with it they
    and the costs are that request's exact share of the row. `priced` is the row's model at the prices in force
    when the request was made (default: the catalogue's).
    """
    model = priced or MODEL_BY_ID[row.model_id]
    spec = key.spec
    served = row.provider_name
    if exact is None:
        per_request = 1 / row.requests
        spread = rng.lognormvariate(0.0, 0.3)
        prompt = max(1, round(row.prompt_tokens * per_request * spread))
        completion = round(row.completion_tokens * per_request * rng.lognormvariate(0.0, 0.3))
        reasoning = min(completion, round(row.reasoning_tokens * per_request * spread))
        cached = min(prompt, round(row.cached_tokens * per_request * spread))
    else:
        prompt, completion = exact.prompt_tokens, exact.completion_tokens
        reasoning, cached = exact.reasoning_tokens, exact.cached_tokens
    cost = _cost_usd(model, prompt, completion, cached)
    attempts: list[dict] = []
    requested = model.id
    is_byok = False
    fallback_draw, status_draw, extra_draw = rng.random(), rng.random(), rng.random()
    down = [p for p, _ in model.providers if p in effects.down_providers]
    if exact is not None and served == spec.byok_provider:
        # A request on the BYOK provider that was not served with the application's own key fell back to credits.
        is_byok = exact.is_byok
        if not is_byok:
            attempts.append(_attempt(rng, model, served, 429, is_byok=True))
    elif down:
        if always_fall_back or fallback_draw < 0.92:
            attempts.append(_attempt(rng, model, down[0], (502, 503, 503)[int(status_draw * 3)]))
            others = [p for p, _ in model.providers if p not in (down[0], served)]
            if others and extra_draw < 0.3:
                attempts.append(_attempt(rng, model, others[0], 429))
    elif served == spec.byok_provider:
        if fallback_draw < row.byok_requests / row.requests:
            is_byok = True
        else:
            attempts.append(_attempt(rng, model, served, 429, is_byok=True))
    elif fallback_draw < (0.03 if effects.fallback_rate is None else effects.fallback_rate) and len(model.providers) > 1:
        other = next(p for p, _ in model.providers if p != served)
        attempts.append(_attempt(rng, model, other, (429, 502, 503)[int(status_draw * 3)]))
    elif fallback_draw < 0.05 and model.id in MODEL_FALLBACK_SOURCES and (
            MODEL_FALLBACK_SOURCES[model.id] in {m for m, _ in spec.mix}):
        requested = MODEL_FALLBACK_SOURCES[model.id]
        source = MODEL_BY_ID[requested]
        attempts.append(_attempt(rng, source, source.providers[0][0], (503, 529, 502)[int(status_draw * 3)]))
    latency = round(250 + completion * rng.uniform(8, 22) + prompt * 0.02 + sum(a["latency"] for a in attempts))
    upstream_id = _upstream_id(rng, served)
    attempts.append({
        "provider_name": served,
        "model_permaslug": model.canonical_slug,
        "endpoint_id": row.endpoint_id,
        "id": upstream_id,
        "status": 200,
        "latency": float(latency - sum(a["latency"] for a in attempts)),
        "is_byok": is_byok,
    })
    finish_draw = rng.random()
    finish = "stop" if finish_draw < 0.9 else ("tool_calls" if finish_draw < 0.96 else "length")
    if model.is_embedding:
        finish = None
    charged = cost * BYOK_FEE_RATE if is_byok else cost
    upstream = round(cost, 12) if is_byok else None
    if exact is not None:
        charged = exact.credits_nanos / NANO
        upstream = exact.byok_nanos / NANO if is_byok else None
    created_unix = int(created.timestamp())
    interactive = spec.pattern == "interactive"
    record = {
        "id": f"gen-{created_unix}-{_random_token(rng, 20)}",
        "request_id": f"req-{created_unix}-{_random_token(rng, 20)}",
        "session_id": f"sess_{_random_token(rng, 16)}" if interactive else None,
        "response_cache_source_id": None,
        "created_at": iso_micro(created),
        "model": model.id,
        "provider_name": served,
        "router": "openrouter/auto" if spec.uses_auto_router and rng.random() < 0.5 else None,
        "api_type": "embeddings" if model.is_embedding else "completions",
        "total_cost": round(charged, 12),
        "usage": round(charged, 12),
        "upstream_inference_cost": upstream,
        "cache_discount": round(cached * (model.prompt_price - model.cache_read_price), 12) if cached else None,
        "is_byok": is_byok,
        "tokens_prompt": round(prompt * 1.02),
        "tokens_completion": round(completion * 1.01),
        "native_tokens_prompt": prompt,
        "native_tokens_completion": completion,
        "native_tokens_reasoning": reasoning,
        "native_tokens_cached": cached,
        "native_tokens_completion_images": 0,
        "num_media_prompt": 0,
        "num_media_completion": 0,
        "num_input_audio_prompt": 0,
        "num_search_results": 0,
        "num_fetches": 0,
        "web_search_engine": None,
        "latency": float(latency),
        "generation_time": float(round(latency * 0.8)),
        "moderation_latency": float(rng.randrange(20, 90)) if served in ("OpenAI", "Azure") else None,
        "finish_reason": finish,
        "native_finish_reason": _native_finish(served, finish),
        "streamed": interactive,
        "cancelled": False,
        "origin": workspace.app_url,
        "http_referer": workspace.app_url,
        "user_agent": "python-httpx/0.28.1" if spec.pattern in ("service", "batch") else "OpenAI/Python 1.99.9",
        "app_id": workspace.app_id,
        "external_user": key.external_user,
        "preset_id": None,
        "service_tier": None,
        "data_region": "global",
        "upstream_id": upstream_id,
        "workspace_id": workspace.id,
        "provider_responses": attempts,
    }
    return record, requested


def _attempt(rng: random.Random, model: Model, provider_name: str, status: int, is_byok: bool = False) -> dict:
    return {
        "provider_name": provider_name,
        "model_permaslug": model.canonical_slug,
        "endpoint_id": endpoint_id(model.id, provider_name),
        "status": status,
        "latency": float(rng.randrange(120, 2400)),
        "is_byok": is_byok,
    }


def _upstream_id(rng: random.Random, provider_name: str) -> str:
    if provider_name in ("OpenAI", "Azure"):
        return "chatcmpl-" + _random_token(rng, 29)
    if provider_name == "Anthropic":
        return "msg_01" + _random_token(rng, 22)
    if provider_name == "Amazon Bedrock":
        return "msg_bdrk_01" + _random_token(rng, 22)
    return _random_token(rng, 24)


def _native_finish(provider_name: str, finish: str | None) -> str | None:
    if finish is None:
        return None
    if provider_name in ("Anthropic", "Amazon Bedrock") or provider_name == "Google":
        return {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}[finish]
    if provider_name == "Google AI Studio":
        return {"stop": "STOP", "tool_calls": "STOP", "length": "MAX_TOKENS"}[finish]
    return finish


def generation_day(generation_id: str) -> date | None:
    """The UTC day encoded in a gen-<unix>-<token> id, or None if the id is not of that form."""
    parts = generation_id.split("-")
    if len(parts) != 3 or parts[0] != "gen" or not parts[1].isdigit():
        return None
    try:
        return datetime.fromtimestamp(int(parts[1]), UTC).date()
    except (OverflowError, OSError, ValueError):
        return None


def _drift_weights(weights: list[tuple[str, float]], base_mix: Iterable[tuple[str, float]],
                   progress: float) -> list[tuple[str, float]]:
    """Move premium models' share from their base weight towards the drift target."""
    base = dict(base_mix)
    total = sum(w for _, w in weights)
    premium = {m: base[m] + (target - base[m]) * progress
               for m, target in PREMIUM_DRIFT_TARGETS.items() if m in base}
    if not premium:
        return weights
    rest_base = sum(w for m, w in weights if m not in premium)
    rest_share = 1.0 - sum(premium.values())
    return [(m, premium[m] * total if m in premium else w / rest_base * rest_share * total) for m, w in weights]


def _round_up(nanos: float, step: int) -> int:
    return int(math.ceil(nanos / step) * step)


def _round_down(nanos: float, step: int) -> int:
    return int(math.floor(nanos / step) * step)


def _as_date(value: date | str) -> date:
    if isinstance(value, datetime):
        return value.astimezone(UTC).date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(value)


def resolve_seed(seed: int | None) -> int:
    """The seed argument, else OPENROUTER_EMULATOR_SEED, else 42."""
    if seed is not None:
        return int(seed)
    raw = os.environ.get("OPENROUTER_EMULATOR_SEED", "").strip()
    return int(raw) if raw else DEFAULT_SEED


def resolve_anchor_date(anchor_date: date | str | None) -> date:
    """The anchor argument, else OPENROUTER_EMULATOR_ANCHOR_DATE, else today (UTC)."""
    if anchor_date is not None:
        return _as_date(anchor_date)
    raw = os.environ.get("OPENROUTER_EMULATOR_ANCHOR_DATE", "").strip()
    return date.fromisoformat(raw) if raw else utc_today()


@functools.lru_cache(maxsize=8)
def _cached_org(scenario: str, seed: int, anchor_date: date) -> SyntheticOrg:
    return SyntheticOrg(scenario, seed, anchor_date)


def build_org(scenario: str = "default", seed: int | None = None, anchor_date: date | str | None = None) -> SyntheticOrg:
    """The (shared, lazily filled) synthetic organisation for these parameters."""
    return _cached_org(scenario, resolve_seed(seed), resolve_anchor_date(anchor_date))
