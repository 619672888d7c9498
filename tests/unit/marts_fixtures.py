"""Fixture rows for the mart tests: raw rows shaped like the loader writes them, and small config folders."""

from __future__ import annotations

import json
import textwrap
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from openrouter_spend.ingest.load import flag_newest_fetches
from openrouter_spend.warehouse import build_staging, connect, migrate
from openrouter_spend.warehouse.marts import build_marts, rebuild_all

DAY = date(2026, 3, 2)  # a Monday
MARTS_WITH_ROWS = ("fct_daily_spend", "rpt_key_usage_daily", "fct_provider_mix_daily", "rpt_unit_economics_daily",
                   "rpt_spend_change", "rpt_budget_status_daily", "fct_credit_balance", "dim_api_key", "dim_model",
                   "dim_model_price_history", "dim_annotation", "rpt_savings_opportunities")

OWNERS = """
unused_key_days: 3
projects:
  alpha:
    team: Team A
    budget_owner: Ann Owner
    contact: ann@example.com
    budgets_usd: {daily: 10, weekly: 50, monthly: 200}
    match:
      workspaces: [ws-alpha]
  beta:
    team: Team B
    budget_owner: Bob Owner
    contact: bob@example.com
    budgets_usd: {daily: 5}
    match:
      key_names: ["beta-*"]
"""

PREMIUM = """
completion_price_per_mtok_usd: 15
premium_models: ["vendor/listed-*"]
never_premium_models: ["vendor/never"]
"""

ANNOTATIONS = """
annotations:
  - id: alpha-release
    kind: release
    start: 2026-03-02
    end: 2026-03-04
    project: alpha
    signals: [spend]
    description: Alpha 2.0
"""


def key_hash(name: str) -> str:
    """A deterministic 64-hex key hash for a fixture key name."""
    import hashlib

    return hashlib.sha256(name.encode()).hexdigest()


