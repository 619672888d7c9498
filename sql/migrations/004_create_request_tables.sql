-- Per-request economics: app request logs (product.md §5.4), /generation records, the enrichment queue, the
-- fallback-classification macros and the extra mart columns built from them.
-- Written by openrouter_spend.requests_log (ingestion, by file) and openrouter_spend.enrich (queue and
-- /generation loads); read by marts.fct_generations and the marts downstream of it.
create schema if not exists raw;
create schema if not exists meta;
create schema if not exists marts;

-- One row per valid line of a request-log file. A file is replaced whole when it changes (source_file is
-- its path under landing/requests). extra_fields keeps the whole line when it carries fields this table
-- does not name (nothing the application wrote is lost); it is NULL otherwise. Valid lines carry no line
-- number: numbering needs a single-threaded scan, which only files with bad lines pay for (quarantine).
create table if not exists raw.request_log (
    source_file varchar not null,
    generation_id varchar not null,
    created_at timestamptz not null,
    usage_date date not null,
    api_key_hash varchar,
    project varchar,
    workflow varchar,
    requested_model varchar,
    requested_models varchar[],
    accepted boolean,
    retry_of varchar,
    request_fingerprint varchar,
    openrouter_metadata json,
    usage json,
    extra_fields json,
    loaded_at timestamptz not null
);

-- Lines (or whole files, line_number NULL) that could not be loaded, with the reason; also written to
-- $OPENROUTER_SPEND_HOME/quarantine/requests/. Replaced together with the file's rows.
create table if not exists raw.request_log_quarantine (
    source_file varchar not null,
    line_number bigint,
    reason varchar not null,
    line varchar,
    quarantined_at timestamptz not null
);

-- Every request-log file seen: what was loaded from it and the fingerprint used to detect a change.
create table if not exists meta.request_log_files (
    source_file varchar primary key,
    size_bytes bigint not null,
    mtime_ns bigint not null,
    sha256 varchar not null,
    status varchar not null check (status in ('loaded', 'failed')),
    line_count bigint,
    loaded_rows bigint,
    quarantined_rows bigint,
    first_usage_date date,
    last_usage_date date,
    error varchar,
    first_seen_at timestamptz not null,
    loaded_at timestamptz not null,
    load_count integer not null
);

-- Usage days whose per-request inputs changed (a file loaded, /generation records loaded); the next mart
-- build rebuilds the days changed since the previous build.
create table if not exists meta.request_log_changes (
    usage_date date not null,
    changed_at timestamptz not null,
    source varchar not null
);

