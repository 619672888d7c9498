"""The large organisation: 2,000 keys of which 200 are in use, every servable catalogue model, and a request-log
day of any size written straight to disk with DuckDB.

`LARGE_KEYS` is the key catalogue of the `large` scenario (members, workspaces and keys are data, like the
default world). Its request logs come in two sizes: the scenario's ordinary emulated logs (`write_emulated_logs`,
20 generations per key and day, built in memory), and `write_request_log`, which writes N lines for one day
(a million by default) without holding them in Python. Ids in those lines encode the key, model, provider and
creation time, so `generation_for_id` rebuilds the matching /generation record from the id alone: an emulator
serving the day answers any sampled id without keeping the day's records.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from openrouter_emulator.catalog import (
    MODEL_BY_ID,
    MODELS,
    KeySpec,
    Member,
    WorkspaceSpec,
    endpoint_id,
)

KEY_COUNT = 2000
ACTIVE_KEY_COUNT = 200
REQUEST_LOG_LINES = 1_000_000

LARGE_MEMBERS: tuple[Member, ...] = tuple(
    Member(handle, first, last, f"{handle}@contoso-ai.example", "org:admin" if index < 3 else "org:member")
    for index, (handle, first, last) in enumerate((
        ("ines", "Ines", "Duarte"), ("kofi", "Kofi", "Mensah"), ("lena", "Lena", "Vogel"),
        ("marek", "Marek", "Novak"), ("nadia", "Nadia", "Haddad"), ("oscar", "Oscar", "Lund"),
        ("priya", "Priya", "Raman"), ("quentin", "Quentin", "Roux"), ("rosa", "Rosa", "Iglesias"),
        ("sven", "Sven", "Aalto"), ("tariq", "Tariq", "Aziz"), ("uma", "Uma", "Kapoor"),
    ))
) + (Member("provisioner", None, None, "svc-provisioner@contoso-ai.example", "org:admin"),)

_WORKSPACE_NAMES = ("assistant", "search", "agents", "ingest", "support", "analytics", "labs")
LARGE_WORKSPACES: tuple[WorkspaceSpec, ...] = (
    WorkspaceSpec("default", "Default", "Account default workspace", 720, "ines",
                  "https://console.contoso-ai.example/", 61000, None, is_default=True),
) + tuple(
    WorkspaceSpec(name, name, f"The {name} product line", 600 - index * 40, LARGE_MEMBERS[index % 12].handle,
                  f"https://{name}.contoso-ai.example/", 61001 + index, "openai/gpt-4.1-mini")
    for index, name in enumerate(_WORKSPACE_NAMES)
)

# How the large organisation's apps log: half the product lines carry openrouter_metadata, half only ids.
LARGE_REQUEST_LOGGING = {"assistant": "metadata", "search": "metadata", "agents": "metadata",
                         "ingest": "plain", "support": "plain", "analytics": "plain", "labs": "plain"}

# Every model a request can be served by (the auto router only routes).
SERVABLE_MODELS: tuple[str, ...] = tuple(m.id for m in MODELS if m.providers)


def _key_mix(index: int) -> tuple[tuple[str, float], ...]:
    """Two or three models per key, rotating so that every servable model is in use."""
    count = 2 + index % 2
    chosen = [SERVABLE_MODELS[(index * 3 + step * 7) % len(SERVABLE_MODELS)] for step in range(count)]
    chosen = list(dict.fromkeys(chosen))
    weights = [0.6, 0.3, 0.1][:len(chosen)]
    total = sum(weights)
    return tuple((model, weight / total) for model, weight in zip(chosen, weights, strict=True))


def large_keys() -> tuple[KeySpec, ...]:
    """2,000 keys: 200 services used every day, 1,800 idle (unused for weeks, never used, disabled, expired)."""
    specs = []
    rng = random.Random("large-organisation")
    workspaces = [w.slug for w in LARGE_WORKSPACES]
    for index in range(KEY_COUNT):
        workspace = workspaces[1 + index % (len(workspaces) - 1)] if index % 10 else "default"
        creator = LARGE_MEMBERS[index % 12].handle
        mix = _key_mix(index)
        if index < ACTIVE_KEY_COUNT:
            specs.append(KeySpec(
                name=f"{workspace}-service-{index:04d}", workspace=workspace, creator=creator,
                created_days_ago=120 + rng.randrange(500), pattern="batch" if index % 3 else "service",
                # About 1.7 million requests a day over the 200 keys: enough for a million logged lines.
                requests=round(rng.lognormvariate(math.log(6000), 0.8)), mix=mix,
                prompt_tokens=400 + rng.randrange(3000), completion_tokens=40 + rng.randrange(600),
                cache_ratio=rng.choice((0.0, 0.2, 0.4))))
            continue
        kind = index % 6
        created = 150 + rng.randrange(550)
        common = dict(name=f"{workspace}-key-{index:04d}", workspace=workspace, creator=creator,
                      created_days_ago=created, pattern="sporadic", requests=50, mix=mix,
                      prompt_tokens=1000, completion_tokens=200)
        if kind == 0:
            specs.append(KeySpec(**{**common, "requests": 0, "mix": ()}, never_used=True))
        elif kind == 1:
            specs.append(KeySpec(**common, disabled_days_ago=40 + rng.randrange(created - 40)))
        elif kind == 2:
            specs.append(KeySpec(**common, expires_days_ago=35 + rng.randrange(created - 35)))
        else:
            specs.append(KeySpec(**common, idle_days=35 + rng.randrange(created - 35)))
    return tuple(specs)


LARGE_KEYS = large_keys()


# ----- a request-log day of any size -------------------------------------------------------------------

def _token(key_slot: int, model_slot: int, provider_slot: int, line: int, micros: int) -> str:
    """The 20-digit id token: key, model, provider, line number and the microsecond of the day's second."""
    return f"{key_slot:04d}{model_slot:02d}{provider_slot:01d}{line:07d}{micros:06d}"


