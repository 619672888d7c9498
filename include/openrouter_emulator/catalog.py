"""Static shape of the synthetic organisation: providers, models, members, workspaces and key profiles.

Names and structure do not depend on the seed, so ownership config and docs can refer to them; the seed
only drives identifiers (hashes, UUIDs) and volumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any


def _json_form(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_json_form(v) for v in value]
    return value


class Record:
    """Attributes give Python values (`key.created_at` is a datetime); item access gives the JSON form the
    API would use (`key["created_at"]` is an ISO 8601 string), so records compare directly with responses."""

    def __getitem__(self, name: str) -> Any:
        try:
            return _json_form(getattr(self, name))
        except AttributeError:
            raise KeyError(name) from None

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default


@dataclass(frozen=True)
class Provider(Record):
    name: str
    slug: str
    headquarters: str
    datacenters: tuple[str, ...]
    privacy_policy_url: str
    terms_of_service_url: str
    status_page_url: str | None


def _provider(name: str, slug: str, domain: str, hq: str, dcs: tuple[str, ...], status: bool = True) -> Provider:
    return Provider(
        name=name,
        slug=slug,
        headquarters=hq,
        datacenters=dcs,
        privacy_policy_url=f"https://{domain}/privacy",
        terms_of_service_url=f"https://{domain}/terms",
        status_page_url=f"https://status.{domain}" if status else None,
    )


PROVIDERS: tuple[Provider, ...] = (
    _provider("OpenAI", "openai", "openai.com", "US", ("US",)),
    _provider("Azure", "azure", "azure.microsoft.com", "US", ("US", "SE", "JP")),
    _provider("Anthropic", "anthropic", "anthropic.com", "US", ("US",)),
    _provider("Amazon Bedrock", "amazon-bedrock", "aws.amazon.com", "US", ("US", "DE", "JP")),
    _provider("Google", "google-vertex", "cloud.google.com", "US", ("US", "BE", "NL")),
    _provider("Google AI Studio", "google-ai-studio", "ai.google.dev", "US", ("US",), status=False),
    _provider("DeepInfra", "deepinfra", "deepinfra.com", "US", ("US",)),
    _provider("Together", "together", "together.ai", "US", ("US",)),
    _provider("Groq", "groq", "groq.com", "US", ("US", "FI")),
    _provider("Fireworks", "fireworks", "fireworks.ai", "US", ("US",)),
    _provider("Mistral", "mistral", "mistral.ai", "FR", ("FR", "SE")),
    _provider("xAI", "xai", "x.ai", "US", ("US",)),
    _provider("Chutes", "chutes", "chutes.ai", "US", ("US",), status=False),
    _provider("DeepSeek", "deepseek", "deepseek.com", "CN", ("CN",), status=False),
)

PROVIDER_BY_NAME = {p.name: p for p in PROVIDERS}

_CHAT_PARAMETERS = ("max_tokens", "temperature", "top_p", "stop", "seed", "response_format", "tools", "tool_choice")
_REASONING_PARAMETERS = (*_CHAT_PARAMETERS, "reasoning", "include_reasoning")


@dataclass(frozen=True)
class Model(Record):
    id: str
    canonical_slug: str
    name: str
    created: int
    context_length: int
    max_completion_tokens: int | None
    prompt: str
    completion: str
    providers: tuple[tuple[str, float], ...]
    input_cache_read: str | None = None
    input_cache_write: str | None = None
    tokenizer: str = "Other"
    instruct_type: str | None = None
    input_modalities: tuple[str, ...] = ("text",)
    output_modalities: tuple[str, ...] = ("text",)
    reasoning: bool = False
    hugging_face_id: str | None = None
    knowledge_cutoff: str | None = None
    description: str = ""
    supported_parameters: tuple[str, ...] = _CHAT_PARAMETERS

    @property
    def prompt_price(self) -> float:
        return float(self.prompt)

    @property
    def completion_price(self) -> float:
        return float(self.completion)

    @property
    def cache_read_price(self) -> float:
        return float(self.input_cache_read) if self.input_cache_read is not None else self.prompt_price

    @property
    def supports_caching(self) -> bool:
        return self.input_cache_read is not None

    @property
    def is_free(self) -> bool:
        return self.id.endswith(":free")

    @property
    def is_router(self) -> bool:
        return self.prompt == "-1"

    @property
    def is_embedding(self) -> bool:
        return "embeddings" in self.output_modalities

    @property
    def author(self) -> str:
        return self.id.split("/", 1)[0]


MODELS: tuple[Model, ...] = (
    Model("openai/gpt-4.1", "openai/gpt-4.1-2025-04-14", "OpenAI: GPT-4.1", 1744651385, 1047576, 32768,
          "0.000002", "0.000008", (("OpenAI", 0.7), ("Azure", 0.3)), input_cache_read="0.0000005",
          tokenizer="GPT", input_modalities=("text", "image", "file"), knowledge_cutoff="2024-06-01",
          description="GPT-4.1 is a flagship model for advanced instruction following and long-context work."),
    Model("openai/gpt-4.1-mini", "openai/gpt-4.1-mini-2025-04-14", "OpenAI: GPT-4.1 Mini", 1744651381, 1047576,
          32768, "0.0000004", "0.0000016", (("OpenAI", 0.65), ("Azure", 0.35)), input_cache_read="0.0000001",
          tokenizer="GPT", input_modalities=("text", "image", "file"), knowledge_cutoff="2024-06-01",
          description="GPT-4.1 Mini is a mid-sized model with GPT-4o level quality at lower latency and cost."),
    Model("openai/gpt-4.1-nano", "openai/gpt-4.1-nano-2025-04-14", "OpenAI: GPT-4.1 Nano", 1744651369, 1047576,
          32768, "0.0000001", "0.0000004", (("OpenAI", 1.0),), input_cache_read="0.000000025",
          tokenizer="GPT", input_modalities=("text", "image", "file"), knowledge_cutoff="2024-06-01",
          description="GPT-4.1 Nano is the fastest and cheapest model in the GPT-4.1 series."),
    Model("openai/gpt-4o-mini", "openai/gpt-4o-mini-2024-07-18", "OpenAI: GPT-4o-mini", 1721260800, 128000, 16384,
          "0.00000015", "0.0000006", (("OpenAI", 0.8), ("Azure", 0.2)), input_cache_read="0.000000075",
          tokenizer="GPT", input_modalities=("text", "image", "file"), knowledge_cutoff="2023-10-01",
          description="GPT-4o mini is a small, affordable multimodal model."),
    Model("openai/o3", "openai/o3-2025-04-16", "OpenAI: o3", 1744823457, 200000, 100000,
          "0.000002", "0.000008", (("OpenAI", 1.0),), input_cache_read="0.0000005", tokenizer="GPT",
          input_modalities=("text", "image", "file"), reasoning=True, knowledge_cutoff="2024-06-01",
          supported_parameters=_REASONING_PARAMETERS,
          description="o3 is a reasoning model for math, science, coding and visual reasoning tasks."),
    Model("anthropic/claude-opus-4", "anthropic/claude-4-opus-20250522", "Anthropic: Claude Opus 4", 1747931245,
          200000, 32000, "0.000015", "0.000075",
          (("Anthropic", 0.6), ("Amazon Bedrock", 0.3), ("Google", 0.1)), input_cache_read="0.0000015",
          input_cache_write="0.00001875", tokenizer="Claude", input_modalities=("text", "image", "file"),
          reasoning=True, knowledge_cutoff="2025-03-01", supported_parameters=_REASONING_PARAMETERS,
          description="Claude Opus 4 is Anthropic's most capable model for complex, long-running tasks."),
    Model("anthropic/claude-sonnet-4", "anthropic/claude-4-sonnet-20250522", "Anthropic: Claude Sonnet 4",
          1747930371, 1000000, 64000, "0.000003", "0.000015",
          (("Anthropic", 0.7), ("Amazon Bedrock", 0.2), ("Google", 0.1)), input_cache_read="0.0000003",
          input_cache_write="0.00000375", tokenizer="Claude", input_modalities=("text", "image", "file"),
          reasoning=True, knowledge_cutoff="2025-03-01", supported_parameters=_REASONING_PARAMETERS,
          description="Claude Sonnet 4 balances capability and cost for coding and agentic workloads."),
    Model("anthropic/claude-3.5-haiku", "anthropic/claude-3-5-haiku-20241022", "Anthropic: Claude 3.5 Haiku",
          1730678400, 200000, 8192, "0.0000008", "0.000004", (("Anthropic", 0.7), ("Amazon Bedrock", 0.3)),
          input_cache_read="0.00000008", input_cache_write="0.000001", tokenizer="Claude",
          input_modalities=("text", "image"), knowledge_cutoff="2024-07-01",
          description="Claude 3.5 Haiku is Anthropic's fastest model for high-volume tasks."),
    Model("google/gemini-2.5-pro", "google/gemini-2.5-pro", "Google: Gemini 2.5 Pro", 1750169544, 1048576, 65536,
          "0.00000125", "0.00001", (("Google AI Studio", 0.6), ("Google", 0.4)), input_cache_read="0.00000031",
          tokenizer="Gemini", input_modalities=("text", "image", "file", "audio", "video"), reasoning=True,
          knowledge_cutoff="2025-01-31", supported_parameters=_REASONING_PARAMETERS,
          description="Gemini 2.5 Pro is Google's state-of-the-art thinking model."),
    Model("google/gemini-2.5-flash", "google/gemini-2.5-flash", "Google: Gemini 2.5 Flash", 1750172488, 1048576,
          65535, "0.0000003", "0.0000025", (("Google AI Studio", 0.7), ("Google", 0.3)),
          input_cache_read="0.000000075", tokenizer="Gemini",
          input_modalities=("text", "image", "file", "audio", "video"), reasoning=True,
          knowledge_cutoff="2025-01-31", supported_parameters=_REASONING_PARAMETERS,
          description="Gemini 2.5 Flash is a fast workhorse model with built-in thinking."),
    Model("meta-llama/llama-3.3-70b-instruct", "meta-llama/llama-3.3-70b-instruct",
          "Meta: Llama 3.3 70B Instruct", 1733506137, 131072, 16384, "0.00000013", "0.0000004",
          (("DeepInfra", 0.5), ("Together", 0.3), ("Groq", 0.2)), tokenizer="Llama3", instruct_type="llama3",
          hugging_face_id="meta-llama/Llama-3.3-70B-Instruct",
          description="Llama 3.3 70B is a multilingual instruction-tuned open-weights model."),
    Model("meta-llama/llama-3.3-70b-instruct:free", "meta-llama/llama-3.3-70b-instruct",
          "Meta: Llama 3.3 70B Instruct (free)", 1733506137, 65536, 8192, "0", "0", (("Chutes", 1.0),),
          tokenizer="Llama3", instruct_type="llama3", hugging_face_id="meta-llama/Llama-3.3-70B-Instruct",
          description="Free, rate-limited variant of Llama 3.3 70B Instruct."),
    Model("deepseek/deepseek-chat-v3-0324", "deepseek/deepseek-chat-v3-0324", "DeepSeek: DeepSeek V3 0324",
          1742824755, 163840, 163840, "0.00000025", "0.00000085",
          (("DeepSeek", 0.5), ("DeepInfra", 0.3), ("Fireworks", 0.2)), input_cache_read="0.00000007",
          tokenizer="DeepSeek", hugging_face_id="deepseek-ai/DeepSeek-V3-0324",
          description="DeepSeek V3 0324 is a 685B-parameter mixture-of-experts chat model."),
    Model("deepseek/deepseek-chat-v3-0324:free", "deepseek/deepseek-chat-v3-0324",
          "DeepSeek: DeepSeek V3 0324 (free)", 1742824755, 163840, None, "0", "0", (("Chutes", 1.0),),
          tokenizer="DeepSeek", hugging_face_id="deepseek-ai/DeepSeek-V3-0324",
          description="Free, rate-limited variant of DeepSeek V3 0324."),
    Model("mistralai/mistral-small-3.2-24b-instruct", "mistralai/mistral-small-3.2-24b-instruct-2506",
          "Mistral: Mistral Small 3.2 24B", 1750443016, 131072, 131072, "0.00000005", "0.0000001",
          (("Mistral", 0.6), ("DeepInfra", 0.4)), tokenizer="Mistral", instruct_type="mistral",
          input_modalities=("text", "image"), hugging_face_id="mistralai/Mistral-Small-3.2-24B-Instruct-2506",
          description="Mistral Small 3.2 is a 24B-parameter model tuned for instruction following."),
    Model("qwen/qwen3-235b-a22b", "qwen/qwen3-235b-a22b-04-28", "Qwen: Qwen3 235B A22B", 1745875757, 131072,
          40960, "0.00000013", "0.0000006", (("Together", 0.4), ("Fireworks", 0.3), ("DeepInfra", 0.3)),
          tokenizer="Qwen3", instruct_type="qwen3", reasoning=True, hugging_face_id="Qwen/Qwen3-235B-A22B",
          supported_parameters=_REASONING_PARAMETERS,
          description="Qwen3 235B A22B is a mixture-of-experts model with switchable thinking."),
    Model("x-ai/grok-3-mini", "x-ai/grok-3-mini", "xAI: Grok 3 Mini", 1749583245, 131072, None,
          "0.0000003", "0.0000005", (("xAI", 1.0),), input_cache_read="0.000000075", tokenizer="Grok",
          reasoning=True, supported_parameters=_REASONING_PARAMETERS,
          description="Grok 3 Mini is a lightweight thinking model."),
    Model("openrouter/auto", "openrouter/auto", "Auto Router", 1699401600, 2000000, None, "-1", "-1", (),
          tokenizer="Router", input_modalities=("text", "image", "file", "audio", "video"),
          description="Routes each prompt to the model best suited to it."),
    Model("openai/text-embedding-3-small", "openai/text-embedding-3-small", "OpenAI: Text Embedding 3 Small",
          1705953600, 8192, None, "0.00000002", "0", (("OpenAI", 1.0),), tokenizer="GPT",
          output_modalities=("embeddings",), supported_parameters=(),
          description="Small, efficient embedding model."),
    Model("openai/text-embedding-3-large", "openai/text-embedding-3-large", "OpenAI: Text Embedding 3 Large",
          1705953600, 8192, None, "0.00000013", "0", (("OpenAI", 1.0),), tokenizer="GPT",
          output_modalities=("embeddings",), supported_parameters=(),
          description="Most capable OpenAI embedding model."),
)

MODEL_BY_ID = {m.id: m for m in MODELS}


@dataclass(frozen=True)
class EndpointOffer:
    """A provider listing a model at its own price; the organisation's traffic is never routed to it."""

    provider_name: str
    prompt: str
    completion: str
    uptime_last_1d: float
    input_cache_read: str | None = None


