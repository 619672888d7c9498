"""Fallback classification of one request (openrouter-api.md §3.3): provider, model and BYOK→credits fallbacks.

The rules are SQL macros (sql/migrations/004_create_request_tables.sql) because marts.fct_generations applies
them to millions of logged requests a day; `classify()` evaluates the very same macros for one payload and
`classify_many()` for a list of them in one query, so the tests and any one-off check use the rules the
warehouse uses. Inputs, in order of preference:

* `openrouter_metadata` logged by the application (header `X-OpenRouter-Metadata: enabled`): zero API
  calls. Its `attempts[]` carry provider, model and status but no `is_byok`, so a BYOK→credits fallback
  cannot be seen there (the flag is NULL when there were several attempts).
* otherwise the `/generation` record: `provider_responses[]` (status, provider, model permaslug, is_byok
  per attempt). `null` or `[]` means "no attempt information", never "no fallback".

Rules (a request can match several; `fallback_kind` keeps the most specific: model, byok, provider):

* provider fallback — more than one attempt, or a non-2xx attempt before the final one;
* model fallback — the model changes across attempts, or the served model differs from the requested
  one when the application chose the model (not the router: `openrouter/auto`, `~alias`, strategy
  auto/alias/latest/...); routing variants such as `:nitro` are not a model change;
* BYOK→credits fallback — an earlier attempt used the application's own provider key and the final one
  did not.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

FALLBACK_KINDS = ("none", "provider", "model", "byok")

# The same expressions marts.fct_generations uses (its `classified` CTE), over the rows of classify_input in
# their order.
_CLASSIFY_SQL = """
with
inputs as (
    select
        ordinal,
        marts.parse_metadata(metadata) as m,
        marts.parse_generation(generation) as g,
        requested_model as logged_requested_model
    from classify_input
),

resolved as (
    select
        ordinal,
        marts.request_attempts(m, g) as attempt_list,
        m.attempt as attempt_number,
        coalesce(logged_requested_model, m.requested) as requested_model,
        marts.request_served_model(m, g) as served_model,
        marts.is_router_choice(coalesce(logged_requested_model, m.requested), m.strategy, g.router) as is_router_choice
    from inputs
),

flagged as (
    select
        ordinal,
        marts.attempt_count(attempt_list, attempt_number) as attempts,
        marts.is_provider_fallback(attempt_list, attempt_number) as is_provider_fallback,
        marts.is_model_fallback(attempt_list, attempt_number, requested_model, served_model, is_router_choice)
            as is_model_fallback,
        marts.is_byok_fallback(attempt_list, attempt_number) as is_byok_fallback,
        requested_model,
        served_model
    from resolved
)

select
    attempts,
    is_provider_fallback,
    is_model_fallback,
    is_byok_fallback,
    is_provider_fallback or is_model_fallback or is_byok_fallback as is_fallback,
    marts.fallback_kind(is_provider_fallback, is_model_fallback, is_byok_fallback) as fallback_kind,
    requested_model,
    served_model
from flagged
order by ordinal
"""


@dataclass(frozen=True)
class Classification:
    """How one request was served; None means the inputs cannot tell (never a guessed False)."""

    attempts: int | None
    is_provider_fallback: bool | None
    is_model_fallback: bool | None
    is_byok_fallback: bool | None
    is_fallback: bool | None
    fallback_kind: str | None
    requested_model: str | None
    served_model: str | None
    source: str


_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _connection():
    """An in-memory DuckDB with the warehouse migrations applied (the macros live there)."""
    import duckdb

    from openrouter_spend.warehouse import DUCKDB_CONFIG, migrate

    con = duckdb.connect(":memory:", config=dict(DUCKDB_CONFIG))
    migrate(con)
    # Inputs go through a typed table: a NULL query parameter would bind as an untyped constant.
    con.execute("create temp table classify_input "
                "(ordinal integer, metadata json, generation json, requested_model varchar)")
    return con


def _json(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def classify(*, openrouter_metadata: dict | str | None = None, generation: dict | str | None = None,
             requested_model: str | None = None) -> Classification:
    """Classify one request from the logged openrouter_metadata, else the /generation `data` record."""
    return classify_many([{"openrouter_metadata": openrouter_metadata, "generation": generation,
                           "requested_model": requested_model}])[0]


def classify_many(requests: Iterable[Mapping[str, Any]]) -> list[Classification]:
    """Classify many requests in one query, in their order; each is a mapping of `classify`'s keyword arguments."""
    rows, sources = [], []
    for ordinal, request in enumerate(requests):
        unknown = set(request) - {"openrouter_metadata", "generation", "requested_model"}
        if unknown:
            raise TypeError(f"request {ordinal}: unexpected {', '.join(sorted(unknown))}")
        row, source = _input_row(ordinal, request.get("openrouter_metadata"), request.get("generation"),
                                 request.get("requested_model"))
        rows.append(row)
        sources.append(source)
    if not rows:
        return []
    with _lock:
        con = _connection()
        con.execute("delete from classify_input")
        # One statement over the columns as lists (unnested side by side), not one insert per request.
        con.execute("insert into classify_input select unnest(?::integer[]), unnest(?::json[]), "
                    "unnest(?::json[]), unnest(?::varchar[])", [list(column) for column in zip(*rows, strict=True)])
        found = con.execute(_CLASSIFY_SQL).fetchall()
    return [Classification(*row, source=source) for row, source in zip(found, sources, strict=True)]


def _input_row(ordinal: int, openrouter_metadata: dict | str | None, generation: dict | str | None,
               requested_model: str | None) -> tuple[tuple, str]:
    if isinstance(generation, str):
        generation = json.loads(generation)
    record = generation or {}
    if isinstance(record.get("data"), dict):  # a whole response envelope
        record = record["data"]
    source = "openrouter_metadata" if openrouter_metadata is not None else (
        "provider_responses" if generation is not None else "none")
    # As in the warehouse, a request whose application logged metadata never has a /generation record.
    fetched = _json(record) if openrouter_metadata is None and generation is not None else None
    return (ordinal, _json(openrouter_metadata), fetched, requested_model), source