def generation_for_id(org, generation_id: str) -> dict | None:
    """The /generation record of an id written by `write_request_log`, rebuilt from the id (None if not one)."""
    from openrouter_emulator.org import ActivityRow, DayEffects, build_generation

    parts = generation_id.split("-")
    if len(parts) != 3 or parts[0] != "gen" or not parts[1].isdigit() or len(parts[2]) != 20 \
            or not parts[2].isdigit():
        return None
    token = parts[2]
    key_slot, model_slot, provider_slot = int(token[:4]), int(token[4:6]), int(token[6])
    micros = int(token[14:])
    if key_slot >= len(org.keys) or model_slot >= len(SERVABLE_MODELS):
        return None
    key = org.keys[key_slot]
    model = MODEL_BY_ID[SERVABLE_MODELS[model_slot]]
    if provider_slot >= len(model.providers):
        return None
    provider = model.providers[provider_slot][0]
    created = datetime.fromtimestamp(int(parts[1]), UTC) + timedelta(microseconds=micros)
    spec = key.spec
    completion = 0 if model.is_embedding else spec.completion_tokens
    row = ActivityRow(model.id, endpoint_id(model.id, provider), provider, 1, max(1, spec.prompt_tokens),
                      completion, 0, round(spec.prompt_tokens * spec.cache_ratio) if model.supports_caching else 0,
                      0, 0, 0)
    rng = random.Random(f"{org.seed}|logged|{generation_id}")
    record, _ = build_generation(rng, key, org.workspace_by_id(key.workspace_id), row, created, DayEffects())
    record["id"] = generation_id
    record["created_at"] = created.isoformat(timespec="microseconds")
    return record


def _picks(org, day: date) -> list[tuple]:
    """(key slot, hash, project, workflow, mode, cumulative weight bounds, model slot, provider slot, model):
    one row per (key, endpoint) the key used that day, weighted by its requests."""
    logging = org.world.request_logging
    rows = []
    for slot, key in enumerate(org.keys):
        mode = logging.get(key.workspace_name)
        if mode is None:
            continue
        for activity in org.key_rows(day).get(key.hash, ()):
            model = MODEL_BY_ID[activity.model_id]
            if model.id not in SERVABLE_MODELS:
                continue
            provider_slot = [name for name, _ in model.providers].index(activity.provider_name)
            rows.append((slot, key.hash, key.workspace_name, key.name, mode, activity.requests,
                         SERVABLE_MODELS.index(model.id), provider_slot, model.id))
    return rows