def write_config(folder: Path, owners: str = OWNERS, premium: str = PREMIUM, annotations: str = ANNOTATIONS) -> Path:
    """Write the three config files into `folder` and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "owners.yaml").write_text(textwrap.dedent(owners))
    (folder / "premium.yaml").write_text(textwrap.dedent(premium))
    (folder / "annotations.yaml").write_text(textwrap.dedent(annotations))
    return folder


def _fetched(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0, 10), tzinfo=UTC)


@dataclass
class RawRows:
    """Raw rows for a few days; `load` writes them into the warehouse like the loader would."""

    activity: list[dict] = field(default_factory=list)
    account_extra: list[dict] = field(default_factory=list)
    keys: list[tuple[date, dict]] = field(default_factory=list)
    credits: list[tuple[date, float, float, datetime | None]] = field(default_factory=list)
    models: list[tuple[date, dict]] = field(default_factory=list)
    workspaces: list[tuple[date, dict]] = field(default_factory=list)
    endpoints: list[tuple[date, str, dict]] = field(default_factory=list)

    def use(self, day: date, key: str, model: str, provider: str = "ProviderA", *, requests: int, usage: float,
            prompt: int = 1000, completion: int = 100, reasoning: int = 0, cached: int = 0, byok: float = 0.0,
            permaslug: str | None = None, byok_requests: int = 0) -> RawRows:
        """One /activity row of a key (and the same usage in the account-level activity)."""
        self.activity.append({
            "key": key, "date": day.isoformat(), "model": model,
            "model_permaslug": permaslug or model.removesuffix(":free"),
            "endpoint_id": f"{model}|{provider}", "provider_name": provider, "usage": usage,
            "byok_usage_inference": byok, "requests": requests, "prompt_tokens": prompt,
            "completion_tokens": completion, "reasoning_tokens": reasoning, "cached_tokens": cached,
            **({"byok_requests": byok_requests} if byok_requests else {}),
        })
        return self

    def unlisted_use(self, day: date, model: str, provider: str = "ProviderA", *, requests: int,
                     usage: float) -> RawRows:
        """Account-level usage that no listed key accounts for (a deleted key)."""
        self.account_extra.append({
            "date": day.isoformat(), "model": model, "model_permaslug": model, "endpoint_id": f"{model}|{provider}",
            "provider_name": provider, "usage": usage, "byok_usage_inference": 0.0, "requests": requests,
            "prompt_tokens": 1000, "completion_tokens": 100, "reasoning_tokens": 0, "cached_tokens": 0,
        })
        return self

    def key(self, day: date, name: str, workspace: str | None = "ws-alpha", *, disabled: bool = False,
            created: date = date(2026, 1, 1), last_used: date | None = None, expires: date | None = None,
            hash_: str | None = None, usage: float = 1.0, usage_daily: float | None = None,
            fetched: datetime | None = None) -> RawRows:
        """A /keys snapshot item of the key `name` taken after `day` (at `fetched`, default D+1 00:10)."""
        extra = {"usage_daily": usage_daily} if usage_daily is not None else {}
        self.keys.append((day, {**extra, "_fetched": fetched,
            "hash": hash_ or key_hash(name), "name": name, "label": "sk-or-v1-abc...1234", "disabled": disabled,
            "limit": None, "limit_remaining": None, "limit_reset": None, "include_byok_in_limit": False,
            "usage": usage, "byok_usage": 0.0, "created_at": f"{created}T09:00:00.000000+00:00",
            "updated_at": f"{created}T09:00:00.000000+00:00", "workspace_id": workspace,
            "creator_user_id": "user_1", "expires_at": f"{expires}T00:00:00Z" if expires else None,
            "external_user": None, "last_used_at": f"{last_used}T12:00:00Z" if last_used else None,
        }))
        return self

    def credit(self, day: date, total_credits: float, total_usage: float, fetched: datetime | None = None) -> RawRows:
        """A /credits snapshot taken after `day` (at `fetched`, default D+1 00:10)."""
        self.credits.append((day, total_credits, total_usage, fetched))
        return self

    def price(self, day: date, model: str, prompt_per_mtok: float | str, completion_per_mtok: float | str,
              permaslug: str | None = None, cache_read_per_mtok: float | None = None) -> RawRows:
        """A /models item snapshotted after `day`; pass '-1' for a router sentinel."""
        def per_token(value):
            return value if isinstance(value, str) else f"{value / 1e6:.12f}"

        pricing = {"prompt": per_token(prompt_per_mtok), "completion": per_token(completion_per_mtok)}
        if cache_read_per_mtok is not None:
            pricing["input_cache_read"] = per_token(cache_read_per_mtok)
        self.models.append((day, {
            "id": model, "canonical_slug": permaslug or model.removesuffix(":free"), "name": model,
            "context_length": 128000, "architecture": {"modality": "text->text"}, "pricing": pricing,
        }))
        return self

    def endpoint(self, day: date, model: str, provider: str, prompt_per_mtok: float, completion_per_mtok: float,
                 uptime_last_1d: float | None, *, cache_read_per_mtok: float | None = None, status: int = 0) -> RawRows:
        """A provider of a /models/{model}/endpoints answer fetched after `day`."""
        pricing = {"prompt": f"{prompt_per_mtok / 1e6:.12f}", "completion": f"{completion_per_mtok / 1e6:.12f}"}
        if cache_read_per_mtok is not None:
            pricing["input_cache_read"] = f"{cache_read_per_mtok / 1e6:.12f}"
        self.endpoints.append((day, model, {
            "name": f"{provider} | {model}", "model_id": model, "model_name": model, "provider_name": provider,
            "tag": provider.lower(), "pricing": pricing, "status": status, "uptime_last_1d": uptime_last_1d,
        }))
        return self

    def workspace(self, day: date, workspace_id: str, name: str) -> RawRows:
        """A /workspaces item snapshotted after `day`."""
        self.workspaces.append((day, {"id": workspace_id, "name": name, "slug": name}))
        return self

    def days(self) -> set[date]:
        found = {date.fromisoformat(row["date"]) for row in self.activity + self.account_extra}
        found |= {day for day, _ in self.keys} | {day for day, *_ in self.credits}
        return found

    def load(self, con, days: set[date] | None = None) -> None:
        """Replace the raw partitions of `days` (default: all fixture days) with the fixture rows."""
        days = days or self.days()
        con.execute("begin transaction")
        for table in ("activity", "keys", "credits", "models", "workspaces", "model_endpoints"):
            con.execute(f"delete from raw.{table} where list_contains(?, partition_date)", [sorted(days)])
        account: dict[tuple, dict] = defaultdict(dict)
        for row in self.activity + self.account_extra:
            day = date.fromisoformat(row["date"])
            if day not in days:
                continue
            if "key" in row:
                self._insert(con, "activity", day, {"scope": "key", "api_key_hash": key_hash(row["key"])},
                             {k: v for k, v in row.items() if k != "key"})
            bucket = account[(day, row["model_permaslug"], row["endpoint_id"])]
            for name in ("model", "model_permaslug", "endpoint_id", "provider_name", "date"):
                bucket[name] = row[name]
            for name in ("usage", "byok_usage_inference", "requests", "prompt_tokens", "completion_tokens",
                         "reasoning_tokens", "cached_tokens", "byok_requests"):
                if name in row:
                    bucket[name] = bucket.get(name, 0) + row[name]
        for (day, *_), payload in account.items():
            self._insert(con, "activity", day, {"scope": "account", "api_key_hash": None}, dict(payload))
        keys: dict[date, list[dict]] = defaultdict(list)
        for day, item in self.keys:
            if day in days:
                keys[day].append({"key_hash": item["hash"], "fetched_at": item["_fetched"] or _fetched(day),
                                  "item": item})
        for day, rows in keys.items():
            flag_newest_fetches(rows)
            for row in rows:
                item = row["item"]
                payload = {k: v for k, v in item.items() if k != "_fetched"}
                self._insert(con, "keys", day, {"key_hash": item["hash"], "page_offset": 0,
                                                "requested_workspace_id": item["workspace_id"],
                                                "usage_daily": item.get("usage_daily"),
                                                "is_latest_fetch": row["is_latest_fetch"]}, payload,
                             row["fetched_at"])
        for day, total_credits, total_usage, fetched in self.credits:
            if day in days:
                self._insert(con, "credits", day, {"total_credits": total_credits, "total_usage": total_usage},
                             {"total_credits": total_credits, "total_usage": total_usage}, fetched)
        for day, item in self.models:
            if day in days:
                self._insert(con, "models", day, {"model_id": item["id"]}, item)
        for day, item in self.workspaces:
            if day in days:
                self._insert(con, "workspaces", day, {"workspace_id": item["id"]}, item)
        for day, model, item in self.endpoints:
            if day in days:
                self._insert(con, "model_endpoints", day, {"model_id": model, "provider_name": item["provider_name"]},
                             item)
        for day in sorted(days):
            con.execute("insert into meta.load_runs (partition_date, run_id, status, row_counts) "
                        "values (?, 'fixture', 'loaded', '{}')", [day])
        con.execute("commit")

    @staticmethod
    def _insert(con, table: str, day: date, columns: dict, payload: dict, fetched: datetime | None = None) -> None:
        values = {"partition_date": day, "run_id": "fixture", "fetched_at": fetched or _fetched(day),
                  "landing_file": "fixture", "request_params": "{}", **columns, "payload": json.dumps(payload)}
        con.execute(f"insert into raw.{table} ({', '.join(values)}) values ({', '.join('?' for _ in values)})",
                    list(values.values()))


class FixtureWarehouse:
    """A warehouse file plus a config folder for one test."""

    def __init__(self, tmp_path: Path, **config):
        self.path = tmp_path / "warehouse.duckdb"
        self.config_dir = write_config(tmp_path / "config", **config)
        with connect(self.path) as con:
            migrate(con)
            build_staging(con)

    def copy_to(self, tmp_path: Path) -> FixtureWarehouse:
        """An independent copy of this warehouse and its config, for a test that changes it."""
        import shutil

        copy = object.__new__(FixtureWarehouse)
        copy.path = tmp_path / "warehouse.duckdb"
        copy.config_dir = tmp_path / "config"
        tmp_path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path, copy.path)
        shutil.copytree(self.config_dir, copy.config_dir)
        return copy

    def load(self, rows: RawRows, days: set[date] | None = None) -> None:
        with connect(self.path) as con:
            rows.load(con, days)

    def build(self, days: list[date]) -> dict[str, int]:
        with connect(self.path) as con:
            return build_marts(con, days, config_dir=self.config_dir)

    def rebuild(self, **options) -> dict[str, int]:
        with connect(self.path) as con:
            return rebuild_all(con, config_dir=self.config_dir, **options)

    def rows(self, sql: str, params: list | None = None) -> list[dict]:
        with connect(self.path, read_only=True) as con:
            cursor = con.execute(sql, params or [])
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def snapshot(self) -> dict[str, list[tuple]]:
        """Every mart's rows in a stable order, to compare two builds."""
        with connect(self.path, read_only=True) as con:
            return {name: sorted(con.execute(f"select * from marts.{name}").fetchall(), key=repr)
                    for name in MARTS_WITH_ROWS}


