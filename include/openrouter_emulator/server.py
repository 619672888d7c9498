"""The emulator's HTTP server: OpenRouter's /api/v1 surface plus unauthenticated /_emulator control endpoints."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import signal
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from openrouter_emulator import analytics
from openrouter_emulator.catalog import (
    ENDPOINT_OFFERS,
    MODEL_BY_ID,
    MODELS,
    PROVIDER_BY_NAME,
    EndpointOffer,
    Model,
    endpoint_id,
)
from openrouter_emulator.faults import (
    HTML_ERROR_PAGE,
    SERVER_ERROR_MESSAGES,
    FaultBook,
    FaultRule,
    add_extra_fields,
    datetime_activity_dates,
    encode,
    truncate,
)
from openrouter_emulator.org import (
    ActivityRow,
    ApiKey,
    DayEffects,
    SyntheticOrg,
    Workspace,
    build_generation,
    build_org,
    iso_micro,
    resolve_anchor_date,
    resolve_seed,
)

API_PREFIX = "/api/v1"
CONTROL_PREFIX = "/_emulator"
DEFAULT_MANAGEMENT_KEY = "sk-or-v1-emulator-management-0000000000000000"
DEFAULT_INFERENCE_KEY = "sk-or-v1-emulator-inference-00000000000000000"
# The inference key stands for this org key, so /key describes something real.
INFERENCE_KEY_NAME = "support-bot-prod"
KEYS_PAGE_SIZE = 100
ANALYTICS_REQUESTS_PER_MINUTE = 64
PLATFORM_RATE_LIMIT = 20

PUBLIC, ANY_KEY, MANAGEMENT = "public", "any", "management"

MISSING_AUTH = "Missing Authentication header"
UNKNOWN_KEY = "User not found."
MANAGEMENT_ONLY = "Only management keys can perform this operation"
NOT_FOUND = "Resource not found"
BAD_REQUEST = "Invalid request parameters"
WINDOW_MESSAGE = "Date must be within the last 30 completed UTC days"
RATE_LIMITED = "Rate limit exceeded"
# "wall": the real API's time (wall-clock Date, /credits and /keys describe now, the current day's spend
# included). "replay": a settable clock whose snapshots describe the start of the current day, for replaying
# past days as if each were fetched right after it ended.
CLOCK_MODES = ("wall", "replay")


class ApiError(Exception):
    """An error the API answers with its JSON envelope."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, encode({"error": {"code": status, "message": message}}), headers=dict(headers or {}))


def _json_response(payload: Any, status: int = 200) -> Response:
    return Response(status, encode(payload))


def _aware_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"the emulator clock needs an aware UTC datetime, got naive {moment!r}")
    return moment.astimezone(UTC)


def _parse_moment(raw: str) -> datetime:
    return _aware_utc(datetime.fromisoformat(raw.strip().replace("Z", "+00:00")))


