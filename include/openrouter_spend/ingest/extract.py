"""Extraction of one UTC day from the OpenRouter API into landing batches (HTTP only, no warehouse).

Per-key activity calls are the expensive part (one call per key per day), so keys that provably had no
usage on the day are skipped (`plan_key_activity`), and `reconcile_key_activity` re-fetches skipped keys
whenever the per-key totals fall short of the account-level totals: a wrong skip can cost calls, never spend.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from openrouter_spend.ingest.client import OpenRouterClient
from openrouter_spend.ingest.errors import BadRequestError, NotFoundError
from openrouter_spend.ingest.landing import LandingBatch, committed_manifests, latest_responses
from openrouter_spend.ingest.responses import data_of, describe_request, parse_json

log = logging.getLogger(__name__)

ACTIVITY_WINDOW_DAYS = 30
_MODEL_ID = re.compile(r"[A-Za-z0-9._~:+-]+/[A-Za-z0-9._~:+-]+")
# /keys documents last_used_at as null when a key has had no usage "since the end of 2025".
LAST_USED_TRACKED_SINCE = date(2026, 1, 1)
# Sums of many float amounts differ in the last digits depending on order; this is far below a cent.
SPEND_TOLERANCE_USD = 1e-6


def _parse_timestamp(value: Any) -> datetime | None:
    """ISO 8601 with 'Z' or an offset (both forms appear in the API), as aware UTC."""
    if not isinstance(value, str) or not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


@dataclass(frozen=True)
class KeyInfo:
    """The part of a /keys item that extraction planning needs."""

    hash: str
    name: str
    workspace_id: str | None
    created_at: str | None
    last_used_at: str | None
    reports_last_used: bool
    disabled: bool

    @classmethod
    def from_item(cls, item: dict) -> KeyInfo:
        return cls(hash=item["hash"], name=str(item.get("name", "")), workspace_id=item.get("workspace_id"),
                   created_at=item.get("created_at"), last_used_at=item.get("last_used_at"),
                   reports_last_used="last_used_at" in item, disabled=bool(item.get("disabled")))


@dataclass(frozen=True)
class ActivityTotals:
    """Spend and volume summed over activity rows, for reconciliation."""

    usage_usd: float = 0.0
    byok_usage_usd: float = 0.0
    requests: int = 0
    rows: int = 0

    @classmethod
    def of(cls, rows: Iterable[dict]) -> ActivityTotals:
        usage = byok = 0.0
        requests = count = 0
        for row in rows:
            usage += float(row.get("usage") or 0)
            byok += float(row.get("byok_usage_inference") or 0)
            requests += int(row.get("requests") or 0)
            count += 1
        return cls(usage, byok, requests, count)

    def __add__(self, other: ActivityTotals) -> ActivityTotals:
        return ActivityTotals(self.usage_usd + other.usage_usd, self.byok_usage_usd + other.byok_usage_usd,
                              self.requests + other.requests, self.rows + other.rows)

    def covers(self, other: ActivityTotals) -> bool:
        """True when these totals account for everything in `other` (within float tolerance)."""
        return (self.usage_usd + SPEND_TOLERANCE_USD >= other.usage_usd
                and self.byok_usage_usd + SPEND_TOLERANCE_USD >= other.byok_usage_usd
                and self.requests >= other.requests)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class WindowCheck:
    """Whether the day can still be fetched, with the account-level totals when it can."""

    in_window: bool
    reason: str = ""
    totals: ActivityTotals = ActivityTotals()


def fetch_account_activity(client: OpenRouterClient, batch: LandingBatch, day: date,
                           today: date | None = None) -> WindowCheck:
    """Land /activity?date=D for the whole account; a day outside the 30-day window becomes a gap."""
    today = today or datetime.now(UTC).date()
    if day >= today:
        raise ValueError(f"{day} is not a completed UTC day yet (today is {today}); run it after midnight UTC")
    try:
        raw = client.request("/activity", {"date": day.isoformat()})
    except BadRequestError as exc:
        if day < today - timedelta(days=ACTIVITY_WINDOW_DAYS) or "within" in str(exc) or "30" in str(exc):
            reason = (f"/activity no longer serves {day}: the API keeps only the last {ACTIVITY_WINDOW_DAYS}"
                      f" completed UTC days (server said: {exc})")
            log.warning("skipping %s: %s", day, reason)
            batch.notes["gaps"] = [{"endpoint": "/activity", "reason": reason}]
            return WindowCheck(False, reason)
        raise
    batch.land(raw)
    rows = data_of(raw.json(), describe_request(raw.endpoint, raw.params), expect=list)
    totals = ActivityTotals.of(rows)
    batch.notes["account_activity"] = totals.as_dict()
    return WindowCheck(True, totals=totals)


def fetch_snapshots(client: OpenRouterClient, batch: LandingBatch) -> list[KeyInfo]:
    """Land /credits, /workspaces, every /keys page of every workspace, /models, the used models' endpoints, /providers."""
    batch.land(client.request("/credits"))
    try:
        workspaces_raw = client.request("/workspaces")
    except NotFoundError:
        # Servers without workspaces: the unscoped /keys listing is then the whole account.
        log.warning("/workspaces is not served; listing keys without a workspace filter")
        workspace_ids: list[str | None] = [None]
    else:
        batch.land(workspaces_raw)
        workspaces = data_of(workspaces_raw.json(), describe_request("/workspaces", {}), expect=list)
        workspace_ids = [w["id"] for w in workspaces if isinstance(w, dict) and w.get("id")] or [None]
    keys: dict[str, KeyInfo] = {}
    for workspace_id in workspace_ids:
        for page in client.iter_key_pages(workspace_id):
            batch.land(page)
            items = data_of(page.json(), describe_request(page.endpoint, page.params), expect=list)
            for item in items:
                if isinstance(item, dict) and item.get("hash"):
                    keys[item["hash"]] = KeyInfo.from_item(item)
    for page in client.iter_pages("/models", {"output_modalities": "all"}):
        batch.land(page)
    fetch_model_endpoints(client, batch, models_used(batch))
    for page in client.iter_pages("/providers"):
        batch.land(page)
    batch.notes["keys_listed"] = len(keys)
    return sorted(keys.values(), key=lambda k: k.hash)


