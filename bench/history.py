"""Generator: N days of history for a warehouse that holds one real pipeline day.

The template is a warehouse after one `openrouter-spend run` of the `large` scenario (200 keys in use, 2,000
listed). `expand_history` copies that day's raw partitions, request logs, /generation records, lineage, quality
runs and alert ledger to the N-1 days before it, inside DuckDB, then rebuilds every mart from raw: in a few
seconds per hundred days it gives what a year of daily runs leaves behind, which the emulator cannot (it serves
90 days and /activity only 30).

How a copied day differs from the template: per-key activity is scaled by one factor per day (weekends
lower, a slow growth over the span, ±15% noise), and the account totals are re-summed from the scaled per-key
rows so the reconciliation checks hold; key snapshots, generation ids and times move with the day (keys keep
their distance to the day: idle keys stay idle); the credit balance counts back from the template's.
"""

from __future__ import annotations

from datetime import date, timedelta

_FACTOR = ("(case when dayofweek(d) in (0, 6) then 0.8 else 1.0 end) * (0.6 + 0.4 * (1 - offset_days / {n}.0)) "
           "* (0.85 + 0.3 * (hash(d) % 1000) / 1000.0)")


def _shift_ts(field: str, fmt: str) -> str:
    return (f"case when payload->>'{field}' is null then null else strftime(cast(payload->>'{field}' as timestamptz)"
            f" - to_days(offset_days), '{fmt}') end")


