"""Fallback classification (openrouter_spend.ingest.fallbacks): table-driven over payloads shaped like openrouter-api.md."""

from __future__ import annotations

import copy

import pytest

from openrouter_spend.ingest.fallbacks import FALLBACK_KINDS, classify, classify_many

# openrouter-api.md §2.9: openrouter_metadata of a request OpenAI rate-limited and Azure served.
METADATA_AZURE_AFTER_OPENAI_429 = {
    "requested": "openai/gpt-4.1", "strategy": "direct", "region": "iad",
    "summary": "available=2, selected=Azure", "attempt": 2, "is_byok": False,
    "endpoints": {"total": 2, "available": [
        {"provider": "OpenAI", "model": "openai/gpt-4.1", "selected": False},
        {"provider": "Azure", "model": "openai/gpt-4.1", "selected": True}]},
    "attempts": [{"provider": "OpenAI", "model": "openai/gpt-4.1", "status": 429},
                 {"provider": "Azure", "model": "openai/gpt-4.1", "status": 200}],
}
# The same request served at the first attempt: no `attempts` list (it only appears after a retry).
METADATA_FIRST_TRY = {
    "requested": "openai/gpt-4.1", "strategy": "direct", "region": "iad",
    "summary": "available=1, selected=OpenAI", "attempt": 1, "is_byok": False,
    "endpoints": {"total": 1, "available": [{"provider": "OpenAI", "model": "openai/gpt-4.1", "selected": True}]},
}
# openrouter-api.md §2.7: the /generation record of the same provider fallback.
GENERATION_PROVIDER_FALLBACK = {
    "id": "gen-1761523200-Xq4mB2pT9sKdLw7nYvRc", "model": "openai/gpt-4.1", "provider_name": "Azure",
    "router": None, "total_cost": 0.0041, "usage": 0.0041, "is_byok": False,
    "provider_responses": [
        {"provider_name": "OpenAI", "model_permaslug": "openai/gpt-4.1-2025-04-14", "endpoint_id": "ep_openai_1",
         "status": 429, "latency": 610, "is_byok": False},
        {"provider_name": "Azure", "model_permaslug": "openai/gpt-4.1-2025-04-14", "endpoint_id": "ep_azure_1",
         "id": "chatcmpl-AbC123", "status": 200, "latency": 2480, "is_byok": False},
    ],
}


def _generation(**changes) -> dict:
    record = copy.deepcopy(GENERATION_PROVIDER_FALLBACK)
    record.update(changes)
    return record


def _attempt(provider: str, permaslug: str, status: int, is_byok: bool = False) -> dict:
    return {"provider_name": provider, "model_permaslug": permaslug, "status": status, "is_byok": is_byok}


GPT41 = "openai/gpt-4.1-2025-04-14"
SONNET = "anthropic/claude-sonnet-4-20250514"