# What GET /models/{id}/endpoints lists besides the providers of Model.providers. Those carry the catalogue
# price, which is what the organisation's activity is charged at; these offers are the spread around it, as
# on OpenRouter, where open-weight models are served by several hosts at different prices:
# - DeepSeek V3 at Chutes is cheaper with comparable uptime (a provider price spread worth acting on), and
#   at Together dearer (never a saving);
# - Llama 3.3 70B at Fireworks is cheaper but its day's uptime is far below the hosts in use (not comparable).
ENDPOINT_OFFERS: dict[str, tuple[EndpointOffer, ...]] = {
    "deepseek/deepseek-chat-v3-0324": (
        EndpointOffer("Chutes", "0.00000018", "0.00000072", 99.4),
        EndpointOffer("Together", "0.00000125", "0.00000125", 99.8),
    ),
    "meta-llama/llama-3.3-70b-instruct": (
        EndpointOffer("Fireworks", "0.0000001", "0.0000003", 93.1),
    ),
}

@dataclass(frozen=True)
class PriceChange:
    """A catalogue model repriced at an instant: requests from then on are charged the new prices.

    OpenRouter reprices a model in place: /models and /models/{id}/endpoints only ever show the prices in
    force, with no history and no announcement of the change. MODELS hold the prices before it.
    """

    model_id: str
    at: datetime
    prompt: str
    completion: str

    def applies_at(self, moment: datetime) -> bool:
        return moment >= self.at

    def reprice(self, model: Model) -> Model:
        """The model at the new prices (its cache-read price, if any, is left as it was)."""
        return dataclasses.replace(model, prompt=self.prompt, completion=self.completion)


