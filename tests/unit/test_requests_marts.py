"""Per-request marts on fixture rows: fct_generations, fct_fallback_daily and the per-request report columns."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path

import pytest
from marts_fixtures import DAY, FixtureWarehouse, RawRows, key_hash

from openrouter_spend.ingest import requests_log
from openrouter_spend.warehouse import connect

NEXT = DAY + timedelta(days=1)


def metadata(*attempts: tuple[str, str, int], requested: str = "vendor/pro", strategy: str = "direct") -> dict:
    """openrouter_metadata as OpenRouter returns it (openrouter-api.md §2.9) for the given attempts."""
    provider, model, _ = attempts[-1]
    meta = {"requested": requested, "strategy": strategy, "region": "iad", "summary": f"selected={provider}",
            "attempt": len(attempts), "is_byok": False,
            "endpoints": {"total": len(attempts), "available": [
                {"provider": p, "model": m, "selected": i == len(attempts) - 1}
                for i, (p, m, _) in enumerate(attempts)]}}
    if len(attempts) > 1:
        meta["attempts"] = [{"provider": p, "model": m, "status": s} for p, m, s in attempts]
    return meta


def usage(cost: float, prompt: int, completion: int, cached: int = 0) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}, "cost": cost, "is_byok": False}


ALPHA = key_hash("a-web")
BETA = key_hash("beta-api")
SERVED_FIRST = metadata(("ProviderA", "vendor/pro", 200))

# alpha (key a-web) logs openrouter_metadata and usage: classified with zero calls (a census).
ALPHA_LINES = [
    {"generation_id": "g1", "created_at": f"{DAY}T10:00:00Z", "workflow": "chat", "requested_model": "vendor/pro",
     "accepted": True, "request_fingerprint": "fp-1", "openrouter_metadata": SERVED_FIRST,
     "usage": usage(0.02, 1000, 100)},
    # provider fallback: 2000 prompt + 500 completion tokens at vendor/pro's $3 / $10 per 1M = $0.011
    {"generation_id": "g2", "created_at": f"{DAY}T10:05:00Z", "workflow": "chat", "requested_model": "vendor/pro",
     "accepted": True,
     "openrouter_metadata": metadata(("ProviderA", "vendor/pro", 503), ("ProviderB", "vendor/pro", 200)),
     "usage": usage(0.05, 2000, 500)},
    # model fallback to vendor/lite: the same 1000 + 200 tokens at vendor/pro's price would cost $0.005
    {"generation_id": "g3", "created_at": f"{DAY}T10:10:00Z", "workflow": "chat", "requested_model": "vendor/pro",
     "accepted": False,
     "openrouter_metadata": metadata(("ProviderA", "vendor/pro", 529), ("ProviderB", "vendor/lite", 200),
                                     strategy="fallback"),
     "usage": usage(0.001, 1000, 200)},
    {"generation_id": "g4", "created_at": f"{DAY}T10:15:00Z", "workflow": "chat", "requested_model": "vendor/pro",
     "accepted": True, "retry_of": "g3", "openrouter_metadata": SERVED_FIRST, "usage": usage(0.02, 1000, 100)},
    # the same request as g1 half an hour later: a duplicate job; again 90 minutes after that: not a duplicate
    {"generation_id": "g5", "created_at": f"{DAY}T10:30:00Z", "workflow": "chat", "requested_model": "vendor/pro",
     "accepted": True, "request_fingerprint": "fp-1", "openrouter_metadata": SERVED_FIRST,
     "usage": usage(0.02, 1000, 100)},
    {"generation_id": "g6", "created_at": f"{DAY}T12:00:00Z", "workflow": "chat", "requested_model": "vendor/pro",
     "accepted": True, "request_fingerprint": "fp-1", "openrouter_metadata": SERVED_FIRST,
     "usage": usage(0.02, 1000, 100)},
]
# beta (key beta-api) logs ids only: two were fetched from /generation, two were left out of the sample.
BETA_LINES = [{"generation_id": f"b{i}", "created_at": f"{DAY}T1{i}:00:00Z", "workflow": "batch",
               "requested_model": "vendor/lite"} for i in range(1, 5)]
BETA_RECORDS = {
    "b1": {"id": "b1", "model": "vendor/lite", "provider_name": "P2", "router": None, "total_cost": 0.01,
           "is_byok": False, "native_tokens_prompt": 500, "native_tokens_completion": 50, "native_tokens_cached": 0,
           "finish_reason": "stop", "cancelled": False,
           "provider_responses": [{"provider_name": "P2", "model_permaslug": "vendor/lite", "status": 200,
                                   "is_byok": False}]},
    "b2": {"id": "b2", "model": "vendor/lite", "provider_name": "P2", "router": None, "total_cost": 0.03,
           "is_byok": False, "native_tokens_prompt": 1500, "native_tokens_completion": 150,
           "native_tokens_cached": 0, "finish_reason": "stop", "cancelled": False,
           "provider_responses": [{"provider_name": "P9", "model_permaslug": "vendor/lite", "status": 502,
                                   "is_byok": False},
                                  {"provider_name": "P2", "model_permaslug": "vendor/lite", "status": 200,
                                   "is_byok": False}]},
}


# beta-api's activity ($0.50, 50 requests) less the measured b1 and b2, per request without a measured cost.
BETA_LEFT_PER_REQUEST = (0.5 - 0.01 - 0.03) / 48


def wilson(p: float, n: float, z: float = 1.96) -> tuple[float, float]:
    centre, spread = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n)), min(1.0, (centre + spread) / (1 + z * z / n))


def _activity() -> RawRows:
    rows = RawRows()
    for day in (DAY, NEXT):
        rows.workspace(day, "ws-alpha", "alpha-space").workspace(day, "ws-beta", "beta-space")
        rows.price(day, "vendor/pro", 3.0, 10.0).price(day, "vendor/lite", 0.2, 0.8)
        for name, workspace in (("a-web", "ws-alpha"), ("beta-api", "ws-beta"), ("personal", None)):
            rows.key(day, name, workspace, last_used=day)
        rows.use(day, "a-web", "vendor/pro", "ProviderA", requests=100, usage=2.0)
        rows.use(day, "beta-api", "vendor/lite", "P2", requests=50, usage=0.5)
        rows.use(day, "personal", "vendor/lite", "P2", requests=10, usage=0.1)
        rows.credit(day, 500.0, 100.0)
    return rows


def _write_log(root: Path, name: str, lines: list[dict]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text("".join(json.dumps(line) + "\n" for line in lines))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> FixtureWarehouse:
    tmp = tmp_path_factory.mktemp("per_request")
    warehouse = FixtureWarehouse(tmp)
    warehouse.load(_activity())
    root = tmp / "requests"
    _write_log(root, "alpha.jsonl", [{**line, "api_key_hash": ALPHA} for line in ALPHA_LINES])
    _write_log(root, "beta.jsonl", [{**line, "api_key_hash": BETA} for line in BETA_LINES])
    # the next day alpha logs one request served at the first attempt: a real 0, not an unknown
    _write_log(root, "alpha-next.jsonl", [{**ALPHA_LINES[0], "generation_id": "n1", "api_key_hash": ALPHA,
                                           "created_at": f"{NEXT}T09:00:00Z"}])
    with connect(warehouse.path) as con:
        requests_log.ingest(con, root, quarantine_dir=tmp / "quarantine")
        for generation_id, record in BETA_RECORDS.items():
            con.execute("insert into raw.generations values (?, ?, ?, 'run', now(), 'fixture', 'x', ?)",
                        [generation_id, DAY, DAY, json.dumps(record)])
        for generation_id, status in (("b1", "fetched"), ("b2", "fetched"), ("b3", "not_sampled"),
                                      ("b4", "not_sampled")):
            con.execute("insert into meta.generation_queue (generation_id, usage_date, sampling_stratum, status, "
                        "planned_on, planned_run_id) values (?, ?, 'x', ?, ?, 'run')",
                        [generation_id, DAY, status, DAY])
    warehouse.build([DAY])
    warehouse.build([NEXT])
    return warehouse


def test_generations_are_classified_attributed_and_priced(built):
    rows = {r["generation_id"]: r for r in built.rows("select * from marts.fct_generations")}
    assert set(rows) == {"g1", "g2", "g3", "g4", "g5", "g6", "b1", "b2", "b3", "b4", "n1"}
    assert {r["project"] for g, r in rows.items() if g.startswith("g")} == {"alpha"}
    assert {r["project"] for g, r in rows.items() if g.startswith("b")} == {"beta"}
    assert (rows["g2"]["fallback_kind"], rows["g2"]["attempts"], rows["g2"]["provider_name"]) == \
        ("provider", 2, "ProviderB")
    assert (rows["g3"]["fallback_kind"], rows["g3"]["served_model"]) == ("model", "vendor/lite")
    assert rows["g1"]["fallback_kind"] == "none" and rows["b2"]["fallback_kind"] == "provider"
    # fallback extra cost by hand: actual cost minus the same tokens at vendor/pro's price of the day
    assert rows["g2"]["requested_price_cost_usd"] == pytest.approx((2000 * 3.0 + 500 * 10.0) / 1e6)
    assert rows["g2"]["fallback_extra_cost_usd"] == pytest.approx(0.05 - 0.011)
    assert rows["g3"]["fallback_extra_cost_usd"] == pytest.approx(0.001 - (1000 * 3.0 + 200 * 10.0) / 1e6)
    assert rows["g1"]["fallback_extra_cost_usd"] is None
    # not sampled: fallback unknown, weight NULL; its served model is unknown, so its cost is allocated from
    # what beta-api's activity leaves after b1 and b2: ($0.50 - $0.04) over the 48 requests without a cost
    assert (rows["b3"]["is_fallback"], rows["b3"]["fallback_kind"], rows["b3"]["enrichment_status"]) == \
        (None, None, "not_sampled")
    assert (rows["b3"]["cost_usd"], rows["b3"]["cost_source"], rows["b3"]["is_cost_measured"]) == \
        (pytest.approx(BETA_LEFT_PER_REQUEST), "allocated_key", False)
    assert (rows["b1"]["cost_source"], rows["b1"]["is_cost_measured"]) == ("generation", True)
    assert (rows["b1"]["sampling_weight"], rows["g1"]["sampling_weight"], rows["b3"]["sampling_weight"]) == \
        (2.0, 1.0, None)
    # waste: retry, duplicate within the hour, the same request 90 minutes later is not a duplicate
    assert {g: rows[g]["waste_kind"] for g in ("g1", "g4", "g5", "g6")} == \
        {"g1": None, "g4": "retry", "g5": "duplicate", "g6": None}


def test_fallback_daily_counts_shares_intervals_and_extra_cost(built):
    rows = {(r["project"], r["workflow"]): r for r in built.rows(
        "select * from marts.fct_fallback_daily where usage_date = ?", [DAY])}
    alpha = rows[("alpha", "chat")]
    assert (alpha["requests"], alpha["classified_requests"], alpha["fallback_requests"]) == (6, 6, 2)
    assert alpha["fallback_share"] == pytest.approx(2 / 6)
    # Every logged request is classified, but alpha logged 6 of its 100 requests: the 6 are a sample of its
    # traffic (effective size 6 ÷ (1 - 0.06)), never a census.
    low, high = wilson(2 / 6, 6 / (1 - 0.06))
    assert alpha["request_coverage_share"] == pytest.approx(0.06)
    assert (alpha["estimate_method"], alpha["fallback_share_ci_low"], alpha["fallback_share_ci_high"]) == \
        ("sample", pytest.approx(low), pytest.approx(high))
    assert alpha["fallback_spend_usd"] == pytest.approx(0.05 + 0.001)
    assert alpha["fallback_extra_cost_usd"] == pytest.approx((0.05 - 0.011) + (0.001 - 0.005))
    # Scaled to the project's 100 requests.
    assert (alpha["traffic_requests"], alpha["traffic_fallback_requests"]) == (100, 33)
    assert alpha["traffic_fallback_spend_usd"] == pytest.approx((0.05 + 0.001) / 0.06)
    assert alpha["traffic_fallback_extra_cost_usd"] == pytest.approx(((0.05 - 0.011) + (0.001 - 0.005)) / 0.06)
    assert (alpha["provider_fallback_requests"], alpha["model_fallback_requests"]) == (2, 1)
    assert alpha["spend_usd"] == pytest.approx(0.02 + 0.05 + 0.001 + 0.02 * 3)

    beta = rows[("beta", "batch")]
    # 2 of 4 logged requests classified (weight 2 each), one of them a fallback.
    assert (beta["requests"], beta["classified_requests"], beta["fallback_requests"]) == (4, 2, 2)
    assert beta["fallback_share"] == pytest.approx(0.5)
    # Var = (1 - n/N) N²/n · s² / N̂² with s² = [a(1-p)² + (b-a)p² - (a - pb)²/n] / (n - 1): here 0.125
    variance = (1 - 2 / 4) * 4 * 4 / 2 * ((1 * 0.25 + 1 * 0.25) - 0) / 1 / (4 * 4)
    # plus the logging phase: 4 of beta's 50 requests were logged, (1 - 0.08) p(1 - p) / 4
    low, high = wilson(0.5, 1 / (variance / 0.25 + (1 - 4 / 50) / 4))
    assert (beta["estimate_method"], beta["fallback_share_ci_low"], beta["fallback_share_ci_high"]) == \
        ("sample", pytest.approx(low), pytest.approx(high))
    assert beta["fallback_extra_cost_usd"] == pytest.approx(2 * (0.03 - (1500 * 0.2 + 150 * 0.8) / 1e6))


def test_per_request_columns_are_null_without_data_and_zero_only_when_measured(built):
    economics = {(r["usage_date"], r["project"]): r for r in built.rows(
        "select * from marts.rpt_unit_economics_daily")}
    unowned = economics[(DAY, "(unowned)")]
    assert [unowned[c] for c in ("fallback_request_share", "generation_coverage_share", "accepted_results",
                                 "cost_per_accepted_result_usd", "fallback_request_share_ci_low")] == [None] * 5
    alpha = economics[(DAY, "alpha")]
    alpha_spend = 0.02 + 0.05 + 0.001 + 0.02 * 3
    assert alpha["fallback_request_share"] == pytest.approx(2 / 6)
    assert alpha["generation_coverage_share"] == pytest.approx(alpha_spend / 2.0)
    assert alpha["accepted_results"] == 5
    assert alpha["cost_per_accepted_result_usd"] == pytest.approx(alpha_spend / 5)
    beta = economics[(DAY, "beta")]
    assert beta["accepted_results"] is None  # beta logs no verdicts: unknown, not 0
    assert beta["generation_coverage_share"] == pytest.approx((0.01 + 0.03 + 2 * BETA_LEFT_PER_REQUEST) / 0.5)
    assert beta["fallback_estimate_method"] == "sample"
    account = economics[(DAY, "*")]
    assert account["fallback_request_share"] == pytest.approx((2 * 1 + 2 * 1) / (6 + 4))
    assert account["per_request_requests"] == 10
    following = economics[(NEXT, "alpha")]
    # one request of 100 logged, served at the first attempt: a measured 0, from a sample
    assert (following["fallback_request_share"], following["fallback_estimate_method"]) == (0.0, "sample")
    assert following["fallback_request_share_ci_high"] == pytest.approx(wilson(0.0, 1 / (1 - 0.01))[1])
    assert economics[(NEXT, "beta")]["fallback_request_share"] is None


def test_waste_from_request_logs_replaces_the_aggregate_estimate_where_keys_log(built):
    keys = {r["api_key_hash"]: r for r in built.rows(
        "select * from marts.rpt_key_usage_daily where usage_date = ?", [DAY])}
    alpha = keys[ALPHA]
    # g4 (retry) and g5 (duplicate) of 6 census requests are waste: $0.04 of $0.131 logged.
    assert (alpha["waste_method"], alpha["per_request_requests"]) == ("per_request", 6)
    assert alpha["wasted_requests"] == pytest.approx(100 * 2 / 6)
    assert alpha["wasted_spend_usd"] == pytest.approx(2.0 * 0.04 / 0.131)
    assert keys[key_hash("personal")]["waste_method"] == "aggregate_estimate"
    # The wasted share of the logged requests, 2 of 6, is a sample of 100 requests: its 95% interval.
    low, high = wilson(2 / 6, 6 / (1 - 0.06))
    assert alpha["per_request_coverage_share"] == pytest.approx(0.06)
    assert alpha["wasted_spend_ci_low_usd"] == pytest.approx(alpha["wasted_spend_usd"] * low / (2 / 6))
    assert alpha["wasted_spend_ci_high_usd"] == pytest.approx(alpha["wasted_spend_usd"] * high / (2 / 6))
    assert keys[key_hash("personal")]["wasted_spend_ci_low_usd"] is None  # a model estimate, not a sample
    change = built.rows("select * from marts.rpt_spend_change where usage_date = ? and project = 'alpha'", [NEXT])[0]
    # The next day alpha logs no waste: the waste effect is the change of the one waste figure, -$0.61, and
    # the useful spend grows by as much ($2.00 - $1.39) on 100 useful requests instead of 66.7 (volume),
    # while the cost per useful token falls (mix/price).
    wasted_before = 2.0 * 0.04 / 0.131
    useful_before, useful_spend_before = 100 - 100 * 2 / 6, 2.0 - wasted_before
    weight = (2.0 - useful_spend_before) / (math.log(2.0) - math.log(useful_spend_before))
    assert change["delta_usd"] == pytest.approx(0.0)
    assert change["wasted_spend_usd"] == 0.0
    assert change["waste_effect_usd"] == pytest.approx(-wasted_before)
    assert change["volume_effect_usd"] == pytest.approx(weight * math.log(100 / useful_before))
    assert change["context_effect_usd"] == pytest.approx(0.0)
    assert change["volume_effect_usd"] + change["mix_price_effect_usd"] == pytest.approx(wasted_before)


def test_daily_builds_equal_a_full_rebuild(built, tmp_path):
    copy = built.copy_to(tmp_path / "copy")
    copy.rebuild()
    for table in ("fct_generations", "fct_fallback_daily", "rpt_unit_economics_daily", "rpt_key_usage_daily"):
        sql = f"select * from marts.{table} order by all"
        assert copy.rows(sql) == built.rows(sql), table


def test_the_digest_shows_every_per_request_figure_with_its_coverage_scale_and_interval(built):
    from openrouter_spend.reports.digest import render_day
    from openrouter_spend.reports.digest.data import collect

    with connect(built.path, read_only=True) as con:
        data = collect(con, DAY, "test")
        files, _ = render_day(con, DAY, "test")
    alpha = next(row for row in data.fallback if row["project"] == "alpha")
    # 6 logged of alpha's 100 requests, every one classified: a sample of the traffic, not a census.
    assert (alpha["is_census"], alpha["logged_requests"], alpha["requests"]) == (False, 6, 100)
    assert alpha["coverage_share"] == pytest.approx(0.06)
    assert alpha["fallback_spend_usd"] == pytest.approx((0.05 + 0.001) / 0.06)  # scaled, not a sample sum
    low, high = alpha["fallback_spend_usd_ci"]
    assert low < alpha["fallback_spend_usd"] < high
    assert low == pytest.approx(alpha["fallback_spend_usd"] * alpha["fallback_share_ci_low"] / (2 / 6))
    blind = {row["project"]: row["blind_spots"] for row in data.blind_spot_rows}
    assert blind["alpha"][0] == "per-request figures from a 6.0% sample of requests"
    assert any("Per-request figures come from a sample: 10 logged of 160 requests" in spot for spot in data.blind_spots)
    html = files["digest.html"].decode()
    assert "6 logged, 6.0%" in html and "census" not in html.split("Fallbacks (projects")[1].split("</table>")[0]
    assert "Blind spots" in html and '<span class="muted">none</span>' not in html.split("Blind spots by project")[1]