def models_used(batch: LandingBatch) -> list[str]:
    """Model ids in the account-level /activity of the batch's day landed by the same run (committed batches
    and this one), so the endpoint calls follow the models used, not the catalogue."""
    manifests = committed_manifests(batch.landing_root, batch.partition_date, batch.run_id)
    manifests.append({"_directory": batch.directory, "batch": batch.directory.name,
                      "objects": [asdict(obj) for obj in batch.objects]})
    used: set[str] = set()
    for response in latest_responses(manifests):
        if response.endpoint != "/activity" or "api_key_hash" in response.params:
            continue
        rows = data_of(parse_json(response.read_body(), str(response.path)), str(response.path), expect=list)
        used.update(row["model"] for row in rows if isinstance(row, dict) and isinstance(row.get("model"), str))
    # A ':free' variant costs nothing: no provider can be cheaper.
    return sorted(model for model in used if not model.endswith(":free"))


def fetch_model_endpoints(client: OpenRouterClient, batch: LandingBatch, model_ids: Iterable[str]) -> dict:
    """Land /models/{id}/endpoints (every provider's price and uptime) once per model used that day."""
    model_ids = list(model_ids)
    not_fetched = []
    for model_id in model_ids:
        if not _MODEL_ID.fullmatch(model_id):
            # Only an 'author/slug' id names an endpoints path; anything else would call another URL.
            not_fetched.append(model_id)
            continue
        try:
            batch.land(client.request(f"/models/{model_id}/endpoints"))
        except NotFoundError:
            # Router models and models withdrawn since the day have no endpoint list; nothing to compare.
            not_fetched.append(model_id)
    summary = {"models_used": len(model_ids), "fetched": len(model_ids) - len(not_fetched),
               "not_fetched": not_fetched}
    batch.notes["model_endpoints"] = summary
    return summary


def skip_reason(key: KeyInfo, day: date) -> str | None:
    """Why `key` provably had no usage on `day`, or None when it must be fetched."""
    start, end = _day_bounds(day)
    created = _parse_timestamp(key.created_at)
    if created is not None and created >= end:
        return "created after the day"
    if not key.reports_last_used:
        return None
    last_used = _parse_timestamp(key.last_used_at)
    if last_used is None:
        return "never used" if day >= LAST_USED_TRACKED_SINCE else None
    if last_used < start:
        return f"last used {last_used.date().isoformat()}, before the day"
    return None


def plan_key_activity(keys: Iterable[KeyInfo], day: date) -> tuple[list[str], dict[str, str]]:
    """Split keys into those to fetch and those skipped (with the reason)."""
    fetch, skipped = [], {}
    for key in keys:
        reason = skip_reason(key, day)
        if reason is None:
            fetch.append(key.hash)
        else:
            skipped[key.hash] = reason
    return fetch, skipped


def chunked(items: list[str], size: int) -> list[list[str]]:
    """Consecutive chunks of at most `size` items."""
    return [items[i:i + size] for i in range(0, len(items), max(1, size))]


def fetch_key_activity(client: OpenRouterClient, batch: LandingBatch, day: date, key_hashes: list[str],
                       concurrency: int) -> ActivityTotals:
    """Land /activity?date=D&api_key_hash=H for each key, `concurrency` calls at a time."""

    def one(key_hash: str) -> ActivityTotals:
        raw = client.request("/activity", {"date": day.isoformat(), "api_key_hash": key_hash})
        batch.land(raw)
        return ActivityTotals.of(data_of(raw.json(), describe_request(raw.endpoint, raw.params), expect=list))

    total = ActivityTotals()
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="key-activity") as pool:
        for result in pool.map(one, key_hashes):
            total = total + result
    return total


def reconcile_key_activity(client: OpenRouterClient, batch: LandingBatch, day: date, account: ActivityTotals,
                           fetched: ActivityTotals, skipped: list[str], concurrency: int) -> dict:
    """Fetch the skipped keys too when per-key totals fall short of the account; report what remains."""
    refetched: list[str] = []
    if not fetched.covers(account) and skipped:
        log.warning("per-key activity for %s is short of the account total (%.6f < %.6f USD); "
                    "fetching the %d skipped keys as well", day, fetched.usage_usd, account.usage_usd,
                    len(skipped))
        fetched = fetched + fetch_key_activity(client, batch, day, skipped, concurrency)
        refetched = list(skipped)
    unattributed = {
        "usage_usd": max(0.0, account.usage_usd - fetched.usage_usd),
        "byok_usage_usd": max(0.0, account.byok_usage_usd - fetched.byok_usage_usd),
        "requests": max(0, account.requests - fetched.requests),
    }
    if not fetched.covers(account):
        log.warning("%s: %.6f USD of account activity is not attributed to any listed key "
                    "(deleted keys?)", day, unattributed["usage_usd"])
    summary = {"account": account.as_dict(), "keys": fetched.as_dict(), "refetched_keys": len(refetched),
               "unattributed": unattributed}
    batch.notes["key_reconciliation"] = summary
    return summary