def _seconds_header(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def resolve_clock_mode(clock: str | None) -> str:
    """The clock argument, else OPENROUTER_EMULATOR_CLOCK, else "wall" (the real API's time semantics)."""
    mode = (clock or os.environ.get("OPENROUTER_EMULATOR_CLOCK", "").strip() or "wall").lower()
    if mode not in CLOCK_MODES:
        raise ValueError(f"unknown emulator clock {mode!r}; expected one of {', '.join(CLOCK_MODES)}")
    return mode


class Clock:
    """The emulator's clock: set to any moment, then ticks with real time."""

    def __init__(self, start: datetime):
        self._lock = threading.Lock()
        self.set(start)

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._base = _aware_utc(moment)
            self._mono = time.monotonic()

    def now(self) -> datetime:
        with self._lock:
            return self._base + timedelta(seconds=time.monotonic() - self._mono)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "openrouter-emulator"
    # Headers and body go out in one segment; otherwise Nagle + delayed ACK adds ~40 ms per keep-alive request.
    wbufsize = -1
    disable_nagle_algorithm = True
    # Idle keep-alive connections are dropped after this, so stopped servers do not pin threads forever.
    timeout = 30

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        try:
            response = self.server.emulator.handle(self.command, self.path, self.headers, body)
        except Exception:
            # A bug in the emulator must look like an OpenRouter 500, not a dropped connection.
            traceback.print_exc()
            response = error_response(500, SERVER_ERROR_MESSAGES[500])
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header tells the emulator's clock, as a real server's tells real time."""
        if timestamp is not None:
            return super().date_time_string(timestamp)
        return super().date_time_string(self.server.emulator.now.timestamp())

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern
    auth: str
    handler: Callable[..., Any]


class EmulatorServer:
    """A deterministic OpenRouter API on 127.0.0.1 serving a synthetic organisation, with injectable faults."""

    def __init__(self, scenario: str = "default", host: str = "127.0.0.1", port: int = 0, seed: int | None = None,
                 anchor_date: date | None = None, now: datetime | None = None, generation_lag_seconds: float = 0.0,
                 faults: list[FaultRule] | None = None, management_key: str = DEFAULT_MANAGEMENT_KEY,
                 inference_key: str = DEFAULT_INFERENCE_KEY, clock: str | None = None):
        """`clock` is "wall" (default, the real API's time) or "replay" (see CLOCK_MODES).

        The wall clock starts at the real time, moved by whole days onto the anchor date (so it is exactly the
        real time when the anchor is today, the default); the replay clock starts at 00:05 of the anchor date.
        Either starts at `now` when given, and both keep ticking with real time.
        """
        self.scenario = scenario
        self.clock_mode = resolve_clock_mode(clock)
        self.seed = resolve_seed(seed)
        self.anchor_date = resolve_anchor_date(anchor_date)
        self.org: SyntheticOrg = build_org(scenario, self.seed, self.anchor_date)
        self.host = host
        self._requested_port = port
        self.management_key = management_key
        self.inference_key = inference_key
        self.generation_lag_seconds = float(generation_lag_seconds)
        if self.clock_mode == "wall":
            real = datetime.now(UTC)
            default_now = real + timedelta(days=(self.anchor_date - real.date()).days)
        else:
            default_now = datetime.combine(self.anchor_date, datetime.min.time(), tzinfo=UTC) + timedelta(minutes=5)
        self._clock = Clock(now or default_now)
        self._stopping = threading.Event()
        self._faults = FaultBook(faults)
        self._lock = threading.Lock()
        self._request_log: list[dict] = []
        self._live_generations: dict[str, dict] = {}
        self._live_counter = 0
        self._analytics_calls: deque[float] = deque()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._routes = self._build_routes()

    # ----- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> EmulatorServer:
        """Bind and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = ThreadingHTTPServer((self.host, self._requested_port), _Handler)
        httpd.daemon_threads = True
        httpd.emulator = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"openrouter-emulator-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (stalled answers are released at once)."""
        self._stopping.set()
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    @property
    def control_url(self) -> str:
        return f"http://{self.host}:{self.port}{CONTROL_PREFIX}"

    # ----- clock, faults, request log -----------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """The emulator's current time (aware UTC)."""
        return self._clock.now()

    @property
    def includes_today(self) -> bool:
        """True when /credits and /keys count the current day's spend so far (the wall clock, as the real API)."""
        return self.clock_mode == "wall"

    def set_now(self, moment: datetime) -> None:
        """Move the emulator clock; it keeps ticking from there."""
        self._clock.set(moment)

    def set_faults(self, rules: list[FaultRule | dict]) -> None:
        """Replace the active fault rules."""
        self._faults.replace(list(rules))

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self._faults.clear()

    @property
    def faults(self) -> list[FaultRule]:
        """Active fault rules with `times` showing what is left."""
        return self._faults.snapshot()

    @property
    def requests(self) -> list[dict]:
        """Every /api/v1 request served so far: {method, path (after /api/v1), query, status}."""
        with self._lock:
            return [dict(entry, query=dict(entry["query"])) for entry in self._request_log]

    def reset_requests(self) -> None:
        """Forget the request log (and the analytics rate-limit window)."""
        with self._lock:
            self._request_log.clear()
            self._analytics_calls.clear()

    def add_live_generation(self, model: str = "openai/gpt-4.1-mini", api_key_hash: str | None = None,
                            created_at: datetime | None = None, fallback: bool = False) -> str:
        """Record a generation made just now (or at `created_at`); /generation shows it after the lag."""
        key = self.org.key_by_hash(api_key_hash) if api_key_hash else self.org.key_by_name(INFERENCE_KEY_NAME)
        if key is None:
            raise ValueError(f"no key with hash {api_key_hash!r} in the emulated organisation")
        spec_model = MODEL_BY_ID[model]
        providers = [name for name, _ in spec_model.providers]
        if not providers:
            raise ValueError(f"{model} is a router, not a servable model")
        effects = DayEffects()
        served = providers[0]
        if fallback and len(providers) > 1:
            effects.down_providers = frozenset({providers[0]})
            served = providers[1]
        spec = key.spec
        prompt = max(1, spec.prompt_tokens or 800)
        completion = 0 if spec_model.is_embedding else max(1, spec.completion_tokens or 200)
        row = ActivityRow(spec_model.id, endpoint_id(spec_model.id, served), served, 1, prompt, completion, 0, 0,
                          0, 0, 0)
        with self._lock:
            self._live_counter += 1
            counter = self._live_counter
        rng = random.Random(f"{self.seed}|live|{counter}")
        moment = _aware_utc(created_at) if created_at else self.now
        workspace = self.org.workspace_by_id(key.workspace_id)
        record, _ = build_generation(rng, key, workspace, row, moment, effects, always_fall_back=fallback,
                                     priced=self.org.prices.at(spec_model.id, moment))
        with self._lock:
            self._live_generations[record["id"]] = record
        return record["id"]

    # ----- dispatch -----------------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Answer one HTTP request."""
        parts = urlsplit(raw_path)
        path = parts.path
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            return self._control(method, path[len(CONTROL_PREFIX):], body)
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            sub_path = path[len(API_PREFIX):] or "/"
            response = self._api(method, sub_path, query, headers, body)
            with self._lock:
                self._request_log.append({"method": method, "path": sub_path, "query": query,
                                          "status": response.status})
            return response
        return error_response(404, NOT_FOUND)

    def _api(self, method: str, path: str, query: dict[str, str], headers: Mapping[str, str],
             body: bytes) -> Response:
        try:
            route, params = self._match(method, path)
        except ApiError as exc:
            return error_response(exc.status, exc.message, exc.headers)
        fault = self._faults.take(path)
        if fault is not None:
            if fault.kind == "rate_limit":
                return self._rate_limited(fault.retry_after, PLATFORM_RATE_LIMIT)
            if fault.kind == "server_error":
                extra = {"Retry-After": _seconds_header(fault.retry_after)} if fault.status == 503 else {}
                return error_response(fault.status, SERVER_ERROR_MESSAGES[fault.status], extra)
            if fault.kind == "slow":
                self._stopping.wait(fault.delay_seconds)
        try:
            caller = self._authenticate(headers, route.auth)
            payload = route.handler(query=query, caller=caller, body=body, **params)
            response = _json_response(self._apply_payload_fault(fault, path, payload))
        except ApiError as exc:
            response = error_response(exc.status, exc.message, exc.headers)
        if fault is not None and fault.kind == "truncated_json":
            response.body = truncate(response.body)
        elif fault is not None and fault.kind == "malformed_json":
            response = Response(200, HTML_ERROR_PAGE, content_type="text/html; charset=utf-8")
        return response

    @staticmethod
    def _apply_payload_fault(fault: FaultRule | None, path: str, payload: Any) -> Any:
        if fault is None:
            return payload
        if fault.kind == "extra_fields":
            return add_extra_fields(payload)
        if fault.kind == "activity_datetime_dates" and path == "/activity":
            return datetime_activity_dates(payload)
        return payload

    def _match(self, method: str, path: str) -> tuple[_Route, dict[str, str]]:
        allowed = False
        for route in self._routes:
            found = route.pattern.fullmatch(path)
            if found is None:
                continue
            if route.method == method or (method == "HEAD" and route.method == "GET"):
                return route, found.groupdict()
            allowed = True
        if allowed:
            raise ApiError(405, "Method not allowed")
        raise ApiError(404, NOT_FOUND)

    def _authenticate(self, headers: Mapping[str, str], level: str) -> str | None:
        header = headers.get("Authorization")
        if not header:
            if level == PUBLIC:
                return None
            raise ApiError(401, MISSING_AUTH)
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, MISSING_AUTH)
        if token == self.management_key:
            return MANAGEMENT
        if token != self.inference_key:
            raise ApiError(401, UNKNOWN_KEY)
        if level == MANAGEMENT:
            raise ApiError(403, MANAGEMENT_ONLY)
        return "inference"

    def _rate_limited(self, retry_after: float, limit: int) -> Response:
        reset_ms = int((self.now + timedelta(seconds=retry_after)).timestamp() * 1000)
        return error_response(429, RATE_LIMITED, {
            "Retry-After": _seconds_header(retry_after),
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(reset_ms),
        })

    def _build_routes(self) -> list[_Route]:
        table = [
            ("GET", r"/credits", MANAGEMENT, self._credits),
            ("GET", r"/key", ANY_KEY, self._current_key),
            ("GET", r"/keys", MANAGEMENT, self._keys),
            ("GET", r"/keys/(?P<key_hash>[^/]+)", MANAGEMENT, self._key),
            ("GET", r"/activity", MANAGEMENT, self._activity),
            ("GET", r"/generation", ANY_KEY, self._generation),
            ("GET", r"/models", PUBLIC, self._models),
            ("GET", r"/model/(?P<author>[^/]+)/(?P<slug>[^/]+)", PUBLIC, self._model),
            ("GET", r"/models/(?P<author>[^/]+)/(?P<slug>[^/]+)/endpoints", PUBLIC, self._endpoints),
            ("GET", r"/providers", PUBLIC, self._providers),
            ("GET", r"/workspaces", MANAGEMENT, self._workspaces),
            ("GET", r"/workspaces/(?P<workspace_id>[^/]+)", MANAGEMENT, self._workspace),
            ("GET", r"/organization/members", MANAGEMENT, self._members),
            ("GET", r"/analytics/meta", MANAGEMENT, self._analytics_meta),
            ("POST", r"/analytics/query", MANAGEMENT, self._analytics_query),
        ]
        return [_Route(method, re.compile(pattern), auth, handler) for method, pattern, auth, handler in table]

    # ----- query parsing ------------------------------------------------------------------------------

    @staticmethod
    def _flag(query: dict[str, str], name: str) -> bool:
        raw = query.get(name)
        if raw is None:
            return False
        if raw not in ("true", "false"):
            raise ApiError(400, f"{BAD_REQUEST}: {name} must be 'true' or 'false'")
        return raw == "true"

    @staticmethod
    def _int(query: dict[str, str], name: str, default: int | None, minimum: int = 0,
             maximum: int | None = None) -> int | None:
        raw = query.get(name)
        if raw is None or raw == "":
            return default
        if not re.fullmatch(r"\d+", raw):
            raise ApiError(400, f"{BAD_REQUEST}: {name} must be a non-negative integer")
        value = int(raw)
        if value < minimum or (maximum is not None and value > maximum):
            raise ApiError(400, f"{BAD_REQUEST}: {name} must be between {minimum} and {maximum}")
        return value

    def _workspace_param(self, query: dict[str, str]) -> Workspace | None:
        workspace_id = query.get("workspace_id")
        if workspace_id is None:
            return None
        workspace = self.org.workspace_by_id(workspace_id)
        if workspace is None or workspace.created_at > self.now:
            raise ApiError(404, NOT_FOUND)
        return workspace

    # ----- endpoints ----------------------------------------------------------------------------------

    def _credits(self, **_: Any) -> dict:
        total_credits, total_usage = self.org.credits_as_of(self.now, self.includes_today)
        return {"data": {"total_credits": total_credits, "total_usage": total_usage}}

    def _current_key(self, caller: str, **_: Any) -> dict:
        now = self.now
        if caller == MANAGEMENT:
            secret = self.management_key
            data = {
                "label": f"{secret[:12]}...{secret[-4:]}",
                "limit": None, "limit_remaining": None, "limit_reset": None, "include_byok_in_limit": False,
                "usage": 0.0, "usage_daily": 0.0, "usage_weekly": 0.0, "usage_monthly": 0.0,
                "byok_usage": 0.0, "byok_usage_daily": 0.0, "byok_usage_weekly": 0.0, "byok_usage_monthly": 0.0,
                "is_free_tier": False, "is_management_key": True, "is_provisioning_key": True,
                "creator_user_id": self.org.members[0].id, "expires_at": None,
                "workspace_id": self.org.default_workspace.id,
                "budgets": [], "effective_budget": None,
            }
        else:
            key = self.org.key_by_name(INFERENCE_KEY_NAME)
            item = self.org.key_item(key, now, self.includes_today)
            budgets = [self._key_budget(key, item, now)] if key.limit is not None else []
            data = {
                "label": item["label"], "limit": item["limit"], "limit_remaining": item["limit_remaining"],
                "limit_reset": item["limit_reset"], "include_byok_in_limit": item["include_byok_in_limit"],
                **{name: item[name] for name in ("usage", "usage_daily", "usage_weekly", "usage_monthly",
                                                 "byok_usage", "byok_usage_daily", "byok_usage_weekly",
                                                 "byok_usage_monthly")},
                "is_free_tier": False, "is_management_key": False, "is_provisioning_key": False,
                "creator_user_id": item["creator_user_id"], "expires_at": item["expires_at"],
                "workspace_id": item["workspace_id"],
                "budgets": budgets, "effective_budget": budgets[0] if budgets else None,
            }
        data.update({
            "rate_limit": {"interval": "1h", "note": "This field is deprecated and safe to ignore.", "requests": -1},
            "organization_id": self.org.organization_id,
            "allowed_data_regions": ["global"],
            "free_model_daily_requests": {"limit": 1000, "remaining": 1000, "used": 0},
        })
        return {"data": data}

    @staticmethod
    def _key_budget(key: ApiKey, item: dict, now: datetime) -> dict:
        period = {"daily": "usage_daily", "weekly": "usage_weekly", "monthly": "usage_monthly"}.get(
            key.limit_reset or "", "usage")
        spent = item[period] + (item["byok_" + period] if key.include_byok_in_limit else 0.0)
        today = now.date()
        resets = {
            "daily": today + timedelta(days=1),
            "weekly": today + timedelta(days=7 - today.weekday()),
            "monthly": (today.replace(day=1) + timedelta(days=32)).replace(day=1),
        }.get(key.limit_reset or "")
        return {
            "scope": "key_limit", "budget_id": None, "guardrail_id": None,
            "include_byok": key.include_byok_in_limit, "limit_usd": key.limit, "spend_usd": round(spent, 9),
            "remaining_usd": round(key.limit - spent, 9), "reset_interval": key.limit_reset,
            "resets_at": f"{resets.isoformat()}T00:00:00Z" if resets else None,
        }

    def _keys(self, query: dict[str, str], **_: Any) -> dict:
        include_disabled = self._flag(query, "include_disabled")
        include_expired = self._flag(query, "include_expired")
        offset = self._int(query, "offset", 0)
        workspace = self._workspace_param(query)
        now = self.now
        keys = self.org.list_keys(now, workspace.id if workspace else None, include_disabled, include_expired)
        return {"data": [self.org.key_item(k, now, self.includes_today) for k in keys[offset:offset + KEYS_PAGE_SIZE]]}

    def _key(self, key_hash: str, **_: Any) -> dict:
        now = self.now
        key = self.org.key_by_hash(key_hash)
        if key is None or not key.exists_at(now):
            raise ApiError(404, NOT_FOUND)
        return {"data": self.org.key_item(key, now, self.includes_today)}

    def _activity(self, query: dict[str, str], **_: Any) -> dict:
        first, last = self.org.activity_window(self.now)
        raw_date = query.get("date")
        if raw_date is not None:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw_date):
                raise ApiError(400, f"{BAD_REQUEST}: date must be YYYY-MM-DD")
            try:
                day = date.fromisoformat(raw_date)
            except ValueError:
                raise ApiError(400, f"{BAD_REQUEST}: date must be YYYY-MM-DD") from None
            if not first <= day <= last:
                raise ApiError(400, WINDOW_MESSAGE)
            days = [day]
        else:
            days = [last - timedelta(days=i) for i in range((last - first).days + 1)]
        group_by = query.get("group_by")
        if group_by not in (None, "workspace"):
            raise ApiError(400, f"{BAD_REQUEST}: group_by must be 'workspace'")
        workspace = self._workspace_param(query)
        rows = []
        for day in days:
            rows.extend(self.org.activity(day, api_key_hash=query.get("api_key_hash"),
                                          workspace_id=workspace.id if workspace else None, group_by=group_by,
                                          user_id=query.get("user_id")))
        return {"data": rows}

    def _generation(self, query: dict[str, str], **_: Any) -> dict:
        generation_id = query.get("id")
        if not generation_id:
            raise ApiError(400, f"{BAD_REQUEST}: id is required")
        with self._lock:
            record = self._live_generations.get(generation_id)
        if record is None:
            record = self.org.generation(generation_id)
        if record is None:
            raise ApiError(404, NOT_FOUND)
        available_at = datetime.fromisoformat(record["created_at"]) + timedelta(seconds=self.generation_lag_seconds)
        if available_at > self.now:
            raise ApiError(404, NOT_FOUND)
        return {"data": record}

    def _models(self, query: dict[str, str], **_: Any) -> dict:
        wanted = query.get("output_modalities") or "text"
        models = [m for m in _models_newest_first()
                  if wanted == "all" or set(wanted.split(",")) & set(m.output_modalities)]
        total = len(models)
        next_link = None
        if "offset" in query or "limit" in query:
            offset = self._int(query, "offset", 0)
            limit = self._int(query, "limit", 500, minimum=1, maximum=1000)
            models = models[offset:offset + limit]
            if offset + limit < total:
                params = {k: v for k, v in query.items() if k not in ("offset", "limit")}
                params.update(offset=str(offset + limit), limit=str(limit))
                next_link = f"{self.base_url}/models?{urlencode(params)}"
        return {"data": [_model_json(self._priced_now(m.id)) for m in models], "total_count": total,
                "links": {"next": next_link}}

    def _priced_now(self, model_id: str) -> Model:
        """The catalogue model at the prices in force at the clock's now: the API keeps no price history."""
        if model_id not in MODEL_BY_ID:
            raise ApiError(404, NOT_FOUND)
        return self.org.prices.at(model_id, self.now)

    def _model(self, author: str, slug: str, **_: Any) -> dict:
        return {"data": _model_json(self._priced_now(f"{author}/{slug}"))}

    def _endpoints(self, author: str, slug: str, caller: str | None, **_: Any) -> dict:
        model = self._priced_now(f"{author}/{slug}")
        return {"data": {
            "id": model.id,
            "name": model.name,
            "created": model.created,
            "description": model.description,
            "architecture": {**_architecture(model), "instruct_type": model.instruct_type},
            "endpoints": [
                *(_endpoint_json(model, provider, caller is not None) for provider, _ in model.providers),
                *(_endpoint_json(model, offer.provider_name, caller is not None, offer)
                  for offer in ENDPOINT_OFFERS.get(model.id, ())),
            ],
        }}

    def _providers(self, **_: Any) -> dict:
        return {"data": [{
            "name": p.name,
            "slug": p.slug,
            "privacy_policy_url": p.privacy_policy_url,
            "terms_of_service_url": p.terms_of_service_url,
            "status_page_url": p.status_page_url,
            "headquarters": p.headquarters,
            "datacenters": list(p.datacenters),
        } for p in self.org.providers]}

    def _workspace_json(self, workspace: Workspace) -> dict:
        return {
            "id": workspace.id,
            "name": workspace.name,
            "slug": workspace.slug,
            "description": workspace.description,
            "created_at": iso_micro(workspace.created_at),
            "updated_at": iso_micro(workspace.created_at),
            "created_by": workspace.created_by,
            "default_text_model": workspace.default_text_model,
            "default_image_model": None,
            "default_provider_sort": None,
            "default_guardrail_id": str(_uuid_from(workspace.id, "guardrail")),
            "io_logging_api_key_ids": None,
            "io_logging_sampling_rate": 1.0,
            "is_data_discount_logging_enabled": False,
            "is_observability_broadcast_enabled": False,
            "is_observability_io_logging_enabled": False,
            "include_byok_in_budgets": False,
        }

    def _visible_workspaces(self) -> list[Workspace]:
        now = self.now
        return [w for w in self.org.workspaces if w.created_at <= now]

    def _workspaces(self, query: dict[str, str], **_: Any) -> dict:
        offset = self._int(query, "offset", 0)
        limit = self._int(query, "limit", 50, minimum=1, maximum=100)
        workspaces = self._visible_workspaces()
        return {"data": [self._workspace_json(w) for w in workspaces[offset:offset + limit]],
                "total_count": len(workspaces)}

    def _workspace(self, workspace_id: str, **_: Any) -> dict:
        workspace = next((w for w in self._visible_workspaces() if workspace_id in (w.id, w.slug)), None)
        if workspace is None:
            raise ApiError(404, NOT_FOUND)
        return {"data": self._workspace_json(workspace)}

    def _members(self, query: dict[str, str], **_: Any) -> dict:
        offset = self._int(query, "offset", 0)
        limit = self._int(query, "limit", 50, minimum=1, maximum=100)
        members = self.org.members
        return {"data": [{"id": m.id, "email": m.email, "first_name": m.first_name, "last_name": m.last_name,
                          "role": m.role} for m in members[offset:offset + limit]],
                "total_count": len(members)}

    def _analytics_meta(self, **_: Any) -> dict:
        return analytics.meta()

    def _analytics_query(self, body: bytes, **_: Any) -> dict:
        self._count_analytics_call()
        try:
            request = json.loads(body or b"null")
        except ValueError:
            raise ApiError(400, "Invalid JSON body") from None
        try:
            return analytics.query(self.org, request, self.now)
        except analytics.AnalyticsError as exc:
            raise ApiError(400, str(exc)) from None

    def _count_analytics_call(self) -> None:
        moment = time.monotonic()
        with self._lock:
            calls = self._analytics_calls
            while calls and moment - calls[0] >= 60:
                calls.popleft()
            if len(calls) >= ANALYTICS_REQUESTS_PER_MINUTE:
                wait = max(1, math.ceil(60 - (moment - calls[0])))
                response = self._rate_limited(wait, ANALYTICS_REQUESTS_PER_MINUTE)
                raise ApiError(429, RATE_LIMITED, response.headers)
            calls.append(moment)

    # ----- control endpoints --------------------------------------------------------------------------

    def _control(self, method: str, path: str, body: bytes) -> Response:
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            return error_response(400, "control endpoints take a JSON body")
        try:
            if path == "/faults" and method == "GET":
                return _json_response([rule.to_dict() for rule in self.faults])
            if path == "/faults" and method == "POST":
                if not isinstance(payload, list):
                    return error_response(400, "POST /_emulator/faults takes a JSON list of fault rules")
                self.set_faults([FaultRule.from_dict(rule) for rule in payload])
                return _json_response([rule.to_dict() for rule in self.faults])
            if path == "/clock" and method == "GET":
                return _json_response({"now": iso_micro(self.now)})
            if path == "/clock" and method == "POST":
                if not isinstance(payload, dict) or not isinstance(payload.get("now"), str):
                    return error_response(400, 'POST /_emulator/clock takes {"now": "<ISO 8601 UTC time>"}')
                self.set_now(_parse_moment(payload["now"]))
                return _json_response({"now": iso_micro(self.now)})
            if path == "/requests" and method == "GET":
                return _json_response(self.requests)
            if path == "/reset" and method == "POST":
                self.reset_requests()
                self.clear_faults()
                return _json_response({"reset": True})
            if path == "/generations" and method == "POST":
                options = payload or {}
                if "created_at" in options:
                    options = dict(options, created_at=_parse_moment(options["created_at"]))
                return _json_response({"id": self.add_live_generation(**options)})
            if path == "/info" and method == "GET":
                return _json_response({
                    "scenario": self.scenario, "seed": self.seed, "anchor_date": self.anchor_date.isoformat(),
                    "now": iso_micro(self.now), "clock": self.clock_mode, "base_url": self.base_url,
                    "generation_lag_seconds": self.generation_lag_seconds,
                })
        except (TypeError, ValueError, KeyError) as exc:
            return error_response(400, str(exc))
        return error_response(404, NOT_FOUND)