def sample_rows(days: list[date], seed: int = 7) -> RawRows:
    """A small organisation over `days`: owned and unowned keys, a price change, a top-up, a loop day."""
    import random

    rng = random.Random(seed)
    rows = RawRows()
    keys = [("a-web", "ws-alpha"), ("a-batch", "ws-alpha"), ("beta-api", "ws-beta"), ("personal", None)]
    credits, usage = 500.0, 100.0
    for index, day in enumerate(days):
        rows.workspace(day, "ws-alpha", "alpha-space").workspace(day, "ws-beta", "beta-space")
        rows.price(day, "vendor/pro", 3.0, 10.0 if index < len(days) // 2 else 18.0, cache_read_per_mtok=0.3)
        rows.price(day, "vendor/lite", 0.2, 0.8).price(day, "vendor/lite:free", 0, 0)
        spent = 0.0
        for name, workspace in keys:
            rows.key(day, name, workspace, last_used=day)
            for model, provider in (("vendor/pro", "P1"), ("vendor/lite", "P2"), ("vendor/lite:free", "P3")):
                requests = rng.randint(20, 400) * (12 if name == "a-batch" and index == len(days) - 3 else 1)
                completion = rng.randint(50, 300) * (requests if index != len(days) - 3 else 400)
                usage_usd = 0.0 if model.endswith(":free") else round(rng.uniform(0.5, 20.0), 6)
                rows.use(day, name, model, provider, requests=requests, prompt=requests * rng.randint(500, 3000),
                         completion=completion, usage=usage_usd)
                spent += usage_usd
        if index == 2:
            rows.unlisted_use(day, "vendor/lite", requests=7, usage=0.75)
            spent += 0.75
        usage += spent
        credits += 300.0 if index == len(days) // 2 else 0.0
        rows.credit(day, credits, usage)
    return rows
