"""GET /analytics/meta and POST /analytics/query over the synthetic organisation's daily activity."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from openrouter_emulator.org import NANO, SyntheticOrg

# name -> (display label, display format); cost metrics are numbers, count metrics come back as strings.
COST_METRICS = {
    "total_usage": ("Total Spend", "currency"),
    "credits_usage": ("Credits Spend", "currency"),
    "byok_usage": ("BYOK Spend", "currency"),
    "openrouter_usage": ("OpenRouter Inference Spend", "currency"),
}
COUNT_METRICS = {
    "request_count": ("Requests", "number"),
    "byok_request_count": ("BYOK Requests", "number"),
    "tokens_total": ("Total Tokens", "number"),
    "tokens_prompt": ("Prompt Tokens", "number"),
    "tokens_completion": ("Completion Tokens", "number"),
    "reasoning_tokens": ("Reasoning Tokens", "number"),
    "cached_tokens": ("Cached Tokens", "number"),
}
METRICS = {**COST_METRICS, **COUNT_METRICS}
DIMENSIONS = {
    "model": "Model",
    "variant": "Variant",
    "api_key_id": "API Key",
    "user": "User",
    "workspace": "Workspace",
    "provider": "Provider",
    "generation_id": "Generation ID",
}
SHORT_WINDOW_DIMENSIONS = {"provider", "generation_id"}
OPERATORS = {"eq": "scalar", "neq": "scalar", "in": "array", "not_in": "array",
             "gt": "scalar", "gte": "scalar", "lt": "scalar", "lte": "scalar"}
GRANULARITIES = {"day": "Day", "week": "Week", "month": "Month"}
MAX_DIMENSIONS = 2
MAX_FILTERS = 20
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
MAX_WINDOW_DAYS = 365
SHORT_WINDOW_DAYS = 31
DEFAULT_WINDOW_DAYS = 7
_TIMESTAMP_WITH_SECONDS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


class AnalyticsError(ValueError):
    """A query the real API would reject with 400."""


def meta() -> dict:
    """The /analytics/meta payload."""
    return {"data": {
        "metrics": [{"name": name, "display_label": label, "is_rate": False, "display_format": fmt}
                    for name, (label, fmt) in METRICS.items()],
        "dimensions": [{"name": name, "display_label": label} for name, label in DIMENSIONS.items()],
        "operators": [{"name": name, "value_type": kind} for name, kind in OPERATORS.items()],
        "granularities": [{"name": name, "display_label": label} for name, label in GRANULARITIES.items()],
    }}


def _parse_timestamp(raw: Any, field: str) -> datetime:
    if not isinstance(raw, str) or not _TIMESTAMP_WITH_SECONDS.match(raw):
        raise AnalyticsError(f"time_range.{field}: Invalid ISO 8601 datetime (seconds are required)")
    return datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC)


def _list_of_strings(body: dict, field: str, required: bool = False) -> list[str]:
    value = body.get(field)
    if value is None:
        if required:
            raise AnalyticsError(f"{field}: Required")
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AnalyticsError(f"{field}: Expected array of strings")
    return value


def _bucket(day: date, granularity: str | None) -> str | None:
    if granularity == "day":
        return day.isoformat()
    if granularity == "week":
        return (day - timedelta(days=day.weekday())).isoformat()
    if granularity == "month":
        return day.replace(day=1).isoformat()
    return None


def _matches(candidates: tuple[str, ...], operator: str, value: Any) -> bool:
    if operator == "eq":
        return value in candidates
    if operator == "neq":
        return value not in candidates
    if operator == "in":
        return any(v in candidates for v in value)
    if operator == "not_in":
        return not any(v in candidates for v in value)
    first = candidates[0]
    return {"gt": first > value, "gte": first >= value, "lt": first < value, "lte": first <= value}[operator]


def query(org: SyntheticOrg, body: Any, now: datetime) -> dict:
    """The /analytics/query payload for a request body; raises AnalyticsError for a 400."""
    if not isinstance(body, dict):
        raise AnalyticsError("Invalid request body: expected a JSON object")
    metrics = _list_of_strings(body, "metrics", required=True)
    if not metrics:
        raise AnalyticsError("metrics: Too small: expected array to have >=1 items")
    for metric in metrics:
        if metric not in METRICS:
            raise AnalyticsError(f"metrics: Unknown metric '{metric}'")
    dimensions = _list_of_strings(body, "dimensions")
    if len(dimensions) > MAX_DIMENSIONS:
        raise AnalyticsError(f"dimensions: Too big: expected array to have <={MAX_DIMENSIONS} items")
    for dimension in dimensions:
        if dimension not in DIMENSIONS:
            raise AnalyticsError(f"dimensions: Unknown dimension '{dimension}'")
    filters = body.get("filters") or []
    if not isinstance(filters, list) or len(filters) > MAX_FILTERS:
        raise AnalyticsError(f"filters: Expected array with <={MAX_FILTERS} items")
    for rule in filters:
        if not isinstance(rule, dict) or rule.get("field") not in DIMENSIONS or rule.get("operator") not in OPERATORS:
            raise AnalyticsError(f"filters: Invalid filter {rule!r}")
        if (OPERATORS[rule["operator"]] == "array") != isinstance(rule.get("value"), list):
            raise AnalyticsError(f"filters: Operator '{rule['operator']}' needs a {OPERATORS[rule['operator']]} value")
    granularity = body.get("granularity")
    if granularity is not None and granularity not in GRANULARITIES:
        raise AnalyticsError(f"granularity: '{granularity}' is not supported (use {', '.join(GRANULARITIES)})")
    limit = body.get("limit", DEFAULT_LIMIT)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise AnalyticsError(f"limit: Expected an integer between 1 and {MAX_LIMIT}")

    today = now.astimezone(UTC).date()
    time_range = body.get("time_range")
    if time_range is None:
        end = datetime.combine(today, datetime.min.time(), tzinfo=UTC)
        start = end - timedelta(days=DEFAULT_WINDOW_DAYS)
    else:
        if not isinstance(time_range, dict):
            raise AnalyticsError("time_range: Expected an object with start and end")
        start = _parse_timestamp(time_range.get("start"), "start")
        end = _parse_timestamp(time_range.get("end"), "end")
    if end <= start:
        raise AnalyticsError("time_range: end must be after start")
    span = end - start
    if span > timedelta(days=MAX_WINDOW_DAYS):
        raise AnalyticsError(f"time_range: window must be at most {MAX_WINDOW_DAYS} days")
    used_dimensions = set(dimensions) | {f["field"] for f in filters}
    if span > timedelta(days=SHORT_WINDOW_DAYS) and used_dimensions & SHORT_WINDOW_DIMENSIONS:
        raise AnalyticsError(f"time_range: dimensions {', '.join(sorted(used_dimensions & SHORT_WINDOW_DIMENSIONS))} "
                             f"are limited to {SHORT_WINDOW_DAYS} days")

    days = [d for d in org.span_days()
            if d < today and start <= datetime.combine(d, datetime.min.time(), tzinfo=UTC) < end]
    groups: dict[tuple, list[int]] = {}
    for day, ids, labels, values in _facts(org, days, "generation_id" in used_dimensions, now):
        if not all(_matches(ids[f["field"]], f["operator"], f["value"]) for f in filters):
            continue
        group = (_bucket(day, granularity), *(labels[d] for d in dimensions))
        acc = groups.setdefault(group, [0] * len(values))
        for index, value in enumerate(values):
            acc[index] += value

    rows = []
    for group, values in groups.items():
        totals = dict(zip(_FACT_FIELDS, values, strict=True))
        row: dict[str, Any] = {}
        if granularity:
            row[f"date__{granularity}"] = group[0]
        for dimension, label in zip(dimensions, group[1:], strict=True):
            row[dimension] = label
        for metric in metrics:
            value = _metric(metric, totals)
            row[metric] = str(value) if metric in COUNT_METRICS else round(value / NANO, 9)
        rows.append(row)
    _sort(rows, body.get("order_by"), metrics, dimensions, granularity)
    truncated = len(rows) > limit
    rows = rows[:limit]
    return {"data": {
        "data": rows,
        "metadata": {"query_time_ms": float(12 + len(days) * 3), "row_count": len(rows), "truncated": truncated},
    }}


_FACT_FIELDS = ("usage", "byok", "fees", "requests", "byok_requests", "prompt", "completion", "reasoning", "cached")


def _metric(name: str, totals: dict[str, int]) -> int:
    return {
        "total_usage": totals["usage"] + totals["byok"],
        "credits_usage": totals["usage"],
        "byok_usage": totals["byok"],
        "openrouter_usage": totals["usage"] - totals["fees"],
        "request_count": totals["requests"],
        "byok_request_count": totals["byok_requests"],
        "tokens_total": totals["prompt"] + totals["completion"],
        "tokens_prompt": totals["prompt"],
        "tokens_completion": totals["completion"],
        "reasoning_tokens": totals["reasoning"],
        "cached_tokens": totals["cached"],
    }[name]


def _facts(org: SyntheticOrg, days: list[date], per_generation: bool, now: datetime):
    """(day, filter ids per dimension, output labels per dimension, metric values) for each fact."""
    members = {m.id: m for m in org.members}
    for day in days:
        if per_generation:
            for key, record in org.generations_with_keys(day):
                if datetime.fromisoformat(record["created_at"]) >= now:
                    continue
                model = org.model(record["model"])
                ids, labels = _key_dimensions(org, key, members, model, record["provider_name"])
                ids["generation_id"] = (record["id"],)
                labels["generation_id"] = record["id"]
                byok = round(record["upstream_inference_cost"] * NANO) if record["is_byok"] else 0
                usage = round(record["usage"] * NANO)
                yield day, ids, labels, (
                    usage, byok, usage if record["is_byok"] else 0, 1, int(record["is_byok"]),
                    record["native_tokens_prompt"], record["native_tokens_completion"],
                    record["native_tokens_reasoning"], record["native_tokens_cached"])
            continue
        for key, row in org.iter_key_rows(day):
            model = org.model(row.model_id)
            ids, labels = _key_dimensions(org, key, members, model, row.provider_name)
            fees = round(row.byok_nanos * 0.05)
            yield day, ids, labels, (
                row.usage_nanos, row.byok_nanos, fees, row.requests, row.byok_requests, row.prompt_tokens,
                row.completion_tokens, row.reasoning_tokens, row.cached_tokens)


def _key_dimensions(org: SyntheticOrg, key, members, model, provider_name: str) -> tuple[dict, dict]:
    provider = org.provider(provider_name)
    member = members.get(key.creator_user_id)
    variant = "free" if model.is_free else "standard"
    ids = {
        "model": (model.canonical_slug, model.id),
        "variant": (variant,),
        "api_key_id": (key.hash, key.name),
        "user": (key.creator_user_id,),
        "workspace": (key.workspace_id,),
        "provider": (provider.name, provider.slug),
        "generation_id": ("",),
    }
    labels = {
        "model": model.canonical_slug,
        "variant": variant,
        "api_key_id": key.name,
        "user": member.display_name if member else key.creator_user_id,
        "workspace": key.workspace_name,
        "provider": provider.name,
        "generation_id": None,
    }
    return ids, labels


def _sort(rows: list[dict], order_by: Any, metrics: list[str], dimensions: list[str], granularity: str | None) -> None:
    def number(value: Any) -> Any:
        return float(value) if isinstance(value, str) and value.isdigit() else value

    date_field = f"date__{granularity}" if granularity else None
    for dimension in reversed(dimensions):
        rows.sort(key=lambda r, d=dimension: str(r.get(d)))
    if isinstance(order_by, dict) and order_by.get("field"):
        field = order_by["field"]
        if field == "date":
            field = date_field
        if field not in (*metrics, *dimensions, date_field) or field is None:
            raise AnalyticsError(f"order_by.field: '{order_by['field']}' is not a selected metric or dimension")
        descending = order_by.get("direction", "desc") == "desc"
        rows.sort(key=lambda r: number(r[field]), reverse=descending)
        return
    rows.sort(key=lambda r: number(r[metrics[0]]), reverse=True)
    if date_field:
        rows.sort(key=lambda r: r[date_field])