def _uuid_from(*parts: str) -> uuid.UUID:
    return uuid.UUID(bytes=hashlib.sha256("|".join(parts).encode()).digest()[:16], version=4)


def _models_newest_first() -> list[Model]:
    return sorted(MODELS, key=lambda m: (-m.created, m.id))


def _architecture(model: Model) -> dict:
    return {
        "modality": f"{'+'.join(model.input_modalities)}->{'+'.join(model.output_modalities)}",
        "input_modalities": list(model.input_modalities),
        "output_modalities": list(model.output_modalities),
        "tokenizer": model.tokenizer,
    }


def _pricing(model: Model) -> dict:
    pricing = {"prompt": model.prompt, "completion": model.completion}
    if not model.is_router:
        pricing.update(request="0", image="0", web_search="0", internal_reasoning="0")
    if model.input_cache_read is not None:
        pricing["input_cache_read"] = model.input_cache_read
    if model.input_cache_write is not None:
        pricing["input_cache_write"] = model.input_cache_write
    return pricing


def _model_json(model: Model) -> dict:
    primary = model.providers[0][0] if model.providers else None
    return {
        "id": model.id,
        "canonical_slug": model.canonical_slug,
        "hugging_face_id": model.hugging_face_id,
        "name": model.name,
        "created": model.created,
        "description": model.description,
        "context_length": model.context_length,
        "architecture": {**_architecture(model), "instruct_type": model.instruct_type},
        "pricing": _pricing(model),
        "top_provider": {
            "context_length": model.context_length,
            "max_completion_tokens": model.max_completion_tokens,
            "is_moderated": primary in ("OpenAI", "Azure"),
        },
        "per_request_limits": None,
        "supported_parameters": list(model.supported_parameters),
        "default_parameters": None,
        "supported_voices": None,
        "knowledge_cutoff": model.knowledge_cutoff,
        "expiration_date": None,
        "links": {"details": f"{API_PREFIX}/models/{model.id.split(':')[0]}/endpoints"},
    }


