"""Every endpoint's response validates against the official SDK's response models (openrouter 1.3.84)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from openrouter import OpenRouter
from openrouter import components as sdk_components
from openrouter import operations as sdk_operations

from openrouter_emulator import FaultRule

# The SDK flags the deprecated-but-required /key fields (rate_limit, is_provisioning_key) when they validate.
pytestmark = pytest.mark.filterwarnings(r"ignore:.*\*\* DEPRECATED \*\*:DeprecationWarning")

RESPONSE_MODELS = [
    ("/credits", {}, sdk_operations.GetCreditsResponse),
    ("/key", {}, sdk_operations.GetCurrentKeyResponse),
    ("/keys", {}, sdk_operations.ListResponse),
    ("/keys", {"include_disabled": "true", "include_expired": "true", "offset": "100"}, sdk_operations.ListResponse),
    ("/activity", {}, sdk_components.ActivityResponse),
    ("/activity", {"group_by": "workspace"}, sdk_components.ActivityResponse),
    ("/models", {}, sdk_components.ModelsListResponse),
    ("/models", {"output_modalities": "all", "offset": "3", "limit": "4"}, sdk_components.ModelsListResponse),
    ("/model/openai/gpt-4.1", {}, sdk_components.ModelResponse),
    ("/models/anthropic/claude-sonnet-4/endpoints", {}, sdk_operations.ListEndpointsResponse),
    ("/providers", {}, sdk_operations.ListProvidersResponse),
    ("/workspaces", {}, sdk_components.ListWorkspacesResponse),
    ("/organization/members", {}, sdk_operations.ListOrganizationMembersResponseBody),
    ("/analytics/meta", {}, sdk_operations.GetAnalyticsMetaResponse),
]


@pytest.mark.parametrize(("path", "params", "model"), RESPONSE_MODELS, ids=lambda v: str(v)[:40])
def test_endpoint_validates_against_sdk_model(shared_api, path, params, model):
    response = shared_api.get(path, **params)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    model.model_validate(response.json())


def test_single_key_and_workspace_validate(shared_api, shared_server):
    key = shared_server.org.key_by_name("support-bot-prod")
    sdk_operations.GetKeyResponse.model_validate(shared_api.get(f"/keys/{key.hash}").json())
    workspace = shared_server.org.workspaces[1]
    payload = shared_api.get(f"/workspaces/{workspace.id}").json()
    assert payload["data"]["name"] == workspace.name
    sdk_components.Workspace.model_validate(payload["data"])


def test_inference_key_description_validates(inference_api):
    payload = inference_api.get("/key").json()
    parsed = sdk_operations.GetCurrentKeyResponse.model_validate(payload)
    assert parsed.data.is_management_key is False
    assert parsed.data.budgets and parsed.data.effective_budget is not None


def test_generations_validate_including_fallbacks(shared_api, shared_server):
    outage = next(e for e in shared_server.org.events if e["event"] == "provider_outage")
    records = shared_server.org.generations(outage["start_date"])
    fallbacks = [g for g in records if len(g["provider_responses"]) > 1][:5]
    singles = [g for g in records if len(g["provider_responses"]) == 1][:5]
    assert fallbacks and singles
    for record in fallbacks + singles:
        payload = shared_api.get("/generation", id=record["id"]).json()
        parsed = sdk_components.GenerationResponse.model_validate(payload)
        assert parsed.data.id == record["id"]
        assert parsed.data.provider_responses[-1].status == 200


def test_analytics_query_validates(shared_api, shared_server):
    newest = shared_server.anchor_date - timedelta(days=1)
    body = {
        "metrics": ["total_usage", "request_count", "tokens_total"],
        "dimensions": ["model", "provider"],
        "granularity": "day",
        "time_range": {"start": f"{newest}T00:00:00Z", "end": f"{shared_server.anchor_date}T00:00:00Z"},
    }
    sdk_operations.QueryAnalyticsRequestBody.model_validate(body)
    response = shared_api.post("/analytics/query", body)
    assert response.status_code == 200, response.text
    sdk_operations.QueryAnalyticsResponse.model_validate(response.json())


def test_error_envelope_validates(anonymous_api, inference_api):
    for response, error_model in (
        (anonymous_api.get("/credits"), sdk_components.UnauthorizedResponseErrorData),
        (inference_api.get("/credits"), sdk_components.ForbiddenResponseErrorData),
        (inference_api.get("/generation", id="gen-1-doesnotexist"), sdk_components.NotFoundResponseErrorData),
    ):
        assert response.headers["Content-Type"] == "application/json"
        error_model.model_validate(response.json()["error"])


@pytest.mark.parametrize(("path", "model"), [
    ("/activity", sdk_components.ActivityResponse),
    ("/keys", sdk_operations.ListResponse),
    ("/credits", sdk_operations.GetCreditsResponse),
    ("/models", sdk_components.ModelsListResponse),
    ("/workspaces", sdk_components.ListWorkspacesResponse),
])
def test_extra_fields_fault_is_accepted_by_the_sdk(api, server, path, model):
    server.set_faults([FaultRule("extra_fields")])
    payload = api.get(path).json()
    assert payload["x_new_field"]
    model.model_validate(payload)


def test_datetime_activity_dates_are_accepted_by_the_sdk(api, server):
    server.set_faults([FaultRule("activity_datetime_dates", path_prefix="/activity")])
    payload = api.get("/activity").json()
    assert all(row["date"].endswith(" 00:00:00") for row in payload["data"])
    sdk_components.ActivityResponse.model_validate(payload)


def test_official_sdk_client_works_against_the_emulator(shared_server):
    client = OpenRouter(api_key=shared_server.management_key, server_url=shared_server.base_url)
    newest = (shared_server.anchor_date - timedelta(days=1)).isoformat()
    credits = client.credits.get_credits().data
    assert credits.total_credits > credits.total_usage > 0
    rows = client.analytics.get_user_activity(request={"date": newest}).data
    assert rows and all(row.date_ == newest for row in rows)
    keys = client.api_keys.list(include_disabled=True, include_expired=True,
                                workspace_id=shared_server.org.workspace_by_name("support-bot").id).data
    assert len(keys) == 100
    assert client.api_keys.get_current_key_metadata().data.is_management_key
    generation_id = shared_server.org.generation_ids(newest)[0]
    assert client.generations.get_generation(id=generation_id).data.id == generation_id
    assert client.workspaces.list().result.total_count == len(shared_server.org.workspaces)
    assert client.providers.list().data