def pricing_form(model: Model) -> dict[str, str | None]:
    """The prices a model is listed at, as /models gives them (USD per token strings)."""
    return {"prompt": model.prompt, "completion": model.completion, "input_cache_read": model.input_cache_read}


class PriceBook:
    """The catalogue's prices over time: MODELS as they start, repriced by a world's planted price changes."""

    def __init__(self, changes: tuple[PriceChange, ...] = ()):
        self.changes = {change.model_id: change for change in changes}
        if len(self.changes) != len(changes) or not set(self.changes) <= set(MODEL_BY_ID):
            raise ValueError("price changes must name distinct catalogue models, one change each")

    def at(self, model_id: str, moment: datetime) -> Model:
        """The model at the prices in force at `moment`."""
        model = MODEL_BY_ID[model_id]
        change = self.changes.get(model_id)
        return change.reprice(model) if change and change.applies_at(moment) else model

    def for_day(self, model_id: str, day: date) -> Model:
        """The model at the prices its traffic of `day` is charged in total.

        On the day of a change: the old and new prices weighted by the parts of the day before and after the
        instant, since a day's traffic is spread evenly over it (a day's /activity row sums requests at both).
        """
        model = MODEL_BY_ID[model_id]
        change = self.changes.get(model_id)
        start = datetime.combine(day, datetime.min.time(), UTC)
        if change is None or not start < change.at < start + timedelta(days=1):
            return self.at(model_id, start)
        new = change.reprice(model)
        share_after = (start + timedelta(days=1) - change.at) / timedelta(days=1)

        def blend(old_price: str, new_price: str) -> str:
            return repr(float(old_price) * (1 - share_after) + float(new_price) * share_after)

        return dataclasses.replace(model, prompt=blend(model.prompt, new.prompt),
                                   completion=blend(model.completion, new.completion))