def _offer_pricing(model: Model, offer: EndpointOffer) -> dict:
    pricing = {**_pricing(model), "prompt": offer.prompt, "completion": offer.completion}
    pricing.pop("input_cache_read", None)
    pricing.pop("input_cache_write", None)
    if offer.input_cache_read is not None:
        pricing["input_cache_read"] = offer.input_cache_read
    return pricing


def _endpoint_json(model: Model, provider_name: str, authenticated: bool, offer: EndpointOffer | None = None) -> dict:
    """One PublicEndpoint: a provider in use at the catalogue price, or an offer at its own price and uptime."""
    provider = PROVIDER_BY_NAME[provider_name]
    rng = random.Random(endpoint_id(model.id, provider_name))
    stats = None
    throughput = None
    if authenticated:
        p50 = rng.uniform(300, 1500)
        stats = {"p50": round(p50, 1), "p75": round(p50 * 1.4, 1), "p90": round(p50 * 2, 1), "p99": round(p50 * 4, 1)}
        t50 = rng.uniform(40, 180)
        throughput = {"p50": round(t50, 1), "p75": round(t50 * 0.85, 1), "p90": round(t50 * 0.7, 1),
                      "p99": round(t50 * 0.4, 1)}
    open_weights = model.hugging_face_id is not None
    return {
        "name": f"{provider_name} | {model.canonical_slug}",
        "model_id": model.canonical_slug,
        "model_name": model.name,
        "context_length": model.context_length,
        "pricing": _pricing(model) if offer is None else _offer_pricing(model, offer),
        "provider_name": provider_name,
        "tag": provider.slug,
        "quantization": ("fp8" if open_weights else None),
        "max_completion_tokens": model.max_completion_tokens,
        "max_prompt_tokens": None,
        "supported_parameters": list(model.supported_parameters),
        "status": 0,
        "uptime_last_5m": round(rng.uniform(97, 100), 2),
        "uptime_last_30m": round(rng.uniform(98, 100), 2),
        "uptime_last_1d": round(rng.uniform(99, 100), 2) if offer is None else offer.uptime_last_1d,
        "supports_implicit_caching": model.supports_caching if offer is None else offer.input_cache_read is not None,
        "service_tier": None,
        "supports_tool_choice": {"auto": True, "none": True, "required": True, "function": True},
        "supports_diarization": False,
        "native_tools": {},
        "latency_last_30m": stats,
        "throughput_last_30m": throughput,
    }