-- The newest /generation record of each generation id, as landed (payload = the response's `data`).
create table if not exists raw.generations (
    generation_id varchar primary key,
    usage_date date,
    partition_date date not null,
    run_id varchar not null,
    fetched_at timestamptz not null,
    landing_file varchar not null,
    sha256 varchar not null,
    payload json not null
);

-- Generation ids without openrouter_metadata: whether /generation is to be called (pending), was
-- answered (fetched), kept 404ing past the give-up delay (unavailable) or was left out of the day's
-- stratified sample (not_sampled).
create table if not exists meta.generation_queue (
    generation_id varchar primary key,
    usage_date date not null,
    sampling_stratum varchar not null,
    status varchar not null check (status in ('pending', 'fetched', 'unavailable', 'not_sampled')),
    planned_on date not null,
    planned_run_id varchar not null,
    attempts integer not null default 0,
    last_attempt_on date,
    last_attempt_run_id varchar,
    last_http_status integer,
    last_error varchar,
    resolved_on date
);

-- ---------- extra mart columns (the contract columns come from 003) ----------
alter table marts.fct_generations add column if not exists is_provider_fallback boolean;
alter table marts.fct_generations add column if not exists is_model_fallback boolean;
alter table marts.fct_generations add column if not exists is_byok_fallback boolean;
alter table marts.fct_generations add column if not exists detail_source varchar;
alter table marts.fct_generations add column if not exists enrichment_status varchar;
alter table marts.fct_generations add column if not exists sampling_stratum varchar;
alter table marts.fct_generations add column if not exists sampling_weight double;
alter table marts.fct_generations add column if not exists cost_source varchar;
alter table marts.fct_generations add column if not exists is_byok boolean;
alter table marts.fct_generations add column if not exists byok_cost_usd double;
alter table marts.fct_generations add column if not exists prompt_tokens bigint;
alter table marts.fct_generations add column if not exists completion_tokens bigint;
alter table marts.fct_generations add column if not exists cached_tokens bigint;
alter table marts.fct_generations add column if not exists requested_price_cost_usd double;
alter table marts.fct_generations add column if not exists fallback_extra_cost_usd double;
alter table marts.fct_generations add column if not exists finish_reason varchar;
alter table marts.fct_generations add column if not exists is_cancelled boolean;
alter table marts.fct_generations add column if not exists retry_of varchar;
alter table marts.fct_generations add column if not exists request_fingerprint varchar;
alter table marts.fct_generations add column if not exists waste_kind varchar;
alter table marts.fct_generations add column if not exists is_wasted boolean;
alter table marts.fct_generations add column if not exists source_file varchar;

alter table marts.fct_fallback_daily add column if not exists classified_requests bigint;
alter table marts.fct_fallback_daily add column if not exists fallback_share_ci_low double;
alter table marts.fct_fallback_daily add column if not exists fallback_share_ci_high double;
alter table marts.fct_fallback_daily add column if not exists estimate_method varchar;
alter table marts.fct_fallback_daily add column if not exists provider_fallback_requests bigint;
alter table marts.fct_fallback_daily add column if not exists model_fallback_requests bigint;
alter table marts.fct_fallback_daily add column if not exists byok_fallback_requests bigint;

alter table marts.rpt_unit_economics_daily add column if not exists fallback_request_share_ci_low double;
alter table marts.rpt_unit_economics_daily add column if not exists fallback_request_share_ci_high double;
alter table marts.rpt_unit_economics_daily add column if not exists fallback_estimate_method varchar;
alter table marts.rpt_unit_economics_daily add column if not exists per_request_requests bigint;
alter table marts.rpt_unit_economics_daily add column if not exists per_request_spend_usd double;

alter table marts.rpt_key_usage_daily add column if not exists waste_method varchar;
alter table marts.rpt_key_usage_daily add column if not exists per_request_requests bigint;

-- ---------- fallback classification (openrouter-api.md §3.3; openrouter_spend.fallbacks documents it) ----------

-- A model id without its routing variant (':free', ':nitro', ...), so a variant is not a model change.
create or replace macro marts.base_model_id(model) as regexp_replace(model, ':[A-Za-z0-9_-]+$', '');

-- The sampling stratum of a logged request: who sent it, which model it asked for, and whether the log
-- carries openrouter_metadata (those need no call and form strata of their own, observed in full).
create or replace macro marts.sampling_stratum(project, api_key_hash, requested_model, has_metadata) as
    coalesce(project, api_key_hash, '(unattributed)') || ' | ' || coalesce(requested_model, '(unknown model)')
    || case when has_metadata then ' | metadata' else ' | api' end;

-- openrouter_metadata parsed once into what classification reads (one JSON parse per request).
create or replace macro marts.parse_metadata(metadata) as
    from_json(metadata, '{"requested": "VARCHAR", "strategy": "VARCHAR", "attempt": "INTEGER", "is_byok": "BOOLEAN",
                          "endpoints": {"available": [{"provider": "VARCHAR", "model": "VARCHAR", "selected": "BOOLEAN"}]},
                          "attempts": [{"provider": "VARCHAR", "model": "VARCHAR", "status": "INTEGER", "is_byok": "BOOLEAN"}]}');

-- A /generation record (its `data`) parsed once.
create or replace macro marts.parse_generation(generation) as
    from_json(generation, '{"model": "VARCHAR", "provider_name": "VARCHAR", "router": "VARCHAR", "total_cost": "DOUBLE",
                            "is_byok": "BOOLEAN", "upstream_inference_cost": "DOUBLE", "native_tokens_prompt": "BIGINT",
                            "native_tokens_completion": "BIGINT", "native_tokens_cached": "BIGINT",
                            "finish_reason": "VARCHAR", "cancelled": "BOOLEAN",
                            "provider_responses": [{"provider_name": "VARCHAR", "model_permaslug": "VARCHAR",
                                                    "status": "INTEGER", "is_byok": "BOOLEAN"}]}');

-- /generation provider_responses as the common attempt list {provider, model, status, is_byok}.
create or replace macro marts.generation_attempts(g) as
    list_transform(g.provider_responses,
                   lambda a: {'provider': a.provider_name, 'model': a.model_permaslug, 'status': a.status,
                              'is_byok': a.is_byok});

-- The response `usage` object the application logged, parsed once.
create or replace macro marts.parse_usage(usage) as
    from_json(usage, '{"cost": "DOUBLE", "is_byok": "BOOLEAN", "prompt_tokens": "BIGINT", "completion_tokens": "BIGINT",
                       "prompt_tokens_details": {"cached_tokens": "BIGINT"},
                       "cost_details": {"upstream_inference_cost": "DOUBLE"}}');

-- The attempt list of a logged request (m = parse_metadata, g = parse_generation): openrouter_metadata's
-- when the application logged it (zero API calls), else the /generation provider_responses; NULL or empty =
-- unknown.
create or replace macro marts.request_attempts(m, g) as
    case when m is not null then m.attempts else marts.generation_attempts(g) end;

-- The endpoint openrouter_metadata marks as selected.
create or replace macro marts.selected_endpoint(m) as
    list_filter(m.endpoints.available, lambda e: coalesce(e.selected, false))[1];

-- The model that served the request: /generation `model`, else openrouter_metadata's selected endpoint,
-- else its last attempt.
create or replace macro marts.request_served_model(m, g) as
    coalesce(g.model, marts.selected_endpoint(m).model, m.attempts[-1].model);

-- The provider that served the request, found the same way.
create or replace macro marts.request_served_provider(m, g) as
    coalesce(g.provider_name, marts.selected_endpoint(m).provider, m.attempts[-1].provider);

-- True when the router, not the application, chose the model: openrouter_metadata.strategy other than
-- direct/fallback, a /generation `router`, or a requested alias ('~...') or router model ('openrouter/...').
create or replace macro marts.is_router_choice(requested_model, strategy, router) as
    coalesce(strategy not in ('direct', 'fallback'), false)
    or router is not null
    or coalesce(starts_with(requested_model, '~') or starts_with(requested_model, 'openrouter/'), false);

-- The attempts before the final one (empty for a single attempt, NULL when the list is unknown).
create or replace macro marts.earlier_attempts(attempt_list) as
    case when len(attempt_list) > 0 then list_slice(attempt_list, 1, len(attempt_list) - 1) end;

-- Attempts of one request: the attempt list's length, or openrouter_metadata.attempt (the 1-based number of
-- the attempt that succeeded) when that is larger or the list is absent; NULL when neither is known.
create or replace macro marts.attempt_count(attempt_list, attempt_number) as
    case
        when coalesce(len(attempt_list), 0) > 0 then greatest(len(attempt_list), coalesce(attempt_number, 0))
        when attempt_number > 0 then attempt_number
    end;