def expand_history(con, template_day: date, days: int) -> list[date]:
    """Add the `days - 1` days before `template_day` as scaled copies of it; returns the days added."""
    con.execute("set timezone = 'UTC'")
    added = [template_day - timedelta(days=offset) for offset in range(days - 1, 0, -1)]
    con.execute("create or replace temp table history_days as select d::date as d, "
                f"(date '{template_day}' - d::date)::integer as offset_days from unnest(cast(? as date[])) as t(d)", [added])
    con.execute(f"create or replace temp table history_days_f as select *, {_FACTOR.format(n=days)} as f "
                "from history_days")
    con.execute("begin transaction")
    day = f"date '{template_day}'"
    micro, zulu = "%Y-%m-%dT%H:%M:%S.%f+00:00", "%Y-%m-%dT%H:%M:%SZ"
    common = ("d as partition_date, run_id || '-h' || offset_days as run_id, fetched_at - to_days(offset_days) "
              "as fetched_at, replace(landing_file, '{t}', strftime(d, '%Y-%m-%d')) as landing_file")
    common = common.format(t=template_day.isoformat())
    scaled = ", ".join(f"'{name}', round((payload->>'{name}')::bigint * f)::bigint" for name in (
        "requests", "prompt_tokens", "completion_tokens", "reasoning_tokens", "cached_tokens"))
    con.execute(f"""
        insert into raw.activity by name
        select {common}, json_merge_patch(request_params, json_object('date', strftime(d, '%Y-%m-%d'))) as request_params,
            scope, api_key_hash,
            json_merge_patch(payload, json_object('date', strftime(d, '%Y-%m-%d'),
                'usage', (payload->>'usage')::double * f,
                'byok_usage_inference', (payload->>'byok_usage_inference')::double * f, {scaled})) as payload
        from raw.activity as t, history_days_f where partition_date = {day} and scope = 'key'
    """)
    sums = ", ".join(f"'{name}', sum((payload->>'{name}')::{kind})" for name, kind in (
        ("usage", "double"), ("byok_usage_inference", "double"), ("requests", "bigint"),
        ("prompt_tokens", "bigint"), ("completion_tokens", "bigint"), ("reasoning_tokens", "bigint"),
        ("cached_tokens", "bigint")))
    con.execute(f"""
        insert into raw.activity by name
        select partition_date, any_value(run_id) as run_id, any_value(fetched_at) as fetched_at,
            any_value(landing_file) as landing_file,
            json_object('date', strftime(partition_date, '%Y-%m-%d')) as request_params,
            'account' as scope, null as api_key_hash,
            json_object('date', strftime(partition_date, '%Y-%m-%d'), 'model', model, 'model_permaslug', permaslug,
                        'endpoint_id', endpoint_id, 'provider_name', provider_name, {sums}) as payload
        from (
            select *, payload->>'model' as model, payload->>'model_permaslug' as permaslug,
                payload->>'endpoint_id' as endpoint_id, payload->>'provider_name' as provider_name
            from raw.activity where scope = 'key' and partition_date < {day}
        )
        group by partition_date, model, permaslug, endpoint_id, provider_name
    """)
    for table in ("workspaces", "models", "providers"):
        con.execute(f"insert into raw.{table} by name select t.* replace ({common}) "
                    f"from raw.{table} as t, history_days where partition_date = {day}")
    # Lifetime usage counts back from the template's by what each key spent after the copied day.
    con.execute("""
        create or replace temp table key_usage_after as
        select history_days.d as usage_day, activity.api_key_hash,
            sum((activity.payload->>'usage')::double) as usage_after,
            sum((activity.payload->>'byok_usage_inference')::double) as byok_after
        from history_days join raw.activity as activity
            on activity.scope = 'key' and activity.partition_date > history_days.d
        group by all
    """)
    con.execute(f"""
        insert into raw.keys by name
        select t.* replace ({common},
            json_merge_patch(payload, json_object(
                'created_at', {_shift_ts('created_at', micro)}, 'updated_at', {_shift_ts('updated_at', micro)},
                'last_used_at', {_shift_ts('last_used_at', zulu)}, 'expires_at', {_shift_ts('expires_at', zulu)},
                'usage', (payload->>'usage')::double - coalesce(later.usage_after, 0),
                'byok_usage', (payload->>'byok_usage')::double - coalesce(later.byok_after, 0)
            )) as payload)
        from raw.keys as t cross join history_days
        left join key_usage_after as later on later.usage_day = history_days.d and later.api_key_hash = t.key_hash
        where partition_date = {day}
    """)
    con.execute(f"""
        insert into raw.credits by name
        with daily as (
            select partition_date, sum((payload->>'usage')::double) as usage from raw.activity
            where scope = 'account' group by 1
        ),
        later as (
            select history_days.d, sum(daily.usage) as usage_after
            from history_days join daily on daily.partition_date > history_days.d group by 1
        )
        select t.* replace ({common}, total_usage - usage_after as total_usage,
            json_merge_patch(payload, json_object('total_usage', total_usage - usage_after)) as payload)
        from raw.credits as t, later join history_days using (d) where partition_date = {day}
    """)
    con.execute(f"insert into meta.load_runs by name select t.* replace (d as partition_date, run_id || '-h' || "
                f"offset_days as run_id) from meta.load_runs as t, history_days where partition_date = {day}")
    con.execute(f"insert into meta.landed_files by name select t.* replace ({common}) "
                f"from meta.landed_files as t, history_days where partition_date = {day}")
    # Per-request data: ids keep the gen-<unix>-<token> form, moved to the copied day.
    new_id = ("'gen-' || (split_part({c}, '-', 2)::bigint - offset_days * 86400) || '-' || split_part({c}, '-', 3)")
    con.execute(f"""
        insert into raw.request_log by name
        select t.* replace (replace(source_file, '{template_day}', strftime(d, '%Y-%m-%d')) as source_file,
            {new_id.format(c='generation_id')} as generation_id, created_at - to_days(offset_days) as created_at,
            d as usage_date, case when retry_of is null then null else {new_id.format(c='retry_of')} end as retry_of,
            loaded_at - to_days(offset_days) as loaded_at)
        from raw.request_log as t, history_days where usage_date = {day}
    """)
    con.execute(f"""
        insert into raw.generations by name
        select t.* replace ({new_id.format(c='generation_id')} as generation_id, d as usage_date, partition_date - offset_days as partition_date,
            fetched_at - to_days(offset_days) as fetched_at,
            json_merge_patch(payload, json_object('id', {new_id.format(c='generation_id')},
                'created_at', {_shift_ts('created_at', micro)})) as payload)
        from raw.generations as t, history_days where usage_date = {day}
    """)
    con.execute(f"""
        insert into meta.generation_queue by name
        select t.* replace ({new_id.format(c='generation_id')} as generation_id, d as usage_date,
            planned_on - offset_days as planned_on, last_attempt_on - offset_days as last_attempt_on,
            resolved_on - offset_days as resolved_on)
        from meta.generation_queue as t, history_days where usage_date = {day}
    """)
    con.execute(f"""
        insert into meta.request_log_files by name
        select t.* replace (replace(source_file, '{template_day}', strftime(d, '%Y-%m-%d')) as source_file,
            d as first_usage_date, d as last_usage_date)
        from meta.request_log_files as t, history_days where first_usage_date = {day}
    """)
    # What earlier runs recorded: quality runs and results, the alert ledger and its deliveries.
    con.execute(f"insert into marts.fct_quality_runs by name select t.* replace (run_id || '-h' || offset_days as "
                f"run_id, d as usage_date) from marts.fct_quality_runs as t, history_days where usage_date = {day}")
    con.execute(f"insert into marts.fct_quality_results by name select t.* replace (run_id || '-h' || offset_days as "
                f"run_id, d as usage_date) from marts.fct_quality_results as t, history_days where usage_date = {day}")
    con.execute(f"""
        insert into marts.fct_alerts by name
        select t.* replace (alert_id || '-h' || offset_days as alert_id, d as usage_date,
            least(first_seen_date, d) as first_seen_date)
        from marts.fct_alerts as t, history_days where usage_date = {day}
    """)
    con.execute(f"""
        insert into marts.fct_alert_deliveries by name
        select t.* replace (delivery_id || '-h' || offset_days as delivery_id, alert_id || '-h' || offset_days
            as alert_id, d as usage_date)
        from marts.fct_alert_deliveries as t, history_days where usage_date = {day}
    """)
    con.execute(f"insert into marts.fct_alert_runs by name select t.* replace (d as usage_date, run_id || '-h' || "
                f"offset_days as run_id) from marts.fct_alert_runs as t, history_days where usage_date = {day}")
    con.execute("commit")
    return added