# Which model a request asked for when the served model is the fallback (requested -> served).
MODEL_FALLBACKS = {
    "anthropic/claude-opus-4": "anthropic/claude-sonnet-4",
    "anthropic/claude-sonnet-4": "openai/gpt-4.1",
    "openai/gpt-4.1-mini": "google/gemini-2.5-flash",
    "google/gemini-2.5-flash": "openai/gpt-4.1-mini",
}
MODEL_FALLBACK_SOURCES = {served: requested for requested, served in MODEL_FALLBACKS.items()}


def endpoint_id(model_id: str, provider_name: str) -> str:
    """Stable endpoint UUID for a model served by a provider (global, like the real catalogue)."""
    digest = hashlib.sha256(f"endpoint|{model_id}|{provider_name}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


@dataclass(frozen=True)
class Member:
    handle: str
    first_name: str | None
    last_name: str | None
    email: str
    role: str


MEMBERS: tuple[Member, ...] = (
    Member("alice", "Alice", "Moreau", "alice.moreau@northwind-labs.example", "org:admin"),
    Member("bob", "Bob", "Okafor", "bob.okafor@northwind-labs.example", "org:member"),
    Member("carol", "Carol", "Nguyen", "carol.nguyen@northwind-labs.example", "org:member"),
    Member("dan", "Dan", "Whitfield", "dan.whitfield@northwind-labs.example", "org:admin"),
    Member("erin", "Erin", "Castillo", "erin.castillo@northwind-labs.example", "org:member"),
    Member("frank", "Frank", "Lindqvist", "frank.lindqvist@northwind-labs.example", "org:member"),
    Member("grace", "Grace", "Oyelaran", "grace.oyelaran@northwind-labs.example", "org:member"),
    Member("heidi", "Heidi", "Brandt", "heidi.brandt@northwind-labs.example", "org:member"),
    Member("provisioner", None, None, "svc-provisioner@northwind-labs.example", "org:admin"),
)


@dataclass(frozen=True)
class WorkspaceSpec:
    slug: str
    name: str
    description: str
    created_days_ago: int
    creator: str
    app_url: str
    app_id: int
    default_text_model: str | None
    is_default: bool = False


WORKSPACES: tuple[WorkspaceSpec, ...] = (
    WorkspaceSpec("default", "Default", "Account default workspace", 700, "alice",
                  "https://notebooks.northwind-labs.example/", 31337, None, is_default=True),
    WorkspaceSpec("support-bot", "support-bot", "Customer support assistant and per-tenant keys", 420, "dan",
                  "https://support.northwind-labs.example/", 48211, "openai/gpt-4.1-mini"),
    WorkspaceSpec("search", "search", "Semantic search API: query rewriting, answers, reranking", 380, "erin",
                  "https://search.northwind-labs.example/", 48377, "anthropic/claude-sonnet-4"),
    WorkspaceSpec("data-platform", "data-platform", "Batch jobs: embeddings, enrichment, classification", 300,
                  "frank", "https://airflow.northwind-labs.example/", 49002, "google/gemini-2.5-flash"),
    WorkspaceSpec("growth-experiments", "growth-experiments", "Marketing copy, A/B judges, landing pages", 150,
                  "grace", "https://growth.northwind-labs.example/", 50119, "openai/gpt-4.1-mini"),
)

# Usage patterns: (probability a weekday is active, probability a weekend day is active, weekend volume factor)
PATTERNS = {
    "service": (1.0, 1.0, 0.75),
    "batch": (1.0, 1.0, 1.0),
    "interactive": (0.93, 0.45, 0.35),
    "sporadic": (0.3, 0.1, 0.5),
}


@dataclass(frozen=True)
class KeySpec:
    name: str
    workspace: str
    creator: str
    created_days_ago: float
    pattern: str
    requests: float
    mix: tuple[tuple[str, float], ...]
    prompt_tokens: int
    completion_tokens: int
    cache_ratio: float = 0.0
    byok_provider: str | None = None
    limit: float | None = None
    limit_reset: str | None = None
    include_byok_in_limit: bool = False
    disabled_days_ago: float | None = None
    expires_days_ago: float | None = None
    idle_days: float | None = None
    never_used: bool = False
    weekly_on: int | None = None
    external_user: str | None = None
    uses_auto_router: bool = False
    tags: tuple[str, ...] = field(default=())
    # Scales the day-to-day noise of the key's volume and tokens (1.0 = the default organisation's); a
    # steady world (scenario "limits") uses less so its planted events sit at a rule's limit, not near it.
    noise_scale: float = 1.0


_SUPPORT_MIX = (("openai/gpt-4.1-mini", 0.62), ("anthropic/claude-3.5-haiku", 0.25), ("openai/gpt-4.1", 0.13))
_TENANT_MIX = (("openai/gpt-4.1-mini", 0.8), ("anthropic/claude-3.5-haiku", 0.2))
_SEARCH_MIX = (("anthropic/claude-sonnet-4", 0.55), ("openai/gpt-4.1-mini", 0.3), ("anthropic/claude-3.5-haiku", 0.15))
_GROWTH_MIX = (("openai/gpt-4.1-mini", 0.5), ("google/gemini-2.5-flash", 0.3), ("openai/gpt-4.1", 0.165),
               ("anthropic/claude-sonnet-4", 0.03), ("anthropic/claude-opus-4", 0.005))

HANDWRITTEN_KEYS: tuple[KeySpec, ...] = (
    # Default workspace: what accumulated before workspaces existed, plus personal keys.
    KeySpec("tmp-alice-laptop", "default", "alice", 210, "interactive", 420,
            (("anthropic/claude-sonnet-4", 0.6), ("anthropic/claude-opus-4", 0.15), ("openai/gpt-4.1", 0.25)),
            3200, 600, cache_ratio=0.45, tags=("personal",)),
    KeySpec("dev-bob-notebook", "default", "bob", 160, "sporadic", 60,
            (("openai/gpt-4.1", 0.5), ("google/gemini-2.5-pro", 0.5)), 2500, 500, tags=("personal",)),
    KeySpec("carol-scratch", "default", "carol", 95, "sporadic", 40,
            (("openai/gpt-4.1-mini", 0.7), ("x-ai/grok-3-mini", 0.3)), 1200, 300, tags=("personal",)),
    KeySpec("ci-eval-harness", "default", "heidi", 330, "interactive", 900,
            (("openai/gpt-4.1-nano", 0.6), ("openai/gpt-4o-mini", 0.4)), 900, 120),
    KeySpec("zapier-integration", "default", "carol", 520, "service", 120, (("openai/gpt-4o-mini", 1.0),), 700, 200),
    KeySpec("demo-sales-engineering", "default", "bob", 240, "sporadic", 80,
            (("anthropic/claude-sonnet-4", 0.5), ("openai/gpt-4.1", 0.5)), 1800, 450),
    KeySpec("legacy-chat-prod", "default", "alice", 610, "service", 500, (("openai/gpt-4o-mini", 1.0),), 1100, 250,
            idle_days=41),
    KeySpec("old-summarizer-v1", "default", "alice", 560, "service", 300, (("openai/gpt-4o-mini", 1.0),), 2400, 300,
            disabled_days_ago=120),
    KeySpec("hackathon-2025", "default", "bob", 130, "interactive", 200,
            (("anthropic/claude-sonnet-4", 0.5), ("meta-llama/llama-3.3-70b-instruct:free", 0.5)), 1500, 400,
            expires_days_ago=45),
    KeySpec("test-key-do-not-use", "default", "carol", 75, "sporadic", 0, (), 0, 0, never_used=True),
    KeySpec("notebook-shared", "default", "heidi", 280, "sporadic", 150,
            (("meta-llama/llama-3.3-70b-instruct", 0.6), ("qwen/qwen3-235b-a22b", 0.4)), 2000, 500),
    # support-bot: the product, its environments and (below) one key per customer tenant.
    KeySpec("support-bot-prod", "support-bot", "dan", 400, "service", 5200, _SUPPORT_MIX, 1800, 260,
            cache_ratio=0.35, limit=4000.0, limit_reset="monthly"),
    KeySpec("support-bot-staging", "support-bot", "dan", 380, "interactive", 350, _SUPPORT_MIX, 1800, 260,
            cache_ratio=0.2),
    KeySpec("support-bot-eval-nightly", "support-bot", "heidi", 300, "batch", 800,
            (("openai/gpt-4.1", 0.5), ("anthropic/claude-sonnet-4", 0.5)), 2600, 180, cache_ratio=0.5),
    KeySpec("support-bot-canary", "support-bot", "dan", 200, "service", 260, _SUPPORT_MIX, 1800, 260,
            cache_ratio=0.3),
    # search
    KeySpec("search-api-prod", "search", "erin", 370, "service", 3600, _SEARCH_MIX, 2200, 320, cache_ratio=0.3,
            byok_provider="OpenAI"),
    KeySpec("search-api-staging", "search", "erin", 360, "interactive", 240, _SEARCH_MIX, 2200, 320),
    KeySpec("search-query-rewriter", "search", "erin", 250, "service", 6000,
            (("openai/gpt-4.1-nano", 0.7), ("anthropic/claude-3.5-haiku", 0.3)), 400, 60),
    KeySpec("search-reranker-prod", "search", "heidi", 220, "service", 2500,
            (("anthropic/claude-3.5-haiku", 0.6), ("anthropic/claude-sonnet-4", 0.4)), 3000, 40,
            cache_ratio=0.25),
    KeySpec("search-indexer-embeddings", "search", "heidi", 260, "batch", 30000,
            (("openai/text-embedding-3-large", 1.0),), 600, 0, byok_provider="OpenAI"),
    KeySpec("search-eval-weekly", "search", "erin", 180, "sporadic", 1200,
            (("anthropic/claude-sonnet-4", 0.5), ("openai/gpt-4.1", 0.5)), 2500, 300, weekly_on=0),
    KeySpec("search-api-canary", "search", "erin", 70, "service", 150, _SEARCH_MIX, 2200, 320,
            expires_days_ago=10),
    KeySpec("search-legacy-v1", "search", "erin", 340, "service", 400, (("openai/gpt-4o-mini", 1.0),), 1500, 300,
            disabled_days_ago=55),
    KeySpec("search-reranker-v2", "search", "heidi", 16, "service", 800,
            (("anthropic/claude-3.5-haiku", 1.0),), 3000, 40, cache_ratio=0.25),
    # data-platform: background jobs
    KeySpec("batch-embeddings-nightly", "data-platform", "frank", 290, "batch", 60000,
            (("openai/text-embedding-3-small", 1.0),), 800, 0, byok_provider="OpenAI"),
    KeySpec("enrichment-worker-hourly", "data-platform", "frank", 240, "batch", 9000,
            (("google/gemini-2.5-flash", 0.7), ("openai/gpt-4.1-mini", 0.3)), 1300, 220, cache_ratio=0.2),
    KeySpec("doc-classifier-batch", "data-platform", "frank", 200, "batch", 7000,
            (("meta-llama/llama-3.3-70b-instruct", 0.8), ("mistralai/mistral-small-3.2-24b-instruct", 0.2)),
            1600, 30),
    KeySpec("etl-entity-extraction", "data-platform", "frank", 170, "batch", 4000,
            (("qwen/qwen3-235b-a22b", 0.5), ("mistralai/mistral-small-3.2-24b-instruct", 0.5)), 2100, 350),
    KeySpec("nightly-translation-job", "data-platform", "frank", 150, "batch", 2500,
            (("deepseek/deepseek-chat-v3-0324", 0.75), ("deepseek/deepseek-chat-v3-0324:free", 0.25)), 1400, 1300),
    KeySpec("pii-redaction-worker", "data-platform", "heidi", 190, "service", 3000,
            (("openai/gpt-4.1-nano", 1.0),), 1000, 900),
    KeySpec("dbt-docs-generator", "data-platform", "frank", 140, "sporadic", 600,
            (("anthropic/claude-sonnet-4", 1.0),), 4000, 700, weekly_on=6),
    KeySpec("data-quality-llm-checks", "data-platform", "heidi", 110, "sporadic", 300,
            (("openai/gpt-4.1-mini", 1.0),), 2000, 80),
    KeySpec("airflow-dev", "data-platform", "frank", 260, "sporadic", 100,
            (("google/gemini-2.5-flash", 1.0),), 1300, 220),
    KeySpec("backfill-2025-q3", "data-platform", "frank", 125, "batch", 15000,
            (("google/gemini-2.5-flash", 1.0),), 1500, 200, expires_days_ago=30),
    # growth-experiments
    KeySpec("growth-email-copy-gen", "growth-experiments", "grace", 145, "interactive", 1500, _GROWTH_MIX, 1500, 500),
    KeySpec("growth-ab-test-judge", "growth-experiments", "grace", 120, "service", 2200, _GROWTH_MIX, 2200, 60,
            cache_ratio=0.3),
    KeySpec("growth-landing-page-writer", "growth-experiments", "grace", 100, "interactive", 600, _GROWTH_MIX,
            2500, 1400, uses_auto_router=True),
    KeySpec("growth-ad-variants", "growth-experiments", "bob", 90, "interactive", 900, _GROWTH_MIX, 900, 350),
    KeySpec("growth-personalization-prod", "growth-experiments", "grace", 80, "service", 2600, _GROWTH_MIX,
            1200, 200, cache_ratio=0.4, limit=600.0, limit_reset="weekly"),
    KeySpec("growth-free-tier-bot", "growth-experiments", "grace", 60, "service", 1800,
            (("meta-llama/llama-3.3-70b-instruct:free", 0.6), ("deepseek/deepseek-chat-v3-0324:free", 0.4)),
            900, 250),
    KeySpec("growth-chat-widget-beta", "growth-experiments", "grace", 20, "service", 700, _GROWTH_MIX, 1600, 280),
    KeySpec("growth-sandbox-henry", "growth-experiments", "grace", 35, "sporadic", 0, (), 0, 0, never_used=True),
    KeySpec("growth-old-prototype", "growth-experiments", "grace", 140, "interactive", 400, _GROWTH_MIX, 1400, 400,
            disabled_days_ago=50),
)

_TENANT_PREFIXES = ("north", "blue", "bright", "iron", "silver", "red", "green", "swift", "clear", "stone")
_TENANT_SUFFIXES = ("wind", "harbor", "field", "peak", "river", "forge", "labs", "works", "leaf", "gate")
TENANT_COUNT = 100


def tenant_keys() -> tuple[KeySpec, ...]:
    """One support-bot key per customer tenant: monthly limit, external_user set, created over time."""
    specs = []
    for index in range(TENANT_COUNT):
        slug = _TENANT_PREFIXES[index // 10] + _TENANT_SUFFIXES[index % 10]
        recent = {95: 28, 96: 19, 97: 12, 98: 7, 99: 3}
        created = recent.get(index, 400 - index * 3.6)
        churned = index % 12 == 7
        trial_expired = index % 17 == 5
        specs.append(KeySpec(
            name=f"support-bot-tenant-{slug}",
            workspace="support-bot",
            creator="provisioner",
            created_days_ago=created,
            pattern="sporadic" if index % 4 == 3 else "service",
            requests=90 + (index * 37) % 260,
            mix=_TENANT_MIX,
            prompt_tokens=1700,
            completion_tokens=240,
            cache_ratio=0.3,
            limit=75.0,
            limit_reset="monthly",
            disabled_days_ago=(10 + (index * 7) % 70) if churned else None,
            expires_days_ago=(5 + (index * 3) % 40) if trial_expired else None,
            external_user=f"tenant_{slug}",
            tags=("tenant",),
        ))
    return tuple(specs)


KEY_SPECS: tuple[KeySpec, ...] = HANDWRITTEN_KEYS + tenant_keys()