def write_request_log(org, day: date, directory: Path, lines: int = REQUEST_LOG_LINES) -> list[Path]:
    """Write `lines` request-log lines of `day` under <directory>/<workspace>/<day>.jsonl[.gz] with DuckDB.

    Lines are spread over the keys and endpoints the organisation used that day in proportion to their
    requests; "metadata" workspaces log openrouter_metadata and usage (gzip), "plain" ones ids only.
    """
    import duckdb

    picks = _picks(org, day)
    if not picks:
        return []
    total = sum(p[5] for p in picks)
    start = int(datetime.combine(day, datetime.min.time(), tzinfo=UTC).timestamp())
    con = duckdb.connect()
    con.execute("set timezone = 'UTC'")
    con.execute("create table picks (key_slot int, api_key_hash varchar, project varchar, workflow varchar, "
                "mode varchar, requests bigint, model_slot int, provider_slot int, model varchar)")
    con.executemany("insert into picks values (?, ?, ?, ?, ?, ?, ?, ?, ?)", picks)
    # Each (key, endpoint) gets its share of the lines: line numbers lo .. hi-1, no join needed.
    con.execute(f"create table bounds as select *, ({lines} * (running - requests) // {total})::bigint as lo, "
                f"({lines} * running // {total})::bigint as hi from (select *, sum(requests) over "
                "(order by key_slot, model_slot, provider_slot) as running from picks)")
    providers = {m: [name for name, _ in MODEL_BY_ID[m].providers] for m in SERVABLE_MODELS}
    con.execute("create table providers (model varchar, slot int, provider varchar)")
    con.executemany("insert into providers values (?, ?, ?)",
                    [(m, i, p) for m, names in providers.items() for i, p in enumerate(names)])
    con.execute(
        f"""
        create table log as
        with
        placed as (
            select * exclude (lo, hi, requests, running), lo + unnest(range(hi - lo)) as i
            from bounds where hi > lo
        ),
        timed as (
            select *, (hash(i, {org.seed}, 'at') % 86400000000)::bigint as at_micros from placed
        )
        select
            'gen-' || ({start} + at_micros // 1000000) || '-' || lpad(key_slot::varchar, 4, '0')
                || lpad(model_slot::varchar, 2, '0') || provider_slot::varchar || lpad((i % 10000000)::varchar, 7, '0')
                || lpad((at_micros % 1000000)::varchar, 6, '0') as generation_id,
            strftime(make_timestamp({start}::bigint * 1000000 + at_micros), '%Y-%m-%dT%H:%M:%S.%f') || '+00:00'
                as created_at,
            api_key_hash, project, workflow, model as requested_model,
            hash(i, 'accepted') % 10 <> 0 as accepted,
            md5(workflow || (i // 3)) as request_fingerprint,
            mode, provider_slot, hash(i, 'fallback') % 100 < 4 as fell_back, at_micros
        from timed
        """
    )
    written = []
    for project, mode in con.execute("select distinct project, mode from log order by project").fetchall():
        compressed = mode == "metadata"
        target = Path(directory) / project / f"{day.isoformat()}.jsonl{'.gz' if compressed else ''}"
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name("." + target.name + ".tmp")
        columns = ("log.generation_id, log.created_at, log.api_key_hash, log.project, log.workflow, "
                   "log.requested_model, log.accepted, log.request_fingerprint")
        if compressed:
            columns += """,
                {'requested': log.requested_model, 'strategy': 'direct', 'region': 'iad',
                 'summary': 'available=2, selected=' || served.provider, 'attempt': case when fell_back then 2 else 1 end,
                 'is_byok': false,
                 'endpoints': {'total': 2, 'available': [
                     {'provider': coalesce(other.provider, served.provider), 'model': log.requested_model, 'selected': false},
                     {'provider': served.provider, 'model': log.requested_model, 'selected': true}]},
                 'attempts': case when fell_back then [
                     {'provider': coalesce(other.provider, served.provider), 'model': log.requested_model, 'status': 429},
                     {'provider': served.provider, 'model': log.requested_model, 'status': 200}] end} as openrouter_metadata,
                {'prompt_tokens': 800, 'completion_tokens': 200, 'total_tokens': 1000, 'cost': 0.0004,
                 'is_byok': false} as usage"""
        con.execute(
            f"""
            copy (
                select {columns}
                from log
                left join providers as served on served.model = log.requested_model and served.slot = log.provider_slot
                left join providers as other on other.model = log.requested_model
                    and other.slot = case when log.provider_slot = 0 then 1 else 0 end
                where log.project = ? order by log.at_micros
            ) to '{temporary}' (format json{", compression gzip" if compressed else ""})
            """,
            [project],
        )
        temporary.replace(target)
        written.append(target)
    con.close()
    return written