CASES = [
    # id, inputs, expected (attempts, provider, model, byok, is_fallback, kind)
    ("metadata: OpenAI 429 then Azure (§2.9)",
     {"openrouter_metadata": METADATA_AZURE_AFTER_OPENAI_429},
     (2, True, False, None, True, "provider")),
    ("metadata: first attempt served",
     {"openrouter_metadata": METADATA_FIRST_TRY},
     (1, False, False, False, False, "none")),
    ("metadata: attempt 3 without the attempts list",
     {"openrouter_metadata": {**METADATA_FIRST_TRY, "attempt": 3}},
     (3, True, False, None, True, "provider")),
    ("metadata: `models` fallback list served the second model",
     {"openrouter_metadata": {
         "requested": "anthropic/claude-sonnet-4", "strategy": "fallback", "attempt": 2, "is_byok": False,
         "endpoints": {"total": 2, "available": [
             {"provider": "Anthropic", "model": "anthropic/claude-sonnet-4", "selected": False},
             {"provider": "OpenAI", "model": "openai/gpt-4.1", "selected": True}]},
         "attempts": [{"provider": "Anthropic", "model": "anthropic/claude-sonnet-4", "status": 529},
                      {"provider": "OpenAI", "model": "openai/gpt-4.1", "status": 200}]}},
     (2, True, True, None, True, "model")),
    ("metadata: openrouter/auto chose a model (routing, not a fallback)",
     {"openrouter_metadata": {
         "requested": "openrouter/auto", "strategy": "auto", "attempt": 1, "is_byok": False,
         "endpoints": {"total": 1, "available": [
             {"provider": "Anthropic", "model": "anthropic/claude-sonnet-4", "selected": True}]}}},
     (1, False, False, False, False, "none")),
    ("metadata: the app logged a different requested model than it sent to a fixed route",
     {"openrouter_metadata": METADATA_FIRST_TRY, "requested_model": "openai/gpt-4.1-mini"},
     (1, False, True, False, True, "model")),
    ("generation: OpenAI 429 then Azure (§2.7)",
     {"generation": GENERATION_PROVIDER_FALLBACK, "requested_model": "openai/gpt-4.1"},
     (2, True, False, False, True, "provider")),
    ("generation: a whole response envelope is accepted",
     {"generation": {"data": GENERATION_PROVIDER_FALLBACK}, "requested_model": "openai/gpt-4.1"},
     (2, True, False, False, True, "provider")),
    ("generation: one successful attempt",
     {"generation": _generation(provider_responses=[_attempt("OpenAI", GPT41, 200)]),
      "requested_model": "openai/gpt-4.1"},
     (1, False, False, False, False, "none")),
    ("generation: provider_responses null (the SPEC example) tells nothing",
     {"generation": _generation(provider_responses=None), "requested_model": "openai/gpt-4.1"},
     (None, None, False, None, None, None)),
    ("generation: empty provider_responses tells nothing either",
     {"generation": _generation(provider_responses=[])},
     (None, None, None, None, None, None)),
    ("generation: no attempts, but a different model than requested",
     {"generation": _generation(provider_responses=None), "requested_model": "anthropic/claude-sonnet-4"},
     (None, None, True, None, True, "model")),
    ("generation: model permaslug changes across attempts",
     {"generation": _generation(provider_responses=[_attempt("Anthropic", SONNET, 503),
                                                    _attempt("OpenAI", GPT41, 200)]),
      "requested_model": "anthropic/claude-sonnet-4"},
     (2, True, True, False, True, "model")),
    ("generation: BYOK key rate-limited, served on OpenRouter credits",
     {"generation": _generation(provider_responses=[_attempt("OpenAI", GPT41, 429, is_byok=True),
                                                    _attempt("OpenAI", GPT41, 200, is_byok=False)]),
      "requested_model": "openai/gpt-4.1"},
     (2, True, False, True, True, "byok")),
    ("generation: credits attempt failed, BYOK served (not a BYOK->credits fallback)",
     {"generation": _generation(provider_responses=[_attempt("OpenAI", GPT41, 502, is_byok=False),
                                                    _attempt("Azure", GPT41, 200, is_byok=True)]),
      "requested_model": "openai/gpt-4.1"},
     (2, True, False, False, True, "provider")),
    ("generation: a routing variant is not a model change",
     {"generation": _generation(provider_responses=[_attempt("Groq", GPT41, 200)]),
      "requested_model": "openai/gpt-4.1:nitro"},
     (1, False, False, False, False, "none")),
    ("generation: the auto router picked the model",
     {"generation": _generation(router="openrouter/auto", provider_responses=[_attempt("OpenAI", GPT41, 200)]),
      "requested_model": "openrouter/auto"},
     (1, False, False, False, False, "none")),
    ("nothing logged and nothing fetched",
     {"requested_model": "openai/gpt-4.1"},
     (None, None, None, None, None, None)),
]


@pytest.mark.parametrize(("inputs", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_classification(inputs, expected):
    got = classify(**inputs)
    assert (got.attempts, got.is_provider_fallback, got.is_model_fallback, got.is_byok_fallback,
            got.is_fallback, got.fallback_kind) == expected
    assert got.fallback_kind in (*FALLBACK_KINDS, None)


def test_logged_metadata_wins_over_a_generation_record():
    got = classify(openrouter_metadata=METADATA_FIRST_TRY, generation=GENERATION_PROVIDER_FALLBACK)
    assert (got.source, got.fallback_kind, got.attempts) == ("openrouter_metadata", "none", 1)


def test_served_model_and_provider_come_from_the_selected_endpoint():
    got = classify(openrouter_metadata=METADATA_AZURE_AFTER_OPENAI_429)
    assert (got.requested_model, got.served_model) == ("openai/gpt-4.1", "openai/gpt-4.1")
    assert classify(generation=GENERATION_PROVIDER_FALLBACK).served_model == "openai/gpt-4.1"


def test_many_requests_in_one_query_equal_each_classified_alone_in_their_order():
    requests = [inputs for _, inputs, _ in CASES] * 3
    many = classify_many(requests)
    assert many == [classify(**inputs) for inputs in requests]
    assert [(got.attempts, got.fallback_kind) for got in many[:len(CASES)]] == \
        [(expected[0], expected[5]) for _, _, expected in CASES]
    assert classify_many([]) == []
    with pytest.raises(TypeError, match="request 0: unexpected model"):
        classify_many([{"model": "openai/gpt-4.1"}])