-- Provider fallback: more than one attempt, or a failed (non-2xx) attempt before the final one.
create or replace macro marts.is_provider_fallback(attempt_list, attempt_number) as
    marts.attempt_count(attempt_list, attempt_number) > 1
    or coalesce(list_bool_or(list_transform(marts.earlier_attempts(attempt_list),
                                            lambda a: not coalesce(a.status between 200 and 299, false))), false);

-- Model fallback: the model changes across attempts, or the served model differs from the requested one
-- when the application (not the router: auto/alias routing) chose the model. A router's single attempt is
-- no model fallback whatever it served. NULL when nothing tells.
create or replace macro marts.is_model_fallback(attempt_list, attempt_number, requested_model, served_model,
                                                is_router_choice) as
    case
        when len(list_distinct(list_transform(attempt_list, lambda a: marts.base_model_id(a.model)))) > 1 then true
        when not coalesce(is_router_choice, false) and requested_model is not null and served_model is not null
            then marts.base_model_id(requested_model) <> marts.base_model_id(served_model)
        when coalesce(len(attempt_list), 0) > 0 then false
        when coalesce(is_router_choice, false) and marts.attempt_count(attempt_list, attempt_number) = 1 then false
    end;

-- BYOK -> credits fallback: an earlier attempt used the application's own provider key (is_byok) and the
-- final one did not. NULL when the attempts carry no is_byok (openrouter_metadata does not) and there
-- was more than one attempt.
create or replace macro marts.is_byok_fallback(attempt_list, attempt_number) as
    case
        when list_bool_or(list_transform(attempt_list, lambda a: a.is_byok is not null))
            then coalesce(attempt_list[-1].is_byok = false
                          and list_bool_or(list_transform(marts.earlier_attempts(attempt_list),
                                                          lambda a: coalesce(a.is_byok, false))), false)
        when marts.attempt_count(attempt_list, attempt_number) = 1 then false
    end;

-- One fallback kind per request, the most specific first: model, byok, provider; 'none' when every
-- flag is false; NULL when unknown (no per-request detail).
create or replace macro marts.fallback_kind(is_provider_fallback, is_model_fallback, is_byok_fallback) as
    case
        when is_model_fallback then 'model'
        when is_byok_fallback then 'byok'
        when is_provider_fallback then 'provider'
        when not (is_provider_fallback or is_model_fallback or is_byok_fallback) then 'none'
    end;

-- Wilson score interval bound for a share p estimated with n effective observations (z = 1.96 for 95%);
-- direction -1 gives the lower bound, +1 the upper. NULL when n is not positive.
create or replace macro marts.wilson_bound(p, n, z, direction) as
    case when n > 0 then greatest(0.0, least(1.0,
        (p + z * z / (2 * n) + direction * z * sqrt(greatest(p * (1 - p), 0) / n + z * z / (4 * n * n)))
        / (1 + z * z / n)))
    end;