def serve_forever(scenario: str = "default", port: int = 8090, seed: int | None = None,
                  anchor_date: date | None = None, faults: list[FaultRule] | None = None,
                  host: str = "127.0.0.1", clock: str | None = None) -> None:
    """Serve the emulator in the foreground until Ctrl-C or SIGTERM, after printing its base URL and management key."""
    stop_signals: list[int] = []  # a plain list: a handler must not take a lock its own thread may hold
    # Handlers set before serving, so a signal that arrives while the address is printed still stops cleanly.
    previous_handlers = {signum: signal.signal(signum, lambda received, _frame: stop_signals.append(received))
                         for signum in (signal.SIGINT, signal.SIGTERM)}
    server = EmulatorServer(scenario=scenario, host=host, port=port, seed=seed, anchor_date=anchor_date,
                            faults=faults, clock=clock)
    try:
        server.start()
        print(f"OpenRouter emulator ({scenario}, seed {server.seed}, anchor {server.anchor_date}, "
              f"{server.clock_mode} clock) serving "
              f"{server.base_url} management key {server.management_key}", flush=True)
        # Short sleeps, not one long one: when the kernel hands the signal to a serving thread, Python runs its
        # handler only once the main thread runs again, which a long sleep postponed for up to an hour.
        while not stop_signals:
            time.sleep(0.5)
    finally:
        server.stop()
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
