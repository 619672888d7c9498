-- Provider prices per model (GET /models/{id}/endpoints, fetched for the models used that day) and the two
-- savings kinds they and the request logs feed (docs/marts.md, "Savings opportunities"): provider_price_spread
-- and premium_vs_standard. The mart's new columns come from its SELECT: the next build adds them to an existing
-- table and rebuilds its days (warehouse/marts.py).

-- One row per provider (PublicEndpoint) of a landed endpoints answer; model_id is the answer's data.id.
create table if not exists raw.model_endpoints (
    partition_date date not null,
    run_id varchar not null,
    fetched_at timestamptz not null,
    landing_file varchar not null,
    request_params json,
    model_id varchar not null,
    provider_name varchar not null,
    payload json not null
);
